//! What a pipeline's SQL says about its lookup joins: each
//! `JOIN dim FOR SYSTEM_TIME AS OF o.proc_time AS d ON …`, and the Flink
//! `LOOKUP` hints that choose what a miss does.
//!
//! ```text
//!   SELECT /*+ LOOKUP('table'='u', 'miss'='retry', 'fixed-delay'='2s', 'max-attempts'='5') */ …
//!   FROM shop.ods_orders AS o
//!   LEFT JOIN shop.dim_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id
//!     ──extract──▶ LookupSpec { table: shop.dim_users, alias: u, time: proc_time, left, Retry(2 s × 5) }
//!                  and the query without `FOR SYSTEM_TIME AS OF`, which DataFusion plans as a join
//! ```

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, JoinOperator, Query, SetExpr, Spanned, TableFactor, TableVersion, Visit, Visitor,
};
use sqlparser::tokenizer::{Token, Tokenizer};
use strata_catalog::SourceLocation;
use strata_catalog::ddl::FlinkDialect;

use crate::error::{PipelineError, Result};
use crate::mention::TableMention;

/// What happens to a probe row whose key has no dimension row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissPolicy {
    /// The dimension's columns are NULL (LEFT JOIN only).
    Null,
    /// The row goes to `<target>__quarantine` with the reason.
    Quarantine,
    /// The row is set aside and looked up again every `delay_ms`, at most
    /// `max_attempts` times in all, while other rows go on; then a LEFT JOIN
    /// fills NULLs and an inner join quarantines it.
    Retry { delay_ms: i64, max_attempts: u32 },
}

/// One `JOIN … FOR SYSTEM_TIME AS OF …` of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupSpec {
    pub table: TableMention,
    /// What the SELECT calls the dimension: its alias, or its table name.
    pub alias: String,
    /// The probe side's time attribute named in `AS OF`.
    pub time_column: String,
    pub time_location: SourceLocation,
    /// LEFT JOIN (else an inner join).
    pub left_join: bool,
    pub miss: MissPolicy,
    /// Each query's time limit; a query that takes longer is retried.
    pub timeout_ms: i64,
}

const DEFAULT_RETRY_DELAY_MS: i64 = 1_000;
const DEFAULT_RETRY_ATTEMPTS: u32 = 3;
const DEFAULT_TIMEOUT_MS: i64 = 10_000;
const HINT_SYNTAX: &str = "write /*+ LOOKUP('table'='<alias>', 'miss'='null|quarantine|retry', 'fixed-delay'='1s', 'max-attempts'='3') */ after SELECT";
const HINT_KEYS: &str = "'table', 'miss' (null, quarantine or retry), 'retry-predicate' ('lookup_miss'), 'retry-strategy' ('fixed_delay'), 'fixed-delay', 'max-attempts', 'timeout', 'async' and 'output-mode' ('allow_unordered')";

/// Takes every `FOR SYSTEM_TIME AS OF` out of the query's FROM clause, and
/// the LOOKUP hints after its SELECT, into specs.
pub fn extract(query: &mut Query, file: &str) -> Result<Vec<LookupSpec>> {
    let at = |span: sqlparser::tokenizer::Span| SourceLocation {
        file: file.to_string(),
        line: span.start.line.max(1),
        column: span.start.column.max(1),
    };
    if !matches!(query.body.as_ref(), SetExpr::Select(_)) {
        return refuse_nested(query, file).map(|()| Vec::new());
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        unreachable!("checked above")
    };
    let hints_at = at(select.select_token.0.span);
    let mut hints = Vec::new();
    for hint in &select.optimizer_hints {
        hints.extend(
            parse_hints(&hint.text).map_err(|message| invalid(&hints_at, message, HINT_SYNTAX))?,
        );
    }
    let mut specs = Vec::new();
    for from in &mut select.from {
        for join in &mut from.joins {
            let TableFactor::Table {
                name,
                alias,
                version,
                ..
            } = &mut join.relation
            else {
                continue;
            };
            let Some(TableVersion::ForSystemTimeAsOf(time)) = version.take() else {
                continue;
            };
            let left_join = match &join.join_operator {
                JoinOperator::Join(_) | JoinOperator::Inner(_) => false,
                JoinOperator::Left(_) | JoinOperator::LeftOuter(_) => true,
                other => {
                    return Err(invalid(
                        &at(name.span()),
                        format!(
                            "a lookup join is an inner or a LEFT join, not {}",
                            join_kind(other)
                        ),
                        "write JOIN or LEFT JOIN … FOR SYSTEM_TIME AS OF …",
                    ));
                }
            };
            let time_location = at(time.span());
            let time_column = match &time {
                Expr::Identifier(ident) => ident.value.clone(),
                Expr::CompoundIdentifier(parts) => {
                    parts.last().map(|p| p.value.clone()).unwrap_or_default()
                }
                other => {
                    return Err(invalid(
                        &time_location,
                        format!("FOR SYSTEM_TIME AS OF {other} is not a column"),
                        "name the probe table's time attribute, e.g. FOR SYSTEM_TIME AS OF o.proc_time",
                    ));
                }
            };
            let table = crate::mention::mention(file, name)?;
            let alias = alias
                .as_ref()
                .map(|a| a.name.value.clone())
                .unwrap_or_else(|| table.table.name.clone());
            let hint = take_hint(&mut hints, &alias, &table.table.to_string());
            let (miss, timeout_ms) = policy(hint, left_join).map_err(|message| {
                invalid(
                    &hints_at,
                    format!("the LOOKUP hint for {alias}: {message}"),
                    HINT_SYNTAX,
                )
            })?;
            specs.push(LookupSpec {
                table,
                alias,
                time_column,
                time_location,
                left_join,
                miss,
                timeout_ms,
            });
        }
    }
    if let Some(unused) = hints.first() {
        let table = unused
            .iter()
            .find(|(k, _)| k == "table")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        return Err(invalid(
            &hints_at,
            format!("the LOOKUP hint names '{table}', which is not a lookup join of this query"),
            "name the dimension's alias (or table) as in JOIN dim FOR SYSTEM_TIME AS OF … AS d",
        ));
    }
    refuse_nested(query, file)?;
    Ok(specs)
}

type Hint = Vec<(String, String)>;

fn invalid(location: &SourceLocation, message: impl Into<String>, hint: &str) -> PipelineError {
    PipelineError::Invalid {
        location: location.clone(),
        message: message.into(),
        hint: Some(hint.to_string()),
    }
}

fn join_kind(operator: &JoinOperator) -> &'static str {
    match operator {
        JoinOperator::Right(_) | JoinOperator::RightOuter(_) => "a RIGHT join",
        JoinOperator::FullOuter(_) => "a FULL join",
        JoinOperator::CrossJoin(_) => "a CROSS join",
        _ => "this kind of join",
    }
}

/// `FOR SYSTEM_TIME AS OF` anywhere but the top SELECT's joins (a subquery, a
/// CTE) would be planned as an ordinary join: refuse it.
fn refuse_nested(query: &Query, file: &str) -> Result<()> {
    struct Finder(Option<sqlparser::tokenizer::Span>);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                version: Some(_),
                name,
                ..
            } = factor
            {
                self.0 = Some(name.span());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder(None);
    let _ = query.visit(&mut finder);
    match finder.0 {
        None => Ok(()),
        Some(span) => Err(invalid(
            &SourceLocation {
                file: file.to_string(),
                line: span.start.line.max(1),
                column: span.start.column.max(1),
            },
            "FOR SYSTEM_TIME AS OF is supported in the joins of the pipeline's own SELECT",
            "move the lookup join out of the subquery or CTE into the pipeline's SELECT",
        )),
    }
}

/// `LOOKUP('k'='v', …), LOOKUP(…)` → one list of pairs per LOOKUP.
fn parse_hints(text: &str) -> std::result::Result<Vec<Hint>, String> {
    let tokens: Vec<Token> = Tokenizer::new(&FlinkDialect, text)
        .tokenize()
        .map_err(|err| format!("the hint /*+{text}*/ does not parse ({err})"))?
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut hints = Vec::new();
    let mut rest = tokens.as_slice();
    while let Some((first, after)) = rest.split_first() {
        let name = match first {
            Token::Word(word) => word.value.to_ascii_uppercase(),
            Token::Comma => {
                rest = after;
                continue;
            }
            other => return Err(format!("unexpected {other} in the hint /*+{text}*/")),
        };
        if name != "LOOKUP" {
            return Err(format!(
                "unknown hint {name}; pipelines take LOOKUP('table'='…', …) hints"
            ));
        }
        let Some((Token::LParen, mut args)) = after.split_first() else {
            return Err("LOOKUP takes ('key'='value', …)".to_string());
        };
        let mut pairs = Vec::new();
        loop {
            match args {
                [Token::RParen, tail @ ..] => {
                    rest = tail;
                    break;
                }
                [Token::Comma, tail @ ..] => args = tail,
                [
                    Token::SingleQuotedString(key),
                    Token::Eq,
                    Token::SingleQuotedString(value),
                    tail @ ..,
                ] => {
                    pairs.push((key.to_ascii_lowercase(), value.clone()));
                    args = tail;
                }
                _ => return Err("LOOKUP takes ('key'='value', …)".to_string()),
            }
        }
        hints.push(pairs);
    }
    Ok(hints)
}

/// Removes and returns the hint for the dimension called `alias` (or `table`).
fn take_hint(hints: &mut Vec<Hint>, alias: &str, table: &str) -> Hint {
    let position = hints.iter().position(|hint| {
        hint.iter().any(|(k, v)| {
            k == "table"
                && (v.eq_ignore_ascii_case(alias)
                    || v.eq_ignore_ascii_case(table)
                    || table
                        .rsplit('.')
                        .next()
                        .is_some_and(|t| v.eq_ignore_ascii_case(t)))
        })
    });
    position.map(|p| hints.remove(p)).unwrap_or_default()
}

/// The miss policy and query timeout a hint chooses, with the join's defaults:
/// NULLs for a LEFT JOIN, quarantine for an inner join.
fn policy(hint: Hint, left_join: bool) -> std::result::Result<(MissPolicy, i64), String> {
    let duration = |value: &str| {
        let compact: String = value.split_whitespace().collect();
        humantime::parse_duration(&compact)
            .map(|d| d.as_millis() as i64)
            .map_err(|err| format!("'{value}' is not a duration ({err})"))
    };
    let mut miss = None;
    let mut delay_ms = DEFAULT_RETRY_DELAY_MS;
    let mut max_attempts = DEFAULT_RETRY_ATTEMPTS;
    let mut timeout_ms = DEFAULT_TIMEOUT_MS;
    for (key, value) in &hint {
        match (key.as_str(), value.as_str()) {
            ("table", _) | ("async", "true") | ("retry-strategy", "fixed_delay") => {}
            ("output-mode", "allow_unordered") => {}
            ("output-mode", _) => {
                return Err("rows waiting for a retry let others pass, so 'output-mode' is 'allow_unordered'".to_string());
            }
            ("async", _) => {
                return Err("lookups are always asynchronous ('async' = 'true')".to_string());
            }
            ("miss", "null") => miss = Some(MissPolicy::Null),
            ("miss", "quarantine") => miss = Some(MissPolicy::Quarantine),
            ("miss", "retry") | ("retry-predicate", "lookup_miss") => {
                miss = Some(MissPolicy::Retry {
                    delay_ms: 0,
                    max_attempts: 0,
                })
            }
            ("fixed-delay", value) => delay_ms = duration(value)?,
            ("max-attempts", value) => {
                max_attempts = value.parse().ok().filter(|&n| n >= 1).ok_or_else(|| {
                    format!("'max-attempts' = '{value}' is not a count of at least 1")
                })?;
            }
            ("timeout", value) => timeout_ms = duration(value)?.max(1),
            (key, value) => {
                return Err(format!(
                    "'{key}' = '{value}' is not understood; a LOOKUP hint takes {HINT_KEYS}"
                ));
            }
        }
    }
    let miss = match miss {
        Some(MissPolicy::Retry { .. }) => MissPolicy::Retry {
            delay_ms,
            max_attempts,
        },
        Some(MissPolicy::Null) if !left_join => {
            return Err(
                "'miss' = 'null' fills NULLs, which is what a LEFT JOIN does: write LEFT JOIN"
                    .to_string(),
            );
        }
        Some(other) => other,
        None if left_join => MissPolicy::Null,
        None => MissPolicy::Quarantine,
    };
    Ok((miss, timeout_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flink_lookup_hints_parse() {
        let hints = parse_hints(
            " LOOKUP('table'='u', 'retry-predicate'='lookup_miss', 'fixed-delay'='2s', 'max-attempts'='5'), LOOKUP('table'='c') ",
        )
        .unwrap();
        assert_eq!(hints.len(), 2);
        let (miss, _) = policy(hints[0].clone(), false).unwrap();
        assert_eq!(
            miss,
            MissPolicy::Retry {
                delay_ms: 2_000,
                max_attempts: 5
            }
        );
        assert_eq!(policy(hints[1].clone(), true).unwrap().0, MissPolicy::Null);
        assert_eq!(
            policy(hints[1].clone(), false).unwrap().0,
            MissPolicy::Quarantine
        );
        assert!(
            parse_hints("BROADCAST(t)")
                .unwrap_err()
                .contains("unknown hint")
        );
        assert!(
            policy(vec![("miss".into(), "null".into())], false)
                .unwrap_err()
                .contains("LEFT JOIN")
        );
    }
}
