//! The catalog's data model: what Strata knows about a table.
//!
//! ```text
//!   TableDef ─┬─ TableName (space.name)
//!             ├─ Layer      (ods | dwd | dws | app | dim; from the name prefix or 'layer')
//!             ├─ TableKind  (Kafka | Mysql | Delta | Embedded | Nexmark | Blackhole, with the options that
//!             │              kind needs; or Declared: a connector that declared itself, with its options)
//!             ├─ SchemaRef  (Arrow; versioned by the store)
//!             ├─ primary key, watermark, processing-time attribute
//!             └─ owner, description, tags
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::CatalogError;

/// A table's fully qualified name: `space.name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableName {
    pub space: String,
    pub name: String,
}

impl TableName {
    pub fn new(space: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            space: space.into(),
            name: name.into(),
        }
    }
}

/// Whether `text` can name a space or a table: `[A-Za-z_][A-Za-z0-9_]*`.
/// Names become paths and SQL identifiers, so nothing else is allowed.
pub fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The longest space or table name: names become MySQL identifiers and folder names.
pub const MAX_NAME_LENGTH: usize = 64;

/// Spaces that name Strata's or SQL's own schemas, never a user's.
pub const RESERVED_SPACES: [&str; 4] =
    ["information_schema", "pg_catalog", "_strata", "datafusion"];

/// Why `text` cannot name a space (`space = true`) or a table, with a hint;
/// `None` when it can.
pub fn name_refusal(text: &str, space: bool) -> Option<(String, String)> {
    let what = if space { "a space" } else { "a table" };
    if text.len() > MAX_NAME_LENGTH {
        return Some((
            format!(
                "{what} name is at most {MAX_NAME_LENGTH} characters, and this one has {}",
                text.len()
            ),
            "choose a shorter name".to_string(),
        ));
    }
    if !is_identifier(text) {
        return Some((
            format!("{text:?} cannot name {what}"),
            "names use letters, digits and underscores, starting with a letter or underscore"
                .to_string(),
        ));
    }
    if space
        && RESERVED_SPACES
            .iter()
            .any(|reserved| reserved.eq_ignore_ascii_case(text))
    {
        return Some((
            format!("space {text:?} is reserved"),
            format!(
                "{} name Strata's and SQL's own schemas; choose another space",
                RESERVED_SPACES.join(", ")
            ),
        ));
    }
    None
}

impl TableName {
    /// Checks both parts: identifiers, not too long, not a reserved space.
    pub fn validate(&self) -> Result<(), CatalogError> {
        match name_refusal(&self.space, true).or_else(|| name_refusal(&self.name, false)) {
            None => Ok(()),
            Some((reason, hint)) => Err(CatalogError::InvalidTableName {
                given: self.to_string(),
                reason,
                hint,
            }),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.space, self.name)
    }
}

impl FromStr for TableName {
    type Err = CatalogError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('.') {
            Some((space, name)) => {
                let name = Self::new(space, name);
                name.validate()?;
                Ok(name)
            }
            None => Err(CatalogError::InvalidTableName {
                given: text.to_string(),
                reason: "it has no space".to_string(),
                hint: "name tables as SPACE.TABLE, e.g. shop.ods_orders".to_string(),
            }),
        }
    }
}

/// The warehouse layer a table belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Ods,
    Dwd,
    Dws,
    App,
    Dim,
}

impl Layer {
    pub const ALL: [Layer; 5] = [Layer::Ods, Layer::Dwd, Layer::Dws, Layer::App, Layer::Dim];

    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Ods => "ods",
            Layer::Dwd => "dwd",
            Layer::Dws => "dws",
            Layer::App => "app",
            Layer::Dim => "dim",
        }
    }

    /// The layer named by a table name's prefix (`ods_`, `dwd_`, `dws_`, `app_`, `dim_`).
    pub fn from_name_prefix(table_name: &str) -> Option<Layer> {
        let lower = table_name.to_ascii_lowercase();
        Layer::ALL
            .into_iter()
            .find(|layer| lower.starts_with(&format!("{}_", layer.as_str())))
    }

    /// The layer from an explicit `'layer'` option, else from the name's prefix.
    pub fn resolve(table: &TableName, option: Option<&str>) -> Result<Layer, CatalogError> {
        match option {
            Some(value) => value.parse(),
            None => Layer::from_name_prefix(&table.name).ok_or_else(|| CatalogError::NoLayer {
                table: table.to_string(),
            }),
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Layer {
    type Err = CatalogError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Layer::ALL
            .into_iter()
            .find(|layer| layer.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| CatalogError::UnknownLayer {
                given: text.to_string(),
            })
    }
}

/// How a Kafka table's records are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaFormat {
    Json,
    DebeziumJson,
    Raw,
}

impl KafkaFormat {
    pub const NAMES: [&'static str; 3] = ["json", "debezium-json", "raw"];

    pub fn as_str(self) -> &'static str {
        match self {
            KafkaFormat::Json => "json",
            KafkaFormat::DebeziumJson => "debezium-json",
            KafkaFormat::Raw => "raw",
        }
    }
}

impl FromStr for KafkaFormat {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "json" => Ok(KafkaFormat::Json),
            "debezium-json" => Ok(KafkaFormat::DebeziumJson),
            "raw" => Ok(KafkaFormat::Raw),
            _ => Err(()),
        }
    }
}

/// Where a pipeline reading a Kafka table starts (Flink's `scan.startup.mode`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum StartupMode {
    EarliestOffset,
    LatestOffset,
    GroupOffsets,
    Timestamp { millis: i64 },
}

impl StartupMode {
    pub const NAMES: [&'static str; 4] = [
        "earliest-offset",
        "latest-offset",
        "group-offsets",
        "timestamp",
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            StartupMode::EarliestOffset => "earliest-offset",
            StartupMode::LatestOffset => "latest-offset",
            StartupMode::GroupOffsets => "group-offsets",
            StartupMode::Timestamp { .. } => "timestamp",
        }
    }
}

/// Where the table's data lives, with the options that kind of storage needs.
///
/// `connection` names a connection in `strata.toml`; the kind's own fields
/// then hold only what the DDL gave explicitly, and the connection supplies
/// the rest (addresses and secrets stay out of the DDL and the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "connector")]
pub enum TableKind {
    Kafka {
        topic: String,
        bootstrap_servers: Option<String>,
        connection: Option<String>,
        format: KafkaFormat,
        startup_mode: StartupMode,
        /// Extra librdkafka properties (`properties.*` without the prefix).
        properties: BTreeMap<String, String>,
        /// The topic's partition count, when discovery saw the topic.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partitions: Option<i32>,
    },
    Mysql {
        url: Option<String>,
        connection: Option<String>,
        /// The database; from the URL's path when the DDL does not give one.
        database: Option<String>,
        table: String,
        username: Option<String>,
        password: Option<String>,
    },
    Delta {
        /// A URL or local path; `None` means `<lake root>/<space>/<name>`.
        table_path: Option<String>,
        connection: Option<String>,
        /// `PARTITIONED BY`: the table's Delta partition columns, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        partitioned_by: Vec<String>,
    },
    /// A table in the catalog's own SQL store (SQLite by default): small
    /// dimension tables with nothing to install.
    Embedded {
        /// Its name in the store; `<space>__<name>` unless `'table-name'` says otherwise.
        table: String,
    },
    /// Nexmark's event generator (`'connector' = 'nexmark'`): one of its three
    /// streams, generated in process, for benchmarks and tests.
    Nexmark {
        stream: NexmarkStream,
        /// How many events (of all three streams) the generator makes; `None`: without end.
        events: Option<u64>,
        /// Events per second of event time (`'first-event.rate'`).
        rate: u64,
    },
    /// Rows written are counted and digested, then dropped (`'connector' = 'blackhole'`).
    Blackhole,
    /// A table of a connector that declared itself to the DDL
    /// ([`crate::ddl::ConnectorDeclaration`]): its options as the DDL gave them,
    /// checked by the connector, which reads them.
    Declared {
        /// The connector's name.
        name: String,
        options: BTreeMap<String, String>,
    },
}

/// Nexmark's three event streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NexmarkStream {
    Person,
    Auction,
    Bid,
}

impl NexmarkStream {
    pub fn as_str(&self) -> &'static str {
        match self {
            NexmarkStream::Person => "person",
            NexmarkStream::Auction => "auction",
            NexmarkStream::Bid => "bid",
        }
    }
}

impl std::str::FromStr for NexmarkStream {
    type Err = ();

    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "person" => Ok(NexmarkStream::Person),
            "auction" => Ok(NexmarkStream::Auction),
            "bid" => Ok(NexmarkStream::Bid),
            _ => Err(()),
        }
    }
}

impl TableKind {
    pub fn connector(&self) -> &str {
        match self {
            TableKind::Kafka { .. } => "kafka",
            TableKind::Mysql { .. } => "mysql",
            TableKind::Delta { .. } => "delta",
            TableKind::Embedded { .. } => "embedded",
            TableKind::Nexmark { .. } => "nexmark",
            TableKind::Blackhole => "blackhole",
            TableKind::Declared { name, .. } => name,
        }
    }

    /// A one-line description of where the data lives, with no secrets.
    pub fn location(&self) -> String {
        match self {
            TableKind::Kafka {
                topic,
                connection,
                partitions,
                ..
            } => {
                let topic = match partitions {
                    Some(count) => format!("topic {topic} ({count} partitions)"),
                    None => format!("topic {topic}"),
                };
                match connection {
                    Some(connection) => format!("{topic} via {connection}"),
                    None => topic,
                }
            }
            TableKind::Mysql {
                database,
                table,
                connection,
                ..
            } => {
                let qualified = match database {
                    Some(database) => format!("{database}.{table}"),
                    None => table.clone(),
                };
                match connection {
                    Some(connection) => format!("{qualified} via {connection}"),
                    None => qualified,
                }
            }
            TableKind::Delta {
                table_path,
                connection,
                ..
            } => match (table_path, connection) {
                (Some(path), Some(connection)) => format!("{path} via {connection}"),
                (Some(path), None) => path.clone(),
                (None, Some(connection)) => format!("via {connection}"),
                (None, None) => "lake root".to_string(),
            },
            TableKind::Embedded { table } => format!("table {table} in the catalog store"),
            TableKind::Nexmark {
                stream,
                events,
                rate,
            } => match events {
                Some(events) => format!(
                    "nexmark {} stream of {events} events at {rate} events/s",
                    stream.as_str()
                ),
                None => format!("nexmark {} stream at {rate} events/s", stream.as_str()),
            },
            TableKind::Blackhole => "blackhole (rows are counted, then dropped)".to_string(),
            TableKind::Declared { name, options } => {
                let options: Vec<String> = options
                    .iter()
                    .map(|(key, value)| match is_secret(key) {
                        true => format!("{key}=***"),
                        false => format!("{key}={value}"),
                    })
                    .collect();
                format!("{name} ({})", options.join(", "))
            }
        }
    }
}

/// Whether an option (or a client property) holds a secret, never shown: a
/// password, secret, token, credential or JAAS config.
pub fn is_secret(option: &str) -> bool {
    let option = option.to_ascii_lowercase();
    ["password", "secret", "token", "jaas", "credential"]
        .iter()
        .any(|word| option.contains(word))
}

/// Event time: the column and how far the watermark trails the largest seen value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// Rows whose event time is further than this ahead of the wall clock go to
    /// quarantine instead of moving the watermark (`'scan.watermark.max-future-skew'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_future_skew_ms: Option<i64>,
    pub column: String,
    pub delay_ms: i64,
    /// The expression as written, e.g. `order_time - INTERVAL '5' SECOND`.
    pub expression: String,
}

/// Everything the catalog records about one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    pub name: TableName,
    pub layer: Layer,
    pub kind: TableKind,
    pub schema: SchemaRef,
    pub primary_key: Vec<String>,
    pub watermark: Option<Watermark>,
    /// A processing-time attribute (`proc_time AS PROCTIME()`), if declared.
    pub processing_time: Option<String>,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// How the table answers lookup joins, when it is a dimension.
    pub lookup: LookupOptions,
}

/// How a MySQL/TiDB, Delta or embedded table answers lookup joins: its
/// `lookup.*` WITH options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct LookupOptions {
    /// `lookup.cache.max-rows`: keys the LRU cache holds (0 turns it off).
    pub cache_max_rows: u64,
    /// `lookup.cache.ttl`: how long a found row is served from the cache.
    pub cache_ttl_ms: i64,
    /// `lookup.cache.miss-ttl`: how long a key that was not found is remembered as missing.
    pub cache_miss_ttl_ms: i64,
    /// `lookup.batch-size`: keys per `WHERE key IN (…)` query.
    pub batch_keys: usize,
    /// `lookup.max-concurrency`: queries one join keeps in flight.
    pub max_concurrency: usize,
    /// `lookup.broadcast`: a small Kafka table every pipeline holds in memory,
    /// kept current from its topic, with no per-row request.
    pub broadcast: bool,
}

impl Default for LookupOptions {
    fn default() -> Self {
        Self {
            cache_max_rows: 100_000,
            cache_ttl_ms: 60_000,
            cache_miss_ttl_ms: 5_000,
            batch_keys: 500,
            max_concurrency: 4,
            broadcast: false,
        }
    }
}

/// A registered table: its definition, its current schema version and when it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct TableEntry {
    pub def: TableDef,
    pub schema_version: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One recorded version of a table's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaVersion {
    pub version: i64,
    pub schema: SchemaRef,
    pub created_at_ms: i64,
}

/// The stored form of a schema: one entry per column, with Arrow's own type text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
    /// Field metadata, such as a column's `comment`.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub metadata: HashMap<String, String>,
}

/// Serialises a schema as JSON for the store. Arrow's type text round-trips.
pub fn schema_to_json(schema: &Schema) -> String {
    let columns: Vec<StoredColumn> = schema
        .fields()
        .iter()
        .map(|field| StoredColumn {
            name: field.name().clone(),
            data_type: field.data_type().to_string(),
            nullable: field.is_nullable(),
            metadata: field.metadata().clone(),
        })
        .collect();
    serde_json::to_string(&columns).expect("columns serialise")
}

/// Reads a schema stored by [`schema_to_json`].
pub fn schema_from_json(text: &str) -> Result<SchemaRef, CatalogError> {
    let corrupt = |detail: String| CatalogError::CorruptStore {
        detail: format!("stored schema {text:?}: {detail}"),
    };
    let columns: Vec<StoredColumn> =
        serde_json::from_str(text).map_err(|err| corrupt(err.to_string()))?;
    let fields = columns
        .into_iter()
        .map(|column| {
            let data_type = DataType::from_str(&column.data_type)
                .map_err(|err| corrupt(format!("column {}: {err}", column.name)))?;
            Ok(Field::new(column.name, data_type, column.nullable).with_metadata(column.metadata))
        })
        .collect::<Result<Vec<_>, CatalogError>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::TimeUnit;

    #[test]
    fn layer_comes_from_prefix_unless_overridden() {
        let orders = TableName::new("shop", "ods_orders");
        assert_eq!(Layer::resolve(&orders, None).unwrap(), Layer::Ods);
        assert_eq!(Layer::resolve(&orders, Some("dwd")).unwrap(), Layer::Dwd);
        let plain = TableName::new("shop", "orders");
        assert!(matches!(
            Layer::resolve(&plain, None),
            Err(CatalogError::NoLayer { .. })
        ));
        assert!(Layer::resolve(&plain, Some("gold")).is_err());
    }

    #[test]
    fn schemas_round_trip_through_json() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("amount", DataType::Decimal128(10, 2), true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new_list("tags", Field::new_list_field(DataType::Utf8, true), true),
        ]);
        let back = schema_from_json(&schema_to_json(&schema)).unwrap();
        assert_eq!(back.as_ref(), &schema);
    }
}
