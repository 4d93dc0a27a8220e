//! `strata.toml`: the project's typed configuration.
//!
//! Layers, later ones win: built-in defaults → `strata.toml` → environment
//! (`STRATA_CATALOG_URL`). Unknown keys are errors, so a typo never passes
//! silently. Secrets are wrapped in [`Secret`] and never printed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, Result};

/// The project file's name inside a project directory.
pub const CONFIG_FILE: &str = "strata.toml";
/// Where Strata keeps its own state inside a project directory.
pub const STATE_DIR: &str = ".strata";
/// The environment variable that overrides `[catalog] url`.
pub const CATALOG_URL_ENV: &str = "STRATA_CATALOG_URL";

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProjectConfig {
    #[serde(default)]
    pub catalog: CatalogConfig,
    #[serde(default)]
    pub lake: LakeConfig,
    #[serde(default)]
    pub connections: BTreeMap<String, Connection>,
    #[serde(default)]
    pub engine: EngineConfig,
    /// Where pipelines send OpenLineage run events; none are sent without it.
    #[serde(default)]
    pub openlineage: Option<OpenLineageConfig>,
    #[serde(default)]
    pub quality: QualityConfig,
}

/// `[quality]`: how often freshness and reconciliation rules are evaluated
/// beside the pipelines (row and aggregate rules run at every commit).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct QualityConfig {
    #[serde(deserialize_with = "within::<_, 100, 86_400_000>")]
    pub monitor_interval_ms: u64,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            monitor_interval_ms: 5_000,
        }
    }
}

/// `[openlineage]`: run events as JSON lines to a file, to an HTTP endpoint
/// (Marquez's `/api/v1/lineage`, DataHub's), or both.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OpenLineageConfig {
    /// A file to append events to, one JSON object a line (relative to the project).
    pub file: Option<PathBuf>,
    /// An endpoint to POST each event to.
    pub url: Option<String>,
    /// The namespace of the jobs and datasets (default `strata`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

fn default_namespace() -> String {
    "strata".to_string()
}

/// How pipelines batch their work. Every field has a default.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct EngineConfig {
    /// How often a pipeline commits to its targets (one Delta commit per interval).
    #[serde(deserialize_with = "within::<_, 10, 3_600_000>")]
    pub commit_interval_ms: u64,
    /// The most records a source hands over in one batch.
    #[serde(deserialize_with = "count_within::<_, 1, 10_000_000>")]
    pub batch_records: usize,
    /// A source partition quiet for this long stops holding the watermark back.
    #[serde(deserialize_with = "within::<_, 1, 604_800_000>")]
    pub idle_timeout_ms: u64,
    /// Compact a target's small files (and checkpoint its log) after this many
    /// commits of its pipeline; 0 leaves compaction to `strata optimize`.
    pub compact_every_commits: u64,
    /// What one pipeline's keyed state (ROW_NUMBER's counts, and the joins,
    /// dedup and Top-N to come) holds in memory; the rest is on local disk
    /// under `.strata/keyed/`, rebuilt from the checkpoint at every start.
    #[serde(deserialize_with = "within::<_, 8, 1_048_576>")]
    pub state_memory_mb: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            commit_interval_ms: 1_000,
            batch_records: 20_000,
            idle_timeout_ms: 30_000,
            compact_every_commits: 600,
            state_memory_mb: 256,
        }
    }
}

/// A number of `[engine]` or `[quality]` from `MIN` to `MAX`: nonsense such as
/// `batch-records = 0` is refused at start-up, with its line and column.
fn within<'de, D: serde::Deserializer<'de>, const MIN: u64, const MAX: u64>(
    deserializer: D,
) -> std::result::Result<u64, D::Error> {
    let value = u64::deserialize(deserializer)?;
    if (MIN..=MAX).contains(&value) {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format!(
            "{value} is out of range: it must be from {MIN} to {MAX}"
        )))
    }
}

fn count_within<'de, D: serde::Deserializer<'de>, const MIN: u64, const MAX: u64>(
    deserializer: D,
) -> std::result::Result<usize, D::Error> {
    within::<D, MIN, MAX>(deserializer).map(|value| value as usize)
}

/// Where the catalog itself is stored.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CatalogConfig {
    /// `sqlite://…`, `mysql://…` or `postgres://…`. Unset: SQLite in `.strata/catalog.db`.
    pub url: Option<Secret>,
}

/// Where Delta tables without a `'table-path'` live: `<root>/<space>/<name>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LakeConfig {
    pub root: String,
    /// Folders or buckets beside the lake root where a table's `'table-path'`
    /// may point (a Delta connection's root is always allowed).
    #[serde(default)]
    pub allowed_roots: Vec<String>,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            root: "lake".to_string(),
            allowed_roots: Vec::new(),
        }
    }
}

/// A named connection, referred to by `'connection' = 'NAME'` in DDL and by discovery.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Connection {
    Mysql {
        /// `mysql://user@host:port/database`; TiDB uses the same scheme.
        url: Secret,
        username: Option<String>,
        password: Option<Secret>,
        /// Databases besides the URL's that tables using this connection may name.
        #[serde(default)]
        databases: Vec<String>,
    },
    Kafka {
        #[serde(rename = "bootstrap-servers")]
        bootstrap_servers: String,
        #[serde(default)]
        properties: BTreeMap<String, Secret>,
    },
    Delta {
        /// A directory or URL holding Delta tables.
        root: String,
    },
}

impl Connection {
    pub fn kind(&self) -> &'static str {
        match self {
            Connection::Mysql { .. } => "mysql",
            Connection::Kafka { .. } => "kafka",
            Connection::Delta { .. } => "delta",
        }
    }
}

/// A value that must never be printed: passwords, and URLs that may hold them.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Removes the password from a URL, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// A project directory with its loaded configuration.
#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    pub config: ProjectConfig,
}

impl Project {
    /// Loads `DIR/strata.toml`, applying environment overrides.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                CatalogError::Config {
                    path: path.clone(),
                    message: "no project here".to_string(),
                    hint: Some(format!(
                        "run `strata init {}` to create one, or pass --project DIR (or set STRATA_PROJECT)",
                        dir.display()
                    )),
                }
            } else {
                CatalogError::Io {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let mut config = parse_config(&path, &text)?;
        if let Ok(url) = std::env::var(CATALOG_URL_ENV) {
            config.catalog.url = Some(Secret::new(url));
        }
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        Ok(Self { dir, config })
    }

    /// The directory for Strata's own state (`DIR/.strata`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(STATE_DIR)
    }

    /// The catalog store's URL: the configured one, or the embedded SQLite file.
    pub fn catalog_url(&self) -> String {
        match &self.config.catalog.url {
            Some(url) => url.expose().to_string(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.state_dir().join("catalog.db").display()
            ),
        }
    }

    /// The lake root as a URL or absolute path.
    pub fn lake_root(&self) -> String {
        resolve_location(&self.dir, &self.config.lake.root)
    }

    pub fn connection(&self, name: &str) -> Result<&Connection> {
        self.config
            .connections
            .get(name)
            .ok_or_else(|| CatalogError::UnknownConnection {
                name: name.to_string(),
                known: self.config.connections.keys().cloned().collect(),
            })
    }
}

/// A URL stays as it is; a relative path is taken from the project directory.
pub fn resolve_location(project_dir: &Path, location: &str) -> String {
    if location.contains("://") || Path::new(location).is_absolute() {
        location.to_string()
    } else {
        project_dir.join(location).display().to_string()
    }
}

/// Parses `strata.toml` text, naming the file, line and column of a mistake.
pub fn parse_config(path: &Path, text: &str) -> Result<ProjectConfig> {
    toml::from_str(text).map_err(|err| {
        let position = err.span().map(|span| line_column(text, span.start));
        let message = match position {
            Some((line, column)) => format!("line {line}, column {column}: {}", err.message()),
            None => err.message().to_string(),
        };
        CatalogError::Config {
            path: path.to_path_buf(),
            message,
            hint: Some(
                "sections are [catalog] (url), [lake] (root), [engine] (commit-interval-ms, batch-records, idle-timeout-ms) and [connections.NAME] with kind = \"mysql\" | \"kafka\" | \"delta\""
                    .to_string(),
            ),
        }
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|at| at + 1).unwrap_or(0) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_connections_of_each_kind() {
        let config = parse_config(
            Path::new("strata.toml"),
            r#"
            [lake]
            root = "lake"
            [connections.shop_db]
            kind = "mysql"
            url = "mysql://root@127.0.0.1:3306/shop"
            [connections.events]
            kind = "kafka"
            bootstrap-servers = "127.0.0.1:9092"
            [connections.history]
            kind = "delta"
            root = "/data/lake"
            "#,
        )
        .unwrap();
        let kinds: Vec<_> = config.connections.values().map(Connection::kind).collect();
        assert_eq!(kinds, ["kafka", "delta", "mysql"]);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_position() {
        let err = parse_config(
            Path::new("strata.toml"),
            "[connections.db]\nkind = \"mysql\"\nurl = \"mysql://x\"\npasword = \"x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("strata.toml: line"), "{err}");
        assert!(err.contains("pasword"), "{err}");
    }

    #[test]
    fn nonsense_engine_settings_are_refused_with_their_position() {
        for (setting, line) in [
            ("[engine]\nbatch-records = 0\n", 2),
            ("[engine]\ncommit-interval-ms = 0\n", 2),
            ("[engine]\nidle-timeout-ms = 0\n", 2),
            ("[quality]\nmonitor-interval-ms = 1\n", 2),
        ] {
            let err = parse_config(Path::new("strata.toml"), setting)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("line {line}")) && err.contains("out of range"),
                "{setting}: {err}"
            );
        }
        let fine = parse_config(
            Path::new("strata.toml"),
            "[engine]\nbatch-records = 1\ncommit-interval-ms = 10\n",
        )
        .unwrap();
        assert_eq!(fine.engine.batch_records, 1);
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(
            redact_url("mysql://root:hunter2@db:3306/shop"),
            "mysql://root:***@db:3306/shop"
        );
    }
}
