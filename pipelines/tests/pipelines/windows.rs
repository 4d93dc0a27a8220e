//! Windows end to end through the Kafka mock cluster and Delta, in continuous
//! mode: an idle partition, or an idle stream of a window join, stops holding
//! the watermark back after the idle timeout.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use strata_catalog::{Catalog, Project, RegisterMode};
use strata_pipelines::{PipelineRun, RunMode, TableStats, load_project};

async fn produce(bootstrap: &str, partition: i32, payloads: &[String]) {
    produce_to(bootstrap, "views", partition, payloads).await;
}

async fn produce_to(bootstrap: &str, topic: &str, partition: i32, payloads: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for payload in payloads {
        producer
            .send(
                FutureRecord::<(), str>::to(topic)
                    .partition(partition)
                    .payload(payload),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
}

/// A project in `dir` on the cluster at `bootstrap` (commits every 100 ms,
/// idle after 2 s), with the pipeline `file` (under `pipelines/`) holding `sql`.
fn write_project(dir: &std::path::Path, bootstrap: &str, file: &str, sql: &str) {
    std::fs::write(
        dir.join("strata.toml"),
        format!(
            "[engine]\ncommit-interval-ms = 100\nidle-timeout-ms = 2000\n[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"
        ),
    )
    .unwrap();
    let path = dir.join("pipelines").join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, sql).unwrap();
}

/// Starts the project's pipeline in continuous mode: its stats, its stop and its task.
async fn start(
    catalog: &Catalog,
) -> (
    Arc<TableStats>,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<strata_pipelines::Result<()>>,
) {
    let pipeline = load_project(catalog).await.unwrap().remove(0);
    let stats = Arc::new(TableStats::new());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let run = PipelineRun {
        catalog: catalog.clone(),
        pipeline,
        stats: stats.clone(),
        mode: RunMode::Continuous,
        quality: Default::default(),
        replay: None,
    };
    (stats, stop, tokio::spawn(run.run(stop_rx)))
}

fn view(page: &str, time: &str) -> String {
    format!(r#"{{"user_id": 1, "page": "{page}", "view_time": "2024-05-01T{time}"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_stops_holding_windows_back() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("views", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        &bootstrap,
        "dws/dws_page_pv.sql",
        "INSERT INTO shop.dws_page_pv SELECT window_start, page, COUNT(*)
         FROM TABLE(TUMBLE(TABLE shop.ods_views, DESCRIPTOR(view_time), INTERVAL '1' MINUTE))
         GROUP BY window_start, window_end, page",
    );
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    catalog
        .register_sql(
            "catalog.sql",
            "CREATE TABLE shop.ods_views (user_id BIGINT, page STRING, view_time TIMESTAMP(3),
               WATERMARK FOR view_time AS view_time - INTERVAL '0' SECOND)
             WITH ('connector' = 'kafka', 'topic' = 'views', 'format' = 'json',
                   'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
             CREATE TABLE shop.dws_page_pv (window_start TIMESTAMP(3), page STRING, pv BIGINT)
             WITH ('connector' = 'delta');",
            RegisterMode::Create,
        )
        .await
        .unwrap();
    // Partition 1 says 10:00:01 once and falls silent; partition 0 moves on to 10:02:30.
    produce(&bootstrap, 1, &[view("/home", "10:00:01")]).await;
    produce(
        &bootstrap,
        0,
        &[
            view("/home", "10:00:05"),
            view("/item", "10:00:40"),
            view("/home", "10:01:10"),
            view("/home", "10:02:30"),
        ],
    )
    .await;

    let (stats, stop, task) = start(&catalog).await;
    let count = || async {
        let result = catalog
            .query("SELECT count(*) AS n FROM shop.dws_page_pv")
            .await
            .unwrap();
        result.text_rows().unwrap()[0][0].clone()
    };
    // While partition 1 counts, the watermark is its 10:00:01.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let first = loop {
        if let Some(watermark) = stats.watermark() {
            break watermark;
        }
        assert!(std::time::Instant::now() < deadline, "no watermark");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(first, 1_714_557_601_000);
    // Once it has been idle for the idle timeout, partition 0 alone sets the watermark
    // (10:02:30), which closes the 10:00 and 10:01 windows.
    while count().await != "3" {
        assert!(
            std::time::Instant::now() < deadline,
            "the windows never closed; watermark {:?}",
            stats.watermark()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let rows = catalog
        .query("SELECT CAST(window_start AS STRING) AS start, page, pv FROM shop.dws_page_pv ORDER BY start, page")
        .await
        .unwrap()
        .text_rows()
        .unwrap();
    assert_eq!(
        rows,
        [
            ["2024-05-01T10:00:00", "/home", "2"],
            ["2024-05-01T10:00:00", "/item", "1"],
            ["2024-05-01T10:01:00", "/home", "1"],
        ]
    );
    assert_eq!(stats.watermark(), Some(1_714_557_750_000));
}

/// A window join of people and auctions (Nexmark's q8) whose auctions fall
/// silent: once they have been idle for the idle timeout, the people's
/// watermark alone closes windows, as an idle input in Flink; an auction that
/// comes after its window closed goes to the late table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_stops_holding_a_window_join_back() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("people", 1, 1).unwrap();
    cluster.create_topic("auctions", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        &bootstrap,
        "dws/dws_new_sellers.sql",
        "INSERT INTO shop.dws_new_sellers
         SELECT P.id, P.starttime FROM (
           SELECT id, window_start AS starttime, window_end AS endtime
           FROM TABLE(TUMBLE(TABLE shop.ods_people, DESCRIPTOR(p_time), INTERVAL '1' MINUTE))
           GROUP BY id, window_start, window_end
         ) P JOIN (
           SELECT seller, window_start AS starttime, window_end AS endtime
           FROM TABLE(TUMBLE(TABLE shop.ods_auctions, DESCRIPTOR(a_time), INTERVAL '1' MINUTE))
           GROUP BY seller, window_start, window_end
         ) A ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime",
    );
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    catalog
        .register_sql(
            "catalog.sql",
            "CREATE TABLE shop.ods_people (id BIGINT, p_time TIMESTAMP(3), WATERMARK FOR p_time AS p_time)
             WITH ('connector' = 'kafka', 'topic' = 'people', 'format' = 'json',
                   'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
             CREATE TABLE shop.ods_auctions (seller BIGINT, a_time TIMESTAMP(3), WATERMARK FOR a_time AS a_time)
             WITH ('connector' = 'kafka', 'topic' = 'auctions', 'format' = 'json',
                   'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
             CREATE TABLE shop.dws_new_sellers (id BIGINT, starttime TIMESTAMP(3))
             WITH ('connector' = 'delta');",
            RegisterMode::Create,
        )
        .await
        .unwrap();
    let person = |id: i64, time: &str| format!(r#"{{"id": {id}, "p_time": "2024-05-01T{time}"}}"#);
    let auction = |seller: i64, time: &str| {
        format!(r#"{{"seller": {seller}, "a_time": "2024-05-01T{time}"}}"#)
    };
    produce_to(&bootstrap, "auctions", 0, &[auction(1, "10:00:01")]).await;
    produce_to(
        &bootstrap,
        "people",
        0,
        &[
            person(1, "10:00:05"),
            person(2, "10:01:10"),
            person(3, "10:02:30"),
        ],
    )
    .await;

    let (stats, stop, task) = start(&catalog).await;
    let rows = || async {
        catalog
            .query("SELECT id, CAST(starttime AS STRING) AS start FROM shop.dws_new_sellers ORDER BY id")
            .await
            .map(|result| result.text_rows().unwrap())
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rows().await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the auctions' silence held the 10:00 window back; watermark {:?}",
            stats.watermark()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A late auction of the closed 10:00 window is kept in the late table, not joined.
    produce_to(&bootstrap, "auctions", 0, &[auction(1, "10:00:30")]).await;
    let late_deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let late = catalog
            .query("SELECT count(*) FROM shop.dws_new_sellers__late_ods_auctions")
            .await
            .map(|result| result.text_rows().unwrap()[0][0].clone())
            .unwrap_or_default();
        if late == "1" {
            break;
        }
        assert!(
            std::time::Instant::now() < late_deadline,
            "the late auction went nowhere"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(rows().await, [["1", "2024-05-01T10:00:00"]]);
}

/// Checks a pipeline over bids into `shop.dws_out (a BIGINT, b BIGINT)` (or `shop.dws_out_keyed`, keyed by a); the error, if any.
async fn check_bids_pipeline(sql: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("strata.toml"), "").unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines/dws")).unwrap();
    std::fs::write(dir.path().join("pipelines/dws/dws_out.sql"), sql).unwrap();
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    catalog
        .register_sql(
            "catalog.sql",
            "CREATE TABLE shop.ods_bids (auction BIGINT, price BIGINT, bid_time TIMESTAMP(3),
               WATERMARK FOR bid_time AS bid_time - INTERVAL '1' SECOND)
             WITH ('connector' = 'kafka', 'topic' = 'bids', 'format' = 'json', 'properties.bootstrap.servers' = 'b:9092');
             CREATE TABLE shop.ods_bids_cdc (auction BIGINT, price BIGINT, bid_time TIMESTAMP(3),
               PRIMARY KEY (auction) NOT ENFORCED, WATERMARK FOR bid_time AS bid_time - INTERVAL '1' SECOND)
             WITH ('connector' = 'kafka', 'topic' = 'bids_cdc', 'format' = 'debezium-json', 'properties.bootstrap.servers' = 'b:9092');
             CREATE TABLE shop.dws_out (a BIGINT, b BIGINT) WITH ('connector' = 'delta');
             CREATE TABLE shop.dws_out_keyed (a BIGINT, b BIGINT, PRIMARY KEY (a) NOT ENFORCED)
             WITH ('connector' = 'delta');",
            RegisterMode::Create,
        )
        .await
        .unwrap();
    let pipeline = load_project(&catalog)
        .await
        .map_err(|err| err.to_string())?
        .remove(0);
    let run = PipelineRun {
        catalog,
        pipeline,
        stats: Arc::new(TableStats::new()),
        mode: RunMode::UntilCaughtUp,
        quality: Default::default(),
        replay: None,
    };
    run.check().await.map_err(|err| err.to_string())
}

/// Two aggregations of one CUMULATE window over the bids, joined on `bound`.
fn cumulate_joined_on(bound: &str) -> String {
    let cumulate = "TABLE(CUMULATE(TABLE shop.ods_bids, DESCRIPTOR(bid_time), INTERVAL '1' SECOND, INTERVAL '10' SECOND))";
    format!(
        "INSERT INTO shop.dws_out SELECT A.n, B.n FROM
         (SELECT COUNT(*) AS n, {bound} AS w FROM {cumulate} GROUP BY window_start, window_end) A
         JOIN (SELECT MAX(price) AS n, {bound} AS w FROM {cumulate} GROUP BY window_start, window_end) B ON A.w = B.w"
    )
}

#[tokio::test]
async fn window_aligned_queries_that_would_mix_windows_are_refused() {
    let tumble = "TABLE(TUMBLE(TABLE shop.ods_bids, DESCRIPTOR(bid_time), INTERVAL '10' SECOND))";
    // The q7 shape is accepted.
    check_bids_pipeline(&format!(
        "INSERT INTO shop.dws_out SELECT B.auction, B.price FROM shop.ods_bids B
         JOIN (SELECT MAX(price) AS maxprice, window_end AS wend FROM {tumble} GROUP BY window_start, window_end) W
         ON B.price = W.maxprice WHERE B.bid_time BETWEEN W.wend - INTERVAL '10' SECOND AND W.wend"
    ))
    .await
    .unwrap();
    // Two CUMULATE windows joined on their ends, as Flink joins window to window.
    check_bids_pipeline(&cumulate_joined_on("window_end"))
        .await
        .unwrap();
    let refusals = [
        (
            format!(
                "INSERT INTO shop.dws_out SELECT B.auction, B.price FROM shop.ods_bids B
                 JOIN (SELECT MAX(price) AS maxprice FROM {tumble} GROUP BY window_start, window_end) W
                 ON B.price = W.maxprice"
            ),
            "not bounded on both sides by the window",
        ),
        (
            format!(
                "INSERT INTO shop.dws_out SELECT m, COUNT(*) FROM (SELECT MAX(price) AS m, window_end FROM {tumble} GROUP BY window_start, window_end) W
                 GROUP BY m"
            ),
            "does not group by window_start or window_end",
        ),
        (
            format!(
                "INSERT INTO shop.dws_out SELECT A.n, B.n FROM
                 (SELECT COUNT(*) AS n, window_end AS e FROM {tumble} GROUP BY window_start, window_end) A
                 JOIN (SELECT MAX(price) AS n, window_end AS e FROM {tumble} GROUP BY window_start, window_end) B ON A.n = B.n"
            ),
            "without equal window bounds",
        ),
        (
            format!(
                "INSERT INTO shop.dws_out SELECT B.auction, B.price FROM shop.ods_bids B
                 LEFT JOIN (SELECT MAX(price) AS maxprice, window_end AS wend FROM {tumble} GROUP BY window_start, window_end) W
                 ON B.price = W.maxprice AND B.bid_time BETWEEN W.wend - INTERVAL '10' SECOND AND W.wend"
            ),
            "outer join keeps stream rows",
        ),
        (
            cumulate_joined_on("window_start"),
            "two CUMULATE windows' results are joined without equal window ends",
        ),
        (
            "INSERT INTO shop.dws_out SELECT A.n, B.n FROM
             (SELECT COUNT(*) AS n, window_end AS e FROM TABLE(SESSION(TABLE shop.ods_bids, DESCRIPTOR(bid_time), INTERVAL '5' SECOND)) GROUP BY window_start, window_end) A
             JOIN (SELECT MAX(price) AS n, window_end AS e FROM TABLE(SESSION(TABLE shop.ods_bids, DESCRIPTOR(bid_time), INTERVAL '5' SECOND)) GROUP BY window_start, window_end) B ON A.e = B.e"
                .to_string(),
            "a SESSION window joined or aggregated twice",
        ),
        (
            format!(
                "INSERT INTO shop.dws_out SELECT B.auction, B.price FROM shop.ods_bids_cdc B
                 JOIN (SELECT MAX(price) AS maxprice, window_end AS wend FROM {} GROUP BY window_start, window_end) W
                 ON B.price = W.maxprice AND B.bid_time BETWEEN W.wend - INTERVAL '10' SECOND AND W.wend",
                tumble.replace("ods_bids", "ods_bids_cdc")
            ),
            "changelog",
        ),
    ];
    for (sql, reason) in refusals {
        let err = check_bids_pipeline(&sql).await.unwrap_err();
        assert!(err.contains(reason), "{sql}\nwas refused with: {err}");
        assert!(
            err.contains("dws_out.sql:"),
            "the error names the file: {err}"
        );
    }
}

#[tokio::test]
async fn operators_over_an_aggregations_results_are_refused_but_for_a_ranking() {
    let counts =
        "(SELECT auction, COUNT(*) AS n, MAX(bid_time) AS t FROM shop.ods_bids GROUP BY auction)";
    // Each auction's bid count ranked, the first kept: a Top-N over the GROUP BY's changes.
    check_bids_pipeline(&format!(
        "INSERT INTO shop.dws_out_keyed SELECT auction, n FROM (
           SELECT auction, n, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY n DESC) AS rn FROM {counts} c
         ) r WHERE rn <= 1"
    ))
    .await
    .unwrap();
    let refusals = [
        (
            format!(
                "INSERT INTO shop.dws_out_keyed SELECT auction, LAG(n) OVER (PARTITION BY auction) FROM {counts} c"
            ),
            "a LAG after the aggregation",
        ),
        (
            format!(
                "INSERT INTO shop.dws_out_keyed SELECT c.auction, b.price FROM {counts} c
                 JOIN shop.ods_bids_cdc b ON c.auction = b.auction"
            ),
            "after the aggregation",
        ),
        (
            format!(
                "INSERT INTO shop.dws_out_keyed SELECT auction, n FROM (
                   SELECT auction, n, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY n DESC) AS rn
                   FROM {counts} c WHERE t > CURRENT_WATERMARK(t)
                 ) r WHERE rn <= 1"
            ),
            "CURRENT_WATERMARK after an aggregation",
        ),
    ];
    for (sql, reason) in refusals {
        let err = check_bids_pipeline(&sql).await.unwrap_err();
        assert!(err.contains(reason), "{sql}\nwas refused with: {err}");
    }
}
