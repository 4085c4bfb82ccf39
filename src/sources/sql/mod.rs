//! SQL sources: PostgreSQL, MySQL/MariaDB and SQLite on sqlx.
//!
//! Read-only by layers: the guard parses and approves one read statement for the
//! grant; the session is read-only where the server supports it; each call runs in
//! a read-only transaction that is always rolled back, with a server-side statement
//! timeout, a client-side timeout behind it, and row and byte caps on what is kept.

mod decode;
mod mysql;
mod postgres;
mod sqlite;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{
    arg_opt_str, arg_opt_u64, arg_str, reject_unknown_args, BuildContext, CallContext, Error,
    Health, Result, Source, ToolOutput, ToolSpec,
};
use crate::access::SourceGrant;
use crate::config::{database_schemas, DatabaseConfig, DatabaseKind, SourceEntry, SourceSpec};
use crate::evidence::{Content, Table};
use crate::guard::sql::{self as guard, Dialect, SqlScope, StatementKind};

pub const DEFAULT_MAX_ROWS: u32 = 1000;
pub const DEFAULT_MAX_BYTES: u64 = 4 * 1024 * 1024;
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Grace between the server's statement timeout and ours, so the server's cleaner
/// cancellation normally wins.
const CLIENT_GRACE: Duration = Duration::from_secs(2);

pub const TOOL_LIST_TABLES: &str = "list_tables";
pub const TOOL_DESCRIBE_TABLE: &str = "describe_table";
pub const TOOL_RUN_QUERY: &str = "run_query";

/// Caps for one call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_rows: u32,
    pub max_bytes: u64,
    pub statement_timeout: Duration,
}

/// What one execution needs to know about the grant.
#[derive(Debug, Clone)]
pub struct RunScope {
    pub default_schema: String,
    pub schemas: Vec<String>,
}

enum Backend {
    Postgres(postgres::Backend),
    MySql(mysql::Backend),
    Sqlite(sqlite::Backend),
}

pub struct SqlSource {
    name: String,
    kind: &'static str,
    dialect: Dialect,
    /// Schema that unqualified names resolve to.
    default_schema: String,
    limits: Limits,
    backend: Backend,
}

/// The registry's factory for `postgresql`, `mysql` and `sqlite`.
pub fn build(entry: &SourceEntry, ctx: &BuildContext) -> Result<Arc<dyn Source>> {
    let SourceSpec::Database(db) = &entry.spec else {
        return Err(Error::Config(format!(
            "source `{}` is not a database",
            entry.name
        )));
    };
    Ok(Arc::new(SqlSource::new(entry, db, ctx)?))
}

impl SqlSource {
    pub fn new(entry: &SourceEntry, db: &DatabaseConfig, ctx: &BuildContext) -> Result<Self> {
        let limits = Limits {
            max_rows: db.max_rows.unwrap_or(DEFAULT_MAX_ROWS),
            max_bytes: db.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
            statement_timeout: db
                .statement_timeout
                .map(|d| d.0)
                .unwrap_or(DEFAULT_STATEMENT_TIMEOUT),
        };
        let password = match &db.password {
            Some(secret) => Some(
                secret
                    .resolve(ctx.master_key.as_deref())
                    .map_err(|e| Error::Config(format!("{}.password: {e}", entry.path)))?,
            ),
            None => None,
        };
        let connect_timeout = db
            .connect_timeout
            .map(|d| d.0)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let (dialect, default_schema, backend) = match db.kind {
            DatabaseKind::Postgresql => (
                Dialect::Postgres,
                "public".to_string(),
                Backend::Postgres(postgres::Backend::new(
                    db,
                    password,
                    connect_timeout,
                    &limits,
                )?),
            ),
            DatabaseKind::Mysql | DatabaseKind::Mariadb => (
                Dialect::MySql,
                db.database.clone().unwrap_or_default(),
                Backend::MySql(mysql::Backend::new(db, password, connect_timeout, &limits)?),
            ),
            DatabaseKind::Sqlite => {
                let path = db.path.clone().unwrap_or_default();
                let path = if std::path::Path::new(&path).is_relative()
                    && !ctx.config_dir.as_os_str().is_empty()
                {
                    ctx.config_dir.join(path)
                } else {
                    std::path::PathBuf::from(path)
                };
                (
                    Dialect::Sqlite,
                    "main".to_string(),
                    Backend::Sqlite(sqlite::Backend::new(&path, connect_timeout)?),
                )
            }
        };
        // Unqualified names resolve to the first allowlisted schema on PostgreSQL, so
        // that is what the guard must treat as the default.
        let default_schema = match db.kind {
            DatabaseKind::Postgresql => database_schemas(db)
                .into_iter()
                .next()
                .unwrap_or(default_schema),
            DatabaseKind::Mysql | DatabaseKind::Mariadb | DatabaseKind::Sqlite => default_schema,
        };
        Ok(SqlSource {
            name: entry.name.clone(),
            kind: entry.spec.kind(),
            dialect,
            default_schema,
            limits,
            backend,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The scope the guard and the session enforce for `grant`.
    fn scope(&self, grant: &SourceGrant) -> Result<RunScope> {
        let schemas = grant.schemas.clone().unwrap_or_default();
        if schemas.is_empty() {
            return Err(Error::Refused(format!(
                "refused: your grant on `{}` includes no schema",
                self.name
            )));
        }
        // The default schema must itself be granted, else unqualified names would
        // reach an ungranted one; fall back to the first granted schema.
        let default_schema = schemas
            .iter()
            .find(|s| s.eq_ignore_ascii_case(&self.default_schema))
            .cloned()
            .unwrap_or_else(|| schemas[0].clone());
        Ok(RunScope {
            default_schema,
            schemas,
        })
    }

    async fn run_query(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        reject_unknown_args(TOOL_RUN_QUERY, args, &["sql", "max_rows"])?;
        let sql = arg_str(TOOL_RUN_QUERY, args, "sql")?;
        let scope = self.scope(grant)?;
        let guard_scope = SqlScope {
            default_schema: scope.default_schema.clone(),
            schemas: scope.schemas.clone(),
        };
        let approved = guard::check(self.dialect, sql, &guard_scope)
            .map_err(|r| Error::Refused(r.to_string()))?;
        let mut limits = self.limits_for(ctx);
        if let Some(requested) = arg_opt_u64(TOOL_RUN_QUERY, args, "max_rows")? {
            limits.max_rows = limits
                .max_rows
                .min(requested.clamp(1, u32::MAX as u64) as u32);
        }
        let count_total = approved.kind == StatementKind::Select;
        let table = self
            .with_timeout(
                limits,
                self.execute(&approved.sql, count_total, &scope, &limits),
            )
            .await?;
        let note = truncation_note(&table);
        Ok(ToolOutput {
            statement: approved.sql,
            content: Content::Table(table),
            note,
            attachments: Vec::new(),
        })
    }

    async fn execute(
        &self,
        sql: &str,
        count_total: bool,
        scope: &RunScope,
        limits: &Limits,
    ) -> Result<Table> {
        match &self.backend {
            Backend::Postgres(b) => b.run(sql, count_total, scope, limits).await,
            Backend::MySql(b) => b.run(sql, count_total, scope, limits).await,
            Backend::Sqlite(b) => b.run(sql, count_total, limits).await,
        }
    }

    /// Runs `sql` through the database layers only (read-only session and
    /// transaction, timeouts, caps), skipping the guard. Exists so tests can prove
    /// those layers hold by themselves; nothing in the product calls it.
    #[doc(hidden)]
    pub async fn run_without_guard_for_tests(
        &self,
        sql: &str,
        grant: &SourceGrant,
    ) -> Result<Table> {
        let scope = self.scope(grant)?;
        let limits = self.limits;
        self.with_timeout(limits, self.execute(sql, false, &scope, &limits))
            .await
    }

    fn limits_for(&self, ctx: &CallContext) -> Limits {
        let mut limits = self.limits;
        limits.statement_timeout = limits.statement_timeout.min(ctx.timeout);
        limits
    }

    /// The client-side timeout behind the server's.
    async fn with_timeout<T>(
        &self,
        limits: Limits,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(limits.statement_timeout + CLIENT_GRACE, fut).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(limits.statement_timeout)),
        }
    }

    async fn list_tables(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        reject_unknown_args(TOOL_LIST_TABLES, args, &["schema"])?;
        let scope = self.scope(grant)?;
        let schemas = match arg_opt_str(TOOL_LIST_TABLES, args, "schema")? {
            Some(wanted) => vec![self.granted_schema(&scope, wanted)?],
            None => scope.schemas.clone(),
        };
        let limits = self.limits_for(ctx);
        let table = self
            .with_timeout(limits, async {
                match &self.backend {
                    Backend::Postgres(b) => b.list_tables(&schemas, &limits).await,
                    Backend::MySql(b) => b.list_tables(&schemas, &limits).await,
                    Backend::Sqlite(b) => b.list_tables(&limits).await,
                }
            })
            .await?;
        Ok(ToolOutput {
            statement: format!("list tables in {}", schemas.join(", ")),
            note: truncation_note(&table),
            attachments: Vec::new(),
            content: Content::Table(table),
        })
    }

    async fn describe_table(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        reject_unknown_args(TOOL_DESCRIBE_TABLE, args, &["table", "schema"])?;
        let scope = self.scope(grant)?;
        let raw = arg_str(TOOL_DESCRIBE_TABLE, args, "table")?;
        let explicit = arg_opt_str(TOOL_DESCRIBE_TABLE, args, "schema")?;
        let (schema, table) = match (explicit, raw.split_once('.')) {
            (Some(schema), _) => (schema.to_string(), raw.to_string()),
            (None, Some((schema, table))) => (schema.to_string(), table.to_string()),
            (None, None) => (scope.default_schema.clone(), raw.to_string()),
        };
        let schema = self.granted_schema(&scope, unquote(&schema))?;
        let table = unquote(&table).to_string();
        let limits = self.limits_for(ctx);
        let description = self
            .with_timeout(limits, async {
                match &self.backend {
                    Backend::Postgres(b) => b.describe_table(&schema, &table).await,
                    Backend::MySql(b) => b.describe_table(&schema, &table).await,
                    Backend::Sqlite(b) => b.describe_table(&table).await,
                }
            })
            .await?;
        Ok(ToolOutput {
            statement: format!("describe {schema}.{table}"),
            content: Content::Json(description),
            note: None,
            attachments: Vec::new(),
        })
    }

    fn granted_schema(&self, scope: &RunScope, wanted: &str) -> Result<String> {
        scope
            .schemas
            .iter()
            .find(|s| s.eq_ignore_ascii_case(wanted))
            .cloned()
            .ok_or_else(|| {
                Error::Refused(format!(
                    "refused: schema `{wanted}` is outside your grant (granted: {})",
                    scope.schemas.join(", ")
                ))
            })
    }
}

fn unquote(name: &str) -> &str {
    let name = name.trim();
    for (open, close) in [('"', '"'), ('`', '`'), ('[', ']')] {
        if let Some(inner) = name.strip_prefix(open).and_then(|n| n.strip_suffix(close)) {
            return inner;
        }
    }
    name
}

fn truncation_note(table: &Table) -> Option<String> {
    if !table.truncated {
        return None;
    }
    let by = table.truncated_by.clone().unwrap_or_else(|| "a cap".into());
    Some(match table.total_rows {
        Some(total) => format!("showing {} of {} rows ({by})", table.rows.len(), total),
        None => format!(
            "showing the first {} rows ({by}); total unknown",
            table.rows.len()
        ),
    })
}

#[async_trait]
impl Source for SqlSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn tools(&self, grant: &SourceGrant) -> Vec<ToolSpec> {
        let schemas = grant.schemas.clone().unwrap_or_default().join(", ");
        let dialect = match self.dialect {
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL/MariaDB",
            Dialect::Sqlite => "SQLite",
        };
        vec![
            ToolSpec {
                name: TOOL_LIST_TABLES.into(),
                description: format!(
                    "List the tables and views of {dialect} database `{}` in the schemas you may read ({schemas}), with their columns and row estimates.",
                    self.name
                ),
                input_schema: json!({
                    "type": "object",
                    "properties": {"schema": {"type": "string", "description": "Only this schema (optional)."}},
                    "additionalProperties": false
                }),
            },
            ToolSpec {
                name: TOOL_DESCRIBE_TABLE.into(),
                description: format!(
                    "Describe one table of `{}`: columns with types, nullability and defaults, indexes, and an estimated row count.",
                    self.name
                ),
                input_schema: json!({
                    "type": "object",
                    "properties": {
                        "table": {"type": "string", "description": "Table name, optionally schema-qualified (schema.table)."},
                        "schema": {"type": "string"}
                    },
                    "required": ["table"],
                    "additionalProperties": false
                }),
            },
            ToolSpec {
                name: TOOL_RUN_QUERY.into(),
                description: format!(
                    "Run ONE read-only {dialect} statement on `{}` (SELECT, WITH ... SELECT, EXPLAIN without ANALYZE). Readable schemas: {schemas}; unqualified names resolve to {}. Writes, DDL, locking, session changes and side-effecting functions are refused. At most {} rows are returned (more are counted); the statement is cancelled after {}s. Prefer aggregates (count, date_trunc buckets) over raw rows.",
                    self.name,
                    self.default_schema,
                    self.limits.max_rows,
                    self.limits.statement_timeout.as_secs_f64()
                ),
                input_schema: json!({
                    "type": "object",
                    "properties": {
                        "sql": {"type": "string", "description": "A single read-only statement."},
                        "max_rows": {"type": "integer", "minimum": 1, "description": format!("Rows to return, at most {}.", self.limits.max_rows)}
                    },
                    "required": ["sql"],
                    "additionalProperties": false
                }),
            },
        ]
    }

    async fn health(&self) -> Health {
        let started = Instant::now();
        let result = tokio::time::timeout(DEFAULT_CONNECT_TIMEOUT + CLIENT_GRACE, async {
            match &self.backend {
                Backend::Postgres(b) => b.version().await,
                Backend::MySql(b) => b.version().await,
                Backend::Sqlite(b) => b.version().await,
            }
        })
        .await
        .unwrap_or(Err(Error::Timeout(DEFAULT_CONNECT_TIMEOUT)));
        let latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(version) => Health {
                ok: true,
                detail: version,
                latency_ms,
            },
            Err(err) => Health {
                ok: false,
                detail: err.to_string(),
                latency_ms,
            },
        }
    }

    async fn call(
        &self,
        tool: &str,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        match tool {
            TOOL_RUN_QUERY => self.run_query(args, grant, ctx).await,
            TOOL_LIST_TABLES => self.list_tables(args, grant, ctx).await,
            TOOL_DESCRIBE_TABLE => self.describe_table(args, grant, ctx).await,
            other => Err(Error::UnknownTool {
                tool: other.to_string(),
                offered: [TOOL_LIST_TABLES, TOOL_DESCRIBE_TABLE, TOOL_RUN_QUERY].join(", "),
            }),
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn describe(&self, grant: &SourceGrant, ctx: &CallContext) -> Result<String> {
        let output = self.list_tables(&json!({}), grant, ctx).await?;
        let Content::Table(table) = output.content else {
            return Ok(String::new());
        };
        let mut lines = Vec::new();
        for object in table.to_objects() {
            let text = |k: &str| {
                object
                    .get(k)
                    .map(crate::evidence::cell_text)
                    .unwrap_or_default()
            };
            lines.push(format!(
                "{}.{} ({} rows est.): {}",
                text("schema"),
                text("table"),
                text("row_estimate"),
                text("columns")
            ));
        }
        Ok(lines.join("\n"))
    }
}

/// Maps a driver error to what the caller (and the model) should see. Database
/// messages are kept (they are what the model needs to fix its SQL); connection
/// details never include the password, which sqlx does not echo.
pub(crate) fn map_sqlx(err: sqlx::Error) -> Error {
    match err {
        sqlx::Error::Database(db) => {
            let message = db.message().to_string();
            let lower = message.to_ascii_lowercase();
            if lower.contains("statement timeout")
                || lower.contains("max_statement_time")
                || lower.contains("maximum statement execution time")
                || lower.contains("canceling statement")
            {
                Error::Query(format!("cancelled by the statement timeout: {message}"))
            } else if lower.contains("read-only transaction")
                || lower.contains("read only transaction")
                || lower.contains("read-only")
                || lower.contains("readonly database")
            {
                Error::Refused(format!("refused by the database: {message}"))
            } else if lower.contains("password authentication failed")
                || lower.contains("access denied")
            {
                Error::Unavailable(format!("authentication failed: {message}"))
            } else {
                Error::Query(message)
            }
        }
        sqlx::Error::PoolTimedOut => {
            Error::Unavailable("timed out connecting to the database".into())
        }
        sqlx::Error::Io(io) => Error::Unavailable(format!("cannot reach the database: {io}")),
        sqlx::Error::Tls(tls) => Error::Unavailable(format!("TLS error: {tls}")),
        sqlx::Error::Configuration(c) => Error::Config(c.to_string()),
        sqlx::Error::ColumnDecode { index, source } => {
            Error::Query(format!("cannot decode column {index}: {source}"))
        }
        other => Error::Unavailable(other.to_string()),
    }
}

/// `SELECT count(*) FROM (<sql>) q`, with a newline so a trailing `-- comment` in
/// the approved text cannot swallow the closing parenthesis.
pub(crate) fn count_sql(sql: &str) -> String {
    format!("SELECT count(*) FROM (\n{sql}\n) AS investigator_count")
}

/// Quotes an identifier for PostgreSQL (`"` doubled) or MySQL (`` ` `` doubled).
pub(crate) fn quote_ident(name: &str, quote: char) -> String {
    let doubled: String = name
        .chars()
        .flat_map(|c| if c == quote { vec![c, c] } else { vec![c] })
        .collect();
    format!("{quote}{doubled}{quote}")
}
