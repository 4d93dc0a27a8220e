//! `strata demo`: the shop example, end to end, with nothing to install.
//!
//! ```text
//!   generator ──▶ Kafka mock cluster (in process): orders, page_views, price_changes, payments
//!                   │   (slightly out of order, a few malformed records, a few very late orders,
//!                   │    one hot page, payments the gateway reports twice)
//!                   ▼
//!   examples/shop:  ODS (Kafka) ──▶ DWD (Delta) ──▶ DWS (Delta, per-minute windows) ──▶ APP (Delta, upserts)
//!                   DIM (cities, products) in the catalog's embedded SQL store
//! ```
//!
//! `--example iot` runs `examples/iot` instead (see [`iot`]).
//!
//! The project is written to the demo directory (default `./strata-demo`) and
//! stays there, so its tables can be queried after the demo stops. Starting the
//! demo again in the same directory starts it afresh.

mod iot;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde::Serialize;
use strata_catalog::connectors::nexmark::Random;
use strata_catalog::{Catalog, Project, RegisterMode};

use crate::run::{Registry, RunOptions, RunSummary, run_project};

/// The example project, as shipped in `examples/shop`.
const PROJECT_FILES: [(&str, &str); 18] = [
    (
        "strata.toml",
        include_str!("../../examples/shop/strata.toml"),
    ),
    (
        "catalog/ods.sql",
        include_str!("../../examples/shop/catalog/ods.sql"),
    ),
    (
        "catalog/dwd.sql",
        include_str!("../../examples/shop/catalog/dwd.sql"),
    ),
    (
        "catalog/dws.sql",
        include_str!("../../examples/shop/catalog/dws.sql"),
    ),
    (
        "catalog/app.sql",
        include_str!("../../examples/shop/catalog/app.sql"),
    ),
    (
        "catalog/dim.sql",
        include_str!("../../examples/shop/catalog/dim.sql"),
    ),
    (
        "catalog/dim_store.sql",
        include_str!("../../examples/shop/catalog/dim_store.sql"),
    ),
    (
        "pipelines/dwd/dwd_orders.sql",
        include_str!("../../examples/shop/pipelines/dwd/dwd_orders.sql"),
    ),
    (
        "pipelines/dwd/dwd_page_views.sql",
        include_str!("../../examples/shop/pipelines/dwd/dwd_page_views.sql"),
    ),
    (
        "pipelines/dwd/dwd_price_changes.sql",
        include_str!("../../examples/shop/pipelines/dwd/dwd_price_changes.sql"),
    ),
    (
        "pipelines/dwd/dwd_paid_orders.sql",
        include_str!("../../examples/shop/pipelines/dwd/dwd_paid_orders.sql"),
    ),
    (
        "pipelines/dws/dws_city_gmv_1m.sql",
        include_str!("../../examples/shop/pipelines/dws/dws_city_gmv_1m.sql"),
    ),
    (
        "pipelines/dws/dws_page_pv_uv_1m.sql",
        include_str!("../../examples/shop/pipelines/dws/dws_page_pv_uv_1m.sql"),
    ),
    (
        "pipelines/app/app_city_gmv.sql",
        include_str!("../../examples/shop/pipelines/app/app_city_gmv.sql"),
    ),
    (
        "checks/ods_orders.toml",
        include_str!("../../examples/shop/checks/ods_orders.toml"),
    ),
    (
        "checks/dwd_orders.toml",
        include_str!("../../examples/shop/checks/dwd_orders.toml"),
    ),
    (
        "checks/dws_city_gmv_1m.toml",
        include_str!("../../examples/shop/checks/dws_city_gmv_1m.toml"),
    ),
    (
        "checks/app_city_gmv.toml",
        include_str!("../../examples/shop/checks/app_city_gmv.toml"),
    ),
];

/// The catalog files the demo registers: all but `dim.sql`, whose table lives
/// in MySQL, which the demo does without.
const DEMO_CATALOG: [&str; 5] = [
    "catalog/ods.sql",
    "catalog/dim_store.sql",
    "catalog/dwd.sql",
    "catalog/dws.sql",
    "catalog/app.sql",
];

/// Marks a directory as the demo's, so that a new demo may replace it.
const MARKER: &str = ".strata-demo";

/// Which example the demo runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Example {
    /// An e-commerce shop: orders, page views, price changes.
    Shop,
    /// Devices' point values, named and checked against alarm rules.
    Iot,
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub example: Example,
    pub dir: PathBuf,
    pub duration: Option<Duration>,
    /// Event time runs this many times faster than the wall clock (starting an hour ago when > 1).
    pub speed: u32,
    pub progress: bool,
}

/// What the generator wrote, by kind of event.
pub type EventsProduced = std::collections::BTreeMap<&'static str, u64>;

/// A generator's loop: produce until told to stop, at `speed` times the wall clock.
type Generate = fn(&ThreadedProducer<DefaultProducerContext>, &AtomicBool, u32) -> EventsProduced;

#[derive(Debug, Serialize)]
pub struct DemoSummary {
    pub project: String,
    #[serde(flatten)]
    pub run: RunSummary,
    pub events: EventsProduced,
}

/// Writes the project, starts the mock cluster and the generator, and returns
/// the catalog to run; the returned guard keeps the cluster and generator alive.
pub async fn prepare(options: &DemoOptions) -> anyhow::Result<(Catalog, Generator)> {
    if options.example == Example::Iot {
        return iot::prepare(options).await;
    }
    let dir = &options.dir;
    reset_dir(dir)?;
    let (cluster, bootstrap) = start_cluster(&[
        ("orders", 3),
        ("page_views", 3),
        ("price_changes", 1),
        ("payments", 3),
    ])?;
    write_project(dir, &PROJECT_FILES, &bootstrap)?;
    let catalog = Catalog::open(Project::load(dir)?).await?;
    let files: Vec<PathBuf> = DEMO_CATALOG.iter().map(|f| dir.join(f)).collect();
    catalog.register_files(&files, RegisterMode::Create).await?;
    seed_dimensions(&catalog).await?;
    let generator = Generator::start(cluster, &bootstrap, options.speed, generate)?;
    Ok((catalog, generator))
}

/// The mock cluster with `topics` (name, partitions), and its bootstrap address.
fn start_cluster(
    topics: &[(&str, i32)],
) -> anyhow::Result<(MockCluster<'static, DefaultProducerContext>, String)> {
    let cluster = MockCluster::new(1).context("starting the Kafka mock cluster")?;
    for &(topic, partitions) in topics {
        cluster
            .create_topic(topic, partitions, 1)
            .with_context(|| format!("creating the topic {topic}"))?;
    }
    let bootstrap = cluster.bootstrap_servers();
    Ok((cluster, bootstrap))
}

/// Writes an example's files into `dir`, pointing its Kafka connection at `bootstrap`.
fn write_project(dir: &Path, files: &[(&str, &str)], bootstrap: &str) -> anyhow::Result<()> {
    for &(path, text) in files {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().expect("files are in folders"))?;
        let text = if path == "strata.toml" {
            text.replace("127.0.0.1:9092", bootstrap)
        } else {
            text.to_string()
        };
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}

/// Runs the demo until Ctrl-C or `duration`.
pub async fn run(
    catalog: &Catalog,
    generator: Generator,
    options: &DemoOptions,
    registry: &Registry,
) -> anyhow::Result<DemoSummary> {
    let run = run_project(
        catalog,
        RunOptions {
            duration: options.duration,
            until_idle: false,
            progress: options.progress,
        },
        registry,
    )
    .await;
    let events = generator.stop();
    Ok(DemoSummary {
        project: options.dir.display().to_string(),
        run: run?,
        events,
    })
}

/// The products and cities the generator uses, in the embedded store.
async fn seed_dimensions(catalog: &Catalog) -> anyhow::Result<()> {
    let cities: Vec<String> = CITY_DIMENSION
        .iter()
        .map(|(city, province, tier)| format!("('{city}', '{province}', {tier})"))
        .collect();
    catalog
        .query(&format!(
            "INSERT INTO shop.dim_cities VALUES {}",
            cities.join(", ")
        ))
        .await?;
    const CATEGORIES: [&str; 5] = ["tea", "snacks", "kitchen", "books", "toys"];
    let products: Vec<String> = (0..PRODUCTS)
        .map(|id| {
            format!(
                "({id}, 'product {id}', '{}')",
                CATEGORIES[id as usize % CATEGORIES.len()]
            )
        })
        .collect();
    catalog
        .query(&format!(
            "INSERT INTO shop.dim_products VALUES {}",
            products.join(", ")
        ))
        .await?;
    Ok(())
}

fn reset_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} exists and is not a demo directory; pick another with --project DIR",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(MARKER),
        "Written by `strata demo`; the next demo in this directory replaces it.\n",
    )?;
    Ok(())
}

/// The event generator: a thread producing to the mock cluster.
pub struct Generator {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<EventsProduced>>,
    _cluster: MockCluster<'static, DefaultProducerContext>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator").finish_non_exhaustive()
    }
}

/// Cities as the order events spell them (untidily; the DWD layer tidies them).
const CITIES: [&str; 6] = [
    "beijing",
    "Shanghai",
    " shenzhen",
    "hangzhou",
    "chengdu",
    "wuhan",
];
/// The tidy cities of `dim_cities`: name, province, tier.
const CITY_DIMENSION: [(&str, &str, i32); 6] = [
    ("Beijing", "Beijing", 1),
    ("Shanghai", "Shanghai", 1),
    ("Shenzhen", "Guangdong", 1),
    ("Hangzhou", "Zhejiang", 2),
    ("Chengdu", "Sichuan", 2),
    ("Wuhan", "Hubei", 2),
];
/// How many products there are (ids 0 to PRODUCTS - 1).
const PRODUCTS: u64 = 500;
const PAGES: [&str; 6] = ["/item", "/search", "/cart", "/pay", "/user", "/list"];

impl Generator {
    fn start(
        cluster: MockCluster<'static, DefaultProducerContext>,
        bootstrap: &str,
        speed: u32,
        generate: Generate,
    ) -> anyhow::Result<Self> {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "20")
            .create()
            .context("creating the demo's producer")?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || generate(&producer, &flag, speed.max(1)));
        Ok(Self {
            stop,
            thread: Some(thread),
            _cluster: cluster,
        })
    }

    pub fn stop(mut self) -> EventsProduced {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default()
    }
}

fn generate(
    producer: &ThreadedProducer<DefaultProducerContext>,
    stop: &AtomicBool,
    speed: u32,
) -> EventsProduced {
    // orders, page views, price changes, malformed, late orders, payments, payments reported twice
    let mut counts = [0u64; 7];
    let mut random = Random::new(strata_pipelines::runner::now_ms() as u64);
    let wall_start = Instant::now();
    let event_start = strata_pipelines::runner::now_ms() - if speed > 1 { 3_600_000 } else { 0 };
    let mut order_id = 0u64;
    let send = |topic: &str, key: String, payload: String| {
        // The queue is large; a full one only delays the demo's next tick.
        let _ = producer.send(BaseRecord::to(topic).key(&key).payload(&payload));
    };
    while !stop.load(Ordering::Relaxed) {
        let event_now = event_start + (wall_start.elapsed().as_millis() as i64) * i64::from(speed);
        // An event time `back_ms` plus up to `jitter_ms` before now.
        let time = |back_ms: i64, jitter_ms: u64, random: &mut Random| {
            let millis = event_now - back_ms - random.below(jitter_ms) as i64;
            chrono::DateTime::from_timestamp_millis(millis)
                .map(|t| t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.3f").to_string())
                .unwrap_or_default()
        };
        // Per 100 ms: 10 orders, 30 page views (40 % of them on the hot page /home), 1 price change in 5.
        for _ in 0..10 {
            order_id += 1;
            let user = random.below(2_000);
            let late = random.below(300) == 0;
            let order_time = if late {
                counts[4] += 1;
                time(180_000, 60_000, &mut random)
            } else {
                time(0, 3_000, &mut random)
            };
            let payload = if random.below(200) == 0 {
                counts[3] += 1;
                format!(r##"{{"order_id": "#{order_id}", "amount": "free"}}"##)
            } else {
                format!(
                    r#"{{"order_id": {order_id}, "user_id": {user}, "product_id": {}, "city": "{}", "amount": "{}.{:02}", "order_time": "{order_time}"}}"#,
                    random.below(PRODUCTS),
                    CITIES[random.below(CITIES.len() as u64) as usize],
                    random.below(300),
                    random.below(100)
                )
            };
            send("orders", order_id.to_string(), payload);
            counts[0] += 1;
            // Four orders in five are paid; the gateway reports one payment in twenty twice.
            if random.below(5) > 0 {
                let method = ["alipay", "wechat", "card"][random.below(3) as usize];
                let payment = format!(
                    r#"{{"order_id": {order_id}, "method": "{method}", "paid_at": "{}"}}"#,
                    time(0, 1_000, &mut random)
                );
                let reports = if random.below(20) == 0 { 2 } else { 1 };
                for _ in 0..reports {
                    send("payments", order_id.to_string(), payment.clone());
                }
                counts[5] += 1;
                counts[6] += reports - 1;
            }
        }
        for _ in 0..30 {
            let user = random.below(5_000);
            let page = if random.below(10) < 4 {
                "/home"
            } else {
                PAGES[random.below(PAGES.len() as u64) as usize]
            };
            let payload = if random.below(500) == 0 {
                counts[3] += 1;
                "{\"user_id\": 1, \"page\": \"/home\", \"view_time\": ".to_string()
            } else {
                format!(
                    r#"{{"user_id": {user}, "page": "{page}", "view_time": "{}"}}"#,
                    time(0, 2_000, &mut random)
                )
            };
            send("page_views", user.to_string(), payload);
            counts[1] += 1;
        }
        if random.below(5) == 0 {
            let product = random.below(PRODUCTS);
            let payload = format!(
                r#"{{"product_id": {product}, "price": "{}.99", "change_time": "{}"}}"#,
                random.below(300),
                time(0, 1_000, &mut random)
            );
            send("price_changes", product.to_string(), payload);
            counts[2] += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = producer.flush(Duration::from_secs(5));
    let [
        orders,
        page_views,
        price_changes,
        malformed,
        late_orders,
        payments,
        payments_reported_twice,
    ] = counts;
    EventsProduced::from([
        ("orders", orders),
        ("page_views", page_views),
        ("price_changes", price_changes),
        ("malformed", malformed),
        ("late_orders", late_orders),
        ("payments", payments),
        ("payments_reported_twice", payments_reported_twice),
    ])
}
