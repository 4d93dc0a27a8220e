//! Event-time temporal joins end to end, against the Kafka mock cluster: each
//! order joins the price that was valid at its order time (a brute-force
//! join over the same records says which), deletes included; orders ahead of
//! the price changelog's watermark wait in state across a restart; records of
//! the changelog that are no version reach quarantine with their topic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use strata_catalog::{Catalog, Project, RegisterMode};
use strata_pipelines::{PipelineRun, RunMode, TableStats, load_project};

use crate::ingest::run_to_end;
use crate::lookup::{rows, start, wait_for};

/// 2024-05-01T10:00:00Z, the test's time zero.
const ZERO_MS: i64 = 1_714_557_600_000;

const CATALOG: &str = "
CREATE TABLE shop.ods_orders (
  order_id BIGINT, product_id BIGINT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
        'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.dim_product_prices (
  product_id BIGINT, price BIGINT, update_time TIMESTAMP(3),
  PRIMARY KEY (product_id) NOT ENFORCED,
  WATERMARK FOR update_time AS update_time - INTERVAL '1' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'prices', 'format' = 'json',
        'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.dwd_orders (order_id BIGINT, product_id BIGINT, price BIGINT, order_time TIMESTAMP(3))
WITH ('connector' = 'delta');
";

const PIPELINE: &str = "INSERT INTO shop.dwd_orders
SELECT o.order_id, o.product_id, p.price, o.order_time
FROM shop.ods_orders AS o
LEFT JOIN shop.dim_product_prices FOR SYSTEM_TIME AS OF o.order_time AS p
  ON o.product_id = p.product_id";

/// `ms` after time zero, as the JSON of a TIMESTAMP(3).
pub(crate) fn at(ms: i64) -> String {
    format!(
        "2024-05-01T10:{:02}:{:02}.{:03}",
        ms / 60_000,
        ms / 1_000 % 60,
        ms % 1_000
    )
}

/// Writes the project's config with this idle timeout (read when the catalog opens).
fn configure(dir: &std::path::Path, bootstrap: &str, idle_timeout_ms: u64) {
    std::fs::write(
        dir.join("strata.toml"),
        format!(
            "[engine]\ncommit-interval-ms = 100\nbatch-records = 50\nidle-timeout-ms = {idle_timeout_ms}\n[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"
        ),
    )
    .unwrap();
}

async fn open(dir: &std::path::Path) -> Catalog {
    Catalog::open(Project::load(dir).unwrap()).await.unwrap()
}

/// The changelog and orders, as sent, to join by brute force.
#[derive(Default)]
struct Sent {
    /// Per product, its versions by time (`None`: deleted).
    versions: BTreeMap<i64, BTreeMap<i64, Option<i64>>>,
    /// (order id, product, order time).
    orders: Vec<(i64, i64, i64)>,
}

impl Sent {
    /// Each order with the price valid at its time, as the query's text.
    fn joined(&self) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = self
            .orders
            .iter()
            .map(|&(id, product, time)| {
                let price = self
                    .versions
                    .get(&product)
                    .and_then(|v| v.range(..=time).next_back())
                    .and_then(|(_, price)| *price);
                vec![
                    id.to_string(),
                    price.map_or("NULL".to_string(), |p| p.to_string()),
                ]
            })
            .collect();
        out.sort_by_key(|row| row[0].parse::<i64>().unwrap());
        out
    }
}

struct Producer(FutureProducer);

impl Producer {
    fn new(bootstrap: &str) -> Self {
        Self(
            rdkafka::ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .create()
                .unwrap(),
        )
    }

    async fn send(&self, topic: &str, key: Option<&str>, payload: Option<&str>, time_ms: i64) {
        let mut record = FutureRecord::<str, str>::to(topic)
            .partition(0)
            .timestamp(ZERO_MS + time_ms);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        self.0.send(record, Duration::from_secs(5)).await.unwrap();
    }

    async fn price(&self, sent: &mut Sent, product: i64, price: Option<i64>, time_ms: i64) {
        let key = format!(r#"{{"product_id": {product}}}"#);
        let payload = price.map(|price| {
            format!(
                r#"{{"product_id": {product}, "price": {price}, "update_time": "{}"}}"#,
                at(time_ms)
            )
        });
        self.send("prices", Some(&key), payload.as_deref(), time_ms)
            .await;
        sent.versions
            .entry(product)
            .or_default()
            .insert(time_ms, price);
    }

    async fn order(&self, sent: &mut Sent, id: i64, product: i64, time_ms: i64) {
        let payload = format!(
            r#"{{"order_id": {id}, "product_id": {product}, "order_time": "{}"}}"#,
            at(time_ms)
        );
        self.send("orders", None, Some(&payload), time_ms).await;
        sent.orders.push((id, product, time_ms));
    }
}

/// Each order's price, as joined.
async fn prices(catalog: &Catalog) -> Vec<Vec<String>> {
    rows(
        catalog,
        "SELECT order_id, price FROM shop.dwd_orders ORDER BY order_id",
    )
    .await
}

/// A deterministic stream of small numbers.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: i64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        ((self.0 >> 33) % sides as u64) as i64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_order_joins_the_price_valid_at_its_time_across_a_restart() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    cluster.create_topic("prices", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    configure(dir.path(), &bootstrap, 1_000);
    std::fs::create_dir_all(dir.path().join("pipelines/dwd")).unwrap();
    std::fs::write(dir.path().join("pipelines/dwd/dwd_orders.sql"), PIPELINE).unwrap();
    let catalog = open(dir.path()).await;
    catalog
        .register_sql("catalog.sql", CATALOG, RegisterMode::Create)
        .await
        .unwrap();
    let producer = Producer::new(&bootstrap);
    let mut sent = Sent::default();
    let mut dice = Dice(7);

    // Phase 1: prices of products 1-4 change every 500 ms from 10 s to 29.5 s
    // (product 3 is deleted from 16 s on); orders for products 1-5 (5 never has a
    // price) at times before, between and after the changes, in time order. A
    // change without an event time is no version: it goes to quarantine.
    let mut time = 0;
    let mut order_id = 0;
    for step in 0..40 {
        time = 10_000 + 500 * step;
        let product = 1 + dice.roll(4);
        let price = (product != 3 || time < 16_000).then_some(100 * step + product);
        producer.price(&mut sent, product, price, time).await;
        if step == 20 {
            producer
                .send(
                    "prices",
                    None,
                    Some(r#"{"product_id": 9, "price": 1}"#),
                    time,
                )
                .await;
        }
        for i in 0..3 {
            order_id += 1;
            producer
                .order(
                    &mut sent,
                    order_id,
                    1 + dice.roll(5),
                    time - 1_500 + 100 * i,
                )
                .await;
        }
    }
    let pipeline = load_project(&catalog).await.unwrap().remove(0);
    let stats = run_to_end(&catalog, pipeline).await;
    let joined = stats.lookup_stats()[0].clone();
    assert!(
        joined.versions.load(Ordering::Relaxed) > 0,
        "the versions are held"
    );
    assert_eq!(
        prices(&catalog).await,
        sent.joined(),
        "phase 1: each order has the price of its time"
    );
    assert_eq!(
        rows(
            &catalog,
            "SELECT topic, partition, reason LIKE '%no version of shop.dim_product_prices%' FROM shop.dwd_orders__quarantine"
        )
        .await,
        vec![vec!["prices".to_string(), "0".into(), "true".into()]]
    );

    // Phase 2: the changelog stays active (a long idle timeout); orders ahead of its
    // watermark wait in state when the pipeline stops.
    configure(dir.path(), &bootstrap, 600_000);
    let catalog = open(dir.path()).await;
    let pipeline = load_project(&catalog).await.unwrap().remove(0);
    let (stats, stop, handle) = start(&catalog, pipeline);
    let before = sent.orders.len() as u64;
    let last_price = time + 10_000;
    for step in 0..10 {
        producer
            .price(
                &mut sent,
                1 + step % 4,
                Some(10_000 + step),
                time + 1_000 * (step + 1),
            )
            .await;
    }
    let joinable = 5;
    for n in 0..10 {
        order_id += 1;
        // The first five are behind the changelog's watermark (last price - 1 s), the rest ahead.
        let order_time = if n < joinable {
            last_price - 4_000 + 500 * n
        } else {
            last_price + 1_000 * n
        };
        producer
            .order(&mut sent, order_id, 1 + n % 4, order_time)
            .await;
    }
    wait_for("the orders behind the watermark", || {
        stats.rows_committed.load(Ordering::Relaxed) == joinable as u64
    })
    .await;
    wait_for("the orders ahead of it, held back", || {
        stats.lookup_stats()[0].held_back.load(Ordering::Relaxed) == 5
    })
    .await;
    stop.send(true).unwrap();
    handle.await.unwrap().unwrap();
    assert_eq!(
        rows(&catalog, "SELECT COUNT(*) FROM shop.dwd_orders").await[0][0],
        (before + joinable as u64).to_string()
    );

    // Phase 3: after a restart the held-back orders come out of state; the
    // changelog goes idle, so they join the newest prices known.
    configure(dir.path(), &bootstrap, 1_000);
    let catalog = open(dir.path()).await;
    let pipeline = load_project(&catalog).await.unwrap().remove(0);
    let stats = run_to_end(&catalog, pipeline).await;
    assert_eq!(stats.rows_committed.load(Ordering::Relaxed), 5);
    assert_eq!(
        prices(&catalog).await,
        sent.joined(),
        "every order once, with the price of its time"
    );
}

#[tokio::test]
async fn a_temporal_join_needs_a_versioned_kafka_table_as_of_the_event_time() {
    let dir = tempfile::tempdir().unwrap();
    configure(dir.path(), "127.0.0.1:9", 1_000);
    let catalog = open(dir.path()).await;
    catalog
        .register_sql("catalog.sql", CATALOG, RegisterMode::Create)
        .await
        .unwrap();
    catalog
        .register_sql(
            "more.sql",
            "CREATE TABLE shop.ods_price_log (product_id BIGINT, price BIGINT, update_time TIMESTAMP(3))
             WITH ('connector' = 'kafka', 'topic' = 'prices', 'format' = 'json', 'connection' = 'events');",
            RegisterMode::Create,
        )
        .await
        .unwrap();
    let columns = "o.order_id, o.product_id, p.price, o.order_time";
    let joined = "FROM shop.ods_orders AS o JOIN shop.dim_product_prices FOR SYSTEM_TIME AS OF o.order_time AS p ON o.product_id = p.product_id";
    let lag = format!(
        "SELECT o.order_id, LAG(o.product_id) OVER (PARTITION BY o.product_id ORDER BY o.order_time) AS product_id, p.price, o.order_time {joined}"
    );
    let cases = [
        (
            "FROM shop.ods_orders AS o JOIN shop.ods_price_log FOR SYSTEM_TIME AS OF o.order_time AS p ON o.product_id = p.product_id",
            "shop.ods_price_log has no PRIMARY KEY",
        ),
        (
            "FROM shop.ods_orders AS o JOIN shop.dim_product_prices FOR SYSTEM_TIME AS OF o.product_id AS p ON o.product_id = p.product_id",
            "product_id is not the probe table's event-time (WATERMARK FOR) column",
        ),
        (
            "FROM shop.ods_orders AS o JOIN shop.dim_product_prices FOR SYSTEM_TIME AS OF o.order_time AS p ON o.order_id = p.price",
            "but shop.dim_product_prices's versions are kept by its primary key (product_id)",
        ),
        (
            lag.as_str(),
            "the event-time temporal join p (rows wait for its versions) beside LAG lag-1 (a row run again would move its partition's LAG on twice)",
        ),
    ];
    for (from, expected) in cases {
        let select = match from.starts_with("SELECT") {
            true => from.to_string(),
            false => format!("SELECT {columns} {from}"),
        };
        std::fs::create_dir_all(dir.path().join("pipelines/dwd")).unwrap();
        std::fs::write(
            dir.path().join("pipelines/dwd/dwd_orders.sql"),
            format!("INSERT INTO shop.dwd_orders {select}"),
        )
        .unwrap();
        let refused = match load_project(&catalog).await {
            Err(err) => err.to_string(),
            Ok(mut pipelines) => {
                let run = PipelineRun {
                    catalog: catalog.clone(),
                    pipeline: pipelines.remove(0),
                    stats: Arc::new(TableStats::new()),
                    mode: RunMode::UntilCaughtUp,
                    quality: Default::default(),
                    replay: None,
                };
                run.check().await.unwrap_err().to_string()
            }
        };
        assert!(
            refused.contains(expected),
            "{from}\nwas refused with: {refused}"
        );
    }
}
