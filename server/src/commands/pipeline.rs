//! `strata pipeline`: drop a pipeline's operator state.

use std::path::Path;

use clap::Subcommand;

use super::{Format, open_catalog, print_json};

#[derive(Debug, Subcommand)]
pub(crate) enum PipelineCommand {
    /// Drop a pipeline's operator state (open windows, groups, rows held for a join) with
    /// one commit to its target, so that it starts again under its current SQL. The rows it
    /// wrote stay. Stop `strata run` first.
    Reset {
        /// The pipeline, as `strata status` and /api/v1/pipelines name it.
        name: String,
        /// Where its source is read from next: where the last commit left off (nothing read
        /// twice, open windows lost), the earliest offsets (everything again) or the latest.
        #[arg(long, value_enum, default_value = "committed")]
        from: ResetFromArg,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ResetFromArg {
    Committed,
    Earliest,
    Latest,
}

pub(crate) async fn run(
    project: &Path,
    command: PipelineCommand,
    format: Format,
) -> anyhow::Result<()> {
    let PipelineCommand::Reset { name, from } = command;
    let catalog = open_catalog(project).await?;
    let from = match from {
        ResetFromArg::Committed => strata_pipelines::ResetFrom::Committed,
        ResetFromArg::Earliest => strata_pipelines::ResetFrom::Earliest,
        ResetFromArg::Latest => strata_pipelines::ResetFrom::Latest,
    };
    let report = strata_server::run::reset_pipeline(&catalog, &name, from).await?;
    match format {
        Format::Json => print_json(&report),
        Format::Table | Format::Dot => println!(
            "pipeline {}: state dropped; it reads {} from {} on its next run",
            report.pipeline, report.source, report.from
        ),
    }
    Ok(())
}
