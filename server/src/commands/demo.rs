//! `strata demo`: an example project end to end on embedded defaults.

use std::path::PathBuf;

use strata_server::run::Registry;
use strata_server::{demo, serve};

use super::{Format, print_json, run_table, start_servers};

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    given_project: Option<PathBuf>,
    duration: Option<std::time::Duration>,
    speed: u32,
    port: u16,
    pg_port: u16,
    host: String,
    example: demo::Example,
    format: Format,
) -> anyhow::Result<()> {
    let dir = given_project.unwrap_or_else(|| PathBuf::from("strata-demo"));
    let options = demo::DemoOptions {
        example,
        dir,
        duration,
        speed,
        progress: true,
    };
    let (catalog, generator) = demo::prepare(&options).await?;
    let registry = Registry::default();
    let servers = start_servers(&catalog, &registry, &host, port, pg_port).await?;
    let token = serve::admin_token(&catalog).await?;
    eprintln!(
        "strata demo in {0}: events flow into a Kafka mock cluster, pipelines build the layers from ODS up\n  API:               http://{1}/api/v1\n  lineage browser:   http://{1}/ui/lineage?token={2}\n  PostgreSQL:        psql \"postgres://admin:{2}@{3}/strata\"\n  admin token:       {2}  (also in {4})\n(Ctrl-C stops)",
        options.dir.display(),
        servers.http,
        token,
        servers.pg,
        serve::admin_token_path(&catalog).display(),
    );
    let summary = demo::run(&catalog, generator, &options, &registry).await;
    drop(servers);
    let summary = summary?;
    match format {
        Format::Json => print_json(&summary),
        Format::Table | Format::Dot => {
            let events: Vec<String> = summary
                .events
                .iter()
                .map(|(kind, count)| format!("{count} {}", kind.replace('_', " ")))
                .collect();
            println!("produced {}", events.join(", "));
            println!("{}", run_table(&summary.run));
            let table = match example {
                demo::Example::Shop => "shop.app_city_gmv",
                demo::Example::Iot => "iot.app_alarm_transitions",
            };
            println!(
                "the tables stay in {}: strata --project {} query \"SELECT * FROM {table}\"",
                summary.project, summary.project
            );
        }
    }
    Ok(())
}
