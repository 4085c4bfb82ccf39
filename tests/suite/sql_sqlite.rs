//! SQLite: opened read-only with query_only, so even a missed write cannot land.

use investigator::engine::CallError;
use investigator::sources::Error as SourceError;
use serde_json::json;
use sqlx::Executor;

use super::common::{parse_config, Harness};

async fn fixture(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("app.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("sqlite");
    pool.execute(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT, amount REAL, created_at TEXT, payload BLOB);
         CREATE INDEX orders_status ON orders(status);
         CREATE TABLE canary (id INTEGER PRIMARY KEY, note TEXT);
         INSERT INTO canary VALUES (1, 'untouched');
         WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 300)
         INSERT INTO orders SELECT n, CASE WHEN n % 3 = 0 THEN 'failed' ELSE 'ok' END, n * 1.5, datetime('now', '-' || n || ' minutes'), x'00ff' FROM g;",
    )
    .await
    .expect("fixture");
    pool.close().await;
    path
}

#[tokio::test]
async fn sqlite_reads_work_and_writes_never_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = fixture(dir.path()).await;
    let sources = format!(
        "data_sources:\n  databases:\n    - {{name: local, type: sqlite, path: {:?}, squad: ops, max_rows: 50}}\n",
        path.display().to_string()
    );
    let h = Harness::new(parse_config(
        &sources,
        "squads:\n  ops:\n    members: {slack: [U_OPS]}\n",
    ))
    .await;
    let table = h
        .query(
            "U_OPS",
            "local",
            "SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY status",
        )
        .await
        .expect("group");
    assert_eq!(
        table.rows,
        vec![
            vec![json!("failed"), json!(100)],
            vec![json!("ok"), json!(200)]
        ]
    );
    let big = h
        .query("U_OPS", "local", "SELECT * FROM orders")
        .await
        .expect("all");
    assert_eq!(
        (big.rows.len(), big.total_rows, big.truncated),
        (50, Some(300), true)
    );
    assert_eq!(big.rows[0][4], json!("base64:AP8="));
    for sql in [
        "DELETE FROM canary",
        "PRAGMA writable_schema = 1",
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "SELECT load_extension('x')",
        "SELECT writefile('/tmp/x', 'y')",
        "CREATE TABLE evil (a)",
        "SELECT * FROM canary; DELETE FROM canary",
    ] {
        let err = h.query("U_OPS", "local", sql).await.err();
        assert!(
            matches!(err, Some(CallError::Source(SourceError::Refused(_)))),
            "{sql}: {err:?}"
        );
    }
    let grant = h.access("U_OPS").grant("local").expect("grant").clone();
    let source = h.source("local");
    let sql_source: &investigator::sources::sql::SqlSource =
        source.as_any().downcast_ref().expect("sql");
    assert!(sql_source
        .run_without_guard_for_tests("DELETE FROM canary", &grant)
        .await
        .is_err());
    let canary = h
        .query("U_OPS", "local", "SELECT note FROM canary")
        .await
        .expect("canary");
    assert_eq!(canary.rows, vec![vec![json!("untouched")]]);
    let listed = h
        .query(
            "U_OPS",
            "local",
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        )
        .await
        .expect("catalog");
    assert_eq!(listed.rows.len(), 2);
}

#[tokio::test]
async fn missing_sqlite_file_is_unavailable_not_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing.db");
    let sources = format!(
        "data_sources:\n  databases:\n    - {{name: gone, type: sqlite, path: {:?}, squad: ops}}\n",
        path.display().to_string()
    );
    let h = Harness::new(parse_config(
        &sources,
        "squads:\n  ops:\n    members: {slack: [U_OPS]}\n",
    ))
    .await;
    assert!(!h.source("gone").health().await.ok);
    assert!(h.query("U_OPS", "gone", "SELECT 1").await.is_err());
    assert!(
        !path.exists(),
        "a read-only source must not create the file"
    );
}
