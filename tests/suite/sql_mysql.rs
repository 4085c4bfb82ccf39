//! MariaDB/MySQL: the same path against the real server. Each test makes its own
//! databases (MySQL's schemas) and drops them.

use investigator::engine::CallError;
use investigator::sources::Error as SourceError;
use serde_json::json;
use sqlx::{Executor, Row};

use super::common::{fill, mysql_url, parse_config, unique, Harness};
use super::corpus::{MYSQL_HOSTILE, MYSQL_LEGIT};

struct MyFixture {
    admin: sqlx::MySqlPool,
    app: String,
    secret: String,
}

impl MyFixture {
    async fn new() -> MyFixture {
        let admin = sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(1)
            .connect(&mysql_url())
            .await
            .expect("MariaDB on 127.0.0.1:3306 (see README: tests need it)");
        let base = unique("my");
        let app = format!("{base}_app");
        let secret = format!("{base}_secret");
        for stmt in [
            format!("CREATE DATABASE {app}"),
            format!("CREATE DATABASE {secret}"),
            format!("CREATE TABLE {app}.orders (id INT AUTO_INCREMENT PRIMARY KEY, customer VARCHAR(64), amount DECIMAL(10,2), status VARCHAR(16), created_at DATETIME NOT NULL, meta JSON, INDEX idx_status (status))"),
            format!("CREATE TABLE {app}.payments (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT, state VARCHAR(16), created_at DATETIME NOT NULL)"),
            format!("CREATE TABLE {app}.canary (id INT PRIMARY KEY, note VARCHAR(64))"),
            format!("INSERT INTO {app}.canary VALUES (1, 'untouched')"),
            format!("INSERT INTO {app}.orders (customer, amount, status, created_at, meta) \
                     SELECT CONCAT('c', seq), (seq * 7) % 300, IF(seq % 5 = 0, 'failed', 'ok'), NOW() - INTERVAL seq MINUTE, \
                            JSON_OBJECT('region', IF(seq % 2 = 0, 'eu', 'us')) FROM seq_1_to_500"),
            format!("INSERT INTO {app}.payments (order_id, state, created_at) \
                     SELECT seq, IF(seq % 4 = 0, 'failed', 'settled'), NOW() - INTERVAL seq MINUTE FROM seq_1_to_500"),
            format!("CREATE TABLE {secret}.credentials (id INT, token VARCHAR(64))"),
            format!("INSERT INTO {secret}.credentials VALUES (1, 'other-squads-token')"),
        ] {
            admin.execute(stmt.as_str()).await.unwrap_or_else(|e| panic!("fixture setup {stmt}: {e}"));
        }
        MyFixture { admin, app, secret }
    }

    async fn fingerprint(&self) -> String {
        let sql = format!(
            "SELECT CONCAT_WS('|', (SELECT GROUP_CONCAT(CONCAT(id, ':', note)) FROM {app}.canary), \
               (SELECT COUNT(*) FROM {app}.orders), (SELECT SUM(amount) FROM {app}.orders), \
               (SELECT GROUP_CONCAT(CONCAT(table_schema, '.', table_name) ORDER BY 1) FROM information_schema.tables \
                  WHERE table_schema IN ('{app}', '{secret}', 'test')), \
               (SELECT COUNT(*) FROM {secret}.credentials))",
            app = self.app,
            secret = self.secret
        );
        let row = sqlx::query(&sql)
            .fetch_one(&self.admin)
            .await
            .expect("fingerprint");
        row.try_get::<String, _>(0).expect("fingerprint text")
    }

    async fn harness(&self) -> Harness {
        let sources = format!(
            r#"
data_sources:
  databases:
    - name: users
      type: mysql
      host: 127.0.0.1
      port: 3306
      database: {app}
      username: root
      schemas: [{app}, {secret}]
      max_rows: 100
      statement_timeout: 2s
"#,
            app = self.app,
            secret = self.secret
        );
        let squads = format!(
            r#"
squads:
  user:
    members: {{slack: [U_USER]}}
    grants:
      - source: users
        schemas: [{app}]
  other:
    members: {{slack: [U_OTHER]}}
    grants:
      - source: users
        schemas: [{secret}]
"#,
            app = self.app,
            secret = self.secret
        );
        Harness::new(parse_config(&sources, &squads)).await
    }

    async fn drop(self) {
        let _ = self
            .admin
            .execute(format!("DROP DATABASE IF EXISTS {}", self.app).as_str())
            .await;
        let _ = self
            .admin
            .execute(format!("DROP DATABASE IF EXISTS {}", self.secret).as_str())
            .await;
    }
}

fn is_refusal(err: &CallError) -> bool {
    matches!(
        err,
        CallError::Denied(_) | CallError::Source(SourceError::Refused(_))
    )
}

#[tokio::test]
async fn hostile_corpus_is_refused_and_changes_nothing() {
    let fx = MyFixture::new().await;
    let h = fx.harness().await;
    let before = fx.fingerprint().await;
    let mut not_refused = Vec::new();
    for template in MYSQL_HOSTILE {
        let sql = fill(template, &fx.app, &fx.secret);
        match h.query("U_USER", "users", &sql).await {
            Err(err) if is_refusal(&err) => {}
            other => not_refused.push(format!("{sql:?} -> {:?}", other.map(|t| t.rows.len()))),
        }
    }
    assert_eq!(
        fx.fingerprint().await,
        before,
        "a hostile statement changed the database"
    );
    fx.drop().await;
    assert!(
        not_refused.is_empty(),
        "not refused:\n{}",
        not_refused.join("\n")
    );
}

#[tokio::test]
async fn legitimate_investigation_queries_succeed() {
    let fx = MyFixture::new().await;
    let h = fx.harness().await;
    let before = fx.fingerprint().await;
    let mut failed = Vec::new();
    for template in MYSQL_LEGIT {
        let sql = fill(template, &fx.app, &fx.secret);
        if let Err(err) = h.query("U_USER", "users", &sql).await {
            failed.push(format!("{sql:?} -> {err}"));
        }
    }
    assert_eq!(fx.fingerprint().await, before);
    fx.drop().await;
    assert!(
        failed.is_empty(),
        "legitimate queries failed:\n{}",
        failed.join("\n")
    );
}

#[tokio::test]
async fn database_layers_hold_without_the_guard() {
    let fx = MyFixture::new().await;
    let h = fx.harness().await;
    let before = fx.fingerprint().await;
    let access = h.access("U_USER");
    let grant = access.grant("users").expect("grant").clone();
    let source = h.source("users");
    let sql_source: &investigator::sources::sql::SqlSource =
        source.as_any().downcast_ref().expect("sql source");
    for sql in [
        "DELETE FROM canary",
        "UPDATE canary SET note = 'x'",
        "INSERT INTO canary VALUES (9, 'x')",
    ] {
        assert!(
            sql_source
                .run_without_guard_for_tests(sql, &grant)
                .await
                .is_err(),
            "{sql} ran past the read-only transaction"
        );
    }
    assert_eq!(fx.fingerprint().await, before);
    fx.drop().await;
}

#[tokio::test]
async fn results_types_caps_and_timeouts() {
    let fx = MyFixture::new().await;
    let h = fx.harness().await;
    let table = h
        .query(
            "U_USER",
            "users",
            "SELECT id, customer, amount, created_at, meta FROM orders ORDER BY id",
        )
        .await
        .expect("query");
    assert_eq!(table.rows.len(), 100);
    assert!(table.truncated);
    assert_eq!(table.total_rows, Some(500));
    assert_eq!(table.rows[0][0], json!(1));
    assert_eq!(table.rows[0][1], json!("c1"));
    assert_eq!(table.rows[0][2], json!("7.00"));
    let slow = h
        .query(
            "U_USER",
            "users",
            "SELECT count(*) FROM seq_1_to_100000000 a, seq_1_to_1000 b",
        )
        .await;
    assert!(
        matches!(
            slow,
            Err(CallError::Source(SourceError::Query(_)))
                | Err(CallError::Source(SourceError::Timeout(_)))
        ),
        "expected a timeout, got {:?}",
        slow.map(|t| t.rows.len())
    );
    assert!(
        h.query("U_USER", "users", "SELECT 1").await.is_ok(),
        "pool usable after a timeout"
    );
    let secret = format!("SELECT token FROM {}.credentials", fx.secret);
    assert!(h.query("U_OTHER", "users", &secret).await.is_ok());
    assert!(matches!(h.query("U_USER", "users", &secret).await, Err(ref e) if is_refusal(e)));
    fx.drop().await;
}
