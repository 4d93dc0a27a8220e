//! The Strata catalog: one registry for Kafka topics, TiDB/MySQL tables and
//! Delta Lake tables, organised by space (namespace) and warehouse layer.
//!
//! ```text
//!   DDL files ─┐                     ┌─▶ CatalogStore (SQLite | MySQL/TiDB | PostgreSQL)
//!   discovery ─┼─▶ Catalog (checks) ─┤
//!   HTTP / CLI ┘                     └─▶ DataFusion CatalogProvider ─▶ Kafka | MySQL | Delta scans
//! ```
//!
//! Every other crate compiles against this one: tables are [`TableDef`]s and
//! data moves as Arrow `RecordBatch`es.

pub mod catalog;
pub mod config;
pub mod confine;
pub mod connectors;
pub mod ddl;
pub mod error;
pub mod functions;
pub mod model;
pub mod provider;
pub mod store;
pub mod tokens;

pub use catalog::{
    Catalog, DiscoverOptions, Discovery, QueryResult, RegisterAction, RegisterMode, Registered,
};
pub use config::{Connection, Project, ProjectConfig};
pub use error::{CatalogError, Result, SourceLocation};
pub use model::{
    KafkaFormat, Layer, LookupOptions, NexmarkStream, SchemaVersion, StartupMode, TableDef,
    TableEntry, TableKind, TableName, Watermark,
};
pub use store::{CatalogStore, LineageVersion, UpdateOutcome};
pub use tokens::{Access, Grant, NewToken, Principal, TokenInfo};
