//! Pipeline files: `pipelines/<layer>/<name>.sql`, each one
//! `INSERT INTO <target> SELECT …` over catalog tables, optionally after
//! Flink-style `SET 'key' = 'value';` lines that tune it and views that name
//! its steps; or several INSERTs, Flink's statement set, each a pipeline of
//! its own named `<name>.<target table>` ([`crate::statement_set`]).
//!
//! ```text
//!   pipelines/dwd/dwd_orders.sql ──parse──▶ Pipeline { target, query, sources (with file:line:col) }
//! ```
//!
//! The folder names only organise the files; the order pipelines run in comes
//! from the tables they read and write.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use sqlparser::ast::{Query, Spanned, Statement, TableObject, visit_relations};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;
use strata_catalog::SourceLocation;
use strata_catalog::ddl::{FlinkDialect, split_parser_message};

use crate::error::{PipelineError, Result};
use crate::lookup::spec::LookupSpec;
pub use crate::mention::TableMention;
use crate::mention::mention;
use crate::window::{self, WindowTvf};

/// One parsed pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file's stem, e.g. `dwd_orders`; in a statement set, the stem and
    /// the target table (`orders.dws_user_spend`), but for the target the file
    /// is named after.
    pub name: String,
    pub file: PathBuf,
    /// The whole file, for locating names in errors.
    pub text: String,
    pub target: TableMention,
    /// The `SELECT …` that feeds the target.
    pub query: Box<Query>,
    /// The tables the query reads, in order of first mention.
    pub sources: Vec<TableMention>,
    /// The window TVF in its FROM clause; `query` then reads [`WindowTvf::relation`].
    pub window: Option<WindowTvf>,
    /// The same window over a second table, joined with the first's windows
    /// (a window join; then `aligned`).
    pub second_window: Option<WindowTvf>,
    /// The window TVF is joined or in a subquery: the query runs window by
    /// window ([`crate::aligned`]) rather than as one aggregation.
    pub aligned: bool,
    /// Its lookup joins (`FOR SYSTEM_TIME AS OF`), which `query` plans as plain joins.
    pub lookups: Vec<LookupSpec>,
    pub settings: Settings,
}

/// What a pipeline file's `SET` lines choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SET 'table.exec.emit.allow-lateness' = '1 min'`: how long after a
    /// window fired a late row still updates it (re-emitting the row).
    pub allowed_lateness_ms: i64,
    /// `SET 'table.optimizer.distinct-agg.split.enabled' = 'true'` (and
    /// `…split.bucket-num`): COUNT(DISTINCT) sets are split into this many
    /// buckets, merged on every core, for hot keys; 1 when not split.
    pub distinct_buckets: u32,
    /// `SET 'table.exec.state.ttl' = '1 d'`: how long a regular join keeps a
    /// row after it was last written (Flink's idle state retention, by
    /// processing time); `None` (the default, or '0'): for good.
    pub state_ttl_ms: Option<i64>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allowed_lateness_ms: 0,
            distinct_buckets: 1,
            state_ttl_ms: None,
        }
    }
}

/// Flink's default number of split-distinct buckets.
const DEFAULT_DISTINCT_BUCKETS: u32 = 1024;

/// The `SET` keys a pipeline file may use (`table.exec.state.ttl` bounds a
/// regular join's state; other operators keep theirs for good yet).
pub const SETTINGS: [&str; 4] = [
    "table.exec.emit.allow-lateness",
    "table.exec.state.ttl",
    "table.optimizer.distinct-agg.split.enabled",
    "table.optimizer.distinct-agg.split.bucket-num",
];

impl Pipeline {
    /// The location of the start of the statement.
    pub fn location(&self, line: u64, column: u64) -> SourceLocation {
        SourceLocation {
            file: self.file.display().to_string(),
            line: line.max(1),
            column: column.max(1),
        }
    }
}

/// Reads every `pipelines/<layer>/*.sql` of a project, in path order.
pub fn load_pipelines(project_dir: &Path) -> Result<Vec<Pipeline>> {
    let root = project_dir.join("pipelines");
    let mut files = Vec::new();
    let Ok(layers) = std::fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    for layer in layers.flatten().filter(|e| e.path().is_dir()) {
        let entries = std::fs::read_dir(layer.path()).map_err(|source| PipelineError::Io {
            path: layer.path().display().to_string(),
            source,
        })?;
        files.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "sql")),
        );
    }
    files.sort();
    let mut pipelines = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| PipelineError::Io {
            path: file.display().to_string(),
            source,
        })?;
        pipelines.extend(parse_pipelines(&file, &text)?);
    }
    Ok(pipelines)
}

/// Parses a pipeline file: its `SET` lines, its views, and its INSERT, or
/// its INSERTs (a statement set), each a pipeline.
pub fn parse_pipelines(file: &Path, text: &str) -> Result<Vec<Pipeline>> {
    let label = file.display().to_string();
    let invalid = |line: u64, column: u64, message: String, hint: &str| {
        invalid_at(&label, line, column, message, hint)
    };
    let syntax_error = |err: sqlparser::parser::ParserError| {
        let text = err.to_string();
        let (message, line, column) = split_parser_message(&text);
        invalid(
            line,
            column,
            message,
            "a pipeline is one INSERT INTO <table> SELECT … (or a STATEMENT SET of them), after optional SET 'key' = 'value'; lines and CREATE TEMPORARY VIEW v AS SELECT …; views",
        )
    };
    if let Some((line, column)) = table_hint(text) {
        return Err(invalid(
            line,
            column,
            "table hints (/*+ OPTIONS(…) */ after a table) are not supported yet, and are not ignored either".to_string(),
            "set the option in the table's DDL (CREATE TABLE … WITH (…)), or declare a second table over the same topic with the options it needs",
        ));
    }
    if let Some((line, column)) = match_recognize(text) {
        return Err(invalid(
            line,
            column,
            "MATCH_RECOGNIZE (Flink's pattern recognition over a stream) is not supported: Strata does not run it in this release".to_string(),
            "detect the pattern with LAG over the stream (a state and its previous value), or keep this job in Flink",
        ));
    }
    let mut tokens = sqlparser::tokenizer::Tokenizer::new(&FlinkDialect, text)
        .tokenize_with_location()
        .map_err(|err| syntax_error(err.into()))?;
    strata_catalog::functions::quote_time_units(&mut tokens);
    let tokens = crate::statement_set::strip(tokens)
        .map_err(|(line, column, message, hint)| invalid(line, column, message, hint))?;
    let mut parser = Parser::new(&FlinkDialect).with_tokens_with_locations(tokens);
    let mut settings = Settings::default();
    while parser.parse_keyword(sqlparser::keywords::Keyword::SET) {
        let at = parser.peek_token_ref().span.start;
        let key = parser.parse_literal_string().map_err(syntax_error)?;
        parser.expect_token(&Token::Eq).map_err(syntax_error)?;
        let value = parser.parse_literal_string().map_err(syntax_error)?;
        while parser.consume_token(&Token::SemiColon) {}
        apply_setting(&mut settings, &key, &value)
            .map_err(|(message, hint)| invalid(at.line, at.column, message, &hint))?;
    }
    let statements = parser.parse_statements().map_err(syntax_error)?;
    if statements.is_empty() {
        return Err(invalid(
            1,
            1,
            "a pipeline file holds no statement".to_string(),
            "write INSERT INTO space.table SELECT …",
        ));
    }
    let mut views = Vec::new();
    let mut inserts = Vec::new();
    for statement in statements {
        match statement {
            Statement::CreateView(view) if inserts.is_empty() => views.push(view),
            Statement::Insert(insert) => inserts.push(insert),
            other => {
                let start = other.span().start;
                let (message, hint) = match other {
                    Statement::CreateView(_) => (
                        "a view after an INSERT".to_string(),
                        "declare a file's views before its INSERTs",
                    ),
                    other => (
                        format!(
                            "a pipeline must be INSERT INTO <table> SELECT …, not {}",
                            other
                                .to_string()
                                .split_whitespace()
                                .take(2)
                                .collect::<Vec<_>>()
                                .join(" ")
                        ),
                        "tables are declared in catalog/*.sql; pipelines/<layer>/*.sql only fill them",
                    ),
                };
                return Err(invalid(start.line, start.column, message, hint));
            }
        }
    }
    if inserts.is_empty() {
        return Err(invalid(
            1,
            1,
            "a pipeline must be INSERT INTO <table> SELECT …, after its views".to_string(),
            "tables are declared in catalog/*.sql; pipelines/<layer>/*.sql only fill them",
        ));
    }
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let several = inserts.len() > 1;
    let mut pipelines: Vec<Pipeline> = Vec::with_capacity(inserts.len());
    // The INSERT into the table the file is named after keeps the file's
    // name, or else the first.
    let keeps_stem = inserts
        .iter()
        .position(|insert| {
            matches!(&insert.table, TableObject::TableName(name)
                if name.0.last().and_then(|part| part.as_ident()).is_some_and(|ident| ident.value == stem))
        })
        .unwrap_or(0);
    for (at, insert) in inserts.into_iter().enumerate() {
        let read = views_read(&insert, &views);
        let mut pipeline = parse_insert(insert, read, settings.clone(), file, text)?;
        if let Some(earlier) = pipelines
            .iter()
            .find(|p| p.target.table == pipeline.target.table)
        {
            let at = &pipeline.target.location;
            return Err(invalid(
                at.line,
                at.column,
                format!(
                    "a second INSERT INTO {} (the first is at {})",
                    pipeline.target.table, earlier.target.location
                ),
                "write one INSERT per table, and UNION ALL what it takes",
            ));
        }
        // Named after the file and its target, but for the INSERT that keeps
        // the file's name (and its state) when more INSERTs join it.
        if several && at != keeps_stem {
            pipeline.name = format!("{stem}.{}", pipeline.target.table.name);
        }
        pipelines.push(pipeline);
    }
    Ok(pipelines)
}

/// A refusal at `line`:`column` of `file`.
fn invalid_at(file: &str, line: u64, column: u64, message: String, hint: &str) -> PipelineError {
    PipelineError::Invalid {
        location: SourceLocation {
            file: file.to_string(),
            line: line.max(1),
            column: column.max(1),
        },
        message,
        hint: Some(hint.to_string()),
    }
}

/// The views an INSERT reads, directly or through other views, in the order declared.
fn views_read(
    insert: &sqlparser::ast::Insert,
    views: &[sqlparser::ast::CreateView],
) -> Vec<sqlparser::ast::CreateView> {
    // Relations, and the tables of window TVFs (`TABLE(TUMBLE(TABLE v, …))`).
    fn single_names(node: &impl sqlparser::ast::Visit, into: &mut Vec<String>) {
        let _ = visit_relations(node, |name| {
            if let Some(ident) = crate::mention::unqualified(name) {
                into.push(ident.value.clone());
            }
            ControlFlow::<()>::Continue(())
        });
        let _ = sqlparser::ast::visit_expressions(node, |expr| {
            if let sqlparser::ast::Expr::Function(call) = expr
                && call.name.to_string() == strata_catalog::ddl::TABLE_ARGUMENT
                && let sqlparser::ast::FunctionArguments::List(list) = &call.args
                && let Some(sqlparser::ast::FunctionArg::Unnamed(
                    sqlparser::ast::FunctionArgExpr::Expr(
                        sqlparser::ast::Expr::CompoundIdentifier(parts),
                    ),
                )) = list.args.first()
                && let [part] = parts.as_slice()
            {
                into.push(part.value.clone());
            }
            ControlFlow::<()>::Continue(())
        });
    }
    let mut needed = Vec::new();
    if let Some(query) = &insert.source {
        single_names(query.as_ref(), &mut needed);
    }
    // A view reads only views declared before it: from the last one back.
    let mut read = vec![false; views.len()];
    for (at, view) in views.iter().enumerate().rev() {
        // A misnamed view is kept, to be refused at its place.
        if crate::mention::unqualified(&view.name).is_none_or(|name| needed.contains(&name.value)) {
            read[at] = true;
            single_names(view.query.as_ref(), &mut needed);
        }
    }
    views
        .iter()
        .zip(read)
        .filter(|(_, read)| *read)
        .map(|(view, _)| view.clone())
        .collect()
}

/// One INSERT of a pipeline file, with the views it reads and the file's settings.
fn parse_insert(
    insert: sqlparser::ast::Insert,
    views: Vec<sqlparser::ast::CreateView>,
    settings: Settings,
    file: &Path,
    text: &str,
) -> Result<Pipeline> {
    let label = file.display().to_string();
    let invalid = |line: u64, column: u64, message: String, hint: &str| {
        invalid_at(&label, line, column, message, hint)
    };
    let TableObject::TableName(target_name) = &insert.table else {
        let start = insert.table.span().start;
        return Err(invalid(
            start.line,
            start.column,
            "the target of a pipeline must be a catalog table".to_string(),
            "write INSERT INTO space.table SELECT …",
        ));
    };
    let Some(mut query) = insert.source.clone() else {
        let start = insert.table.span().start;
        return Err(invalid(
            start.line,
            start.column,
            "INSERT without a SELECT".to_string(),
            "write INSERT INTO space.table SELECT …",
        ));
    };
    let target = mention(&label, target_name)?;
    crate::views::inline(views, &mut query, &label)?;
    crate::lateral::cross_join_unnest(&mut query, &label)?;
    let extracted = window::extract(&mut query, &label)?;
    let aligned = extracted.as_ref().is_some_and(|e| e.aligned);
    let (window, second_window) = match extracted {
        Some(extracted) => (Some(extracted.tvf), extracted.second),
        None => (None, None),
    };
    let lookups = crate::lookup::spec::extract(&mut query, &label)?;
    let cte_names: Vec<String> = query
        .with
        .as_ref()
        .map(|with| {
            with.cte_tables
                .iter()
                .map(|cte| cte.alias.name.value.clone())
                .collect()
        })
        .unwrap_or_default();
    let windows = || window.iter().chain(&second_window);
    let mut sources: Vec<TableMention> = windows().map(|w| w.source.clone()).collect();
    let mut failure = None;
    let _ = visit_relations(&query, |name| {
        let is_window_relation = windows().any(|w| name.to_string() == w.relation().to_string());
        if is_window_relation || (name.0.len() == 1 && cte_names.contains(&name.to_string())) {
            return ControlFlow::Continue(());
        }
        match mention(&label, name) {
            Ok(found) => {
                if !sources.iter().any(|s| s.table == found.table) {
                    sources.push(found);
                }
                ControlFlow::Continue(())
            }
            Err(err) => {
                failure = Some(err);
                ControlFlow::Break(())
            }
        }
    });
    if let Some(err) = failure {
        return Err(err);
    }
    Ok(Pipeline {
        name: file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        file: file.to_path_buf(),
        text: text.to_string(),
        target,
        query,
        sources,
        window,
        second_window,
        aligned,
        lookups,
        settings,
    })
}

impl Pipeline {
    /// Its window TVFs: the first, and the same window over a second table.
    pub fn windows(&self) -> impl Iterator<Item = &WindowTvf> {
        self.window.iter().chain(&self.second_window)
    }
}

/// Where a `/*+ … */` hint stands anywhere but right after SELECT (where the
/// parser reads LOOKUP hints): Flink's dynamic table options, which would
/// otherwise be read as a comment and ignored.
fn table_hint(text: &str) -> Option<(u64, u64)> {
    use sqlparser::keywords::Keyword;
    use sqlparser::tokenizer::{Tokenizer, Whitespace};
    let tokens = Tokenizer::new(&FlinkDialect, text)
        .tokenize_with_location()
        .ok()?;
    let mut after_select = false;
    for token in tokens {
        match &token.token {
            Token::Whitespace(Whitespace::MultiLineComment(comment))
                if comment.starts_with('+') && !after_select =>
            {
                return Some((token.span.start.line, token.span.start.column));
            }
            Token::Whitespace(_) => {}
            Token::Word(word) => after_select = word.keyword == Keyword::SELECT,
            _ => after_select = false,
        }
    }
    None
}

/// Where the query says `MATCH_RECOGNIZE`, which the parser would otherwise
/// take for a table's alias.
fn match_recognize(text: &str) -> Option<(u64, u64)> {
    use sqlparser::tokenizer::Tokenizer;
    let tokens = Tokenizer::new(&FlinkDialect, text)
        .tokenize_with_location()
        .ok()?;
    tokens.iter().find_map(|token| match &token.token {
        Token::Word(word)
            if word.quote_style.is_none() && word.value.eq_ignore_ascii_case("MATCH_RECOGNIZE") =>
        {
            Some((token.span.start.line, token.span.start.column))
        }
        _ => None,
    })
}

/// A setting's duration (`'1 min'`, `'2h'`) in milliseconds, or what is wrong
/// with it, with `hint`.
fn duration_ms(value: &str, hint: &str) -> std::result::Result<i64, (String, String)> {
    let compact: String = value.split_whitespace().collect();
    let duration = humantime::parse_duration(&compact).map_err(|err| {
        (
            format!("'{value}' is not a duration ({err})"),
            hint.to_string(),
        )
    })?;
    i64::try_from(duration.as_millis()).map_err(|_| {
        (
            format!("'{value}' is longer than a duration in milliseconds can be"),
            hint.to_string(),
        )
    })
}

/// Applies one `SET 'key' = 'value'`, or says what is wrong with it.
fn apply_setting(
    settings: &mut Settings,
    key: &str,
    value: &str,
) -> std::result::Result<(), (String, String)> {
    match key {
        "table.exec.emit.allow-lateness" => {
            settings.allowed_lateness_ms =
                duration_ms(value, "write e.g. '30 s', '1 min' or '2h'")?;
            Ok(())
        }
        "table.exec.state.ttl" => {
            let ttl_ms = match value.trim() {
                "0" => 0,
                _ => duration_ms(
                    value,
                    "write e.g. '1 h' or '1 d', or '0' to keep state for good",
                )?,
            };
            settings.state_ttl_ms = (ttl_ms > 0).then_some(ttl_ms);
            Ok(())
        }
        "table.optimizer.distinct-agg.split.enabled" => match value {
            "true" => {
                if settings.distinct_buckets == 1 {
                    settings.distinct_buckets = DEFAULT_DISTINCT_BUCKETS;
                }
                Ok(())
            }
            "false" => {
                settings.distinct_buckets = 1;
                Ok(())
            }
            _ => Err((
                format!("'{value}' is not true or false"),
                "write 'true' to split COUNT(DISTINCT) sets of hot keys into buckets".to_string(),
            )),
        },
        "table.optimizer.distinct-agg.split.bucket-num" => {
            let buckets: u32 = value
                .parse()
                .ok()
                .filter(|&n| (2..=65_536).contains(&n))
                .ok_or_else(|| {
                    (
                        format!("'{value}' is not a bucket count from 2 to 65536"),
                        "write e.g. '1024'".to_string(),
                    )
                })?;
            settings.distinct_buckets = buckets;
            Ok(())
        }
        other => Err((
            format!("unknown setting '{other}'"),
            format!("pipelines accept: {}", SETTINGS.join(", ")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{Settings, apply_setting};

    #[test]
    fn a_state_ttl_is_a_duration_and_zero_keeps_state_for_good() {
        let mut settings = Settings::default();
        apply_setting(&mut settings, "table.exec.state.ttl", "1 d").unwrap();
        assert_eq!(settings.state_ttl_ms, Some(86_400_000));
        apply_setting(&mut settings, "table.exec.state.ttl", "0").unwrap();
        assert_eq!(settings.state_ttl_ms, None);
        let (problem, hint) =
            apply_setting(&mut settings, "table.exec.state.ttl", "soon").unwrap_err();
        assert!(problem.contains("'soon' is not a duration"), "{problem}");
        assert!(hint.contains("'0'"), "{hint}");
        let (problem, _) =
            apply_setting(&mut settings, "table.exec.state.ttl", "500000000000 years").unwrap_err();
        assert!(problem.contains("longer than"), "{problem}");
    }
}
