//! PostgreSQL: a session that defaults to read-only, and per call a READ ONLY
//! transaction with `statement_timeout`, `lock_timeout` and a `search_path` of the
//! granted schemas, always rolled back.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{Executor, Row};

use super::decode::{collect_rows, pg_row};
use super::{count_sql, map_sqlx, quote_ident, Limits, Result, RunScope};
use crate::config::{DatabaseConfig, Secret, SslMode};
use crate::evidence::{Column, Table};
use crate::sources::Error;

pub struct Backend {
    pool: PgPool,
}

impl Backend {
    pub fn new(
        db: &DatabaseConfig,
        password: Option<Secret>,
        connect_timeout: Duration,
        limits: &Limits,
    ) -> Result<Self> {
        let mut options = PgConnectOptions::new()
            .host(db.host.as_deref().unwrap_or("localhost"))
            .port(db.port.unwrap_or(5432))
            .database(db.database.as_deref().unwrap_or("postgres"))
            .application_name("investigator")
            // Every statement is one-off; caching them would only leak server memory.
            .statement_cache_capacity(0)
            // A second layer under the per-call READ ONLY transaction.
            .options([
                ("default_transaction_read_only", "on"),
                (
                    "statement_timeout",
                    &limits.statement_timeout.as_millis().to_string(),
                ),
                ("idle_in_transaction_session_timeout", "60000"),
            ]);
        if let Some(user) = &db.username {
            options = options.username(user);
        }
        if let Some(password) = &password {
            options = options.password(password.expose());
        }
        options = options.ssl_mode(match db.sslmode {
            None | Some(SslMode::Prefer) => PgSslMode::Prefer,
            Some(SslMode::Disable) => PgSslMode::Disable,
            Some(SslMode::Require) => PgSslMode::Require,
            Some(SslMode::VerifyCa) => PgSslMode::VerifyCa,
            Some(SslMode::VerifyFull) => PgSslMode::VerifyFull,
        });
        if let Some(ca) = &db.ssl_root_cert {
            options = options.ssl_root_cert(ca);
        }
        let pool = PgPoolOptions::new()
            .max_connections(db.max_connections.unwrap_or(4))
            .min_connections(0)
            .acquire_timeout(connect_timeout)
            .idle_timeout(Duration::from_secs(300))
            .max_lifetime(Duration::from_secs(1800))
            .connect_lazy_with(options);
        Ok(Backend { pool })
    }

    pub async fn version(&self) -> Result<String> {
        let row = sqlx::query("SELECT version()")
            .fetch_one(&self.pool)
            .await
            .map_err(map_sqlx)?;
        row.try_get::<String, _>(0).map_err(map_sqlx)
    }

    async fn begin(
        &self,
        schemas: &[String],
        limits: &Limits,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await.map_err(map_sqlx)?;
        // One round trip (simple protocol). SET TRANSACTION must come first: after
        // it, any write in this transaction fails.
        let timeout_ms = limits.statement_timeout.as_millis().max(1);
        let path = schemas
            .iter()
            .map(|s| quote_ident(s, '"'))
            .collect::<Vec<_>>()
            .join(", ");
        let setup = format!(
            "SET TRANSACTION READ ONLY; SET LOCAL statement_timeout = {timeout_ms}; \
             SET LOCAL lock_timeout = 2000; SET LOCAL search_path TO {path}"
        );
        tx.execute(setup.as_str()).await.map_err(map_sqlx)?;
        Ok(tx)
    }

    pub async fn run(
        &self,
        sql: &str,
        count_total: bool,
        scope: &RunScope,
        limits: &Limits,
    ) -> Result<Table> {
        // Default schema first so unqualified names resolve where the guard assumed.
        let mut path = vec![scope.default_schema.clone()];
        path.extend(
            scope
                .schemas
                .iter()
                .filter(|s| **s != scope.default_schema)
                .cloned(),
        );
        let mut tx = self.begin(&path, limits).await?;
        let (columns, mut table) = {
            let stream = sqlx::query(sql).fetch(&mut *tx);
            collect_rows(stream, limits, pg_row).await?
        };
        table.columns = match columns {
            Some(columns) => columns,
            None => describe_columns(&mut tx, sql).await?,
        };
        if table.truncated && count_total {
            // Best effort: a count that times out leaves the total unknown.
            if let Ok(row) = sqlx::query(&count_sql(sql)).fetch_one(&mut *tx).await {
                table.total_rows = row.try_get::<i64, _>(0).ok().map(|n| n.max(0) as u64);
            }
        }
        tx.rollback().await.map_err(map_sqlx)?;
        Ok(table)
    }

    pub async fn list_tables(&self, schemas: &[String], limits: &Limits) -> Result<Table> {
        let mut tx = self.begin(schemas, limits).await?;
        let sql = "SELECT n.nspname AS schema, c.relname AS table, \
                   CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' \
                   WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table' ELSE 'other' END AS type, \
                   GREATEST(c.reltuples, 0)::bigint AS row_estimate, \
                   (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) \
                      FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns \
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                   WHERE n.nspname = ANY($1) AND c.relkind IN ('r','v','m','p','f') \
                   ORDER BY 1, 2";
        let (columns, mut table) = {
            let stream = sqlx::query(sql).bind(schemas).fetch(&mut *tx);
            collect_rows(stream, limits, pg_row).await?
        };
        table.columns = columns.unwrap_or_else(|| {
            ["schema", "table", "type", "row_estimate", "columns"]
                .iter()
                .map(|n| Column {
                    name: n.to_string(),
                    type_name: "TEXT".into(),
                })
                .collect()
        });
        tx.rollback().await.map_err(map_sqlx)?;
        Ok(table)
    }

    pub async fn describe_table(&self, schema: &str, table: &str) -> Result<Value> {
        let limits = Limits {
            max_rows: 2000,
            max_bytes: 1 << 20,
            statement_timeout: Duration::from_secs(10),
        };
        let mut tx = self.begin(&[schema.to_string()], &limits).await?;
        let rel = sqlx::query(
            "SELECT c.oid::int8, GREATEST(c.reltuples, 0)::int8, c.relkind::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
        )
        .bind(schema)
        .bind(table)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        let Some(rel) = rel else {
            return Err(Error::Query(format!(
                "table `{schema}.{table}` does not exist"
            )));
        };
        let oid: i64 = rel.try_get(0).map_err(map_sqlx)?;
        let estimate: i64 = rel.try_get(1).map_err(map_sqlx)?;
        let columns = sqlx::query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, \
             pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(oid)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        let indexes = sqlx::query("SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 ORDER BY 1")
            .bind(schema)
            .bind(table)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_sqlx)?;
        tx.rollback().await.map_err(map_sqlx)?;
        let columns: Vec<Value> = columns
            .iter()
            .map(|r| {
                json!({
                    "name": r.try_get::<String, _>(0).unwrap_or_default(),
                    "type": r.try_get::<String, _>(1).unwrap_or_default(),
                    "nullable": r.try_get::<bool, _>(2).unwrap_or(true),
                    "default": r.try_get::<Option<String>, _>(3).ok().flatten(),
                })
            })
            .collect();
        let indexes: Vec<Value> = indexes
            .iter()
            .map(|r| {
                json!({
                    "name": r.try_get::<String, _>(0).unwrap_or_default(),
                    "definition": r.try_get::<String, _>(1).unwrap_or_default(),
                })
            })
            .collect();
        Ok(json!({
            "schema": schema,
            "table": table,
            "row_estimate": estimate,
            "columns": columns,
            "indexes": indexes,
        }))
    }
}

async fn describe_columns(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    sql: &str,
) -> Result<Vec<Column>> {
    let described = (&mut **tx).describe(sql).await.map_err(map_sqlx)?;
    Ok(described
        .columns()
        .iter()
        .map(|c| {
            use sqlx::{Column as _, TypeInfo};
            Column {
                name: c.name().to_string(),
                type_name: c.type_info().name().to_string(),
            }
        })
        .collect())
}
