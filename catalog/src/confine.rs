//! Where a table's data may live. A token's grants name spaces, so a table's
//! options must never reach data that belongs to another space or to Strata
//! itself, whatever they say:
//!
//! ```text
//!   embedded 'table-name'   ─▶ <space>__<name> in the store, never strata_* (tokens, DDL)
//!   delta 'table-path'      ─▶ normalised, inside <lake root>/<space>/, a Delta
//!                              connection's root or [lake] allowed-roots; never .strata/
//!   mysql 'table-name'      ─▶ the connection's database (or its `databases` list)
//!   kafka 'properties.*'    ─▶ an allow-list of client settings; nothing that loads
//!                              code or touches files (those belong in strata.toml)
//!   two spaces              ─▶ never one location (Delta folder, MySQL table, store table, topic)
//! ```
//!
//! The location rules run wherever a table is opened, so a table registered
//! before they existed is held to them too; the one-location rule runs when
//! tables are registered, against everything the store holds.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use crate::config::{Connection, Project, resolve_location};
use crate::error::{CatalogError, Result};
use crate::model::{TableDef, TableKind, TableName};

/// librdkafka properties a table's DDL may set: client tuning and credentials
/// given as values. Everything else (`*.location`, `plugin.library.paths`,
/// `ssl.engine.*`, `sasl.kerberos.*`, `sasl.oauthbearer.*`, `debug`, `log*`, and the
/// settings exactly-once depends on) is refused; an operator may still set
/// them on a Kafka connection in strata.toml.
pub const KAFKA_DDL_PROPERTIES: &[&str] = &[
    "allow.auto.create.topics",
    "api.version.request",
    "batch.num.messages",
    "batch.size",
    "check.crcs",
    "client.dns.lookup",
    "client.id",
    "client.rack",
    "compression.codec",
    "compression.type",
    "connections.max.idle.ms",
    "enable.ssl.certificate.verification",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.wait.max.ms",
    // Accepted as Flink jobs carry it; pipelines read as `strata-<pipeline>`.
    "group.id",
    "heartbeat.interval.ms",
    "linger.ms",
    "max.in.flight.requests.per.connection",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "message.max.bytes",
    "message.timeout.ms",
    "metadata.max.age.ms",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "receive.message.max.bytes",
    "reconnect.backoff.max.ms",
    "reconnect.backoff.ms",
    "request.timeout.ms",
    "retries",
    "retry.backoff.max.ms",
    "retry.backoff.ms",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.password",
    "sasl.username",
    "security.protocol",
    "session.timeout.ms",
    "socket.connection.setup.timeout.ms",
    "socket.keepalive.enable",
    "socket.timeout.ms",
    "ssl.ca.pem",
    "ssl.certificate.pem",
    "ssl.cipher.suites",
    "ssl.curves.list",
    "ssl.endpoint.identification.algorithm",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.sigalgs.list",
    "topic.metadata.refresh.interval.ms",
];

/// Why a `properties.*` option may not come from DDL, or `None` when it may.
pub fn kafka_property_refusal(key: &str) -> Option<String> {
    if KAFKA_DDL_PROPERTIES.contains(&key) {
        return None;
    }
    let why = if key.ends_with(".location")
        || key.starts_with("plugin.")
        || key.starts_with("ssl.engine")
        || key.starts_with("sasl.kerberos")
        || key.starts_with("sasl.oauthbearer")
        || key == "debug"
        || key.starts_with("log")
    {
        "it loads code or reads or writes files on the server"
    } else if matches!(
        key,
        "group.instance.id"
            | "isolation.level"
            | "enable.auto.commit"
            | "enable.auto.offset.store"
            | "enable.idempotence"
            | "transactional.id"
            | "bootstrap.servers"
    ) {
        "Strata sets it itself (exactly-once depends on it)"
    } else if key == "auto.offset.reset" {
        "where a pipeline starts is 'scan.startup.mode' (earliest-offset, latest-offset, group-offsets, timestamp)"
    } else {
        "it is not on the list of client settings a table may set"
    };
    Some(format!(
        "Kafka property '{key}' cannot be set in DDL: {why}"
    ))
}

/// The hint that goes with [`kafka_property_refusal`].
pub const KAFKA_PROPERTY_HINT: &str = "set it on a Kafka connection in strata.toml ([connections.NAME] properties) and use 'connection' = 'NAME'; docs/catalog.md lists the properties DDL may set";

/// Checks a Kafka table's DDL properties against the allow-list.
pub fn kafka_properties(name: &TableName, properties: &BTreeMap<String, String>) -> Result<()> {
    for key in properties.keys() {
        if let Some(message) = kafka_property_refusal(key) {
            return Err(confined(name, message, KAFKA_PROPERTY_HINT));
        }
    }
    Ok(())
}

/// Checks that an embedded table's store table is its space's own:
/// `<space>__<name>`, a plain identifier, so no user table can be the store's
/// own (`strata_tokens`, `strata_tables`) or reach another schema.
pub fn embedded_table(name: &TableName, table: &str) -> Result<()> {
    let prefix = format!("{}__", name.space);
    let own = crate::model::is_identifier(table)
        && table.len() > prefix.len()
        && table
            .get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(&prefix));
    if own {
        return Ok(());
    }
    Err(confined(
        name,
        format!("embedded 'table-name' {table:?} is outside the space's own store tables"),
        &format!(
            "name it {prefix}SOMETHING (letters, digits, underscores), or leave 'table-name' out for {prefix}{}",
            name.name
        ),
    ))
}

/// A location as comparable parts: where it is (`file` or `scheme://authority`)
/// and its normalised path segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    base: String,
    segments: Vec<String>,
}

impl Location {
    /// Parses a path or URL, resolving `.` and `..`; `None` when `..` climbs
    /// above the root or the text is not a location.
    pub fn parse(text: &str) -> Option<Self> {
        let (base, path) = match text.split_once("://") {
            Some(("file", rest)) => ("file".to_string(), rest.to_string()),
            Some((scheme, rest)) => {
                let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
                let decoded = percent_encoding::percent_decode_str(path)
                    .decode_utf8()
                    .ok()?
                    .to_string();
                (
                    format!("{}://{}", scheme.to_ascii_lowercase(), authority),
                    format!("/{decoded}"),
                )
            }
            None => ("file".to_string(), text.to_string()),
        };
        let path = Path::new(&path);
        if base == "file" && !path.is_absolute() {
            return None;
        }
        let mut segments: Vec<String> = Vec::new();
        for component in path.components() {
            match component {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    segments.pop()?;
                }
                Component::Normal(part) => segments.push(part.to_str()?.to_string()),
            }
        }
        Some(Self { base, segments })
    }

    /// True when `self` is `other` or lies inside it.
    pub fn within(&self, other: &Location) -> bool {
        self.base == other.base && self.segments.starts_with(&other.segments)
    }

    /// True when one of the two lies inside the other.
    pub fn overlaps(&self, other: &Location) -> bool {
        self.within(other) || other.within(self)
    }

    fn child(&self, segment: &str) -> Location {
        let mut child = self.clone();
        child.segments.push(segment.to_string());
        child
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = format!("/{}", self.segments.join("/"));
        if self.base == "file" {
            f.write_str(&path)
        } else {
            write!(f, "{}{path}", self.base)
        }
    }
}

/// The roots Delta tables may live under: the lake root (by space), every
/// Delta connection's root and `[lake] allowed-roots`.
struct DeltaRoots {
    lake: Location,
    others: Vec<Location>,
    state: Option<Location>,
}

impl DeltaRoots {
    fn of(project: &Project) -> Result<Self> {
        let parse = |text: String, what: &str| {
            Location::parse(&text).ok_or_else(|| CatalogError::Config {
                path: project.dir.join(crate::config::CONFIG_FILE),
                message: format!("{what} {text:?} is not a path or URL"),
                hint: Some(
                    "write an absolute path, a path relative to the project, or a URL".to_string(),
                ),
            })
        };
        let lake = parse(project.lake_root(), "the lake root")?;
        let mut others = Vec::new();
        for root in &project.config.lake.allowed_roots {
            others.push(parse(resolve_location(&project.dir, root), "allowed root")?);
        }
        for connection in project.config.connections.values() {
            if let Connection::Delta { root } = connection {
                others.push(parse(resolve_location(&project.dir, root), "Delta root")?);
            }
        }
        let state = Location::parse(&project.state_dir().display().to_string());
        Ok(Self {
            lake,
            others,
            state,
        })
    }
}

/// Checks that a Delta table's location (already resolved) is its space's to
/// use, and returns it normalised.
pub fn delta_location(project: &Project, name: &TableName, location: &str) -> Result<String> {
    let hint = "leave 'table-path' out (the table then lives at <lake root>/<space>/<name>), give a path inside <lake root>/<space>/, or list the folder or bucket under [lake] allowed-roots in strata.toml";
    let Some(parsed) = Location::parse(location) else {
        return Err(confined(
            name,
            format!("Delta location {location:?} climbs out of its root"),
            hint,
        ));
    };
    let roots = DeltaRoots::of(project)?;
    if roots
        .state
        .as_ref()
        .is_some_and(|state| parsed.overlaps(state))
    {
        return Err(confined(
            name,
            format!("Delta location {parsed} overlaps Strata's own state folder"),
            hint,
        ));
    }
    let in_other_root = roots.others.iter().any(|root| parsed.within(root));
    let own_space = roots.lake.child(&name.space);
    let allowed = if parsed.overlaps(&roots.lake) && !in_other_root {
        parsed.within(&own_space) && parsed != own_space
    } else {
        in_other_root
    };
    if allowed {
        return Ok(
            if location.contains("://") && !location.starts_with("file://") {
                parsed.to_string()
            } else {
                parsed.to_string().trim_start_matches("file://").to_string()
            },
        );
    }
    Err(confined(
        name,
        format!(
            "Delta location {parsed} is outside the space's folder {own_space} and every allowed root"
        ),
        hint,
    ))
}

/// Checks that a MySQL table reached with a connection's stored credentials
/// stays in the connection's database, or one the connection lists.
pub fn mysql_table(
    project: &Project,
    name: &TableName,
    connection: Option<&str>,
    url: Option<&str>,
    database: Option<&str>,
) -> Result<()> {
    let Some(connection) = connection else {
        return Ok(());
    };
    if url.is_some() {
        return Err(confined(
            name,
            "a mysql table with 'connection' cannot also give 'url': the connection's credentials would go to that server".to_string(),
            "keep 'connection' and drop 'url', or give 'url' with the table's own 'username' and 'password'",
        ));
    }
    let Connection::Mysql { url, databases, .. } = project.connection(connection)? else {
        return Ok(());
    };
    let own = crate::ddl::database_of(url.expose());
    let allowed: Vec<String> = own.into_iter().chain(databases.iter().cloned()).collect();
    match database {
        Some(database) if allowed.iter().any(|d| d == database) => Ok(()),
        other => Err(confined(
            name,
            format!(
                "database {:?} is not one connection {connection:?} may reach (it may reach {})",
                other.unwrap_or_default(),
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            ),
            &format!(
                "write 'table-name' = 'TABLE' for the connection's own database, or let the operator add it to databases = [...] under [connections.{connection}] in strata.toml"
            ),
        )),
    }
}

/// Where a table's data is, as far as two spaces could collide on it.
fn place(project: &Project, def: &TableDef) -> Option<Place> {
    match &def.kind {
        TableKind::Delta { .. } => crate::connectors::delta_location(project, def)
            .ok()
            .and_then(|location| Location::parse(&location))
            .map(Place::Folder),
        TableKind::Mysql { .. } => {
            crate::connectors::mysql_target(project, def)
                .ok()
                .map(|target| {
                    Place::Named(format!(
                        "MySQL table {}.{} at {}",
                        target.database,
                        target.table,
                        target.address()
                    ))
                })
        }
        TableKind::Embedded { table } => Some(Place::Named(format!(
            "store table {}",
            table.to_ascii_lowercase()
        ))),
        TableKind::Kafka { topic, .. } => crate::connectors::kafka_target(project, def)
            .ok()
            .map(|target| Place::Named(format!("topic {topic} at {}", target.bootstrap_servers))),
        TableKind::Nexmark { .. } | TableKind::Blackhole => None,
        TableKind::Declared { name, options } => crate::ddl::declared::declared(name)
            .and_then(|declared| (declared.place)(options))
            .map(Place::Named),
    }
}

#[derive(Debug)]
enum Place {
    Folder(Location),
    Named(String),
}

impl Place {
    fn collides(&self, other: &Place) -> bool {
        match (self, other) {
            (Place::Folder(a), Place::Folder(b)) => a.overlaps(b),
            (Place::Named(a), Place::Named(b)) => a == b,
            _ => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Place::Folder(location) => format!("Delta folder {location}"),
            Place::Named(name) => name.clone(),
        }
    }
}

/// Refuses a registration that would give two spaces one location, among the
/// new definitions and against every table already registered.
pub fn one_space_per_location(
    project: &Project,
    new: &[&TableDef],
    registered: &[TableDef],
) -> Result<()> {
    match location_conflicts(project, new, registered)
        .into_iter()
        .next()
    {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

/// For each new definition whose location a table of another space has (new
/// or registered), the refusal naming that table. Each location is worked
/// out once.
pub fn location_conflicts(
    project: &Project,
    new: &[&TableDef],
    registered: &[TableDef],
) -> Vec<CatalogError> {
    let known: Vec<(&TableDef, Option<Place>)> = new
        .iter()
        .copied()
        .chain(
            registered
                .iter()
                .filter(|r| !new.iter().any(|n| n.name == r.name)),
        )
        .map(|def| (def, place(project, def)))
        .collect();
    known[..new.len()]
        .iter()
        .filter_map(|(def, mine)| {
            let mine = mine.as_ref()?;
            let (other, _) = known.iter().find(|(other, theirs)| {
                other.name.space != def.name.space
                    && theirs.as_ref().is_some_and(|theirs| mine.collides(theirs))
            })?;
            Some(confined(
                &def.name,
                format!(
                    "its {} is also where {} (space {}) keeps its data",
                    mine.describe(),
                    other.name,
                    other.name.space
                ),
                "a location belongs to one space: choose another location, or register the table in that space",
            ))
        })
        .collect()
}

fn confined(name: &TableName, message: String, hint: &str) -> CatalogError {
    CatalogError::Confined {
        table: name.to_string(),
        message,
        hint: hint.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_normalise_and_never_climb_out() {
        let parsed = Location::parse("/lake/a/../b/./t").unwrap();
        assert_eq!(parsed.to_string(), "/lake/b/t");
        assert_eq!(Location::parse("/lake/../../etc"), None);
        assert_eq!(
            Location::parse("file:///lake/a/../b").unwrap(),
            Location::parse("/lake/b").unwrap()
        );
        let bucket = Location::parse("s3://Bucket/warehouse/%2E%2E/x").unwrap();
        assert_eq!(bucket.to_string(), "s3://Bucket/x");
        assert!(!Location::parse("s3://other/x").unwrap().within(&bucket));
        assert!(Location::parse("/lake/b/t/part").unwrap().within(&parsed));
        assert!(!Location::parse("/lake/b/tt").unwrap().within(&parsed));
    }

    #[test]
    fn kafka_properties_that_load_code_or_files_are_refused() {
        for key in [
            "plugin.library.paths",
            "ssl.engine.location",
            "ssl.ca.location",
            "sasl.kerberos.kinit.cmd",
            "sasl.oauthbearer.token.endpoint.url",
            "debug",
            "log_level",
            "isolation.level",
            "auto.offset.reset",
            "made.up",
        ] {
            assert!(kafka_property_refusal(key).is_some(), "{key}");
        }
        assert!(kafka_property_refusal("fetch.min.bytes").is_none());
        assert!(kafka_property_refusal("sasl.password").is_none());
    }

    #[test]
    fn embedded_tables_stay_in_their_space() {
        let name = TableName::new("alpha", "dim_x");
        assert!(embedded_table(&name, "alpha__dim_x").is_ok());
        assert!(embedded_table(&name, "ALPHA__other").is_ok());
        for table in [
            "strata_tokens",
            "STRATA_TABLES",
            "beta__x",
            "alpha__",
            "alpha__x;--",
            "main.strata_tokens",
        ] {
            assert!(embedded_table(&name, table).is_err(), "{table}");
        }
    }
}
