//! `strata check`: quality rules' recent evaluations, or a table's rules over its history.

use std::path::Path;

use strata_server::lineage;

use super::{Format, open_catalog, parse_table, print_json};

pub(crate) async fn run(
    project: &Path,
    table: Option<String>,
    since: Option<std::time::Duration>,
    history: bool,
    format: Format,
) -> anyhow::Result<()> {
    let catalog = open_catalog(project).await?;
    let table = table.as_deref().map(parse_table).transpose()?;
    let failed = if history {
        let table = table.expect("clap requires a table with --history");
        let results = strata_server::quality::history(&catalog, &table).await?;
        match format {
            Format::Json => print_json(&results),
            Format::Table | Format::Dot => print_results(&results),
        }
        results.iter().any(|r| r.failed())
    } else {
        let since_ms = match since {
            Some(span) => Some(strata_pipelines::runner::now_ms() - span.as_millis() as i64),
            None => strata_server::quality::last_run_start(&catalog),
        };
        let statuses = strata_server::quality::status(&catalog, table.as_ref(), since_ms).await?;
        match format {
            Format::Json => print_json(&statuses),
            Format::Table | Format::Dot => {
                match (since_ms, since) {
                    (Some(at), Some(_)) => {
                        println!("results since {}", lineage::time_text(at))
                    }
                    (Some(at), None) => println!(
                        "results since {}, when strata run last started (--since to choose)",
                        lineage::time_text(at)
                    ),
                    (None, _) => println!("all results (the pipelines never ran here)"),
                }
                print_statuses(&statuses)
            }
        }
        statuses.iter().any(|s| s.failed())
    };
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

fn quality_table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(header.to_vec());
    table
}

fn show_number(value: Option<f64>) -> String {
    value.map(|v| format!("{v}")).unwrap_or_default()
}

fn print_statuses(statuses: &[strata_server::quality::RuleStatus]) {
    if statuses.is_empty() {
        println!("no rules declared\n  hint: add checks/<table>.toml files (docs/quality.md)");
        return;
    }
    let mut table = quality_table(&[
        "table",
        "rule",
        "check",
        "action",
        "status",
        "evaluations",
        "failed",
        "failed rows",
        "last failure",
        "observed",
        "bound",
        "at",
        "detail",
    ]);
    for status in statuses {
        let last = status.last.as_ref();
        let failure = status.last_failure.as_ref();
        table.add_row(vec![
            status.table.clone(),
            status.rule.clone(),
            status.check.clone(),
            status.action.clone(),
            status.status.to_string(),
            status.evaluations.to_string(),
            status.failures.to_string(),
            status.failed_rows.to_string(),
            failure
                .map(|r| lineage::time_text(r.at_ms))
                .unwrap_or_default(),
            show_number(last.and_then(|r| r.observed)),
            last.and_then(|r| r.bound.clone()).unwrap_or_default(),
            last.map(|r| lineage::time_text(r.at_ms))
                .unwrap_or_default(),
            failure
                .or(last)
                .and_then(|r| r.detail.clone())
                .unwrap_or_default(),
        ]);
    }
    println!("{table}");
}

fn print_results(results: &[strata_quality::CheckResult]) {
    let mut table = quality_table(&[
        "table", "rule", "check", "window", "status", "passed", "failed", "observed", "bound",
        "detail",
    ]);
    for result in results {
        table.add_row(vec![
            result.table.clone(),
            result.rule.clone(),
            result.check.clone(),
            result
                .window_start_ms
                .map(lineage::time_text)
                .unwrap_or_else(|| "all rows".to_string()),
            if result.failed() { "FAIL" } else { "pass" }.to_string(),
            result.passed.to_string(),
            result.failed.to_string(),
            show_number(result.observed),
            result.bound.clone().unwrap_or_default(),
            result.detail.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
}
