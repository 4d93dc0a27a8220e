//! Regular joins of two streams end to end, against the Kafka mock cluster:
//! orders ⋈ users on the user's id (and a condition beyond it) equal a
//! brute-force join of the same records, each pair once (and a pair twice
//! where a user came twice), with both streams' rows kept in keyed state
//! across restarts.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;
use strata_pipelines::load_project;

use crate::ingest::{check, kafka_project, refusal, run_to_end};
use crate::interval::send;
use crate::lookup::rows;

const CATALOG: &str = "
CREATE TABLE shop.ods_orders (order_id BIGINT, user_id BIGINT)
WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
      'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.ods_users (id BIGINT, name STRING)
WITH ('connector' = 'kafka', 'topic' = 'users', 'format' = 'json',
      'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.dwd_order_users (order_id BIGINT, name STRING) WITH ('connector' = 'delta');
";

const PIPELINE: &str = "INSERT INTO shop.dwd_order_users
SELECT o.order_id, u.name
FROM shop.ods_orders AS o
JOIN shop.ods_users AS u ON o.user_id = u.id AND o.order_id > u.id * 3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regular_join_equals_a_brute_force_join_across_restarts() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 2, 1).unwrap();
    cluster.create_topic("users", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (_dir, catalog) = kafka_project(
        &bootstrap,
        "commit-interval-ms = 100\nbatch-records = 30",
        ("dwd_order_users", PIPELINE),
        CATALOG,
    )
    .await;
    // 120 orders of users 1..=25 (and of no user: NULL); users 1..=20, user 3 twice.
    let orders: Vec<(i64, Option<i64>)> = (1..=120)
        .map(|id| (id, (id % 13 != 0).then_some(id * 7 % 25 + 1)))
        .collect();
    let mut users: Vec<(i64, String)> = (1..=20).map(|id| (id, format!("user-{id}"))).collect();
    users.push((3, "user-3-again".to_string()));
    let mut expected: Vec<(i64, String)> = orders
        .iter()
        .flat_map(|&(order, user)| {
            users
                .iter()
                .filter(move |(id, _)| Some(*id) == user && order > id * 3)
                .map(move |(_, name)| (order, name.clone()))
        })
        .collect();
    expected.sort();
    assert!(expected.len() > 50, "the data has pairs to find");

    // Three runs, each reading what was sent since the last: half the users
    // alone (kept); every order (joined with the kept users, and kept); the
    // other users (joined with the kept orders). Both streams' state is used,
    // and carried across two restarts.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let (early, late) = users.split_at(users.len() / 2);
    for step in 0..3 {
        match step {
            0 | 2 => {
                let part = if step == 0 { early } else { late };
                for (id, name) in part {
                    let payload = format!(r#"{{"id": {id}, "name": "{name}"}}"#);
                    send(&producer, "users", 0, payload).await;
                }
            }
            _ => {
                for &(id, user) in &orders {
                    let user = user.map_or("null".to_string(), |u| u.to_string());
                    let payload = format!(r#"{{"order_id": {id}, "user_id": {user}}}"#);
                    send(&producer, "orders", (id % 2) as i32, payload).await;
                }
            }
        }
        let pipeline = load_project(&catalog).await.unwrap().remove(0);
        let stats = run_to_end(&catalog, pipeline).await;
        assert_eq!(
            stats
                .quarantined_rows
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    let got: Vec<(i64, String)> = rows(
        &catalog,
        "SELECT order_id, name FROM shop.dwd_order_users ORDER BY order_id, name",
    )
    .await
    .into_iter()
    .map(|row| (row[0].parse().unwrap(), row[1].clone()))
    .collect();
    assert_eq!(
        got, expected,
        "every pair once, and a user's second row a second time"
    );
}

#[tokio::test]
async fn a_state_ttl_bounds_a_regular_join_and_a_group_by_and_is_refused_beside_state_kept_for_good()
 {
    let (dir, catalog) = kafka_project(
        "127.0.0.1:9",
        "",
        ("dwd_orders", "SELECT 1"),
        &format!(
            "{CATALOG}CREATE TABLE shop.dws_user_orders (user_id BIGINT, orders BIGINT, PRIMARY KEY (user_id) NOT ENFORCED) WITH ('connector' = 'delta');
CREATE TABLE shop.ods_clicks (user_id BIGINT, proc_time AS PROCTIME())
WITH ('connector' = 'kafka', 'topic' = 'clicks', 'format' = 'json', 'connection' = 'events');
CREATE TABLE shop.dwd_click_numbers (user_id BIGINT, n BIGINT) WITH ('connector' = 'delta');"
        ),
    )
    .await;
    let ttl = "SET 'table.exec.state.ttl' = '1 h';\n";
    std::fs::write(
        dir.path().join("pipelines/dwd/dwd_orders.sql"),
        format!("{ttl}{PIPELINE}"),
    )
    .unwrap();
    check(&catalog).await.unwrap();
    // A GROUP BY forgets a group not updated for the TTL, as Flink's does.
    std::fs::write(
        dir.path().join("pipelines/dwd/dwd_orders.sql"),
        format!(
            "{ttl}INSERT INTO shop.dws_user_orders SELECT user_id, COUNT(*) FROM shop.ods_orders GROUP BY user_id"
        ),
    )
    .unwrap();
    check(&catalog).await.unwrap();
    // An unbounded ROW_NUMBER keeps each partition's count for good: the TTL
    // is refused beside it.
    let refused = refusal(
        &dir,
        &catalog,
        &format!(
            "{ttl}INSERT INTO shop.dwd_click_numbers SELECT user_id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY proc_time) FROM shop.ods_clicks"
        ),
    )
    .await;
    assert!(
        refused.contains("SET 'table.exec.state.ttl' beside"),
        "{refused}"
    );
    assert!(
        refused.contains("whose state does not expire yet"),
        "{refused}"
    );
}
