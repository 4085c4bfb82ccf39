//! Read-only SQL guard: layer 1 of the defences between the LLM and a squad's
//! production database.
//!
//! `check` decides, before anything reaches the database, whether one SQL text
//! is a single read-only statement that stays inside the principal's grant. It
//! runs in layers, each of which refuses on its own:
//!
//! 1. **Raw text and token stream.** Size, NUL bytes, MySQL/MariaDB executable
//!    comments (`/*! */`, `/*M! */`, which MySQL *executes*), optimizer-hint
//!    comments (`/*+ */`, which can change session settings), Postgres `U&`
//!    escapes (they can hide a function name), and every place where
//!    sqlparser's tokenizer could disagree with the server about what is a
//!    comment or a string (`--`/`/*` glued inside an operator, MySQL `--<tab>`,
//!    backslashes in MySQL strings whose meaning depends on `sql_mode`, odd
//!    dollar quotes). If the guard and the server could see different
//!    statements, the guard's verdict is worthless, so those are refused.
//! 2. **Statement allow-list.** Exactly one statement; only queries (SELECT,
//!    WITH … SELECT, set operations, VALUES, TABLE), EXPLAIN without ANALYZE,
//!    and for MySQL a few SHOW/DESCRIBE forms. Everything else, including
//!    whatever sqlparser learns to parse in the future, is refused by default.
//! 3. **Whole-AST walk** (sqlparser's derived `Visit`, so no node type is
//!    forgotten): nested data-modifying statements (writable CTEs), `SELECT …
//!    INTO`, locking clauses, variable assignment, functions, relations.
//! 4. **Functions: a deny-list.** Legitimate investigation queries use hundreds
//!    of built-ins and the squads' own functions, so an allow-list would be
//!    useless; instead the known families that sleep, lock, write, read files,
//!    execute SQL text or change session state are refused (for Postgres every
//!    `pg_*` function except a short allow-list of read-only helpers).
//! 5. **Relations: an allow-list of schemas.** Every table must resolve to a
//!    granted schema or to an allow-listed catalog relation; per-schema
//!    catalogs must be filtered to granted schemas (`table_schema = 'app'`).
//!
//! Behind this guard the caller runs the approved text in a READ ONLY
//! transaction that is always rolled back, with a statement timeout and a row
//! cap. The deny-list is therefore about what a read-only transaction does not
//! stop (sleeping, advisory locks, file reads, session state, other schemas),
//! and the transaction is the backstop for a write the deny-list misses.
//!
//! Assumptions about the servers: Postgres runs with
//! `standard_conforming_strings = on` (the default since 9.1); the caller sets
//! the search path / current database to the granted schemas.

use std::fmt::{self, Write as _};
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, Query, Select, SetExpr,
    ShowCreateObject, ShowStatementFilter, ShowStatementFilterPosition, ShowStatementOptions,
    Statement, Table, TableFactor, TableWithJoins, UtilityOption, Value, Visit, Visitor,
};
use sqlparser::dialect::{
    Dialect as ParserDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect,
};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, Tokenizer, Whitespace};

/// Longest SQL text accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 100_000;

/// sqlparser and its derived visitor/drop recurse once per nesting level, and a
/// left-deep chain such as `1+1+1…` nests once per operator without hitting the
/// parser's recursion limit. The check runs on its own thread with a stack big
/// enough for the longest accepted input (a stack overflow would abort the
/// whole bot, and it cannot be caught). Pages are only committed when touched.
const GUARD_STACK_BYTES: usize = 384 << 20;

/// Nesting depth is bounded by the number of operators and keywords (flat
/// lists such as `IN (1, 2, ...)` do not nest). Unoptimised builds of the
/// derived visitor use ~16 KiB of stack per level, so this keeps the deepest
/// accepted input well inside `GUARD_STACK_BYTES`.
const MAX_STRUCTURE_TOKENS: usize = 10_000;

/// Catalog relations per SELECT (the filter check is quadratic in them).
const MAX_CATALOG_ITEMS: usize = 16;

/// Which SQL dialect the target database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    /// MySQL and MariaDB.
    MySql,
    Sqlite,
}

impl Dialect {
    fn label(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }

    fn parser_dialect(self) -> Box<dyn ParserDialect> {
        match self {
            Dialect::Postgres => Box::new(PostgreSqlDialect {}),
            Dialect::MySql => Box::new(MySqlDialect {}),
            Dialect::Sqlite => Box::new(SQLiteDialect {}),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What the principal may touch in this database. Schema names compared case-insensitively.
#[derive(Debug, Clone)]
pub struct SqlScope {
    /// Schema (Postgres) / database (MySQL) / "main" (SQLite) that unqualified names resolve to.
    pub default_schema: String,
    /// Every schema/database the principal may read (includes default_schema).
    pub schemas: Vec<String>,
}

impl SqlScope {
    /// Whether `schema` is granted (case-insensitive).
    pub fn grants(&self, schema: &str) -> bool {
        let wanted = schema.to_lowercase();
        self.schemas.iter().any(|s| s.to_lowercase() == wanted)
    }

    fn granted_list(&self) -> String {
        if self.schemas.is_empty() {
            "none".to_owned()
        } else {
            self.schemas
                .iter()
                .map(|s| clean(s))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementKind {
    Select,
    Explain,
    Show,
}

#[derive(Debug, Clone)]
pub struct Approved {
    pub kind: StatementKind,
    /// The statement to run: the original text with surrounding whitespace and
    /// ONE optional trailing `;` (and any comment after it) removed. It is
    /// exactly the single statement that was checked.
    pub sql: String,
    /// True when the statement reads catalog relations (information_schema,
    /// pg_catalog, sqlite_master...) or is a SHOW/DESCRIBE.
    pub reads_catalog: bool,
}

/// One line a model can act on, always starting with "refused: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused: {0}")]
pub struct Refusal(pub String);

fn refuse(msg: impl Into<String>) -> Refusal {
    Refusal(msg.into())
}

/// Checks one SQL text for `dialect` against `scope`.
///
/// Never panics and never approves more than one statement; see the module
/// documentation for the policy.
pub fn check(dialect: Dialect, sql: &str, scope: &SqlScope) -> Result<Approved, Refusal> {
    if sql.trim().is_empty() {
        return Err(refuse("empty query"));
    }
    if sql.len() > MAX_SQL_BYTES {
        return Err(refuse(format!(
            "query is too long ({} bytes, at most {MAX_SQL_BYTES})",
            sql.len()
        )));
    }
    if sql.contains('\0') {
        return Err(refuse("NUL bytes are not allowed in SQL"));
    }
    let owned = sql.to_owned();
    let scope = scope.clone();
    let worker = std::thread::Builder::new()
        .name("sql-guard".to_owned())
        .stack_size(GUARD_STACK_BYTES)
        .spawn(move || check_on_this_thread(dialect, &owned, &scope));
    match worker {
        Ok(handle) => match handle.join() {
            Ok(verdict) => verdict,
            // sqlparser has a few `unwrap`s on malformed input (e.g. MySQL
            // `1 DIV`); a panic there is a parse failure, not a crash.
            Err(_) => Err(refuse(format!(
                "could not parse SQL for {dialect}: the parser failed on this input; simplify the query"
            ))),
        },
        Err(_) => Err(refuse("could not start the SQL checker; try again")),
    }
}

fn check_on_this_thread(
    dialect: Dialect,
    sql: &str,
    scope: &SqlScope,
) -> Result<Approved, Refusal> {
    let lexed = lex(dialect, sql)?;
    let text = sql.get(..lexed.end).unwrap_or(sql).trim();
    let parser_dialect = dialect.parser_dialect();
    let mut statements = match Parser::parse_sql(parser_dialect.as_ref(), text) {
        Ok(statements) => statements,
        Err(e) => return Err(parse_refusal(dialect, &e.to_string(), &lexed.words)),
    };
    let statement = match statements.len() {
        0 => return Err(refuse("empty query")),
        1 => statements.remove(0),
        n => return Err(refuse(format!("only one statement per query (found {n})"))),
    };
    let mut guard = Guard::new(dialect, scope);
    let kind = guard.statement(&statement)?;
    Ok(Approved {
        kind,
        sql: text.to_owned(),
        reads_catalog: guard.reads_catalog,
    })
}

// ---------------------------------------------------------------------------
// Layer 1: raw text and token stream
// ---------------------------------------------------------------------------

struct Lexed {
    /// Byte offset where the statement ends (the trailing `;` if any).
    end: usize,
    /// Upper-cased text of the code tokens, for friendlier parse-error messages.
    words: Vec<String>,
}

fn lex(dialect: Dialect, sql: &str) -> Result<Lexed, Refusal> {
    let lower = sql.to_ascii_lowercase();
    if lower.contains("/*!") {
        return Err(refuse(
            "MySQL executable comments (/*! ... */) are not allowed: MySQL runs their content",
        ));
    }
    if lower.contains("/*m!") {
        return Err(refuse(
            "MariaDB executable comments (/*M! ... */) are not allowed: MariaDB runs their content",
        ));
    }
    if lower.contains("/*+") {
        return Err(refuse(
            "optimizer hint comments (/*+ ... */) are not allowed: they can change session settings",
        ));
    }
    if lower.contains("u&'") || lower.contains("u&\"") {
        return Err(refuse(
            "unicode escape strings and identifiers (U&'...', U&\"...\") are not allowed; write the text plainly",
        ));
    }

    let parser_dialect = dialect.parser_dialect();
    let tokens = Tokenizer::new(parser_dialect.as_ref(), sql)
        .with_unescape(false)
        .tokenize_with_location()
        .map_err(|e| refuse(format!("could not parse SQL for {dialect}: {e}")))?;

    let mut cursor = Cursor::new(sql);
    // The code tokens with comments, strings and quoted identifiers replaced by
    // a space: what the server's lexer would treat as operators and words.
    let mut skeleton = String::new();
    let mut words = Vec::new();
    let mut code: Vec<(bool, usize)> = Vec::new(); // (is `;`, start byte)
    let mut structure = 0usize;
    for token in &tokens {
        let start = cursor.seek(token.span.start);
        let end = cursor.seek(token.span.end);
        let raw = match (start, end) {
            (Some(s), Some(e)) => sql.get(s..e),
            _ => None,
        };
        let (Some(start), Some(raw)) = (start, raw) else {
            return Err(refuse(format!(
                "could not parse SQL for {dialect}: token positions could not be mapped"
            )));
        };
        match classify(&token.token) {
            TokenClass::Trivia => {
                if let Token::Whitespace(Whitespace::MultiLineComment(body)) = &token.token {
                    let body = body.to_ascii_lowercase();
                    if body.starts_with('!') || body.starts_with("m!") || body.starts_with('+') {
                        return Err(refuse("executable or hint comments are not allowed"));
                    }
                }
                skeleton.push(' ');
            }
            TokenClass::Literal => {
                if dialect == Dialect::MySql && raw.contains('\\') {
                    return Err(refuse(
                        "backslashes in MySQL string literals are not allowed (their meaning depends on sql_mode); use LIKE ... ESCAPE '!' or CHAR() instead",
                    ));
                }
                if let Token::DollarQuotedString(d) = &token.token {
                    if d.tag
                        .as_deref()
                        .is_some_and(|t| t.starts_with(|c: char| c.is_ascii_digit()))
                    {
                        return Err(refuse("dollar-quote tags must not start with a digit"));
                    }
                }
                skeleton.push(' ');
            }
            TokenClass::Code => {
                if let Token::Placeholder(p) = &token.token {
                    let digits = p.strip_prefix('$');
                    if dialect == Dialect::Postgres
                        && digits.is_some_and(|d| d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()))
                    {
                        return Err(refuse(format!(
                            "unexpected `{}`: only $1-style parameters and $tag$ quotes are allowed",
                            clean(p)
                        )));
                    }
                }
                if counts_as_structure(&token.token) {
                    structure += 1;
                    if structure > MAX_STRUCTURE_TOKENS {
                        return Err(refuse(format!(
                            "query is too complex (more than {MAX_STRUCTURE_TOKENS} operators and keywords); split it up"
                        )));
                    }
                }
                skeleton.push_str(raw);
                words.push(raw.to_ascii_uppercase());
                code.push((matches!(token.token, Token::SemiColon), start));
            }
        }
    }

    if skeleton.contains("--") || skeleton.contains("/*") {
        return Err(refuse(
            "comment markers (-- or /*) glued to an operator are ambiguous; put spaces between operators and comments",
        ));
    }
    if dialect == Dialect::MySql && skeleton.contains('#') {
        return Err(refuse("`#` outside a comment is ambiguous in MySQL"));
    }

    if code.iter().all(|(semi, _)| *semi) {
        return Err(refuse("empty query"));
    }
    let semicolons: Vec<usize> = code
        .iter()
        .enumerate()
        .filter(|(_, (semi, _))| *semi)
        .map(|(i, _)| i)
        .collect();
    let mut end = sql.len();
    if let Some(&first_semi) = semicolons.first() {
        let trailing_only = semicolons.len() == 1 && first_semi + 1 == code.len();
        if !trailing_only {
            let mut statements = 0;
            let mut in_statement = false;
            for (semi, _) in &code {
                if *semi {
                    in_statement = false;
                } else if !in_statement {
                    in_statement = true;
                    statements += 1;
                }
            }
            return Err(refuse(format!(
                "only one statement per query (found {})",
                statements.max(2)
            )));
        }
        end = code[first_semi].1;
    }

    // Allow-list on the first word: gives a clear message for statements that
    // sqlparser cannot even parse (DO, HANDLER, LOAD DATA, REINDEX...).
    let first = words.first().map(String::as_str).unwrap_or("");
    let first_token_is_quoted = tokens
        .iter()
        .find(|t| classify(&t.token) != TokenClass::Trivia)
        .is_some_and(|t| classify(&t.token) == TokenClass::Literal);
    if first_token_is_quoted
        || !matches!(
            first,
            "SELECT" | "WITH" | "VALUES" | "TABLE" | "EXPLAIN" | "DESCRIBE" | "DESC" | "SHOW" | "("
        )
    {
        let shown = if first_token_is_quoted || first.is_empty() {
            "this statement".to_owned()
        } else {
            format!("{} statements", clean(first))
        };
        return Err(refuse(format!(
            "{shown} are not allowed: only read-only queries (SELECT, WITH ... SELECT, VALUES, TABLE, EXPLAIN, SHOW) are accepted"
        )));
    }

    Ok(Lexed { end, words })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenClass {
    /// Whitespace and comments.
    Trivia,
    /// String literals and quoted identifiers: their content is never code.
    Literal,
    /// Everything else (the default: scanning too much only refuses more).
    Code,
}

fn classify(token: &Token) -> TokenClass {
    match token {
        Token::Whitespace(_) => TokenClass::Trivia,
        Token::Word(w) if w.quote_style.is_some() => TokenClass::Literal,
        Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_) => TokenClass::Literal,
        _ => TokenClass::Code,
    }
}

/// Tokens that can add a nesting level to the AST (operators, keywords).
fn counts_as_structure(token: &Token) -> bool {
    match token {
        Token::Word(w) => w.quote_style.is_none() && w.keyword != Keyword::NoKeyword,
        Token::Comma
        | Token::Period
        | Token::LParen
        | Token::RParen
        | Token::Number(..)
        | Token::Placeholder(_) => false,
        _ => true,
    }
}

/// Maps the tokenizer's (line, column) locations, which count characters, to
/// byte offsets. Token spans are contiguous and increasing, so one forward
/// pass suffices.
struct Cursor<'a> {
    text: &'a str,
    byte: usize,
    line: u64,
    col: u64,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            text,
            byte: 0,
            line: 1,
            col: 1,
        }
    }

    fn seek(&mut self, target: Location) -> Option<usize> {
        loop {
            let here = (self.line, self.col);
            let there = (target.line, target.column);
            if here == there {
                return Some(self.byte);
            }
            if here > there {
                return None;
            }
            let ch = self.text.get(self.byte..)?.chars().next()?;
            self.byte += ch.len_utf8();
            if ch == '\n' {
                self.line += 1;
                self.col = 1;
            } else {
                self.col += 1;
            }
        }
    }
}

fn parse_refusal(dialect: Dialect, message: &str, words: &[String]) -> Refusal {
    let has = |seq: &[&str]| {
        words
            .windows(seq.len())
            .any(|w| w.iter().zip(seq).all(|(a, b)| a == b))
    };
    for (seq, clause) in [
        (&["FOR", "NO", "KEY", "UPDATE"][..], "FOR NO KEY UPDATE"),
        (&["FOR", "KEY", "SHARE"][..], "FOR KEY SHARE"),
        (&["FOR", "UPDATE"][..], "FOR UPDATE"),
        (&["FOR", "SHARE"][..], "FOR SHARE"),
        (&["LOCK", "IN", "SHARE", "MODE"][..], "LOCK IN SHARE MODE"),
    ] {
        if has(seq) {
            return refuse(format!("locking clause {clause} is not allowed"));
        }
    }
    if has(&["INTO", "OUTFILE"]) || has(&["INTO", "DUMPFILE"]) {
        return refuse("SELECT ... INTO OUTFILE/DUMPFILE writes files and is not allowed");
    }
    let message = message.strip_prefix("sql parser error: ").unwrap_or(message);
    refuse(format!("could not parse SQL for {dialect}: {}", clean(message)))
}

// ---------------------------------------------------------------------------
// Layers 2-5: statement allow-list and AST walk
// ---------------------------------------------------------------------------

struct Guard<'s> {
    dialect: Dialect,
    scope: &'s SqlScope,
    /// CTE names visible in the query being walked, one entry per query level.
    ctes: Vec<Vec<String>>,
    reads_catalog: bool,
    /// Relations reported by the visitor vs relations this guard resolved:
    /// a mismatch means sqlparser put a relation somewhere unexpected.
    relations_seen: usize,
    relations_resolved: usize,
    /// Filter-requiring catalog relations found in FROM items vs those whose
    /// filter was checked by the SELECT they belong to.
    catalog_seen: usize,
    catalog_checked: usize,
}

impl<'s> Guard<'s> {
    fn new(dialect: Dialect, scope: &'s SqlScope) -> Self {
        Guard {
            dialect,
            scope,
            ctes: Vec::new(),
            reads_catalog: false,
            relations_seen: 0,
            relations_resolved: 0,
            catalog_seen: 0,
            catalog_checked: 0,
        }
    }

    fn statement(&mut self, statement: &Statement) -> Result<StatementKind, Refusal> {
        match statement {
            Statement::Query(query) => {
                self.query(query)?;
                Ok(StatementKind::Select)
            }
            Statement::Explain {
                analyze,
                estimate,
                options,
                statement: inner,
                ..
            } => {
                if *analyze {
                    return Err(explain_analyze());
                }
                if *estimate {
                    return Err(refuse("EXPLAIN ESTIMATE is not allowed"));
                }
                for option in options.iter().flatten() {
                    explain_option(option)?;
                }
                match inner.as_ref() {
                    Statement::Query(query) => {
                        self.query(query)?;
                        Ok(StatementKind::Explain)
                    }
                    other => Err(refuse(format!(
                        "EXPLAIN is only allowed for read-only queries (found {})",
                        statement_label(other)
                    ))),
                }
            }
            Statement::ExplainTable {
                table_name,
                hive_format,
                ..
            } => {
                self.mysql_only("DESCRIBE")?;
                if hive_format.is_some() {
                    return Err(refuse("DESCRIBE with a format is not allowed"));
                }
                self.show_relation(table_name)?;
                Ok(StatementKind::Show)
            }
            Statement::ShowTables { show_options, .. } => {
                self.mysql_only("SHOW TABLES")?;
                self.show_options(show_options, false)?;
                Ok(StatementKind::Show)
            }
            Statement::ShowColumns { show_options, .. } => {
                self.mysql_only("SHOW COLUMNS")?;
                self.show_options(show_options, true)?;
                Ok(StatementKind::Show)
            }
            Statement::ShowCreate { obj_type, obj_name } => {
                self.mysql_only("SHOW CREATE")?;
                match obj_type {
                    ShowCreateObject::Table | ShowCreateObject::View => {
                        self.show_relation(obj_name)?;
                        Ok(StatementKind::Show)
                    }
                    other => Err(refuse(format!(
                        "SHOW CREATE {other} is not allowed (only SHOW CREATE TABLE/VIEW)"
                    ))),
                }
            }
            Statement::ShowVariable { variable } => {
                self.mysql_only("SHOW")?;
                self.show_index(variable)?;
                Ok(StatementKind::Show)
            }
            other => Err(refuse(format!(
                "{} statements are not allowed: only read-only queries (SELECT, WITH ... SELECT, VALUES, TABLE, EXPLAIN, SHOW) are accepted",
                statement_label(other)
            ))),
        }
    }

    fn query(&mut self, query: &Query) -> Result<(), Refusal> {
        if let ControlFlow::Break(refusal) = query.visit(self) {
            return Err(refusal);
        }
        if self.relations_seen != self.relations_resolved {
            return Err(refuse("a table reference in an unsupported position"));
        }
        if self.catalog_seen != self.catalog_checked {
            return Err(refuse(
                "a catalog relation in an unsupported position; read it directly in a FROM clause with a schema filter",
            ));
        }
        Ok(())
    }

    fn mysql_only(&self, what: &str) -> Result<(), Refusal> {
        if self.dialect == Dialect::MySql {
            Ok(())
        } else {
            Err(refuse(format!(
                "{what} is only supported for MySQL here; query information_schema instead"
            )))
        }
    }

    fn outside_grant(&self, schema: &str) -> Refusal {
        refuse(format!(
            "schema `{}` is outside your grant (granted: {})",
            clean(schema),
            self.scope.granted_list()
        ))
    }

    // -- queries -----------------------------------------------------------

    fn enter_query(&mut self, query: &Query) -> Result<(), Refusal> {
        let mut names = Vec::new();
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                if let Some(kind) = dml_kind(&cte.query.body) {
                    return Err(refuse(format!("writable CTE ({kind}) is not allowed")));
                }
                names.push(cte.alias.name.value.to_lowercase());
            }
        }
        self.ctes.push(names);
        if let Some(lock) = query.locks.first() {
            return Err(refuse(format!(
                "locking clause FOR {} is not allowed",
                lock.lock_type
            )));
        }
        if query.for_clause.is_some()
            || query.settings.is_some()
            || query.format_clause.is_some()
            || !query.pipe_operators.is_empty()
        {
            return Err(refuse(
                "FOR XML/JSON, SETTINGS, FORMAT and pipe clauses are not allowed",
            ));
        }
        self.set_expr(&query.body)
    }

    fn set_expr(&mut self, body: &SetExpr) -> Result<(), Refusal> {
        match body {
            SetExpr::Select(select) => self.select(select),
            // Checked when the visitor enters that query.
            SetExpr::Query(_) => Ok(()),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left)?;
                self.set_expr(right)
            }
            SetExpr::Values(_) => Ok(()),
            SetExpr::Table(table) => self.table_statement(table),
            SetExpr::Insert(_) => Err(nested_dml("INSERT")),
            SetExpr::Update(_) => Err(nested_dml("UPDATE")),
            SetExpr::Delete(_) => Err(nested_dml("DELETE")),
            SetExpr::Merge(_) => Err(nested_dml("MERGE")),
        }
    }

    /// `TABLE name`: a relation that cannot carry a schema filter.
    fn table_statement(&mut self, table: &Table) -> Result<(), Refusal> {
        let Some(table_name) = &table.table_name else {
            return Err(refuse("TABLE without a table name is not allowed"));
        };
        let mut parts = Vec::new();
        if let Some(schema) = &table.schema_name {
            parts.push(ObjectNamePart::Identifier(Ident::new(schema.clone())));
        }
        parts.push(ObjectNamePart::Identifier(Ident::new(table_name.clone())));
        match self.resolve(&ObjectName(parts))? {
            Resolved::Catalog(def) if def.filter => Err(self.unfiltered(def, def.name)),
            Resolved::Catalog(_) => {
                self.reads_catalog = true;
                Ok(())
            }
            Resolved::Cte | Resolved::User => Ok(()),
        }
    }

    fn select(&mut self, select: &Select) -> Result<(), Refusal> {
        if select.into.is_some() {
            return Err(refuse(
                "SELECT ... INTO is not allowed (it creates a table or writes variables/files)",
            ));
        }
        self.catalog_filters(select)
    }

    // -- relations -----------------------------------------------------------

    fn table_factor(&mut self, factor: &TableFactor) -> Result<(), Refusal> {
        match factor {
            TableFactor::Table { name, args, .. } => {
                // The visitor reports `name` as a relation right after this.
                self.relations_resolved += 1;
                match args {
                    Some(args) => self.table_function(name, &args.args),
                    None => {
                        match self.resolve(name)? {
                            Resolved::Catalog(def) => {
                                self.reads_catalog = true;
                                if def.filter {
                                    self.catalog_seen += 1;
                                }
                            }
                            Resolved::Cte | Resolved::User => {}
                        }
                        Ok(())
                    }
                }
            }
            TableFactor::Function { name, args, .. } => self.table_function(name, args),
            TableFactor::Derived { .. }
            | TableFactor::TableFunction { .. }
            | TableFactor::UNNEST { .. }
            | TableFactor::JsonTable { .. }
            | TableFactor::XmlTable { .. }
            | TableFactor::NestedJoin { .. } => Ok(()),
            _ => Err(refuse(
                "this kind of FROM item is not supported; use tables, subqueries, joins or functions",
            )),
        }
    }

    fn resolve(&self, name: &ObjectName) -> Result<Resolved, Refusal> {
        let parts = idents(name)?;
        let lower: Vec<String> = parts.iter().map(|i| i.value.to_lowercase()).collect();
        match lower.as_slice() {
            [table] => self.resolve_unqualified(table),
            [schema, table] => self.resolve_qualified(schema, table),
            _ => Err(refuse(format!(
                "name {} has too many parts; use schema.table (cross-database names are not allowed)",
                clean(&name.to_string())
            ))),
        }
    }

    fn resolve_unqualified(&self, table: &str) -> Result<Resolved, Refusal> {
        match self.dialect {
            // Postgres searches pg_catalog before the search path, and every
            // catalog relation is named pg_*.
            Dialect::Postgres if table.starts_with("pg_") => self.catalog("pg_catalog", table),
            Dialect::Sqlite if table.starts_with("sqlite_") => self.catalog("main", table),
            Dialect::Sqlite if table.starts_with("pragma_") => Err(pragma_as_table(table)),
            Dialect::Postgres | Dialect::MySql | Dialect::Sqlite => {
                if self.ctes.iter().any(|level| level.iter().any(|c| c == table)) {
                    Ok(Resolved::Cte)
                } else if self.scope.grants(&self.scope.default_schema) {
                    Ok(Resolved::User)
                } else {
                    Err(self.outside_grant(&self.scope.default_schema))
                }
            }
        }
    }

    fn resolve_qualified(&self, schema: &str, table: &str) -> Result<Resolved, Refusal> {
        match self.dialect {
            Dialect::Postgres => match schema {
                "pg_catalog" | "information_schema" => self.catalog(schema, table),
                _ if schema.starts_with("pg_") => Err(refuse(format!(
                    "system schema `{}` is not allowed",
                    clean(schema)
                ))),
                _ => self.granted_user(schema),
            },
            Dialect::MySql => match schema {
                "information_schema" => self.catalog(schema, table),
                "mysql" | "performance_schema" | "sys" => Err(refuse(format!(
                    "system schema `{schema}` is not allowed"
                ))),
                _ => self.granted_user(schema),
            },
            Dialect::Sqlite => match schema {
                "temp" => Err(refuse("the temp schema is not allowed; read main")),
                _ => {
                    self.granted_user(schema)?;
                    if table.starts_with("sqlite_") {
                        self.catalog("main", table)
                    } else if table.starts_with("pragma_") {
                        Err(pragma_as_table(table))
                    } else {
                        Ok(Resolved::User)
                    }
                }
            },
        }
    }

    fn granted_user(&self, schema: &str) -> Result<Resolved, Refusal> {
        if self.scope.grants(schema) {
            Ok(Resolved::User)
        } else {
            Err(self.outside_grant(schema))
        }
    }

    fn catalog(&self, schema: &str, table: &str) -> Result<Resolved, Refusal> {
        let defs = catalogs(self.dialect);
        match defs.iter().find(|d| d.schema == schema && d.name == table) {
            Some(def) => Ok(Resolved::Catalog(def)),
            None => Err(refuse(format!(
                "catalog relation {}.{} is not allowed; readable catalogs: {}",
                clean(schema),
                clean(table),
                catalog_summary(self.dialect)
            ))),
        }
    }

    fn show_relation(&mut self, name: &ObjectName) -> Result<(), Refusal> {
        self.resolve(name)?;
        self.reads_catalog = true;
        Ok(())
    }

    /// SHOW TABLES [FROM db] / SHOW COLUMNS FROM t [FROM db], LIKE filters only.
    fn show_options(
        &mut self,
        options: &ShowStatementOptions,
        needs_table: bool,
    ) -> Result<(), Refusal> {
        if options.starts_with.is_some() || options.limit.is_some() || options.limit_from.is_some()
        {
            return Err(refuse("SHOW with STARTS WITH / LIMIT is not allowed"));
        }
        if let Some(position) = &options.filter_position {
            let filter = match position {
                ShowStatementFilterPosition::Infix(f) | ShowStatementFilterPosition::Suffix(f) => f,
            };
            if let ShowStatementFilter::Where(_) = filter {
                return Err(refuse(
                    "SHOW ... WHERE is not allowed; use LIKE or query information_schema",
                ));
            }
        }
        let parent = match &options.show_in {
            Some(show_in) => {
                if show_in.parent_type.is_some() {
                    return Err(refuse("SHOW ... IN <object type> is not allowed"));
                }
                show_in.parent_name.as_ref()
            }
            None => None,
        };
        match (parent, needs_table) {
            (Some(name), true) => self.show_relation(name),
            (None, true) => Err(refuse("SHOW COLUMNS needs FROM <table>")),
            (Some(name), false) => {
                let parts = idents(name)?;
                match parts.as_slice() {
                    [db] => {
                        self.granted_user(&db.value.to_lowercase())?;
                        self.reads_catalog = true;
                        Ok(())
                    }
                    _ => Err(refuse("SHOW TABLES FROM takes a database name")),
                }
            }
            (None, false) => {
                self.granted_user(&self.scope.default_schema)?;
                self.reads_catalog = true;
                Ok(())
            }
        }
    }

    /// sqlparser 0.59 has no SHOW INDEX; it parses `SHOW INDEX FROM t [FROM db]`
    /// as a variable name made of those words.
    fn show_index(&mut self, words: &[Ident]) -> Result<(), Refusal> {
        let unquoted = |i: usize, set: &[&str]| {
            words.get(i).is_some_and(|w| {
                w.quote_style.is_none() && set.contains(&w.value.to_uppercase().as_str())
            })
        };
        let is_index = unquoted(0, &["INDEX", "INDEXES", "KEYS"]) && unquoted(1, &["FROM", "IN"]);
        if !is_index {
            let what = words.first().map(|w| clean(&w.value)).unwrap_or_default();
            return Err(refuse(format!(
                "SHOW {what} is not allowed; allowed: SHOW TABLES, SHOW COLUMNS, SHOW INDEX, SHOW CREATE TABLE, DESCRIBE"
            )));
        }
        let rest = words.get(2..).unwrap_or_default();
        let name: Vec<Ident> = match rest {
            [table] => vec![table.clone()],
            [db, table] => vec![db.clone(), table.clone()],
            [table, kw, db]
                if kw.quote_style.is_none()
                    && matches!(kw.value.to_uppercase().as_str(), "FROM" | "IN") =>
            {
                vec![db.clone(), table.clone()]
            }
            _ => return Err(refuse("use SHOW INDEX FROM <table> [FROM <database>]")),
        };
        self.show_relation(&ObjectName::from(name))
    }

    // -- functions -----------------------------------------------------------

    /// Validates a function name (qualifier and deny-list); returns the
    /// lower-cased unqualified name.
    fn function_name(&self, name: &ObjectName) -> Result<String, Refusal> {
        let parts = idents(name)?;
        let Some(last) = parts.last() else {
            return Err(refuse("empty function name"));
        };
        let last = last.value.to_lowercase();
        match parts.as_slice() {
            [_] => {}
            [schema, _] => {
                let schema = schema.value.to_lowercase();
                let allowed = match self.dialect {
                    Dialect::Postgres => {
                        schema == "pg_catalog"
                            || schema == "information_schema"
                            || (!schema.starts_with("pg_") && self.scope.grants(&schema))
                    }
                    Dialect::MySql => {
                        !matches!(
                            schema.as_str(),
                            "mysql" | "sys" | "performance_schema" | "information_schema"
                        ) && self.scope.grants(&schema)
                    }
                    Dialect::Sqlite => false,
                };
                if !allowed {
                    return Err(self.outside_grant(&schema));
                }
            }
            _ => {
                return Err(refuse(format!(
                    "function name {} has too many parts",
                    clean(&name.to_string())
                )))
            }
        }
        if function_denied(&last) {
            return Err(refuse(format!("function {} is not allowed", clean(&last))));
        }
        Ok(last)
    }

    fn function(&mut self, function: &Function) -> Result<(), Refusal> {
        let name = self.function_name(&function.name)?;
        if let Some(kind) = relation_arg_kind(&name) {
            if let FunctionArguments::List(list) = &function.args {
                if let Some(first) = list.args.first().and_then(arg_expr) {
                    self.relation_literal_arg(first, kind, &name)?;
                }
            }
        }
        Ok(())
    }

    fn table_function(&mut self, name: &ObjectName, args: &[FunctionArg]) -> Result<(), Refusal> {
        let fname = self.function_name(name)?;
        if fname.starts_with("pragma_") {
            if !SQLITE_PRAGMA_FUNCTIONS.contains(&fname.as_str()) {
                return Err(refuse(format!(
                    "{} is not allowed; allowed pragma functions: {}",
                    clean(&fname),
                    SQLITE_PRAGMA_FUNCTIONS.join(", ")
                )));
            }
            // The optional second argument names the attached database.
            if let Some(schema) = args.get(1) {
                let schema = arg_expr(schema).and_then(string_literal);
                match schema {
                    Some(s) if s.to_lowercase() != "temp" && self.scope.grants(&s) => {}
                    Some(s) => return Err(self.outside_grant(&s)),
                    None => {
                        return Err(refuse(format!(
                            "the schema argument of {fname} must be a string literal"
                        )))
                    }
                }
            }
            self.reads_catalog = true;
        }
        Ok(())
    }

    /// First argument of relation-introspection functions and `::regclass`-style
    /// casts: a literal naming a relation must stay inside the grant, and a
    /// numeric oid literal could point anywhere.
    fn relation_literal_arg(
        &self,
        arg: &Expr,
        kind: RelKind,
        context: &str,
    ) -> Result<(), Refusal> {
        let inner = strip_casts(arg);
        if let Expr::Value(v) = inner {
            return match &v.value {
                Value::Number(..) => Err(refuse(format!(
                    "{context}: pass a relation name or an oid column from a filtered catalog read, not a numeric oid"
                ))),
                value => match value_string(value) {
                    Some(text) => self.relation_literal(text, kind, context),
                    None => Ok(()),
                },
            };
        }
        if is_constant(inner) {
            return Err(refuse(format!(
                "{context}: use a plain string literal or a catalog column, not a computed name"
            )));
        }
        Ok(())
    }

    fn relation_literal(&self, text: &str, kind: RelKind, context: &str) -> Result<(), Refusal> {
        let trimmed = text.trim();
        if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse(format!(
                "{context}: pass a relation name, not a numeric oid"
            )));
        }
        let Some(parts) = split_qualified(trimmed) else {
            return Err(refuse(format!("{context}: malformed name literal")));
        };
        let schema = match (kind, parts.as_slice()) {
            (RelKind::Namespace, [schema]) => schema,
            (RelKind::Relation, [_]) => return Ok(()),
            (RelKind::Relation, [schema, _]) => schema,
            _ => return Err(refuse(format!("{context}: use schema.name at most"))),
        };
        if schema == "pg_catalog" || schema == "information_schema" || self.scope.grants(schema) {
            Ok(())
        } else {
            Err(self.outside_grant(schema))
        }
    }

    fn cast(&mut self, data_type: &DataType, expr: &Expr) -> Result<(), Refusal> {
        let kind = match data_type {
            DataType::Regclass => Some(RelKind::Relation),
            DataType::Custom(name, _) => {
                let parts = idents(name)?;
                if let [schema, _] = parts.as_slice() {
                    let schema = schema.value.to_lowercase();
                    if schema != "pg_catalog" && !self.scope.grants(&schema) {
                        return Err(self.outside_grant(&schema));
                    }
                } else if parts.len() > 2 {
                    return Err(refuse("type names with more than two parts are not allowed"));
                }
                parts
                    .last()
                    .and_then(|last| reg_type_kind(&last.value.to_lowercase()))
            }
            _ => None,
        };
        match kind {
            Some(kind) => self.relation_literal_arg(expr, kind, "reg* cast"),
            None => Ok(()),
        }
    }

    fn expr(&mut self, expr: &Expr) -> Result<(), Refusal> {
        match expr {
            Expr::Function(function) => self.function(function),
            Expr::BinaryOp { op, .. } => match op {
                BinaryOperator::Assignment => Err(refuse(
                    "variable assignment (:=) is not allowed: it changes session state",
                )),
                BinaryOperator::PGCustomBinaryOperator(parts) => match parts.as_slice() {
                    [_] => Ok(()),
                    [schema, _] => {
                        let schema = schema.to_lowercase();
                        if schema == "pg_catalog" || self.scope.grants(&schema) {
                            Ok(())
                        } else {
                            Err(self.outside_grant(&schema))
                        }
                    }
                    _ => Err(refuse("operator names with more than two parts are not allowed")),
                },
                _ => Ok(()),
            },
            Expr::Cast {
                data_type, expr, ..
            } => self.cast(data_type, expr),
            _ => Ok(()),
        }
    }

    // -- catalog filters -----------------------------------------------------

    /// Every filter-requiring catalog relation in this SELECT's FROM must be
    /// restricted to granted schemas by a top-level AND-conjunct of WHERE or
    /// of an ON clause that is guaranteed to hold for its rows.
    fn catalog_filters(&mut self, select: &Select) -> Result<(), Refusal> {
        let mut items = Vec::new();
        let mut conjuncts = Vec::new();
        for from in &select.from {
            self.collect_from(from, &mut items, &mut conjuncts)?;
        }
        if items.is_empty() {
            return Ok(());
        }
        if items.len() > MAX_CATALOG_ITEMS {
            return Err(refuse(format!(
                "too many catalog relations in one SELECT (at most {MAX_CATALOG_ITEMS})"
            )));
        }
        self.reads_catalog = true;
        if let Some(selection) = &select.selection {
            split_and(selection, Scope::All, &mut conjuncts);
        }
        // Fixpoint: a filtered relation can filter the ones joined to it.
        loop {
            let mut changed = false;
            for (conjunct, scope) in &conjuncts {
                changed |= self.apply_conjunct(conjunct, *scope, &mut items)?;
            }
            if !changed {
                break;
            }
        }
        match items.iter().find(|item| !item.filtered) {
            Some(item) => Err(self.unfiltered(item.def, &item.alias)),
            None => Ok(()),
        }
    }

    fn unfiltered(&self, def: &CatalogDef, alias: &str) -> Refusal {
        let schema = clean(&self.scope.default_schema);
        let example = if let Some(col) = def.schema_cols.first() {
            format!("{col} = '{schema}'")
        } else if let Some((col, target)) = def.links.first() {
            let alias = clean(alias);
            match target {
                OidOf::Namespace => format!(
                    "{alias}.{col} = '{schema}'::regnamespace, or JOIN pg_namespace n ON n.oid = {alias}.{col} WHERE n.nspname = '{schema}'"
                ),
                OidOf::Type => format!(
                    "JOIN pg_type t ON t.oid = {alias}.{col} WHERE t.typnamespace = '{schema}'::regnamespace"
                ),
                OidOf::Class | OidOf::Proc | OidOf::Constraint | OidOf::Any => format!(
                    "JOIN pg_class c ON c.oid = {alias}.{col} WHERE c.relnamespace = '{schema}'::regnamespace"
                ),
            }
        } else {
            format!("table_schema = '{schema}'")
        };
        refuse(format!(
            "catalog reads must filter on the schema column, e.g. {example} (granted: {})",
            self.scope.granted_list()
        ))
    }

    fn collect_from<'q>(
        &mut self,
        from: &'q TableWithJoins,
        items: &mut Vec<CatItem>,
        conjuncts: &mut Vec<(&'q Expr, Scope)>,
    ) -> Result<(), Refusal> {
        let first = items.len();
        self.collect_factor(&from.relation, items, conjuncts)?;
        for join in &from.joins {
            let before = items.len();
            self.collect_factor(&join.relation, items, conjuncts)?;
            let after = items.len();
            // An ON conjunct holds for every output row in which the relations
            // on the non-preserved side are present.
            let (constraint, scope) = match &join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::StraightJoin(c) => (c, Scope::All),
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => {
                    (c, Scope::Only(before, after))
                }
                JoinOperator::Right(c) | JoinOperator::RightOuter(c) => {
                    (c, Scope::Only(first, before))
                }
                _ => continue,
            };
            if let JoinConstraint::On(on) = constraint {
                split_and(on, scope, conjuncts);
            }
        }
        Ok(())
    }

    fn collect_factor<'q>(
        &mut self,
        factor: &'q TableFactor,
        items: &mut Vec<CatItem>,
        conjuncts: &mut Vec<(&'q Expr, Scope)>,
    ) -> Result<(), Refusal> {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                if let Resolved::Catalog(def) = self.resolve(name)? {
                    let alias = match alias {
                        Some(alias) => alias.name.value.to_lowercase(),
                        None => def.name.to_owned(),
                    };
                    if def.filter {
                        self.catalog_checked += 1;
                    }
                    items.push(CatItem {
                        alias,
                        def,
                        filtered: !def.filter,
                    });
                }
                Ok(())
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.collect_from(table_with_joins, items, conjuncts),
            _ => Ok(()),
        }
    }

    fn apply_conjunct(
        &self,
        conjunct: &Expr,
        scope: Scope,
        items: &mut [CatItem],
    ) -> Result<bool, Refusal> {
        let mut changed = false;
        match strip_nested(conjunct) {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                changed |= self.direct_filter(left, &[right.as_ref()], scope, items)?;
                changed |= self.direct_filter(right, &[left.as_ref()], scope, items)?;
                if let (Some(a), Some(b)) = (col_ref(left), col_ref(right)) {
                    changed |= link(&a, &b, scope, items);
                    changed |= link(&b, &a, scope, items);
                }
            }
            Expr::InList {
                expr,
                list,
                negated: false,
            } => {
                let values: Vec<&Expr> = list.iter().collect();
                changed |= self.direct_filter(expr, &values, scope, items)?;
            }
            Expr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                ..
            } if self.dialect == Dialect::Postgres && is_current_schemas_false(right) => {
                if let Some(col) = col_ref(left) {
                    for index in targets(&col, items) {
                        let item = &mut items[index];
                        if scope.contains(index)
                            && item.def.schema_cols.contains(&col.col.as_str())
                            && !item.filtered
                        {
                            item.filtered = true;
                            changed = true;
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(changed)
    }

    /// `col = v` / `col IN (v, ...)` where col is a schema column of a catalog
    /// item and every v names a granted schema.
    fn direct_filter(
        &self,
        column: &Expr,
        values: &[&Expr],
        scope: Scope,
        items: &mut [CatItem],
    ) -> Result<bool, Refusal> {
        let Some(col) = col_ref(column) else {
            return Ok(false);
        };
        let mut changed = false;
        for index in targets(&col, items) {
            let def = items[index].def;
            let schema_col = def.schema_cols.contains(&col.col.as_str());
            let namespace_col = def.is_namespace_oid_col(&col.col);
            if !schema_col && !namespace_col {
                continue;
            }
            let mut all_granted = !values.is_empty();
            for value in values {
                match self.filter_value(value) {
                    FilterValue::Schema(s) if schema_col => {
                        if !self.scope.grants(&s) {
                            return Err(self.outside_grant(&s));
                        }
                    }
                    FilterValue::Namespace(s) if namespace_col => {
                        if !self.scope.grants(&s) {
                            return Err(self.outside_grant(&s));
                        }
                    }
                    FilterValue::Current if schema_col => {}
                    FilterValue::Schema(_)
                    | FilterValue::Namespace(_)
                    | FilterValue::Current
                    | FilterValue::Other => all_granted = false,
                }
            }
            if all_granted && scope.contains(index) && !items[index].filtered {
                items[index].filtered = true;
                changed = true;
            }
        }
        Ok(changed)
    }

    fn filter_value(&self, expr: &Expr) -> FilterValue {
        match strip_nested(expr) {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => FilterValue::Schema(s.clone()),
                Value::DoubleQuotedString(s) if self.dialect == Dialect::MySql => {
                    FilterValue::Schema(s.clone())
                }
                _ => FilterValue::Other,
            },
            Expr::Function(f) => {
                let name = match idents(&f.name) {
                    Ok(parts) if parts.len() == 1 => parts[0].value.to_lowercase(),
                    _ => return FilterValue::Other,
                };
                let no_args = match &f.args {
                    FunctionArguments::None => true,
                    FunctionArguments::List(list) => list.args.is_empty(),
                    FunctionArguments::Subquery(_) => false,
                };
                let current = match self.dialect {
                    Dialect::Postgres => name == "current_schema",
                    Dialect::MySql => name == "database" || name == "schema",
                    Dialect::Sqlite => false,
                };
                if current && no_args && f.over.is_none() && f.filter.is_none() {
                    FilterValue::Current
                } else {
                    FilterValue::Other
                }
            }
            // `current_schema` without parentheses is the SQL-standard function.
            Expr::Identifier(id)
                if self.dialect == Dialect::Postgres
                    && id.quote_style.is_none()
                    && id.value.eq_ignore_ascii_case("current_schema") =>
            {
                FilterValue::Current
            }
            Expr::Cast {
                expr, data_type, ..
            } => {
                let is_regnamespace = match data_type {
                    DataType::Custom(name, _) => idents(name).is_ok_and(|parts| {
                        parts
                            .last()
                            .is_some_and(|p| p.value.eq_ignore_ascii_case("regnamespace"))
                    }),
                    _ => false,
                };
                match (is_regnamespace, strip_nested(expr)) {
                    (true, Expr::Value(v)) => match &v.value {
                        Value::SingleQuotedString(s) => match split_qualified(s.trim()) {
                            Some(parts) if parts.len() == 1 => {
                                FilterValue::Namespace(parts.concat())
                            }
                            _ => FilterValue::Other,
                        },
                        _ => FilterValue::Other,
                    },
                    _ => FilterValue::Other,
                }
            }
            _ => FilterValue::Other,
        }
    }
}

impl Visitor for Guard<'_> {
    type Break = Refusal;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Refusal> {
        flow(self.enter_query(query))
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<Refusal> {
        self.ctes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, _relation: &ObjectName) -> ControlFlow<Refusal> {
        self.relations_seen += 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Refusal> {
        flow(self.table_factor(factor))
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Refusal> {
        flow(self.expr(expr))
    }

    /// The walk starts at a `Query`, so every statement it meets is nested
    /// (e.g. the DELETE of a writable CTE).
    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Refusal> {
        ControlFlow::Break(nested_dml(&statement_label(statement)))
    }
}

fn flow(result: Result<(), Refusal>) -> ControlFlow<Refusal> {
    match result {
        Ok(()) => ControlFlow::Continue(()),
        Err(refusal) => ControlFlow::Break(refusal),
    }
}

fn nested_dml(kind: &str) -> Refusal {
    refuse(format!(
        "data-modifying {kind} inside a query is not allowed"
    ))
}

fn explain_analyze() -> Refusal {
    refuse("EXPLAIN ANALYZE executes the statement and is not allowed")
}

fn pragma_as_table(name: &str) -> Refusal {
    refuse(format!(
        "call {} as a table-valued function with arguments, e.g. pragma_table_info('orders')",
        clean(name)
    ))
}

fn explain_option(option: &UtilityOption) -> Result<(), Refusal> {
    let name = option.name.value.to_lowercase();
    match name.as_str() {
        "analyze" => return Err(explain_analyze()),
        "verbose" | "costs" | "settings" | "buffers" | "summary" | "generic_plan" | "memory"
        | "format" => {}
        "timing" | "wal" | "serialize" => {
            return Err(refuse(format!(
                "EXPLAIN option {} only applies to EXPLAIN ANALYZE and is not allowed",
                name.to_uppercase()
            )))
        }
        _ => {
            return Err(refuse(format!(
                "EXPLAIN option {} is not allowed (allowed: VERBOSE, COSTS, SETTINGS, BUFFERS, SUMMARY, GENERIC_PLAN, MEMORY, FORMAT)",
                clean(&name.to_uppercase())
            )))
        }
    }
    match &option.arg {
        None => Ok(()),
        Some(Expr::Identifier(_)) => Ok(()),
        Some(Expr::Value(v))
            if matches!(
                v.value,
                Value::Boolean(_) | Value::Number(..) | Value::SingleQuotedString(_)
            ) =>
        {
            Ok(())
        }
        Some(_) => Err(refuse(format!(
            "EXPLAIN option {} takes a plain value",
            name.to_uppercase()
        ))),
    }
}

fn dml_kind(body: &SetExpr) -> Option<&'static str> {
    match body {
        SetExpr::Insert(_) => Some("INSERT"),
        SetExpr::Update(_) => Some("UPDATE"),
        SetExpr::Delete(_) => Some("DELETE"),
        SetExpr::Merge(_) => Some("MERGE"),
        SetExpr::Query(query) => dml_kind(&query.body),
        SetExpr::Select(_) | SetExpr::SetOperation { .. } | SetExpr::Values(_) | SetExpr::Table(_) => {
            None
        }
    }
}

/// "CREATE TABLE" for `Statement::CreateTable`, etc.: the variant name from the
/// derived Debug output, stopped after the first word so it stays cheap.
fn statement_label(statement: &Statement) -> String {
    if let Statement::StartTransaction { begin: true, .. } = statement {
        return "BEGIN".to_owned();
    }
    let mut sink = FirstIdent::default();
    let _ = write!(sink, "{statement:?}");
    let mut label = String::new();
    for (i, ch) in sink.0.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            label.push(' ');
        }
        label.push(ch.to_ascii_uppercase());
    }
    if label.is_empty() {
        "this".to_owned()
    } else {
        label
    }
}

#[derive(Default)]
struct FirstIdent(String, bool);

impl fmt::Write for FirstIdent {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.1 {
            return Err(fmt::Error);
        }
        for ch in s.chars() {
            if ch.is_ascii_alphanumeric() && self.0.len() < 40 {
                self.0.push(ch);
            } else {
                self.1 = true;
                return Err(fmt::Error);
            }
        }
        Ok(())
    }
}

/// Makes user-derived text safe for a one-line message.
fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(80)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > 80 {
        out.push('…');
    }
    out
}

fn idents(name: &ObjectName) -> Result<Vec<&Ident>, Refusal> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Ok(ident),
            ObjectNamePart::Function(_) => Err(refuse("computed object names are not allowed")),
        })
        .collect()
}

fn arg_expr(arg: &FunctionArg) -> Option<&Expr> {
    let arg = match arg {
        FunctionArg::Named { arg, .. }
        | FunctionArg::ExprNamed { arg, .. }
        | FunctionArg::Unnamed(arg) => arg,
    };
    match arg {
        FunctionArgExpr::Expr(expr) => Some(expr),
        FunctionArgExpr::QualifiedWildcard(_) | FunctionArgExpr::Wildcard => None,
    }
}

fn value_string(value: &Value) -> Option<&str> {
    match value {
        Value::SingleQuotedString(s)
        | Value::DoubleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::NationalStringLiteral(s) => Some(s),
        Value::DollarQuotedString(d) => Some(&d.value),
        _ => None,
    }
}

fn string_literal(expr: &Expr) -> Option<String> {
    match strip_nested(expr) {
        Expr::Value(v) => value_string(&v.value).map(str::to_owned),
        _ => None,
    }
}

fn strip_nested(mut expr: &Expr) -> &Expr {
    while let Expr::Nested(inner) = expr {
        expr = inner;
    }
    expr
}

fn strip_casts(mut expr: &Expr) -> &Expr {
    loop {
        match expr {
            Expr::Nested(inner) => expr = inner,
            Expr::Cast { expr: inner, .. } => expr = inner,
            _ => return expr,
        }
    }
}

/// True when `expr` is built only from literals (so a name could be assembled
/// out of sight of the literal checks).
fn is_constant(expr: &Expr) -> bool {
    match strip_casts(expr) {
        Expr::Value(_) => true,
        Expr::BinaryOp { left, right, .. } => is_constant(left) && is_constant(right),
        Expr::Function(f) => match &f.args {
            FunctionArguments::None => false,
            FunctionArguments::Subquery(_) => false,
            FunctionArguments::List(list) => {
                !list.args.is_empty()
                    && list
                        .args
                        .iter()
                        .all(|a| arg_expr(a).is_some_and(is_constant))
            }
        },
        _ => false,
    }
}

/// Splits `schema.name` / `"Schema"."name"` (as used in regclass literals);
/// unquoted parts are lower-cased. None when malformed.
fn split_qualified(text: &str) -> Option<Vec<String>> {
    let text = match text.find('(') {
        Some(i) => text.get(..i)?,
        None => text,
    };
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted_part = false;
    while let Some(ch) = chars.next() {
        match ch {
            '"' => {
                quoted_part = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            current.push('"');
                        }
                        Some('"') => break,
                        Some(c) => current.push(c),
                        None => return None,
                    }
                }
            }
            '.' => {
                parts.push(finish_part(&current, quoted_part));
                current.clear();
                quoted_part = false;
            }
            c => current.push(c),
        }
    }
    parts.push(finish_part(&current, quoted_part));
    if parts.iter().any(String::is_empty) {
        return None;
    }
    Some(parts)
}

fn finish_part(part: &str, quoted: bool) -> String {
    if quoted {
        part.to_lowercase()
    } else {
        part.trim().to_lowercase()
    }
}

fn is_current_schemas_false(expr: &Expr) -> bool {
    let Expr::Function(f) = strip_nested(expr) else {
        return false;
    };
    let named = idents(&f.name).is_ok_and(|parts| {
        parts.len() == 1 && parts[0].value.eq_ignore_ascii_case("current_schemas")
    });
    let FunctionArguments::List(list) = &f.args else {
        return false;
    };
    named
        && list.args.len() == 1
        && list.args.first().and_then(arg_expr).is_some_and(|a| {
            matches!(strip_nested(a), Expr::Value(v) if v.value == Value::Boolean(false))
        })
}

// ---------------------------------------------------------------------------
// Catalog filter bookkeeping
// ---------------------------------------------------------------------------

enum Resolved {
    Cte,
    User,
    Catalog(&'static CatalogDef),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RelKind {
    Relation,
    Namespace,
}

struct CatItem {
    alias: String,
    def: &'static CatalogDef,
    filtered: bool,
}

/// Which catalog items a conjunct may mark as filtered: `Only(a, b)` is the
/// index range of the nullable side of an outer join.
#[derive(Debug, Clone, Copy)]
enum Scope {
    All,
    Only(usize, usize),
}

impl Scope {
    fn contains(self, index: usize) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(start, end) => (start..end).contains(&index),
        }
    }
}

enum FilterValue {
    /// A string literal naming a schema.
    Schema(String),
    /// `'x'::regnamespace`.
    Namespace(String),
    /// current_schema() / DATABASE(): the caller points these at a granted schema.
    Current,
    Other,
}

struct ColRef {
    qualifier: Option<String>,
    col: String,
}

fn col_ref(expr: &Expr) -> Option<ColRef> {
    match strip_casts(expr) {
        Expr::Identifier(id) => Some(ColRef {
            qualifier: None,
            col: id.value.to_lowercase(),
        }),
        Expr::CompoundIdentifier(ids) if ids.len() >= 2 => {
            let col = ids.last()?.value.to_lowercase();
            let qualifier = ids.get(ids.len() - 2)?.value.to_lowercase();
            Some(ColRef {
                qualifier: Some(qualifier),
                col,
            })
        }
        _ => None,
    }
}

fn targets(col: &ColRef, items: &[CatItem]) -> Vec<usize> {
    items
        .iter()
        .enumerate()
        .filter(|(_, item)| match &col.qualifier {
            Some(q) => item.alias == *q,
            None => item.def.has_col(&col.col),
        })
        .map(|(i, _)| i)
        .collect()
}

/// `a.col = b.col2` where b is filtered: a is filtered when both are schema
/// columns, or a's column references the oid of b's kind of object.
fn link(a: &ColRef, b: &ColRef, scope: Scope, items: &mut [CatItem]) -> bool {
    let mut changed = false;
    let others = targets(b, items);
    for i in targets(a, items) {
        if items[i].filtered || !scope.contains(i) {
            continue;
        }
        let def_a = items[i].def;
        let joined = others.iter().any(|&j| {
            let other = &items[j];
            if j == i || !other.filtered {
                return false;
            }
            let schema_to_schema = def_a.schema_cols.contains(&a.col.as_str())
                && other.def.schema_cols.contains(&b.col.as_str());
            let oid_link = b.col == "oid"
                && def_a.links.iter().any(|(col, target)| {
                    *col == a.col
                        && other
                            .def
                            .oid
                            .is_some_and(|kind| *target == OidOf::Any || kind == *target)
                });
            // A self-join on the same kind of object: `c2.oid = c.oid`.
            let same_object =
                a.col == "oid" && b.col == "oid" && def_a.oid.is_some() && def_a.oid == other.def.oid;
            schema_to_schema || oid_link || same_object
        });
        if joined {
            items[i].filtered = true;
            changed = true;
        }
    }
    changed
}

fn split_and<'q>(expr: &'q Expr, scope: Scope, out: &mut Vec<(&'q Expr, Scope)>) {
    let mut stack = vec![expr];
    while let Some(expr) = stack.pop() {
        match expr {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                stack.push(right);
                stack.push(left);
            }
            Expr::Nested(inner) => stack.push(inner),
            other => out.push((other, scope)),
        }
    }
}

// ---------------------------------------------------------------------------
// Policy data
// ---------------------------------------------------------------------------

/// What kind of catalog row an oid column points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OidOf {
    Namespace,
    Class,
    Type,
    Proc,
    Constraint,
    /// Any object (pg_description.objoid).
    Any,
}

/// An allow-listed catalog relation.
struct CatalogDef {
    schema: &'static str,
    name: &'static str,
    /// Columns holding a schema name.
    schema_cols: &'static [&'static str],
    /// Columns holding the oid of another catalog row.
    links: &'static [(&'static str, OidOf)],
    /// What this relation's own `oid` column identifies.
    oid: Option<OidOf>,
    /// Whether reads must be filtered to granted schemas.
    filter: bool,
}

impl CatalogDef {
    fn has_col(&self, col: &str) -> bool {
        self.schema_cols.contains(&col)
            || self.links.iter().any(|(c, _)| *c == col)
            || (col == "oid" && self.oid.is_some())
    }

    /// Columns that can be compared to `'x'::regnamespace`.
    fn is_namespace_oid_col(&self, col: &str) -> bool {
        self.links
            .iter()
            .any(|(c, target)| *c == col && *target == OidOf::Namespace)
            || (col == "oid" && self.oid == Some(OidOf::Namespace))
    }
}

const fn info(name: &'static str, schema_cols: &'static [&'static str]) -> CatalogDef {
    CatalogDef {
        schema: "information_schema",
        name,
        schema_cols,
        links: &[],
        oid: None,
        filter: true,
    }
}

const fn pg(
    name: &'static str,
    schema_cols: &'static [&'static str],
    links: &'static [(&'static str, OidOf)],
    oid: Option<OidOf>,
) -> CatalogDef {
    CatalogDef {
        schema: "pg_catalog",
        name,
        schema_cols,
        links,
        oid,
        filter: true,
    }
}

const fn global(schema: &'static str, name: &'static str) -> CatalogDef {
    CatalogDef {
        schema,
        name,
        schema_cols: &[],
        links: &[],
        oid: None,
        filter: false,
    }
}

const SCHEMANAME: &[&str] = &["schemaname"];

/// Postgres: schema-scoped catalogs (filter required) plus two global,
/// harmless ones. Deliberately absent: pg_authid, pg_shadow, pg_user*,
/// pg_roles, pg_hba_file_rules, pg_file_settings, pg_settings (custom GUCs can
/// hold secrets), pg_stat_activity, pg_stat_statements, pg_locks,
/// pg_largeobject*, pg_subscription, pg_db_role_setting, pg_replication_*,
/// pg_database.
static PG_CATALOGS: &[CatalogDef] = &[
    info("tables", &["table_schema"]),
    info("columns", &["table_schema"]),
    info("views", &["table_schema"]),
    info("table_constraints", &["constraint_schema", "table_schema"]),
    info("key_column_usage", &["constraint_schema", "table_schema"]),
    // These two can point at tables of other schemas: filter on the owner.
    info("constraint_column_usage", &["constraint_schema"]),
    info("constraint_table_usage", &["constraint_schema"]),
    info("referential_constraints", &["constraint_schema"]),
    info("check_constraints", &["constraint_schema"]),
    info("schemata", &["schema_name"]),
    info("routines", &["routine_schema", "specific_schema"]),
    info("parameters", &["specific_schema"]),
    info("sequences", &["sequence_schema"]),
    info("triggers", &["trigger_schema", "event_object_schema"]),
    info("element_types", &["object_schema"]),
    info("view_table_usage", &["view_schema"]),
    info("view_column_usage", &["view_schema"]),
    info("domains", &["domain_schema"]),
    pg("pg_namespace", &["nspname"], &[], Some(OidOf::Namespace)),
    pg(
        "pg_class",
        &[],
        &[("relnamespace", OidOf::Namespace)],
        Some(OidOf::Class),
    ),
    pg(
        "pg_type",
        &[],
        &[("typnamespace", OidOf::Namespace), ("typrelid", OidOf::Class)],
        Some(OidOf::Type),
    ),
    pg(
        "pg_proc",
        &[],
        &[("pronamespace", OidOf::Namespace)],
        Some(OidOf::Proc),
    ),
    pg(
        "pg_constraint",
        &[],
        &[("connamespace", OidOf::Namespace), ("conrelid", OidOf::Class)],
        Some(OidOf::Constraint),
    ),
    pg("pg_attribute", &[], &[("attrelid", OidOf::Class)], None),
    pg(
        "pg_index",
        &[],
        &[("indrelid", OidOf::Class), ("indexrelid", OidOf::Class)],
        None,
    ),
    pg("pg_attrdef", &[], &[("adrelid", OidOf::Class)], None),
    pg("pg_description", &[], &[("objoid", OidOf::Any)], None),
    pg(
        "pg_inherits",
        &[],
        &[("inhrelid", OidOf::Class), ("inhparent", OidOf::Class)],
        None,
    ),
    pg("pg_enum", &[], &[("enumtypid", OidOf::Type)], None),
    pg("pg_trigger", &[], &[("tgrelid", OidOf::Class)], None),
    pg("pg_sequence", &[], &[("seqrelid", OidOf::Class)], None),
    pg("pg_indexes", SCHEMANAME, &[], None),
    pg("pg_tables", SCHEMANAME, &[], None),
    pg("pg_views", SCHEMANAME, &[], None),
    pg("pg_matviews", SCHEMANAME, &[], None),
    pg("pg_sequences", SCHEMANAME, &[], None),
    pg("pg_stats", SCHEMANAME, &[], None),
    pg("pg_stat_user_tables", SCHEMANAME, &[], None),
    pg("pg_stat_user_indexes", SCHEMANAME, &[], None),
    pg("pg_statio_user_tables", SCHEMANAME, &[], None),
    pg("pg_statio_user_indexes", SCHEMANAME, &[], None),
    pg("pg_stat_all_tables", SCHEMANAME, &[], None),
    pg("pg_stat_all_indexes", SCHEMANAME, &[], None),
    global("pg_catalog", "pg_am"),
    global("pg_catalog", "pg_extension"),
];

/// MySQL/MariaDB: information_schema views that describe one database's
/// objects. Everything in mysql.*, performance_schema.*, sys.* and the
/// server-wide information_schema views (processlist, user_privileges...) is
/// refused.
static MYSQL_CATALOGS: &[CatalogDef] = &[
    info("tables", &["table_schema"]),
    info("columns", &["table_schema"]),
    info("statistics", &["table_schema", "index_schema"]),
    info("key_column_usage", &["table_schema", "constraint_schema"]),
    info("table_constraints", &["table_schema", "constraint_schema"]),
    info("referential_constraints", &["constraint_schema"]),
    info("views", &["table_schema"]),
    info("schemata", &["schema_name"]),
    info("routines", &["routine_schema"]),
    info("parameters", &["specific_schema"]),
    info("partitions", &["table_schema"]),
    info("check_constraints", &["constraint_schema"]),
    info("triggers", &["trigger_schema", "event_object_schema"]),
];

/// SQLite: only `main` is reachable, so its schema tables need no filter.
/// sqlite_dbpage / sqlite_dbdata (raw page access) are refused.
static SQLITE_CATALOGS: &[CatalogDef] = &[
    global("main", "sqlite_master"),
    global("main", "sqlite_schema"),
    global("main", "sqlite_temp_master"),
    global("main", "sqlite_temp_schema"),
    global("main", "sqlite_sequence"),
    global("main", "sqlite_stat1"),
    global("main", "sqlite_stat4"),
];

const SQLITE_PRAGMA_FUNCTIONS: &[&str] = &[
    "pragma_table_info",
    "pragma_table_xinfo",
    "pragma_index_list",
    "pragma_index_info",
    "pragma_index_xinfo",
    "pragma_foreign_key_list",
];

fn catalogs(dialect: Dialect) -> &'static [CatalogDef] {
    match dialect {
        Dialect::Postgres => PG_CATALOGS,
        Dialect::MySql => MYSQL_CATALOGS,
        Dialect::Sqlite => SQLITE_CATALOGS,
    }
}

fn catalog_summary(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => {
            "information_schema.{tables, columns, views, table_constraints, key_column_usage, ...} and pg_class, pg_namespace, pg_attribute, pg_index, pg_indexes, pg_tables, pg_stats, pg_stat_user_tables, ... filtered on your schema"
        }
        Dialect::MySql => {
            "information_schema.{tables, columns, statistics, key_column_usage, table_constraints, referential_constraints, views, schemata, routines, partitions, check_constraints} filtered on your database"
        }
        Dialect::Sqlite => "sqlite_master/sqlite_schema and pragma_table_info(...)-style functions",
    }
}

/// Postgres `pg_*` functions that only read and are useful to investigators.
/// Every other `pg_*` function is refused: that family holds pg_sleep*,
/// pg_read_*file, pg_ls_*, pg_stat_file, advisory locks, pg_notify,
/// backend signalling, config reload, WAL/backup/replication control,
/// pg_stat_reset*, pg_current_xact_id (assigns an xid), pg_export_snapshot...
const PG_ALLOWED: &[&str] = &[
    "pg_typeof",
    "pg_size_pretty",
    "pg_size_bytes",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_column_size",
    "pg_column_compression",
    "pg_get_indexdef",
    "pg_get_constraintdef",
    "pg_get_viewdef",
    "pg_get_expr",
    "pg_get_triggerdef",
    "pg_get_ruledef",
    "pg_get_functiondef",
    "pg_get_function_arguments",
    "pg_get_function_identity_arguments",
    "pg_get_function_result",
    "pg_get_partkeydef",
    "pg_get_serial_sequence",
    "pg_get_statisticsobjdef",
    "pg_get_userbyid",
    "pg_get_keywords",
    "pg_encoding_to_char",
    "pg_char_to_encoding",
    "pg_client_encoding",
    "pg_input_is_valid",
    "pg_input_error_info",
    "pg_table_is_visible",
    "pg_type_is_visible",
    "pg_function_is_visible",
    "pg_index_column_has_property",
    "pg_index_has_property",
    "pg_indexam_has_property",
    "pg_backend_pid",
    "pg_postmaster_start_time",
    "pg_conf_load_time",
    "pg_is_in_recovery",
    "pg_last_xact_replay_timestamp",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_current_wal_lsn",
    "pg_wal_lsn_diff",
    "pg_blocking_pids",
    "pg_jit_available",
    "pg_partition_tree",
    "pg_partition_root",
    "pg_partition_ancestors",
    "pg_trigger_depth",
    "pg_has_role",
    "pg_sequence_last_value",
];

/// Exact names refused in every dialect (deny-list; see the module docs).
const DENIED_FUNCTIONS: &[&str] = &[
    // Postgres: session state, sequences, xids, SQL-text execution, writes.
    "set_config",
    "setseed",
    "nextval",
    "setval",
    "txid_current",
    "loread",
    "lowrite",
    "ts_stat",
    "ts_rewrite",
    "connectby",
    "xpath_table",
    "http",
    "gin_clean_pending_list",
    "brin_summarize_new_values",
    "brin_summarize_range",
    "brin_desummarize_range",
    "copy",
    // MySQL / MariaDB: sleeping, locks, file reads, replication waits, session state.
    "sleep",
    "benchmark",
    "load_file",
    "get_lock",
    "release_lock",
    "release_all_locks",
    "is_free_lock",
    "is_used_lock",
    "source_pos_wait",
    "wait_for_executed_gtid_set",
    "wait_until_sql_thread_after_gtids",
    "last_insert_id",
    // SQLite (and its CLI/extension functions): extensions, files, SQL-text execution.
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
    "fsdir",
    "zipfile",
    "zipfile_cds",
    "sqlar_compress",
    "sqlar_uncompress",
    "sha3_query",
    "eval",
    "sqlite_dbpage",
    "sqlite_dbdata",
    "sqlite_dbptr",
    // Other engines' escape hatches, in case a driver passes them through.
    "xp_cmdshell",
    "openrowset",
    "opendatasource",
    "openquery",
];

/// Name prefixes refused in every dialect.
const DENIED_PREFIXES: &[&str] = &[
    "lo_",            // Postgres large objects: server file import/export
    "dblink",         // remote connections, remote SQL
    "postgres_fdw",   // foreign server connections
    "binary_upgrade_", // catalog surgery
    "query_to_xml",   // these execute SQL text or dump whole tables/schemas
    "query_to_json",
    "cursor_to_xml",
    "table_to_xml",
    "schema_to_xml",
    "database_to_xml",
    "crosstab",       // tablefunc: executes SQL text
    "http_",          // pgsql-http: network access
    "autoprewarm",
    "run_command_on_", // citus: SQL on workers
    "citus_",
    "master_",        // MySQL master_pos_wait/master_gtid_wait, citus master_*
    "sys_",           // lib_mysqludf_sys: sys_exec, sys_eval...
    "keyring_",       // MySQL keyring UDFs
    "audit_log",
    "version_tokens",
    "group_replication",
    "asynchronous_connection",
    "service_get_",   // MySQL locking service
    "mysql_firewall",
    "set_firewall",
    "shell_",         // SQLite CLI helpers
];

fn function_denied(name: &str) -> bool {
    if name.starts_with("pg_") {
        return !PG_ALLOWED.contains(&name);
    }
    DENIED_FUNCTIONS.contains(&name) || DENIED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Functions whose first argument names a relation (or schema): a literal
/// there must stay inside the grant.
fn relation_arg_kind(name: &str) -> Option<RelKind> {
    match name {
        "pg_relation_size"
        | "pg_total_relation_size"
        | "pg_table_size"
        | "pg_indexes_size"
        | "pg_get_indexdef"
        | "pg_get_constraintdef"
        | "pg_get_viewdef"
        | "pg_get_triggerdef"
        | "pg_get_ruledef"
        | "pg_get_functiondef"
        | "pg_get_function_arguments"
        | "pg_get_function_identity_arguments"
        | "pg_get_function_result"
        | "pg_get_partkeydef"
        | "pg_get_serial_sequence"
        | "pg_get_statisticsobjdef"
        | "pg_partition_tree"
        | "pg_partition_root"
        | "pg_partition_ancestors"
        | "pg_sequence_last_value"
        | "pg_table_is_visible"
        | "pg_type_is_visible"
        | "pg_function_is_visible"
        | "obj_description"
        | "col_description"
        | "to_regclass"
        | "to_regproc"
        | "to_regprocedure"
        | "to_regtype" => Some(RelKind::Relation),
        "to_regnamespace" => Some(RelKind::Namespace),
        _ => None,
    }
}

fn reg_type_kind(type_name: &str) -> Option<RelKind> {
    match type_name {
        "regclass" | "regproc" | "regprocedure" | "regtype" | "regoper" | "regoperator"
        | "regcollation" | "regconfig" | "regdictionary" => Some(RelKind::Relation),
        "regnamespace" => Some(RelKind::Namespace),
        _ => None,
    }
}

#[cfg(test)]
mod tests {}
