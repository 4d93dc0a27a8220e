//! A parser for Flink's `CREATE TABLE`, on sqlparser's tokenizer and expression
//! parser with a dialect of our own.
//!
//! ```text
//! CREATE [TEMPORARY] TABLE [IF NOT EXISTS] space.name (
//!   column TYPE [NOT NULL] [COMMENT '…'],
//!   proc_time AS PROCTIME(),
//!   WATERMARK FOR column AS column - INTERVAL 'n' UNIT,
//!   PRIMARY KEY (column, …) NOT ENFORCED
//! ) [COMMENT '…'] [PARTITIONED BY (column, …)] WITH ('key' = 'value', …);
//! ```
//!
//! Every piece keeps its `file:line:column`, so later checks can point at it.

use sqlparser::ast::{BinaryOperator, DateTimeField, Expr};
use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::types::{FlinkType, SUPPORTED_TYPES};
use crate::error::{CatalogError, Result, SourceLocation};

/// Flink's lexical rules: backtick-quoted identifiers, `$` inside names.
#[derive(Debug, Default)]
pub struct FlinkDialect;

impl Dialect for FlinkDialect {
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`' || ch == '"'
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_' || ch == '$'
    }

    /// `JOIN t FOR SYSTEM_TIME AS OF o.proc_time AS d`: lookup and temporal joins.
    fn supports_table_versioning(&self) -> bool {
        true
    }

    /// `COUNT(*) FILTER (WHERE …)`: Flink's aggregate filters.
    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }

    /// `SELECT /*+ LOOKUP('table'='d', …) */ …`: Flink's join hints.
    fn supports_comment_optimizer_hint(&self) -> bool {
        true
    }

    /// The table argument of Flink's window TVFs, `TABLE space.name [PARTITION BY k | (k, …)]`,
    /// parsed as the function call `TABLE(space.name, col, …)`.
    fn parse_prefix(&self, parser: &mut Parser) -> Option<std::result::Result<Expr, ParserError>> {
        let is_table_argument = matches!(&parser.peek_token_ref().token, Token::Word(w) if w.keyword == Keyword::TABLE)
            && matches!(parser.peek_nth_token(1).token, Token::Word(_));
        if !is_table_argument {
            return None;
        }
        let table_keyword = parser.next_token();
        Some(table_argument(parser, table_keyword))
    }
}

/// Name of the function a window TVF's `TABLE …` argument is parsed into.
pub const TABLE_ARGUMENT: &str = "TABLE";

fn table_argument(
    parser: &mut Parser,
    table_keyword: TokenWithSpan,
) -> std::result::Result<Expr, ParserError> {
    use sqlparser::ast::{
        Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
        ObjectName,
    };
    let name = parser.parse_object_name(false)?;
    let mut args = vec![Expr::CompoundIdentifier(
        name.0
            .iter()
            .filter_map(|part| part.as_ident().cloned())
            .collect(),
    )];
    if parser.parse_keywords(&[Keyword::PARTITION, Keyword::BY]) {
        // One key, or several in parentheses: `PARTITION BY k` / `PARTITION BY (k1, k2)`.
        let keys = if parser.consume_token(&Token::LParen) {
            let keys = parser.parse_comma_separated(Parser::parse_identifier)?;
            parser.expect_token(&Token::RParen)?;
            keys
        } else {
            vec![parser.parse_identifier()?]
        };
        args.extend(keys.into_iter().map(Expr::Identifier));
    }
    Ok(Expr::Function(Function {
        name: ObjectName::from(vec![Ident::with_span(table_keyword.span, TABLE_ARGUMENT)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|arg| FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    }))
}

/// Something in the DDL, with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub location: SourceLocation,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDdl {
    pub name: Located<String>,
    pub data_type: Located<FlinkType>,
    pub not_null: bool,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkDdl {
    pub column: Located<String>,
    pub delay_ms: i64,
    pub expression: String,
}

/// One parsed `CREATE TABLE` statement.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    pub location: SourceLocation,
    /// The name's parts as written: `[space, name]`, or a single part.
    pub name: Located<Vec<String>>,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDdl>,
    pub processing_time: Option<Located<String>>,
    pub watermark: Option<Located<WatermarkDdl>>,
    pub primary_key: Option<Located<Vec<String>>>,
    pub comment: Option<String>,
    /// `PARTITIONED BY (a, b)`, where it was written, with each column's place.
    pub partitioned_by: Option<Located<Vec<Located<String>>>>,
    pub options: Vec<(Located<String>, Located<String>)>,
}

/// Parses a file of `CREATE TABLE` statements.
pub fn parse_ddl(file: &str, text: &str) -> Result<Vec<CreateTable>> {
    let dialect = FlinkDialect;
    let parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|err| from_parser_error(file, err))?;
    let mut ddl = DdlParser {
        parser,
        file: file.to_string(),
        pending_gt: 0,
    };
    ddl.statements()
}

struct DdlParser<'a> {
    parser: Parser<'a>,
    file: String,
    /// A `>>` token closes two type brackets; the second one waits here.
    pending_gt: usize,
}

impl DdlParser<'_> {
    fn statements(&mut self) -> Result<Vec<CreateTable>> {
        let mut statements = Vec::new();
        loop {
            while self.parser.consume_token(&Token::SemiColon) {}
            if self.parser.peek_token_ref().token == Token::EOF {
                return Ok(statements);
            }
            statements.push(self.create_table()?);
            let next = self.parser.peek_token();
            if !matches!(next.token, Token::SemiColon | Token::EOF) {
                return Err(self.error_at(
                    &next,
                    format!("expected ';' after the statement, found {}", next.token),
                    Some("end each CREATE TABLE with a semicolon"),
                ));
            }
        }
    }

    fn create_table(&mut self) -> Result<CreateTable> {
        let start = self.parser.peek_token();
        let location = self.location_of(&start);
        if !self.parser.parse_keyword(Keyword::CREATE) {
            return Err(self.error_at(
                &start,
                format!("expected CREATE TABLE, found {}", start.token),
                Some("catalog files hold only CREATE TABLE statements; pipelines go in pipelines/<layer>/*.sql"),
            ));
        }
        let view = self.parser.peek_token();
        if self.parser.parse_keyword(Keyword::VIEW) {
            return Err(self.error_at(
                &view,
                "CREATE VIEW is not supported yet: catalog files hold CREATE TABLE statements".to_string(),
                Some("write the view's query as a pipeline (pipelines/<layer>/NAME.sql, INSERT INTO a table SELECT …), or query it ad hoc with strata query"),
            ));
        }
        let temporary = self.parser.peek_token();
        if self.parser.parse_keyword(Keyword::TEMPORARY) {
            return Err(self.error_at(
                &temporary,
                "CREATE TEMPORARY TABLE is not supported: in Flink the table lives for one job, and a catalog file registers tables for good".to_string(),
                Some("drop TEMPORARY to register the table; a table only one pipeline uses is registered like any other"),
            ));
        }
        self.expect_keyword(Keyword::TABLE, "TABLE")?;
        let if_not_exists =
            self.parser
                .parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name_token = self.parser.peek_token();
        let name = self
            .parser
            .parse_object_name(false)
            .map_err(|err| self.parser_error(err))?;
        let name = Located {
            value: name
                .0
                .iter()
                .map(|part| match part.as_ident() {
                    Some(ident) => ident.value.clone(),
                    None => part.to_string(),
                })
                .collect(),
            location: self.location_of(&name_token),
        };
        let mut table = CreateTable {
            location,
            name,
            if_not_exists,
            columns: Vec::new(),
            processing_time: None,
            watermark: None,
            primary_key: None,
            comment: None,
            partitioned_by: None,
            options: Vec::new(),
        };
        self.expect_token(&Token::LParen, "'(' and the column list")?;
        loop {
            self.table_element(&mut table)?;
            if self.parser.consume_token(&Token::Comma) {
                continue;
            }
            self.expect_token(&Token::RParen, "',' or ')'")?;
            break;
        }
        if self.parser.parse_keyword(Keyword::COMMENT) {
            table.comment = Some(self.string_literal()?.value);
        }
        let partitioned = self.parser.peek_token();
        if self
            .parser
            .parse_keywords(&[Keyword::PARTITIONED, Keyword::BY])
        {
            self.expect_token(&Token::LParen, "'(' and the partition columns")?;
            let mut columns = Vec::new();
            loop {
                columns.push(self.identifier()?);
                if self.parser.consume_token(&Token::Comma) {
                    continue;
                }
                self.expect_token(&Token::RParen, "',' or ')' after a partition column")?;
                break;
            }
            table.partitioned_by = Some(Located {
                value: columns,
                location: self.location_of(&partitioned),
            });
        }
        if self.parser.parse_keyword(Keyword::WITH) {
            table.options = self.options()?;
        }
        Ok(table)
    }

    fn table_element(&mut self, table: &mut CreateTable) -> Result<()> {
        let token = self.parser.peek_token();
        if let Token::Word(word) = &token.token
            && word.quote_style.is_none()
        {
            if word.value.eq_ignore_ascii_case("WATERMARK") {
                self.parser.next_token();
                let watermark = self.watermark(&token)?;
                if table.watermark.is_some() {
                    return Err(self.error_at(
                        &token,
                        "a table may declare only one WATERMARK".to_string(),
                        None,
                    ));
                }
                table.watermark = Some(watermark);
                return Ok(());
            }
            if word.keyword == Keyword::PRIMARY {
                self.parser.next_token();
                self.expect_keyword(Keyword::KEY, "KEY")?;
                let columns = self
                    .parser
                    .parse_parenthesized_column_list(
                        sqlparser::parser::IsOptional::Mandatory,
                        false,
                    )
                    .map_err(|err| self.parser_error(err))?;
                if !self
                    .parser
                    .parse_keywords(&[Keyword::NOT, Keyword::ENFORCED])
                {
                    let next = self.parser.peek_token();
                    return Err(self.error_at(
                        &next,
                        "expected NOT ENFORCED after PRIMARY KEY (...)".to_string(),
                        Some(
                            "Strata, like Flink, does not enforce keys on external data; write PRIMARY KEY (...) NOT ENFORCED",
                        ),
                    ));
                }
                if table.primary_key.is_some() {
                    return Err(self.error_at(
                        &token,
                        "a table may declare only one PRIMARY KEY".to_string(),
                        None,
                    ));
                }
                table.primary_key = Some(Located {
                    value: columns.into_iter().map(|ident| ident.value).collect(),
                    location: self.location_of(&token),
                });
                return Ok(());
            }
        }
        let name = self.identifier()?;
        if self.parser.parse_keyword(Keyword::AS) {
            return self.computed_column(table, name);
        }
        let type_token = self.parser.peek_token();
        let data_type = self.data_type()?;
        if self.pending_gt > 0 {
            return Err(self.error_at(&type_token, "unmatched '>' in type".to_string(), None));
        }
        let mut column = ColumnDdl {
            name,
            data_type: Located {
                value: data_type,
                location: self.location_of(&type_token),
            },
            not_null: false,
            comment: None,
        };
        loop {
            if self.parser.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
                column.not_null = true;
            } else if self.parser.parse_keyword(Keyword::NULL) {
                column.not_null = false;
            } else if self.parser.parse_keyword(Keyword::COMMENT) {
                column.comment = Some(self.string_literal()?.value);
            } else if self.parser.parse_keyword(Keyword::METADATA) {
                return Err(self.error_at(
                    &type_token,
                    format!(
                        "column {}: METADATA columns are not supported yet",
                        column.name.value
                    ),
                    Some(
                        "remove the column; the Kafka topic, partition and offset of bad records are kept in quarantine",
                    ),
                ));
            } else {
                break;
            }
        }
        table.columns.push(column);
        Ok(())
    }

    fn computed_column(&mut self, table: &mut CreateTable, name: Located<String>) -> Result<()> {
        let expr_token = self.parser.peek_token();
        let expr = self
            .parser
            .parse_expr()
            .map_err(|err| self.parser_error(err))?;
        let is_proctime = matches!(&expr, Expr::Function(function)
            if function.name.to_string().eq_ignore_ascii_case("PROCTIME")
                && function.args.to_string().trim_matches(|c| c == '(' || c == ')').is_empty());
        if !is_proctime {
            return Err(self.error_at(
                &expr_token,
                format!(
                    "computed column {} AS {expr} is not supported",
                    name.value
                ),
                Some(
                    "only `name AS PROCTIME()` is supported; compute other values in a pipeline's SELECT",
                ),
            ));
        }
        if table.processing_time.is_some() {
            return Err(self.error_at(
                &expr_token,
                "a table may declare only one PROCTIME() column".to_string(),
                None,
            ));
        }
        table.processing_time = Some(name);
        Ok(())
    }

    fn watermark(&mut self, start: &TokenWithSpan) -> Result<Located<WatermarkDdl>> {
        self.expect_keyword(Keyword::FOR, "FOR after WATERMARK")?;
        let column = self.identifier()?;
        self.expect_keyword(Keyword::AS, "AS after WATERMARK FOR column")?;
        let expr_token = self.parser.peek_token();
        let expr = self
            .parser
            .parse_expr()
            .map_err(|err| self.parser_error(err))?;
        let hint = "write WATERMARK FOR ts AS ts - INTERVAL '5' SECOND (or AS ts for no delay)";
        let (expr_column, delay_ms) = match &expr {
            Expr::Identifier(ident) => (ident.value.clone(), 0),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Minus,
                right,
            } => match (left.as_ref(), right.as_ref()) {
                (Expr::Identifier(ident), Expr::Interval(interval)) => {
                    let delay = interval_millis(interval).ok_or_else(|| {
                        self.error_at(
                            &expr_token,
                            format!("cannot read the interval in {expr}"),
                            Some(hint),
                        )
                    })?;
                    (ident.value.clone(), delay)
                }
                _ => {
                    return Err(self.error_at(
                        &expr_token,
                        format!("unsupported watermark expression {expr}"),
                        Some(hint),
                    ));
                }
            },
            _ => {
                return Err(self.error_at(
                    &expr_token,
                    format!("unsupported watermark expression {expr}"),
                    Some(hint),
                ));
            }
        };
        if expr_column != column.value {
            return Err(self.error_at(
                &expr_token,
                format!(
                    "the watermark of {} is computed from {expr_column}",
                    column.value
                ),
                Some(hint),
            ));
        }
        Ok(Located {
            value: WatermarkDdl {
                column,
                delay_ms,
                expression: expr.to_string(),
            },
            location: self.location_of(start),
        })
    }

    fn options(&mut self) -> Result<Vec<(Located<String>, Located<String>)>> {
        self.expect_token(&Token::LParen, "'(' after WITH")?;
        let mut options = Vec::new();
        if self.parser.consume_token(&Token::RParen) {
            return Ok(options);
        }
        loop {
            let key = self.string_literal()?;
            self.expect_token(&Token::Eq, "'=' between option key and value")?;
            let value = self.string_literal()?;
            options.push((key, value));
            if self.parser.consume_token(&Token::Comma) {
                continue;
            }
            self.expect_token(&Token::RParen, "',' or ')' in WITH options")?;
            return Ok(options);
        }
    }

    /// A Flink type: `NAME [(n [, m])] [WITH LOCAL TIME ZONE]`, `ARRAY<T>`,
    /// `MAP<K, V>` or `ROW<name T, …>`.
    fn data_type(&mut self) -> Result<FlinkType> {
        let token = self.parser.next_token();
        let Token::Word(word) = &token.token else {
            return Err(self.error_at(
                &token,
                format!("expected a type, found {}", token.token),
                Some(&format!("the supported types are {SUPPORTED_TYPES}")),
            ));
        };
        let name = word.value.to_ascii_uppercase();
        match name.as_str() {
            "ARRAY" => {
                self.open_angle()?;
                let element = self.data_type()?;
                self.close_angle()?;
                Ok(FlinkType::Array(Box::new(element)))
            }
            "MAP" => {
                self.open_angle()?;
                let key = self.data_type()?;
                self.expect_token(&Token::Comma, "',' between MAP key and value types")?;
                let value = self.data_type()?;
                self.close_angle()?;
                Ok(FlinkType::Map(Box::new(key), Box::new(value)))
            }
            "ROW" => {
                self.open_angle()?;
                let mut fields = Vec::new();
                loop {
                    let field = self.identifier()?;
                    let ty = self.data_type()?;
                    fields.push((field.value, ty));
                    if self.pending_gt == 0 && self.parser.consume_token(&Token::Comma) {
                        continue;
                    }
                    break;
                }
                self.close_angle()?;
                Ok(FlinkType::Row(fields))
            }
            _ => {
                let mut args = Vec::new();
                if self.parser.consume_token(&Token::LParen) {
                    loop {
                        let arg = self.parser.next_token();
                        match &arg.token {
                            Token::Number(text, _) if text.parse::<u64>().is_ok() => {
                                args.push(text.parse().expect("checked"));
                            }
                            _ => {
                                return Err(self.error_at(
                                    &arg,
                                    format!(
                                        "expected a number in {name}(...), found {}",
                                        arg.token
                                    ),
                                    None,
                                ));
                            }
                        }
                        if self.parser.consume_token(&Token::Comma) {
                            continue;
                        }
                        self.expect_token(&Token::RParen, "')'")?;
                        break;
                    }
                }
                let local_time_zone = self.parser.parse_keywords(&[
                    Keyword::WITH,
                    Keyword::LOCAL,
                    Keyword::TIME,
                    Keyword::ZONE,
                ]);
                Ok(FlinkType::Named {
                    name,
                    args,
                    local_time_zone,
                })
            }
        }
    }

    fn open_angle(&mut self) -> Result<()> {
        self.expect_token(&Token::Lt, "'<'")?;
        Ok(())
    }

    fn close_angle(&mut self) -> Result<()> {
        if self.pending_gt > 0 {
            self.pending_gt -= 1;
            return Ok(());
        }
        let token = self.parser.next_token();
        match token.token {
            Token::Gt => Ok(()),
            Token::ShiftRight => {
                self.pending_gt += 1;
                Ok(())
            }
            _ => Err(self.error_at(&token, format!("expected '>', found {}", token.token), None)),
        }
    }

    fn identifier(&mut self) -> Result<Located<String>> {
        let token = self.parser.peek_token();
        let ident = self
            .parser
            .parse_identifier()
            .map_err(|err| self.parser_error(err))?;
        Ok(Located {
            value: ident.value,
            location: self.location_of(&token),
        })
    }

    fn string_literal(&mut self) -> Result<Located<String>> {
        let token = self.parser.next_token();
        match &token.token {
            Token::SingleQuotedString(text) => Ok(Located {
                value: text.clone(),
                location: self.location_of(&token),
            }),
            other => Err(self.error_at(
                &token,
                format!("expected a quoted string, found {other}"),
                Some("quote option keys and values with single quotes: 'key' = 'value'"),
            )),
        }
    }

    fn expect_keyword(&mut self, keyword: Keyword, what: &str) -> Result<()> {
        if self.parser.parse_keyword(keyword) {
            return Ok(());
        }
        let token = self.parser.peek_token();
        Err(self.error_at(
            &token,
            format!("expected {what}, found {}", token.token),
            None,
        ))
    }

    fn expect_token(&mut self, expected: &Token, what: &str) -> Result<()> {
        if self.parser.consume_token(expected) {
            return Ok(());
        }
        let token = self.parser.peek_token();
        Err(self.error_at(
            &token,
            format!("expected {what}, found {}", token.token),
            None,
        ))
    }

    fn location_of(&self, token: &TokenWithSpan) -> SourceLocation {
        let start = token.span.start;
        if start.line == 0 {
            // EOF carries no position: point just past the previous token.
            let previous = self.parser.get_current_token().span.end;
            return SourceLocation {
                file: self.file.clone(),
                line: previous.line.max(1),
                column: previous.column.max(1),
            };
        }
        SourceLocation {
            file: self.file.clone(),
            line: start.line,
            column: start.column,
        }
    }

    fn error_at(&self, token: &TokenWithSpan, message: String, hint: Option<&str>) -> CatalogError {
        CatalogError::Ddl {
            location: self.location_of(token),
            message,
            hint: hint.map(str::to_string),
        }
    }

    fn parser_error(&self, err: ParserError) -> CatalogError {
        from_parser_error(&self.file, err)
    }
}

/// sqlparser puts the position at the end of its message: "… at Line: 3, Column: 7".
fn from_parser_error(file: &str, err: ParserError) -> CatalogError {
    let text = match err {
        ParserError::TokenizerError(text) | ParserError::ParserError(text) => text,
        ParserError::RecursionLimitExceeded => "the statement nests too deeply".to_string(),
    };
    let (message, line, column) = split_parser_message(&text);
    CatalogError::Ddl {
        location: SourceLocation {
            file: file.to_string(),
            line,
            column,
        },
        message,
        hint: None,
    }
}

/// Splits a sqlparser message into the message and its 1-based line and column.
pub fn split_parser_message(text: &str) -> (String, u64, u64) {
    let text = text.trim_start_matches("sql parser error: ");
    match text.rsplit_once(" at Line: ") {
        Some((message, position)) => {
            let mut parts = position.split(", Column: ");
            let mut number = || {
                parts
                    .next()
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(1)
            };
            let line = number();
            let column = number();
            (message.to_string(), line, column)
        }
        None => (text.to_string(), 1, 1),
    }
}

/// The length of a Flink `INTERVAL 'n' UNIT` literal in milliseconds (up to days).
pub fn interval_millis(interval: &sqlparser::ast::Interval) -> Option<i64> {
    let text = interval.value.to_string();
    let amount: f64 = text.trim_matches('\'').trim().parse().ok()?;
    let unit_ms = match interval.leading_field.as_ref()? {
        DateTimeField::Millisecond | DateTimeField::Milliseconds => 1.0,
        DateTimeField::Second | DateTimeField::Seconds => 1_000.0,
        DateTimeField::Minute | DateTimeField::Minutes => 60_000.0,
        DateTimeField::Hour | DateTimeField::Hours => 3_600_000.0,
        DateTimeField::Day | DateTimeField::Days => 86_400_000.0,
        _ => return None,
    };
    let millis = amount * unit_ms;
    (millis >= 0.0).then_some(millis.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: &str = "CREATE TABLE shop.ods_orders (
  order_id BIGINT NOT NULL,
  amount DECIMAL(10,2),
  tags ARRAY<ARRAY<STRING>>,
  order_time TIMESTAMP(3),
  proc_time AS PROCTIME(),
  WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND,
  PRIMARY KEY (order_id) NOT ENFORCED
) COMMENT 'raw orders' WITH (
  'connector' = 'kafka',
  'topic' = 'orders'
);";

    #[test]
    fn parses_flink_create_table() {
        let tables = parse_ddl("orders.sql", ORDERS).unwrap();
        assert_eq!(tables.len(), 1);
        let table = &tables[0];
        assert_eq!(table.name.value, ["shop", "ods_orders"]);
        assert_eq!(table.columns.len(), 4);
        assert!(table.columns[0].not_null);
        assert_eq!(
            table.columns[2].data_type.value,
            FlinkType::Array(Box::new(FlinkType::Array(Box::new(FlinkType::Named {
                name: "STRING".into(),
                args: vec![],
                local_time_zone: false
            }))))
        );
        let watermark = &table.watermark.as_ref().unwrap().value;
        assert_eq!(watermark.column.value, "order_time");
        assert_eq!(watermark.delay_ms, 5_000);
        assert_eq!(table.processing_time.as_ref().unwrap().value, "proc_time");
        assert_eq!(table.primary_key.as_ref().unwrap().value, ["order_id"]);
        assert_eq!(table.comment.as_deref(), Some("raw orders"));
        assert_eq!(table.options.len(), 2);
        assert_eq!(table.options[1].1.value, "orders");
        assert_eq!(table.options[1].0.location.line, 11);
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let err = parse_ddl(
            "bad.sql",
            "CREATE TABLE shop.ods_x (\n  id BIGINT\n  name STRING\n)",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("bad.sql:3:3: expected ',' or ')'"), "{err}");
    }
}
