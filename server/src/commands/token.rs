//! `strata token`: make, list and revoke access tokens.

use std::path::Path;

use anyhow::bail;
use clap::Subcommand;
use strata_server::views;

use super::{Format, open_catalog, print_json};

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Make a token; its secret is shown once.
    Create {
        /// What the token is for, e.g. grafana.
        #[arg(long)]
        name: String,
        /// The spaces it grants (repeat, or * for every space).
        #[arg(long = "space", required = true)]
        spaces: Vec<String>,
        /// Read the spaces.
        #[arg(long, conflicts_with = "write", required_unless_present = "write")]
        read: bool,
        /// Read and write the spaces.
        #[arg(long)]
        write: bool,
    },
    /// Every token, without secrets.
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

pub(crate) async fn run(
    project: &Path,
    command: TokenCommand,
    format: Format,
) -> anyhow::Result<()> {
    let catalog = open_catalog(project).await?;
    let store = catalog.store();
    match command {
        TokenCommand::Create {
            name,
            spaces,
            read,
            write,
        } => {
            let access = match (read, write) {
                (_, true) => strata_catalog::Access::Write,
                _ => strata_catalog::Access::Read,
            };
            let grants = spaces
                .into_iter()
                .map(|space| strata_catalog::Grant { space, access })
                .collect();
            let made = store.create_token(&name, grants).await?;
            match format {
                Format::Json => print_json(&made),
                Format::Table | Format::Dot => {
                    println!("{}", made.secret);
                    eprintln!(
                        "token {} ({}) grants {}; its secret is shown only now",
                        made.info.id,
                        made.info.name,
                        grants_text(&made.info.grants)
                    );
                }
            }
        }
        TokenCommand::List => {
            let tokens = store.list_tokens().await?;
            match format {
                Format::Json => print_json(&tokens),
                Format::Table | Format::Dot => {
                    let rows = tokens
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                t.name.clone(),
                                grants_text(&t.grants),
                                chrono::DateTime::from_timestamp_millis(t.created_at_ms)
                                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                                    .unwrap_or_default(),
                                if t.revoked { "revoked" } else { "active" }.to_string(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        views::human_table(&["id", "name", "grants", "created", "status"], rows)
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            if !store.revoke_token(&id).await? {
                bail!("no token has the id {id:?}; `strata token list` shows them");
            }
            match format {
                Format::Json => print_json(&serde_json::json!({"revoked": id})),
                Format::Table | Format::Dot => println!("revoked token {id}"),
            }
        }
    }
    Ok(())
}

fn grants_text(grants: &[strata_catalog::Grant]) -> String {
    grants
        .iter()
        .map(|g| format!("{} {}", g.access, g.space))
        .collect::<Vec<_>>()
        .join(", ")
}
