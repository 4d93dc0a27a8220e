//! `strata init DIR`: a new project laid out as data engineers keep it in git.
//!
//! ```text
//!   DIR/strata.toml        connections, the lake root, the catalog store
//!   DIR/catalog/*.sql      CREATE TABLE … WITH (...)
//!   DIR/pipelines/<layer>/ one INSERT INTO … SELECT … per file
//!   DIR/.gitignore         .strata/ (embedded catalog) and lake/ (local Delta tables)
//! ```

use std::path::Path;

use anyhow::{Context, bail};

const CONFIG_TEMPLATE: &str = r#"# Strata project configuration.

[lake]
# Delta tables without a 'table-path' live at <root>/<space>/<table>. A URL works too.
root = "lake"

# [catalog]
# The catalog store. Default: SQLite in .strata/catalog.db. MySQL/TiDB and PostgreSQL work by URL.
# url = "mysql://root@127.0.0.1:3306/strata_catalog"

# Named connections, referred to by 'connection' = 'NAME' in DDL and by `strata catalog discover NAME`.
# [connections.shop_db]
# kind = "mysql"
# url = "mysql://root@127.0.0.1:3306/shop"
#
# [connections.events]
# kind = "kafka"
# bootstrap-servers = "127.0.0.1:9092"
#
# [connections.history]
# kind = "delta"
# root = "/data/lake"
"#;

const EXAMPLE_DDL: &str = r#"-- Register with: strata catalog register catalog/
-- CREATE TABLE shop.ods_orders (
--   order_id BIGINT,
--   amount DECIMAL(10, 2),
--   order_time TIMESTAMP(3),
--   WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND,
--   PRIMARY KEY (order_id) NOT ENFORCED
-- ) WITH (
--   'connector' = 'kafka',
--   'topic' = 'orders',
--   'format' = 'json',
--   'connection' = 'events'
-- );
"#;

/// Creates the project; refuses a directory that already holds one.
pub fn init(dir: &Path) -> anyhow::Result<Vec<String>> {
    let config = dir.join("strata.toml");
    if config.exists() {
        bail!(
            "{} already exists; a project is already there (pass another DIR)",
            config.display()
        );
    }
    let files: [(&str, &str); 8] = [
        ("strata.toml", CONFIG_TEMPLATE),
        ("catalog/tables.sql", EXAMPLE_DDL),
        ("checks/.gitkeep", ""),
        ("pipelines/ods/.gitkeep", ""),
        ("pipelines/dwd/.gitkeep", ""),
        ("pipelines/dws/.gitkeep", ""),
        ("pipelines/app/.gitkeep", ""),
        (".gitignore", ".strata/\nlake/\n"),
    ];
    let mut created = Vec::new();
    for (relative, content) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        if !path.exists() {
            std::fs::write(&path, content)
                .with_context(|| format!("writing {}", path.display()))?;
            created.push(relative.to_string());
        }
    }
    Ok(created)
}
