//! Getting events in: `strata dev kafka` hosts a broker in a process of its
//! own, and `strata produce` checks every record against the table before it
//! sends any, from a file or from standard input.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::support::{json, stderr, strata, strata_ok};

/// `strata dev kafka` on a free port, stopped when dropped.
struct DevKafka {
    child: Child,
    bootstrap: String,
}

impl Drop for DevKafka {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dev_kafka(topics: &[&str]) -> DevKafka {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command.args(["dev", "kafka", "--port", "0"]);
    for topic in topics {
        command.args(["--topic", topic]);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .next()
        .expect("strata dev kafka says where it listens")
        .unwrap();
    let bootstrap = line
        .split("bootstrap-servers = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    DevKafka { child, bootstrap }
}

fn project(dir: &Path, bootstrap: &str) {
    std::fs::write(
        dir.join("strata.toml"),
        format!("[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"),
    )
    .unwrap();
    let ddl = dir.join("orders.sql");
    std::fs::write(
        &ddl,
        "CREATE TABLE shop.ods_orders (order_id BIGINT NOT NULL, amount DECIMAL(10, 2), city STRING)
         WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
               'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');",
    )
    .unwrap();
    strata_ok(dir, &["catalog", "register", ddl.to_str().unwrap()]);
}

fn orders(dir: &Path) -> i64 {
    json(&strata_ok(
        dir,
        &[
            "query",
            "SELECT COUNT(*) AS n FROM shop.ods_orders",
            "--format",
            "json",
        ],
    ))[0]["n"]
        .as_i64()
        .unwrap()
}

#[test]
fn produce_checks_every_record_then_sends_them_all_to_a_dev_broker() {
    let kafka = dev_kafka(&["orders:2"]);
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &kafka.bootstrap);

    // One lossy value refuses the whole file, naming its line.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"order_id\": 1, \"amount\": \"1.50\", \"city\": \"a\"}\n{\"order_id\": 2, \"amount\": 1.234}\n\n{\"amount\": 3}\n",
    )
    .unwrap();
    let refused = strata(
        dir.path(),
        &[
            "produce",
            "shop.ods_orders",
            "--file",
            bad.to_str().unwrap(),
        ],
    );
    let err = stderr(&refused);
    assert!(!refused.status.success());
    assert!(
        err.contains("2 of 3 records do not fit shop.ods_orders; nothing was produced")
            && err.contains("bad.jsonl:2: ")
            && err.contains("more than 2 digits after the point")
            && err.contains("bad.jsonl:4: "),
        "{err}"
    );
    assert_eq!(orders(dir.path()), 0);

    let good = dir.path().join("good.jsonl");
    std::fs::write(
        &good,
        "{\"order_id\": 1, \"amount\": \"1.50\", \"city\": \"a\"}\n{\"order_id\": 2, \"amount\": 2, \"city\": \"b\"}\n{\"order_id\": 3, \"city\": \"c\"}\n",
    )
    .unwrap();
    let sent = strata_ok(
        dir.path(),
        &[
            "produce",
            "shop.ods_orders",
            "--file",
            good.to_str().unwrap(),
        ],
    );
    assert!(
        sent.contains("produced 3 records to topic orders"),
        "{sent}"
    );

    let mut piped = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--project")
        .arg(dir.path())
        .args(["produce", "shop.ods_orders", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    piped
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"order_id\": 4}\n{\"order_id\": 5, \"amount\": \"0.01\"}\n")
        .unwrap();
    let output = piped.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(report["records"], 2);
    assert_eq!(orders(dir.path()), 5);
}
