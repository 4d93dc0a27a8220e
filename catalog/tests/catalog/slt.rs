//! The sqllogictest contract: `catalog/tests/slt/*.slt`, each file run on a fresh
//! project with a fresh MariaDB database behind the connection `shop_db`.
//!
//! Statements: `CREATE TABLE …` registers, `DROP TABLE s.t` drops, and a
//! statement starting with `mysql:` runs the rest on the file's MariaDB
//! database (to set up dimension data). Everything else is a query.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::DataType;
use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use strata_catalog::{Catalog, CatalogError, RegisterMode};

use crate::support::{MysqlDatabase, project};

struct SltDatabase {
    catalog: Catalog,
    mysql: Arc<MysqlDatabase>,
}

#[derive(Debug, thiserror::Error)]
enum SltError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("MariaDB: {0}")]
    Mysql(#[from] sqlx::Error),
}

#[async_trait]
impl AsyncDB for SltDatabase {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let statement = sql.trim().trim_end_matches(';');
        if let Some(mysql_sql) = statement.strip_prefix("mysql:") {
            use sqlx::Connection;
            let mut conn = sqlx::MySqlConnection::connect(&self.mysql.url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(mysql_sql.to_string()))
                .execute(&mut conn)
                .await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        let upper = statement.to_ascii_uppercase();
        // DDL, as catalog files hold it (TEMPORARY too, to see it refused there).
        if upper.starts_with("CREATE TABLE")
            || upper.starts_with("CREATE TEMPORARY TABLE")
            || upper.starts_with("CREATE VIEW")
        {
            let registered = self
                .catalog
                .register_sql("slt", sql, RegisterMode::Create)
                .await?;
            return Ok(DBOutput::StatementComplete(registered.len() as u64));
        }
        if let Some(name) = upper.strip_prefix("DROP TABLE ") {
            let name = statement[statement.len() - name.len()..].trim().parse()?;
            self.catalog.drop_table(&name).await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        let result = self.catalog.query(statement).await?;
        let types = result
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
        let rows = result.text_rows()?;
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "strata"
    }
}

/// Runs one file on a fresh project whose store is SQLite, then MariaDB.
async fn run_file(file: PathBuf) -> Result<(), String> {
    for store_on_mariadb in [false, true] {
        let mysql = Arc::new(MysqlDatabase::create("slt").await);
        let dir = tempfile::tempdir().unwrap();
        let store = if store_on_mariadb {
            format!("[catalog]\nurl = \"{}\"\n", mysql.url)
        } else {
            String::new()
        };
        let config = format!(
            "{store}[lake]\nroot = \"lake\"\n[connections.shop_db]\nkind = \"mysql\"\nurl = \"{}\"\n",
            mysql.url
        );
        let catalog = Catalog::open(project(dir.path(), &config)).await.unwrap();
        let mut runner = Runner::new(move || {
            let (catalog, mysql) = (catalog.clone(), mysql.clone());
            async move { Ok::<_, SltError>(SltDatabase { catalog, mysql }) }
        });
        if let Err(err) = runner.run_file_async(&file).await {
            let store = if store_on_mariadb {
                "MariaDB"
            } else {
                "SQLite"
            };
            return Err(format!("(store on {store}) {}", err.display(false)));
        }
    }
    Ok(())
}

#[tokio::test]
async fn sql_behaviour_matches_the_slt_files() {
    let slt_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    strata_tests::slt::run(&slt_dir, run_file).await;
}
