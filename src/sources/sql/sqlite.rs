//! SQLite: the file is opened read-only with `query_only`, so even a statement the
//! guard missed cannot write. SQLite has no server-side timeout; the caller's
//! client-side timeout bounds the wait.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Executor, Row};

use super::decode::{collect_rows, sqlite_row};
use super::{count_sql, map_sqlx, quote_ident, Limits, Result};
use crate::evidence::{Column, Table};
use crate::sources::Error;

pub struct Backend {
    pool: SqlitePool,
}

impl Backend {
    pub fn new(path: &Path, connect_timeout: Duration) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .create_if_missing(false)
            .pragma("query_only", "ON")
            .statement_cache_capacity(0);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .acquire_timeout(connect_timeout)
            .connect_lazy_with(options);
        Ok(Backend { pool })
    }

    pub async fn version(&self) -> Result<String> {
        let row = sqlx::query("SELECT 'SQLite ' || sqlite_version()")
            .fetch_one(&self.pool)
            .await
            .map_err(map_sqlx)?;
        row.try_get::<String, _>(0).map_err(map_sqlx)
    }

    pub async fn run(&self, sql: &str, count_total: bool, limits: &Limits) -> Result<Table> {
        let mut tx = self.pool.begin().await.map_err(map_sqlx)?;
        let (columns, mut table) = {
            let stream = sqlx::query(sql).fetch(&mut *tx);
            collect_rows(stream, limits, sqlite_row).await?
        };
        table.columns = match columns {
            Some(columns) => columns,
            None => {
                let described = (&mut *tx).describe(sql).await.map_err(map_sqlx)?;
                described
                    .columns()
                    .iter()
                    .map(|c| {
                        use sqlx::{Column as _, TypeInfo};
                        Column {
                            name: c.name().to_string(),
                            type_name: c.type_info().name().to_string(),
                        }
                    })
                    .collect()
            }
        };
        if table.truncated && count_total {
            if let Ok(row) = sqlx::query(&count_sql(sql)).fetch_one(&mut *tx).await {
                table.total_rows = row.try_get::<i64, _>(0).ok().map(|n| n.max(0) as u64);
            }
        }
        tx.rollback().await.map_err(map_sqlx)?;
        Ok(table)
    }

    pub async fn list_tables(&self, limits: &Limits) -> Result<Table> {
        let sql = "SELECT 'main' AS schema, m.name AS \"table\", m.type AS type, NULL AS row_estimate, \
                   (SELECT group_concat(p.name || ' ' || p.type, ', ') FROM pragma_table_info(m.name) p) AS columns \
                   FROM sqlite_master m WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' ORDER BY 2";
        let mut conn = self.pool.acquire().await.map_err(map_sqlx)?;
        let (columns, mut table) = {
            let stream = sqlx::query(sql).fetch(&mut *conn);
            collect_rows(stream, limits, sqlite_row).await?
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
        Ok(table)
    }

    pub async fn describe_table(&self, table: &str) -> Result<Value> {
        let mut conn = self.pool.acquire().await.map_err(map_sqlx)?;
        let exists = sqlx::query(
            "SELECT type FROM sqlite_master WHERE name = ? AND type IN ('table','view')",
        )
        .bind(table)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_sqlx)?;
        if exists.is_none() {
            return Err(Error::Query(format!("table `{table}` does not exist")));
        }
        let columns = sqlx::query(
            "SELECT name, type, \"notnull\" = 0, dflt_value FROM pragma_table_info(?) ORDER BY cid",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_sqlx)?;
        let indexes = sqlx::query(
            "SELECT il.name, (SELECT group_concat(ii.name, ', ') FROM pragma_index_info(il.name) ii), il.\"unique\" \
             FROM pragma_index_list(?) il ORDER BY il.name",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_sqlx)?;
        // SQLite keeps no row estimate; the tables it serves here are small.
        let count_query = format!("SELECT count(*) FROM {}", quote_ident(table, '"'));
        let count: Option<i64> = sqlx::query(&count_query)
            .fetch_one(&mut *conn)
            .await
            .ok()
            .and_then(|r| r.try_get(0).ok());
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
                    "columns": r.try_get::<Option<String>, _>(1).ok().flatten().unwrap_or_default(),
                    "unique": r.try_get::<bool, _>(2).unwrap_or(false),
                })
            })
            .collect();
        Ok(json!({
            "schema": "main",
            "table": table,
            "row_estimate": count,
            "columns": columns,
            "indexes": indexes,
        }))
    }
}
