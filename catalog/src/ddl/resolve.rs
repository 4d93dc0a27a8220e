//! From a parsed `CREATE TABLE` to a checked [`TableDef`]: names, layer,
//! connector options, Arrow schema, keys and watermark.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};

use super::declared::ConnectorDeclaration;
use super::parse::{CreateTable, Located};
use crate::config::Connection;
use crate::error::{CatalogError, Result, SourceLocation};
use crate::model::{
    KafkaFormat, Layer, LookupOptions, StartupMode, TableDef, TableKind, TableName, Watermark,
};

const COMMON_OPTIONS: [&str; 6] = [
    "connector",
    "layer",
    "owner",
    "description",
    "tags",
    "scan.watermark.max-future-skew",
];
const KAFKA_OPTIONS: [&str; 7] = [
    "topic",
    "properties.bootstrap.servers",
    "connection",
    "format",
    "value.format",
    "scan.startup.mode",
    "scan.startup.timestamp-millis",
];
const MYSQL_OPTIONS: [&str; 5] = ["url", "connection", "table-name", "username", "password"];
const DELTA_OPTIONS: [&str; 2] = ["table-path", "connection"];
const EMBEDDED_OPTIONS: [&str; 1] = ["table-name"];
const NEXMARK_OPTIONS: [&str; 4] = [
    "stream",
    "events.num",
    "first-event.rate",
    "next-event.rate",
];
/// Flink's Nexmark connector's default `'first-event.rate'`.
const NEXMARK_DEFAULT_RATE: u64 = 10_000_000;
/// Options of tables that answer lookup joins (MySQL/TiDB, Delta, embedded).
const LOOKUP_OPTIONS: [&str; 5] = [
    "lookup.cache.max-rows",
    "lookup.cache.ttl",
    "lookup.cache.miss-ttl",
    "lookup.batch-size",
    "lookup.max-concurrency",
];

/// What a connector's options are read against.
struct Context<'a> {
    /// The `CREATE TABLE` statement's place, for errors about missing options.
    statement: &'a SourceLocation,
    connections: &'a BTreeMap<String, Connection>,
    name: &'a TableName,
}

/// Which `lookup.*` options a connector's tables take.
enum Lookups {
    /// None: its tables are not looked up.
    Not,
    /// `'lookup.broadcast'`: held in memory by the pipelines that look it up.
    Broadcast,
    /// The cache and fetch options of tables queried by key.
    Cached,
}

/// A connector the catalog reads itself, as the DDL knows it: the
/// `'connector'` values that name it, the options it declares, and how they
/// make a table's typed kind. Other connectors declare themselves
/// ([`super::declared`]).
struct ConnectorOptions {
    names: &'static [&'static str],
    /// How the list of connectors in messages describes it.
    described: &'static str,
    own: &'static [&'static str],
    lookups: Lookups,
    /// Options taken by prefix (Kafka's client `'properties.*'`).
    prefixed: Option<&'static str>,
    kind: fn(&mut Options, &Context) -> Result<TableKind>,
}

/// The options a table's connector takes, whichever kind of connector it is.
struct Accepted<'a> {
    own: &'a [&'a str],
    lookups: &'a Lookups,
    /// Options taken by prefix, as messages write them (`'properties.*'`).
    prefixed: Option<String>,
}

/// Every connector's options, in the order messages list them.
const CONNECTORS: [ConnectorOptions; 6] = [
    ConnectorOptions {
        names: &["kafka"],
        described: "'kafka'",
        own: &KAFKA_OPTIONS,
        lookups: Lookups::Broadcast,
        prefixed: Some("properties.*"),
        kind: kafka_kind,
    },
    ConnectorOptions {
        names: &["mysql", "jdbc", "tidb"],
        described: "'mysql' (also for TiDB; 'jdbc' is accepted as a synonym)",
        own: &MYSQL_OPTIONS,
        lookups: Lookups::Cached,
        prefixed: None,
        kind: mysql_kind,
    },
    ConnectorOptions {
        names: &["delta"],
        described: "'delta'",
        own: &DELTA_OPTIONS,
        lookups: Lookups::Cached,
        prefixed: None,
        kind: delta_kind,
    },
    ConnectorOptions {
        names: &["embedded"],
        described: "'embedded' (a table in the catalog's own SQL store)",
        own: &EMBEDDED_OPTIONS,
        lookups: Lookups::Cached,
        prefixed: None,
        kind: embedded_kind,
    },
    ConnectorOptions {
        names: &["nexmark"],
        described: "'nexmark' (Nexmark's event generator)",
        own: &NEXMARK_OPTIONS,
        lookups: Lookups::Not,
        prefixed: None,
        kind: nexmark_kind,
    },
    ConnectorOptions {
        names: &["blackhole"],
        described: "'blackhole' (rows are counted and dropped)",
        own: &[],
        lookups: Lookups::Not,
        prefixed: None,
        kind: blackhole_kind,
    },
];

/// The connectors, as messages list them.
fn connectors_described() -> String {
    let described: Vec<&str> = CONNECTORS
        .iter()
        .map(|c| c.described)
        .chain(super::declared::described())
        .collect();
    match described.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Turns a parsed statement into a table definition, checking it against the
/// project's named connections.
pub fn resolve(
    create: &CreateTable,
    connections: &BTreeMap<String, Connection>,
) -> Result<TableDef> {
    let name = table_name(&create.name)?;
    let schema = schema(create)?;
    let primary_key = primary_key(create, &schema)?;
    let schema = Arc::new(mark_key_not_null(&schema, &primary_key));
    let mut watermark = watermark(create, &schema)?;
    let processing_time = processing_time(create, &schema)?;
    let mut options = Options::new(create)?;
    let connector = options.require("connector", &create.location, || {
        format!(
            "add 'connector' = ... to the WITH clause; connectors are {}",
            connectors_described()
        )
    })?;
    let builtin = CONNECTORS
        .iter()
        .find(|c| c.names.contains(&connector.value.as_str()));
    let (kind, accepted) = match (builtin, super::declared::declared(&connector.value)) {
        (Some(builtin), _) => {
            let context = Context {
                statement: &create.location,
                connections,
                name: &name,
            };
            let accepted = Accepted {
                own: builtin.own,
                lookups: &builtin.lookups,
                prefixed: builtin.prefixed.map(str::to_string),
            };
            ((builtin.kind)(&mut options, &context)?, accepted)
        }
        (None, Some(declared)) => {
            let accepted = Accepted {
                own: declared.options,
                lookups: &Lookups::Not,
                prefixed: declared.prefix.map(|prefix| format!("{prefix}*")),
            };
            let kind = declared_kind(declared, &mut options, &schema, create)?;
            (kind, accepted)
        }
        (None, None) => {
            return Err(ddl_error(
                &connector.location,
                format!("unknown connector {:?}", connector.value),
                format!("the connectors are {}", connectors_described()),
            ));
        }
    };
    let kind = partitioning(create, kind, &schema)?;
    if let TableKind::Nexmark { stream, .. } = &kind
        && let Err(CatalogError::Nexmark { message, hint }) =
            crate::connectors::nexmark::check_columns(*stream, &schema)
    {
        return Err(ddl_error(&create.location, message, hint));
    }
    if let TableKind::Kafka {
        format: KafkaFormat::Raw,
        ..
    } = &kind
    {
        let single_text_or_bytes = matches!(
            schema.fields().as_ref(),
            [field] if matches!(field.data_type(), DataType::Utf8 | DataType::Binary)
        );
        if !single_text_or_bytes {
            return Err(ddl_error(
                &create.location,
                "a table with format 'raw' has exactly one STRING or BYTES column".to_string(),
                "declare one column, e.g. (line STRING), or use format 'json'".to_string(),
            ));
        }
    }
    if let Some(skew) = options.take("scan.watermark.max-future-skew") {
        let Some(watermark) = watermark.as_mut() else {
            return Err(ddl_error(
                &skew.location,
                "'scan.watermark.max-future-skew' bounds the event time that moves a watermark, and this table has none".to_string(),
                "declare WATERMARK FOR column AS column - INTERVAL '5' SECOND".to_string(),
            ));
        };
        let compact: String = skew.value.split_whitespace().collect();
        let millis = humantime::parse_duration(&compact).map_err(|err| {
            ddl_error(
                &skew.location,
                format!("'{}' is not a duration ({err})", skew.value),
                "write e.g. '1 h' or '10 min'".to_string(),
            )
        })?;
        watermark.max_future_skew_ms = Some(millis.as_millis().min(i64::MAX as u128) as i64);
    }
    let layer_option = options.take("layer");
    let layer = match &layer_option {
        Some(layer) => layer.value.parse().map_err(|_| {
            ddl_error(
                &layer.location,
                format!("unknown layer {:?}", layer.value),
                "the layers are ods, dwd, dws, app and dim".to_string(),
            )
        })?,
        None => Layer::resolve(&name, None).map_err(|err| {
            ddl_error(
                &create.name.location,
                err.to_string().lines().next().unwrap_or_default().to_string(),
                "prefix the table name with ods_, dwd_, dws_, app_ or dim_, or add 'layer' = 'ods|dwd|dws|app|dim' to its WITH options"
                    .to_string(),
            )
        })?,
    };
    let owner = options.take("owner").map(|o| o.value);
    let description = options
        .take("description")
        .map(|d| d.value)
        .or_else(|| create.comment.clone());
    let tags = options
        .take("tags")
        .map(|tags| {
            tags.value
                .split(',')
                .map(str::trim)
                .filter(|tag| !tag.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let lookup = match accepted.lookups {
        Lookups::Broadcast => broadcast_option(&mut options, &primary_key, &create.location)?,
        Lookups::Cached => lookup_options(&mut options)?,
        Lookups::Not => LookupOptions::default(),
    };
    options.refuse_leftovers(&accepted, connector.value.as_str())?;

    Ok(TableDef {
        name,
        layer,
        kind,
        schema,
        primary_key,
        watermark,
        processing_time,
        owner,
        description,
        tags,
        lookup,
    })
}

/// `'lookup.broadcast' = 'true'` on a Kafka table: held in memory by the
/// pipelines that look it up, latest row per primary key.
fn broadcast_option(
    options: &mut Options,
    primary_key: &[String],
    statement: &SourceLocation,
) -> Result<LookupOptions> {
    let mut lookup = LookupOptions::default();
    if let Some(value) = options.take("lookup.broadcast") {
        lookup.broadcast = match value.value.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(ddl_error(
                    &value.location,
                    format!("'lookup.broadcast' is 'true' or 'false', not '{other}'"),
                    "write 'lookup.broadcast' = 'true' for a small table held in memory"
                        .to_string(),
                ));
            }
        };
    }
    if lookup.broadcast && primary_key.is_empty() {
        return Err(ddl_error(
            statement,
            "a broadcast table keeps the latest row per primary key, and this one has none"
                .to_string(),
            "declare PRIMARY KEY (…) NOT ENFORCED".to_string(),
        ));
    }
    Ok(lookup)
}

/// The `lookup.*` options: the cache, and how keys are fetched.
fn lookup_options(options: &mut Options) -> Result<LookupOptions> {
    let mut lookup = LookupOptions::default();
    let count = |value: &Located<String>, min: u64| {
        value
            .value
            .parse::<u64>()
            .ok()
            .filter(|&n| n >= min)
            .ok_or_else(|| {
                ddl_error(
                    &value.location,
                    format!("'{}' is not a whole number of at least {min}", value.value),
                    "write e.g. '10000'".to_string(),
                )
            })
    };
    let duration = |value: &Located<String>| {
        let compact: String = value.value.split_whitespace().collect();
        humantime::parse_duration(&compact)
            .map(|d| d.as_millis() as i64)
            .map_err(|err| {
                ddl_error(
                    &value.location,
                    format!("'{}' is not a duration ({err})", value.value),
                    "write e.g. '500 ms', '30 s' or '10 min'".to_string(),
                )
            })
    };
    if let Some(value) = options.take("lookup.cache.max-rows") {
        lookup.cache_max_rows = count(&value, 0)?;
    }
    if let Some(value) = options.take("lookup.cache.ttl") {
        lookup.cache_ttl_ms = duration(&value)?;
    }
    if let Some(value) = options.take("lookup.cache.miss-ttl") {
        lookup.cache_miss_ttl_ms = duration(&value)?;
    }
    if let Some(value) = options.take("lookup.batch-size") {
        lookup.batch_keys = count(&value, 1)? as usize;
    }
    if let Some(value) = options.take("lookup.max-concurrency") {
        lookup.max_concurrency = count(&value, 1)? as usize;
    }
    Ok(lookup)
}

fn table_name(name: &Located<Vec<String>>) -> Result<TableName> {
    match name.value.as_slice() {
        [space, table] => match crate::model::name_refusal(space, true)
            .or_else(|| crate::model::name_refusal(table, false))
        {
            None => Ok(TableName::new(space, table)),
            Some((reason, hint)) => Err(ddl_error(&name.location, reason, hint)),
        },
        parts => Err(ddl_error(
            &name.location,
            format!("table name {} must be SPACE.TABLE", parts.join(".")),
            "qualify the name with its space, e.g. CREATE TABLE shop.ods_orders".to_string(),
        )),
    }
}

/// The WITH options, consumed one by one so leftovers can be reported.
struct Options {
    remaining: Vec<(Located<String>, Located<String>)>,
}

impl Options {
    fn new(create: &CreateTable) -> Result<Self> {
        let mut seen = HashSet::new();
        for (key, _) in &create.options {
            if !seen.insert(key.value.as_str()) {
                return Err(ddl_error(
                    &key.location,
                    format!("option '{}' is given twice", key.value),
                    "keep one of them".to_string(),
                ));
            }
        }
        Ok(Self {
            remaining: create.options.clone(),
        })
    }

    fn take(&mut self, key: &str) -> Option<Located<String>> {
        let index = self.remaining.iter().position(|(k, _)| k.value == key)?;
        Some(self.remaining.remove(index).1)
    }

    fn require(
        &mut self,
        key: &str,
        statement: &SourceLocation,
        hint: impl FnOnce() -> String,
    ) -> Result<Located<String>> {
        self.take(key)
            .ok_or_else(|| ddl_error(statement, format!("missing option '{key}'"), hint()))
    }

    /// `properties.*` options (other than the bootstrap servers) become client properties.
    fn take_prefixed(&mut self, prefix: &str) -> BTreeMap<String, String> {
        let (taken, kept): (Vec<_>, Vec<_>) = self
            .remaining
            .drain(..)
            .partition(|(key, _)| key.value.starts_with(prefix));
        self.remaining = kept;
        taken
            .into_iter()
            .map(|(key, value)| (key.value[prefix.len()..].to_string(), value.value))
            .collect()
    }

    /// Refuses an option left over: one the connector does not take.
    fn refuse_leftovers(&self, accepted: &Accepted, connector: &str) -> Result<()> {
        let Some((key, _)) = self.remaining.first() else {
            return Ok(());
        };
        let lookup: &[&str] = match accepted.lookups {
            Lookups::Broadcast => &["lookup.broadcast"],
            Lookups::Cached => &LOOKUP_OPTIONS,
            Lookups::Not => &[],
        };
        let valid: Vec<String> = accepted
            .own
            .iter()
            .chain(lookup)
            .chain(COMMON_OPTIONS.iter())
            .map(|o| format!("'{o}'"))
            .chain(accepted.prefixed.iter().map(|p| format!("'{p}'")))
            .collect();
        let hint = if key.value == "json.ignore-parse-errors" {
            "Strata never drops records: undecodable ones go to the target's __quarantine table, so this option is not needed".to_string()
        } else {
            format!(
                "the options of a {connector} table are {}",
                valid.join(", ")
            )
        };
        Err(ddl_error(
            &key.location,
            format!("unknown option '{}' for connector '{connector}'", key.value),
            hint,
        ))
    }
}

fn named_connection<'a>(
    options: &mut Options,
    connections: &'a BTreeMap<String, Connection>,
    expected: &'static str,
) -> Result<Option<(String, &'a Connection)>> {
    let Some(name) = options.take("connection") else {
        return Ok(None);
    };
    let connection = connections.get(&name.value).ok_or_else(|| {
        let known: Vec<&str> = connections.keys().map(String::as_str).collect();
        ddl_error(
            &name.location,
            format!("no connection named {:?} in strata.toml", name.value),
            if known.is_empty() {
                "add a [connections.NAME] section to strata.toml".to_string()
            } else {
                format!("the defined connections are {}", known.join(", "))
            },
        )
    })?;
    if connection.kind() != expected {
        return Err(ddl_error(
            &name.location,
            format!(
                "connection {:?} is a {} connection, but this is a {expected} table",
                name.value,
                connection.kind()
            ),
            format!("name a connection with kind = \"{expected}\""),
        ));
    }
    Ok(Some((name.value, connection)))
}

fn kafka_kind(options: &mut Options, context: &Context) -> Result<TableKind> {
    let (statement, connections) = (context.statement, context.connections);
    let topic = options.require("topic", statement, || {
        "add 'topic' = 'NAME' to the WITH clause".to_string()
    })?;
    let connection = named_connection(options, connections, "kafka")?.map(|(name, _)| name);
    let bootstrap_servers = options
        .take("properties.bootstrap.servers")
        .map(|b| b.value);
    if connection.is_none() && bootstrap_servers.is_none() {
        return Err(ddl_error(
            statement,
            "a kafka table needs 'properties.bootstrap.servers' or 'connection'".to_string(),
            "add 'properties.bootstrap.servers' = 'host:9092', or 'connection' = 'NAME' for a connection in strata.toml".to_string(),
        ));
    }
    let format = match options
        .take("format")
        .or_else(|| options.take("value.format"))
    {
        Some(format) => format.value.parse::<KafkaFormat>().map_err(|_| {
            ddl_error(
                &format.location,
                format!("unknown format {:?}", format.value),
                format!("the formats are {}", KafkaFormat::NAMES.join(", ")),
            )
        })?,
        None => {
            return Err(ddl_error(
                statement,
                "missing option 'format'".to_string(),
                format!("add 'format' = one of {}", KafkaFormat::NAMES.join(", ")),
            ));
        }
    };
    let timestamp = options.take("scan.startup.timestamp-millis");
    let startup_mode = match options.take("scan.startup.mode") {
        None => StartupMode::GroupOffsets,
        Some(mode) => match mode.value.as_str() {
            "earliest-offset" => StartupMode::EarliestOffset,
            "latest-offset" => StartupMode::LatestOffset,
            "group-offsets" => StartupMode::GroupOffsets,
            "timestamp" => {
                let millis = timestamp
                    .as_ref()
                    .and_then(|t| t.value.parse::<i64>().ok())
                    .ok_or_else(|| {
                        ddl_error(
                            &mode.location,
                            "'scan.startup.mode' = 'timestamp' needs 'scan.startup.timestamp-millis'".to_string(),
                            "add 'scan.startup.timestamp-millis' = '1700000000000' (milliseconds since the epoch)".to_string(),
                        )
                    })?;
                StartupMode::Timestamp { millis }
            }
            other => {
                return Err(ddl_error(
                    &mode.location,
                    format!("unknown startup mode {other:?}"),
                    format!("the modes are {}", StartupMode::NAMES.join(", ")),
                ));
            }
        },
    };
    if let Some((key, _)) = options.remaining.iter().find(|(key, _)| {
        key.value
            .strip_prefix("properties.")
            .is_some_and(|property| crate::confine::kafka_property_refusal(property).is_some())
    }) {
        let property = &key.value["properties.".len()..];
        return Err(ddl_error(
            &key.location,
            crate::confine::kafka_property_refusal(property).unwrap_or_default(),
            crate::confine::KAFKA_PROPERTY_HINT.to_string(),
        ));
    }
    let properties = options.take_prefixed("properties.");
    Ok(TableKind::Kafka {
        topic: topic.value,
        bootstrap_servers,
        connection,
        format,
        startup_mode,
        properties,
        partitions: None,
    })
}

fn mysql_kind(options: &mut Options, context: &Context) -> Result<TableKind> {
    let (statement, connections) = (context.statement, context.connections);
    let connection = named_connection(options, connections, "mysql")?;
    let table = options.require("table-name", statement, || {
        "add 'table-name' = 'TABLE' (or 'DATABASE.TABLE') to the WITH clause".to_string()
    })?;
    let url = options.take("url");
    let url_text = match &url {
        Some(url) => {
            let text = url.value.trim_start_matches("jdbc:").to_string();
            if !(text.starts_with("mysql://") || text.starts_with("tidb://")) {
                return Err(ddl_error(
                    &url.location,
                    format!("'url' {:?} is not a MySQL URL", url.value),
                    "write 'url' = 'mysql://HOST:PORT/DATABASE' (TiDB uses the same scheme)"
                        .to_string(),
                ));
            }
            Some(text.replacen("tidb://", "mysql://", 1))
        }
        None => None,
    };
    let connection_url = connection.as_ref().and_then(|(_, c)| match c {
        Connection::Mysql { url, .. } => Some(url.expose().to_string()),
        _ => None,
    });
    let Some(effective_url) = url_text.clone().or(connection_url) else {
        return Err(ddl_error(
            statement,
            "a mysql table needs 'url' or 'connection'".to_string(),
            "add 'url' = 'mysql://HOST:PORT/DATABASE', or 'connection' = 'NAME' for a connection in strata.toml".to_string(),
        ));
    };
    let (database, table_name) = match table.value.split_once('.') {
        Some((database, table)) => (Some(database.to_string()), table.to_string()),
        None => (database_of(&effective_url), table.value.clone()),
    };
    if database.is_none() {
        return Err(ddl_error(
            &table.location,
            format!("no database for table {:?}", table.value),
            "put the database in the URL (mysql://HOST:PORT/DATABASE) or write 'table-name' = 'DATABASE.TABLE'".to_string(),
        ));
    }
    Ok(TableKind::Mysql {
        url: url_text,
        connection: connection.map(|(name, _)| name),
        database,
        table: table_name,
        username: options.take("username").map(|u| u.value),
        password: options.take("password").map(|p| p.value),
    })
}

/// An embedded table's store table: `<space>__<name>`, or a `'table-name'` of the same space.
fn embedded_kind(options: &mut Options, context: &Context) -> Result<TableKind> {
    let name = context.name;
    let Some(table) = options.take("table-name") else {
        return Ok(TableKind::Embedded {
            table: format!("{}__{}", name.space, name.name),
        });
    };
    if let Err(CatalogError::Confined { message, hint, .. }) =
        crate::confine::embedded_table(name, &table.value)
    {
        return Err(ddl_error(&table.location, message, hint));
    }
    Ok(TableKind::Embedded { table: table.value })
}

/// `PARTITIONED BY (…)`: a Delta table's partition columns, each a column of
/// the table of a type Delta partitions by, and not all of them.
fn partitioning(create: &CreateTable, kind: TableKind, schema: &Schema) -> Result<TableKind> {
    let Some(partitioned) = &create.partitioned_by else {
        return Ok(kind);
    };
    let TableKind::Delta {
        table_path,
        connection,
        ..
    } = kind
    else {
        return Err(ddl_error(
            &partitioned.location,
            format!(
                "PARTITIONED BY is for Delta tables; a {} table is not partitioned by columns",
                kind.connector()
            ),
            "drop PARTITIONED BY: a Kafka topic is partitioned by its records' keys, a MySQL/TiDB table by its own DDL"
                .to_string(),
        ));
    };
    let mut columns: Vec<String> = Vec::new();
    for column in &partitioned.value {
        let Ok(field) = schema.field_with_name(&column.value) else {
            return Err(ddl_error(
                &column.location,
                format!(
                    "PARTITIONED BY names {}, which is not a column of the table",
                    column.value
                ),
                "partition by columns declared in the column list".to_string(),
            ));
        };
        if columns.contains(&column.value) {
            return Err(ddl_error(
                &column.location,
                format!("PARTITIONED BY names {} twice", column.value),
                "name each partition column once".to_string(),
            ));
        }
        let partitionable = matches!(
            field.data_type(),
            DataType::Utf8
                | DataType::Boolean
                | DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::Date32
                | DataType::Timestamp(_, _)
                | DataType::Decimal128(_, _)
        );
        if !partitionable {
            return Err(ddl_error(
                &column.location,
                format!(
                    "partition column {} is {}; Delta partitions by STRING, BOOLEAN, integer, DECIMAL, DATE and TIMESTAMP values",
                    column.value,
                    crate::ddl::types::flink_type_name(field.data_type())
                ),
                "partition by a column of one of those types, e.g. a day as STRING or DATE"
                    .to_string(),
            ));
        }
        columns.push(column.value.clone());
    }
    if columns.len() == schema.fields().len() {
        return Err(ddl_error(
            &partitioned.location,
            "every column is a partition column; a Delta table needs at least one other"
                .to_string(),
            "partition by fewer columns".to_string(),
        ));
    }
    Ok(TableKind::Delta {
        table_path,
        connection,
        partitioned_by: columns,
    })
}

fn delta_kind(options: &mut Options, context: &Context) -> Result<TableKind> {
    let connection = named_connection(options, context.connections, "delta")?.map(|(name, _)| name);
    Ok(TableKind::Delta {
        table_path: options.take("table-path").map(|p| p.value),
        connection,
        partitioned_by: Vec::new(),
    })
}

/// `'stream'` (person, auction or bid), `'events.num'` (without end if not
/// given) and `'first-event.rate'` (events per second of event time; Flink's
/// `'next-event.rate'` may be given if it is the same: the rate does not change).
fn nexmark_kind(options: &mut Options, context: &Context) -> Result<TableKind> {
    let statement = context.statement;
    let stream = options.require("stream", statement, || {
        "add 'stream' = 'person' | 'auction' | 'bid': each Nexmark stream is a table of its own"
            .to_string()
    })?;
    let stream = stream.value.parse().map_err(|()| {
        ddl_error(
            &stream.location,
            format!("unknown Nexmark stream {:?}", stream.value),
            "the streams are 'person', 'auction' and 'bid'".to_string(),
        )
    })?;
    let positive = |option: Option<Located<String>>| -> Result<Option<u64>> {
        option
            .map(|o| {
                o.value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        ddl_error(
                            &o.location,
                            format!("{:?} is not a positive whole number", o.value),
                            "write e.g. '1000000'".to_string(),
                        )
                    })
            })
            .transpose()
    };
    let events = positive(options.take("events.num"))?;
    let rate = positive(options.take("first-event.rate"))?.unwrap_or(NEXMARK_DEFAULT_RATE);
    if let Some(next) = options.take("next-event.rate") {
        let location = next.location.clone();
        if positive(Some(next))? != Some(rate) {
            return Err(ddl_error(
                &location,
                "'next-event.rate' must equal 'first-event.rate': Strata's generator keeps one rate"
                    .to_string(),
                "drop 'next-event.rate', or give both the same value".to_string(),
            ));
        }
    }
    Ok(TableKind::Nexmark {
        stream,
        events,
        rate,
    })
}

/// A blackhole table has no options of its own.
fn blackhole_kind(_options: &mut Options, _context: &Context) -> Result<TableKind> {
    Ok(TableKind::Blackhole)
}

/// The kind of a table of a declared connector: its own options (and the
/// ones its prefix takes), as given, once the connector has checked them.
fn declared_kind(
    declared: &ConnectorDeclaration,
    options: &mut Options,
    schema: &Schema,
    create: &CreateTable,
) -> Result<TableKind> {
    let (taken, kept): (Vec<_>, Vec<_>) = options.remaining.drain(..).partition(|(key, _)| {
        declared.options.contains(&key.value.as_str())
            || declared
                .prefix
                .is_some_and(|prefix| key.value.starts_with(prefix))
    });
    options.remaining = kept;
    let given: BTreeMap<String, String> = taken
        .iter()
        .map(|(key, value)| (key.value.clone(), value.value.clone()))
        .collect();
    (declared.check)(&given, schema).map_err(|problem| {
        let location = problem
            .option
            .as_ref()
            .and_then(|option| taken.iter().find(|(key, _)| key.value == *option))
            .map_or(&create.location, |(_, value)| &value.location);
        ddl_error(location, problem.message, problem.hint)
    })?;
    Ok(TableKind::Declared {
        name: declared.names[0].to_string(),
        options: given,
    })
}

/// The database named by a MySQL URL's path, if any.
pub fn database_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let database = parsed.path().trim_start_matches('/');
    (!database.is_empty()).then(|| database.to_string())
}

fn schema(create: &CreateTable) -> Result<Schema> {
    let mut seen = HashSet::new();
    let mut fields = Vec::with_capacity(create.columns.len());
    for column in &create.columns {
        if !seen.insert(column.name.value.to_ascii_lowercase()) {
            return Err(ddl_error(
                &column.name.location,
                format!("column {} is declared twice", column.name.value),
                "rename or remove one of them".to_string(),
            ));
        }
        let data_type = column.data_type.value.to_arrow().map_err(|unsupported| {
            ddl_error(
                &column.data_type.location,
                format!(
                    "column {} has type {}, which Strata cannot map to Arrow",
                    column.name.value, unsupported.0
                ),
                format!("the supported types are {}", super::types::SUPPORTED_TYPES),
            )
        })?;
        let mut field = Field::new(&column.name.value, data_type, !column.not_null);
        if let Some(comment) = &column.comment {
            field = field.with_metadata([("comment".to_string(), comment.clone())].into());
        }
        fields.push(field);
    }
    if fields.is_empty() {
        return Err(ddl_error(
            &create.location,
            "a table needs at least one column".to_string(),
            "declare its columns: CREATE TABLE s.t (id BIGINT, ...)".to_string(),
        ));
    }
    Ok(Schema::new(fields))
}

fn primary_key(create: &CreateTable, schema: &Schema) -> Result<Vec<String>> {
    let Some(key) = &create.primary_key else {
        return Ok(Vec::new());
    };
    for column in &key.value {
        column_of(schema, column, &key.location, "PRIMARY KEY")?;
    }
    Ok(key.value.clone())
}

fn mark_key_not_null(schema: &Schema, key: &[String]) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            let in_key = key.iter().any(|k| k == field.name());
            field
                .as_ref()
                .clone()
                .with_nullable(field.is_nullable() && !in_key)
        })
        .collect();
    Schema::new(fields)
}

fn watermark(create: &CreateTable, schema: &Schema) -> Result<Option<Watermark>> {
    let Some(watermark) = &create.watermark else {
        return Ok(None);
    };
    let column = &watermark.value.column;
    let field = column_of(schema, &column.value, &column.location, "WATERMARK")?;
    if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
        return Err(ddl_error(
            &column.location,
            format!(
                "the watermark column {} is {}, not a timestamp",
                column.value,
                super::types::flink_type_name(field.data_type())
            ),
            "declare the event-time column as TIMESTAMP(3) or TIMESTAMP_LTZ(3)".to_string(),
        ));
    }
    Ok(Some(Watermark {
        max_future_skew_ms: None,
        column: column.value.clone(),
        delay_ms: watermark.value.delay_ms,
        expression: watermark.value.expression.clone(),
    }))
}

fn processing_time(create: &CreateTable, schema: &Schema) -> Result<Option<String>> {
    let Some(column) = &create.processing_time else {
        return Ok(None);
    };
    if schema.field_with_name(&column.value).is_ok() {
        return Err(ddl_error(
            &column.location,
            format!("column {} is declared twice", column.value),
            "give the PROCTIME() column a name of its own".to_string(),
        ));
    }
    Ok(Some(column.value.clone()))
}

fn column_of<'s>(
    schema: &'s Schema,
    column: &str,
    location: &SourceLocation,
    clause: &str,
) -> Result<&'s Field> {
    schema.field_with_name(column).map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        ddl_error(
            location,
            format!("{clause} names column {column}, which the table does not have"),
            format!("the columns are {}", names.join(", ")),
        )
    })
}

fn ddl_error(location: &SourceLocation, message: String, hint: String) -> CatalogError {
    CatalogError::Ddl {
        location: location.clone(),
        message,
        hint: Some(hint),
    }
}
