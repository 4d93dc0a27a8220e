//! `strata explain`: every pipeline of the examples and every Nexmark query
//! as a graph of operators, in text, JSON and DOT; refusals with their reason.

use std::path::Path;

use strata_server::bench::nexmark::{EventSource, NexmarkOptions, QUERIES, project};

use sqlx::Connection;

use crate::support::{ShopDatabase, json, stderr, stdout, strata, strata_ok};

/// A copy of `examples/<name>` with its tables registered; the shop's
/// dimensions live in `db`, seeded as the example's seed file says.
async fn example(name: &str, db: &ShopDatabase) -> tempfile::TempDir {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    for part in ["strata.toml", "catalog", "pipelines"] {
        let status = std::process::Command::new("cp")
            .arg("-r")
            .arg(from.join(part))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let toml = dir.path().join("strata.toml");
    let config = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        config.replace("mysql://root@127.0.0.1:3306/strata_shop", &db.url),
    )
    .unwrap();
    if let Ok(seed) = std::fs::read_to_string(from.join("mysql-seed.sql")) {
        let tables = seed
            .split_once("USE strata_shop;")
            .expect("the seed chooses its database")
            .1;
        let mut conn = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(tables.to_string()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let catalog = dir.path().join("catalog");
    strata_ok(
        dir.path(),
        &["catalog", "register", catalog.to_str().unwrap()],
    );
    dir
}

fn pipelines(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for layer in std::fs::read_dir(dir.join("pipelines")).unwrap() {
        for file in std::fs::read_dir(layer.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            names.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    names.sort();
    names
}

/// Explains `name` in the three formats and checks that they agree.
fn explain(dir: &Path, name: &str) -> serde_json::Value {
    let plan = json(&strata_ok(dir, &["explain", name, "--format", "json"]));
    assert_eq!(plan["pipeline"], name, "{plan}");
    assert!(plan["refused"].is_null(), "{name}: {plan}");
    let operators = plan["operators"].as_array().unwrap();
    assert_eq!(operators.first().unwrap()["kind"], "source", "{plan}");
    assert_eq!(operators.last().unwrap()["kind"], "sink", "{plan}");
    let text = strata_ok(dir, &["explain", name, "--format", "text"]);
    let dot = strata_ok(dir, &["explain", name, "--format", "dot"]);
    assert!(dot.starts_with("digraph"), "{dot}");
    for op in operators {
        let id = op["id"].as_str().unwrap();
        for field in ["kind", "changelog", "key", "state", "inputs", "schema"] {
            assert!(op.get(field).is_some(), "{name}: {id} lacks {field}");
        }
        assert!(text.contains(id), "{name}: {id} not in\n{text}");
        assert!(
            dot.contains(&format!("\"{id}\"")),
            "{name}: {id} not in\n{dot}"
        );
        // Every input is an operator before it: the graph flows one way.
        for input in op["inputs"].as_array().unwrap() {
            let at = operators.iter().position(|o| o["id"] == *input).unwrap();
            let here = operators.iter().position(|o| o["id"] == op["id"]).unwrap();
            assert!(at < here, "{name}: {input} feeds {id} from after it");
        }
    }
    plan
}

fn operator<'a>(plan: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    plan["operators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {plan}"))
}

#[tokio::test]
async fn every_example_pipeline_is_explained_with_its_changelogs_keys_and_state() {
    let db = ShopDatabase::create().await;
    for example_name in ["shop", "iot"] {
        let dir = example(example_name, &db).await;
        let names = pipelines(dir.path());
        assert!(names.len() >= 2, "{names:?}");
        for name in &names {
            explain(dir.path(), name);
        }
    }
    let shop = example("shop", &db).await;
    // A per-minute window: appends closed windows, keeps open ones in state.
    let gmv = explain(shop.path(), "dws_city_gmv_1m");
    let aggregate = operator(&gmv, "window_aggregate");
    assert_eq!(aggregate["id"], "aggregate");
    assert_eq!(aggregate["changelog"], "append_only");
    assert!(
        aggregate["state"]["fingerprint"]
            .as_str()
            .unwrap()
            .contains("Sum"),
        "{aggregate}"
    );
    assert_eq!(operator(&gmv, "source")["watermark"], "order_time");
    // A lookup join keeps no state of its own; the path of a file names the pipeline too.
    let orders = explain(shop.path(), "dwd_orders");
    assert!(
        operator(&orders, "lookup_join")["state"].is_null(),
        "{orders}"
    );
    let by_path = json(&strata_ok(
        shop.path(),
        &[
            "explain",
            shop.path()
                .join("pipelines/dwd/dwd_orders.sql")
                .to_str()
                .unwrap(),
            "--format",
            "json",
        ],
    ));
    assert_eq!(by_path["operators"], orders["operators"]);

    let iot = example("iot", &db).await;
    let transitions = explain(iot.path(), "app_alarm_transitions");
    let lag = operator(&transitions, "lag");
    assert_eq!(lag["id"], "lag-1");
    assert!(
        lag["state"]["holds"]
            .as_str()
            .unwrap()
            .contains("partition")
    );
}

#[tokio::test]
async fn every_nexmark_query_is_explained() {
    for query in QUERIES {
        let dir = tempfile::tempdir().unwrap();
        let options = NexmarkOptions {
            events: 1_000,
            rate: 1_000,
            source: EventSource::Gen,
            progress: false,
            state_memory_mb: None,
        };
        project(dir.path(), query, options, None).await.unwrap();
        let plan = explain(dir.path(), query.name);
        let windowed = plan["operators"]
            .as_array()
            .unwrap()
            .iter()
            .any(|op| op["kind"] == "window_assign" || op["kind"] == "window_aligned");
        assert_eq!(windowed, query.is_windowed(), "{plan}");
    }
}

#[tokio::test]
async fn a_refused_pipeline_is_explained_with_its_reason_and_an_unknown_one_with_the_names() {
    let db = ShopDatabase::create().await;
    let dir = example("shop", &db).await;
    let file = dir.path().join("pipelines/dws/dws_city_gmv_1m.sql");
    let sql = std::fs::read_to_string(&file).unwrap();
    let refused_sql = sql.replacen("SUM(", "STDDEV(", 1);
    assert_ne!(refused_sql, sql);
    std::fs::write(&file, refused_sql).unwrap();
    let refused = strata(
        dir.path(),
        &["explain", "dws_city_gmv_1m", "--format", "json"],
    );
    assert!(!refused.status.success());
    let plan = json(&stdout(&refused));
    assert_eq!(plan["operators"], serde_json::json!([]));
    let reason = plan["refused"].as_str().unwrap();
    assert!(reason.contains("STDDEV"), "{reason}");
    let text = strata(dir.path(), &["explain", "dws_city_gmv_1m"]);
    assert!(!text.status.success());
    assert!(stderr(&text).contains("is refused"), "{}", stderr(&text));

    let unknown = strata(dir.path(), &["explain", "no_such_pipeline"]);
    assert!(!unknown.status.success());
    let err = stderr(&unknown);
    assert!(
        err.contains("no pipeline is named no_such_pipeline") && err.contains("dwd_orders"),
        "{err}"
    );
}

/// A project whose Kafka connection goes nowhere, with `catalog` as its catalog file.
fn project_with(catalog: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("strata.toml"),
        "[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"127.0.0.1:9\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("catalog")).unwrap();
    std::fs::write(dir.path().join("catalog/shop.sql"), catalog).unwrap();
    dir
}

#[test]
fn an_operator_that_cannot_read_a_changelog_is_named_in_the_plan() {
    let dir = project_with("CREATE TABLE shop.ods_orders (order_id BIGINT, amount BIGINT, city STRING,
           PRIMARY KEY (order_id) NOT ENFORCED)
         WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'debezium-json', 'connection' = 'events');
         CREATE TABLE shop.dws_city_amounts (city STRING, top BIGINT, PRIMARY KEY (city) NOT ENFORCED)
         WITH ('connector' = 'delta');");
    std::fs::create_dir_all(dir.path().join("pipelines/dws")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/dws/dws_city_amounts.sql"),
        "INSERT INTO shop.dws_city_amounts SELECT city, CAST(APPROX_DISTINCT(amount) AS BIGINT) FROM shop.ods_orders GROUP BY city",
    )
    .unwrap();
    let catalog = dir.path().join("catalog");
    strata_ok(
        dir.path(),
        &["catalog", "register", catalog.to_str().unwrap()],
    );
    let refused = strata(
        dir.path(),
        &["explain", "dws_city_amounts", "--format", "json"],
    );
    assert!(!refused.status.success());
    let plan = json(&stdout(&refused));
    assert_eq!(operator(&plan, "source")["changelog"], "retracting");
    let aggregate = operator(&plan, "group_aggregate");
    let why = aggregate["refused"].as_str().unwrap();
    assert!(why.contains("APPROX_DISTINCT over a changelog"), "{plan}");
    assert!(operator(&plan, "sink")["refused"].is_null(), "{plan}");
    let reason = plan["refused"].as_str().unwrap();
    assert!(
        reason.starts_with("operator aggregate: APPROX_DISTINCT"),
        "{reason}"
    );
    // The same SQL with MAX reads the changelog: every update is taken back out.
    std::fs::write(
        dir.path().join("pipelines/dws/dws_city_amounts.sql"),
        "INSERT INTO shop.dws_city_amounts SELECT city, MAX(amount) FROM shop.ods_orders GROUP BY city",
    )
    .unwrap();
    let plan = json(&strata_ok(
        dir.path(),
        &["explain", "dws_city_amounts", "--format", "json"],
    ));
    assert!(plan["refused"].is_null(), "{plan}");
    assert_eq!(operator(&plan, "group_aggregate")["changelog"], "upsert");
}

/// A statement set's INSERTs are pipelines of their own: each is explained by
/// its name, and the file's path lists them.
#[test]
fn a_statement_set_is_explained_pipeline_by_pipeline() {
    let dir = project_with("CREATE TABLE shop.ods_orders (order_id BIGINT, amount BIGINT, status STRING)
         WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json', 'connection' = 'events');
         CREATE TABLE shop.dwd_paid_orders (order_id BIGINT, amount BIGINT) WITH ('connector' = 'delta');
         CREATE TABLE shop.dwd_big_orders (order_id BIGINT, amount BIGINT) WITH ('connector' = 'delta');");
    std::fs::create_dir_all(dir.path().join("pipelines/dwd")).unwrap();
    let file = dir.path().join("pipelines/dwd/orders.sql");
    std::fs::write(
        &file,
        "CREATE TEMPORARY VIEW paid AS SELECT order_id, amount FROM shop.ods_orders WHERE status = 'paid';
         EXECUTE STATEMENT SET
         BEGIN
           INSERT INTO shop.dwd_paid_orders SELECT order_id, amount FROM paid;
           INSERT INTO shop.dwd_big_orders SELECT order_id, amount FROM paid WHERE amount > 100;
         END;",
    )
    .unwrap();
    let catalog = dir.path().join("catalog");
    strata_ok(
        dir.path(),
        &["catalog", "register", catalog.to_str().unwrap()],
    );
    // The first INSERT keeps the file's name; the second is named after its table too.
    let first = json(&strata_ok(
        dir.path(),
        &["explain", "orders", "--format", "json"],
    ));
    assert_eq!(first["target"], "shop.dwd_paid_orders", "{first}");
    let second = json(&strata_ok(
        dir.path(),
        &["explain", "orders.dwd_big_orders", "--format", "json"],
    ));
    assert_eq!(second["target"], "shop.dwd_big_orders", "{second}");
    assert!(second["refused"].is_null(), "{second}");
    let by_file = strata(dir.path(), &["explain", file.to_str().unwrap()]);
    assert!(!by_file.status.success());
    let err = stderr(&by_file);
    assert!(
        err.contains("holds a statement set of 2 pipelines")
            && err.contains("orders, orders.dwd_big_orders"),
        "{err}"
    );
}
