//! MySQL and MariaDB: sessions set read-only at connect, a server-side statement
//! timeout in the flavour's own variable, and per call a read-only transaction
//! that is always rolled back.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};
use sqlx::{Executor, Row};

use super::decode::{collect_rows, mysql_row};
use super::{count_sql, map_sqlx, Limits, Result, RunScope};
use crate::config::{DatabaseConfig, Secret, SslMode};
use crate::evidence::{Column, Table};
use crate::sources::Error;

pub struct Backend {
    pool: MySqlPool,
}

impl Backend {
    pub fn new(
        db: &DatabaseConfig,
        password: Option<Secret>,
        connect_timeout: Duration,
        limits: &Limits,
    ) -> Result<Self> {
        let mut options = MySqlConnectOptions::new()
            .host(db.host.as_deref().unwrap_or("localhost"))
            .port(db.port.unwrap_or(3306))
            .statement_cache_capacity(0)
            .charset("utf8mb4");
        if let Some(database) = &db.database {
            options = options.database(database);
        }
        if let Some(user) = &db.username {
            options = options.username(user);
        }
        if let Some(password) = &password {
            options = options.password(password.expose());
        }
        options = options.ssl_mode(match db.sslmode {
            None | Some(SslMode::Prefer) => MySqlSslMode::Preferred,
            Some(SslMode::Disable) => MySqlSslMode::Disabled,
            Some(SslMode::Require) => MySqlSslMode::Required,
            Some(SslMode::VerifyCa) => MySqlSslMode::VerifyCa,
            Some(SslMode::VerifyFull) => MySqlSslMode::VerifyIdentity,
        });
        if let Some(ca) = &db.ssl_root_cert {
            options = options.ssl_ca(ca);
        }
        let timeout = limits.statement_timeout;
        let pool = MySqlPoolOptions::new()
            .max_connections(db.max_connections.unwrap_or(4))
            .min_connections(0)
            .acquire_timeout(connect_timeout)
            .idle_timeout(Duration::from_secs(300))
            .max_lifetime(Duration::from_secs(1800))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    // Every later transaction of this session is read-only.
                    conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                    let version: String = sqlx::query_scalar("SELECT VERSION()")
                        .fetch_one(&mut *conn)
                        .await?;
                    let set_timeout = if version.to_ascii_lowercase().contains("mariadb") {
                        format!(
                            "SET SESSION max_statement_time = {:.3}",
                            timeout.as_secs_f64()
                        )
                    } else {
                        format!(
                            "SET SESSION max_execution_time = {}",
                            timeout.as_millis().max(1)
                        )
                    };
                    conn.execute(set_timeout.as_str()).await?;
                    conn.execute("SET SESSION group_concat_max_len = 65536")
                        .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        Ok(Backend { pool })
    }

    pub async fn version(&self) -> Result<String> {
        let row = sqlx::query("SELECT VERSION()")
            .fetch_one(&self.pool)
            .await
            .map_err(map_sqlx)?;
        row.try_get::<String, _>(0).map_err(map_sqlx)
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::MySql>> {
        // BEGIN inherits the session's READ ONLY characteristic set at connect.
        self.pool.begin().await.map_err(map_sqlx)
    }

    pub async fn run(
        &self,
        sql: &str,
        count_total: bool,
        _scope: &RunScope,
        limits: &Limits,
    ) -> Result<Table> {
        let mut tx = self.begin().await?;
        let (columns, mut table) = {
            let stream = sqlx::query(sql).fetch(&mut *tx);
            collect_rows(stream, limits, mysql_row).await?
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

    pub async fn list_tables(&self, schemas: &[String], limits: &Limits) -> Result<Table> {
        let placeholders = vec!["?"; schemas.len()].join(", ");
        let sql = format!(
            "SELECT t.table_schema AS `schema`, t.table_name AS `table`, LOWER(t.table_type) AS `type`, \
             CAST(COALESCE(t.table_rows, 0) AS SIGNED) AS row_estimate, \
             (SELECT GROUP_CONCAT(CONCAT(c.column_name, ' ', c.column_type) ORDER BY c.ordinal_position SEPARATOR ', ') \
                FROM information_schema.columns c WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name) AS `columns` \
             FROM information_schema.tables t WHERE t.table_schema IN ({placeholders}) ORDER BY 1, 2"
        );
        let mut tx = self.begin().await?;
        let (columns, mut table) = {
            let mut query = sqlx::query(&sql);
            for schema in schemas {
                query = query.bind(schema);
            }
            let stream = query.fetch(&mut *tx);
            collect_rows(stream, limits, mysql_row).await?
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
        let mut tx = self.begin().await?;
        let rel = sqlx::query(
            "SELECT CAST(COALESCE(table_rows, 0) AS SIGNED), table_type FROM information_schema.tables \
             WHERE table_schema = ? AND table_name = ?",
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
        let estimate: i64 = rel.try_get(0).map_err(map_sqlx)?;
        let columns = sqlx::query(
            "SELECT CAST(column_name AS CHAR), CAST(column_type AS CHAR), is_nullable = 'YES', CAST(column_default AS CHAR) \
             FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        )
        .bind(schema)
        .bind(table)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        let indexes = sqlx::query(
            "SELECT CAST(index_name AS CHAR), CAST(GROUP_CONCAT(column_name ORDER BY seq_in_index SEPARATOR ', ') AS CHAR), \
             MIN(non_unique) = 0 FROM information_schema.statistics WHERE table_schema = ? AND table_name = ? \
             GROUP BY index_name ORDER BY index_name",
        )
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
                    "nullable": r.try_get::<bool, _>(2).or_else(|_| r.try_get::<i64, _>(2).map(|v| v != 0)).unwrap_or(true),
                    "default": r.try_get::<Option<String>, _>(3).ok().flatten(),
                })
            })
            .collect();
        let indexes: Vec<Value> = indexes
            .iter()
            .map(|r| {
                json!({
                    "name": r.try_get::<String, _>(0).unwrap_or_default(),
                    "columns": r.try_get::<String, _>(1).unwrap_or_default(),
                    "unique": r.try_get::<bool, _>(2).or_else(|_| r.try_get::<i64, _>(2).map(|v| v != 0)).unwrap_or(false),
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
