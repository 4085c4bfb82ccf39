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
//!    comment or a string (`--`/`/*` glued inside an operator such as `#--`,
//!    MySQL `--<tab>`, backslashes in MySQL strings whose meaning depends on
//!    `sql_mode`, odd dollar quotes). If the guard and the server could see
//!    different statements, the guard's verdict is worthless, so those are
//!    refused. Stacked statements are refused here (any `;` but one trailing),
//!    as is any first word other than SELECT/WITH/VALUES/TABLE/EXPLAIN/SHOW/
//!    DESCRIBE/`(`, and a denied function name followed by `(` anywhere.
//! 2. **One statement, fully parsed.** The parser must consume the whole
//!    text as one statement (sqlparser would otherwise stop silently at a
//!    trailing `END`), and every identifier of the input must still be in the
//!    re-rendered AST, so the walk below judges all of what the server runs.
//! 3. **Statement allow-list.** Only queries (SELECT, WITH … SELECT, set
//!    operations, VALUES, TABLE), EXPLAIN without ANALYZE, and for MySQL a few
//!    SHOW/DESCRIBE forms. Everything else, including whatever sqlparser learns
//!    to parse in the future, is refused by default.
//! 4. **Whole-AST walk** (sqlparser's derived `Visit`, so no node type is
//!    forgotten): nested data-modifying statements (writable CTEs), `SELECT …
//!    INTO`, locking clauses, variable assignment, functions, relations.
//!    Counters cross-check that every relation, catalog read and oid probe the
//!    visitor meets was judged in its own SELECT.
//! 5. **Functions: a deny-list.** Legitimate investigation queries use hundreds
//!    of built-ins and the squads' own functions, so an allow-list would be
//!    useless; instead the known families that sleep, lock, write, read files,
//!    execute SQL text or change session state are refused (for Postgres every
//!    `pg_*` function except a short allow-list of read-only helpers).
//! 6. **Relations: an allow-list of schemas.** Every table must resolve to a
//!    granted schema or to an allow-listed catalog relation; per-schema
//!    catalogs must be filtered to granted schemas (`table_schema = 'app'`,
//!    `c.relnamespace = 'app'::regnamespace`, or a join to a filtered one).
//!    Functions and casts that turn an oid into another object's name or
//!    definition (`pg_get_viewdef`, `::regclass`, `format_type`...) only take
//!    a literal inside the grant or a column of such a filtered catalog read,
//!    so `generate_series` cannot enumerate other schemas through them.
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
    ArrayElemTypeDef, BinaryOperator, DataType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, Query,
    Select, SetExpr, ShowCreateObject, ShowStatementFilter, ShowStatementFilterPosition,
    ShowStatementOptions, Statement, Table, TableFactor, TableWithJoins, UtilityOption, Value,
    Visit, Visitor,
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
    let lexed = lex(dialect, sql)?;
    if lexed.structure <= INLINE_MAX_STRUCTURE && lexed.paren_depth <= INLINE_MAX_PARENS {
        // Shallow input needs little stack: check it here and skip the hop to a
        // big-stack worker. A parser panic still becomes a refusal.
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_lexed(dialect, sql, &lexed, scope)
        }))
        .unwrap_or_else(|_| Err(pool::parser_failed(dialect)));
    }
    pool::run(dialect, sql, scope)
}

/// Inputs at most this structured are checked on the caller's thread: at ~16 KiB
/// of stack per level in unoptimised builds, they stay under 1 MiB, well inside
/// the 2 MiB of a tokio worker.
const INLINE_MAX_STRUCTURE: usize = 48;
const INLINE_MAX_PARENS: usize = 12;

/// Checks run on a few long-lived threads with a large stack: sqlparser recurses
/// deeply on nested input, and a fresh thread per check would cost more than the
/// check itself. A parser panic on malformed input is caught and becomes a
/// refusal; the worker survives it.
mod pool {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::{channel, sync_channel, Sender, SyncSender};
    use std::sync::{Mutex, OnceLock};

    use super::{
        check_on_this_thread, refuse, Approved, Dialect, Refusal, SqlScope, GUARD_STACK_BYTES,
    };

    const WORKERS: usize = 2;

    struct Job {
        dialect: Dialect,
        sql: String,
        scope: SqlScope,
        reply: SyncSender<Result<Approved, Refusal>>,
    }

    static POOL: OnceLock<Vec<Mutex<Sender<Job>>>> = OnceLock::new();
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    fn start() -> Vec<Mutex<Sender<Job>>> {
        (0..WORKERS)
            .filter_map(|i| {
                let (tx, rx) = channel::<Job>();
                std::thread::Builder::new()
                    .name(format!("sql-guard-{i}"))
                    .stack_size(GUARD_STACK_BYTES)
                    .spawn(move || {
                        for job in rx {
                            let verdict = catch_unwind(AssertUnwindSafe(|| {
                                check_on_this_thread(job.dialect, &job.sql, &job.scope)
                            }))
                            .unwrap_or_else(|_| Err(parser_failed(job.dialect)));
                            let _ = job.reply.send(verdict);
                        }
                    })
                    .ok()
                    .map(|_| Mutex::new(tx))
            })
            .collect()
    }

    pub(super) fn parser_failed(dialect: Dialect) -> Refusal {
        // sqlparser has a few `unwrap`s on malformed input (e.g. MySQL `1 DIV`);
        // a panic there is a parse failure, not a crash.
        refuse(format!("could not parse SQL for {dialect}: the parser failed on this input; simplify the query"))
    }

    pub(super) fn run(dialect: Dialect, sql: &str, scope: &SqlScope) -> Result<Approved, Refusal> {
        let pool = POOL.get_or_init(start);
        if pool.is_empty() {
            return Err(refuse("could not start the SQL checker; try again"));
        }
        let (reply, verdict) = sync_channel(1);
        let job = Job {
            dialect,
            sql: sql.to_owned(),
            scope: scope.clone(),
            reply,
        };
        let slot = &pool[NEXT.fetch_add(1, Ordering::Relaxed) % pool.len()];
        let sent = match slot.lock() {
            Ok(sender) => sender.send(job).is_ok(),
            Err(poisoned) => poisoned.into_inner().send(job).is_ok(),
        };
        if !sent {
            return Err(refuse("the SQL checker stopped; try again"));
        }
        verdict
            .recv()
            .unwrap_or_else(|_| Err(parser_failed(dialect)))
    }
}

fn check_on_this_thread(
    dialect: Dialect,
    sql: &str,
    scope: &SqlScope,
) -> Result<Approved, Refusal> {
    let lexed = lex(dialect, sql)?;
    check_lexed(dialect, sql, &lexed, scope)
}

fn check_lexed(
    dialect: Dialect,
    sql: &str,
    lexed: &Lexed,
    scope: &SqlScope,
) -> Result<Approved, Refusal> {
    let Some(text) = sql.get(lexed.start..lexed.end) else {
        return Err(refuse(format!(
            "could not parse SQL for {dialect}: token positions could not be mapped"
        )));
    };
    let statement = parse_one(dialect, text, &lexed.words)?;
    nothing_dropped(dialect, text, &statement)?;
    let mut guard = Guard::new(dialect, scope);
    let kind = guard.statement(&statement)?;
    Ok(Approved {
        kind,
        sql: text.to_owned(),
        reads_catalog: guard.reads_catalog,
    })
}

/// Parses exactly one statement and requires the parser to have consumed the
/// whole text. (sqlparser's `parse_sql` stops silently at an `END` keyword
/// after a statement, so `SELECT * FROM t END WHERE sleep(5)`, where MySQL
/// reads END as an alias, would otherwise be judged by its first half.)
fn parse_one(dialect: Dialect, text: &str, words: &[String]) -> Result<Statement, Refusal> {
    let parser_dialect = dialect.parser_dialect();
    let failed = |e: sqlparser::parser::ParserError| parse_refusal(dialect, &e.to_string(), words);
    let mut parser = Parser::new(parser_dialect.as_ref())
        .try_with_sql(text)
        .map_err(failed)?;
    let statement = parser.parse_statement().map_err(failed)?;
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return Err(refuse(format!(
            "could not parse SQL for {dialect}: unexpected `{}` after the end of the statement",
            clean(&rest.token.to_string())
        )));
    }
    Ok(statement)
}

/// Every identifier of the input must survive into the AST: re-rendering the
/// statement must mention each non-keyword word at least as often as the
/// input does. This catches parser paths that consume input without keeping
/// it (the walk can only judge what is in the AST).
fn nothing_dropped(dialect: Dialect, text: &str, statement: &Statement) -> Result<(), Refusal> {
    let rendered = statement.to_string();
    let mut wanted = identifier_words(dialect, text);
    let mut have = identifier_words(dialect, &rendered);
    wanted.sort();
    have.sort();
    let mut have = have.into_iter().peekable();
    for word in wanted {
        loop {
            match have.peek() {
                Some(h) if *h < word => {
                    have.next();
                }
                Some(h) if *h == word => {
                    have.next();
                    break;
                }
                _ => {
                    return Err(refuse(format!(
                    "could not parse SQL for {dialect}: `{}` is not understood in this position",
                    clean(&word)
                )))
                }
            }
        }
    }
    Ok(())
}

fn identifier_words(dialect: Dialect, text: &str) -> Vec<String> {
    let parser_dialect = dialect.parser_dialect();
    let Ok(tokens) = Tokenizer::new(parser_dialect.as_ref(), text).tokenize() else {
        return Vec::new();
    };
    tokens
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) if w.quote_style.is_some() => Some(w.value),
            Token::Word(w) if w.keyword == Keyword::NoKeyword => Some(w.value.to_lowercase()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Layer 1: raw text and token stream
// ---------------------------------------------------------------------------

struct Lexed {
    /// Byte range of the statement to run: from the first token that is not
    /// plain whitespace to the end of the last code or literal token before
    /// the optional trailing `;`. Trimming by token keeps e.g. a MySQL `-- `
    /// comment from losing the space that makes it a comment.
    start: usize,
    end: usize,
    /// Upper-cased text of the code tokens, for friendlier parse-error messages.
    words: Vec<String>,
    /// Operators and keywords (each may add an AST level), and the deepest
    /// parenthesis nesting: together they bound the recursion a check needs.
    structure: usize,
    paren_depth: usize,
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
    // Significant (code and literal) tokens: (is `;`, end byte).
    let mut code: Vec<(bool, usize)> = Vec::new();
    let mut first_byte: Option<usize> = None;
    let mut structure = 0usize;
    let (mut depth, mut paren_depth) = (0usize, 0usize);
    for token in &tokens {
        let start = cursor.seek(token.span.start);
        let end = cursor.seek(token.span.end);
        let raw = match (start, end) {
            (Some(s), Some(e)) => sql.get(s..e),
            _ => None,
        };
        let (Some(start), Some(end), Some(raw)) = (start, end, raw) else {
            return Err(refuse(format!(
                "could not parse SQL for {dialect}: token positions could not be mapped"
            )));
        };
        let plain_space = matches!(
            token.token,
            Token::Whitespace(Whitespace::Space | Whitespace::Newline | Whitespace::Tab)
        );
        if first_byte.is_none() && !plain_space {
            first_byte = Some(start);
        }
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
                code.push((false, end));
            }
            TokenClass::Code => {
                if let Token::Placeholder(p) = &token.token {
                    let digits = p.strip_prefix('$');
                    if dialect == Dialect::Postgres
                        && digits
                            .is_some_and(|d| d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()))
                    {
                        return Err(refuse(format!(
                            "unexpected `{}`: only $1-style parameters and $tag$ quotes are allowed",
                            clean(p)
                        )));
                    }
                }
                match token.token {
                    Token::LParen => {
                        depth += 1;
                        paren_depth = paren_depth.max(depth);
                    }
                    Token::RParen => depth = depth.saturating_sub(1),
                    _ => {}
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
                code.push((matches!(token.token, Token::SemiColon), end));
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

    // Second net under the AST walk: a denied name directly followed by `(`
    // is refused even if the parser were to drop or misfile the call.
    let mut significant = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| classify(t) != TokenClass::Trivia)
        .peekable();
    while let Some(token) = significant.next() {
        if let (Token::Word(w), Some(Token::LParen)) = (token, significant.peek()) {
            let name = w.value.to_lowercase();
            if function_denied(&name) {
                return Err(refuse(format!("function {} is not allowed", clean(&name))));
            }
        }
    }
    let semicolons: Vec<usize> = code
        .iter()
        .enumerate()
        .filter(|(_, (semi, _))| *semi)
        .map(|(i, _)| i)
        .collect();
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
            if statements <= 1 {
                return Err(refuse("only one statement per query: remove the extra `;`"));
            }
            return Err(refuse(format!(
                "only one statement per query (found {statements})"
            )));
        }
    }
    let end = code
        .iter()
        .rev()
        .find(|(semi, _)| !semi)
        .map_or(sql.len(), |(_, end)| *end);
    let start = first_byte.unwrap_or(0).min(end);

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
            "this statement is".to_owned()
        } else {
            format!("{} statements are", clean(first))
        };
        return Err(refuse(format!(
            "{shown} not allowed: only read-only queries (SELECT, WITH ... SELECT, VALUES, TABLE, EXPLAIN, SHOW) are accepted"
        )));
    }

    Ok(Lexed {
        start,
        end,
        words,
        structure,
        paren_depth,
    })
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
    if words.first().is_some_and(|w| w == "EXPLAIN")
        && words.iter().any(|w| w == "ANALYZE" || w == "ANALYSE")
    {
        return explain_analyze();
    }
    if has(&["INTO", "OUTFILE"]) || has(&["INTO", "DUMPFILE"]) {
        return refuse("SELECT ... INTO OUTFILE/DUMPFILE writes files and is not allowed");
    }
    let message = message
        .strip_prefix("sql parser error: ")
        .unwrap_or(message);
    refuse(format!(
        "could not parse SQL for {dialect}: {}",
        clean(message)
    ))
}

// ---------------------------------------------------------------------------
// Statement allow-list and AST walk
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
    /// Oid probes (see `probe`) found anywhere vs those checked against the
    /// FROM clause of the SELECT they belong to.
    probes_seen: usize,
    probes_checked: usize,
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
            probes_seen: 0,
            probes_checked: 0,
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
            other => {
                let label = statement_label(other);
                if label.starts_with("SHOW") {
                    Err(refuse(format!("{label} is not allowed; {SHOW_ALLOWED}")))
                } else {
                    Err(refuse(format!(
                        "{label} statements are not allowed: only read-only queries (SELECT, WITH ... SELECT, VALUES, TABLE, EXPLAIN, SHOW) are accepted"
                    )))
                }
            }
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
        if self.probes_seen != self.probes_checked {
            return Err(refuse(
                "oid/regclass lookups are only allowed in the SELECT list, WHERE or ORDER BY of the query that reads the schema-filtered catalog",
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
        if let SetExpr::Select(select) = query.body.as_ref() {
            // ORDER BY / LIMIT of a plain SELECT see that SELECT's FROM items.
            let context = self.select(select)?;
            self.probe_scan(&query.order_by, &context)?;
            self.probe_scan(&query.limit_clause, &context)
        } else {
            self.set_expr(&query.body)
        }
    }

    fn set_expr(&mut self, body: &SetExpr) -> Result<(), Refusal> {
        match body {
            SetExpr::Select(select) => self.select(select).map(|_| ()),
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

    fn select(&mut self, select: &Select) -> Result<SelectContext, Refusal> {
        if select.into.is_some() {
            return Err(refuse(
                "SELECT ... INTO is not allowed (it creates a table or writes variables/files)",
            ));
        }
        let context = self.catalog_filters(select)?;
        self.probe_scan(select, &context)?;
        Ok(context)
    }

    /// Checks the oid probes of `node` that belong to the SELECT described by
    /// `context` (those not inside a nested query).
    fn probe_scan<T: Visit>(&mut self, node: &T, context: &SelectContext) -> Result<(), Refusal> {
        let mut finder = ProbeFinder {
            guard: &*self,
            context,
            depth: 0,
            checked: 0,
        };
        if let ControlFlow::Break(refusal) = node.visit(&mut finder) {
            return Err(refusal);
        }
        let checked = finder.checked;
        self.probes_checked += checked;
        Ok(())
    }

    /// An oid probe's argument must be a literal naming something inside the
    /// grant, or a column of a schema-filtered catalog relation of the same
    /// SELECT: anything else (a number, `generate_series(...)`, a subquery)
    /// could enumerate other schemas' objects.
    fn check_probe(&self, probe: &Probe<'_>, context: &SelectContext) -> Result<(), Refusal> {
        for arg in &probe.args {
            let value = match arg {
                ProbeArg::Value(value) => Some(*value),
                ProbeArg::Expr(expr) => match strip_casts(expr) {
                    Expr::Value(v) => Some(&v.value),
                    inner if context.is_catalog_column(inner) => None,
                    _ => {
                        return Err(refuse(format!(
                            "{}: pass an oid column of a schema-filtered catalog relation (e.g. c.oid) or a 'schema.name' literal",
                            probe.label
                        )))
                    }
                },
            };
            match value {
                None | Some(Value::Null) => {}
                Some(Value::Number(..)) => {
                    return Err(refuse(format!(
                        "{}: pass a name or an oid column of a schema-filtered catalog relation, not a numeric oid",
                        probe.label
                    )))
                }
                Some(other) => match value_string(other) {
                    Some(text) => self.relation_literal(text, probe.kind, &probe.label)?,
                    None => {
                        return Err(refuse(format!(
                            "{}: unsupported literal",
                            probe.label
                        )))
                    }
                },
            }
        }
        Ok(())
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
                if self
                    .ctes
                    .iter()
                    .any(|level| level.iter().any(|c| c == table))
                {
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
                "mysql" | "performance_schema" | "sys" => {
                    Err(refuse(format!("system schema `{schema}` is not allowed")))
                }
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
                "SHOW {what} is not allowed; {SHOW_ALLOWED}"
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
        if name == "current_setting" {
            // Server settings can hold paths and custom secrets: only well-known,
            // harmless ones, named by a literal.
            let first = match &function.args {
                FunctionArguments::List(list) => list
                    .args
                    .first()
                    .and_then(arg_expr)
                    .and_then(string_literal),
                FunctionArguments::None | FunctionArguments::Subquery(_) => None,
            };
            match first {
                Some(setting) if SAFE_SETTINGS.contains(&setting.to_ascii_lowercase().as_str()) => {
                }
                _ => {
                    return Err(refuse(format!(
                    "current_setting is allowed only for these settings, named as a literal: {}",
                    SAFE_SETTINGS.join(", ")
                )))
                }
            }
        }
        Ok(())
    }

    fn table_function(&mut self, name: &ObjectName, args: &[FunctionArg]) -> Result<(), Refusal> {
        let fname = self.function_name(name)?;
        if probe_function(&fname).is_some() {
            return Err(refuse(format!(
                "call {} in the SELECT list, not in FROM",
                clean(&fname)
            )));
        }
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

    /// A type named with a schema must come from the grant (its input
    /// function runs on the cast).
    fn data_type(&self, data_type: &DataType) -> Result<(), Refusal> {
        match data_type {
            DataType::Custom(name, _) => {
                let parts = idents(name)?;
                match parts.as_slice() {
                    [_] => Ok(()),
                    [schema, _] => {
                        let schema = schema.value.to_lowercase();
                        if schema == "pg_catalog" || self.scope.grants(&schema) {
                            Ok(())
                        } else {
                            Err(self.outside_grant(&schema))
                        }
                    }
                    _ => Err(refuse(
                        "type names with more than two parts are not allowed",
                    )),
                }
            }
            DataType::Array(
                ArrayElemTypeDef::AngleBracket(inner)
                | ArrayElemTypeDef::SquareBracket(inner, _)
                | ArrayElemTypeDef::Parenthesis(inner),
            ) => self.data_type(inner),
            _ => Ok(()),
        }
    }

    fn expr(&mut self, expr: &Expr) -> Result<(), Refusal> {
        if probe(expr).is_some() {
            self.probes_seen += 1;
        }
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
                    _ => Err(refuse(
                        "operator names with more than two parts are not allowed",
                    )),
                },
                _ => Ok(()),
            },
            Expr::Cast { data_type, .. } => self.data_type(data_type),
            Expr::TypedString(typed) => self.data_type(&typed.data_type),
            _ => Ok(()),
        }
    }

    // -- catalog filters -----------------------------------------------------

    /// Every filter-requiring catalog relation in this SELECT's FROM must be
    /// restricted to granted schemas by a top-level AND-conjunct of WHERE or
    /// of an ON clause that is guaranteed to hold for its rows.
    fn catalog_filters(&mut self, select: &Select) -> Result<SelectContext, Refusal> {
        let mut items = Vec::new();
        let mut conjuncts = Vec::new();
        let mut only_catalog = true;
        for from in &select.from {
            self.collect_from(from, &mut items, &mut conjuncts, &mut only_catalog)?;
        }
        if items.is_empty() {
            return Ok(SelectContext {
                items,
                only_catalog: false,
            });
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
            None => Ok(SelectContext {
                items,
                only_catalog,
            }),
        }
    }

    fn unfiltered(&self, def: &CatalogDef, alias: &str) -> Refusal {
        let schema = clean(&self.scope.default_schema);
        let example = if let Some(col) = def.schema_cols.first() {
            format!("{col} = '{schema}'")
        } else if let Some((col, target, _)) = def.links.first() {
            let alias = clean(alias);
            match target {
                OidOf::Namespace => format!(
                    "{alias}.{col} = '{schema}'::regnamespace, or JOIN pg_namespace n ON n.oid = {alias}.{col} WHERE n.nspname = '{schema}'"
                ),
                OidOf::Type => format!(
                    "JOIN pg_type t ON t.oid = {alias}.{col} WHERE t.typnamespace = '{schema}'::regnamespace"
                ),
                OidOf::Class => format!(
                    "{alias}.{col} = '{schema}.orders'::regclass, or JOIN pg_class c ON c.oid = {alias}.{col} WHERE c.relnamespace = '{schema}'::regnamespace"
                ),
                OidOf::Proc | OidOf::Constraint | OidOf::Any => format!(
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
        only_catalog: &mut bool,
    ) -> Result<(), Refusal> {
        let first = items.len();
        self.collect_factor(&from.relation, items, conjuncts, only_catalog)?;
        for join in &from.joins {
            let before = items.len();
            self.collect_factor(&join.relation, items, conjuncts, only_catalog)?;
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
        only_catalog: &mut bool,
    ) -> Result<(), Refusal> {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let resolved = self.resolve(name)?;
                if !matches!(resolved, Resolved::Catalog(_)) {
                    *only_catalog = false;
                }
                if let Resolved::Catalog(def) = resolved {
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
            } => self.collect_from(table_with_joins, items, conjuncts, only_catalog),
            _ => {
                *only_catalog = false;
                Ok(())
            }
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
            let object_col = def.object_oid_col(&col.col, OidOf::Class)
                || def.object_oid_col(&col.col, OidOf::Type);
            if !schema_col && !namespace_col && !object_col {
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
                    FilterValue::Object(kind) if def.object_oid_col(&col.col, kind) => {}
                    FilterValue::Foreign(s) => return Err(self.outside_grant(&s)),
                    FilterValue::Schema(_)
                    | FilterValue::Namespace(_)
                    | FilterValue::Object(_)
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
            } if self.dialect == Dialect::Postgres => {
                let type_name = match data_type {
                    DataType::Regclass => "regclass".to_owned(),
                    DataType::Custom(name, _) => match idents(name) {
                        Ok(parts) => parts
                            .last()
                            .map(|p| p.value.to_lowercase())
                            .unwrap_or_default(),
                        Err(_) => return FilterValue::Other,
                    },
                    _ => return FilterValue::Other,
                };
                let literal = match strip_nested(expr) {
                    Expr::Value(v) => match &v.value {
                        Value::SingleQuotedString(s) => s.trim(),
                        _ => return FilterValue::Other,
                    },
                    _ => return FilterValue::Other,
                };
                let Some(parts) = split_qualified(literal) else {
                    return FilterValue::Other;
                };
                let in_grant = match parts.as_slice() {
                    [_] => true,
                    [schema, _] if schema == "pg_catalog" || self.scope.grants(schema) => true,
                    [schema, _] => return FilterValue::Foreign(schema.clone()),
                    _ => false,
                };
                match (type_name.as_str(), parts.as_slice()) {
                    ("regnamespace", [schema]) => FilterValue::Namespace(schema.clone()),
                    ("regclass", _) if in_grant && !literal.bytes().all(|b| b.is_ascii_digit()) => {
                        FilterValue::Object(OidOf::Class)
                    }
                    ("regtype", _) if in_grant && !literal.bytes().all(|b| b.is_ascii_digit()) => {
                        FilterValue::Object(OidOf::Type)
                    }
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

const SHOW_ALLOWED: &str =
    "allowed (MySQL): SHOW TABLES, SHOW COLUMNS, SHOW INDEX, SHOW CREATE TABLE/VIEW, DESCRIBE";

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
        SetExpr::Select(_)
        | SetExpr::SetOperation { .. }
        | SetExpr::Values(_)
        | SetExpr::Table(_) => None,
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
        && list.args.first().and_then(arg_expr).is_some_and(
            |a| matches!(strip_nested(a), Expr::Value(v) if v.value == Value::Boolean(false)),
        )
}

// ---------------------------------------------------------------------------
// Oid probes
// ---------------------------------------------------------------------------

/// The FROM side of one SELECT, as far as oid probes care.
struct SelectContext {
    items: Vec<CatItem>,
    /// Every FROM item is a catalog relation (so an unqualified column is one
    /// of theirs).
    only_catalog: bool,
}

impl SelectContext {
    fn is_catalog_column(&self, expr: &Expr) -> bool {
        let Some(col) = col_ref(expr) else {
            return false;
        };
        match &col.qualifier {
            Some(q) => self.items.iter().any(|it| it.alias == *q && it.filtered),
            None => {
                self.only_catalog
                    && !self.items.is_empty()
                    && self.items.iter().all(|it| it.filtered)
            }
        }
    }
}

enum ProbeArg<'e> {
    Expr(&'e Expr),
    Value(&'e Value),
}

/// A function or cast that turns an oid or a name into facts about *any*
/// object of the cluster (definitions, sizes, names): `pg_get_viewdef(x)`,
/// `x::regclass`, `format_type(x, ...)`. Fed with `generate_series(...)`
/// they would enumerate other squads' schemas, so their arguments are checked
/// against the SELECT they appear in.
struct Probe<'e> {
    label: String,
    kind: RelKind,
    args: Vec<ProbeArg<'e>>,
}

fn probe(expr: &Expr) -> Option<Probe<'_>> {
    match expr {
        Expr::Function(f) => {
            let parts = idents(&f.name).ok()?;
            let name = parts.last()?.value.to_lowercase();
            let (kind, arg_count) = probe_function(&name)?;
            let args = match &f.args {
                FunctionArguments::List(list) => list
                    .args
                    .iter()
                    .take(arg_count)
                    .filter_map(arg_expr)
                    .map(ProbeArg::Expr)
                    .collect(),
                FunctionArguments::None | FunctionArguments::Subquery(_) => Vec::new(),
            };
            Some(Probe {
                label: clean(&name),
                kind,
                args,
            })
        }
        Expr::Cast {
            data_type, expr, ..
        } => Some(Probe {
            label: "reg* cast".to_owned(),
            kind: reg_kind_of(data_type)?,
            args: vec![ProbeArg::Expr(expr)],
        }),
        Expr::TypedString(typed) => Some(Probe {
            label: "reg* literal".to_owned(),
            kind: reg_kind_of(&typed.data_type)?,
            args: vec![ProbeArg::Value(&typed.value.value)],
        }),
        _ => None,
    }
}

fn reg_kind_of(data_type: &DataType) -> Option<RelKind> {
    match data_type {
        DataType::Regclass => Some(RelKind::Relation),
        DataType::Custom(name, _) => name
            .0
            .last()
            .and_then(ObjectNamePart::as_ident)
            .and_then(|ident| reg_type_kind(&ident.value.to_lowercase())),
        DataType::Array(
            ArrayElemTypeDef::AngleBracket(inner)
            | ArrayElemTypeDef::SquareBracket(inner, _)
            | ArrayElemTypeDef::Parenthesis(inner),
        ) => reg_kind_of(inner),
        _ => None,
    }
}

/// Checks the probes of one SELECT; nested queries have their own context.
struct ProbeFinder<'g, 's> {
    guard: &'g Guard<'s>,
    context: &'g SelectContext,
    depth: usize,
    checked: usize,
}

impl Visitor for ProbeFinder<'_, '_> {
    type Break = Refusal;

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<Refusal> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<Refusal> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Refusal> {
        if self.depth == 0 {
            if let Some(found) = probe(expr) {
                flow(self.guard.check_probe(&found, self.context))?;
                self.checked += 1;
            }
        }
        ControlFlow::Continue(())
    }
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
    /// `'name'::regclass` / `'name'::regtype` naming an object inside the grant.
    Object(OidOf),
    /// A reg* literal qualified with a schema outside the grant.
    Foreign(String),
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
                && def_a.links.iter().any(|(col, target, _)| {
                    *col == a.col
                        && other
                            .def
                            .oid
                            .is_some_and(|kind| *target == OidOf::Any || kind == *target)
                });
            // `i.oid = x.indexrelid` with x filtered: the index x points at
            // lives in x's schema.
            let reverse_link = a.col == "oid"
                && other.def.links.iter().any(|(col, target, same_schema)| {
                    *col == b.col && *same_schema && def_a.oid == Some(*target)
                });
            // A self-join on the same kind of object: `c2.oid = c.oid`.
            let same_object = a.col == "oid"
                && b.col == "oid"
                && def_a.oid.is_some()
                && def_a.oid == other.def.oid;
            schema_to_schema || oid_link || reverse_link || same_object
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
    /// Columns holding the oid of another catalog row, and whether that row
    /// always lives in the same schema as this one (an index and its table do;
    /// a child table and its inheritance parent need not).
    links: &'static [(&'static str, OidOf, bool)],
    /// What this relation's own `oid` column identifies.
    oid: Option<OidOf>,
    /// Whether reads must be filtered to granted schemas.
    filter: bool,
}

impl CatalogDef {
    fn has_col(&self, col: &str) -> bool {
        self.schema_cols.contains(&col)
            || self.links.iter().any(|(c, _, _)| *c == col)
            || (col == "oid" && self.oid.is_some())
    }

    /// Columns that can be compared to `'x'::regnamespace`.
    fn is_namespace_oid_col(&self, col: &str) -> bool {
        self.links
            .iter()
            .any(|(c, target, _)| *c == col && *target == OidOf::Namespace)
            || (col == "oid" && self.oid == Some(OidOf::Namespace))
    }

    /// Columns that can be compared to `'schema.name'::regclass` (or regtype):
    /// they identify one object, which the literal check keeps in the grant.
    fn object_oid_col(&self, col: &str, kind: OidOf) -> bool {
        self.links
            .iter()
            .any(|(c, target, _)| *c == col && *target == kind)
            || (col == "oid" && self.oid == Some(kind))
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
    links: &'static [(&'static str, OidOf, bool)],
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
        &[("relnamespace", OidOf::Namespace, true)],
        Some(OidOf::Class),
    ),
    pg(
        "pg_type",
        &[],
        &[
            ("typnamespace", OidOf::Namespace, true),
            ("typrelid", OidOf::Class, true),
        ],
        Some(OidOf::Type),
    ),
    pg(
        "pg_proc",
        &[],
        &[("pronamespace", OidOf::Namespace, true)],
        Some(OidOf::Proc),
    ),
    pg(
        "pg_constraint",
        &[],
        &[
            ("connamespace", OidOf::Namespace, true),
            ("conrelid", OidOf::Class, true),
        ],
        Some(OidOf::Constraint),
    ),
    pg(
        "pg_attribute",
        &[],
        &[("attrelid", OidOf::Class, true)],
        None,
    ),
    pg(
        "pg_index",
        &[],
        &[
            ("indrelid", OidOf::Class, true),
            ("indexrelid", OidOf::Class, true),
        ],
        None,
    ),
    pg("pg_attrdef", &[], &[("adrelid", OidOf::Class, true)], None),
    pg(
        "pg_description",
        &[],
        &[("objoid", OidOf::Any, false)],
        None,
    ),
    pg(
        "pg_inherits",
        &[],
        &[
            ("inhrelid", OidOf::Class, false),
            ("inhparent", OidOf::Class, false),
        ],
        None,
    ),
    pg("pg_enum", &[], &[("enumtypid", OidOf::Type, true)], None),
    pg("pg_trigger", &[], &[("tgrelid", OidOf::Class, true)], None),
    pg(
        "pg_sequence",
        &[],
        &[("seqrelid", OidOf::Class, true)],
        None,
    ),
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
/// Settings `current_setting` may read: what an investigation of load,
/// timeouts or time zones needs, nothing that holds paths or credentials.
const SAFE_SETTINGS: &[&str] = &[
    "timezone",
    "datestyle",
    "server_version",
    "server_version_num",
    "server_encoding",
    "client_encoding",
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "max_connections",
    "superuser_reserved_connections",
    "work_mem",
    "maintenance_work_mem",
    "shared_buffers",
    "effective_cache_size",
    "default_transaction_isolation",
    "transaction_read_only",
    "max_parallel_workers_per_gather",
    "random_page_cost",
    "jit",
];

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
    // Postgres reg* I/O functions: oid <-> name for any object.
    "regclassin",
    "regclassout",
    "regtypein",
    "regtypeout",
    "regprocin",
    "regprocout",
    "regprocedurein",
    "regprocedureout",
    "regoperin",
    "regoperout",
    "regoperatorin",
    "regoperatorout",
    "regnamespacein",
    "regnamespaceout",
    "regrolein",
    "regroleout",
    "regcollationin",
    "regcollationout",
    "regconfigin",
    "regconfigout",
    "regdictionaryin",
    "regdictionaryout",
    "shobj_description",
    // Other engines' escape hatches, in case a driver passes them through.
    "xp_cmdshell",
    "openrowset",
    "opendatasource",
    "openquery",
];

/// Name prefixes refused in every dialect.
const DENIED_PREFIXES: &[&str] = &[
    "lo_",             // Postgres large objects: server file import/export
    "dblink",          // remote connections, remote SQL
    "postgres_fdw",    // foreign server connections
    "binary_upgrade_", // catalog surgery
    "query_to_xml",    // these execute SQL text or dump whole tables/schemas
    "query_to_json",
    "cursor_to_xml",
    "table_to_xml",
    "schema_to_xml",
    "database_to_xml",
    "crosstab", // tablefunc: executes SQL text
    "http_",    // pgsql-http: network access
    "autoprewarm",
    "run_command_on_", // citus: SQL on workers
    "citus_",
    "master_",  // MySQL master_pos_wait/master_gtid_wait, citus master_*
    "sys_",     // lib_mysqludf_sys: sys_exec, sys_eval...
    "keyring_", // MySQL keyring UDFs
    "audit_log",
    "version_tokens",
    "group_replication",
    "asynchronous_connection",
    "service_get_", // MySQL locking service
    "mysql_firewall",
    "set_firewall",
    "shell_", // SQLite CLI helpers
];

fn function_denied(name: &str) -> bool {
    if name.starts_with("pg_") {
        return !PG_ALLOWED.contains(&name);
    }
    DENIED_FUNCTIONS.contains(&name) || DENIED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Oid-probe functions: the kind of name their leading arguments take, and
/// how many leading arguments are object references.
fn probe_function(name: &str) -> Option<(RelKind, usize)> {
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
        | "pg_get_userbyid"
        | "pg_partition_tree"
        | "pg_partition_root"
        | "pg_partition_ancestors"
        | "pg_sequence_last_value"
        | "pg_table_is_visible"
        | "pg_type_is_visible"
        | "pg_function_is_visible"
        | "pg_column_compression"
        | "pg_index_column_has_property"
        | "pg_index_has_property"
        | "obj_description"
        | "col_description"
        | "format_type"
        | "to_regclass"
        | "to_regproc"
        | "to_regprocedure"
        | "to_regtype" => Some((RelKind::Relation, 1)),
        // pg_get_expr(node_tree, relation)
        "pg_get_expr" => Some((RelKind::Relation, 2)),
        "to_regnamespace" => Some((RelKind::Namespace, 1)),
        // Function-style casts: regclass('x').
        _ => reg_type_kind(name).map(|kind| (kind, 1)),
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PG: Dialect = Dialect::Postgres;
    const MY: Dialect = Dialect::MySql;
    const LITE: Dialect = Dialect::Sqlite;
    const DIALECTS: [Dialect; 3] = [PG, MY, LITE];

    /// The inline path runs on the caller's thread; at its limits it must fit
    /// the 2 MiB stack of a tokio worker even in an unoptimised build.
    #[test]
    fn inline_checks_fit_a_tokio_worker_stack() {
        let nested = format!(
            "SELECT {}1{}{} FROM orders WHERE id = 1 AND status = 'x'",
            "(".repeat(INLINE_MAX_PARENS),
            " + 1".repeat(30),
            ")".repeat(INLINE_MAX_PARENS)
        );
        let nots = format!("SELECT 1 FROM orders WHERE {}true", "NOT ".repeat(40));
        let subqueries = format!(
            "SELECT * FROM {}orders{}",
            "(SELECT * FROM ".repeat(INLINE_MAX_PARENS),
            ") AS q".repeat(INLINE_MAX_PARENS)
        );
        for sql in [nested, nots, subqueries] {
            let sql_for_thread = sql.clone();
            let verdict = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || {
                    check(
                        Dialect::Postgres,
                        &sql_for_thread,
                        &scope(Dialect::Postgres),
                    )
                    .is_ok()
                })
                .map(|h| h.join());
            assert!(
                matches!(verdict, Ok(Ok(_))),
                "overflowed or panicked on {sql}"
            );
        }
    }

    fn scope(dialect: Dialect) -> SqlScope {
        match dialect {
            Dialect::Sqlite => SqlScope {
                default_schema: "main".into(),
                schemas: vec!["main".into()],
            },
            Dialect::Postgres | Dialect::MySql => SqlScope {
                default_schema: "app".into(),
                schemas: vec!["app".into(), "reporting".into()],
            },
        }
    }

    fn run(dialect: Dialect, sql: &str) -> Result<Approved, Refusal> {
        check(dialect, sql, &scope(dialect))
    }

    fn assert_refusal_shape(refusal: &Refusal) {
        let text = refusal.to_string();
        assert!(text.starts_with("refused: "), "{text}");
        assert!(
            !text.contains('\n') && !text.contains('\r'),
            "multi-line: {text:?}"
        );
        assert!(text.len() < 600, "too long: {text}");
    }

    /// Every trick from the brief, and then some. Each must be refused.
    const HOSTILE: &[(Dialect, &str)] = &[
        // -- stacked statements, comments, case
        (PG, "SeLeCt 1; dRoP table t"),
        (PG, "select 1 -- comment\n; delete from t"),
        (PG, "SELECT 1; SELECT 2"),
        (PG, "SELECT 1;;"),
        (PG, "SELECT ''; DELETE FROM t; --'"),
        (PG, "SELECT $$ $$; DELETE FROM t"),
        (PG, "/* c */ ;"),
        (PG, "-- just a comment"),
        (PG, "/*!50000 DROP TABLE t*/ SELECT 1"),
        // tokenizer disagreements: `#--` is an operator to sqlparser, a comment to Postgres
        (PG, "SELECT 1 #--'\n 2, pg_sleep(5) --'"),
        (PG, "SELECT 1 @--'\n, pg_sleep(5) --'"),
        (PG, "SELECT $1$ x $1$"),
        (PG, "SELECT $a"),
        // -- writable CTEs and nested DML
        (PG, "WITH x AS (UPDATE t SET a=1 RETURNING *) SELECT * FROM x"),
        (PG, "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x"),
        (PG, "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"),
        (PG, "WITH x AS (SELECT 1), y AS (DELETE FROM t RETURNING *) SELECT * FROM x"),
        (PG, "SELECT * FROM (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) s"),
        (PG, "SELECT * FROM t WHERE id IN (WITH d AS (DELETE FROM t RETURNING id) SELECT id FROM d)"),
        (PG, "(DELETE FROM t)"),
        // -- EXPLAIN
        (PG, "EXPLAIN ANALYZE DELETE FROM t"),
        (PG, "EXPLAIN ANALYZE SELECT 1"),
        (PG, "EXPLAIN (ANALYZE, BUFFERS) SELECT 1"),
        (PG, "EXPLAIN (ANALYZE) SELECT 1"),
        (PG, "EXPLAIN (ANALYZE true) SELECT 1"),
        (PG, "EXPLAIN (ANALYZE false) SELECT 1"),
        (PG, "EXPLAIN (analyze on, format json) SELECT 1"),
        (PG, "EXPLAIN (TIMING) SELECT 1"),
        (PG, "EXPLAIN (WAL) SELECT 1"),
        (PG, "EXPLAIN DELETE FROM t"),
        (PG, "EXPLAIN (FORMAT JSON) UPDATE t SET a = 1"),
        (PG, "EXPLAIN SELECT pg_sleep(1)"),
        // -- locking
        (PG, "SELECT * FROM t FOR UPDATE"),
        (PG, "SELECT * FROM t FOR SHARE"),
        (PG, "SELECT * FROM t FOR NO KEY UPDATE"),
        (PG, "SELECT * FROM t FOR KEY SHARE"),
        (PG, "SELECT * FROM t FOR UPDATE SKIP LOCKED"),
        (PG, "SELECT * FROM (SELECT * FROM t FOR UPDATE) s"),
        // -- functions
        (PG, "SELECT pg_sleep(10)"),
        (PG, "SELECT \"pg_sleep\"(1)"),
        (PG, "SELECT pg_catalog.\"PG_SLEEP\"(1)"),
        (PG, "SELECT pg_catalog.pg_sleep(1)"),
        (PG, "SELECT PG_SLEEP_FOR('5 minutes')"),
        (PG, "SELECT * FROM t WHERE id = 1 AND pg_sleep(5) IS NOT NULL"),
        (PG, "SELECT (SELECT pg_sleep(1))"),
        (PG, "SELECT * FROM t ORDER BY pg_sleep(1)"),
        (PG, "SELECT count(*) OVER (PARTITION BY pg_sleep(1)) FROM t"),
        (PG, "SELECT * FROM t, LATERAL pg_sleep(1)"),
        (PG, "SELECT * FROM pg_sleep(1)"),
        (PG, "VALUES ((SELECT pg_sleep(1)))"),
        (PG, "SELECT * FROM generate_series(1,3) g JOIN LATERAL (SELECT pg_sleep(g)) s ON true"),
        (PG, "SELECT pg_catalog.pg_read_file('/etc/passwd')"),
        (PG, "SELECT pg_read_binary_file('/etc/passwd')"),
        (PG, "SELECT * FROM pg_ls_dir('.')"),
        (PG, "SELECT pg_stat_file('postgresql.conf')"),
        (PG, "SELECT lo_import('/etc/passwd')"),
        (PG, "SELECT lo_export(1234, '/tmp/x')"),
        (PG, "SELECT set_config('search_path','billing',false)"),
        (PG, "SELECT nextval('s')"),
        (PG, "SELECT setval('s', 1)"),
        (PG, "SELECT txid_current()"),
        (PG, "SELECT pg_current_xact_id()"),
        (PG, "SELECT pg_advisory_lock(1)"),
        (PG, "SELECT pg_try_advisory_xact_lock(1)"),
        (PG, "SELECT pg_notify('c', 'x')"),
        (PG, "SELECT pg_terminate_backend(123)"),
        (PG, "SELECT pg_cancel_backend(123)"),
        (PG, "SELECT pg_reload_conf()"),
        (PG, "SELECT pg_export_snapshot()"),
        (PG, "SELECT pg_switch_wal()"),
        (PG, "SELECT pg_create_restore_point('x')"),
        (PG, "SELECT pg_stat_reset()"),
        (PG, "SELECT query_to_xml('delete from t',true,true,'')"),
        (PG, "SELECT table_to_xml('billing.invoices', true, true, '')"),
        (PG, "SELECT * FROM dblink('host=x','select 1') AS t(a int)"),
        (PG, "SELECT dblink_exec('host=x', 'drop table t')"),
        (PG, "SELECT crosstab('select * from billing.x')"),
        (PG, "SELECT * FROM ts_stat('select body from billing.docs')"),
        (PG, "SELECT U&\"\\0070g_sleep\"(1)"),
        (PG, "SELECT U&'\\0070g_sleep'"),
        (PG, "SELECT billing.calc()"),
        (PG, "SELECT * FROM app.orders WHERE total > billing.threshold()"),
        (PG, "SELECT 1 OPERATOR(billing.+) 1"),
        (PG, "SELECT 'x'::billing.mytype"),
        (PG, "SELECT pg_get_viewdef('billing.v')"),
        (PG, "SELECT pg_relation_size('billing.invoices')"),
        (PG, "SELECT 'billing.invoices'::regclass"),
        (PG, "SELECT CAST('billing.invoices' AS regclass)"),
        (PG, "SELECT '16384'::regclass"),
        (PG, "SELECT pg_get_functiondef(12345)"),
        (PG, "SELECT pg_total_relation_size('bill' || 'ing.invoices')"),
        // oid probes fed with anything but a filtered catalog column
        (PG, "SELECT regclass 'billing.x'"),
        (PG, "SELECT '{billing.v}'::regclass[]"),
        (PG, "SELECT regclass('billing.x')"),
        (PG, "SELECT pg_get_viewdef(g) FROM generate_series(1, 99999) g"),
        (PG, "SELECT g::oid::regclass FROM generate_series(1, 99999) g"),
        (PG, "SELECT format_type(g, NULL) FROM generate_series(1, 99999) g"),
        (PG, "SELECT pg_get_functiondef(p.oid) FROM pg_proc p"),
        (PG, "SELECT pg_get_viewdef(g) FROM pg_class c, generate_series(1, 2) g WHERE c.relnamespace = 'app'::regnamespace"),
        (PG, "SELECT (SELECT pg_get_viewdef(c.oid)) FROM pg_class c WHERE c.relnamespace = 'app'::regnamespace"),
        (PG, "SELECT x::regclass FROM (SELECT 'billing.v' AS x) s"),
        (PG, "SELECT pg_get_viewdef((SELECT 1))"),
        (PG, "VALUES (pg_get_viewdef(1))"),
        (PG, "SELECT regclassout(1)"),
        (PG, "SELECT * FROM pg_get_viewdef('app.v')"),
        (PG, "SELECT attname FROM pg_attribute WHERE attrelid = 'billing.x'::regclass"),
        (PG, "SELECT attname FROM pg_attribute WHERE attrelid = 16384"),
        (PG, "SELECT p.relname FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent WHERE h.inhrelid = 'app.child'::regclass"),
        // -- SELECT INTO
        (PG, "SELECT * INTO t2 FROM t"),
        (PG, "SELECT * INTO TEMP t2 FROM t"),
        // -- relations outside the grant
        (PG, "SELECT * FROM billing.invoices"),
        (PG, "SELECT * FROM BILLING.invoices"),
        (PG, "SELECT * FROM \"billing\".\"invoices\""),
        (PG, "SELECT * FROM app.orders o JOIN billing.invoices i ON i.order_id = o.id"),
        (PG, "SELECT * FROM app.orders WHERE id IN (SELECT order_id FROM billing.invoices)"),
        (PG, "SELECT id FROM app.orders UNION SELECT id FROM billing.invoices"),
        (PG, "SELECT * FROM otherdb.app.orders"),
        (PG, "SELECT * FROM pg_temp.t"),
        (PG, "SELECT * FROM pg_toast.pg_toast_1234"),
        // -- catalogs
        (PG, "SELECT * FROM pg_shadow"),
        (PG, "SELECT * FROM pg_authid"),
        (PG, "SELECT * FROM pg_catalog.pg_authid"),
        (PG, "SELECT * FROM \"pg_shadow\""),
        (PG, "SELECT * FROM PG_CATALOG.PG_SHADOW"),
        (PG, "SELECT * FROM pg_stat_activity"),
        (PG, "SELECT * FROM pg_stat_statements"),
        (PG, "SELECT * FROM pg_settings"),
        (PG, "SELECT * FROM pg_user_mappings"),
        (PG, "SELECT * FROM pg_hba_file_rules"),
        (PG, "SELECT * FROM pg_roles"),
        (PG, "SELECT * FROM pg_largeobject"),
        (PG, "WITH pg_shadow AS (SELECT 1) SELECT * FROM pg_shadow"),
        (PG, "SELECT * FROM information_schema.tables"),
        (PG, "SELECT * FROM information_schema.tables WHERE table_schema='billing'"),
        (PG, "SELECT * FROM information_schema.tables WHERE table_schema='app' OR 1=1"),
        (PG, "SELECT * FROM information_schema.columns WHERE table_name = 'orders'"),
        (PG, "SELECT * FROM information_schema.tables WHERE table_schema IN ('app', 'billing')"),
        (PG, "SELECT * FROM information_schema.tables WHERE table_schema <> 'app'"),
        (PG, "SELECT * FROM information_schema.tables t, information_schema.columns c WHERE t.table_schema = 'app'"),
        (PG, "SELECT * FROM information_schema.user_mapping_options"),
        (PG, "SELECT relname FROM pg_class"),
        (PG, "SELECT nspname FROM pg_namespace"),
        (PG, "SELECT c.relname FROM pg_class c LEFT JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'app'"),
        (PG, "SELECT relname FROM pg_class WHERE relnamespace = 'billing'::regnamespace"),
        (PG, "SELECT * FROM pg_indexes WHERE schemaname <> 'app'"),
        (PG, "SELECT (SELECT count(*) FROM pg_class)"),
        (PG, "WITH c AS (SELECT * FROM pg_class) SELECT * FROM c"),
        (PG, "SELECT * FROM pg_tables WHERE schemaname = 'app' OR schemaname = 'billing'"),
        // -- statements
        (PG, "COPY t TO PROGRAM 'x'"),
        (PG, "COPY (SELECT 1) TO '/tmp/x'"),
        (PG, "DO $$BEGIN DELETE FROM t; END$$"),
        (PG, "SET ROLE postgres"),
        (PG, "SET search_path = billing"),
        (PG, "SET statement_timeout = 0"),
        (PG, "RESET ALL"),
        (PG, "BEGIN"),
        (PG, "COMMIT"),
        (PG, "ROLLBACK"),
        (PG, "SAVEPOINT s"),
        (PG, "START TRANSACTION READ WRITE"),
        (PG, "LOCK TABLE t"),
        (PG, "VACUUM"),
        (PG, "VACUUM FULL t"),
        (PG, "ANALYZE t"),
        (PG, "CALL p()"),
        (PG, "PREPARE p AS DELETE FROM t"),
        (PG, "EXECUTE p"),
        (PG, "DEALLOCATE p"),
        (PG, "LISTEN c"),
        (PG, "NOTIFY c"),
        (PG, "INSERT INTO t VALUES (1)"),
        (PG, "UPDATE t SET a = 1"),
        (PG, "DELETE FROM t"),
        (PG, "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE"),
        (PG, "TRUNCATE t"),
        (PG, "CREATE TABLE x (a int)"),
        (PG, "CREATE TEMP TABLE x AS SELECT 1"),
        (PG, "ALTER TABLE t ADD COLUMN b int"),
        (PG, "DROP TABLE t"),
        (PG, "GRANT SELECT ON t TO public"),
        (PG, "REVOKE ALL ON t FROM public"),
        (PG, "REINDEX TABLE t"),
        (PG, "CLUSTER t"),
        (PG, "REFRESH MATERIALIZED VIEW v"),
        (PG, "SHOW search_path"),
        (PG, "DISCARD ALL"),
        (PG, "CHECKPOINT"),
        (PG, "IMPORT FOREIGN SCHEMA x FROM SERVER y INTO z"),
        (PG, "SECURITY LABEL ON TABLE t IS 'x'"),
        (PG, "\"SELECT\" 1"),
        (PG, ""),
        (PG, "   \n\t "),
        (PG, "SELECT 1\0"),
        // -- MySQL / MariaDB
        (MY, "/*!50000 DROP TABLE t*/ SELECT 1"),
        (MY, "/*!SELECT 1*/"),
        (MY, "SELECT 1 /*M! , sleep(5) */"),
        (MY, "SELECT 1 /*!, sleep(5) */"),
        (MY, "SELECT /*+ SET_VAR(max_execution_time=0) */ * FROM t"),
        (MY, "SELECT sleep(5)"),
        (MY, "SELECT SLEEP(5)"),
        (MY, "SELECT `sleep`(5)"),
        (MY, "SELECT * FROM t WHERE id = (SELECT sleep(1))"),
        (MY, "SELECT benchmark(1000000, md5('a'))"),
        (MY, "SELECT load_file('/etc/passwd')"),
        (MY, "SELECT * FROM t INTO OUTFILE '/tmp/x'"),
        (MY, "SELECT * FROM t INTO DUMPFILE '/tmp/x'"),
        (MY, "SELECT a INTO @v FROM t"),
        (MY, "SELECT @a := 1"),
        (MY, "SELECT get_lock('a',10)"),
        (MY, "SELECT release_lock('a')"),
        (MY, "SELECT is_free_lock('a')"),
        (MY, "SELECT master_pos_wait('f', 4)"),
        (MY, "SELECT source_pos_wait('f', 4)"),
        (MY, "SELECT last_insert_id(5)"),
        (MY, "SELECT sys_exec('id')"),
        (MY, "SELECT sys.ps_thread_id(1)"),
        (MY, "SELECT * FROM mysql.user"),
        (MY, "SELECT * FROM `mysql`.`user`"),
        (MY, "SELECT * FROM performance_schema.threads"),
        (MY, "SELECT * FROM sys.processlist"),
        (MY, "SELECT * FROM information_schema.processlist"),
        (MY, "SELECT * FROM information_schema.user_privileges"),
        (MY, "SELECT * FROM information_schema.tables"),
        (MY, "SELECT * FROM information_schema.tables WHERE table_schema = 'billing'"),
        (MY, "SELECT * FROM information_schema.columns WHERE table_schema = 'app' OR 1=1"),
        (MY, "SELECT * FROM billing.invoices"),
        (MY, "SELECT * FROM t WHERE a = 1 UNION SELECT * FROM billing.x"),
        (MY, "SELECT * FROM t LOCK IN SHARE MODE"),
        (MY, "SELECT * FROM t FOR UPDATE"),
        (MY, "SELECT * FROM t FOR SHARE"),
        (MY, "LOAD DATA INFILE '/etc/passwd' INTO TABLE t"),
        (MY, "LOAD DATA LOCAL INFILE 'x' INTO TABLE t"),
        (MY, "HANDLER t OPEN"),
        (MY, "DO sleep(5)"),
        (MY, "KILL 1"),
        (MY, "FLUSH PRIVILEGES"),
        (MY, "USE billing"),
        (MY, "SET @a = 1"),
        (MY, "SET GLOBAL general_log = 1"),
        (MY, "INSERT INTO t VALUES (1)"),
        (MY, "REPLACE INTO t VALUES (1)"),
        (MY, "UPDATE t SET a = 1"),
        (MY, "DELETE FROM t"),
        (MY, "DROP TABLE t"),
        (MY, "ALTER TABLE t ENGINE=InnoDB"),
        (MY, "CREATE TABLE x AS SELECT 1"),
        (MY, "RENAME TABLE t TO u"),
        (MY, "GRANT ALL ON *.* TO 'x'@'%'"),
        (MY, "LOCK TABLES t READ"),
        (MY, "UNLOCK TABLES"),
        (MY, "OPTIMIZE TABLE t"),
        (MY, "ANALYZE TABLE t"),
        (MY, "CALL p()"),
        (MY, "PREPARE s FROM 'DELETE FROM t'"),
        (MY, "EXECUTE s"),
        (MY, "XA START 'x'"),
        (MY, "INSTALL PLUGIN x SONAME 'y.so'"),
        (MY, "SHUTDOWN"),
        (MY, "SHOW PROCESSLIST"),
        (MY, "SHOW GRANTS"),
        (MY, "SHOW DATABASES"),
        (MY, "SHOW VARIABLES"),
        (MY, "SHOW TABLES FROM billing"),
        (MY, "SHOW TABLES FROM mysql"),
        (MY, "SHOW COLUMNS FROM billing.invoices"),
        (MY, "SHOW INDEX FROM invoices FROM billing"),
        (MY, "SHOW TABLES WHERE sleep(1) = 0"),
        (MY, "SHOW CREATE PROCEDURE p"),
        (MY, "DESCRIBE mysql.user"),
        (MY, "EXPLAIN ANALYZE SELECT * FROM t"),
        (MY, "EXPLAIN DELETE FROM t"),
        // MySQL ends `--` comments at a tab, sqlparser does not: a string would hide the sleep
        (MY, "SELECT 1, 2 --\t'\n, sleep(5) AS x -- '"),
        // backslash escapes depend on sql_mode (NO_BACKSLASH_ESCAPES)
        (MY, "SELECT 'a\\' , sleep(5) -- '"),
        (MY, "SELECT 1; DROP TABLE t"),
        (MY, "SELECT 1 FROM dual WHERE 1 = 1 -- \n; DELETE FROM t"),
        (MY, "SELECT 1 DIV"),
        (MY, "TABLE mysql.user"),
        (MY, "SELECT * FROM t PROCEDURE ANALYSE()"),
        // sqlparser's parse_sql stops at END after a statement; MySQL reads it as an alias
        (MY, "SELECT * FROM t END WHERE sleep(5)"),
        (MY, "SELECT * FROM app.orders END JOIN billing.invoices i ON 1 = 1"),
        (MY, "SELECT 1 SELECT 2"),
        (PG, "SELECT 1 END, pg_sleep(1)"),
        (MY, "SELECT 1 --\n, sleep(5)"),
        (MY, "SELECT * FROM t WHERE a = 1 /* */ AND `sleep` (5)"),
        (MY, "SELECT \"x\\\" , sleep(5) , \""),
        // -- SQLite
        (LITE, "PRAGMA writable_schema=1"),
        (LITE, "PRAGMA table_info(t)"),
        (LITE, "ATTACH DATABASE 'x' AS y"),
        (LITE, "DETACH DATABASE y"),
        (LITE, "SELECT load_extension('x')"),
        (LITE, "SELECT writefile('x','y')"),
        (LITE, "SELECT readfile('/etc/passwd')"),
        (LITE, "SELECT edit('x')"),
        (LITE, "SELECT fts3_tokenizer('simple')"),
        (LITE, "SELECT * FROM fsdir('/')"),
        (LITE, "SELECT * FROM temp.t"),
        (LITE, "SELECT * FROM aux.t"),
        (LITE, "SELECT * FROM sqlite_dbpage"),
        (LITE, "SELECT * FROM pragma_table_info('t', 'aux')"),
        (LITE, "SELECT * FROM pragma_database_list"),
        (LITE, "SELECT * FROM pragma_compile_options()"),
        (LITE, "VACUUM INTO '/tmp/x'"),
        (LITE, "REINDEX"),
        (LITE, "ANALYZE"),
        (LITE, "REPLACE INTO t VALUES (1)"),
        (LITE, "INSERT INTO t VALUES (1)"),
        (LITE, "CREATE TABLE x (a)"),
        (LITE, "DROP TABLE t"),
        (LITE, "SELECT $a, load_extension('x'), $a"),
        (LITE, "SELECT 1; ATTACH 'x' AS y"),
        (LITE, "BEGIN IMMEDIATE"),
        (LITE, "SAVEPOINT a"),
        (LITE, "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x"),
        (LITE, "SELECT * FROM t WHERE a REGEXP"),
    ];

    /// Legitimate investigation queries: each must be approved with this kind.
    const LEGIT: &[(Dialect, &str, StatementKind)] = &[
        (PG, "SELECT 1", StatementKind::Select),
        (PG, "SELECT * FROM orders", StatementKind::Select),
        (PG, "SELECT o.id, u.email FROM orders o JOIN users u ON u.id = o.user_id WHERE o.created_at > now() - interval '1 day'", StatementKind::Select),
        (PG, "SELECT o.id FROM orders o LEFT JOIN refunds r ON r.order_id = o.id WHERE r.id IS NULL", StatementKind::Select),
        (PG, "SELECT user_id, amount, row_number() OVER (PARTITION BY user_id ORDER BY created_at DESC) AS rn FROM orders", StatementKind::Select),
        (PG, "SELECT day, sum(total) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) FROM daily", StatementKind::Select),
        (PG, "SELECT lag(total) OVER w, lead(total) OVER w FROM orders WINDOW w AS (PARTITION BY user_id ORDER BY id)", StatementKind::Select),
        (PG, "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '7 days') SELECT count(*) FROM recent", StatementKind::Select),
        (PG, "WITH RECURSIVE tree AS (SELECT id, parent_id FROM categories WHERE parent_id IS NULL UNION ALL SELECT c.id, c.parent_id FROM categories c JOIN tree t ON c.parent_id = t.id) SELECT * FROM tree", StatementKind::Select),
        (PG, "SELECT payload->>'status', payload->'items' FROM events", StatementKind::Select),
        (PG, "SELECT payload #>> '{a,b}', payload #> '{a}' FROM events", StatementKind::Select),
        (PG, "SELECT * FROM events WHERE payload @> '{\"type\":\"refund\"}'", StatementKind::Select),
        (PG, "SELECT * FROM events WHERE payload ? 'type'", StatementKind::Select),
        (PG, "SELECT jsonb_array_elements(payload->'items') FROM events", StatementKind::Select),
        (PG, "SELECT e.id, item FROM events e, jsonb_array_elements(e.payload->'items') AS item", StatementKind::Select),
        (PG, "SELECT date_trunc('hour', created_at) AS h, count(*) FROM orders GROUP BY 1 ORDER BY 1", StatementKind::Select),
        (PG, "SELECT extract(epoch FROM now() - created_at) FROM orders", StatementKind::Select),
        (PG, "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FROM requests", StatementKind::Select),
        (PG, "SELECT count(*) FILTER (WHERE status = 'failed') FROM jobs", StatementKind::Select),
        (PG, "SELECT CASE WHEN total > 100 THEN 'big' ELSE 'small' END, COALESCE(note, '') FROM orders", StatementKind::Select),
        (PG, "SELECT DISTINCT ON (user_id) user_id, created_at FROM orders ORDER BY user_id, created_at DESC", StatementKind::Select),
        (PG, "SELECT region, product, sum(x) FROM sales GROUP BY ROLLUP (region, product)", StatementKind::Select),
        (PG, "SELECT * FROM orders ORDER BY id DESC LIMIT 50 OFFSET 100", StatementKind::Select),
        (PG, "SELECT * FROM orders WHERE id IN (SELECT order_id FROM refunds WHERE amount > 10)", StatementKind::Select),
        (PG, "SELECT * FROM orders o WHERE EXISTS (SELECT 1 FROM refunds r WHERE r.order_id = o.id)", StatementKind::Select),
        (PG, "SELECT * FROM generate_series(1, 10) AS g(n)", StatementKind::Select),
        (PG, "SELECT u.id, l.last FROM users u CROSS JOIN LATERAL (SELECT max(created_at) AS last FROM orders o WHERE o.user_id = u.id) l", StatementKind::Select),
        (PG, "SELECT string_agg(email, ', ' ORDER BY email) FROM users", StatementKind::Select),
        (PG, "SELECT id::text, amount::numeric(10,2) FROM orders", StatementKind::Select),
        (PG, "SELECT * FROM orders WHERE created_at BETWEEN '2024-01-01' AND '2024-02-01' AND status <> 'x'", StatementKind::Select),
        (PG, r"SELECT * FROM orders WHERE email ILIKE '%@example.com' AND note ~ '\d+'", StatementKind::Select),
        (PG, "SELECT count(*) FROM orders TABLESAMPLE SYSTEM (1)", StatementKind::Select),
        (PG, "SELECT array_agg(id) FROM orders GROUP BY user_id HAVING count(*) > 1", StatementKind::Select),
        (PG, "SELECT * FROM orders WHERE id = $1", StatementKind::Select),
        (PG, "SELECT * FROM orders WHERE status = ANY(ARRAY['a','b'])", StatementKind::Select),
        (PG, "SELECT id FROM orders UNION SELECT id FROM archived_orders EXCEPT SELECT id FROM deleted_orders", StatementKind::Select),
        (PG, "(SELECT 1) UNION ALL (SELECT 2)", StatementKind::Select),
        (PG, "VALUES (1, 'a'), (2, 'b')", StatementKind::Select),
        (PG, "SELECT a, b FROM (VALUES (1, 2)) AS v(a, b)", StatementKind::Select),
        (PG, "SELECT * FROM app.orders", StatementKind::Select),
        (PG, "SELECT * FROM reporting.daily_revenue r JOIN app.orders o ON o.day = r.day", StatementKind::Select),
        (PG, "SELECT \"Order Id\" FROM \"Orders\"", StatementKind::Select),
        (PG, "SELECT * FROM \"App\".orders", StatementKind::Select),
        (PG, "SELECT $$it's$$ AS quote, $tag$x; DELETE$tag$ AS t", StatementKind::Select),
        (PG, "SELECT E'line\\nbreak', 'it''s'", StatementKind::Select),
        (PG, "-- investigate\nSELECT 1 /* inline */ FROM orders -- trailing", StatementKind::Select),
        (PG, "SELECT 1 AS x /* outer /* nested */ still comment */", StatementKind::Select),
        (PG, "SELECT 1;", StatementKind::Select),
        (PG, "  SELECT count(*) FROM orders ;  \n", StatementKind::Select),
        (PG, "SELECT now(), current_date, current_setting('TimeZone'), version()", StatementKind::Select),
        (PG, "SELECT pg_size_pretty(pg_total_relation_size('app.orders'))", StatementKind::Select),
        (PG, "SELECT pg_typeof(created_at) FROM orders LIMIT 1", StatementKind::Select),
        (PG, "SELECT 'app.orders'::regclass, 'orders'::regclass::oid", StatementKind::Select),
        (PG, "EXPLAIN SELECT * FROM orders WHERE id = 1", StatementKind::Explain),
        (PG, "EXPLAIN (FORMAT JSON) SELECT * FROM orders", StatementKind::Explain),
        (PG, "EXPLAIN (VERBOSE, COSTS false, BUFFERS) SELECT 1", StatementKind::Explain),
        (PG, "EXPLAIN VERBOSE SELECT * FROM orders o JOIN users u ON u.id = o.user_id", StatementKind::Explain),
        (PG, "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'app' AND table_name = 'orders'", StatementKind::Select),
        (PG, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'app'", StatementKind::Select),
        (PG, "SELECT * FROM pg_catalog.pg_indexes WHERE schemaname = 'app' AND tablename = 'orders'", StatementKind::Select),
        (PG, "SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app'", StatementKind::Select),
        (PG, "SELECT table_name FROM information_schema.tables WHERE table_schema IN ('app', 'reporting')", StatementKind::Select),
        (PG, "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()", StatementKind::Select),
        (PG, "SELECT tablename FROM pg_tables WHERE schemaname = ANY(current_schemas(false))", StatementKind::Select),
        (PG, "SELECT t.table_name, c.column_name FROM information_schema.tables t JOIN information_schema.columns c ON c.table_schema = t.table_schema AND c.table_name = t.table_name WHERE t.table_schema = 'app'", StatementKind::Select),
        (PG, "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = 'app'::regnamespace AND c.relname = 'orders' AND a.attnum > 0", StatementKind::Select),
        (PG, "SELECT c.relname, d.description FROM pg_class c LEFT JOIN pg_description d ON d.objoid = c.oid WHERE c.relnamespace = 'app'::regnamespace", StatementKind::Select),
        (PG, "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE schemaname = 'app' ORDER BY n_live_tup DESC", StatementKind::Select),
        (PG, "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE c.connamespace = 'app'::regnamespace", StatementKind::Select),
        (PG, "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace WHERE n.nspname = 'reporting'", StatementKind::Select),
        (PG, "SELECT t.typname, e.enumlabel FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid WHERE t.typnamespace = 'app'::regnamespace", StatementKind::Select),
        (PG, "SELECT nspname FROM pg_namespace WHERE nspname = 'app'", StatementKind::Select),
        (PG, "SELECT * FROM information_schema.table_constraints WHERE constraint_schema = 'reporting'", StatementKind::Select),
        (PG, "SELECT extname, extversion FROM pg_extension", StatementKind::Select),
        (PG, "SELECT count(*) FROM (SELECT relname FROM pg_class WHERE relnamespace = 'app'::regnamespace) s", StatementKind::Select),
        (PG, "SELECT c.oid::regclass, pg_size_pretty(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app' ORDER BY pg_total_relation_size(c.oid) DESC", StatementKind::Select),
        (PG, "SELECT indexrelid::regclass, idx_scan FROM pg_stat_user_indexes WHERE schemaname = 'app' AND idx_scan = 0", StatementKind::Select),
        (PG, "SELECT relname, pg_size_pretty(pg_total_relation_size(relid)) FROM pg_stat_user_tables WHERE schemaname = 'app'", StatementKind::Select),
        (PG, "SELECT conrelid::regclass, conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'app'::regnamespace", StatementKind::Select),
        (PG, "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'app.orders'::regclass AND attnum > 0 AND NOT attisdropped", StatementKind::Select),
        (PG, "SELECT conname FROM pg_constraint WHERE conrelid = 'orders'::regclass", StatementKind::Select),
        (PG, "SELECT i.relname AS index_name, a.attname FROM pg_class t JOIN pg_index ix ON t.oid = ix.indrelid JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(ix.indkey) WHERE t.relname = 'orders' AND t.relnamespace = 'app'::regnamespace", StatementKind::Select),
        (PG, "SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = 'app.mood'::regtype ORDER BY e.enumsortorder", StatementKind::Select),
        (PG, "SELECT viewname, definition FROM pg_views WHERE schemaname = 'app'", StatementKind::Select),
        (PG, "SELECT p.proname, pg_get_function_arguments(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'app'", StatementKind::Select),
        (PG, "SELECT to_regclass('app.orders'), 'orders'::regclass, regclass('app.orders')", StatementKind::Select),
        (PG, "SELECT attname, n_distinct, most_common_vals FROM pg_stats WHERE schemaname = 'app' AND tablename = 'orders'", StatementKind::Select),
        // -- MySQL / MariaDB
        (MY, "SELECT * FROM orders WHERE created_at > NOW() - INTERVAL 1 DAY", StatementKind::Select),
        (MY, "SELECT JSON_EXTRACT(payload, '$.status') FROM events", StatementKind::Select),
        (MY, "SELECT payload->>'$.status', payload->'$.items' FROM events", StatementKind::Select),
        (MY, "SELECT o.id, u.email FROM orders o INNER JOIN users u ON u.id = o.user_id LEFT JOIN refunds r ON r.order_id = o.id", StatementKind::Select),
        (MY, "SELECT user_id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY created_at) FROM orders", StatementKind::Select),
        (MY, "WITH RECURSIVE seq AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM seq WHERE n < 5) SELECT * FROM seq", StatementKind::Select),
        (MY, "SELECT `order`.`id` FROM `app`.`order`", StatementKind::Select),
        (MY, "SELECT DATE_FORMAT(created_at, '%Y-%m') m, COUNT(*) FROM orders GROUP BY m", StatementKind::Select),
        (MY, "SELECT * FROM orders LIMIT 10, 20", StatementKind::Select),
        (MY, "SELECT IFNULL(note, ''), IF(total > 1, 'a', 'b') FROM orders", StatementKind::Select),
        (MY, "SELECT @@version, @@sql_mode", StatementKind::Select),
        (MY, "SELECT * FROM orders WHERE id = 1 # comment", StatementKind::Select),
        (MY, "SELECT * FROM orders WHERE id = 1 -- comment", StatementKind::Select),
        (MY, "SELECT uuid(), uuid_short(), extractvalue('<a>1</a>', '/a')", StatementKind::Select),
        (MY, "SELECT * FROM reporting.daily", StatementKind::Select),
        (MY, "SELECT table_name, table_rows FROM information_schema.tables WHERE table_schema = 'app'", StatementKind::Select),
        (MY, "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'orders'", StatementKind::Select),
        (MY, "SELECT index_name FROM information_schema.statistics WHERE table_schema = \"app\"", StatementKind::Select),
        (MY, "SELECT * FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'APP'", StatementKind::Select),
        (MY, "SHOW TABLES", StatementKind::Show),
        (MY, "SHOW FULL TABLES FROM app LIKE 'ord%'", StatementKind::Show),
        (MY, "SHOW COLUMNS FROM orders", StatementKind::Show),
        (MY, "SHOW FULL COLUMNS FROM orders FROM reporting", StatementKind::Show),
        (MY, "SHOW INDEX FROM orders", StatementKind::Show),
        (MY, "SHOW KEYS FROM app.orders", StatementKind::Show),
        (MY, "SHOW CREATE TABLE orders", StatementKind::Show),
        (MY, "DESCRIBE orders", StatementKind::Show),
        (MY, "DESC reporting.daily", StatementKind::Show),
        (MY, "EXPLAIN orders", StatementKind::Show),
        (MY, "EXPLAIN SELECT * FROM orders WHERE id = 1", StatementKind::Explain),
        (MY, "EXPLAIN FORMAT=JSON SELECT * FROM orders", StatementKind::Explain),
        (MY, "SELECT 1;", StatementKind::Select),
        // -- SQLite
        (LITE, "SELECT name FROM sqlite_master WHERE type='table'", StatementKind::Select),
        (LITE, "SELECT sql FROM sqlite_schema WHERE name = 'orders'", StatementKind::Select),
        (LITE, "SELECT * FROM pragma_table_info('orders')", StatementKind::Select),
        (LITE, "SELECT * FROM pragma_index_list('orders')", StatementKind::Select),
        (LITE, "SELECT json_extract(payload, '$.a') FROM events", StatementKind::Select),
        (LITE, "SELECT payload ->> '$.a' FROM events", StatementKind::Select),
        (LITE, "SELECT e.id, j.value FROM events e, json_each(e.payload) j", StatementKind::Select),
        (LITE, "SELECT strftime('%Y-%m', created_at), count(*) FROM orders GROUP BY 1", StatementKind::Select),
        (LITE, "SELECT * FROM main.orders", StatementKind::Select),
        (LITE, "SELECT datetime('now', '-1 day')", StatementKind::Select),
        (LITE, "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < 10) SELECT * FROM c", StatementKind::Select),
        (LITE, "SELECT [weird name] FROM \"Orders\"", StatementKind::Select),
        (LITE, "SELECT rowid, * FROM orders ORDER BY rowid DESC LIMIT 5", StatementKind::Select),
        (LITE, "EXPLAIN QUERY PLAN SELECT * FROM orders WHERE id = 1", StatementKind::Explain),
    ];

    #[test]
    fn corpus_sizes() {
        assert!(HOSTILE.len() >= 80, "{}", HOSTILE.len());
        assert!(LEGIT.len() >= 60, "{}", LEGIT.len());
    }

    #[test]
    fn hostile_corpus_is_refused() {
        let mut approved = Vec::new();
        for (dialect, sql) in HOSTILE {
            match run(*dialect, sql) {
                Ok(a) => approved.push(format!("[{dialect}] {sql:?} -> {:?}", a.kind)),
                Err(refusal) => assert_refusal_shape(&refusal),
            }
        }
        assert!(
            approved.is_empty(),
            "approved hostile statements:\n{}",
            approved.join("\n")
        );
    }

    #[test]
    fn legit_corpus_is_approved() {
        let mut failures = Vec::new();
        for (dialect, sql, kind) in LEGIT {
            match run(*dialect, sql) {
                Ok(a) if a.kind == *kind => {}
                Ok(a) => failures.push(format!("[{dialect}] {sql:?}: kind {:?}", a.kind)),
                Err(e) => failures.push(format!("[{dialect}] {sql:?}: {e}")),
            }
        }
        assert!(
            failures.is_empty(),
            "legitimate queries refused:\n{}",
            failures.join("\n")
        );
    }

    #[test]
    fn huge_input_is_refused() {
        let big = format!("SELECT '{}'", "a".repeat(200_000));
        let err = run(PG, &big).unwrap_err();
        assert!(err.0.contains("too long"), "{err}");
    }

    #[test]
    fn messages_match_the_documented_forms() {
        let msg = |d, sql| run(d, sql).unwrap_err().to_string();
        assert_eq!(
            msg(PG, "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"),
            "refused: writable CTE (DELETE) is not allowed"
        );
        assert_eq!(
            msg(PG, "SELECT pg_sleep(1)"),
            "refused: function pg_sleep is not allowed"
        );
        assert_eq!(
            msg(PG, "SELECT \"pg_sleep\"(1)"),
            "refused: function pg_sleep is not allowed"
        );
        assert_eq!(
            msg(PG, "SELECT * FROM billing.invoices"),
            "refused: schema `billing` is outside your grant (granted: app, reporting)"
        );
        assert_eq!(
            msg(PG, "SELECT 1; SELECT 2"),
            "refused: only one statement per query (found 2)"
        );
        assert_eq!(
            msg(PG, "select 1 -- comment\n; delete from t"),
            "refused: only one statement per query (found 2)"
        );
        assert_eq!(
            msg(PG, "SELECT 1;;"),
            "refused: only one statement per query: remove the extra `;`"
        );
        assert_eq!(
            msg(PG, "SELECT pg_get_viewdef(g) FROM generate_series(1, 9) g"),
            "refused: pg_get_viewdef: pass an oid column of a schema-filtered catalog relation (e.g. c.oid) or a 'schema.name' literal"
        );
        assert_eq!(
            msg(PG, "EXPLAIN ANALYZE SELECT 1"),
            "refused: EXPLAIN ANALYZE executes the statement and is not allowed"
        );
        assert_eq!(
            msg(PG, "EXPLAIN (ANALYZE, BUFFERS) SELECT 1"),
            "refused: EXPLAIN ANALYZE executes the statement and is not allowed"
        );
        assert_eq!(
            msg(PG, "SELECT * FROM information_schema.tables"),
            "refused: catalog reads must filter on the schema column, e.g. table_schema = 'app' (granted: app, reporting)"
        );
        assert!(msg(PG, "SELEC 1 FRM").starts_with("refused: "));
        assert!(msg(PG, "SELECT FROM WHERE (")
            .starts_with("refused: could not parse SQL for postgres: "));
        assert_eq!(
            msg(PG, "DELETE FROM t"),
            "refused: DELETE statements are not allowed: only read-only queries (SELECT, WITH ... SELECT, VALUES, TABLE, EXPLAIN, SHOW) are accepted"
        );
        assert_eq!(
            msg(PG, "SELECT * FROM t FOR UPDATE"),
            "refused: locking clause FOR UPDATE is not allowed"
        );
        assert!(msg(
            MY,
            "SELECT * FROM information_schema.tables WHERE table_schema = 'billing'"
        )
        .contains("`billing` is outside your grant"));
    }

    #[test]
    fn approved_sql_is_the_single_checked_statement() {
        let sql = |d, s| run(d, s).unwrap().sql;
        assert_eq!(sql(PG, "  SELECT 1;  \n"), "SELECT 1");
        assert_eq!(sql(PG, "SELECT 1; -- done"), "SELECT 1");
        assert_eq!(sql(PG, "SELECT 1 -- note"), "SELECT 1");
        assert_eq!(
            sql(PG, "-- why\nSELECT 1 /* a */ + 1 -- note"),
            "-- why\nSELECT 1 /* a */ + 1"
        );
        assert_eq!(sql(MY, "SELECT 1 -- \n"), "SELECT 1");
        assert_eq!(sql(PG, "SELECT ';' ;"), "SELECT ';'");
        assert_eq!(sql(PG, "SELECT 'é' AS x;"), "SELECT 'é' AS x");
        assert_eq!(sql(PG, "SELECT 'a\nb'\n  ;\n"), "SELECT 'a\nb'");
        assert_eq!(sql(MY, "/* why */ SELECT 1 ;"), "/* why */ SELECT 1");
    }

    #[test]
    fn reads_catalog_flag() {
        assert!(!run(PG, "SELECT * FROM orders").unwrap().reads_catalog);
        assert!(
            run(
                PG,
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'app'"
            )
            .unwrap()
            .reads_catalog
        );
        assert!(
            run(LITE, "SELECT name FROM sqlite_master")
                .unwrap()
                .reads_catalog
        );
        assert!(run(MY, "SHOW TABLES").unwrap().reads_catalog);
    }

    #[test]
    fn cte_names_do_not_count_as_tables_but_cannot_hide_catalogs() {
        assert!(run(PG, "WITH billing AS (SELECT 1) SELECT * FROM billing").is_ok());
        assert!(run(PG, "WITH pg_class AS (SELECT 1) SELECT * FROM pg_class").is_err());
        assert!(run(PG, "WITH x AS (SELECT 1) SELECT * FROM billing.x").is_err());
    }

    #[test]
    fn deep_expressions_do_not_overflow_the_stack() {
        let deep = format!("SELECT 1{}", "+1".repeat(9_000));
        assert!(run(PG, &deep).is_ok());
        let too_deep = format!("SELECT 1{}", "+1".repeat(45_000));
        assert!(run(PG, &too_deep).unwrap_err().0.contains("too complex"));
        let nested = format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000));
        assert!(run(MY, &nested).is_err());
        let big_in = format!("SELECT * FROM t WHERE id IN (1{})", ",1".repeat(20_000));
        assert!(run(PG, &big_in).is_ok());
    }

    #[test]
    fn scope_matching_is_case_insensitive_and_strict() {
        let scope = SqlScope {
            default_schema: "App".into(),
            schemas: vec!["App".into()],
        };
        assert!(check(PG, "SELECT * FROM app.orders", &scope).is_ok());
        assert!(check(PG, "SELECT * FROM orders", &scope).is_ok());
        let none = SqlScope {
            default_schema: "app".into(),
            schemas: vec![],
        };
        assert!(check(PG, "SELECT * FROM orders", &none).is_err());
    }

    // -- property tests ------------------------------------------------------

    const VOCABULARY: &[&str] = &[
        "SELECT",
        "FROM",
        "WHERE",
        "WITH",
        "AS",
        "(",
        ")",
        ",",
        ";",
        "*",
        "=",
        "'x'",
        "\"y\"",
        "`z`",
        "$$q$$",
        "1",
        "t",
        "app.t",
        "billing.t",
        "pg_sleep",
        "sleep",
        "DELETE",
        "INSERT",
        "INTO",
        "UPDATE",
        "SET",
        "DROP",
        "TABLE",
        "EXPLAIN",
        "ANALYZE",
        "FOR",
        "SHARE",
        "UNION",
        "JOIN",
        "ON",
        "--",
        "/*",
        "*/",
        "/*!",
        "#",
        "\n",
        "\\",
        "U&",
        "::",
        "->>",
        "@>",
        "DIV",
        "REGEXP",
        "VALUES",
        "RETURNING",
        "LATERAL",
        "pg_class",
        "information_schema.tables",
        "table_schema",
        "OR",
        "AND",
        "NOT",
        "'app'",
        "SHOW",
        "DESCRIBE",
        "PRAGMA",
        "?",
        "$1",
        "@a",
        ":=",
        "E'\\''",
        "[",
        "]",
        "CASE",
        "WHEN",
        "END",
        "OVER",
        "LIMIT",
    ];

    const WRITES: &[&str] = &[
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "DROP TABLE t",
        "TRUNCATE t",
        "CREATE TABLE x (a int)",
        "ALTER TABLE t ADD COLUMN b int",
        "GRANT SELECT ON t TO u",
        "SET search_path = billing",
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "COPY t FROM '/tmp/x'",
        "CALL p()",
        "LOCK TABLE t",
        "REPLACE INTO t VALUES (1)",
        "PRAGMA writable_schema = 1",
        "ATTACH DATABASE 'x' AS y",
    ];

    fn trivia() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(" ".to_owned()),
            Just("\n".to_owned()),
            Just("\t".to_owned()),
            "[a-z0-9 ]{0,12}".prop_map(|c| format!("/* {c} */")),
            "[a-z0-9 ]{0,12}".prop_map(|c| format!("-- {c}\n")),
        ];
        prop::collection::vec(piece, 0..4).prop_map(|v| v.concat())
    }

    fn flip_case(text: &str, flips: &[bool]) -> String {
        text.chars()
            .zip(flips.iter().cycle())
            .map(|(c, up)| {
                if *up {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    }

    fn dialect() -> impl Strategy<Value = Dialect> {
        prop_oneof![Just(PG), Just(MY), Just(LITE)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn never_panics_on_arbitrary_text(text in any::<String>()) {
            for d in DIALECTS {
                match check(d, &text, &scope(d)) {
                    Ok(a) => prop_assert!(!a.sql.is_empty()),
                    Err(refusal) => assert_refusal_shape(&refusal),
                }
            }
        }

        #[test]
        fn never_panics_on_token_soup(
            picks in prop::collection::vec(0..VOCABULARY.len(), 0..40),
            glue in prop::collection::vec(prop_oneof![Just(""), Just(" "), Just("\n")], 40),
        ) {
            let mut sql = String::new();
            for (i, pick) in picks.iter().enumerate() {
                sql.push_str(VOCABULARY[*pick]);
                sql.push_str(glue[i % glue.len()]);
            }
            for d in DIALECTS {
                match check(d, &sql, &scope(d)) {
                    // What was approved is one read-only statement: checking
                    // the approved text again gives the same verdict.
                    Ok(a) => {
                        let again = check(d, &a.sql, &scope(d));
                        prop_assert!(again.is_ok(), "{:?} -> {:?}", sql, again);
                        if let Ok(b) = again {
                            prop_assert_eq!(&a.sql, &b.sql);
                            prop_assert_eq!(&a.kind, &b.kind);
                        }
                        prop_assert!(!a.sql.ends_with(';'));
                    }
                    Err(refusal) => assert_refusal_shape(&refusal),
                }
            }
        }

        #[test]
        fn hostile_statements_stay_refused_when_wrapped(
            index in 0..HOSTILE.len(),
            before in trivia(),
            after in trivia(),
            semicolon in any::<bool>(),
        ) {
            let (d, sql) = HOSTILE[index];
            // Empty-ish corpus entries are refused for being empty; wrapping keeps that.
            let wrapped = format!("{before}{sql}{}{after}", if semicolon { ";" } else { "" });
            prop_assert!(check(d, &wrapped, &scope(d)).is_err(), "approved: {:?}", wrapped);
        }

        #[test]
        fn write_statements_are_never_approved(
            index in 0..WRITES.len(),
            flips in prop::collection::vec(any::<bool>(), 1..16),
            before in trivia(),
            after in trivia(),
            stacked in any::<bool>(),
            d in dialect(),
        ) {
            let write = flip_case(WRITES[index], &flips);
            let sql = if stacked {
                format!("{before}SELECT 1;{after}{write}")
            } else {
                format!("{before}{write}{after}")
            };
            prop_assert!(check(d, &sql, &scope(d)).is_err(), "approved: {:?}", sql);
        }

        #[test]
        fn legit_queries_survive_comments_and_whitespace(
            index in 0..LEGIT.len(),
            before in trivia(),
            after in trivia(),
        ) {
            let (d, sql, kind) = &LEGIT[index];
            // A trailing `-- comment` would swallow nothing here; keep the suffix after any `;`.
            let wrapped = format!("{before}{sql}\n{after}");
            let approved = check(*d, &wrapped, &scope(*d));
            prop_assert!(approved.is_ok(), "{:?}: {:?}", wrapped, approved);
            if let Ok(a) = approved {
                prop_assert_eq!(&a.kind, kind);
                prop_assert_eq!(a.sql.trim(), a.sql.as_str());
            }
        }
    }
}
