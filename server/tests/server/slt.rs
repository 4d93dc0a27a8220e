//! The sqllogictest contract of analysts' queries: `server/tests/slt/*.slt`,
//! each file on a fresh project, through the query engine the API, the CLI
//! and the PostgreSQL protocol share.
//!
//! Statements: `CREATE TABLE …` registers; `token NAME SPACE read|write`
//! makes a token; `as NAME: SQL` runs SQL with that token's grants (else
//! every space's). Everything else runs as a query.

use std::collections::HashMap;
use std::path::PathBuf;

use arrow::datatypes::DataType;
use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use strata_catalog::{Access, Catalog, CatalogError, Grant, Principal, Project, RegisterMode};
use strata_server::query::{QueryEngine, QueryError, QueryOptions};

struct SltDatabase {
    engine: QueryEngine,
    tokens: HashMap<String, Principal>,
}

#[derive(Debug, thiserror::Error)]
enum SltError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("{0}")]
    Script(String),
}

impl SltDatabase {
    async fn token(&mut self, words: &str) -> Result<(), SltError> {
        let [name, space, access] = words.split_whitespace().collect::<Vec<_>>()[..] else {
            return Err(SltError::Script(format!(
                "token NAME SPACE read|write, not {words}"
            )));
        };
        let access = match access {
            "read" => Access::Read,
            "write" => Access::Write,
            other => return Err(SltError::Script(format!("no access {other}"))),
        };
        let grants = vec![Grant {
            space: space.to_string(),
            access,
        }];
        let made = self
            .engine
            .catalog()
            .store()
            .create_token(name, grants)
            .await?;
        let principal = self
            .engine
            .catalog()
            .store()
            .authenticate(&made.secret)
            .await?;
        self.tokens.insert(name.to_string(), principal);
        Ok(())
    }
}

#[async_trait]
impl AsyncDB for SltDatabase {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let statement = sql.trim().trim_end_matches(';');
        if let Some(words) = statement.strip_prefix("token ") {
            self.token(words).await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        if statement.to_ascii_uppercase().starts_with("CREATE TABLE") {
            let registered = self
                .engine
                .catalog()
                .register_sql("slt", sql, RegisterMode::Create)
                .await?;
            return Ok(DBOutput::StatementComplete(registered.len() as u64));
        }
        let (principal, statement) = match statement.strip_prefix("as ") {
            Some(rest) => {
                let (name, sql) = rest
                    .split_once(':')
                    .ok_or_else(|| SltError::Script(format!("as NAME: SQL, not {rest}")))?;
                let principal = self.tokens.get(name.trim()).cloned().ok_or_else(|| {
                    SltError::Script(format!("no token {name}; make it with `token`"))
                })?;
                (principal, sql.trim())
            }
            None => (Principal::admin(), statement),
        };
        let output = self
            .engine
            .run(statement, &principal, QueryOptions::default())
            .await?;
        let types = output
            .schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                t if t.is_integer() => DefaultColumnType::Integer,
                DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => {
                    DefaultColumnType::FloatingPoint
                }
                _ => DefaultColumnType::Text,
            })
            .collect();
        let result = strata_catalog::QueryResult {
            schema: output.schema,
            batches: output.batches,
        };
        Ok(DBOutput::Rows {
            types,
            rows: result.text_rows()?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "strata"
    }
}

/// Runs one file on a fresh project.
async fn run_file(file: PathBuf) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("strata.toml"), "[lake]\nroot = \"lake\"\n").unwrap();
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    let engine = QueryEngine::new(catalog, Default::default());
    let mut runner = Runner::new(move || {
        let engine = engine.clone();
        async move {
            Ok::<_, SltError>(SltDatabase {
                engine,
                tokens: HashMap::new(),
            })
        }
    });
    runner
        .run_file_async(&file)
        .await
        .map_err(|err| err.display(false).to_string())
}

#[tokio::test]
async fn queries_match_the_slt_files() {
    let slt_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    strata_tests::slt::run(&slt_dir, run_file).await;
}
