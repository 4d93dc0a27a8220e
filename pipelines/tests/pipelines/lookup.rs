//! Lookup joins end to end, against the real MariaDB and the Kafka mock
//! cluster: the result equals a brute-force join whatever the arrival order,
//! a dimension row updated mid-stream is seen after the cache's TTL, a
//! database outage holds rows back (neither dropped nor NULL-filled) and
//! marks the pipeline degraded, and rows waiting for a retry survive a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::util::display::{ArrayFormatter, FormatOptions};
use rdkafka::mocking::MockCluster;
use sqlx::Connection;
use strata_catalog::{Catalog, Project, RegisterMode};
use strata_pipelines::{PipelineRun, RunMode, TableStats, load_project};

use crate::ingest::{produce, run_to_end};
use strata_tests::databases::MysqlDatabase;

const ORDERS: &str = "
CREATE TABLE shop.ods_orders (order_id BIGINT, user_id BIGINT, proc_time AS PROCTIME())
WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
      'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.dwd_orders (order_id BIGINT, user_id BIGINT, user_name STRING, city STRING)
WITH ('connector' = 'delta');
";

/// A project whose `dim` connection reaches `dim_url`, with `shop.dim_users`
/// declared with `lookup_options`, and the pipeline `select`.
async fn project(
    bootstrap: &str,
    dim_url: &str,
    lookup_options: &str,
    select: &str,
) -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("strata.toml"),
        format!(
            "[engine]\ncommit-interval-ms = 100\nbatch-records = 64\n[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n[connections.dim]\nkind = \"mysql\"\nurl = \"{dim_url}\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines/dwd")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/dwd/dwd_orders.sql"),
        format!("INSERT INTO shop.dwd_orders {select}"),
    )
    .unwrap();
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    let dim = format!(
        "CREATE TABLE shop.dim_users (id BIGINT, name STRING, city STRING, tier INT, PRIMARY KEY (id) NOT ENFORCED)
         WITH ('connector' = 'mysql', 'connection' = 'dim', 'table-name' = 'users'{lookup_options});"
    );
    catalog
        .register_sql(
            "catalog.sql",
            &format!("{ORDERS}{dim}"),
            RegisterMode::Create,
        )
        .await
        .unwrap();
    (dir, catalog)
}

/// A MariaDB database with `users`, a one-partition `orders` topic, and a
/// project over them running `select` (see [`project`]).
struct Fixture {
    url: String,
    _db: MysqlDatabase,
    bootstrap: String,
    catalog: Catalog,
    _dir: tempfile::TempDir,
    _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
}

async fn fixture(
    name: &str,
    users: &[(i64, &str, &str, i32)],
    lookup_options: &str,
    select: &str,
) -> Fixture {
    let db = MysqlDatabase::create(name).await;
    let url = db.url.clone();
    users_table(&url, users).await;
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (dir, catalog) = project(&bootstrap, &url, lookup_options, select).await;
    Fixture {
        url,
        _db: db,
        bootstrap,
        catalog,
        _dir: dir,
        _cluster: cluster,
    }
}

async fn mysql(url: &str, sql: &str) {
    let mut conn = sqlx::MySqlConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn users_table(url: &str, users: &[(i64, &str, &str, i32)]) {
    mysql(
        url,
        "CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(32), city VARCHAR(32), tier INT)",
    )
    .await;
    for chunk in users.chunks(100) {
        let values: Vec<String> = chunk
            .iter()
            .map(|(id, name, city, tier)| format!("({id}, '{name}', '{city}', {tier})"))
            .collect();
        mysql(
            url,
            &format!("INSERT INTO users VALUES {}", values.join(", ")),
        )
        .await;
    }
}

fn order(order_id: i64, user_id: Option<i64>) -> String {
    match user_id {
        Some(user) => format!(r#"{{"order_id": {order_id}, "user_id": {user}}}"#),
        None => format!(r#"{{"order_id": {order_id}, "user_id": null}}"#),
    }
}

/// Every row of a query, each as its columns' text.
pub(crate) async fn rows(catalog: &Catalog, sql: &str) -> Vec<Vec<String>> {
    let result = catalog.query(sql).await.unwrap();
    let mut out = Vec::new();
    for batch in &result.batches {
        let options = FormatOptions::default().with_null("NULL");
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    out
}

/// Runs the project's pipeline until `stop` is sent; its stats and handle.
pub(crate) fn start(
    catalog: &Catalog,
    pipeline: strata_pipelines::ValidPipeline,
) -> (
    Arc<TableStats>,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<strata_pipelines::Result<()>>,
) {
    let stats = Arc::new(TableStats::new());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let run = PipelineRun {
        catalog: catalog.clone(),
        pipeline,
        stats: stats.clone(),
        mode: RunMode::Continuous,
        quality: Default::default(),
        replay: None,
    };
    (stats, stop, tokio::spawn(run.run(stop_rx)))
}

pub(crate) async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn committed(stats: &TableStats) -> u64 {
    stats.rows_committed.load(Ordering::Relaxed)
}

/// A deterministic shuffle (the same `seed` gives the same order).
fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut keyed: Vec<(u64, T)> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
            x ^= x >> 31;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            (x ^ (x >> 29), item.clone())
        })
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, item)| item).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_join_equals_a_brute_force_join_in_every_arrival_order() {
    let db = MysqlDatabase::create("lookup_reference").await;
    let url = db.url.clone();
    let names = ["ann", "bob", "cy", "dee", "eve"];
    let cities = ["beijing", "shanghai", "wuhan"];
    let users: Vec<(i64, &str, &str, i32)> = (1..=40)
        .map(|id| {
            (
                id,
                names[id as usize % names.len()],
                cities[id as usize % cities.len()],
                (id % 3) as i32,
            )
        })
        .collect();
    users_table(&url, &users).await;
    // Half the orders come from one hot user; users 41 to 50 do not exist; some have no user.
    let orders: Vec<(i64, Option<i64>)> = (1..=400)
        .map(|id: i64| {
            let user = match id % 10 {
                0 => None,
                1..=5 => Some(1),
                _ => Some((id * 7919) % 50 + 1),
            };
            (id, user)
        })
        .collect();
    let by_id: BTreeMap<i64, &(i64, &str, &str, i32)> = users.iter().map(|u| (u.0, u)).collect();
    let reference: Vec<Vec<String>> = orders
        .iter()
        .map(|(id, user)| {
            let matched = user
                .and_then(|u| by_id.get(&u))
                .filter(|(_, _, _, tier)| *tier != 2);
            vec![
                id.to_string(),
                user.map_or("NULL".to_string(), |u| u.to_string()),
                matched.map_or("NULL".to_string(), |u| u.1.to_string()),
                matched.map_or("NULL".to_string(), |u| u.2.to_string()),
            ]
        })
        .collect();
    for seed in [1, 2, 3] {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("orders", 3, 1).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        let (_dir, catalog) = project(
            &bootstrap,
            &url,
            ", 'lookup.batch-size' = '16'",
            "SELECT o.order_id, o.user_id, u.name, u.city FROM shop.ods_orders AS o
             LEFT JOIN shop.dim_users FOR SYSTEM_TIME AS OF o.proc_time AS u
               ON o.user_id = u.id AND u.tier <> 2",
        )
        .await;
        let arrivals: Vec<(i32, String)> = shuffled(&orders, seed)
            .iter()
            .enumerate()
            .map(|(i, (id, user))| ((i % 3) as i32, order(*id, *user)))
            .collect();
        produce(&bootstrap, &arrivals).await;
        let pipeline = load_project(&catalog).await.unwrap().remove(0);
        let stats = run_to_end(&catalog, pipeline).await;
        let got = rows(
            &catalog,
            "SELECT order_id, user_id, user_name, city FROM shop.dwd_orders ORDER BY order_id",
        )
        .await;
        assert_eq!(got, reference, "arrival order {seed}");
        let lookup = &stats.lookup_stats()[0];
        // Each distinct key is fetched once (a miss is cached too), 16 keys a query at most.
        let distinct: std::collections::BTreeSet<i64> =
            orders.iter().filter_map(|(_, user)| *user).collect();
        let fetched =
            lookup.keys.load(Ordering::Relaxed) - lookup.cache_hits.load(Ordering::Relaxed);
        assert_eq!(fetched as usize, distinct.len(), "arrival order {seed}");
        let queries = lookup.queries.load(Ordering::Relaxed) as usize;
        assert!(
            queries >= distinct.len().div_ceil(16) && queries < distinct.len(),
            "{queries} queries for {} keys",
            distinct.len()
        );
        assert_eq!(lookup.rows.load(Ordering::Relaxed), 400);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dimension_row_updated_mid_stream_is_read_after_the_cache_ttl() {
    let Fixture {
        url,
        bootstrap,
        catalog,
        ..
    } = &fixture(
        "lookup_update",
        &[(1, "ann", "beijing", 0)],
        ", 'lookup.cache.ttl' = '300 ms'",
        "SELECT o.order_id, o.user_id, u.name, u.city FROM shop.ods_orders AS o
         JOIN shop.dim_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id",
    )
    .await;
    let pipeline = load_project(catalog).await.unwrap().remove(0);
    let (stats, stop, handle) = start(catalog, pipeline);
    produce(bootstrap, &[(0, order(1, Some(1)))]).await;
    wait_for("the first order", || committed(&stats) == 1).await;
    mysql(url, "UPDATE users SET city = 'hangzhou' WHERE id = 1").await;
    produce(bootstrap, &[(0, order(2, Some(1)))]).await;
    wait_for("the second order", || committed(&stats) == 2).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    produce(bootstrap, &[(0, order(3, Some(1)))]).await;
    wait_for("the third order", || committed(&stats) == 3).await;
    stop.send(true).unwrap();
    handle.await.unwrap().unwrap();
    let got = rows(
        catalog,
        "SELECT order_id, city FROM shop.dwd_orders ORDER BY order_id",
    )
    .await;
    let cities: Vec<&str> = got.iter().map(|r| r[1].as_str()).collect();
    // Order 2 may still see the cached row (it came within the TTL); order 3 came after it.
    assert_eq!(cities[0], "beijing");
    assert!(["beijing", "hangzhou"].contains(&cities[1]), "{cities:?}");
    assert_eq!(cities[2], "hangzhou");
}

/// A TCP proxy to MariaDB that can be cut and restored, to take the
/// database away from one pipeline without stopping it for everyone else.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    /// Both ends of every open connection, to shut them when cut.
    connections: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (accept_up, accept_connections) = (up.clone(), connections.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if !accept_up.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect("127.0.0.1:3306") else {
                    continue;
                };
                let mut open = accept_connections.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self {
            port,
            up,
            connections,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for stream in self.connections.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_holds_rows_back_without_losing_or_nulling_them() {
    let db = MysqlDatabase::create("lookup_outage").await;
    let url = db.url.clone();
    users_table(&url, &[(1, "ann", "beijing", 0), (2, "bob", "shanghai", 0)]).await;
    let proxy = Proxy::start();
    let database = url.rsplit('/').next().unwrap();
    let proxied = format!("mysql://root@127.0.0.1:{}/{database}", proxy.port);
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (_dir, catalog) = project(
        &bootstrap,
        &proxied,
        "",
        "SELECT /*+ LOOKUP('table'='u', 'timeout'='1s') */ o.order_id, o.user_id, u.name, u.city
         FROM shop.ods_orders AS o
         LEFT JOIN shop.dim_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id",
    )
    .await;
    let pipeline = load_project(&catalog).await.unwrap().remove(0);
    let (stats, stop, handle) = start(&catalog, pipeline);
    produce(&bootstrap, &[(0, order(1, Some(1)))]).await;
    wait_for("the first order", || committed(&stats) == 1).await;

    proxy.cut();
    produce(&bootstrap, &[(0, order(2, Some(2)))]).await;
    wait_for("the pipeline to report itself degraded", || {
        stats.degraded().is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        committed(&stats),
        1,
        "nothing is committed without its dimension row"
    );
    assert_eq!(stats.quarantined_rows.load(Ordering::Relaxed), 0);
    let reason = stats.degraded().unwrap();
    assert!(
        reason.contains("u (shop.dim_users)") || reason.contains("shop.dim_users"),
        "{reason}"
    );

    proxy.restore();
    wait_for("the held-back order", || committed(&stats) == 2).await;
    assert_eq!(stats.degraded(), None);
    stop.send(true).unwrap();
    handle.await.unwrap().unwrap();
    let got = rows(
        &catalog,
        "SELECT order_id, user_name, city FROM shop.dwd_orders ORDER BY order_id",
    )
    .await;
    assert_eq!(
        got,
        vec![
            vec!["1".to_string(), "ann".into(), "beijing".into()],
            vec!["2".to_string(), "bob".into(), "shanghai".into()],
        ]
    );
    assert!(stats.lookup_stats()[0].failures.load(Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_waiting_for_a_retry_survives_a_restart() {
    let Fixture {
        url,
        bootstrap,
        catalog,
        ..
    } = &fixture(
        "lookup_retry",
        &[(1, "ann", "beijing", 0)],
        "",
        "SELECT /*+ LOOKUP('table'='u', 'miss'='retry', 'fixed-delay'='200ms', 'max-attempts'='1000') */
           o.order_id, o.user_id, u.name, u.city
         FROM shop.ods_orders AS o
         JOIN shop.dim_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id",
    )
    .await;
    // User 7 arrives in the dimension after the order that needs it.
    produce(bootstrap, &[(0, order(1, Some(7))), (0, order(2, Some(1)))]).await;
    let pipeline = load_project(catalog).await.unwrap().remove(0);
    let (stats, stop, handle) = start(catalog, pipeline);
    wait_for("the order whose user exists", || committed(&stats) == 1).await;
    wait_for("a few retries", || {
        stats.lookup_stats()[0].misses.load(Ordering::Relaxed) >= 3
    })
    .await;
    stop.send(true).unwrap();
    handle.await.unwrap().unwrap();
    assert_eq!(stats.quarantined_rows.load(Ordering::Relaxed), 0);

    mysql(url, "INSERT INTO users VALUES (7, 'gus', 'xian', 0)").await;
    let pipeline = load_project(catalog).await.unwrap().remove(0);
    let (stats, stop, handle) = start(catalog, pipeline);
    wait_for("the retried order, after the restart", || {
        committed(&stats) == 1
    })
    .await;
    stop.send(true).unwrap();
    handle.await.unwrap().unwrap();
    let got = rows(
        catalog,
        "SELECT order_id, user_name FROM shop.dwd_orders ORDER BY order_id",
    )
    .await;
    assert_eq!(
        got,
        vec![
            vec!["1".to_string(), "gus".into()],
            vec!["2".to_string(), "ann".into()],
        ]
    );
}

/// Sends `(key, payload)` records to `topic` (a `None` payload is a tombstone).
async fn send(bootstrap: &str, topic: &str, records: &[(&str, Option<&str>)]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for (key, payload) in records {
        let mut record = FutureRecord::<str, str>::to(topic).partition(0).key(key);
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        producer.send(record, Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_table_follows_its_topic_while_the_pipeline_runs() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    cluster.create_topic("region_names", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("strata.toml"),
        format!(
            "[engine]\ncommit-interval-ms = 50\nbatch-records = 64\n[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines/dwd")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/dwd/dwd_order_regions.sql"),
        "INSERT INTO shop.dwd_order_regions SELECT o.order_id, n.label FROM shop.ods_orders AS o
         LEFT JOIN shop.dim_region_names FOR SYSTEM_TIME AS OF o.proc_time AS n ON o.region = n.region",
    )
    .unwrap();
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    catalog
        .register_sql(
            "catalog.sql",
            "CREATE TABLE shop.ods_orders (order_id BIGINT, region STRING, proc_time AS PROCTIME())
             WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
                   'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
             CREATE TABLE shop.dim_region_names (region STRING, label STRING, PRIMARY KEY (region) NOT ENFORCED)
             WITH ('connector' = 'kafka', 'topic' = 'region_names', 'format' = 'json',
                   'scan.startup.mode' = 'earliest-offset', 'connection' = 'events', 'lookup.broadcast' = 'true');
             CREATE TABLE shop.dwd_order_regions (order_id BIGINT, label STRING) WITH ('connector' = 'delta');",
            RegisterMode::Create,
        )
        .await
        .unwrap();
    let north = r#"{"region": "north"}"#;
    send(
        &bootstrap,
        "region_names",
        &[(north, Some(r#"{"region": "north", "label": "N1"}"#))],
    )
    .await;
    let pipeline = load_project(&catalog).await.unwrap().remove(0);
    let (stats, stop, handle) = start(&catalog, pipeline);
    let order = |id: i64| (0, format!(r#"{{"order_id": {id}, "region": "north"}}"#));
    produce(&bootstrap, &[order(1)]).await;
    wait_for("the first order", || committed(&stats) == 1).await;
    let label_of = |id: i64| {
        let catalog = catalog.clone();
        async move {
            rows(
                &catalog,
                &format!("SELECT label FROM shop.dwd_order_regions WHERE order_id = {id}"),
            )
            .await[0][0]
                .clone()
        }
    };
    assert_eq!(label_of(1).await, "N1", "read before the first lookup");

    // An update; a tombstone; a tombstone and a new row at once: orders sent after
    // each see it once the table has read it.
    let steps: [(&[Option<&str>], &str); 3] = [
        (&[Some(r#"{"region": "north", "label": "N2"}"#)], "N2"),
        (&[None], "NULL"),
        (&[None, Some(r#"{"region": "north", "label": "N3"}"#)], "N3"),
    ];
    for (payloads, expected) in steps {
        let records: Vec<(&str, Option<&str>)> = payloads.iter().map(|p| (north, *p)).collect();
        send(&bootstrap, "region_names", &records).await;
        let started = Instant::now();
        loop {
            let id = committed(&stats) as i64 + 1;
            produce(&bootstrap, &[order(id)]).await;
            wait_for("the next order", || committed(&stats) == id as u64).await;
            if label_of(id).await == expected {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the broadcast table never showed {expected}"
            );
        }
    }
    stop.send(true).unwrap();
    handle.await.unwrap().unwrap();
    // In memory already, the table is not cached again (a cache would hold back updates),
    // and no database is asked: there are no queries to report.
    let lookup = &stats.lookup_stats()[0];
    assert!(lookup.in_memory);
    assert_eq!(lookup.cache_hits.load(Ordering::Relaxed), 0);
    assert_eq!(lookup.queries.load(Ordering::Relaxed), 0);
    assert!(lookup.rows.load(Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_runs_out_of_retries_reaches_quarantine_after_later_commits() {
    let Fixture {
        bootstrap,
        catalog,
        ..
    } = &fixture(
        "lookup_exhausted",
        &[(1, "ann", "beijing", 0)],
        "",
        "SELECT /*+ LOOKUP('table'='u', 'miss'='retry', 'fixed-delay'='300ms', 'max-attempts'='2') */
           o.order_id, o.user_id, u.name, u.city
         FROM shop.ods_orders AS o
         JOIN shop.dim_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id",
    )
    .await;
    // A record that does not decode is quarantined at once, so the quarantine has
    // committed past the missing user's offset long before its retries run out.
    produce(
        bootstrap,
        &[
            (0, "not json".to_string()),
            (0, order(1, Some(9))),
            (0, order(2, Some(1))),
        ],
    )
    .await;
    let pipeline = load_project(catalog).await.unwrap().remove(0);
    let stats = run_to_end(catalog, pipeline).await;
    assert_eq!(stats.rows_committed.load(Ordering::Relaxed), 1);
    assert!(stats.commits.load(Ordering::Relaxed) >= 2);
    let quarantined = rows(
        catalog,
        "SELECT \"offset\", reason FROM shop.dwd_orders__quarantine ORDER BY \"offset\"",
    )
    .await;
    assert_eq!(quarantined.len(), 2, "{quarantined:?}");
    assert_eq!(quarantined[1][0], "1");
    assert!(
        quarantined[1][1].contains("after 2 retries"),
        "{quarantined:?}"
    );
}

/// The error a statement on `conn` gets, which must be one.
async fn error_of(conn: &mut sqlx::MySqlConnection, sql: &str) -> sqlx::Error {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .expect_err(sql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_errors_are_classified_by_their_numeric_code() {
    use strata_pipelines::lookup::sqlx_error_is_transient as transient;
    let db = MysqlDatabase::create("lookup_errors").await;
    let url = db.url.clone();
    users_table(&url, &[(1, "ann", "beijing", 0), (2, "bob", "shanghai", 0)]).await;
    let mut a = sqlx::MySqlConnection::connect(&url).await.unwrap();
    let mut b = sqlx::MySqlConnection::connect(&url).await.unwrap();

    // Permanent: a missing table, access denied.
    let missing = error_of(&mut a, "SELECT * FROM no_such_table").await;
    assert!(!transient(&missing), "{missing}");
    let (server, database) = url.rsplit_once('/').unwrap();
    let stranger = server.replace("root@", "strata_nobody:wrong@");
    let denied = sqlx::MySqlConnection::connect(&format!("{stranger}/{database}"))
        .await
        .expect_err("an unknown user is refused");
    assert!(!transient(&denied), "{denied}");

    // Transient: lock wait timeout.
    mysql(&url, "SELECT 1").await;
    sqlx::raw_sql("BEGIN; SELECT * FROM users WHERE id = 1 FOR UPDATE")
        .execute(&mut a)
        .await
        .unwrap();
    let lock_wait = error_of(
        &mut b,
        "SET SESSION innodb_lock_wait_timeout = 1; UPDATE users SET tier = 1 WHERE id = 1",
    )
    .await;
    assert!(lock_wait.to_string().contains("1205"), "{lock_wait}");
    assert!(transient(&lock_wait), "{lock_wait}");
    sqlx::raw_sql("ROLLBACK").execute(&mut a).await.unwrap();

    // Transient: a deadlock, one of two transactions chosen as its victim.
    sqlx::raw_sql(
        "SET SESSION innodb_lock_wait_timeout = 20; BEGIN; UPDATE users SET tier = 2 WHERE id = 1",
    )
    .execute(&mut a)
    .await
    .unwrap();
    sqlx::raw_sql(
        "SET SESSION innodb_lock_wait_timeout = 20; BEGIN; UPDATE users SET tier = 2 WHERE id = 2",
    )
    .execute(&mut b)
    .await
    .unwrap();
    let (first, second) = tokio::join!(
        sqlx::raw_sql("UPDATE users SET tier = 3 WHERE id = 2").execute(&mut a),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            sqlx::raw_sql("UPDATE users SET tier = 3 WHERE id = 1")
                .execute(&mut b)
                .await
        }
    );
    let deadlock = first
        .err()
        .or(second.err())
        .expect("one of them is the victim");
    assert!(deadlock.to_string().contains("1213"), "{deadlock}");
    assert!(transient(&deadlock), "{deadlock}");
    sqlx::raw_sql("ROLLBACK").execute(&mut a).await.unwrap();
    sqlx::raw_sql("ROLLBACK").execute(&mut b).await.unwrap();

    // Transient: a killed connection.
    let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(&mut a)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL CONNECTION {id}")))
        .execute(&mut b)
        .await
        .unwrap();
    let killed = error_of(&mut a, "SELECT 1").await;
    assert!(transient(&killed), "{killed}");

    // Transient: too many connections for the user.
    let user = format!("strata_limited_{}", std::process::id());
    mysql(
        &url,
        &format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw' WITH MAX_USER_CONNECTIONS 1; GRANT SELECT ON `{database}`.* TO '{user}'@'%'"),
    )
    .await;
    let limited = format!(
        "{}/{database}",
        server.replace("root@", &format!("{user}:pw@"))
    );
    let _only = sqlx::MySqlConnection::connect(&limited).await.unwrap();
    let too_many = sqlx::MySqlConnection::connect(&limited)
        .await
        .expect_err("a second connection is over the user's limit");
    assert!(too_many.to_string().contains("1226"), "{too_many}");
    assert!(transient(&too_many), "{too_many}");
    mysql(&url, &format!("DROP USER '{user}'@'%'")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dimension_table_stops_the_pipeline_instead_of_quarantining_rows() {
    let fixture = fixture(
        "lookup_missing_table",
        &[(1, "ann", "beijing", 0)],
        "",
        "SELECT o.order_id, o.user_id, u.name, u.city
         FROM shop.ods_orders AS o
         LEFT JOIN shop.dim_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id",
    )
    .await;
    mysql(&fixture.url, "DROP TABLE users").await;
    produce(
        &fixture.bootstrap,
        &[(0, order(1, Some(1))), (0, order(2, Some(1)))],
    )
    .await;
    let pipeline = load_project(&fixture.catalog).await.unwrap().remove(0);
    let stats = Arc::new(TableStats::new());
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let run = PipelineRun {
        catalog: fixture.catalog.clone(),
        pipeline,
        stats: stats.clone(),
        mode: RunMode::UntilCaughtUp,
        quality: Default::default(),
        replay: None,
    };
    let err = tokio::time::timeout(Duration::from_secs(60), run.run(stop_rx))
        .await
        .expect("the pipeline stopped within a minute")
        .expect_err("a missing dimension table stops the pipeline");
    assert!(
        err.to_string().contains("1146") || err.to_string().contains("doesn't exist"),
        "{err}"
    );
    assert_eq!(stats.quarantined_rows.load(Ordering::Relaxed), 0);
    assert_eq!(committed(&stats), 0);
}
