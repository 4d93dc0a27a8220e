//! Every Nexmark query Strata runs, from its Flink SQL, against the reference
//! computation on the same events, row by row: generated in the pipeline, and
//! as JSON through the Kafka mock cluster. (`strata bench nexmark` runs the
//! same check on large runs, by count and digest.)

use strata_server::bench::nexmark::{
    EventSource, NexmarkOptions, QUERIES, Query, Windows, nexmark,
};

/// 100,000 events at 2,000 a second: 50 s of event time, so that windows of
/// 10 s close several times before the end.
const OPTIONS: NexmarkOptions = NexmarkOptions {
    events: 100_000,
    rate: 2_000,
    source: EventSource::Gen,
    progress: false,
    state_memory_mb: None,
};

async fn run_and_check(query: Query, options: NexmarkOptions) {
    let report = nexmark(query, options)
        .await
        .unwrap_or_else(|err| panic!("{}: {err:#}", query.name));
    // Windows over processing time (q12) fall where the clock puts them:
    // what they add up to per key is compared.
    let on_the_clock = matches!(query.windows, Windows::OnTheClock(_));
    let check = if on_the_clock { "totals" } else { "rows" };
    assert_eq!(
        report.check, check,
        "{}: small runs compare rows",
        query.name
    );
    assert!(report.rows_out > 0, "{}: no rows", query.name);
    assert!(report.events_per_s_per_core > 0.0 && report.peak_rss_mb > 0.0);
    if query.is_windowed() {
        let windows = report.windows.unwrap_or(0);
        let least = if on_the_clock { 1 } else { 3 };
        assert!(windows >= least, "{}: {windows} windows closed", query.name);
        assert!(report.p99_latency_ms.is_some());
    }
}

/// One test per query, each on the generated events, so that they run side by side.
macro_rules! generated {
    ($($query:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $query() {
                run_and_check(Query::named(stringify!($query)).unwrap(), OPTIONS).await;
            }
        )*

        #[test]
        fn every_query_strata_runs_is_checked() {
            let tested = [$(stringify!($query)),*];
            let runs: Vec<&str> = QUERIES.iter().map(|q| q.name).collect();
            assert_eq!(runs, tested);
        }
    };
}

generated!(
    q0, q1, q2, q3, q4, q5, q7, q8, q9, q10, q11, q12, q13, q14, q15, q16, q17, q18, q19, q20, q21,
    q22
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_read_from_kafka_json_match_the_reference() {
    let options = NexmarkOptions {
        events: 80_000,
        source: EventSource::Kafka,
        ..OPTIONS
    };
    for name in ["q1", "q7", "q3", "q20", "q8"] {
        run_and_check(Query::named(name).unwrap(), options).await;
    }
}

/// Joins and rankings whose keyed state outgrows a small budget: spilled to
/// the working store on disk and read back from it, the results are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_whose_state_spills_to_disk_match_the_reference() {
    let options = NexmarkOptions {
        state_memory_mb: Some(8),
        ..OPTIONS
    };
    for name in ["q20", "q9", "q19"] {
        run_and_check(Query::named(name).unwrap(), options).await;
    }
}

/// Windows over processing time while the rows come from Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q12_read_from_kafka_json_adds_up_to_the_reference() {
    let options = NexmarkOptions {
        events: 80_000,
        source: EventSource::Kafka,
        ..OPTIONS
    };
    run_and_check(Query::named("q12").unwrap(), options).await;
}

#[test]
fn unknown_queries_are_named_with_those_that_run() {
    let err = Query::named("q6").unwrap_err().to_string();
    assert!(
        err.contains("q6") && err.contains("q0, q1, q2, q3, q4, q5, q7, q8, q9, q10, q11, q12"),
        "{err}"
    );
}
