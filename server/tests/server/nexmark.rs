//! Every Nexmark query Strata runs, from its Flink SQL, against the reference
//! computation on the same events, row by row: generated in the pipeline, and
//! as JSON through the Kafka mock cluster. (`strata bench nexmark` runs the
//! same check on large runs, by count and digest.)

use strata_server::bench::nexmark::{EventSource, NexmarkOptions, QUERIES, Query, nexmark};

/// 100,000 events at 2,000 a second: 50 s of event time, so that windows of
/// 10 s close several times before the end.
const OPTIONS: NexmarkOptions = NexmarkOptions {
    events: 100_000,
    rate: 2_000,
    source: EventSource::Gen,
    progress: false,
};

async fn run_and_check(query: Query, options: NexmarkOptions) {
    let report = nexmark(query, options)
        .await
        .unwrap_or_else(|err| panic!("{}: {err:#}", query.name));
    assert_eq!(
        report.check, "rows",
        "{}: small runs compare rows",
        query.name
    );
    assert!(report.rows_out > 0, "{}: no rows", query.name);
    assert!(report.events_per_s_per_core > 0.0 && report.peak_rss_mb > 0.0);
    if query.window_slide_ms.is_some() {
        let windows = report.windows.unwrap_or(0);
        assert!(windows >= 3, "{}: {windows} windows closed", query.name);
        assert!(report.p99_latency_ms.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_matches_the_reference_on_generated_events() {
    for query in QUERIES {
        run_and_check(query, OPTIONS).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_read_from_kafka_json_match_the_reference() {
    let options = NexmarkOptions {
        events: 80_000,
        source: EventSource::Kafka,
        ..OPTIONS
    };
    for name in ["q1", "q7"] {
        run_and_check(Query::named(name).unwrap(), options).await;
    }
}

#[test]
fn unknown_queries_are_named_with_those_that_run() {
    let err = Query::named("q3").unwrap_err().to_string();
    assert!(
        err.contains("q3") && err.contains("q0, q1, q2, q5, q7"),
        "{err}"
    );
}
