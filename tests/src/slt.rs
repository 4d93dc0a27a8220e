//! One sqllogictest runner for every crate: each crate says how to run one
//! file (on what database, with what services); this runs a folder's files in
//! parallel and reports every file that failed, not just the first.
//!
//! ```text
//!   tests/slt/*.slt ──(STRATA_SLT=name,… keeps only those)──▶ STRATA_SLT_JOBS at once ──▶ run_file(path)
//!                                                                 failures, by file ──▶ one panic naming them all
//! ```
//!
//! `STRATA_SLT=tumble cargo nextest run -p strata-pipelines slt` runs `tumble.slt` alone.

use std::future::Future;
use std::path::{Path, PathBuf};

use futures::StreamExt;

/// The `.slt` files of `dir` that `STRATA_SLT` (names, with or without
/// `.slt`, comma-separated) keeps, in name order.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let wanted: Option<Vec<String>> = std::env::var("STRATA_SLT").ok().map(|names| {
        names
            .split(',')
            .map(|name| name.trim().trim_end_matches(".slt").to_string())
            .filter(|name| !name.is_empty())
            .collect()
    });
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    if let Some(wanted) = wanted {
        let stem = |path: &PathBuf| path.file_stem().unwrap().to_string_lossy().into_owned();
        let known: Vec<String> = files.iter().map(stem).collect();
        for name in &wanted {
            assert!(
                known.contains(name),
                "STRATA_SLT names {name}, which is not in {}: {}",
                dir.display(),
                known.join(", ")
            );
        }
        files.retain(|path| wanted.contains(&stem(path)));
    }
    files
}

/// Runs every file [`files`] keeps with `run_file`, `STRATA_SLT_JOBS` at a
/// time (default: the machine's cores), and panics naming every file that
/// failed, with its error.
pub async fn run<F, Fut>(dir: &Path, run_file: F)
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let jobs = std::env::var("STRATA_SLT_JOBS")
        .ok()
        .and_then(|jobs| jobs.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let failures: Vec<String> = futures::stream::iter(files(dir))
        .map(|file| {
            let outcome = run_file(file.clone());
            async move {
                outcome
                    .await
                    .err()
                    .map(|err| format!("{}: {err}", file.display()))
            }
        })
        .buffer_unordered(jobs.max(1))
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} .slt file(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
