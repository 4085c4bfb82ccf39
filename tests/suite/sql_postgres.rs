//! PostgreSQL: the whole access + guard + read-only path against the real server.

use investigator::engine::CallError;
use investigator::sources::{CallContext, Error as SourceError};
use serde_json::json;
use sqlx::{Executor, Row};

use super::common::{fill, parse_config, pg_url, unique, Harness};
use super::corpus::{PG_HOSTILE, PG_LEGIT};

struct PgFixture {
    admin: sqlx::PgPool,
    app: String,
    secret: String,
}

impl PgFixture {
    async fn new() -> PgFixture {
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&pg_url())
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (see README: tests need it)");
        let base = unique("pg");
        let app = format!("{base}_app");
        let secret = format!("{base}_secret");
        let setup = format!(
            r#"
            CREATE SCHEMA {app};
            CREATE SCHEMA {secret};
            CREATE TABLE {app}.orders (id serial PRIMARY KEY, customer text, amount numeric(10,2), status text,
                                       created_at timestamptz NOT NULL DEFAULT now(), meta jsonb);
            CREATE INDEX ON {app}.orders (status);
            CREATE TABLE {app}.payments (id serial PRIMARY KEY, order_id int REFERENCES {app}.orders(id), state text,
                                         created_at timestamptz NOT NULL DEFAULT now());
            CREATE TABLE {app}.canary (id int PRIMARY KEY, note text);
            INSERT INTO {app}.canary VALUES (1, 'untouched');
            INSERT INTO {app}.orders (customer, amount, status, created_at, meta)
              SELECT 'c' || g, (g * 7 % 300)::numeric, CASE WHEN g % 5 = 0 THEN 'failed' ELSE 'ok' END,
                     now() - (g || ' minutes')::interval,
                     jsonb_build_object('region', CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, 'tags', jsonb_build_array('t' || g))
              FROM generate_series(1, 500) g;
            INSERT INTO {app}.payments (order_id, state, created_at)
              SELECT g, CASE WHEN g % 4 = 0 THEN 'failed' ELSE 'settled' END, now() - (g || ' minutes')::interval
              FROM generate_series(1, 500) g;
            CREATE TABLE {secret}.credentials (id int, token text);
            INSERT INTO {secret}.credentials VALUES (1, 'other-squads-token');
            CREATE TABLE {secret}.canary (id int PRIMARY KEY, note text);
            INSERT INTO {secret}.canary VALUES (1, 'untouched');
            ANALYZE {app}.orders;
            "#
        );
        admin.execute(setup.as_str()).await.expect("fixture setup");
        PgFixture { admin, app, secret }
    }

    /// Everything a write could change: canaries, tables, functions, sequences.
    async fn fingerprint(&self) -> String {
        let sql = format!(
            "SELECT (SELECT string_agg(id || ':' || note, ',') FROM {app}.canary) || '|' || \
                    (SELECT string_agg(id || ':' || note, ',') FROM {secret}.canary) || '|' || \
                    (SELECT count(*) FROM {app}.orders) || '|' || (SELECT count(*) FROM {app}.payments) || '|' || \
                    (SELECT string_agg(n.nspname || '.' || c.relname || ':' || c.relkind::text, ',' ORDER BY 1) FROM pg_class c \
                       JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('{app}', '{secret}', 'public')) || '|' || \
                    (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname IN ('{app}', '{secret}', 'public')) || '|' || \
                    (SELECT last_value FROM {app}.orders_id_seq) || '|' || (SELECT sum(amount) FROM {app}.orders)",
            app = self.app,
            secret = self.secret
        );
        let row = sqlx::query(&sql)
            .fetch_one(&self.admin)
            .await
            .expect("fingerprint");
        row.try_get::<String, _>(0).expect("fingerprint text")
    }

    fn harness_config(&self, extra_db: &str) -> (String, String) {
        let sources = format!(
            r#"
data_sources:
  databases:
    - name: shop
      type: postgresql
      host: 127.0.0.1
      port: 5432
      database: test
      username: postgres
      schemas: [{app}, {secret}]
      max_rows: 200
      statement_timeout: 2s
{extra_db}
"#,
            app = self.app,
            secret = self.secret
        );
        let squads = format!(
            r#"
squads:
  pay:
    members: {{slack: [U_PAY, U_BOTH]}}
    channels: {{slack: [C_PAY]}}
    grants:
      - source: shop
        schemas: [{app}]
  other:
    members: {{slack: [U_OTHER, U_BOTH]}}
    channels: {{slack: [C_OTHER]}}
    grants:
      - source: shop
        schemas: [{secret}]
"#,
            app = self.app,
            secret = self.secret
        );
        (sources, squads)
    }

    async fn harness(&self) -> Harness {
        let (sources, squads) = self.harness_config("");
        Harness::new(parse_config(&sources, &squads)).await
    }

    async fn drop(self) {
        let sql = format!(
            "DROP SCHEMA IF EXISTS {} CASCADE; DROP SCHEMA IF EXISTS {} CASCADE;",
            self.app, self.secret
        );
        let _ = self.admin.execute(sql.as_str()).await;
    }
}

fn is_refusal(err: &CallError) -> bool {
    matches!(
        err,
        CallError::Denied(_)
            | CallError::Source(SourceError::Refused(_))
            | CallError::Source(SourceError::BadArguments { .. })
    )
}

#[tokio::test]
async fn hostile_corpus_is_refused_and_changes_nothing() {
    let fx = PgFixture::new().await;
    let h = fx.harness().await;
    let before = fx.fingerprint().await;
    let mut not_refused = Vec::new();
    for template in PG_HOSTILE {
        let sql = fill(template, &fx.app, &fx.secret);
        match h.query("U_PAY", "shop", &sql).await {
            Err(err) if is_refusal(&err) => {
                let line = err.to_string();
                assert!(!line.contains('\n'), "refusal must be one line: {line:?}");
            }
            other => not_refused.push(format!("{sql:?} -> {:?}", other.map(|t| t.rows.len()))),
        }
    }
    assert_eq!(
        fx.fingerprint().await,
        before,
        "a hostile statement changed the database"
    );
    assert!(!std::path::Path::new(&format!("/tmp/pwned-{}", fx.app)).exists());
    fx.drop().await;
    assert!(
        not_refused.is_empty(),
        "not refused:\n{}",
        not_refused.join("\n")
    );
}

#[tokio::test]
async fn legitimate_investigation_queries_succeed() {
    let fx = PgFixture::new().await;
    let h = fx.harness().await;
    let before = fx.fingerprint().await;
    let mut failed = Vec::new();
    for template in PG_LEGIT {
        let sql = fill(template, &fx.app, &fx.secret);
        if let Err(err) = h.query("U_PAY", "shop", &sql).await {
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
    let fx = PgFixture::new().await;
    let h = fx.harness().await;
    let before = fx.fingerprint().await;
    let access = h.access("U_PAY");
    let grant = access.grant("shop").expect("grant").clone();
    let source = h.source("shop");
    let sql_source = source_as_sql(&source);
    for template in [
        "DELETE FROM canary",
        "UPDATE canary SET note = 'x'",
        "CREATE TABLE evil (a int)",
        "SELECT nextval('{app}.orders_id_seq')",
        "WITH d AS (DELETE FROM canary RETURNING *) SELECT * FROM d",
        "SELECT set_config('transaction_read_only', 'off', true)",
    ] {
        let sql = fill(template, &fx.app, &fx.secret);
        let result = sql_source.run_without_guard_for_tests(&sql, &grant).await;
        assert!(result.is_err(), "{sql} ran past the read-only transaction");
    }
    // The search_path holds only granted schemas: an unqualified name cannot reach another's.
    let result = sql_source
        .run_without_guard_for_tests("SELECT * FROM credentials", &grant)
        .await;
    assert!(
        result.is_err(),
        "unqualified name reached an ungranted schema"
    );
    assert_eq!(fx.fingerprint().await, before);
    fx.drop().await;
}

fn source_as_sql(
    source: &std::sync::Arc<dyn investigator::sources::Source>,
) -> &investigator::sources::sql::SqlSource {
    source.as_any().downcast_ref().expect("a SQL source")
}

#[tokio::test]
async fn results_carry_columns_types_counts_and_truncation() {
    let fx = PgFixture::new().await;
    let h = fx.harness().await;
    let table = h
        .query(
            "U_PAY",
            "shop",
            "SELECT id, customer, amount, created_at, meta FROM orders ORDER BY id",
        )
        .await
        .expect("query");
    assert_eq!(table.rows.len(), 200, "row cap from max_rows");
    assert!(table.truncated);
    assert_eq!(table.total_rows, Some(500), "total counted despite the cap");
    let types: Vec<&str> = table.columns.iter().map(|c| c.type_name.as_str()).collect();
    assert_eq!(
        types,
        vec!["INT4", "TEXT", "NUMERIC", "TIMESTAMPTZ", "JSONB"]
    );
    assert_eq!(table.rows[0][0], json!(1));
    assert_eq!(table.rows[0][1], json!("c1"));
    assert_eq!(table.rows[0][2], json!("7.00"));
    assert!(table.rows[0][4].get("region").is_some());

    let small = h
        .query(
            "U_PAY",
            "shop",
            "SELECT count(*) AS n FROM orders WHERE status = 'failed'",
        )
        .await
        .expect("count");
    assert_eq!(small.rows, vec![vec![json!(100)]]);
    assert!(!small.truncated);
    assert_eq!(small.total_rows, Some(1));

    let empty = h
        .query("U_PAY", "shop", "SELECT id, status FROM orders WHERE false")
        .await
        .expect("empty");
    assert_eq!(empty.columns.len(), 2, "columns known even with no rows");
    assert_eq!(empty.total_rows, Some(0));
    fx.drop().await;
}

#[tokio::test]
async fn huge_results_stop_at_the_cap_and_slow_queries_time_out() {
    let fx = PgFixture::new().await;
    let h = fx.harness().await;
    // Big enough that keeping it all would be wrong, small enough that counting it
    // stays far inside the 2 s statement timeout on a loaded 2-core machine.
    let big = h
        .query(
            "U_PAY",
            "shop",
            "SELECT g, repeat('x', 100) FROM generate_series(1, 300000) g",
        )
        .await
        .expect("big");
    assert_eq!(big.rows.len(), 200);
    assert_eq!(big.total_rows, Some(300_000));
    let slow = h
        .query(
            "U_PAY",
            "shop",
            "SELECT count(*) FROM generate_series(1, 100000000) a, generate_series(1, 1000) b",
        )
        .await;
    match slow {
        Err(CallError::Source(SourceError::Query(msg))) => {
            assert!(msg.contains("timeout"), "{msg}")
        }
        Err(CallError::Source(SourceError::Timeout(_))) => {}
        other => panic!("expected a timeout, got {:?}", other.map(|t| t.rows.len())),
    }
    // The pool is still usable afterwards.
    assert!(h.query("U_PAY", "shop", "SELECT 1").await.is_ok());
    fx.drop().await;
}

#[tokio::test]
async fn grants_are_enforced_per_squad_and_channel() {
    let fx = PgFixture::new().await;
    let h = fx.harness().await;
    let secret_table = format!("SELECT token FROM {}.credentials", fx.secret);
    assert!(
        h.query("U_OTHER", "shop", &secret_table).await.is_ok(),
        "owner squad reads its schema"
    );
    assert!(matches!(h.query("U_PAY", "shop", &secret_table).await, Err(ref e) if is_refusal(e)));
    // A member of both squads, in pay's channel, is narrowed to pay's schema.
    let principal =
        investigator::access::Principal::new(investigator::access::Transport::Slack, "U_BOTH")
            .in_channel("C_PAY");
    let access = investigator::access::resolve(&h.config, &principal).expect("resolves");
    let outcome = h
        .gate
        .call(
            &access,
            "shop",
            "run_query",
            &json!({"sql": secret_table}),
            &CallContext::default(),
        )
        .await;
    assert!(matches!(outcome.result, Err(ref e) if is_refusal(e)));
    // Unknown source and unknown tool are refusals, not crashes.
    let outcome = h
        .gate
        .call(
            &access,
            "nope",
            "run_query",
            &json!({"sql": "SELECT 1"}),
            &CallContext::default(),
        )
        .await;
    assert!(matches!(outcome.result, Err(CallError::Denied(_))));
    let outcome = h
        .gate
        .call(
            &access,
            "shop",
            "drop_everything",
            &json!({}),
            &CallContext::default(),
        )
        .await;
    assert!(matches!(
        outcome.result,
        Err(CallError::Source(SourceError::UnknownTool { .. }))
    ));
    let outcome = h
        .gate
        .call(
            &access,
            "shop",
            "run_query",
            &json!({"sql": 42}),
            &CallContext::default(),
        )
        .await;
    assert!(matches!(
        outcome.result,
        Err(CallError::Source(SourceError::BadArguments { .. }))
    ));
    fx.drop().await;
}

#[tokio::test]
async fn catalog_tools_describe_only_the_grant() {
    let fx = PgFixture::new().await;
    let h = fx.harness().await;
    let access = h.access("U_PAY");
    let ctx = CallContext::default();
    let listed = h
        .gate
        .call(&access, "shop", "list_tables", &json!({}), &ctx)
        .await
        .result
        .expect("list");
    let text = serde_json::to_string(&listed.content).unwrap_or_default();
    assert!(
        text.contains("orders") && text.contains("payments"),
        "{text}"
    );
    assert!(
        !text.contains("credentials") && !text.contains(&fx.secret),
        "other schema leaked: {text}"
    );
    let described = h
        .gate
        .call(
            &access,
            "shop",
            "describe_table",
            &json!({"table": "orders"}),
            &ctx,
        )
        .await
        .result
        .expect("describe");
    let text = serde_json::to_string(&described.content).unwrap_or_default();
    assert!(text.contains("\"row_estimate\":500"), "{text}");
    assert!(
        text.contains("orders_status_idx") && text.contains("amount"),
        "{text}"
    );
    let denied = h
        .gate
        .call(
            &access,
            "shop",
            "describe_table",
            &json!({"table": format!("{}.credentials", fx.secret)}),
            &ctx,
        )
        .await;
    assert!(matches!(denied.result, Err(ref e) if is_refusal(e)));
    let tools: Vec<String> = h
        .gate
        .tools_for(&access)
        .iter()
        .map(|t| format!("{}:{}", t.source, t.spec.name))
        .collect();
    assert_eq!(
        tools,
        vec!["shop:list_tables", "shop:describe_table", "shop:run_query"]
    );
    fx.drop().await;
}

#[tokio::test]
async fn every_call_is_audited_in_a_verifiable_chain() {
    let fx = PgFixture::new().await;
    let h = fx.harness().await;
    let _ = h.query("U_PAY", "shop", "SELECT 1").await;
    let _ = h.query("U_PAY", "shop", "DELETE FROM canary").await;
    let _ = h
        .query(
            "U_PAY",
            "shop",
            &format!("SELECT * FROM {}.credentials", fx.secret),
        )
        .await;
    let entries = h.gate.store().tail_audit(10).await.expect("tail");
    assert_eq!(entries.len(), 3);
    let verdicts: Vec<String> = entries
        .iter()
        .map(|e| format!("{:?}", e.record.verdict))
        .collect();
    assert_eq!(verdicts, vec!["Allowed", "Refused", "Refused"]);
    assert_eq!(entries[0].record.principal, "slack:U_PAY");
    assert_eq!(entries[0].record.squad.as_deref(), Some("pay"));
    assert_eq!(entries[0].record.rows, Some(1));
    assert!(entries[1]
        .record
        .reason
        .as_deref()
        .unwrap_or_default()
        .starts_with("refused:"));
    let report = h.gate.store().verify_audit().await.expect("verify");
    assert!(report.ok, "{:?}", report.problems);
    fx.drop().await;
}

#[tokio::test]
async fn unreachable_and_misconfigured_databases_fail_clearly() {
    let sources = r#"
data_sources:
  databases:
    - {name: down, type: postgresql, host: 127.0.0.1, port: 1, database: test, username: postgres, squad: pay, connect_timeout: 1s}
    - {name: nouser, type: postgresql, host: 127.0.0.1, port: 5432, database: test, username: no_such_user_xyz, squad: pay}
    - {name: nodb, type: postgresql, host: 127.0.0.1, port: 5432, database: no_such_db_xyz, username: postgres, squad: pay}
"#;
    let squads = "squads:\n  pay:\n    members: {slack: [U_PAY]}\n";
    let h = Harness::new(parse_config(sources, squads)).await;
    for name in ["down", "nouser", "nodb"] {
        let health = h.source(name).health().await;
        assert!(!health.ok, "{name} reported healthy");
        assert!(!health.detail.is_empty());
        let err = h.query("U_PAY", name, "SELECT 1").await.expect_err("fails");
        assert!(
            matches!(
                err,
                CallError::Source(SourceError::Unavailable(_))
                    | CallError::Source(SourceError::Query(_))
            ),
            "{name}: {err:?}"
        );
    }
}
