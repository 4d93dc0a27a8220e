//! The command line: every command, both output formats, exit codes and errors.

use rdkafka::mocking::MockCluster;

use crate::support::{
    DDL, ShopDatabase, json, produce, stderr, stdout, strata, strata_ok, write_project,
};

#[tokio::test]
async fn init_scaffolds_a_project_once() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("warehouse");
    let out = strata_ok(root.path(), &["init", dir.to_str().unwrap()]);
    assert!(out.contains("created project"), "{out}");
    for path in [
        "strata.toml",
        "catalog/tables.sql",
        "checks/.gitkeep",
        "pipelines/dwd/.gitkeep",
        ".gitignore",
    ] {
        assert!(dir.join(path).exists(), "{path} missing");
    }
    // The demo's help names the folder the demo uses.
    let help = strata_ok(root.path(), &["demo", "--help"]);
    assert!(
        help.contains("./strata-demo") && !help.contains("[default: .]"),
        "{help}"
    );
    // The scaffold is a valid, empty project.
    assert!(strata_ok(&dir, &["catalog", "list"]).contains("no tables yet"));
    let again = strata(root.path(), &["init", dir.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
}

#[tokio::test]
async fn register_list_show_query_and_drop() {
    let db = ShopDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &db, "");
    std::fs::create_dir(dir.path().join("catalog")).unwrap();
    std::fs::write(dir.path().join("catalog/tables.sql"), DDL).unwrap();

    let catalog_dir = dir.path().join("catalog");
    let catalog_dir = catalog_dir.to_str().unwrap();
    let registered = json(&strata_ok(
        dir.path(),
        &["catalog", "register", catalog_dir, "--format", "json"],
    ));
    assert_eq!(registered.as_array().unwrap().len(), 2);
    assert!(
        dir.path().join(".strata/catalog.db").exists(),
        "embedded store"
    );

    let list = json(&strata_ok(
        dir.path(),
        &["--format", "json", "catalog", "list"],
    ));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop.dim_users", "shop.dwd_orders"]);
    assert_eq!(list[0]["layer"], "dim");
    assert_eq!(list[1]["connector"], "delta");
    let table = strata_ok(dir.path(), &["catalog", "list"]);
    assert!(
        table.contains("shop.dim_users") && table.contains("user-team"),
        "{table}"
    );

    let show = json(&strata_ok(
        dir.path(),
        &["catalog", "show", "shop.dim_users", "--format", "json"],
    ));
    assert_eq!(show["primary_key"], serde_json::json!(["id"]));
    assert_eq!(show["columns"][0]["type"], "BIGINT");
    assert_eq!(show["columns"][0]["nullable"], false);
    assert_eq!(show["options"]["connection"], "shop_db");

    let rows = json(&strata_ok(
        dir.path(),
        &[
            "query",
            "SELECT name FROM shop.dim_users WHERE city = 'Shanghai'",
            "--format",
            "json",
        ],
    ));
    assert_eq!(rows, serde_json::json!([{"name": "Han Meimei"}]));
    let table = strata_ok(
        dir.path(),
        &["query", "SELECT count(*) AS n FROM shop.dwd_orders"],
    );
    assert!(
        table.contains("| 0 |") && table.contains("(1 row)"),
        "{table}"
    );

    // An updated DDL records schema version 2; history lists both.
    std::fs::write(
        dir.path().join("catalog/tables.sql"),
        DDL.replace(
            "amount DECIMAL(10, 2)",
            "amount DECIMAL(10, 2), city STRING",
        ),
    )
    .unwrap();
    let duplicate = strata(dir.path(), &["catalog", "register", catalog_dir]);
    assert!(!duplicate.status.success());
    assert!(
        stderr(&duplicate).contains("already registered"),
        "{}",
        stderr(&duplicate)
    );
    let updated = strata_ok(
        dir.path(),
        &["catalog", "register", "--update", catalog_dir],
    );
    assert!(
        updated.contains("schema version 2") && updated.contains("added column(s) city"),
        "{updated}"
    );
    let evolved = json(&strata_ok(
        dir.path(),
        &[
            "query",
            "SELECT count(city) AS n FROM shop.dwd_orders",
            "--format",
            "json",
        ],
    ));
    assert_eq!(evolved, serde_json::json!([{"n": 0}]));
    let history = json(&strata_ok(
        dir.path(),
        &["catalog", "history", "shop.dwd_orders", "--format", "json"],
    ));
    assert_eq!(history.as_array().unwrap().len(), 2);
    let v1 = json(&strata_ok(
        dir.path(),
        &[
            "catalog",
            "show",
            "shop.dwd_orders",
            "--version",
            "1",
            "--format",
            "json",
        ],
    ));
    assert_eq!(v1["columns"].as_array().unwrap().len(), 3);

    // Delta versions, newest first, for VERSION AS OF.
    strata_ok(
        dir.path(),
        &[
            "query",
            "INSERT INTO shop.dwd_orders VALUES (1, 1, 2.50, 'a'), (2, 1, 3.00, 'b')",
        ],
    );
    let history = json(&strata_ok(
        dir.path(),
        &["history", "shop.dwd_orders", "--format", "json"],
    ));
    let versions: Vec<(i64, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["operation"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let numbers: Vec<i64> = versions.iter().map(|(v, _)| *v).collect();
    let expected: Vec<i64> = (0..versions.len() as i64).rev().collect();
    assert_eq!(numbers, expected, "{history}");
    assert_eq!(versions[0].1, "WRITE", "{history}");
    assert_eq!(
        versions.last().unwrap(),
        &(0, "CREATE TABLE".to_string()),
        "{history}"
    );
    let human = strata_ok(dir.path(), &["history", "shop.dwd_orders"]);
    assert!(
        human.contains("version") && human.contains("CREATE TABLE"),
        "{human}"
    );
    let refused = strata(dir.path(), &["history", "shop.dim_users"]);
    assert!(stderr(&refused).contains("only Delta tables keep versions"));
    // A version past the latest is named with the versions there are, and nothing else is logged first.
    let past = strata(
        dir.path(),
        &["query", "SELECT * FROM shop.dwd_orders VERSION AS OF 9999"],
    );
    let text = stderr(&past);
    assert!(
        text.starts_with("error: ") && text.contains("has no state at version 9999\n"),
        "{text}"
    );
    assert!(text.contains("strata history SPACE.TABLE"), "{text}");
    assert!(!text.contains("kernel"), "{text}");

    let dropped = strata_ok(dir.path(), &["catalog", "drop", "shop.dim_users"]);
    assert!(dropped.contains("its data at"), "{dropped}");
    let missing = strata(dir.path(), &["catalog", "show", "shop.dim_users"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("not in the catalog"));
}

#[tokio::test]
async fn bad_input_fails_with_location_and_a_hint() {
    let db = ShopDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &db, "");
    let file = dir.path().join("bad.sql");
    std::fs::write(
        &file,
        "CREATE TABLE shop.ods_a (\n  id BIGINT,\n  at DATETIME\n) WITH ('connector' = 'delta');\n",
    )
    .unwrap();
    let output = strata(dir.path(), &["catalog", "register", file.to_str().unwrap()]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("bad.sql:3:6: column at has type DATETIME"),
        "{err}"
    );
    assert!(err.contains("hint: the supported types are"), "{err}");
    assert!(stdout(&output).is_empty());

    let bad_config = tempfile::tempdir().unwrap();
    std::fs::write(
        bad_config.path().join("strata.toml"),
        "[lake]\nrot = \"x\"\n",
    )
    .unwrap();
    let output = strata(bad_config.path(), &["catalog", "list"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("strata.toml: line 2, column 1"),
        "{}",
        stderr(&output)
    );

    let nowhere = tempfile::tempdir().unwrap();
    let output = strata(nowhere.path(), &["catalog", "list"]);
    assert!(
        stderr(&output).contains("strata init"),
        "{}",
        stderr(&output)
    );

    // A pipeline that cannot run is refused before anything says "running".
    std::fs::write(
        &file,
        "CREATE TABLE shop.ods_a (id BIGINT) WITH ('connector' = 'delta');
CREATE TABLE shop.dwd_a (id BIGINT) WITH ('connector' = 'delta');
",
    )
    .unwrap();
    strata_ok(dir.path(), &["catalog", "register", file.to_str().unwrap()]);
    std::fs::create_dir_all(dir.path().join("pipelines/dwd")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/dwd/dwd_a.sql"),
        "INSERT INTO shop.dwd_a SELECT idd FROM shop.ods_a",
    )
    .unwrap();
    let output = strata(dir.path(), &["run", "--port", "0", "--pg-port", "0"]);
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(err.contains("dwd_a.sql:1:") && err.contains("idd"), "{err}");
    assert!(!err.contains("strata running"), "{err}");

    // A taken PostgreSQL port names the flag that moves it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let empty = tempfile::tempdir().unwrap();
    write_project(empty.path(), &db, "");
    let output = strata(empty.path(), &["serve", "--port", "0", "--pg-port", &port]);
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(
        err.contains("the PostgreSQL protocol cannot listen on") && err.contains("pass --pg-port"),
        "{err}"
    );
}

#[tokio::test]
async fn kafka_discovery_shows_inferred_schemas_before_saving() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("ods_clicks", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(
        &bootstrap,
        "ods_clicks",
        &[
            r#"{"user_id": 7, "page": "/home"}"#,
            r#"{"user_id": 8, "page": "/cart"}"#,
        ],
    )
    .await;
    let db = ShopDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        &db,
        &format!("[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"),
    );

    let unconfirmed = strata(dir.path(), &["catalog", "discover", "events"]);
    assert!(!unconfirmed.status.success());
    assert!(
        stdout(&unconfirmed).contains("inferred schema"),
        "{}",
        stdout(&unconfirmed)
    );
    assert!(stdout(&unconfirmed).contains("user_id"));
    assert!(
        stderr(&unconfirmed).contains("--yes"),
        "{}",
        stderr(&unconfirmed)
    );
    assert!(strata_ok(dir.path(), &["catalog", "list"]).contains("no tables yet"));

    let saved = json(&strata_ok(
        dir.path(),
        &["catalog", "discover", "events", "--yes", "--format", "json"],
    ));
    assert_eq!(saved["registered"][0]["table"], "events.ods_clicks");
    let rows = json(&strata_ok(
        dir.path(),
        &[
            "query",
            "SELECT sum(user_id) AS s FROM events.ods_clicks",
            "--format",
            "json",
        ],
    ));
    assert_eq!(rows, serde_json::json!([{"s": 15}]));

    let mysql = json(&strata_ok(
        dir.path(),
        &[
            "catalog", "discover", "shop_db", "--layer", "dim", "--space", "shop", "--format",
            "json",
        ],
    ));
    assert_eq!(mysql["tables"][0]["name"], "shop.users");
    assert_eq!(mysql["registered"][0]["action"], "created");
}
