//! Real services for the tests: fresh MariaDB and PostgreSQL databases, projects in temp dirs.
//!
//! A service that cannot be reached fails the test with how to start it; nothing is skipped.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{AssertSqlSafe, Connection};
use strata_catalog::Project;

static NEXT_DATABASE: AtomicUsize = AtomicUsize::new(0);

pub fn mysql_server_url() -> String {
    std::env::var("STRATA_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_string())
}

pub fn postgres_server_url() -> String {
    std::env::var("STRATA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

fn unique_name(prefix: &str) -> String {
    format!(
        "strata_t_{prefix}_{}_{}",
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, Ordering::SeqCst)
    )
}

/// A database of its own on the local MariaDB, dropped when the guard goes.
pub struct MysqlDatabase {
    pub name: String,
    /// `mysql://…/NAME`.
    pub url: String,
}

impl MysqlDatabase {
    pub async fn create(prefix: &str) -> Self {
        let name = unique_name(prefix);
        let server = mysql_server_url();
        let mut conn = sqlx::MySqlConnection::connect(&server).await.unwrap_or_else(|err| {
            panic!(
                "MariaDB is not reachable at {server}: {err}\n  start it with `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`, or run scripts/test.sh, which starts it"
            )
        });
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        Self {
            url: format!("{server}/{name}"),
            name,
        }
    }

    /// Runs one or more statements in this database.
    pub async fn execute(&self, sql: &str) {
        let mut conn = sqlx::MySqlConnection::connect(&self.url)
            .await
            .expect("connect");
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("MariaDB refused {sql}: {err}"));
    }
}

impl Drop for MysqlDatabase {
    fn drop(&mut self) {
        let (server, name) = (mysql_server_url(), self.name.clone());
        drop_in_thread(move || async move {
            if let Ok(mut conn) = sqlx::MySqlConnection::connect(&server).await {
                let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`")))
                    .execute(&mut conn)
                    .await;
            }
        });
    }
}

/// A database of its own on the local PostgreSQL, dropped when the guard goes.
pub struct PostgresDatabase {
    pub name: String,
    pub url: String,
}

impl PostgresDatabase {
    pub async fn create(prefix: &str) -> Self {
        let name = unique_name(prefix);
        let server = postgres_server_url();
        let mut conn = sqlx::PgConnection::connect(&server).await.unwrap_or_else(|err| {
            panic!(
                "PostgreSQL is not reachable at {server}: {err}\n  start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, or run scripts/test.sh, which starts it"
            )
        });
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = server
            .rsplit_once('/')
            .map(|(base, _)| base.to_string())
            .unwrap_or(server);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let (server, name) = (postgres_server_url(), self.name.clone());
        drop_in_thread(move || async move {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&server).await {
                let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
            }
        });
    }
}

/// Runs async clean-up from `Drop`, on a runtime of its own.
fn drop_in_thread<F, Fut>(work: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(work());
    })
    .join();
}

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
