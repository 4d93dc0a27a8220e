//! A fresh database per test on the local MariaDB or PostgreSQL, dropped when
//! its guard goes.
//!
//! A server that cannot be reached fails the test with how to start it; no
//! test skips.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{AssertSqlSafe, Connection};

static NEXT_DATABASE: AtomicUsize = AtomicUsize::new(0);

/// The MariaDB server the tests use (`STRATA_TEST_MYSQL_URL`, else the local one).
pub fn mysql_server_url() -> String {
    std::env::var("STRATA_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_string())
}

/// The PostgreSQL server the tests use (`STRATA_TEST_POSTGRES_URL`, else the local one).
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

/// A database of its own on the test server, dropped when the guard goes.
#[derive(Debug)]
pub struct MysqlDatabase {
    pub name: String,
    /// `mysql://…/NAME`.
    pub url: String,
}

impl MysqlDatabase {
    /// A new, empty database whose name starts with `prefix`.
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
        self.try_execute(sql)
            .await
            .unwrap_or_else(|err| panic!("MariaDB refused {sql}: {err}"));
    }

    /// Runs one or more statements in this database, returning what MariaDB said.
    pub async fn try_execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        let mut conn = sqlx::MySqlConnection::connect(&self.url).await?;
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await?;
        Ok(())
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

/// A database of its own on the test PostgreSQL, dropped when the guard goes.
#[derive(Debug)]
pub struct PostgresDatabase {
    pub name: String,
    pub url: String,
}

impl PostgresDatabase {
    /// A new, empty database whose name starts with `prefix`.
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

/// Runs async clean-up from `Drop`, on a runtime of its own: a guard may be
/// dropped inside a runtime, which cannot block.
fn drop_in_thread<F, Fut>(work: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime to clean up with")
            .block_on(work());
    })
    .join();
}
