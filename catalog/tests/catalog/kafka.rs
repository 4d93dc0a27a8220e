//! Kafka topics through librdkafka's mock cluster: discovery by sampling,
//! bounded scans, changelogs, and records that do not fit.

use std::time::Duration;

use arrow::util::pretty::pretty_format_batches;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use strata_catalog::{Catalog, CatalogError, DiscoverOptions, Layer, RegisterMode};

use crate::support::project;

async fn produce(bootstrap: &str, topic: &str, records: &[(i32, &str)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for (partition, payload) in records {
        producer
            .send(
                FutureRecord::<(), str>::to(topic)
                    .partition(*partition)
                    .payload(*payload),
                Duration::from_secs(5),
            )
            .await
            .expect("delivered");
    }
}

async fn catalog_for(bootstrap: &str) -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let config =
        format!("[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n");
    let catalog = Catalog::open(project(dir.path(), &config)).await.unwrap();
    (dir, catalog)
}

#[tokio::test]
async fn topics_are_discovered_by_sampling_and_read_as_bounded_tables() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("ods_clicks", 2, 1).unwrap();
    cluster.create_topic("audit", 1, 1).unwrap();
    cluster.create_topic("ods_empty", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(
        &bootstrap,
        "ods_clicks",
        &[
            (
                0,
                r#"{"user_id": 1, "page": "/home", "price": 1.5, "tags": ["a"], "ref": null, "at": "2024-05-01T10:00:00", "seen": "2024-05-01T10:00:00Z"}"#,
            ),
            (
                1,
                r#"{"user_id": 2, "page": "/cart", "price": 2, "at": "2024-05-01 10:00:05.250", "seen": "2024-05-01T18:00:00+08:00"}"#,
            ),
            (0, r#"{"user_id": 3, "page": "/home", "seen": "2024-05-01"}"#),
        ],
    )
    .await;
    let (_dir, catalog) = catalog_for(&bootstrap).await;

    let discovery = catalog
        .discover(
            "events",
            &DiscoverOptions {
                sample_per_partition: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(discovery.inferred);
    assert_eq!(discovery.tables.len(), 1);
    let skipped: Vec<(&str, &str)> = discovery
        .skipped
        .iter()
        .map(|(t, r)| (t.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            (
                "audit",
                "its name has no layer prefix (ods_, dwd_, dws_, app_, dim_); pass --layer to register it"
            ),
            (
                "ods_empty",
                "the topic is empty, so there is nothing to infer a schema from; register it with DDL"
            ),
        ]
    );
    let clicks = &discovery.tables[0];
    assert_eq!(clicks.name.to_string(), "events.ods_clicks");
    assert_eq!(clicks.layer, Layer::Ods);
    let columns: Vec<String> = clicks
        .schema
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    assert_eq!(
        columns,
        [
            "user_id:Int64",
            "page:Utf8",
            "price:Float64",
            "tags:List(Utf8)",
            "ref:Utf8",
            "at:Timestamp(ms)",
            "seen:Utf8"
        ]
    );

    catalog
        .register(discovery.tables, RegisterMode::Create)
        .await
        .unwrap();
    let result = catalog
        .query("SELECT page, count(*) AS views FROM events.ods_clicks GROUP BY page ORDER BY page")
        .await
        .unwrap();
    assert_eq!(
        pretty_format_batches(&result.batches).unwrap().to_string(),
        "+-------+-------+\n| page  | views |\n+-------+-------+\n| /cart | 1     |\n| /home | 2     |\n+-------+-------+"
    );
}

#[tokio::test]
async fn a_record_that_does_not_fit_is_named_by_partition_and_offset() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(
        &bootstrap,
        "orders",
        &[
            (0, r#"{"order_id": 1}"#),
            (1, r#"{"order_id": 2}"#),
            (1, r#"{"order_id": "three"}"#),
        ],
    )
    .await;
    let (_dir, catalog) = catalog_for(&bootstrap).await;
    catalog
        .register_sql(
            "ods.sql",
            "CREATE TABLE shop.ods_orders (order_id BIGINT) WITH ('connector' = 'kafka',
               'topic' = 'orders', 'format' = 'json', 'connection' = 'events');",
            RegisterMode::Create,
        )
        .await
        .unwrap();
    let err = catalog
        .query("SELECT * FROM shop.ods_orders")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("topic orders, partition 1, offset 1"),
        "{text}"
    );
    // Quarantines are a pipeline's target's: the topic's table has none to point to.
    assert!(text.contains("TARGET__quarantine"), "{text}");
    assert!(!text.contains("shop.ods_orders__quarantine"), "{text}");
    assert!(matches!(err, CatalogError::Query(_)));
}

#[tokio::test]
async fn debezium_topics_read_as_the_table_they_describe_and_raw_keeps_bytes() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("prices", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(
        &bootstrap,
        "prices",
        &[
            (0, r#"{"op": "c", "after": {"product_id": 10, "price": 128.0}}"#),
            (0, r#"{"op": "c", "after": {"product_id": 11, "price": 59.9}}"#),
            (0, r#"{"payload": {"op": "u", "before": {"product_id": 10, "price": 128.0}, "after": {"product_id": 10, "price": 99.0}}}"#),
            (0, r#"{"op": "d", "before": {"product_id": 11, "price": 59.9}}"#),
        ],
    )
    .await;
    let (_dir, catalog) = catalog_for(&bootstrap).await;
    catalog
        .register_sql(
            "dim.sql",
            "CREATE TABLE shop.dim_prices (product_id BIGINT, price DOUBLE, PRIMARY KEY (product_id) NOT ENFORCED)
               WITH ('connector' = 'kafka', 'topic' = 'prices', 'format' = 'debezium-json', 'connection' = 'events');
             CREATE TABLE shop.ods_price_log (line STRING)
               WITH ('connector' = 'kafka', 'topic' = 'prices', 'format' = 'raw', 'connection' = 'events');",
            RegisterMode::Create,
        )
        .await
        .unwrap();
    let state = catalog
        .query("SELECT * FROM shop.dim_prices")
        .await
        .unwrap();
    assert_eq!(
        pretty_format_batches(&state.batches).unwrap().to_string(),
        "+------------+-------+\n| product_id | price |\n+------------+-------+\n| 10         | 99.0  |\n+------------+-------+"
    );
    let raw = catalog
        .query("SELECT count(*) AS n FROM shop.ods_price_log WHERE line LIKE '%\"op\"%'")
        .await
        .unwrap();
    assert!(
        pretty_format_batches(&raw.batches)
            .unwrap()
            .to_string()
            .contains("| 4 |")
    );
}

#[tokio::test]
async fn an_unreachable_broker_is_named() {
    let (_dir, catalog) = catalog_for("127.0.0.1:1").await;
    let err = catalog
        .discover("events", &DiscoverOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot reach Kafka at 127.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn rows_inserted_into_a_kafka_table_are_produced_as_json_records() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (_dir, catalog) = catalog_for(&bootstrap).await;
    catalog
        .register_sql(
            "orders.sql",
            "CREATE TABLE shop.ods_orders (order_id BIGINT NOT NULL, amount DECIMAL(10, 2), at TIMESTAMP(3))
             WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json', 'connection' = 'events');
             CREATE TABLE shop.ods_raw (line STRING)
             WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'raw', 'connection' = 'events');",
            RegisterMode::Create,
        )
        .await
        .unwrap();
    catalog
        .query("INSERT INTO shop.ods_orders VALUES (1, 12.50, TIMESTAMP '2024-05-01 10:00:00'), (2, NULL, NULL)")
        .await
        .unwrap();
    // Read back as the table (every value round-trips) and as the raw records.
    let result = catalog
        .query("SELECT order_id, amount, at FROM shop.ods_orders ORDER BY order_id")
        .await
        .unwrap();
    assert_eq!(
        pretty_format_batches(&result.batches).unwrap().to_string(),
        "+----------+--------+---------------------+\n| order_id | amount | at                  |\n+----------+--------+---------------------+\n| 1        | 12.50  | 2024-05-01T10:00:00 |\n| 2        |        |                     |\n+----------+--------+---------------------+"
    );
    let refused = catalog
        .query("INSERT INTO shop.ods_raw VALUES ('x')")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("Strata produces JSON records"),
        "{refused}"
    );
}
