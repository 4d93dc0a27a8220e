//! What an operator cannot read from a changelog (a debezium-json topic: inserts,
//! updates and deletes) it refuses before anything runs, naming itself.

use rdkafka::mocking::MockCluster;

use crate::ingest::{kafka_project, refusal};

const CATALOG: &str = "
CREATE TABLE shop.ods_orders (
  order_id BIGINT, amount DECIMAL(10, 2), city STRING, order_time TIMESTAMP(3),
  proc_time AS PROCTIME(),
  PRIMARY KEY (order_id) NOT ENFORCED
) WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'debezium-json',
        'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.dim_cities (city STRING, province STRING, PRIMARY KEY (city) NOT ENFORCED)
WITH ('connector' = 'embedded');
CREATE TABLE shop.dwd_orders (
  order_id BIGINT, amount DECIMAL(10, 2), city STRING, province STRING,
  PRIMARY KEY (order_id) NOT ENFORCED
) WITH ('connector' = 'delta');
CREATE TABLE shop.dws_city_amounts (
  city STRING, orders BIGINT, amount DECIMAL(20, 2), PRIMARY KEY (city) NOT ENFORCED
) WITH ('connector' = 'delta');
";

const RETRYING_LOOKUP: &str = "INSERT INTO shop.dwd_orders
SELECT /*+ LOOKUP('table'='c', 'miss'='retry') */ o.order_id, o.amount, o.city, c.province
FROM shop.ods_orders AS o
JOIN shop.dim_cities FOR SYSTEM_TIME AS OF o.proc_time AS c ON o.city = c.city";

#[tokio::test]
async fn operators_refuse_the_changelogs_they_cannot_read_and_say_which_they_are() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let (dir, catalog) = kafka_project(
        &cluster.bootstrap_servers(),
        "commit-interval-ms = 100",
        ("dwd_orders", RETRYING_LOOKUP),
        CATALOG,
    )
    .await;
    let err = refusal(&dir, &catalog, RETRYING_LOOKUP).await;
    assert!(
        err.contains("'miss' = 'retry' over a changelog") && err.contains("operator lookup-c"),
        "{err}"
    );
    // An estimate cannot take an update's old value back out; COUNT and SUM can.
    let totals = "INSERT INTO shop.dws_city_amounts
SELECT city, CAST(APPROX_DISTINCT(amount) AS BIGINT), CAST(SUM(amount) AS DECIMAL(20, 2)) FROM shop.ods_orders GROUP BY city";
    let err = refusal(&dir, &catalog, totals).await;
    assert!(err.contains("APPROX_DISTINCT over a changelog"), "{err}");
    assert!(err.contains("operator aggregate"), "{err}");
    std::fs::write(
        dir.path().join("pipelines/dwd/dwd_orders.sql"),
        totals.replace("CAST(APPROX_DISTINCT(amount) AS BIGINT)", "COUNT(*)"),
    )
    .unwrap();
    crate::ingest::check(&catalog).await.unwrap();
}
