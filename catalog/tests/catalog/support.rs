//! Real services for the tests: fresh MariaDB and PostgreSQL databases, projects in temp dirs.
//!
//! A service that cannot be reached fails the test with how to start it; nothing is skipped.

use std::path::Path;

use strata_catalog::Project;

pub use strata_tests::databases::{MysqlDatabase, PostgresDatabase};

/// A project in `dir` with the given `strata.toml`.
pub fn project(dir: &Path, config: &str) -> Project {
    std::fs::write(dir.join("strata.toml"), config).expect("write strata.toml");
    Project::load(dir).expect("load project")
}

/// The catalog store backends every store test runs against.
pub enum StoreBackend {
    Sqlite(tempfile::TempDir),
    Mysql(MysqlDatabase),
    Postgres(PostgresDatabase),
}

impl StoreBackend {
    pub async fn all() -> Vec<StoreBackend> {
        vec![
            StoreBackend::Sqlite(tempfile::tempdir().expect("tempdir")),
            StoreBackend::Mysql(MysqlDatabase::create("store").await),
            StoreBackend::Postgres(PostgresDatabase::create("store").await),
        ]
    }

    pub fn url(&self) -> String {
        match self {
            StoreBackend::Sqlite(dir) => {
                format!("sqlite://{}/catalog.db?mode=rwc", dir.path().display())
            }
            StoreBackend::Mysql(db) => db.url.clone(),
            StoreBackend::Postgres(db) => db.url.clone(),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            StoreBackend::Sqlite(_) => "sqlite",
            StoreBackend::Mysql(_) => "mariadb",
            StoreBackend::Postgres(_) => "postgres",
        }
    }
}
