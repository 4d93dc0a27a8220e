//! `strata catalog`: register, list, show, drop and discover tables.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use strata_catalog::{DiscoverOptions, Layer, RegisterMode};
use strata_server::views::{self, DiscoveryView, SchemaVersionView, TableDetail, TableSummary};

use super::{Format, open_catalog, parse_table, print_json};

#[derive(Debug, Subcommand)]
pub(crate) enum CatalogCommand {
    /// Register the tables of DDL files (or of every .sql file in a directory).
    Register {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Update tables that exist: a changed schema becomes a new version.
        #[arg(long)]
        update: bool,
    },
    /// List the registered tables.
    List,
    /// Show one table: columns, keys, watermark and options.
    Show {
        table: String,
        /// Show this schema version instead of the current one.
        #[arg(long)]
        version: Option<i64>,
    },
    /// List a table's schema versions.
    History { table: String },
    /// Remove a table from the catalog (its data is kept).
    Drop { table: String },
    /// Register what a connection in strata.toml already holds.
    Discover {
        connection: String,
        /// The space to register into (default: the database, or the connection's name).
        #[arg(long)]
        space: Option<String>,
        /// The layer of tables whose names have no layer prefix.
        #[arg(long)]
        layer: Option<String>,
        /// Kafka: only this topic (repeatable).
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Kafka: records to sample per partition.
        #[arg(long, default_value_t = 100)]
        sample: i64,
        /// Register inferred schemas without asking.
        #[arg(long)]
        yes: bool,
        /// Show what would be registered, and register nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub(crate) async fn run(
    project: &Path,
    command: CatalogCommand,
    format: Format,
) -> anyhow::Result<()> {
    let catalog = open_catalog(project).await?;
    match command {
        CatalogCommand::Register { files, update } => {
            let files = expand_sql_files(&files)?;
            let mode = if update {
                RegisterMode::Update
            } else {
                RegisterMode::Create
            };
            let registered = catalog.register_files(&files, mode).await?;
            match format {
                Format::Json => print_json(&registered),
                Format::Table | Format::Dot => println!("{}", views::registered_table(&registered)),
            }
        }
        CatalogCommand::List => {
            let summaries: Vec<TableSummary> = catalog
                .list()
                .await?
                .iter()
                .map(TableSummary::new)
                .collect();
            match format {
                Format::Json => print_json(&summaries),
                Format::Table if summaries.is_empty() => {
                    println!(
                        "no tables yet: `strata catalog register FILE.sql` or `strata catalog discover CONNECTION`"
                    )
                }
                Format::Table | Format::Dot => println!("{}", views::summaries_table(&summaries)),
            }
        }
        CatalogCommand::Show { table, version } => {
            let name = parse_table(&table)?;
            match version {
                Some(version) => {
                    let schema = catalog.store().schema_version(&name, version).await?;
                    let view = SchemaVersionView::new(&schema);
                    match format {
                        Format::Json => print_json(&view),
                        Format::Table | Format::Dot => {
                            println!(
                                "{name} schema version {} (recorded {})",
                                view.version, view.created_at
                            );
                            println!("{}", views::columns_table(&view.columns, &[]));
                        }
                    }
                }
                None => {
                    let detail = TableDetail::new(&catalog.get(&name).await?);
                    match format {
                        Format::Json => print_json(&detail),
                        Format::Table | Format::Dot => print_detail(&detail),
                    }
                }
            }
        }
        CatalogCommand::History { table } => {
            let name = parse_table(&table)?;
            let versions: Vec<SchemaVersionView> = catalog
                .schema_versions(&name)
                .await?
                .iter()
                .map(SchemaVersionView::new)
                .collect();
            match format {
                Format::Json => print_json(&versions),
                Format::Table | Format::Dot => println!(
                    "{}",
                    views::human_table(
                        &["version", "recorded", "columns"],
                        versions
                            .iter()
                            .map(|v| vec![
                                v.version.to_string(),
                                v.created_at.clone(),
                                v.columns
                                    .iter()
                                    .map(|c| format!("{} {}", c.name, c.sql_type))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                            ])
                            .collect(),
                    )
                ),
            }
        }
        CatalogCommand::Drop { table } => {
            let name = parse_table(&table)?;
            let entry = catalog.drop_table(&name).await?;
            match format {
                Format::Json => print_json(&serde_json::json!({"dropped": name.to_string()})),
                Format::Table | Format::Dot => println!(
                    "dropped {name} from the catalog; its data at {} was kept",
                    entry.def.kind.location()
                ),
            }
        }
        CatalogCommand::Discover {
            connection,
            space,
            layer,
            topics,
            sample,
            yes,
            dry_run,
        } => {
            let layer = layer.as_deref().map(str::parse::<Layer>).transpose()?;
            let options = DiscoverOptions {
                space,
                layer,
                topics,
                sample_per_partition: sample,
            };
            let discovery = catalog.discover(&connection, &options).await?;
            let mut view = DiscoveryView::new(&discovery);
            if format == Format::Table {
                print_discovery(&view);
            }
            let confirmed = !dry_run
                && !discovery.tables.is_empty()
                && (!discovery.inferred || yes || confirm()?);
            if confirmed {
                let registered = catalog.register_discovered(discovery.tables).await?;
                if format == Format::Table {
                    println!("{}", views::registered_table(&registered));
                }
                view.registered = Some(registered);
                view.confirmation_needed = false;
            } else if format == Format::Table && !discovery.tables.is_empty() {
                println!(
                    "nothing registered{}",
                    if dry_run { " (dry run)" } else { "" }
                );
            }
            if format == Format::Json {
                print_json(&view);
            }
            if discovery.inferred
                && !dry_run
                && !yes
                && view.registered.is_none()
                && !std::io::stdin().is_terminal()
            {
                bail!(
                    "the schemas above were inferred from samples; re-run with --yes to register them"
                );
            }
        }
    }
    Ok(())
}

/// Asks on a terminal; without one, registers nothing (the caller says how to proceed).
fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    print!("register these inferred schemas? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Files as given; a directory stands for its `.sql` files, in name order.
fn expand_sql_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "sql"))
                .collect();
            if found.is_empty() {
                bail!("{} holds no .sql files", path.display());
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn print_detail(detail: &TableDetail) {
    println!(
        "{}  ({} layer, {} table, schema version {})",
        detail.name, detail.layer, detail.connector, detail.schema_version
    );
    println!("location: {}", detail.location);
    if let Some(description) = &detail.description {
        println!("description: {description}");
    }
    if let Some(owner) = &detail.owner {
        println!("owner: {owner}");
    }
    if !detail.tags.is_empty() {
        println!("tags: {}", detail.tags.join(", "));
    }
    if let Some(watermark) = &detail.watermark {
        println!(
            "watermark: {}",
            watermark["expression"].as_str().unwrap_or_default()
        );
    }
    if let Some(column) = &detail.processing_time {
        println!("processing time: {column}");
    }
    println!(
        "{}",
        views::columns_table(&detail.columns, &detail.primary_key)
    );
}

fn print_discovery(view: &DiscoveryView) {
    for table in &view.tables {
        let how = if view.inferred {
            "inferred schema"
        } else {
            "schema"
        };
        println!(
            "{} ({} layer, {}) {how}:",
            table.name, table.layer, table.location
        );
        if let Some(note) = &table.note {
            println!("  note: {note}");
        }
        println!(
            "{}",
            views::columns_table(&table.columns, &table.primary_key)
        );
    }
    for skipped in &view.skipped {
        println!("skipped {}: {}", skipped.name, skipped.reason);
    }
    if view.tables.is_empty() {
        println!(
            "found nothing to register on connection {}",
            view.connection
        );
    }
}
