//! Writes the demo's SQLite database: a fresh file, every table and row in one
//! transaction.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Connection, Executor, SqliteConnection};

use super::sim::Dataset;

const SCHEMA: &str = "
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('completed', 'failed', 'pending')),
    failure_reason TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX orders_created_at ON orders (created_at);
CREATE TABLE payments (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    state TEXT NOT NULL,
    error_code TEXT,
    latency_ms INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX payments_created_at ON payments (created_at);
CREATE INDEX payments_order_id ON payments (order_id);
CREATE TABLE deploys (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    version TEXT NOT NULL,
    previous_version TEXT,
    deployed_at TEXT NOT NULL,
    deployed_by TEXT NOT NULL,
    change_summary TEXT
);
CREATE TABLE config_changes (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT,
    changed_at TEXT NOT NULL
);
CREATE TABLE traffic_minutely (
    minute TEXT NOT NULL,
    service TEXT NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    p95_ms INTEGER NOT NULL,
    PRIMARY KEY (minute, service)
);
";

fn io_err(err: sqlx::Error) -> std::io::Error {
    std::io::Error::other(format!("writing the demo database: {err}"))
}

/// Replaces `path` with a new database holding `data`.
pub fn write(path: &Path, data: &Dataset) -> std::io::Result<()> {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    // A thread of its own with its own runtime, so this works whether or not the
    // caller is inside an async runtime.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(insert_all(path, data)).map_err(io_err)
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the demo database writer panicked")))
    })
}

async fn insert_all(path: &Path, data: &Dataset) -> Result<(), sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        // One self-contained file to commit, no -wal beside it.
        .journal_mode(SqliteJournalMode::Delete);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let mut tx = conn.begin().await?;
    tx.execute(SCHEMA).await?;
    for o in &data.orders {
        sqlx::query("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)")
            .bind(o.id)
            .bind(&o.customer_id)
            .bind(o.amount_cents)
            .bind(o.status)
            .bind(o.failure_reason)
            .bind(&o.created_at)
            .execute(&mut *tx)
            .await?;
    }
    for p in &data.payments {
        sqlx::query("INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?)")
            .bind(p.id)
            .bind(p.order_id)
            .bind(p.state)
            .bind(p.error_code)
            .bind(p.latency_ms)
            .bind(&p.created_at)
            .execute(&mut *tx)
            .await?;
    }
    for (i, d) in data.deploys.iter().enumerate() {
        sqlx::query("INSERT INTO deploys VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(i as i64 + 1)
            .bind(d.service)
            .bind(d.version)
            .bind(d.previous_version)
            .bind(d.deployed_at)
            .bind(d.deployed_by)
            .bind(d.change_summary)
            .execute(&mut *tx)
            .await?;
    }
    for (i, c) in data.config_changes.iter().enumerate() {
        sqlx::query("INSERT INTO config_changes VALUES (?, ?, ?, ?, ?, ?)")
            .bind(i as i64 + 1)
            .bind(c.service)
            .bind(c.key)
            .bind(c.old_value)
            .bind(c.new_value)
            .bind(c.changed_at)
            .execute(&mut *tx)
            .await?;
    }
    for t in &data.traffic {
        sqlx::query("INSERT INTO traffic_minutely VALUES (?, ?, ?, ?, ?)")
            .bind(&t.minute)
            .bind(t.service)
            .bind(t.requests)
            .bind(t.errors)
            .bind(t.p95_ms)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}
