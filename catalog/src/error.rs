//! The catalog's errors. Each says what was wrong, where, and how to fix it.

use std::fmt;
use std::path::PathBuf;

/// A place in a DDL file: `file:line:column`, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    pub file: String,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Renders an optional hint as a trailing line.
fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref()
        .map(|hint| format!("\n  hint: {hint}"))
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A DDL statement is malformed or asks for something the catalog cannot do.
    #[error("{location}: {message}{}", hint_suffix(hint))]
    Ddl {
        location: SourceLocation,
        message: String,
        hint: Option<String>,
    },

    /// A table name is not of the form `space.name`.
    #[error("{given:?} is not a table name: {reason}\n  hint: {hint}")]
    InvalidTableName {
        given: String,
        reason: String,
        hint: String,
    },

    /// Neither the name's prefix nor a `'layer'` option says which layer the table is in.
    #[error(
        "table {table} has no layer\n  hint: prefix its name with ods_, dwd_, dws_, app_ or dim_, or add 'layer' = 'ods|dwd|dws|app|dim' to its WITH options"
    )]
    NoLayer { table: String },

    /// A `'layer'` option names no layer.
    #[error("unknown layer {given:?}\n  hint: the layers are ods, dwd, dws, app and dim")]
    UnknownLayer { given: String },

    /// Registering a table whose name is taken.
    #[error(
        "{}table {table} is already registered; it was left as it is\n  hint: use `strata catalog register --update` to record a new schema version, CREATE TABLE IF NOT EXISTS to skip it, or drop it first",
        location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default()
    )]
    AlreadyExists {
        table: String,
        /// The statement that tried, when it came from DDL.
        location: Option<SourceLocation>,
    },

    /// The table is not in the catalog.
    #[error(
        "table {table} is not in the catalog\n  hint: `strata catalog list` shows the registered tables"
    )]
    NotFound { table: String },

    /// A name that matches a registered table only in another case.
    #[error(
        "table {written} is not in the catalog, but {registered} is\n  hint: names keep their case, as in Flink SQL: write {registered}"
    )]
    CaseMismatch { written: String, registered: String },

    /// A new table whose name differs from a registered one only in case.
    #[error(
        "{}table {written} differs from the registered {registered} only in case\n  hint: names keep their case, as in Flink SQL, but two tables may not differ only by it (MySQL stores and some file systems would take them for one): name it {registered} or choose another name",
        location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default()
    )]
    CaseClash {
        written: String,
        registered: String,
        location: Option<SourceLocation>,
    },

    /// A schema version that was never recorded.
    #[error("table {table} has no schema version {version}; its versions are 1 to {latest}")]
    NoSuchVersion {
        table: String,
        version: i64,
        latest: i64,
    },

    /// `strata.toml` could not be read or is invalid.
    #[error("{}: {message}{}", path.display(), hint_suffix(hint))]
    Config {
        path: PathBuf,
        message: String,
        hint: Option<String>,
    },

    /// A `'connection'` option or command names a connection `strata.toml` does not define.
    #[error("no connection named {name:?} in strata.toml{}", known_list(known))]
    UnknownConnection { name: String, known: Vec<String> },

    /// A named connection of the wrong kind for the table or command.
    #[error("connection {name:?} is a {actual} connection, but a {expected} one is needed here")]
    ConnectionKind {
        name: String,
        expected: &'static str,
        actual: &'static str,
    },

    /// A request without a valid token.
    #[error(
        "{message}\n  hint: send a token: HTTP 'Authorization: Bearer <token>', or the PostgreSQL password; strata demo writes one to DIR/.strata/admin-token, and strata token create makes more"
    )]
    Unauthorized { message: String },

    /// A table whose options reach data outside its space (another space's
    /// location, the catalog store's own tables, code or files on the server).
    #[error("table {table}: {message}\n  hint: {hint}")]
    Confined {
        table: String,
        message: String,
        hint: String,
    },

    /// A valid token asked for something outside its grants.
    #[error("{message}\n  hint: {hint}")]
    Forbidden { message: String, hint: String },

    /// A server that could not be reached.
    #[error("cannot reach {service} at {address}: {cause}\n  hint: {hint}")]
    Unreachable {
        service: &'static str,
        address: String,
        cause: String,
        hint: String,
    },

    /// A MySQL/TiDB request that failed once connected.
    #[error("MySQL/TiDB {context}: {source}")]
    Mysql {
        context: String,
        #[source]
        source: sqlx::Error,
    },

    /// A Delta Lake operation failed.
    #[error("Delta table at {location}: {source}")]
    Delta {
        location: String,
        #[source]
        source: deltalake::DeltaTableError,
    },

    /// A Kafka request failed.
    #[error("Kafka {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// A Kafka record that does not decode into the table's schema.
    #[error(
        "record at topic {topic}, partition {partition}, offset {offset} does not fit table {table}: {message}\n  hint: fix the producer or the table's schema; a pipeline reading the topic sets such records aside in its own target's quarantine (TARGET__quarantine) and goes on"
    )]
    Decode {
        table: String,
        topic: String,
        partition: i32,
        offset: i64,
        message: String,
    },

    /// Discovery found nothing it could register, or was asked something it cannot do.
    #[error("{message}{}", hint_suffix(hint))]
    Discovery {
        message: String,
        hint: Option<String>,
    },

    /// The catalog store could not be read or written.
    #[error("catalog store: {context}: {source}")]
    Store {
        context: String,
        #[source]
        source: sqlx::Error,
    },

    /// The catalog store holds something this version cannot read.
    #[error("catalog store holds unreadable data: {detail}")]
    CorruptStore { detail: String },

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A Nexmark table asks for something its generator does not make.
    #[error("{message}\n  hint: {hint}")]
    Nexmark { message: String, hint: String },

    /// A query failed in planning or execution.
    #[error(transparent)]
    Query(#[from] datafusion::error::DataFusionError),

    /// An Arrow conversion failed.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "\n  hint: add a [connections.NAME] section to strata.toml".to_string()
    } else {
        format!("\n  hint: the defined connections are {}", known.join(", "))
    }
}

impl CatalogError {
    /// True when the error is the user's to fix (bad input), not the system's.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            CatalogError::Ddl { .. }
                | CatalogError::InvalidTableName { .. }
                | CatalogError::NoLayer { .. }
                | CatalogError::UnknownLayer { .. }
                | CatalogError::AlreadyExists { .. }
                | CatalogError::NotFound { .. }
                | CatalogError::CaseMismatch { .. }
                | CatalogError::CaseClash { .. }
                | CatalogError::NoSuchVersion { .. }
                | CatalogError::Config { .. }
                | CatalogError::UnknownConnection { .. }
                | CatalogError::ConnectionKind { .. }
                | CatalogError::Discovery { .. }
                | CatalogError::Decode { .. }
                | CatalogError::Unauthorized { .. }
                | CatalogError::Forbidden { .. }
                | CatalogError::Confined { .. }
        )
    }
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
