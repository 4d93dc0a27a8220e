//! `strata serve` end to end: the PostgreSQL protocol with the real `psql`
//! (simple queries, `\dt`, `\d`) and sqlx (the extended protocol, with
//! parameters), tokens as passwords, grants, time travel, and `strata query
//! --server` through the HTTP API.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use sqlx::{Connection, Row};

use crate::support::{DDL, ShopDatabase, admin_token, strata_ok, write_project};

const LAKE: &str = "
CREATE TABLE shop.ods_events (id BIGINT, name STRING) WITH ('connector' = 'delta');
CREATE TABLE fin.dwd_ledger (id BIGINT, amount BIGINT) WITH ('connector' = 'delta');
";

/// `strata serve` on free ports; its addresses once it listens.
pub(crate) struct Served {
    child: std::process::Child,
    pub(crate) http: String,
    pub(crate) pg: String,
}

impl Served {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(dir: &Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--project")
        .arg(dir)
        .args(["serve", "--port", "0", "--pg-port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines
        .next()
        .expect("strata serve says where it listens")
        .unwrap();
    let after = |marker: &str, end: char| {
        line.split(marker)
            .nth(1)
            .and_then(|rest| rest.split(end).next())
            .unwrap_or_else(|| panic!("no {marker} in {line:?}"))
            .to_string()
    };
    Served {
        http: after("API on http://", '/'),
        pg: after("PostgreSQL on ", ';'),
        child,
    }
}

/// Runs `psql -c COMMAND` as `token`; exit status, stdout and stderr.
fn psql(pg: &str, token: &str, command: &str) -> (bool, String, String) {
    psql_with(pg, token, command, &[])
}

/// `psql` with errors in full, SQLSTATE included.
pub(crate) fn psql_verbose(pg: &str, token: &str, command: &str) -> (bool, String, String) {
    psql_with(pg, token, command, &["-v", "VERBOSITY=verbose"])
}

fn psql_with(pg: &str, token: &str, command: &str, extra: &[&str]) -> (bool, String, String) {
    let (host, port) = pg.rsplit_once(':').unwrap();
    let output = Command::new("psql")
        .args([
            "-h", host, "-p", port, "-U", "admin", "-d", "strata", "-X", "-c", command,
        ])
        .args(extra)
        .env("PGPASSWORD", token)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .expect("psql is installed (apt-get install -y postgresql-client)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[tokio::test]
async fn psql_and_sqlx_query_with_tokens_as_passwords() {
    let db = ShopDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &db, "");
    let ddl = dir.path().join("catalog.sql");
    std::fs::write(&ddl, format!("{DDL}{LAKE}")).unwrap();
    strata_ok(dir.path(), &["catalog", "register", ddl.to_str().unwrap()]);
    strata_ok(
        dir.path(),
        &[
            "query",
            "INSERT INTO shop.ods_events VALUES (1, 'a'), (2, 'b')",
        ],
    );
    strata_ok(
        dir.path(),
        &["query", "INSERT INTO shop.ods_events VALUES (3, 'c')"],
    );
    let served = serve(dir.path());
    let admin = admin_token(dir.path());

    let (ok, out, err) = psql(
        &served.pg,
        &admin,
        "SELECT id, name FROM shop.ods_events ORDER BY id",
    );
    assert!(ok, "{err}");
    assert!(out.contains(" 3 | c") && out.contains("(3 rows)"), "{out}");

    let (ok, out, err) = psql(&served.pg, &admin, "\\dt");
    assert!(ok, "{err}");
    assert!(
        out.contains("ods_events") && out.contains("dwd_ledger"),
        "{out}"
    );
    let (ok, out, err) = psql(&served.pg, &admin, "\\d shop.ods_events");
    assert!(ok, "{err}");
    assert!(
        out.contains("id") && out.contains("bigint") && out.contains("name"),
        "{out}"
    );

    let (ok, out, err) = psql(
        &served.pg,
        &admin,
        "SELECT count(*) AS n FROM shop.ods_events VERSION AS OF 1",
    );
    assert!(ok, "{err}");
    assert!(out.contains("  2\n") || out.contains(" 2\n"), "{out}");

    let (ok, _, err) = psql(&served.pg, "strata_nope_wrong", "SELECT 1");
    assert!(!ok);
    assert!(err.contains("not valid"), "{err}");

    let ledger_reader = strata_ok(
        dir.path(),
        &[
            "token", "create", "--name", "ledger", "--space", "fin", "--read",
        ],
    );
    let ledger_reader = ledger_reader.trim();
    let (ok, _, err) = psql(&served.pg, ledger_reader, "SELECT * FROM shop.ods_events");
    assert!(!ok);
    assert!(err.contains("may not read space 'shop'"), "{err}");
    let (ok, _, err) = psql(
        &served.pg,
        ledger_reader,
        "INSERT INTO fin.dwd_ledger VALUES (1, 100)",
    );
    assert!(!ok);
    assert!(err.contains("may not write space 'fin'"), "{err}");
    let (ok, _, err) = psql(
        &served.pg,
        ledger_reader,
        "EXPLAIN ANALYZE INSERT INTO fin.dwd_ledger VALUES (2, 200)",
    );
    assert!(!ok);
    assert!(err.contains("may not write space 'fin'"), "{err}");
    let copied = dir.path().join("copied.csv");
    let copy = format!("EXPLAIN ANALYZE COPY (SELECT 1) TO '{}'", copied.display());
    for (statement, refused) in [
        (
            "SET datafusion.catalog.default_schema = 'fin'",
            "SET is not supported",
        ),
        ("PREPARE p AS SELECT 1", "PREPARE is not supported"),
        (copy.as_str(), "COPY is not supported"),
    ] {
        let (ok, _, err) = psql(&served.pg, &admin, statement);
        assert!(!ok, "{statement}");
        assert!(err.contains(refused), "{statement}: {err}");
    }
    assert!(!copied.exists(), "a refused COPY wrote its file");
    let (ok, out, err) = psql(
        &served.pg,
        &admin,
        "SELECT count(*) AS n FROM fin.dwd_ledger",
    );
    assert!(ok && out.contains(" 0\n"), "{out}{err}");
    let (ok, _, err) = psql(&served.pg, &admin, "DROP TABLE shop.ods_events");
    assert!(!ok);
    assert!(err.contains("DROP is not supported"), "{err}");

    // The CLI asks the running server, with the project's admin token.
    let csv = strata_ok(
        dir.path(),
        &[
            "query",
            "SELECT count(*) AS n FROM shop.ods_events",
            "--server",
            &format!("http://{}", served.http),
            "--format",
            "csv",
        ],
    );
    assert_eq!(csv, "n\n3\n");

    // The extended protocol: a prepared statement with a parameter.
    let url = format!("postgres://admin:{admin}@{}/strata", served.pg);
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let rows = sqlx::query("SELECT name FROM shop.ods_events WHERE id > $1 ORDER BY id")
        .bind(1i64)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["b", "c"]);
}
