//! `strata query`: one SQL query, answered here or by a running server.

use std::path::Path;

use anyhow::{Context, bail};
use strata_catalog::Project;
use strata_server::query::{self, output::RowFormat};
use strata_server::run::Registry;
use strata_server::serve;
use strata_server::views::batches_to_json_rows;

use super::{open_catalog, print_json};

pub(crate) async fn run(
    project: &Path,
    sql: String,
    limit: Option<usize>,
    timeout: Option<std::time::Duration>,
    server: Option<String>,
    token: Option<String>,
    rows: Option<RowFormat>,
) -> anyhow::Result<()> {
    let options = query::QueryOptions {
        limit: limit.filter(|&n| n > 0),
        timeout,
    };
    let result = match server {
        Some(server) => remote_query(project, &server, token, &sql, options).await?,
        None => {
            let catalog = open_catalog(project).await?;
            let engine = query::QueryEngine::new(catalog, Registry::default());
            engine
                .run(&sql, &strata_catalog::Principal::admin(), options)
                .await?
        }
    };
    match rows {
        Some(RowFormat::Json) => print_json(&batches_to_json_rows(&result.batches)?),
        Some(format) => {
            use std::io::Write;
            std::io::stdout().write_all(&query::output::encode(&result, format)?)?;
        }
        None => {
            println!(
                "{}",
                arrow::util::pretty::pretty_format_batches(&result.batches)?
            );
            let count = result.row_count();
            let more = if result.truncated {
                " (cut off by --limit)"
            } else {
                ""
            };
            println!("({count} row{}{more})", if count == 1 { "" } else { "s" });
        }
    }
    Ok(())
}

/// Asks a running strata's API, in Arrow IPC, so that types arrive intact.
async fn remote_query(
    project: &Path,
    server: &str,
    token: Option<String>,
    sql: &str,
    options: query::QueryOptions,
) -> anyhow::Result<query::QueryOutput> {
    let token = match token {
        Some(token) => token,
        None => {
            let path = Project::load(project)?
                .state_dir()
                .join(serve::ADMIN_TOKEN_FILE);
            std::fs::read_to_string(&path)
                .with_context(|| {
                    format!(
                        "no token: pass --token (or STRATA_TOKEN), or run where {} exists",
                        path.display()
                    )
                })?
                .trim()
                .to_string()
        }
    };
    let body = serde_json::json!({
        "sql": sql,
        "format": "arrow",
        "limit": options.limit.unwrap_or(0),
        "timeout_ms": options.timeout.map_or(0, |t| t.as_millis() as u64),
    });
    let url = format!("{}/api/v1/query", server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}; is strata running there?"))?;
    let truncated = response.headers().contains_key("x-strata-truncated");
    if !response.status().is_success() {
        let status = response.status();
        let error: serde_json::Value = response.json().await.unwrap_or_default();
        let message = error["error"].as_str().unwrap_or("no message");
        match error["hint"].as_str() {
            Some(hint) => bail!("{status}: {message}\n  hint: {hint}"),
            None => bail!("{status}: {message}"),
        }
    }
    let bytes = response.bytes().await?;
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok(query::QueryOutput {
        schema,
        batches,
        truncated,
    })
}
