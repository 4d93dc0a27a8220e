//! `strata history`: a Delta table's versions, newest first.

use std::path::Path;

use strata_server::views;

use super::{Format, open_catalog, parse_table, print_json};

pub(crate) async fn run(
    project: &Path,
    table: String,
    limit: usize,
    format: Format,
) -> anyhow::Result<()> {
    let catalog = open_catalog(project).await?;
    let name = parse_table(&table)?;
    let versions = catalog.history(&name, limit).await?;
    match format {
        Format::Json => print_json(&versions),
        Format::Table | Format::Dot => {
            let rows: Vec<Vec<String>> = versions
                .iter()
                .map(|v| {
                    vec![
                        v.version.to_string(),
                        v.committed_ms
                            .and_then(chrono::DateTime::from_timestamp_millis)
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                            .unwrap_or_default(),
                        v.operation.clone(),
                        v.rows_added.map(|n| n.to_string()).unwrap_or_default(),
                    ]
                })
                .collect();
            println!(
                "{}",
                views::human_table(&["version", "committed", "operation", "rows added"], rows)
            );
        }
    }
    Ok(())
}
