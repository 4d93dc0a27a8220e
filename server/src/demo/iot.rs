//! `strata demo --example iot`: `examples/iot`, from `../shared/seeds/004`.
//!
//! ```text
//!   generator ──▶ readings (key: device): {"device", "template", "points": {code: value, …}, "read_time"}
//!             ──▶ point_names, alarm_rules (compacted topics, written once, then a rule changes now and then)
//!   DWD  iot.dwd_point_values       unnest(map_entries(points)) ⋈ names ⋈ rules (broadcast)  → val, alarming
//!   APP  iot.app_alarm_transitions  LAG(alarming) OVER (PARTITION BY device, code) → tag 0 start, 2 end
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use strata_catalog::{Catalog, Project, RegisterMode};

use super::{
    DemoOptions, EventsProduced, Generator, Random, reset_dir, start_cluster, write_project,
};

const PROJECT_FILES: [(&str, &str); 7] = [
    (
        "strata.toml",
        include_str!("../../../examples/iot/strata.toml"),
    ),
    (
        "catalog/ods.sql",
        include_str!("../../../examples/iot/catalog/ods.sql"),
    ),
    (
        "catalog/dim.sql",
        include_str!("../../../examples/iot/catalog/dim.sql"),
    ),
    (
        "catalog/dwd.sql",
        include_str!("../../../examples/iot/catalog/dwd.sql"),
    ),
    (
        "catalog/app.sql",
        include_str!("../../../examples/iot/catalog/app.sql"),
    ),
    (
        "pipelines/dwd/dwd_point_values.sql",
        include_str!("../../../examples/iot/pipelines/dwd/dwd_point_values.sql"),
    ),
    (
        "pipelines/app/app_alarm_transitions.sql",
        include_str!("../../../examples/iot/pipelines/app/app_alarm_transitions.sql"),
    ),
];

const CATALOG: [&str; 4] = [
    "catalog/ods.sql",
    "catalog/dim.sql",
    "catalog/dwd.sql",
    "catalog/app.sql",
];

const DEVICES: u64 = 20;
const TEMPLATE: &str = "GF-TMP-004";
/// Point codes with their names and normal band.
const POINTS: [(&str, &str, f64, f64); 6] = [
    ("001", "plating tank 2 overflow pump", 10.0, 90.0),
    ("002", "remote lock", 0.0, 1.0),
    ("003", "bath temperature", 20.0, 60.0),
    ("004", "rectifier current", 50.0, 400.0),
    ("005", "conductivity", 1.0, 30.0),
    ("006", "exhaust fan speed", 500.0, 1500.0),
];

pub(super) async fn prepare(options: &DemoOptions) -> anyhow::Result<(Catalog, Generator)> {
    let dir = &options.dir;
    reset_dir(dir)?;
    let (cluster, bootstrap) =
        start_cluster(&[("readings", 3), ("point_names", 1), ("alarm_rules", 1)])?;
    write_project(dir, &PROJECT_FILES, &bootstrap)?;
    let catalog = Catalog::open(Project::load(dir)?).await?;
    let files: Vec<_> = CATALOG.iter().map(|f| dir.join(f)).collect();
    catalog.register_files(&files, RegisterMode::Create).await?;
    let generator = Generator::start(cluster, &bootstrap, options.speed, generate)?;
    Ok((catalog, generator))
}

fn generate(
    producer: &ThreadedProducer<DefaultProducerContext>,
    stop: &AtomicBool,
    speed: u32,
) -> EventsProduced {
    let mut counts = EventsProduced::new();
    let mut count = |kind: &'static str| *counts.entry(kind).or_insert(0) += 1;
    let send = |topic: &str, key: String, payload: String| {
        let _ = producer.send(BaseRecord::to(topic).key(&key).payload(&payload));
    };
    for (code, name, _, _) in POINTS {
        send(
            "point_names",
            format!(r#"{{"template": "{TEMPLATE}", "code": "{code}"}}"#),
            format!(r#"{{"template": "{TEMPLATE}", "code": "{code}", "name": "{name}"}}"#),
        );
        count("point_names");
    }
    let rule = |device: u64, code: &str, min: f64, max: f64| {
        (
            format!(r#"{{"device": "device-{device}", "code": "{code}"}}"#),
            format!(
                r#"{{"device": "device-{device}", "code": "{code}", "min_value": {min}, "max_value": {max}}}"#
            ),
        )
    };
    for device in 0..DEVICES {
        // Point 002 (the lock) has no rule: it is never judged.
        for (code, _, min, max) in POINTS.iter().filter(|p| p.0 != "002") {
            let (key, payload) = rule(device, code, *min, *max);
            send("alarm_rules", key, payload);
            count("alarm_rules");
        }
    }
    let mut random = Random::new(strata_pipelines::runner::now_ms() as u64);
    let wall_start = Instant::now();
    let event_start = strata_pipelines::runner::now_ms() - if speed > 1 { 3_600_000 } else { 0 };
    // Each device has one point drifting out of its band for a while now and then.
    let mut excursions = vec![0u32; DEVICES as usize];
    while !stop.load(Ordering::Relaxed) {
        let event_now = event_start + (wall_start.elapsed().as_millis() as i64) * i64::from(speed);
        let read_time = chrono::DateTime::from_timestamp_millis(event_now)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S%.3f");
        for device in 0..DEVICES {
            let left = &mut excursions[device as usize];
            if *left == 0 && random.below(50) == 0 {
                *left = 5 + random.below(20) as u32;
            }
            let payload = if random.below(300) == 0 {
                count("malformed");
                format!(r#"{{"device": "device-{device}", "points": "offline"}}"#)
            } else {
                let points: Vec<String> = POINTS
                    .iter()
                    .enumerate()
                    .map(|(i, (code, _, min, max))| {
                        let span = max - min;
                        let mut value =
                            min + span * (0.2 + 0.6 * random.below(1000) as f64 / 1000.0);
                        if *left > 0 && i == (device as usize) % POINTS.len() {
                            value = max + span * 0.1;
                        }
                        format!(r#""{code}": {value:.2}"#)
                    })
                    .collect();
                count("readings");
                format!(
                    r#"{{"device": "device-{device}", "template": "{TEMPLATE}", "points": {{{}}}, "read_time": "{read_time}"}}"#,
                    points.join(", ")
                )
            };
            *left = left.saturating_sub(1);
            send("readings", format!("device-{device}"), payload);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = producer.flush(Duration::from_secs(5));
    counts
}
