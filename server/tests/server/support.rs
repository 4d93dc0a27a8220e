//! A fresh MariaDB database and project directory per test.

use std::path::Path;
use std::process::{Command, Output};

use strata_tests::databases::MysqlDatabase;

/// A MariaDB database holding a `users` table, dropped at the end.
pub struct ShopDatabase {
    _database: MysqlDatabase,
    pub url: String,
}

impl ShopDatabase {
    pub async fn create() -> Self {
        let database = MysqlDatabase::create("s").await;
        database
            .execute(
                "CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(32) NOT NULL, city VARCHAR(32));
                 INSERT INTO users VALUES (1, 'Li Lei', 'Beijing'), (2, 'Han Meimei', 'Shanghai');",
            )
            .await;
        Self {
            url: database.url.clone(),
            _database: database,
        }
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
    strata_tests::kafka::produce(bootstrap, topic, None, payloads)
        .await
        .expect("delivered");
}

/// Writes payloads to chosen partitions of a topic.
pub async fn produce_to(bootstrap: &str, topic: &str, records: &[(i32, String)]) {
    strata_tests::kafka::produce_to(bootstrap, topic, records)
        .await
        .expect("delivered");
}
