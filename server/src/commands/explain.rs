//! `strata explain`: a pipeline's operators, with their changelogs, keys and state.

use std::path::Path;

use strata_pipelines::plan::StreamPlan;
use strata_server::explain::Explained;

use super::{Format, open_catalog, print_json};

pub(crate) async fn run(project: &Path, name: String, format: Format) -> anyhow::Result<()> {
    let catalog = open_catalog(project).await?;
    let explained = strata_server::explain::explain(&catalog, &name).await?;
    match format {
        Format::Json => print_json(&explained),
        Format::Dot => {
            let plan = StreamPlan {
                pipeline: explained.pipeline.clone(),
                target: explained.target.clone(),
                operators: explained.operators.clone(),
            };
            print!("{}", plan.to_dot());
        }
        Format::Table => print_explained(&explained),
    }
    if let Some(reason) = &explained.refused {
        if format == Format::Table {
            eprintln!(
                "error: pipeline {} is refused:\n{reason}",
                explained.pipeline
            );
        }
        std::process::exit(1);
    }
    Ok(())
}

fn print_explained(explained: &Explained) {
    println!(
        "pipeline {} ({}) → {}",
        explained.pipeline, explained.file, explained.target
    );
    if explained.operators.is_empty() {
        return;
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    let refusals = explained.operators.iter().any(|op| op.refused.is_some());
    let mut header = vec![
        "operator",
        "kind",
        "reads",
        "emits",
        "key",
        "watermark",
        "state",
    ];
    if refusals {
        header.push("refused");
    }
    table.set_header(header);
    for op in &explained.operators {
        let mut row = vec![
            op.id.clone(),
            op.kind.as_str().to_string(),
            op.inputs.join(", "),
            op.changelog.as_str().to_string(),
            op.key.join(", "),
            op.watermark.clone().unwrap_or_default(),
            op.state
                .as_ref()
                .map(|state| state.holds.clone())
                .unwrap_or_default(),
        ];
        if refusals {
            row.push(op.refused.clone().unwrap_or_default());
        }
        table.add_row(row);
    }
    println!("{table}");
    for op in &explained.operators {
        println!("{}: {}", op.id, op.detail);
    }
}
