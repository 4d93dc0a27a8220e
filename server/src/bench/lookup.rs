//! `strata bench lookup`: orders enriched with a lookup join against the local
//! MariaDB, against the same pipeline without the join, in one run.
//!
//! ```text
//!   MariaDB  strata_bench_lookup.users (N users)
//!   Kafka    orders: 80 % from the hottest 2 % of users, 1 % from unknown users
//!   no join:  orders ──▶ SELECT ──▶ Delta                                      rows/s
//!   join:     orders ──▶ LEFT JOIN dim_users FOR SYSTEM_TIME AS OF … ──▶ Delta   rows/s, queries / 1,000 rows, hit rate
//! ```

use std::sync::atomic::Ordering;

use anyhow::{Context, bail};
use rdkafka::mocking::MockCluster;
use serde::Serialize;
use sqlx::Connection;
use strata_catalog::{Catalog, Project, RegisterMode};
use strata_pipelines::load_project;

use super::ingest::retained_records;
use super::{PARTITIONS, produce, run_until_caught_up};

const DATABASE: &str = "strata_bench_lookup";

#[derive(Debug, Serialize)]
pub struct LookupReport {
    pub records: usize,
    pub users: usize,
    /// Enriched rows committed per second.
    pub rows_per_s: f64,
    pub no_join_rows_per_s: f64,
    pub ratio_to_no_join: f64,
    /// Database queries per 1,000 rows, over the whole run (a cold cache included).
    pub queries_per_1k_rows: f64,
    pub cache_hit_rate: f64,
    pub queries: u64,
    pub mean_query_ms: f64,
}

/// The user of order `id`: mostly hot users, some unknown ones.
fn user_of(id: usize, users: usize) -> usize {
    let mut x = (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    let hot = (users / 50).max(1);
    match x % 100 {
        0 => users + 1 + (x >> 8) as usize % 1_000,
        1..=80 => (x >> 8) as usize % hot + 1,
        _ => (x >> 8) as usize % users + 1,
    }
}

/// Runs the benchmark: `records` orders over `users` users kept in MariaDB at `server_url`.
pub async fn lookup(
    records: usize,
    users: usize,
    server_url: &str,
    progress: bool,
) -> anyhow::Result<LookupReport> {
    let server_url = server_url.trim_end_matches('/');
    fill_users(server_url, users).await?;
    if progress {
        eprintln!("MariaDB: {users} users in {DATABASE}.users");
    }
    let cluster = MockCluster::new(1).context("starting the Kafka mock cluster")?;
    cluster
        .create_topic("orders", PARTITIONS, 1)
        .context("creating the topic")?;
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, "orders", records, |id| {
        format!(
            r#"{{"order_id": {id}, "user_id": {}, "amount": "{}.{:02}"}}"#,
            user_of(id, users),
            id % 500,
            id % 100
        )
    })?;
    let retained = retained_records(&bootstrap)?;
    if retained != records {
        bail!(
            "the Kafka mock cluster kept {retained} of the {records} records produced; run with --records {retained} or fewer"
        );
    }
    if progress {
        eprintln!("produced {records} orders");
    }

    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("strata.toml"),
        format!(
            "[engine]\ncommit-interval-ms = 250\n[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n[connections.dim]\nkind = \"mysql\"\nurl = \"{server_url}/{DATABASE}\"\n"
        ),
    )?;
    std::fs::create_dir_all(dir.path().join("pipelines/dwd"))?;
    std::fs::write(
        dir.path().join("pipelines/dwd/dwd_orders_plain.sql"),
        "INSERT INTO bench.dwd_orders_plain SELECT order_id, user_id, amount FROM bench.ods_orders",
    )?;
    std::fs::write(
        dir.path().join("pipelines/dwd/dwd_orders_enriched.sql"),
        "INSERT INTO bench.dwd_orders_enriched
         SELECT o.order_id, o.user_id, o.amount, u.name, u.city
         FROM bench.ods_orders AS o
         LEFT JOIN bench.dim_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id",
    )?;
    let catalog = Catalog::open(Project::load(dir.path())?).await?;
    catalog
        .register_sql(
            "bench.sql",
            "CREATE TABLE bench.ods_orders (order_id BIGINT, user_id BIGINT, amount DECIMAL(10, 2), proc_time AS PROCTIME())
             WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
                   'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
             CREATE TABLE bench.dim_users (id BIGINT, name STRING, city STRING, PRIMARY KEY (id) NOT ENFORCED)
             WITH ('connector' = 'mysql', 'connection' = 'dim', 'table-name' = 'users');
             CREATE TABLE bench.dwd_orders_plain (order_id BIGINT, user_id BIGINT, amount DECIMAL(10, 2))
             WITH ('connector' = 'delta');
             CREATE TABLE bench.dwd_orders_enriched (order_id BIGINT, user_id BIGINT, amount DECIMAL(10, 2),
               name STRING, city STRING) WITH ('connector' = 'delta');",
            RegisterMode::Create,
        )
        .await?;
    let mut pipelines = load_project(&catalog).await?;
    pipelines.sort_by_key(|p| p.pipeline.name.contains("enriched"));
    let [plain, enriched] = <[_; 2]>::try_from(pipelines)
        .map_err(|_| anyhow::anyhow!("the benchmark project has two pipelines"))?;
    let (plain_seconds, plain_stats) =
        run_until_caught_up(&catalog, plain, Default::default()).await?;
    if progress {
        eprintln!("without the join: {records} rows in {plain_seconds:.2} s");
    }
    let (seconds, stats) = run_until_caught_up(&catalog, enriched, Default::default()).await?;
    if progress {
        eprintln!("with the join: {records} rows in {seconds:.2} s");
    }
    for (what, committed) in [
        (
            "without",
            plain_stats.rows_committed.load(Ordering::Relaxed),
        ),
        ("with", stats.rows_committed.load(Ordering::Relaxed)),
    ] {
        if committed as usize != records {
            bail!("the pipeline {what} the join committed {committed} of {records} rows");
        }
    }
    let join = stats
        .lookup_stats()
        .into_iter()
        .next()
        .context("the enriched pipeline has a lookup join")?;
    let rows_per_s = records as f64 / seconds;
    let no_join_rows_per_s = records as f64 / plain_seconds;
    Ok(LookupReport {
        records,
        users,
        rows_per_s,
        no_join_rows_per_s,
        ratio_to_no_join: rows_per_s / no_join_rows_per_s,
        queries_per_1k_rows: join.queries_per_1k_rows(),
        cache_hit_rate: join.hit_rate(),
        queries: join.queries.load(Ordering::Relaxed),
        mean_query_ms: join.mean_query_ms(),
    })
}

/// A fresh `users` table with `users` rows.
async fn fill_users(server_url: &str, users: usize) -> anyhow::Result<()> {
    let mut conn = sqlx::MySqlConnection::connect(server_url)
        .await
        .with_context(|| {
            format!("connecting to MariaDB at {server_url}; start it, or pass --mysql-url")
        })?;
    let setup = [
        format!("DROP DATABASE IF EXISTS {DATABASE}"),
        format!("CREATE DATABASE {DATABASE}"),
        format!(
            "CREATE TABLE {DATABASE}.users (id BIGINT PRIMARY KEY, name VARCHAR(32), city VARCHAR(32))"
        ),
    ];
    for sql in setup {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await?;
    }
    const CITIES: [&str; 6] = [
        "Beijing", "Shanghai", "Hangzhou", "Shenzhen", "Chengdu", "Wuhan",
    ];
    for start in (1..=users).step_by(1_000) {
        let values: Vec<String> = (start..=(start + 999).min(users))
            .map(|id| format!("({id}, 'user{id}', '{}')", CITIES[id % CITIES.len()]))
            .collect();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {DATABASE}.users VALUES {}",
            values.join(", ")
        )))
        .execute(&mut conn)
        .await?;
    }
    Ok(())
}
