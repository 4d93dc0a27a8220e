//! `strata produce`: JSON lines to a Kafka table's topic, checked against its schema first.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{Format, open_catalog, parse_table, print_json};

pub(crate) async fn run(
    project: &Path,
    table: String,
    file: Option<PathBuf>,
    format: Format,
) -> anyhow::Result<()> {
    let catalog = open_catalog(project).await?;
    let name = parse_table(&table)?;
    let report = match &file {
        Some(path) => {
            let opened =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            strata_server::produce::produce(
                &catalog,
                &name,
                std::io::BufReader::new(opened),
                &path.display().to_string(),
            )
            .await?
        }
        None => {
            strata_server::produce::produce(&catalog, &name, std::io::stdin().lock(), "stdin")
                .await?
        }
    };
    match format {
        Format::Json => print_json(&report),
        Format::Table | Format::Dot => println!(
            "{}: produced {} records to topic {}",
            report.table, report.records, report.topic
        ),
    }
    Ok(())
}
