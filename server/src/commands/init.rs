//! `strata init`: a new project directory.

use std::path::PathBuf;

use strata_server::scaffold;

use super::{Format, print_json};

pub(crate) fn run(dir: PathBuf, format: Format) -> anyhow::Result<()> {
    let created = scaffold::init(&dir)?;
    match format {
        Format::Json => print_json(&serde_json::json!({"project": dir, "created": created})),
        Format::Table | Format::Dot => {
            println!("created project {}", dir.display());
            for path in created {
                println!("  {path}");
            }
            println!(
                "next: strata --project {} catalog register {}/catalog",
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(())
}
