//! Regular joins of streams end to end, against the Kafka mock cluster:
//! orders ⋈ users on the user's id (and a condition beyond it), and order
//! lines ⋈ users ⋈ products, equal a brute-force join of the same records,
//! each pair or triple once (and twice where a user came twice), with every
//! stream's rows kept in keyed state across restarts.

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
    let producer = producer(&bootstrap);
    let (early, late) = users.split_at(users.len() / 2);
    for step in 0..3 {
        match step {
            0 | 2 => {
                let part = if step == 0 { early } else { late };
                send_users(&producer, part).await;
            }
            _ => {
                for &(id, user) in &orders {
                    let user = user.map_or("null".to_string(), |u| u.to_string());
                    let payload = format!(r#"{{"order_id": {id}, "user_id": {user}}}"#);
                    send(&producer, "orders", (id % 2) as i32, payload).await;
                }
            }
        }
        run_quarantining_nothing(&catalog).await;
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

const STAR_CATALOG: &str = "
CREATE TABLE shop.ods_products (id BIGINT, category STRING)
WITH ('connector' = 'kafka', 'topic' = 'products', 'format' = 'json',
      'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.ods_order_lines (order_id BIGINT, product_id BIGINT, user_id BIGINT)
WITH ('connector' = 'kafka', 'topic' = 'lines', 'format' = 'json',
      'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.dwd_line_wide (order_id BIGINT, name STRING, category STRING) WITH ('connector' = 'delta');
";

const STAR_PIPELINE: &str = "INSERT INTO shop.dwd_line_wide
SELECT l.order_id, u.name, p.category
FROM shop.ods_order_lines AS l
JOIN shop.ods_users AS u ON l.user_id = u.id
JOIN shop.ods_products AS p ON l.product_id = p.id AND p.category <> u.name";

/// A star join of three streams, each read in pieces by runs that restart
/// between them, equals a brute-force join of everything sent: each triple
/// once, whichever stream brought its last row, with the first join's
/// output kept as the second join's left input across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_of_three_streams_equals_a_brute_force_join_across_restarts() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("lines", 2, 1).unwrap();
    cluster.create_topic("users", 1, 1).unwrap();
    cluster.create_topic("products", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (_dir, catalog) = kafka_project(
        &bootstrap,
        "commit-interval-ms = 100\nbatch-records = 17",
        ("dwd_line_wide", STAR_PIPELINE),
        &format!("{CATALOG}{STAR_CATALOG}"),
    )
    .await;
    // The plan: each stream enters its own join; the second join reads the first.
    let pipeline = load_project(&catalog).await.unwrap().remove(0);
    let plan = pipeline_plan(&catalog, pipeline).await;
    let input = |id: &str, at: usize| plan.operator(id).unwrap().inputs[at].clone();
    let reaches = |from: String, to: &str| {
        let mut ids = vec![from];
        while let Some(id) = ids.pop() {
            if id == to {
                return true;
            }
            ids.extend(plan.operator(&id).unwrap().inputs.iter().cloned());
        }
        false
    };
    assert!(reaches(input("join-1", 0), "source"), "{plan:?}");
    assert!(reaches(input("join-1", 1), "source-right"), "{plan:?}");
    assert!(!reaches(input("join-1", 1), "source-right-2"), "{plan:?}");
    assert!(reaches(input("join-2", 0), "join-1"), "{plan:?}");
    assert!(reaches(input("join-2", 1), "source-right-2"), "{plan:?}");
    assert!(!reaches(input("join-2", 1), "join-1"), "{plan:?}");

    let lines: Vec<(i64, i64, Option<i64>)> = (1..=90)
        .map(|id| {
            (
                id,
                id * 5 % 12 + 1,
                (id % 11 != 0).then_some(id * 7 % 16 + 1),
            )
        })
        .collect();
    let mut users: Vec<(i64, String)> = (1..=14).map(|id| (id, format!("user-{id}"))).collect();
    users.push((4, "user-4-again".to_string()));
    let mut products: Vec<(i64, String)> =
        (1..=12).map(|id| (id, format!("cat-{}", id % 4))).collect();
    // A product whose category equals a user's name joins no line of that user.
    products.push((2, "user-3".to_string()));
    let mut expected: Vec<(i64, String, String)> = Vec::new();
    for &(line, product, user) in &lines {
        for (id, name) in &users {
            for (pid, category) in &products {
                if Some(*id) == user && *pid == product && category != name {
                    expected.push((line, name.clone(), category.clone()));
                }
            }
        }
    }
    expected.sort();
    assert!(expected.len() > 40, "the data has triples to find");

    // Four runs, each reading what was sent since the last: half the users
    // and the products; half the lines (joined through both); the rest of the
    // users (joined with kept lines, then with kept products); the rest of the lines.
    let producer = producer(&bootstrap);
    let (early_users, late_users) = users.split_at(users.len() / 2);
    let (early_lines, late_lines) = lines.split_at(lines.len() / 2);
    for step in 0..4 {
        match step {
            0 | 2 => {
                let part = if step == 0 { early_users } else { late_users };
                send_users(&producer, part).await;
                if step == 0 {
                    for (id, category) in &products {
                        let payload = format!(r#"{{"id": {id}, "category": "{category}"}}"#);
                        send(&producer, "products", 0, payload).await;
                    }
                }
            }
            _ => {
                let part = if step == 1 { early_lines } else { late_lines };
                for &(id, product, user) in part {
                    let user = user.map_or("null".to_string(), |u| u.to_string());
                    let payload = format!(
                        r#"{{"order_id": {id}, "product_id": {product}, "user_id": {user}}}"#
                    );
                    send(&producer, "lines", (id % 2) as i32, payload).await;
                }
            }
        }
        run_quarantining_nothing(&catalog).await;
    }
    let got: Vec<(i64, String, String)> = rows(
        &catalog,
        "SELECT order_id, name, category FROM shop.dwd_line_wide ORDER BY order_id, name, category",
    )
    .await
    .into_iter()
    .map(|row| (row[0].parse().unwrap(), row[1].clone(), row[2].clone()))
    .collect();
    assert_eq!(got, expected, "every triple once");
}

/// The operator graph `strata explain` shows for a pipeline.
async fn pipeline_plan(
    catalog: &strata_catalog::Catalog,
    pipeline: strata_pipelines::ValidPipeline,
) -> strata_pipelines::plan::StreamPlan {
    let run = strata_pipelines::PipelineRun {
        catalog: catalog.clone(),
        pipeline,
        stats: Default::default(),
        mode: strata_pipelines::RunMode::UntilCaughtUp,
        quality: Default::default(),
        replay: None,
    };
    run.explain().await.unwrap()
}

fn producer(bootstrap: &str) -> FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap()
}

async fn send_users(producer: &FutureProducer, users: &[(i64, String)]) {
    for (id, name) in users {
        let payload = format!(r#"{{"id": {id}, "name": "{name}"}}"#);
        send(producer, "users", 0, payload).await;
    }
}

/// Runs the project's pipeline to the end of what was sent; nothing goes to quarantine.
async fn run_quarantining_nothing(catalog: &strata_catalog::Catalog) {
    let pipeline = load_project(catalog).await.unwrap().remove(0);
    let stats = run_to_end(catalog, pipeline).await;
    assert_eq!(
        stats
            .quarantined_rows
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}
