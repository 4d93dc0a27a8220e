//! The storage behind tables: Kafka, TiDB/MySQL, Delta Lake, tables embedded in the catalog store,
//! and Nexmark's event generator.
//!
//! A [`TableKind`] holds what the DDL said; the functions here combine it with
//! the project's named connections into a target a client can open.

pub mod delta;
pub mod delta_partitions;
pub mod embedded;
pub mod json_check;
pub mod kafka;
pub mod kafka_sink;
pub mod mysql;
pub mod mysql_sink;
pub mod nexmark;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::Field;

use crate::config::{Connection, Project, resolve_location};
use crate::error::{CatalogError, Result};
use crate::model::{TableDef, TableKind, TableName};

/// The plan of an `INSERT INTO` a table that rows are appended to: `input`
/// through the sink `open` makes. Other insert operations (`INSERT OVERWRITE`,
/// `REPLACE INTO`) are refused as `"{op} into {refusal}"`.
pub(crate) fn append_through(
    input: std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    insert_op: datafusion::logical_expr::dml::InsertOp,
    refusal: &str,
    open: impl FnOnce() -> datafusion::error::Result<
        std::sync::Arc<dyn datafusion::datasource::sink::DataSink>,
    >,
) -> datafusion::error::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
    if insert_op != datafusion::logical_expr::dml::InsertOp::Append {
        return Err(datafusion::error::DataFusionError::NotImplemented(format!(
            "{insert_op} into {refusal}"
        )));
    }
    Ok(std::sync::Arc::new(
        datafusion::datasource::sink::DataSinkExec::new(input, open()?, None),
    ))
}

/// One value of a lookup key, as it is bound into a `WHERE key IN (…)` query:
/// integers and booleans as such, everything else as its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyValue {
    Int(i64),
    Bool(bool),
    Text(String),
}

/// `(k1, k2) IN ((?, ?), …)`, or `k IN (?, …)` for one column: the condition a
/// lookup sends for `keys` keys, each column written by `column`.
fn key_condition(columns: &[String], keys: usize, column: impl Fn(&str) -> String) -> String {
    let tuple = |text: String| {
        if columns.len() == 1 {
            text
        } else {
            format!("({text})")
        }
    };
    let left = tuple(
        columns
            .iter()
            .map(|c| column(c))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let placeholder = tuple(vec!["?"; columns.len()].join(", "));
    format!("{left} IN ({})", vec![placeholder; keys].join(", "))
}

/// The MySQL/TiDB server, database and table behind a `mysql` table.
pub fn mysql_target(project: &Project, def: &TableDef) -> Result<mysql::MysqlTarget> {
    let TableKind::Mysql {
        url,
        connection,
        database,
        table,
        username,
        password,
    } = &def.kind
    else {
        return Err(wrong_kind(&def.name, "mysql", &def.kind));
    };
    let (mut server_url, mut user, mut secret) = (url.clone(), None, None);
    if let Some(name) = connection {
        let (connection_url, connection_user, connection_password) =
            mysql_connection(project, name)?;
        server_url = server_url.or(Some(connection_url));
        user = connection_user;
        secret = connection_password;
    }
    let server_url = server_url.ok_or_else(|| CatalogError::Discovery {
        message: format!("table {} has no MySQL URL", def.name),
        hint: Some("give it 'url' or 'connection'".to_string()),
    })?;
    crate::confine::mysql_table(
        project,
        &def.name,
        connection.as_deref(),
        url.as_deref(),
        database.as_deref(),
    )?;
    let url = with_credentials(
        &server_url,
        username.as_deref().or(user.as_deref()),
        password.as_deref().or(secret.as_deref()),
    )?;
    Ok(mysql::MysqlTarget {
        url,
        database: database.clone().unwrap_or_default(),
        table: table.clone(),
    })
}

/// The URL, user and password of a named MySQL/TiDB connection.
fn mysql_connection(
    project: &Project,
    name: &str,
) -> Result<(String, Option<String>, Option<String>)> {
    match project.connection(name)? {
        Connection::Mysql {
            url,
            username,
            password,
            ..
        } => Ok((
            url.expose().to_string(),
            username.clone(),
            password.as_ref().map(|p| p.expose().to_string()),
        )),
        other => Err(CatalogError::ConnectionKind {
            name: name.to_string(),
            expected: "mysql",
            actual: other.kind(),
        }),
    }
}

/// A named MySQL/TiDB connection's URL with its credentials in it.
pub fn mysql_connection_url(project: &Project, name: &str) -> Result<String> {
    let (url, username, password) = mysql_connection(project, name)?;
    with_credentials(&url, username.as_deref(), password.as_deref())
}

/// Puts a user and password into a MySQL URL, replacing any it had.
pub fn with_credentials(
    url: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<String> {
    let mut parsed = url::Url::parse(url).map_err(|err| CatalogError::Discovery {
        message: format!(
            "{:?} is not a valid MySQL URL: {err}",
            crate::config::redact_url(url)
        ),
        hint: Some("write mysql://USER@HOST:PORT/DATABASE".to_string()),
    })?;
    if let Some(username) = username {
        let _ = parsed.set_username(username);
    }
    if let Some(password) = password {
        let _ = parsed.set_password(Some(password));
    }
    Ok(parsed.to_string())
}

/// The brokers, client properties and topic behind a `kafka` table.
pub fn kafka_target(project: &Project, def: &TableDef) -> Result<kafka::KafkaTarget> {
    let TableKind::Kafka {
        topic,
        bootstrap_servers,
        connection,
        properties,
        ..
    } = &def.kind
    else {
        return Err(wrong_kind(&def.name, "kafka", &def.kind));
    };
    crate::confine::kafka_properties(&def.name, properties)?;
    let mut merged = std::collections::BTreeMap::new();
    let mut servers = bootstrap_servers.clone();
    if let Some(name) = connection {
        let (connection_servers, connection_properties) = kafka_connection(project, name)?;
        servers = servers.or(Some(connection_servers));
        merged.extend(connection_properties);
    }
    merged.extend(properties.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged.remove("group.id");
    Ok(kafka::KafkaTarget {
        bootstrap_servers: servers.unwrap_or_default(),
        properties: merged,
        topic: topic.clone(),
    })
}

/// The brokers and client properties of a named Kafka connection.
pub fn kafka_connection(
    project: &Project,
    name: &str,
) -> Result<(String, std::collections::BTreeMap<String, String>)> {
    match project.connection(name)? {
        Connection::Kafka {
            bootstrap_servers,
            properties,
        } => Ok((
            bootstrap_servers.clone(),
            properties
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_string()))
                .collect(),
        )),
        other => Err(CatalogError::ConnectionKind {
            name: name.to_string(),
            expected: "kafka",
            actual: other.kind(),
        }),
    }
}

/// The root directory or URL of a named Delta connection.
pub fn delta_root(project: &Project, name: &str) -> Result<String> {
    match project.connection(name)? {
        Connection::Delta { root } => Ok(resolve_location(&project.dir, root)),
        other => Err(CatalogError::ConnectionKind {
            name: name.to_string(),
            expected: "delta",
            actual: other.kind(),
        }),
    }
}

/// Where a `delta` table lives: its `'table-path'` (relative paths are taken
/// from the connection's root, else the project directory), or
/// `<root>/<space>/<name>` under the connection's root or the lake root.
pub fn delta_location(project: &Project, def: &TableDef) -> Result<String> {
    let TableKind::Delta {
        table_path,
        connection,
        ..
    } = &def.kind
    else {
        return Err(wrong_kind(&def.name, "delta", &def.kind));
    };
    let root = match connection {
        Some(name) => delta_root(project, name)?,
        None => project.lake_root(),
    };
    let location = match table_path {
        Some(path) if connection.is_some() => resolve_location(std::path::Path::new(&root), path),
        Some(path) => resolve_location(&project.dir, path),
        None => format!(
            "{}/{}/{}",
            root.trim_end_matches('/'),
            def.name.space,
            def.name.name
        ),
    };
    crate::confine::delta_location(project, &def.name, &location)
}

fn wrong_kind(name: &TableName, expected: &str, kind: &TableKind) -> CatalogError {
    CatalogError::CorruptStore {
        detail: format!(
            "{name} was used as a {expected} table but is a {} table",
            kind.connector()
        ),
    }
}

/// A column of text read from a SQL server, as `field`'s type. Values travel as
/// text and Arrow casts them strictly, so a value that does not fit is an error
/// naming the column and `table`, with `hint`.
pub(crate) fn text_column(
    text: &StringArray,
    field: &Field,
    table: &str,
    hint: &str,
) -> Result<ArrayRef> {
    let options = arrow::compute::CastOptions {
        safe: false,
        format_options: arrow::util::display::FormatOptions::default(),
    };
    arrow::compute::cast_with_options(text, field.data_type(), &options).map_err(|err| {
        CatalogError::Discovery {
            message: format!(
                "column {} of {table} does not read as {}: {err}",
                field.name(),
                crate::ddl::types::flink_type_name(field.data_type())
            ),
            hint: Some(hint.to_string()),
        }
    })
}
