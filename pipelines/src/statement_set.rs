//! Flink's statement set: several INSERTs of one job, written
//!
//! ```text
//!   EXECUTE STATEMENT SET           BEGIN STATEMENT SET;          INSERT INTO a SELECT …;
//!   BEGIN                           INSERT INTO a SELECT …;       INSERT INTO b SELECT …;
//!     INSERT INTO a SELECT …;       INSERT INTO b SELECT …;
//!     INSERT INTO b SELECT …;       END;
//!   END;
//! ```
//!
//! The words around the INSERTs are dropped from the file's tokens (the
//! INSERTs keep their places for errors); each INSERT then becomes a
//! pipeline of its own, with the file's `SET` lines and views.

use sqlparser::tokenizer::{Token, TokenWithSpan};

/// Where the file went wrong with its statement set: line, column, message, hint.
pub(crate) type Misplaced = (u64, u64, String, &'static str);

const HINT: &str = "write EXECUTE STATEMENT SET BEGIN INSERT INTO …; INSERT INTO …; END; (or BEGIN STATEMENT SET; … END;) after the file's SET lines and views";

/// `tokens` without the statement set's own words, if it has one.
pub(crate) fn strip(tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>, Misplaced> {
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&at| !matches!(tokens[at].token, Token::Whitespace(_)))
        .collect();
    let word = |at: usize, expected: &str| {
        significant.get(at).is_some_and(|&index| {
            matches!(&tokens[index].token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(expected))
        })
    };
    let semicolon = |at: usize| {
        significant
            .get(at)
            .is_some_and(|&index| tokens[index].token == Token::SemiColon)
    };
    // The set opens where a statement starts: first in the file, or after a `;`.
    let opening = (0..significant.len()).find_map(|at| {
        let starts_statement = at == 0 || semicolon(at - 1);
        if !starts_statement {
            return None;
        }
        if word(at, "EXECUTE")
            && word(at + 1, "STATEMENT")
            && word(at + 2, "SET")
            && word(at + 3, "BEGIN")
        {
            Some((at, 4))
        } else if word(at, "BEGIN") && word(at + 1, "STATEMENT") && word(at + 2, "SET") {
            Some((at, if semicolon(at + 3) { 4 } else { 3 }))
        } else {
            None
        }
    });
    let Some((open, open_len)) = opening else {
        return Ok(tokens);
    };
    let place = |at: usize| {
        let start = tokens[significant[at]].span.start;
        (start.line, start.column)
    };
    // It closes with the file's last END (and its `;`), after which nothing may follow.
    let last = significant.len() - 1;
    let close = match (word(last, "END"), semicolon(last)) {
        (true, _) => last,
        (false, true) if last > 0 && word(last - 1, "END") => last - 1,
        _ => {
            let (line, column) = place(open);
            return Err((
                line,
                column,
                "a STATEMENT SET without its END at the end of the file".to_string(),
                HINT,
            ));
        }
    };
    let dropped: Vec<usize> = (open..open + open_len)
        .chain(close..significant.len())
        .map(|at| significant[at])
        .collect();
    Ok(tokens
        .into_iter()
        .enumerate()
        .filter(|(index, _)| !dropped.contains(index))
        .map(|(_, token)| token)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::tokenizer::Tokenizer;
    use strata_catalog::ddl::FlinkDialect;

    fn stripped(text: &str) -> Result<String, Misplaced> {
        let tokens = Tokenizer::new(&FlinkDialect, text)
            .tokenize_with_location()
            .unwrap();
        let kept = strip(tokens)?;
        Ok(kept
            .iter()
            .map(|t| t.token.to_string())
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "))
    }

    #[test]
    fn both_spellings_leave_the_inserts() {
        assert_eq!(
            stripped("EXECUTE STATEMENT SET\nBEGIN\n  INSERT INTO a SELECT 1;\n  INSERT INTO b SELECT 2;\nEND;").unwrap(),
            "INSERT INTO a SELECT 1; INSERT INTO b SELECT 2;"
        );
        assert_eq!(
            stripped("SET 'x' = 'y';\nBEGIN STATEMENT SET;\nINSERT INTO a SELECT 1;\nEND").unwrap(),
            "SET 'x' = 'y'; INSERT INTO a SELECT 1;"
        );
        assert_eq!(
            stripped("INSERT INTO a SELECT 1").unwrap(),
            "INSERT INTO a SELECT 1"
        );
    }

    #[test]
    fn a_set_without_its_end_is_refused_at_its_start() {
        let (line, column, message, _) =
            stripped("CREATE VIEW v AS SELECT 1;\nBEGIN STATEMENT SET;\nINSERT INTO a SELECT 1;")
                .unwrap_err();
        assert_eq!((line, column), (2, 1));
        assert!(message.contains("without its END"), "{message}");
    }
}
