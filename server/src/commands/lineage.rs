//! `strata lineage`: table and column lineage, paths between nodes, and a column change's impact.

use std::path::Path;

use strata_server::lineage;

use super::{Format, open_catalog, print_json};

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    project: &Path,
    node: String,
    upstream: bool,
    downstream: bool,
    depth: usize,
    columns: bool,
    impact: bool,
    to: Option<String>,
    at: Option<String>,
    format: Format,
) -> anyhow::Result<()> {
    let catalog = open_catalog(project).await?;
    let at = at.as_deref().map(lineage::parse_time).transpose()?;
    let snapshot = lineage::at(&catalog, at).await?;
    if impact {
        let impact = snapshot.graph.impact(&node)?;
        match format {
            Format::Json => print_json(&impact),
            Format::Table | Format::Dot => print_impact(&impact),
        }
        return Ok(());
    }
    if let Some(to) = to {
        let path = snapshot.graph.path(&node, &to)?;
        match format {
            Format::Json => print_json(&serde_json::json!({"from": node, "to": to, "path": path})),
            Format::Table | Format::Dot => match path {
                Some(path) => println!("{}", path.join(" → ")),
                None => println!("no lineage path between {node} and {to}"),
            },
        }
        return Ok(());
    }
    let direction = match (upstream, downstream) {
        (true, _) => strata_lineage::Direction::Upstream,
        (_, true) => strata_lineage::Direction::Downstream,
        _ => strata_lineage::Direction::Both,
    };
    let view = lineage::LineageView::around(&snapshot, &node, direction, depth, columns)?;
    match format {
        Format::Json => print_json(&view),
        Format::Dot => print!("{}", view.subgraph.to_dot()),
        Format::Table => print_lineage(&view),
    }
    Ok(())
}

/// Lineage for people: the nodes by kind, then the edges.
fn print_lineage(view: &lineage::LineageView) {
    use strata_lineage::{EdgeKind, Node};
    println!(
        "lineage of {} ({}, {} level, depth {}) — graph version {}, recorded {}",
        view.node, view.direction, view.level, view.depth, view.version, view.recorded_at
    );
    let mut nodes = comfy_table::Table::new();
    nodes.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    nodes.set_header(["node", "kind", "layer / type", "owner"]);
    for node in &view.subgraph.nodes {
        let (kind, detail, owner) = match node {
            Node::Table {
                layer,
                connector,
                owner,
                ..
            } => ("table", format!("{layer} ({connector})"), owner.clone()),
            Node::Column { data_type, .. } => ("column", data_type.clone(), None),
            Node::Pipeline { .. } => ("pipeline", String::new(), None),
        };
        nodes.add_row([
            node.id(),
            kind.to_string(),
            detail,
            owner.unwrap_or_default(),
        ]);
    }
    println!("{nodes}");
    let mut edges = comfy_table::Table::new();
    edges.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    edges.set_header(["from", "to", "how", "pipeline"]);
    for edge in &view.subgraph.edges {
        let (how, pipeline) = match &edge.kind {
            EdgeKind::Has => continue,
            EdgeKind::Reads => ("read by", String::new()),
            EdgeKind::Writes => ("writes", String::new()),
            EdgeKind::Column { kind, pipeline } => (kind.as_str(), pipeline.clone()),
        };
        edges.add_row([
            edge.from.clone(),
            edge.to.clone(),
            how.to_string(),
            pipeline,
        ]);
    }
    println!("{edges}");
}

/// What a column change breaks, for people.
fn print_impact(impact: &strata_lineage::Impact) {
    println!(
        "changing or dropping {} affects {} column{} in {} table{}, through {}",
        impact.column,
        impact.columns.len(),
        if impact.columns.len() == 1 { "" } else { "s" },
        impact.tables.len(),
        if impact.tables.len() == 1 { "" } else { "s" },
        if impact.pipelines.is_empty() {
            "no pipeline".to_string()
        } else {
            impact.pipelines.join(", ")
        }
    );
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(["column", "uses it as", "pipelines away"]);
    for (column, kind, hops) in &impact.columns {
        table.add_row([column.clone(), kind.as_str().to_string(), hops.to_string()]);
    }
    println!("{table}");
}
