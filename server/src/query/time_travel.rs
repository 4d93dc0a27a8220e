//! Delta time travel in queries: `t FOR SYSTEM_TIME AS OF TIMESTAMP '…'`,
//! `t VERSION AS OF n` and `t TIMESTAMP AS OF '…'`.
//!
//! ```text
//!   SELECT … FROM shop.orders VERSION AS OF 3 o …
//!        ──▶ SELECT … FROM _versions.t0 o …      _versions.t0 = Delta shop.orders at version 3
//!   SELECT … FROM shop.orders FOR SYSTEM_TIME AS OF TIMESTAMP '2026-11-21 10:00:00'
//!        ──▶ SELECT … FROM _versions.t0 AS orders   (the table's name stays its alias)
//! ```
//!
//! The SQL is rewritten token by token, so strings and comments are never
//! mistaken for clauses. `FOR SYSTEM_TIME AS OF` a column (a lookup join) is
//! left as it is.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace};
use strata_catalog::connectors::delta::AsOf;

use super::QueryError;

/// The schema time-travel tables are registered under, for one query.
pub const VERSIONS_SCHEMA: &str = "_versions";

/// A table read as of a past state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastTable {
    /// The table as the query named it: `[space, name]`.
    pub name: Vec<String>,
    pub as_of: AsOf,
    /// What it is registered as in [`VERSIONS_SCHEMA`].
    pub registered: String,
}

/// The query with each time-travel reference replaced, and the references.
pub fn rewrite(sql: &str) -> Result<(String, Vec<PastTable>), QueryError> {
    // Strings and quoted names are kept as written, escapes and all.
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .with_unescape(false)
        .tokenize()
        .map_err(|err| QueryError::TimeTravel {
            message: format!("the query does not parse: {err}"),
            hint: "check the SQL near that position".to_string(),
        })?;
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut past = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let Some((as_of, end)) = clause_at(&tokens, i)? else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        let (name, name_start) = table_before(&out).ok_or_else(|| QueryError::TimeTravel {
            message: "a time-travel clause must follow a table's name".to_string(),
            hint: "write FROM space.table VERSION AS OF n".to_string(),
        })?;
        out.truncate(name_start);
        let registered = format!("t{}", past.len());
        out.push(Token::make_word(VERSIONS_SCHEMA, None));
        out.push(Token::Period);
        out.push(Token::make_word(&registered, None));
        if !has_alias(&tokens[end..]) {
            out.push(Token::Whitespace(Whitespace::Space));
            out.push(Token::make_keyword("AS"));
            out.push(Token::Whitespace(Whitespace::Space));
            out.push(Token::make_word(
                name.last().expect("a name has a part"),
                Some('"'),
            ));
        }
        past.push(PastTable {
            name,
            as_of,
            registered,
        });
        i = end;
    }
    if past.is_empty() {
        return Ok((sql.to_string(), past));
    }
    let text = out.iter().map(ToString::to_string).collect::<String>();
    Ok((text, past))
}

fn is_keyword(token: Option<&Token>, keyword: Keyword) -> bool {
    matches!(token, Some(Token::Word(w)) if w.keyword == keyword && w.quote_style.is_none())
}

fn is_word(token: Option<&Token>, text: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text))
}

/// The indices of the next `count` tokens that are not whitespace, from `from`.
fn significant(tokens: &[Token], from: usize, count: usize) -> Vec<usize> {
    (from..tokens.len())
        .filter(|&i| !matches!(tokens[i], Token::Whitespace(_)))
        .take(count)
        .collect()
}

/// A time-travel clause starting at `start`: what it asks for and where it ends.
fn clause_at(tokens: &[Token], start: usize) -> Result<Option<(AsOf, usize)>, QueryError> {
    let at = |indices: &[usize], n: usize| indices.get(n).map(|&i| &tokens[i]);
    let next = significant(tokens, start, 6);
    let (value_index, version) = if is_keyword(at(&next, 0), Keyword::FOR)
        && is_word(at(&next, 1), "SYSTEM_TIME")
        && is_keyword(at(&next, 2), Keyword::AS)
        && is_keyword(at(&next, 3), Keyword::OF)
    {
        match at(&next, 4) {
            Some(Token::SingleQuotedString(_)) => (4, false),
            Some(_) if is_keyword(at(&next, 4), Keyword::TIMESTAMP) => (5, false),
            // A column: a lookup join's processing time, not time travel.
            _ => return Ok(None),
        }
    } else if (is_keyword(at(&next, 0), Keyword::VERSION)
        || is_keyword(at(&next, 0), Keyword::TIMESTAMP))
        && is_keyword(at(&next, 1), Keyword::AS)
        && is_keyword(at(&next, 2), Keyword::OF)
    {
        (3, is_keyword(at(&next, 0), Keyword::VERSION))
    } else {
        return Ok(None);
    };
    let Some(&value_at) = next.get(value_index) else {
        return Ok(None);
    };
    let as_of = match (&tokens[value_at], version) {
        (Token::Number(n, _), true) => AsOf::Version(n.parse().map_err(|_| bad_version(n))?),
        (other, true) => return Err(bad_version(&other.to_string())),
        (Token::SingleQuotedString(text), false) => AsOf::Time(parse_time(text)?),
        (other, false) => {
            return Err(QueryError::TimeTravel {
                message: format!("time travel needs a timestamp literal, not {other}"),
                hint: "write FOR SYSTEM_TIME AS OF TIMESTAMP '2026-11-21 10:00:00' (UTC unless it names an offset)".to_string(),
            });
        }
    };
    Ok(Some((as_of, value_at + 1)))
}

fn bad_version(text: &str) -> QueryError {
    QueryError::TimeTravel {
        message: format!("VERSION AS OF needs a version number, not {text}"),
        hint: "write VERSION AS OF 3; `strata history SPACE.TABLE` lists a Delta table's versions (`strata catalog history` lists schema versions)"
            .to_string(),
    }
}

/// A timestamp in RFC 3339, or `YYYY-MM-DD[ HH:MM:SS[.fff]]` in UTC.
fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, QueryError> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(time.and_utc());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    Err(QueryError::TimeTravel {
        message: format!("'{text}' is not a timestamp"),
        hint: "write '2026-11-21 10:00:00' (UTC) or '2026-11-21T10:00:00+08:00'".to_string(),
    })
}

/// The dotted name that ends `out` (ignoring trailing whitespace), and where it starts.
fn table_before(out: &[Token]) -> Option<(Vec<String>, usize)> {
    let mut end = out.len();
    while end > 0 && matches!(out[end - 1], Token::Whitespace(_)) {
        end -= 1;
    }
    let mut parts = Vec::new();
    let mut i = end;
    while let Some(Token::Word(word)) = i.checked_sub(1).map(|j| &out[j]) {
        parts.push(word.value.clone());
        i -= 1;
        if i > 0 && out[i - 1] == Token::Period {
            i -= 1;
        } else {
            break;
        }
    }
    if parts.is_empty() {
        return None;
    }
    parts.reverse();
    Some((parts, i))
}

/// Whether the tokens after a clause start with an alias (`AS x`, or a word that is not a keyword).
fn has_alias(rest: &[Token]) -> bool {
    let next = significant(rest, 0, 1);
    match next.first().map(|&i| &rest[i]) {
        Some(Token::Word(word)) => {
            word.quote_style.is_some()
                || word.keyword == Keyword::AS
                || word.keyword == Keyword::NoKeyword
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_times_become_registered_tables() {
        let (sql, past) = rewrite(
            "SELECT o.id FROM shop.orders VERSION AS OF 3 o JOIN shop.users FOR SYSTEM_TIME AS OF TIMESTAMP '2026-11-21 10:00:00' WHERE o.note = 'VERSION AS OF 9'",
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT o.id FROM _versions.t0 o JOIN _versions.t1 AS \"users\" WHERE o.note = 'VERSION AS OF 9'"
        );
        assert_eq!(past[0].name, vec!["shop", "orders"]);
        assert_eq!(past[0].as_of, AsOf::Version(3));
        assert_eq!(
            past[1].as_of,
            AsOf::Time("2026-11-21T10:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn quotes_and_escapes_are_kept() {
        let sql = r#"SELECT "a""b" FROM shop.t VERSION AS OF 2 WHERE name = 'O''Brien'"#;
        let (text, _) = rewrite(sql).unwrap();
        assert_eq!(
            text,
            r#"SELECT "a""b" FROM _versions.t0 AS "t" WHERE name = 'O''Brien'"#
        );
        let plain = "SELECT 'O''Brien', \"x\"\"y\" FROM shop.t";
        assert_eq!(rewrite(plain).unwrap().0, plain);
    }

    #[test]
    fn lookup_joins_and_plain_queries_are_left_alone() {
        let sql = "SELECT * FROM o JOIN d FOR SYSTEM_TIME AS OF o.proc_time AS x ON o.k = x.k";
        assert_eq!(rewrite(sql).unwrap(), (sql.to_string(), Vec::new()));
    }

    #[test]
    fn bad_clauses_say_what_to_write() {
        let err = rewrite("SELECT * FROM shop.t VERSION AS OF 'x'").unwrap_err();
        assert!(err.to_string().contains("VERSION AS OF 3"), "{err}");
        let err = rewrite("SELECT * FROM shop.t TIMESTAMP AS OF 'yesterday'").unwrap_err();
        assert!(err.to_string().contains("is not a timestamp"), "{err}");
    }
}
