//! A fresh MariaDB database and project directory per test.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{AssertSqlSafe, Connection};

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub fn mysql_server_url() -> String {
    std::env::var("STRATA_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_string())
}

/// A MariaDB database holding a `users` table, dropped at the end.
pub struct ShopDatabase {
    pub name: String,
    pub url: String,
}

impl ShopDatabase {
    pub async fn create() -> Self {
        let name = format!(
            "strata_s_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let server = mysql_server_url();
        let mut conn = sqlx::MySqlConnection::connect(&server).await.unwrap_or_else(|err| {
            panic!("MariaDB is not reachable at {server}: {err}\n  run scripts/test.sh, which starts it")
        });
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE DATABASE `{name}`; USE `{name}`;
             CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(32) NOT NULL, city VARCHAR(32));
             INSERT INTO users VALUES (1, 'Li Lei', 'Beijing'), (2, 'Han Meimei', 'Shanghai');"
        )))
        .execute(&mut conn)
        .await
        .expect("create test database");
        Self {
            url: format!("{server}/{name}"),
            name,
        }
    }
}

impl Drop for ShopDatabase {
    fn drop(&mut self) {
        let (server, name) = (mysql_server_url(), self.name.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    if let Ok(mut conn) = sqlx::MySqlConnection::connect(&server).await {
                        let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS `{name}`"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                })
        })
        .join();
    }
}

/// `strata.toml` with the shop database as `shop_db`, and extra text.
pub fn write_project(dir: &Path, db: &ShopDatabase, extra: &str) {
    std::fs::write(
        dir.join("strata.toml"),
        format!(
            "[connections.shop_db]\nkind = \"mysql\"\nurl = \"{}\"\n{extra}",
            db.url
        ),
    )
    .unwrap();
}

pub const DDL: &str = "CREATE TABLE shop.dim_users (
  id BIGINT, name STRING, city STRING, PRIMARY KEY (id) NOT ENFORCED
) WITH ('connector' = 'mysql', 'connection' = 'shop_db', 'table-name' = 'users', 'owner' = 'user-team');

CREATE TABLE shop.dwd_orders (order_id BIGINT, user_id BIGINT, amount DECIMAL(10, 2))
WITH ('connector' = 'delta');
";

/// The API over `catalog`, every request signed with an admin token unless it
/// carries its own `Authorization` (the tests of access control do).
pub async fn api_router(catalog: strata_catalog::Catalog) -> axum::Router {
    let token = strata_server::serve::admin_token(&catalog).await.unwrap();
    strata_server::api::router(catalog, strata_server::run::Registry::default()).layer(
        axum::middleware::map_request(move |mut request: axum::extract::Request| {
            let bearer = format!("Bearer {token}");
            async move {
                if !request.headers().contains_key("authorization") {
                    request
                        .headers_mut()
                        .insert("authorization", bearer.parse().unwrap());
                }
                request
            }
        }),
    )
}

/// The project's admin token, once a server started there has written it.
pub fn admin_token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(".strata").join("admin-token"))
        .expect("the server writes the admin token at start")
        .trim()
        .to_string()
}

/// Runs `strata --project DIR ARGS…` with no terminal.
pub fn strata(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--project")
        .arg(dir)
        .args(args)
        .env("STRATA_PG_PORT", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run strata")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs strata and expects success, returning stdout.
pub fn strata_ok(dir: &Path, args: &[&str]) -> String {
    let output = strata(dir, args);
    assert!(
        output.status.success(),
        "strata {args:?} failed:\n{}",
        stderr(&output)
    );
    stdout(&output)
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

/// Writes JSON records to a topic of a mock cluster.
pub async fn produce(bootstrap: &str, topic: &str, payloads: &[&str]) {
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for payload in payloads {
        producer
            .send(
                rdkafka::producer::FutureRecord::<(), str>::to(topic).payload(*payload),
                std::time::Duration::from_secs(5),
            )
            .await
            .expect("delivered");
    }
}

/// Writes payloads to chosen partitions of a topic.
pub async fn produce_to(bootstrap: &str, topic: &str, records: &[(i32, String)]) {
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for (partition, payload) in records {
        producer
            .send(
                rdkafka::producer::FutureRecord::<(), str>::to(topic)
                    .partition(*partition)
                    .payload(payload.as_str()),
                std::time::Duration::from_secs(5),
            )
            .await
            .expect("delivered");
    }
}
