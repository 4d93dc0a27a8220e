//! `strata optimize`: compact a Delta table's small files and checkpoint its log.

use std::path::Path;

use super::{Format, open_catalog, parse_table, print_json};

pub(crate) async fn run(project: &Path, table: String, format: Format) -> anyhow::Result<()> {
    let catalog = open_catalog(project).await?;
    let name = parse_table(&table)?;
    let compaction = catalog.optimize(&name).await?;
    match format {
        Format::Json => print_json(&compaction),
        Format::Table | Format::Dot => println!(
            "{name}: {} files compacted into {}, now at version {} (log checkpointed)",
            compaction.files_removed, compaction.files_added, compaction.version
        ),
    }
    Ok(())
}
