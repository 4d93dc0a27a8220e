//! The sqllogictest contract for streaming semantics: `pipelines/tests/slt/*.slt`,
//! each file on a fresh project with a fresh Kafka mock cluster.
//!
//! Statements:
//! - `CREATE TABLE …` registers tables (Kafka tables use the connection `events`);
//! - `CREATE TOPIC name PARTITIONS n` creates a topic on the mock cluster (before the file runs);
//! - `[SET …;] [CREATE [TEMPORARY] VIEW …;] INSERT INTO space.target SELECT …` saves a pipeline file;
//! - `PRODUCE topic [PARTITION n]`, then one record payload per line, writes records;
//! - `mysql: …` runs the rest on the file's own MariaDB database, behind the connection `app_db`;
//! - `catalog: …` runs the rest on the catalog (e.g. INSERT INTO an embedded table);
//! - `RUN` runs every pipeline, in dependency order, until it has read and committed
//!   everything (windows the watermark has not closed stay open, in checkpointed state);
//!   a pipeline that is refused or fails fails the statement (`statement error` expects it).
//!
//! Everything else is a query on the catalog.

use std::path::PathBuf;

use async_trait::async_trait;
use rdkafka::mocking::MockCluster;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use strata_catalog::{Catalog, CatalogError, Project, RegisterMode};
use strata_pipelines::{PipelineError, load_project};
use strata_tests::databases::MysqlDatabase;

use crate::ingest::try_run_to_end;

struct StreamingDatabase {
    catalog: Catalog,
    bootstrap: String,
    mysql_url: String,
    dir: PathBuf,
    pipelines: usize,
}

#[derive(Debug, thiserror::Error)]
enum SltError {
    #[error(transparent)]
    Catalog(Box<CatalogError>),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("MariaDB: {0}")]
    Mysql(#[from] sqlx::Error),
    #[error("{0}")]
    Harness(String),
}

impl From<CatalogError> for SltError {
    fn from(err: CatalogError) -> Self {
        SltError::Catalog(Box::new(err))
    }
}

impl StreamingDatabase {
    async fn produce(&self, header: &str, payloads: &[&str]) -> Result<u64, SltError> {
        let words: Vec<&str> = header.split_whitespace().collect();
        let (topic, partition) = match words.as_slice() {
            [_, topic] => (*topic, 0),
            [_, topic, partition_word, n] if partition_word.eq_ignore_ascii_case("PARTITION") => (
                *topic,
                n.parse()
                    .map_err(|_| SltError::Harness(format!("bad partition {n}")))?,
            ),
            _ => {
                return Err(SltError::Harness(format!(
                    "write PRODUCE topic [PARTITION n], not {header}"
                )));
            }
        };
        strata_tests::kafka::produce(&self.bootstrap, topic, Some(partition), payloads)
            .await
            .map_err(SltError::Harness)?;
        Ok(payloads.len() as u64)
    }

    fn save_pipeline(&mut self, sql: &str) -> Result<(), SltError> {
        let target = sql
            .split("INSERT INTO")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| SltError::Harness("a pipeline needs INSERT INTO".to_string()))?;
        let name = target.rsplit('.').next().unwrap_or(target);
        let layer = name.split('_').next().unwrap_or("dwd");
        let dir = self.dir.join("pipelines").join(layer);
        std::fs::create_dir_all(&dir).map_err(|err| SltError::Harness(err.to_string()))?;
        std::fs::write(dir.join(format!("{name}.sql")), sql)
            .map_err(|err| SltError::Harness(err.to_string()))?;
        self.pipelines += 1;
        Ok(())
    }
}

#[async_trait]
impl AsyncDB for StreamingDatabase {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let statement = sql.trim().trim_end_matches(';');
        if let Some(mysql_sql) = statement.strip_prefix("mysql:") {
            use sqlx::Connection;
            let mut conn = sqlx::MySqlConnection::connect(&self.mysql_url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(mysql_sql.to_string()))
                .execute(&mut conn)
                .await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        if let Some(catalog_sql) = statement.strip_prefix("catalog:") {
            self.catalog.query(catalog_sql.trim()).await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        let upper = statement.to_ascii_uppercase();
        if upper.starts_with("CREATE TOPIC") {
            // Created on the mock cluster before the file runs (see `run_file`).
            return Ok(DBOutput::StatementComplete(0));
        }
        if upper.starts_with("CREATE TABLE") {
            let registered = self
                .catalog
                .register_sql("slt", sql, RegisterMode::Create)
                .await?;
            return Ok(DBOutput::StatementComplete(registered.len() as u64));
        }
        let view = ["CREATE VIEW", "CREATE TEMPORARY VIEW", "CREATE TEMP VIEW"]
            .iter()
            .any(|start| upper.starts_with(start));
        let statement_set = ["EXECUTE STATEMENT SET", "BEGIN STATEMENT SET"]
            .iter()
            .any(|start| upper.starts_with(start));
        if upper.starts_with("SET ") || upper.starts_with("INSERT INTO") || view || statement_set {
            self.save_pipeline(sql)?;
            return Ok(DBOutput::StatementComplete(0));
        }
        if upper.starts_with("PRODUCE") {
            let mut lines = statement.lines();
            let header = lines.next().unwrap_or_default();
            let payloads: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty()).collect();
            return Ok(DBOutput::StatementComplete(
                self.produce(header, &payloads).await?,
            ));
        }
        if upper == "RUN" {
            for pipeline in load_project(&self.catalog).await? {
                try_run_to_end(&self.catalog, pipeline).await?;
            }
            return Ok(DBOutput::StatementComplete(self.pipelines as u64));
        }
        let result = self.catalog.query(statement).await?;
        let rows = result.text_rows()?;
        let types = vec![DefaultColumnType::Any; result.schema.fields().len()];
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    /// `sleep 1100ms` lets the wall clock pass (windows over processing time).
    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }

    fn engine_name(&self) -> &str {
        "strata-streaming"
    }
}

/// Runs one file on a fresh project, Kafka mock cluster and MariaDB database.
async fn run_file(file: PathBuf) -> Result<(), String> {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let text = std::fs::read_to_string(&file).unwrap();
    for line in text
        .lines()
        .filter(|l| l.to_ascii_uppercase().starts_with("CREATE TOPIC"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        let partitions = words.get(4).and_then(|n| n.parse().ok()).unwrap_or(1);
        cluster.create_topic(words[2], partitions, 1).unwrap();
    }
    let mysql = MysqlDatabase::create("pslt").await;
    let mysql_url = mysql.url.clone();
    let project = tempfile::tempdir().unwrap();
    let dir = project.path().to_path_buf();
    std::fs::write(
        dir.join("strata.toml"),
        format!(
            "[lake]\nroot = \"lake\"\n[engine]\ncommit-interval-ms = 100\nbatch-records = 1000\n[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{}\"\n[connections.app_db]\nkind = \"mysql\"\nurl = \"{}\"\n",
            bootstrap, mysql_url
        ),
    )
    .unwrap();
    let catalog = Catalog::open(Project::load(&dir).unwrap()).await.unwrap();
    let database_url = mysql_url.clone();
    let mut runner = Runner::new(move || {
        let (catalog, dir, bootstrap, mysql_url) = (
            catalog.clone(),
            dir.clone(),
            bootstrap.clone(),
            database_url.clone(),
        );
        async move {
            Ok::<_, SltError>(StreamingDatabase {
                catalog,
                bootstrap,
                mysql_url,
                dir,
                pipelines: 0,
            })
        }
    });
    let outcome = runner.run_file_async(&file).await;
    drop((project, cluster, mysql));
    outcome.map_err(|err| err.display(false).to_string())
}

#[tokio::test]
async fn streaming_semantics_match_the_slt_files() {
    let slt_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    strata_tests::slt::run(&slt_dir, run_file).await;
}
