//! `strata quarantine`: replay a table's quarantined records through its pipeline.

use std::path::Path;

use clap::Subcommand;

use super::{Format, open_catalog, parse_table, print_json};

#[derive(Debug, Subcommand)]
pub(crate) enum QuarantineCommand {
    /// Feed the table's quarantined records through its pipeline again (after a rule or a
    /// dimension was fixed): each is committed, quarantined again, or filtered out.
    Replay {
        /// The table whose quarantine to replay (space.table).
        table: String,
        /// Only the records this rule quarantined.
        #[arg(long)]
        rule: Option<String>,
    },
}

pub(crate) async fn run(
    project: &Path,
    command: QuarantineCommand,
    format: Format,
) -> anyhow::Result<()> {
    let QuarantineCommand::Replay { table, rule } = command;
    let catalog = open_catalog(project).await?;
    let name = parse_table(&table)?;
    let report = strata_server::quarantine::replay(&catalog, &name, rule.as_deref()).await?;
    match format {
        Format::Json => print_json(&report),
        Format::Table | Format::Dot => {
            if report.resumed {
                println!(
                    "finished replay {} of {}, which had stopped",
                    report.replay_id, report.table
                );
            }
            println!(
                "{}: replayed {} records through {}: {} committed, {} quarantined again, {} filtered out by its WHERE",
                report.table,
                report.replayed,
                report.pipeline,
                report.committed,
                report.quarantined_again,
                report.filtered
            );
        }
    }
    Ok(())
}
