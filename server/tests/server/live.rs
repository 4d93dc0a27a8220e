//! History and realtime as one table: queries while pipelines commit see every
//! row exactly once, whether it is committed or not, checked against the
//! order each partition's records were written in.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use rdkafka::mocking::MockCluster;
use strata_catalog::{Catalog, Principal, Project, RegisterMode};
use strata_server::query::{QueryEngine, QueryOptions, QueryOutput};
use strata_server::run::{Registry, RunOptions, run_project};

use crate::support::produce_to;

const CATALOG: &str = "
CREATE TABLE shop.ods_orders (order_id BIGINT NOT NULL, user_id BIGINT, amount DECIMAL(10, 2), city STRING)
WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
      'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.dwd_orders (order_id BIGINT NOT NULL, user_id BIGINT, amount DECIMAL(10, 2), city STRING)
WITH ('connector' = 'delta');
CREATE TABLE shop.dws_city_totals (city STRING, orders BIGINT, PRIMARY KEY (city) NOT ENFORCED)
WITH ('connector' = 'delta');
";

const PARTITIONS: i64 = 4;

/// Every 97th record is malformed and every 11th is filtered out; the rest reach dwd_orders.
fn payload(id: i64) -> String {
    if id % 97 == 0 {
        return format!("{{\"order_id\": {id}, broken");
    }
    let amount = if id % 11 == 0 { "0.00" } else { "3.50" };
    // A user orders in several cities.
    format!(
        r#"{{"order_id": {id}, "user_id": {}, "amount": "{amount}", "city": "c{}"}}"#,
        id % 37,
        id % 5
    )
}

fn reaches_dwd(id: i64) -> bool {
    id % 97 != 0 && id % 11 != 0
}

async fn project(bootstrap: &str) -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("strata.toml"),
        format!(
            "[engine]\ncommit-interval-ms = 300\nbatch-records = 20\n[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"
        ),
    )
    .unwrap();
    for (layer, name, sql) in [
        (
            "dwd",
            "dwd_orders",
            "INSERT INTO shop.dwd_orders SELECT order_id, user_id, amount, city FROM shop.ods_orders WHERE amount > 0",
        ),
        (
            "dws",
            "dws_city_totals",
            "INSERT INTO shop.dws_city_totals SELECT city, COUNT(*) FROM shop.ods_orders WHERE amount > 0 GROUP BY city",
        ),
    ] {
        let folder = dir.path().join("pipelines").join(layer);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{name}.sql")), sql).unwrap();
    }
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    catalog
        .register_sql("catalog.sql", CATALOG, RegisterMode::Create)
        .await
        .unwrap();
    (dir, catalog)
}

/// A Kafka mock cluster with the orders topic, and the project reading it.
async fn started() -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    tempfile::TempDir,
    Catalog,
) {
    let cluster = MockCluster::new(1).unwrap();
    cluster
        .create_topic("orders", PARTITIONS as i32, 1)
        .unwrap();
    let (dir, catalog) = project(&cluster.bootstrap_servers()).await;
    (cluster, dir, catalog)
}

fn int_column(output: &QueryOutput, name: &str) -> Vec<i64> {
    output
        .batches
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name(name).unwrap();
            let column = arrow::compute::cast(column, &arrow::datatypes::DataType::Int64).unwrap();
            column.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect()
}

fn flags(output: &QueryOutput) -> Option<Vec<bool>> {
    output.schema.index_of("_provisional").ok()?;
    Some(
        output
            .batches
            .iter()
            .flat_map(|b| {
                let column = b
                    .column_by_name("_provisional")
                    .unwrap()
                    .as_boolean()
                    .clone();
                (0..column.len()).map(move |i| column.value(i))
            })
            .collect(),
    )
}

/// The one number `sql` answers, over the committed tables.
async fn count(catalog: &Catalog, sql: &str) -> i64 {
    let result = catalog.query(sql).await.unwrap();
    result.batches[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .value(0)
}

/// Per partition, the ids seen are the first ones written to it: no gaps.
fn assert_prefixes(written: &BTreeMap<i64, Vec<i64>>, seen: &HashSet<i64>) {
    for (partition, expected) in written {
        let in_partition: HashSet<i64> = seen
            .iter()
            .copied()
            .filter(|id| id % PARTITIONS == *partition)
            .collect();
        let prefix: HashSet<i64> = expected[..in_partition.len().min(expected.len())]
            .iter()
            .copied()
            .collect();
        assert_eq!(
            in_partition, prefix,
            "partition {partition}: a gap in the rows seen"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_commits_see_each_row_once_with_open_groups_marked() {
    let (cluster, _dir, catalog) = started().await;
    let bootstrap = cluster.bootstrap_servers();
    let registry = Registry::default();
    let engine = QueryEngine::new(catalog.clone(), registry.clone());
    let admin = Principal::admin();
    let total: i64 = 2000;
    // Records arrive while the pipelines commit every 300 ms.
    let producer = tokio::spawn({
        let bootstrap = bootstrap.clone();
        async move {
            for chunk in (0..total).collect::<Vec<_>>().chunks(50) {
                let records: Vec<(i32, String)> = chunk
                    .iter()
                    .map(|&id| ((id % PARTITIONS) as i32, payload(id)))
                    .collect();
                produce_to(&bootstrap, "orders", &records).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let run = tokio::spawn({
        let (catalog, registry) = (catalog.clone(), registry.clone());
        async move {
            let options = RunOptions {
                duration: Some(Duration::from_secs(10)),
                until_idle: false,
                progress: false,
            };
            run_project(&catalog, options, &registry).await.unwrap()
        }
    });

    // Per partition, the ids that reach dwd_orders in the order they were written.
    let written: BTreeMap<i64, Vec<i64>> = (0..PARTITIONS)
        .map(|p| {
            let ids = (0..total)
                .filter(|id| id % PARTITIONS == p && reaches_dwd(*id))
                .collect();
            (p, ids)
        })
        .collect();
    let (mut live_reads, mut ahead_of_commits, mut provisional_seen) = (0, 0, 0);
    let mut last_totals: BTreeMap<i64, i64> = BTreeMap::new();
    let mut observed: Vec<HashSet<i64>> = Vec::new();
    while !run.is_finished() {
        let orders = engine
            .run(
                "SELECT * FROM shop.dwd_orders",
                &admin,
                QueryOptions::default(),
            )
            .await
            .unwrap();
        let ids = int_column(&orders, "order_id");
        let unique: HashSet<i64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "a row seen twice");
        assert_prefixes(&written, &unique);
        observed.push(unique);
        if let Some(flags) = flags(&orders) {
            if live_reads == 0 {
                // An INSERT while the pipeline writes the table names its own columns, not the view's flag.
                let inserted = engine
                    .run(
                        "INSERT INTO shop.dwd_orders VALUES (-1, 1, 1.00, 'c0')",
                        &admin,
                        QueryOptions::default(),
                    )
                    .await
                    .unwrap();
                assert_eq!(inserted.row_count(), 1);
            }
            live_reads += 1;
            assert!(
                flags.iter().all(|f| !f),
                "appended rows are never provisional"
            );
            let committed = count(&catalog, "SELECT count(*) FROM shop.dwd_orders").await;
            if ids.len() as i64 > committed {
                ahead_of_commits += 1;
            }
        }

        let totals = engine
            .run(
                "SELECT * FROM shop.dws_city_totals",
                &admin,
                QueryOptions::default(),
            )
            .await
            .unwrap();
        let cities: Vec<String> = totals
            .batches
            .iter()
            .flat_map(|b| {
                let c = b.column_by_name("city").unwrap();
                let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap();
                let c = c.as_string::<i32>().clone();
                (0..c.len()).map(move |i| c.value(i).to_string())
            })
            .collect();
        let unique: HashSet<&String> = cities.iter().collect();
        assert_eq!(unique.len(), cities.len(), "a key seen twice: {cities:?}");
        let counts = int_column(&totals, "orders");
        for (city, count) in cities.iter().zip(&counts) {
            let key: i64 = city[1..].parse().unwrap();
            let before = last_totals.insert(key, *count).unwrap_or(0);
            assert!(
                *count >= before,
                "{city} went back from {before} to {count}"
            );
        }
        if flags(&totals).is_some_and(|f| f.contains(&true)) {
            provisional_seen += 1;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    producer.await.unwrap();
    run.await.unwrap();

    // The committed table, read with no pipeline running: every row seen was committed.
    let committed = catalog
        .query("SELECT order_id FROM shop.dwd_orders")
        .await
        .unwrap();
    let committed: HashSet<i64> = int_column(
        &QueryOutput {
            schema: committed.schema,
            batches: committed.batches,
            truncated: false,
        },
        "order_id",
    )
    .into_iter()
    .collect();
    assert_prefixes(&written, &committed);
    assert!(committed.contains(&-1), "the inserted row was committed");
    assert!(
        committed.len() > 300,
        "the run read only {} rows",
        committed.len()
    );
    for seen in &observed {
        assert!(seen.is_subset(&committed), "a row seen was never committed");
    }
    assert!(
        live_reads >= 5,
        "only {live_reads} reads met the running pipeline"
    );
    assert!(
        ahead_of_commits > 0,
        "no read saw a row before its commit ({live_reads} live reads)"
    );
    assert!(
        provisional_seen > 0,
        "no read saw a group's uncommitted value"
    );
}

/// Reads a subscription's messages until the pipeline ends, keeping what a
/// dashboard would show: rows by key (keyed tables) and the last distinct count.
async fn watch(
    address: std::net::SocketAddr,
    token: String,
    subscription: serde_json::Value,
    reselect: Option<serde_json::Value>,
) -> (
    BTreeMap<String, serde_json::Value>,
    Option<serde_json::Value>,
    usize,
) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("ws://{address}/api/v1/subscribe?token={token}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket
        .send(Message::Text(subscription.to_string().into()))
        .await
        .unwrap();
    let (mut rows, mut distinct, mut changes) = (BTreeMap::new(), None, 0);
    while let Some(message) = socket.next().await {
        let Message::Text(text) = message.unwrap() else {
            continue;
        };
        let message: serde_json::Value = serde_json::from_str(&text).unwrap();
        let city = |row: &serde_json::Value| row["city"].as_str().unwrap().to_string();
        match message["type"].as_str().unwrap() {
            "snapshot" => {
                rows = message["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|row| (city(row), row.clone()))
                    .collect();
            }
            "upsert" => {
                changes += 1;
                for row in message["rows"].as_array().unwrap() {
                    rows.insert(city(row), row.clone());
                }
            }
            "delete" => {
                changes += 1;
                for row in message["rows"].as_array().unwrap() {
                    rows.remove(&city(row));
                }
            }
            "distinct" => {
                changes += 1;
                if changes == 2
                    && let Some(values) = &reselect
                {
                    socket
                        .send(Message::Text(values.to_string().into()))
                        .await
                        .unwrap();
                }
                distinct = Some(message);
            }
            "ended" => break,
            "error" => panic!("the subscription failed: {message}"),
            _ => {}
        }
    }
    (rows, distinct, changes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_a_snapshot_then_every_change_and_exact_distinct_counts() {
    let (cluster, _dir, catalog) = started().await;
    let bootstrap = cluster.bootstrap_servers();
    let registry = Registry::default();
    let token = strata_server::serve::admin_token(&catalog).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router =
        strata_server::api::router_for(QueryEngine::new(catalog.clone(), registry.clone()));
    tokio::spawn(axum::serve(listener, router).into_future());

    let first: Vec<(i32, String)> = (0..200)
        .map(|id| ((id % PARTITIONS) as i32, payload(id)))
        .collect();
    produce_to(&bootstrap, "orders", &first).await;
    let run = tokio::spawn({
        let (catalog, registry) = (catalog.clone(), registry.clone());
        async move {
            let options = RunOptions {
                duration: Some(Duration::from_secs(10)),
                until_idle: false,
                progress: false,
            };
            run_project(&catalog, options, &registry).await.unwrap()
        }
    });
    // Subscribe once both pipelines write their tables.
    while ["shop.dwd_orders", "shop.dws_city_totals"].iter().any(|t| {
        registry
            .stats(t)
            .is_none_or(|s| s.live.snapshot().is_none())
    }) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let totals = tokio::spawn(watch(
        address,
        token.clone(),
        serde_json::json!({"table": "shop.dws_city_totals", "filter": "city IN ('c1', 'c2')"}),
        None,
    ));
    let users = tokio::spawn(watch(
        address,
        token.clone(),
        serde_json::json!({"table": "shop.dwd_orders", "distinct": "user_id", "by": "city", "values": ["c1", "c2"]}),
        Some(serde_json::json!({"values": ["c1", "c2", "c3"]})),
    ));
    for chunk in (200..1200).collect::<Vec<i64>>().chunks(100) {
        let records: Vec<(i32, String)> = chunk
            .iter()
            .map(|&id| ((id % PARTITIONS) as i32, payload(id)))
            .collect();
        produce_to(&bootstrap, "orders", &records).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    run.await.unwrap();
    let (rows, _, changes) = totals.await.unwrap();
    let (_, distinct, distinct_changes) = users.await.unwrap();

    // What the subscriber holds when the pipeline ends is the committed table.
    let committed = catalog
        .query("SELECT city, orders FROM shop.dws_city_totals WHERE city IN ('c1', 'c2') ORDER BY city")
        .await
        .unwrap();
    let expected = strata_server::views::batches_to_json_rows(&committed.batches).unwrap();
    let held: Vec<serde_json::Value> = rows
        .values()
        .map(|row| serde_json::json!({"city": row["city"], "orders": row["orders"]}))
        .collect();
    assert_eq!(serde_json::Value::Array(held), expected);
    assert!(changes > 1, "only {changes} changes arrived");
    assert!(
        rows.values().all(|row| row["_provisional"] == false),
        "a value stayed provisional after the last commit: {rows:?}"
    );

    let union = count(
        &catalog,
        "SELECT count(DISTINCT user_id) FROM shop.dwd_orders WHERE city IN ('c1', 'c2', 'c3')",
    )
    .await;
    let distinct = distinct.expect("distinct counts arrived");
    assert!(
        distinct_changes > 2,
        "only {distinct_changes} distinct counts arrived"
    );
    assert_eq!(distinct["count"], union, "{distinct}");
    let per_city = catalog
        .query("SELECT city, count(DISTINCT user_id) AS n FROM shop.dwd_orders WHERE city IN ('c1', 'c2', 'c3') GROUP BY city ORDER BY city")
        .await
        .unwrap();
    let per_city = strata_server::views::batches_to_json_rows(&per_city.batches).unwrap();
    for row in per_city.as_array().unwrap() {
        assert_eq!(
            distinct["by"][row["city"].as_str().unwrap()],
            row["n"],
            "{distinct}"
        );
    }
    assert!(
        union
            < distinct["by"]
                .as_object()
                .unwrap()
                .values()
                .map(|n| n.as_i64().unwrap())
                .sum::<i64>()
    );
}
