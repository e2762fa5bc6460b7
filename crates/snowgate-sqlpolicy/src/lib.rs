//! Snowgate's SQL policy: whether a request's SQL text is read-only.
//!
//! The gateway asks this crate before a statement goes upstream, when the session's role has
//! `statements = "read_only"` or its agent is read-only. The text is parsed with `sqlparser`'s
//! Snowflake dialect, and every statement of it is judged on its parse tree, one at a time:
//!
//! - **Allowed:** `SELECT` and `WITH … SELECT` (set operations, subqueries and CTEs included),
//!   `SHOW`, `DESCRIBE`, `EXPLAIN` of an allowed statement, `USE WAREHOUSE|DATABASE|SCHEMA`
//!   (and plain `USE db`), and `ALTER SESSION SET|UNSET` of the settings in
//!   [`functions::SESSION_SETTINGS`].
//! - **Refused:** everything else: DML (`INSERT`, `UPDATE`, `DELETE`, `MERGE`, `TRUNCATE`), DDL,
//!   `GRANT`/`REVOKE`, `COPY INTO` either way, `PUT`/`GET`/`LIST`/`REMOVE`, `CALL`,
//!   `EXECUTE IMMEDIATE`, `USE ROLE`, `USE SECONDARY ROLES`, `SET` variables, transactions.
//! - **Inside an allowed statement**, every function called must be on the allow-list
//!   ([`functions`]): built-ins without side effects, `SYSTEM$` functions that only read, and
//!   table functions that only read. A sequence's `NEXTVAL`, `SYSTEM$` functions that act,
//!   user-defined and external functions are refused, and so is any statement nested in a
//!   query (a CTE that hides DML) and `SELECT … INTO`.
//! - **Text the parser can't read** is refused, with the parser's message (fail closed): for
//!   example `GET @stage file://…`, for which the Snowflake dialect has no branch.
//! - **`LIST @stage`** (and `LS`) is refused unless the role allows it
//!   ([`ReadOnly::list_stage`], from `[[roles]] allow_list_stage = true`): listing a stage
//!   changes nothing, but it shows which files a stage holds, which a role may want to keep to
//!   itself.
//!
//! [`split`] cuts a request's text into its statements (each one's own text, for its own audit
//! record); [`check_read_only_with`] judges them.
//!
//! Pure logic: no I/O, no clock, no allocation beyond the parse tree.

use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Function, ObjectName, Query, SetExpr, Statement, TableFactor, TableVersion, Use, Visit,
    Visitor,
};
use sqlparser::dialect::SnowflakeDialect;
use sqlparser::parser::Parser;

pub mod functions;

/// Why a request's text is not read-only: which statement, what kind it is, and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The statement's number in the request, from 1.
    pub index: usize,
    /// What kind of statement it is, as SQL names it (`INSERT`, `CREATE TABLE`, `USE ROLE`).
    pub kind: String,
    /// Why read-only refuses it, as a sentence fragment.
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "statement {} ({}): {}",
            self.index, self.kind, self.reason
        )
    }
}

/// What a role's read-only allows beyond the fixed rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOnly {
    /// `LIST @stage` / `LS @stage` is allowed.
    pub list_stage: bool,
}

/// Parses all of `sql` with the Snowflake dialect. `Parser::parse_sql` alone stops at an `END`
/// where it expects the next statement (the end of a `BEGIN … END` block) and returns what it
/// read so far, so `SELECT 1 x END; DELETE FROM t` would read as one `SELECT`: text left after
/// the statements is an error here, and what is not read is never judged as allowed.
fn parse(sql: &str) -> Result<Vec<Statement>, sqlparser::parser::ParserError> {
    let mut parser = Parser::new(&SnowflakeDialect {}).try_with_sql(sql)?;
    let statements = parser.parse_statements()?;
    let next = parser.peek_token();
    if next.token != sqlparser::tokenizer::Token::EOF {
        return Err(sqlparser::parser::ParserError::ParserError(format!(
            "the statements end early, at {} (line {}, column {}), and the rest is not read",
            next.token, next.span.start.line, next.span.start.column
        )));
    }
    Ok(statements)
}

/// Judges `sql` under read-only: `Ok(n)` with the number of statements when every one is
/// allowed, else the first one refused. Empty text has no statement and is allowed.
pub fn check_read_only(sql: &str) -> Result<usize, Refusal> {
    check_read_only_with(sql, ReadOnly::default())
}

/// [`check_read_only`] with a role's own allowances.
pub fn check_read_only_with(sql: &str, rule: ReadOnly) -> Result<usize, Refusal> {
    let statements = match parse(sql) {
        Ok(s) => s,
        Err(e) => {
            return Err(Refusal {
                index: 1,
                kind: leading_words(sql),
                reason: format!(
                    "the SQL parser can't read it ({e}), and read-only refuses what it can't read"
                ),
            })
        }
    };
    for (i, statement) in statements.iter().enumerate() {
        if let Err(reason) = judge(statement, rule) {
            return Err(Refusal {
                index: i + 1,
                kind: kind_of(statement),
                reason,
            });
        }
    }
    Ok(statements.len())
}

/// The first statement of `sql` that would change the session's `QUERY_TAG`, as a refusal: an
/// `ALTER SESSION SET|UNSET` of it, or an `EXECUTE IMMEDIATE`, `CALL` or text the parser
/// can't read that mentions it (dynamic SQL is not read, so the mention is enough). `None`
/// when the text does not mention `QUERY_TAG` at all (the usual case costs one scan) or only
/// reads it (`SELECT query_tag FROM …`).
pub fn sets_query_tag(sql: &str) -> Option<Refusal> {
    // Every statement passes here, so the text is searched in place, not copied.
    let mentions = |text: &str| {
        text.as_bytes()
            .windows(b"QUERY_TAG".len())
            .any(|w| w.eq_ignore_ascii_case(b"QUERY_TAG"))
    };
    if !mentions(sql) {
        return None;
    }
    let statements = match parse(sql) {
        Ok(s) => s,
        Err(_) => {
            return Some(Refusal {
                index: 1,
                kind: leading_words(sql),
                reason: "the SQL parser can't read it and it mentions QUERY_TAG".into(),
            })
        }
    };
    statements.iter().enumerate().find_map(|(i, s)| {
        let reason = match s {
            Statement::AlterSession { session_params, .. }
                if session_params
                    .options
                    .iter()
                    .any(|o| o.option_name.eq_ignore_ascii_case("QUERY_TAG")) =>
            {
                "it changes the session's QUERY_TAG"
            }
            Statement::Execute { .. } | Statement::Call(_) if mentions(&s.to_string()) => {
                "it runs SQL that mentions QUERY_TAG"
            }
            _ => return None,
        };
        Some(Refusal {
            index: i + 1,
            kind: kind_of(s),
            reason: reason.into(),
        })
    })
}

/// The kind of each statement in `sql` (`SELECT`, `SHOW TABLES`), or `None` when the parser
/// can't read it.
pub fn kinds(sql: &str) -> Option<Vec<String>> {
    let statements = parse(sql).ok()?;
    Some(statements.iter().map(kind_of).collect())
}

/// Judges one top-level statement.
fn judge(statement: &Statement, rule: ReadOnly) -> Result<(), String> {
    match statement {
        Statement::List(_) if rule.list_stage => Ok(()),
        Statement::List(_) => Err(
            "read-only lists a stage's files only where the role allows it ([[roles]] allow_list_stage = true)"
                .into(),
        ),
        Statement::Query(query) => judge_query(query),
        Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCharset { .. }
        | Statement::ShowObjects { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. }
        | Statement::ExplainTable { .. } => Ok(()),
        Statement::Explain {
            analyze, statement, ..
        } => {
            if *analyze {
                return Err("EXPLAIN ANALYZE runs the statement".into());
            }
            judge(statement, rule)
        }
        Statement::Use(u) => match u {
            Use::Warehouse(_) | Use::Database(_) | Use::Schema(_) | Use::Object(_) => Ok(()),
            Use::Role(_) => Err("read-only may not change the session's role".into()),
            Use::SecondaryRoles(_) => {
                Err("read-only may not change the session's secondary roles".into())
            }
            _ => Err("read-only allows only USE WAREHOUSE, DATABASE or SCHEMA".into()),
        },
        Statement::AlterSession { session_params, .. } => {
            for option in &session_params.options {
                if !functions::listed(functions::SESSION_SETTINGS, &option.option_name) {
                    return Err(format!(
                        "read-only may change only display and timeout settings with ALTER SESSION, not {}",
                        option.option_name.to_uppercase()
                    ));
                }
            }
            Ok(())
        }
        _ => Err("read-only allows only SELECT, SHOW, DESCRIBE, EXPLAIN, USE WAREHOUSE/DATABASE/SCHEMA and ALTER SESSION of display settings".into()),
    }
}

/// Judges a query: no statement nested in it, no `SELECT … INTO`, and only allowed calls.
fn judge_query(query: &Query) -> Result<(), String> {
    let mut v = ReadOnlyVisitor::default();
    match query.visit(&mut v) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(reason) => Err(reason),
    }
}

/// Walks a query's tree and breaks with the reason at the first thing read-only refuses.
#[derive(Default)]
struct ReadOnlyVisitor {
    /// The time-travel clauses seen (`t AT(OFFSET => -60)`, `BEFORE(STATEMENT => …)`), which
    /// the parser holds as calls: these nodes are not function calls (their arguments are
    /// still judged). Compared by address, within the one tree being walked.
    time_travel: Vec<*const Function>,
}

impl Visitor for ReadOnlyVisitor {
    type Break = String;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<String> {
        // A statement inside a query: a CTE or set operation that hides DML.
        match statement {
            Statement::Query(_) => ControlFlow::Continue(()),
            other => ControlFlow::Break(format!(
                "the query hides a {} statement, which read-only refuses",
                kind_of(other)
            )),
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        match query.body.as_ref() {
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                ControlFlow::Break("the query hides DML, which read-only refuses".into())
            }
            SetExpr::Select(select) if select.into.is_some() => {
                ControlFlow::Break("SELECT … INTO creates a table, which read-only refuses".into())
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
        if let TableFactor::Table {
            version: Some(TableVersion::Function(Expr::Function(f))),
            ..
        } = factor
        {
            if plain_name(&f.name)
                .is_some_and(|n| n.eq_ignore_ascii_case("AT") || n.eq_ignore_ascii_case("BEFORE"))
            {
                self.time_travel.push(f as *const Function);
            }
        }
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => table_function(name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        match expr {
            Expr::Function(f) if self.time_travel.contains(&(f as *const Function)) => {
                ControlFlow::Continue(())
            }
            Expr::Function(f) => call(f),
            Expr::CompoundIdentifier(parts)
                if parts
                    .last()
                    .is_some_and(|p| p.value.eq_ignore_ascii_case("NEXTVAL")) =>
            {
                ControlFlow::Break(
                    "a sequence's NEXTVAL advances the sequence, which read-only refuses".into(),
                )
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

/// A function called in an expression (also `TABLE(f(...))`): built-in and allowed, or refused.
fn call(f: &Function) -> ControlFlow<String> {
    let Some(name) = plain_name(&f.name) else {
        return ControlFlow::Break(format!(
            "{} is not a built-in function, and read-only calls only those on its allow-list",
            f.name
        ));
    };
    let upper = name.to_ascii_uppercase();
    if upper == "NEXTVAL" {
        return ControlFlow::Break(
            "a sequence's NEXTVAL advances the sequence, which read-only refuses".into(),
        );
    }
    let allowed = if upper.starts_with("SYSTEM$") {
        functions::listed(functions::SYSTEM_READ, &upper)
    } else {
        functions::listed(functions::SCALAR, &upper) || functions::listed(functions::TABLE, &upper)
    };
    if allowed {
        ControlFlow::Continue(())
    } else if upper.starts_with("SYSTEM$") {
        ControlFlow::Break(format!(
            "{upper} is not a SYSTEM$ function read-only may call (it may act, not only read)"
        ))
    } else {
        ControlFlow::Break(format!(
            "{upper} is not on read-only's allow-list of functions (a user-defined, external or unknown function)"
        ))
    }
}

/// A table function in `FROM` (`LATERAL FLATTEN(...)`, `my_udtf(1)`): allowed ones only.
fn table_function(name: &ObjectName) -> ControlFlow<String> {
    match plain_name(name) {
        Some(n) if functions::listed(functions::TABLE, n) => ControlFlow::Continue(()),
        _ => ControlFlow::Break(format!("{name} is not a table function read-only may call")),
    }
}

/// The name of an unqualified function (`COUNT`), or of one in the information schema
/// (`INFORMATION_SCHEMA.QUERY_HISTORY`, `db.INFORMATION_SCHEMA.QUERY_HISTORY`); `None` for
/// anything else qualified (a user-defined function's path).
fn plain_name(name: &ObjectName) -> Option<&str> {
    let parts: Vec<&str> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(|i| i.value.as_str()))
        .collect::<Option<Vec<_>>>()?;
    match parts.as_slice() {
        [one] => Some(one),
        [.., schema, last] if schema.eq_ignore_ascii_case("INFORMATION_SCHEMA") => Some(last),
        _ => None,
    }
}

/// The kind of a parsed statement, as SQL names it: its leading keywords.
fn kind_of(statement: &Statement) -> String {
    match statement {
        Statement::Query(q) => match q.body.as_ref() {
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                kind_of(s)
            }
            _ => "SELECT".into(),
        },
        Statement::CopyIntoSnowflake { .. } | Statement::Copy { .. } => "COPY INTO".into(),
        Statement::Execute {
            immediate: true, ..
        } => "EXECUTE IMMEDIATE".into(),
        Statement::Use(Use::Object(_)) => "USE".into(),
        other => leading_words(&other.to_string()),
    }
}

/// One statement of a request: its text as sent (without the `;` between statements) and its
/// number from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece<'a> {
    pub index: usize,
    pub text: &'a str,
}

/// Cuts `sql` into its statements, on the `;` tokens between them (never one inside a string,
/// a `$$…$$` body, a quoted identifier or a comment). `None` when the parser can't read the
/// text, or when the cut doesn't match the statements the parser reads (a `BEGIN … END` block
/// holds `;` of its own): then the text stays whole. Empty pieces (`;;`, a trailing `;`, only
/// comments) are dropped, as the parser drops them.
pub fn split(sql: &str) -> Option<Vec<Piece<'_>>> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let dialect = SnowflakeDialect {};
    let parsed = parse(sql).ok()?.len();
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .ok()?;
    let offsets = line_offsets(sql);
    let at = |loc: sqlparser::tokenizer::Location| -> Option<usize> {
        let line = usize::try_from(loc.line).ok()?.checked_sub(1)?;
        let col = usize::try_from(loc.column).ok()?.checked_sub(1)?;
        let start = *offsets.get(line)?;
        // Columns count characters, not bytes.
        let rest = sql.get(start..)?;
        Some(start + rest.char_indices().nth(col).map_or(rest.len(), |(i, _)| i))
    };
    let mut pieces = Vec::new();
    let mut begin = 0;
    let mut meaningful = false;
    for t in &tokens {
        match &t.token {
            Token::SemiColon => {
                let end = at(t.span.start)?;
                if meaningful {
                    pieces.push(sql.get(begin..end)?.trim());
                }
                begin = end + 1;
                meaningful = false;
            }
            Token::Whitespace(_) | Token::EOF => {}
            _ => meaningful = true,
        }
    }
    if meaningful {
        pieces.push(sql.get(begin..)?.trim());
    }
    if pieces.len() != parsed {
        return None;
    }
    Some(
        pieces
            .into_iter()
            .enumerate()
            .map(|(i, text)| Piece { index: i + 1, text })
            .collect(),
    )
}

/// The byte offset at which each line of `text` starts.
fn line_offsets(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// What kind of statement `sql` starts with, as SQL names it (`INSERT`, `CREATE TABLE`), read
/// from its first keywords without parsing: for messages about a statement that was not judged.
pub fn statement_kind(sql: &str) -> String {
    leading_words(sql)
}

/// The first keywords of `sql` (after comments): two for `CREATE`/`ALTER`/`DROP`/`SHOW`/`USE`
/// and the like (`CREATE TABLE`, `USE ROLE`), one otherwise; `OR REPLACE` and similar
/// modifiers are skipped.
fn leading_words(sql: &str) -> String {
    let words: Vec<String> = strip_comments(sql)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
        .filter(|w| !w.is_empty())
        .take(6)
        .map(str::to_ascii_uppercase)
        .collect();
    let Some(first) = words.first() else {
        return "empty statement".into();
    };
    let two = matches!(
        first.as_str(),
        "CREATE"
            | "ALTER"
            | "DROP"
            | "SHOW"
            | "USE"
            | "COPY"
            | "EXECUTE"
            | "UNDROP"
            | "GRANT"
            | "REVOKE"
    );
    if !two {
        return first.clone();
    }
    let skip = [
        "OR",
        "REPLACE",
        "TEMPORARY",
        "TEMP",
        "TRANSIENT",
        "SECURE",
        "IF",
        "NOT",
        "EXISTS",
    ];
    match words[1..].iter().find(|w| !skip.contains(&w.as_str())) {
        Some(second) if first != "GRANT" && first != "REVOKE" => format!("{first} {second}"),
        _ => first.clone(),
    }
}

/// `sql` without its `--`, `//` and `/* */` comments (strings are not special-cased: this is
/// only for naming a statement that failed to parse).
fn strip_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("--").or_else(|| rest.strip_prefix("//")) {
            rest = r.find('\n').map_or("", |i| &r[i..]);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
            out.push(' ');
        } else {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests;
