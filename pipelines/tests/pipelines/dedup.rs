//! Deduplication on keyed state, through the whole commit path: commits seal
//! deltas and compact them, restarts restore them, and what is left behind is
//! only what the last landed checkpoint names.

use std::collections::BTreeSet;
use std::path::Path;

use rdkafka::mocking::MockCluster;
use strata_pipelines::checkpoint::Checkpoint;
use strata_pipelines::keyed::{FileKind, KEY_GROUPS, Manifest, StateFile};
use strata_pipelines::load_project;

use crate::ingest::{kafka_project, produce, run_to_end};

const CATALOG: &str = "
CREATE TABLE shop.ods_orders (
  order_id BIGINT, amount DECIMAL(10, 2), order_time TIMESTAMP(3), proc_time AS PROCTIME()
) WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
        'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.dwd_orders (order_id BIGINT, amount DECIMAL(10, 2)) WITH ('connector' = 'delta');
";

const PIPELINE: &str = "INSERT INTO shop.dwd_orders
SELECT order_id, amount FROM (
  SELECT order_id, amount, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY proc_time) AS rn
  FROM shop.ods_orders
) AS o WHERE rn = 1";

/// Orders `ids`, each sent `copies` times (amounts 0.00, 1.00, …) to one of
/// three partitions, keyed by the order as a producer keys them: a partition
/// keeps its order, so the first copy is the first to arrive.
fn orders(ids: std::ops::Range<i64>, copies: i64) -> Vec<(i32, String)> {
    ids.flat_map(|id| {
        (0..copies).map(move |copy| {
            (
                (id % 3) as i32,
                format!(
                    r#"{{"order_id": {id}, "amount": "{copy}.00", "order_time": "2024-05-01T10:00:00"}}"#
                ),
            )
        })
    })
    .collect()
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn duplicates_across_commits_and_restarts_stay_out_and_old_state_files_go() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (dir, catalog) = kafka_project(
        &bootstrap,
        "commit-interval-ms = 20\nbatch-records = 50\nstate-memory-mb = 8",
        ("dwd_orders", PIPELINE),
        CATALOG,
    )
    .await;
    // Four runs, each a commit or more: each sends new orders and copies of
    // every order sent before.
    for run in 0..4 {
        let ids = run * 150..(run + 1) * 150;
        let mut records = orders(ids.clone(), 2);
        records.extend(orders(0..ids.start, 1));
        produce(&bootstrap, &records).await;
        let pipeline = load_project(&catalog).await.unwrap().remove(0);
        run_to_end(&catalog, pipeline).await;
        let written = catalog
            .query("SELECT count(*) AS n, count(DISTINCT order_id) AS d, sum(amount) AS s FROM shop.dwd_orders")
            .await
            .unwrap()
            .text_rows()
            .unwrap();
        // Each order once, with the amount of its first copy (0.00).
        assert_eq!(
            written,
            [[ids.end.to_string(), ids.end.to_string(), "0.00".to_string()]],
            "after run {run}"
        );
    }
    // The operator's files: what the last checkpoint's manifest names, and at
    // most one newer base that a compaction wrote and no checkpoint names yet.
    let state = dir
        .path()
        .join("lake/shop/dwd_orders/_strata_state/dwd_orders");
    let last = names(&state)
        .into_iter()
        .filter(|name| name.ends_with(".bin"))
        .max()
        .expect("a checkpoint was written");
    let bytes = std::fs::read(state.join(last)).unwrap();
    let mut checkpoint = Checkpoint::decode(&bytes).unwrap().unwrap();
    let entry = checkpoint
        .take("row-number-1")
        .expect("the operator's entry");
    let manifest = Manifest::decode(&entry.bytes, KEY_GROUPS).unwrap();
    let named: BTreeSet<String> = manifest.files.iter().map(StateFile::name).collect();
    let base_checkpoint = manifest.base().map_or(-1, |base| base.checkpoint);
    let files = names(&state.join("keyed/row-number-1"));
    let unnamed: Vec<&String> = files.difference(&named).collect();
    assert!(named.is_subset(&files), "{named:?} in {files:?}");
    let newer_base = |name: &&String| {
        StateFile::checkpoint_in(name, FileKind::Base).is_some_and(|k| k > base_checkpoint)
    };
    assert!(
        unnamed.len() <= 1 && unnamed.iter().all(newer_base),
        "replaced files are deleted: {unnamed:?}"
    );
    // The runs' working stores are gone with them.
    let working = names(&dir.path().join(".strata/keyed/dwd_orders"));
    assert!(working.is_empty(), "{working:?}");
}
