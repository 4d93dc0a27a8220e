//! State checkpointed by the previous release restores under this one, and
//! the pipelines go on exactly as an uninterrupted run would.

use std::path::Path;

use crate::support::{json, strata_ok};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The magic bytes each pipeline's newest checkpoint file starts with.
fn checkpoint_formats(project: &Path) -> Vec<String> {
    ["dws/bid_counts", "dws/bidder_totals", "dwd/price_steps"]
        .iter()
        .map(|table| {
            let pipeline = table.split('/').nth(1).unwrap();
            let dir = project
                .join("lake")
                .join(table)
                .join("_strata_state")
                .join(pipeline);
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
                .map(|entry| entry.unwrap().path())
                .collect();
            files.sort();
            let bytes = std::fs::read(files.last().expect("a checkpoint file")).unwrap();
            String::from_utf8_lossy(&bytes[..14]).into_owned()
        })
        .collect()
}

#[test]
fn a_checkpoint_of_the_previous_release_restores_and_goes_on_as_a_fresh_run_would() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v2");
    let resumed = tempfile::tempdir().unwrap();
    copy_dir(&fixture, resumed.path());
    let fresh = tempfile::tempdir().unwrap();
    for part in ["catalog", "pipelines"] {
        copy_dir(&fixture.join(part), &fresh.path().join(part));
    }
    std::fs::copy(
        fixture.join("strata.toml"),
        fresh.path().join("strata.toml"),
    )
    .unwrap();
    // The previous release read the first 3,000 events and checkpointed open
    // windows, every bidder's totals and each auction's last price.
    assert_eq!(checkpoint_formats(resumed.path()), ["STRATA-STATE-2"; 3]);
    for dir in [resumed.path(), fresh.path()] {
        let catalog = dir.join("catalog/nexmark.sql");
        let ddl = std::fs::read_to_string(&catalog).unwrap();
        assert!(ddl.contains("'events.num' = '3000'"), "{ddl}");
        std::fs::write(&catalog, ddl.replace("'3000'", "'6000'")).unwrap();
        let catalog = dir.join("catalog");
        strata_ok(dir, &["catalog", "register", catalog.to_str().unwrap()]);
        strata_ok(
            dir,
            &["run", "--until-idle", "--port", "0", "--pg-port", "0"],
        );
    }
    assert_eq!(checkpoint_formats(resumed.path()), ["STRATA-STATE-3"; 3]);
    for (table, order, at_least) in [
        ("dws.bid_counts", "auction, window_start", 394),
        ("dws.bidder_totals", "bidder", 65),
        (
            "dwd.price_steps",
            "auction, \"dateTime\", price, previous",
            2_760,
        ),
    ] {
        let sql = format!("SELECT * FROM {table} ORDER BY {order}");
        let rows = |dir: &Path| json(&strata_ok(dir, &["query", &sql, "--format", "json"]));
        let (resumed, fresh) = (rows(resumed.path()), rows(fresh.path()));
        let count = fresh.as_array().unwrap().len();
        assert!(count > at_least, "{table}: {count} rows");
        assert!(
            resumed == fresh,
            "{table}: resumed {resumed}\nfresh {fresh}"
        );
    }
}

/// `strata bench state` at a small scale: keyed state loaded, changed and
/// compacted through checkpoint files restores into a fresh store exactly,
/// and a commit uploads only the keys it changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_state_restores_exactly_from_incremental_checkpoints() {
    let report = strata_server::bench::state(strata_server::bench::StateOptions {
        small_keys: 2_000,
        large_keys: 30_000,
        changed: 100,
        commits: 3,
        memory_mb: 16,
        progress: false,
    })
    .await
    .unwrap();
    assert!(report.restored_exactly);
    assert_eq!(report.restored_keys, 30_000);
    for phase in [&report.small, &report.large] {
        assert!(phase.commit_bytes > 0);
        // 100 keys of 8 bytes and 16-byte values, in an Arrow IPC file: a few kB,
        // whether the state holds 2 k or 30 k keys.
        assert!(phase.commit_bytes < 20_000, "{}", phase.commit_bytes);
    }
    assert!(report.large.state_mb > report.small.state_mb);
}
