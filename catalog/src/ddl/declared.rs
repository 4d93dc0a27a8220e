//! Connectors that declare themselves to the DDL. A connector that lives
//! outside the catalog (in the engine's connector folders) tells the DDL the
//! `'connector'` values that name it, the options it takes and how to check
//! them against a table's columns; its tables are [`TableKind::Declared`],
//! holding their options as the DDL gave them, for the connector to read.
//!
//! ```text
//!   engine start ──declare(&[&DATAGEN, …])──▶ the declared connectors
//!   CREATE TABLE … WITH ('connector' = 'datagen', …)
//!       ──resolve──▶ DATAGEN.check(options, columns) ──▶ TableKind::Declared { name: "datagen", options }
//! ```
//!
//! The connectors the catalog itself reads (Kafka, MySQL/TiDB, Delta,
//! embedded, Nexmark, blackhole) are declared in `resolve.rs`, with the
//! typed kinds the catalog's queries and discovery use.
//!
//! [`TableKind::Declared`]: crate::model::TableKind::Declared

use std::collections::BTreeMap;
use std::sync::RwLock;

use arrow::datatypes::Schema;

/// What a connector outside the catalog tells the DDL.
#[derive(Debug)]
pub struct ConnectorDeclaration {
    /// The `'connector'` values that name it; the first is its name.
    pub names: &'static [&'static str],
    /// How the list of connectors in messages describes it.
    pub described: &'static str,
    /// Its own options, besides the ones every table takes.
    pub options: &'static [&'static str],
    /// Options taken by a prefix (Flink's `'fields.#.kind'`: `"fields."`).
    pub prefix: Option<&'static str>,
    /// Checks the options a table gives against its columns.
    pub check: fn(&BTreeMap<String, String>, &Schema) -> Result<(), OptionProblem>,
    /// What its tables read from or write to outside the process, when
    /// anything: two spaces' tables may not share it.
    pub place: fn(&BTreeMap<String, String>) -> Option<String>,
}

/// What is wrong with a table's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionProblem {
    /// The option at fault, when one is: the error points at it.
    pub option: Option<String>,
    pub message: String,
    pub hint: String,
}

impl OptionProblem {
    /// A problem with the option `option`.
    pub fn with(option: &str, message: String, hint: &str) -> Self {
        Self {
            option: Some(option.to_string()),
            message,
            hint: hint.to_string(),
        }
    }

    /// A problem with the table as a whole.
    pub fn table(message: String, hint: &str) -> Self {
        Self {
            option: None,
            message,
            hint: hint.to_string(),
        }
    }
}

static DECLARED: RwLock<Vec<&'static ConnectorDeclaration>> = RwLock::new(Vec::new());

/// Declares connectors to the DDL of every catalog in the process; a
/// connector declared again is declared once.
pub fn declare(connectors: &[&'static ConnectorDeclaration]) {
    let mut declared = DECLARED
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for &connector in connectors {
        if !declared.iter().any(|d| d.names[0] == connector.names[0]) {
            declared.push(connector);
        }
    }
}

/// The declared connector `name` names, if any.
pub fn declared(name: &str) -> Option<&'static ConnectorDeclaration> {
    let declared = DECLARED
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    declared.iter().copied().find(|d| d.names.contains(&name))
}

/// How messages describe the declared connectors.
pub(crate) fn described() -> Vec<&'static str> {
    let declared = DECLARED
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    declared.iter().map(|d| d.described).collect()
}
