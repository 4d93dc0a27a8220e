//! Interval joins end to end, against the Kafka mock cluster: exposures ⋈
//! clicks within ten seconds equal a brute-force join of the same records,
//! every pair exactly once, with each side's rows held in state across restarts
//! until the other side's rows arrive; a FULL join's rows that met nothing come
//! out padded, once, when the other stream's watermark passes their band.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use strata_pipelines::load_project;

use crate::ingest::{kafka_project, run_to_end};
use crate::lookup::rows;
use crate::temporal::at;

const CATALOG: &str = "
CREATE TABLE shop.ods_exposures (
  exposure_id BIGINT, user_id BIGINT, ad_id BIGINT, shown_at TIMESTAMP(3),
  WATERMARK FOR shown_at AS shown_at - INTERVAL '1' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'exposures', 'format' = 'json',
        'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.ods_clicks (
  click_id BIGINT, user_id BIGINT, ad_id BIGINT, clicked_at TIMESTAMP(3),
  WATERMARK FOR clicked_at AS clicked_at - INTERVAL '1' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'clicks', 'format' = 'json',
        'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.dwd_ad_clicks (exposure_id BIGINT, click_id BIGINT) WITH ('connector' = 'delta');
";

/// The join, `JOIN` or an outer join's keywords in its place.
fn pipeline(join: &str) -> String {
    format!(
        "INSERT INTO shop.dwd_ad_clicks
SELECT e.exposure_id, c.click_id
FROM shop.ods_exposures AS e
{join} shop.ods_clicks AS c
  ON e.user_id = c.user_id AND e.ad_id = c.ad_id
 AND c.clicked_at BETWEEN e.shown_at AND e.shown_at + INTERVAL '10' SECOND"
    )
}

/// (id, user, ad, time in ms) of one side's events.
type Event = (i64, i64, i64, i64);

/// Events of one stream in time order: a few users and ads, so keys repeat.
fn events(count: i64, seed: u64, spacing_ms: i64) -> Vec<Event> {
    let mut state = seed;
    let mut roll = |sides: i64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % sides as u64) as i64
    };
    let mut time = 0;
    (1..=count)
        .map(|id| {
            time += roll(spacing_ms);
            (id, 1 + roll(4), 1 + roll(3), time)
        })
        .collect()
}

pub(crate) async fn send(producer: &FutureProducer, topic: &str, partition: i32, payload: String) {
    producer
        .send(
            FutureRecord::<(), str>::to(topic)
                .partition(partition)
                .payload(&payload),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
}

async fn produce(producer: &FutureProducer, exposures: &[Event], clicks: &[Event]) {
    for &(id, user, ad, time) in exposures {
        let payload = format!(
            r#"{{"exposure_id": {id}, "user_id": {user}, "ad_id": {ad}, "shown_at": "{}"}}"#,
            at(time)
        );
        send(producer, "exposures", (id % 2) as i32, payload).await;
    }
    for &(id, user, ad, time) in clicks {
        let payload = format!(
            r#"{{"click_id": {id}, "user_id": {user}, "ad_id": {ad}, "clicked_at": "{}"}}"#,
            at(time)
        );
        send(producer, "clicks", 0, payload).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_join_equals_a_brute_force_join_across_restarts() {
    equals_a_brute_force_join("JOIN").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_interval_join_equals_a_brute_force_join_across_restarts() {
    equals_a_brute_force_join("FULL JOIN").await;
}

/// Runs the join over generated exposures and clicks in three runs, and
/// compares its rows with a brute-force join of the same events.
async fn equals_a_brute_force_join(join: &str) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("exposures", 2, 1).unwrap();
    cluster.create_topic("clicks", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (_dir, catalog) = kafka_project(
        &bootstrap,
        "commit-interval-ms = 100\nbatch-records = 40",
        ("dwd_ad_clicks", &pipeline(join)),
        CATALOG,
    )
    .await;
    let exposures = events(200, 3, 600);
    let clicks = events(150, 11, 800);
    let pairs: BTreeSet<(i64, i64)> = exposures
        .iter()
        .flat_map(|e| {
            clicks
                .iter()
                .filter(move |c| (e.1, e.2) == (c.1, c.2) && (0..=10_000).contains(&(c.3 - e.3)))
                .map(move |c| (e.0, c.0))
        })
        .collect();
    assert!(pairs.len() > 20, "the data has pairs to find");
    let mut expected: BTreeSet<(Option<i64>, Option<i64>)> =
        pairs.iter().map(|&(e, c)| (Some(e), Some(c))).collect();
    if join == "FULL JOIN" {
        // Rows that met nothing come out once the other stream's watermark
        // (its latest time less a second; the exposures', the lower of their
        // two partitions') has passed their band: exposures before the
        // clicks' watermark - 10 s, clicks before the exposures' watermark.
        let clicks_watermark = clicks.iter().map(|c| c.3).max().unwrap() - 1_000;
        let exposures_watermark = (0..2)
            .map(|partition| {
                exposures
                    .iter()
                    .filter(|e| e.0 % 2 == partition)
                    .map(|e| e.3)
                    .max()
                    .unwrap()
            })
            .min()
            .unwrap()
            - 1_000;
        let alone_exposures: Vec<(Option<i64>, Option<i64>)> = exposures
            .iter()
            .filter(|e| e.3 < clicks_watermark - 10_000 && !pairs.iter().any(|p| p.0 == e.0))
            .map(|e| (Some(e.0), None))
            .collect();
        let alone_clicks: Vec<(Option<i64>, Option<i64>)> = clicks
            .iter()
            .filter(|c| c.3 < exposures_watermark && !pairs.iter().any(|p| p.1 == c.0))
            .map(|c| (None, Some(c.0)))
            .collect();
        assert!(
            alone_exposures.len() > 5 && alone_clicks.len() > 5,
            "the data has rows that meet nothing"
        );
        expected.extend(alone_exposures);
        expected.extend(alone_clicks);
    }

    // Three runs, each reading what was sent since the last: the early clicks
    // alone (held); every exposure (joined with the held clicks, and held); the
    // late clicks (joined with the held exposures). Both sides' state is used,
    // and carried across two restarts.
    let middle = 40_000;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let (early_clicks, late_clicks): (Vec<Event>, Vec<Event>) =
        clicks.iter().partition(|c| c.3 < middle);
    let mut stats = None;
    for (exposures, clicks) in [
        (&[][..], &early_clicks[..]),
        (&exposures[..], &[][..]),
        (&[][..], &late_clicks[..]),
    ] {
        produce(&producer, exposures, clicks).await;
        let pipeline = load_project(&catalog).await.unwrap().remove(0);
        stats = Some(run_to_end(&catalog, pipeline).await);
    }
    let stats = stats.expect("three runs");
    assert_eq!(
        stats
            .quarantined_rows
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    let mut got: Vec<(Option<i64>, Option<i64>)> = rows(
        &catalog,
        "SELECT exposure_id, click_id FROM shop.dwd_ad_clicks",
    )
    .await
    .into_iter()
    .map(|row| (row[0].parse().ok(), row[1].parse().ok()))
    .collect();
    got.sort();
    assert_eq!(
        got,
        expected.into_iter().collect::<Vec<_>>(),
        "every pair once, and with FULL every row that met nothing once"
    );
}

#[tokio::test]
async fn interval_joins_it_cannot_run_are_refused_with_the_reason() {
    let (dir, catalog) = kafka_project(
        "127.0.0.1:9",
        "",
        ("dwd_orders", "SELECT 1"),
        &format!(
            "{CATALOG}CREATE TABLE shop.dwd_orders (exposure_id BIGINT, clicks BIGINT, PRIMARY KEY (exposure_id) NOT ENFORCED) WITH ('connector' = 'delta');"
        ),
    )
    .await;
    let cases = [
        (
            "SELECT e.exposure_id, c.click_id FROM shop.ods_exposures AS e JOIN shop.ods_clicks AS c ON e.user_id IS NOT DISTINCT FROM c.user_id".to_string(),
            "keys compared with IS NOT DISTINCT FROM in a join of two streams",
        ),
        (
            "SELECT e.exposure_id, 0 FROM shop.ods_exposures AS e WHERE e.user_id NOT IN (SELECT c.user_id FROM shop.ods_clicks AS c WHERE c.click_id > e.exposure_id)".to_string(),
            "NOT IN over a stream of several columns, or of a correlated subquery, that may be NULL",
        ),
        (
            "SELECT COUNT(*) AS a, COUNT(*) AS b FROM TABLE(TUMBLE(TABLE shop.ods_exposures, DESCRIPTOR(shown_at), INTERVAL '1' MINUTE)) AS e JOIN shop.ods_clicks AS c ON e.user_id = c.user_id GROUP BY e.window_start".to_string(),
            "a window-aligned query reads the streams it windows",
        ),
        (
            "SELECT e.exposure_id, 0 FROM shop.ods_exposures AS e WHERE EXISTS (SELECT 1 FROM shop.ods_clicks AS c WHERE c.user_id = e.user_id AND c.clicked_at BETWEEN e.shown_at AND e.shown_at + INTERVAL '1' MINUTE)".to_string(),
            "interval join (interval joins run as INNER, LEFT, RIGHT or FULL joins;",
        ),
        (
            "SELECT e.exposure_id, c.click_id FROM (SELECT exposure_id, user_id, shown_at + INTERVAL '1' HOUR AS shown_at FROM shop.ods_exposures) AS e JOIN shop.ods_clicks AS c ON e.user_id = c.user_id AND c.clicked_at BETWEEN e.shown_at AND e.shown_at + INTERVAL '1' MINUTE".to_string(),
            "an interval join over a shown_at that is computed before the join",
        ),
        (
            "SELECT exposure_id, LAG(click_id) OVER (PARTITION BY user_id ORDER BY shown_at) FROM (SELECT e.exposure_id, e.user_id, e.shown_at, c.click_id FROM shop.ods_exposures AS e JOIN shop.ods_clicks AS c ON e.user_id = c.user_id AND c.clicked_at BETWEEN e.shown_at AND e.shown_at + INTERVAL '1' MINUTE)".to_string(),
            "LAG (operator lag-1) beside a second stream",
        ),
    ];
    for (select, expected) in cases {
        let refused = crate::ingest::refusal(
            &dir,
            &catalog,
            &format!("INSERT INTO shop.dwd_orders {select}"),
        )
        .await;
        assert!(
            refused.contains(expected),
            "{select}\nwas refused with: {refused}"
        );
    }
}
