//! Stored sessions: a follow-up after a restart continues the thread, concurrent
//! follow-ups lose nothing, other squads cannot see a session, retention prunes.
//! Every test runs on SQLite and on PostgreSQL (its own schema), and the
//! replica tests open two stores on one database, as two processes would.

use std::path::Path;
use std::sync::Arc;

use chrono::TimeZone;
use futures::future::join_all;

use investigator::access::{Principal, Transport};
use investigator::app::{App, AskError, ModelChoice};
use investigator::config::interpolate::ProcessEnv;
use investigator::engine::NoEvents;
use investigator::llm::{ContentBlock, Role};
use investigator::store::{AuditRecord, Dialect, LeaseOutcome, SessionStatus, Verdict};

use super::common::{StoreKind, TestStore};

crate::on_both_stores!(
    a_follow_up_after_a_restart_continues_the_session,
    concurrent_follow_ups_on_two_replicas_lose_nothing,
    another_squad_cannot_see_or_continue_a_session,
    leases_expire_interrupted_sessions_recover_and_prune_keeps_running_ones,
    concurrent_appenders_on_two_replicas_keep_one_chain,
    two_replicas_racing_for_a_lease_take_it_once,
);

/// PostgreSQL only: the schema lands where `search_path` says, the triggers
/// refuse edits (TRUNCATE too), the location hides the password, and an edit
/// made by someone who can disable triggers is still caught by the chain.
#[tokio::test]
async fn postgres_store_is_append_only_and_tamper_evident() {
    let place = TestStore::new(StoreKind::Postgres).await;
    let store = place.open().await;
    assert_eq!(store.dialect(), Dialect::Postgres);
    assert!(
        store.location().starts_with("postgres://"),
        "{}",
        store.location()
    );
    for i in 0..3 {
        store
            .append_audit(&audit_record(0, i))
            .await
            .expect("append");
    }
    let schema = place
        .location
        .rsplit("%3D")
        .next()
        .expect("schema")
        .to_owned();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&place.location)
        .await
        .expect("connect");
    // Other tests create their own schemas concurrently: look in the schema this
    // connection's search_path names, and require exactly that one.
    let table_schema: String = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables \
         WHERE table_name = 'audit_log' AND table_schema = current_schema()",
    )
    .fetch_one(&pool)
    .await
    .expect("audit_log exists in the test's schema");
    assert_eq!(table_schema, schema);
    for sql in [
        "UPDATE audit_log SET statement = 'x' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 2",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert!(store.verify_audit().await.expect("verify").ok);
    sqlx::raw_sql(
        "ALTER TABLE audit_log DISABLE TRIGGER USER; \
         UPDATE audit_log SET statement = 'SELECT 42' WHERE seq = 2;",
    )
    .execute(&pool)
    .await
    .expect("tamper");
    let verified = store.verify_audit().await.expect("verify");
    assert!(!verified.ok);
    assert!(
        verified
            .problems
            .iter()
            .any(|p| p.contains("entry 2: hash mismatch")),
        "{:?}",
        verified.problems
    );
    pool.close().await;
    store.close().await;
    place.cleanup().await;
}

fn demo_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo"))
}

fn checkout() -> Principal {
    Principal::new(Transport::Slack, "U0DEMO").in_channel("C0DEMO")
}

async fn app_on(store: &TestStore) -> App {
    App::build(
        demo_dir(),
        &store.location,
        ModelChoice::Offline,
        &ProcessEnv,
    )
    .await
    .expect("app")
}

fn user_texts(messages: &[investigator::llm::Message]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.role == Role::User)
        .flat_map(|m| m.content.iter())
        .filter_map(|b| match b {
            ContentBlock::Text { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

async fn a_follow_up_after_a_restart_continues_the_session(kind: StoreKind) {
    let place = TestStore::new(kind).await;
    let (id, first_evidence) = {
        let app = app_on(&place).await;
        let (id, _) = app.start_session(&checkout()).await.expect("session");
        let outcome = app
            .ask_in_session(&checkout(), &id, "why is checkout erroring?", &NoEvents)
            .await
            .expect("answered");
        assert!(!outcome.new_evidence.is_empty());
        app.sessions.store().close().await;
        (id, outcome.new_evidence.len())
    };

    // A new process: everything is rebuilt from the store.
    let app = app_on(&place).await;
    let (row, _) = app.session_for(&checkout(), &id).await.expect("visible");
    assert_eq!(row.status, SessionStatus::Idle);
    let outcome = app
        .ask_in_session(
            &checkout(),
            &id,
            "and what changed in the deploy?",
            &NoEvents,
        )
        .await
        .expect("follow-up answered");
    // Evidence ids continue where the first process stopped.
    assert_eq!(
        outcome.new_evidence.first().map(String::as_str),
        Some(format!("E{}", first_evidence + 1).as_str()),
        "{:?}",
        outcome.new_evidence
    );
    let store = app.sessions.store();
    let messages = store.session_messages(&id).await.expect("messages");
    let texts = user_texts(&messages).join("\n");
    assert!(texts.contains("why is checkout erroring?"), "{texts}");
    assert!(texts.contains("and what changed in the deploy?"), "{texts}");
    let reports = store.session_reports(&id).await.expect("reports");
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].question, "why is checkout erroring?");
    let evidence = store.session_evidence(&id).await.expect("evidence");
    assert_eq!(
        evidence.len(),
        first_evidence + outcome.new_evidence.len(),
        "every item of both questions is stored"
    );
    let usage = store
        .usage(chrono::Utc::now().date_naive() - chrono::Duration::days(1))
        .await
        .expect("usage");
    assert!(usage
        .iter()
        .any(|u| u.squad == "checkout" && u.investigations == 2));
    store.close().await;
    place.cleanup().await;
}

async fn concurrent_follow_ups_on_two_replicas_lose_nothing(kind: StoreKind) {
    let place = TestStore::new(kind).await;
    // Two replicas: two apps, two pools, one database.
    let replicas = [
        Arc::new(app_on(&place).await),
        Arc::new(app_on(&place).await),
    ];
    let app = replicas[0].clone();
    let (id, _) = app.start_session(&checkout()).await.expect("session");
    let mut tasks = Vec::new();
    for i in 0..3 {
        let app = replicas[i % 2].clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            app.ask_in_session(
                &checkout(),
                &id,
                &format!("question {i}: why is checkout erroring?"),
                &NoEvents,
            )
            .await
            .map(|o| o.new_evidence)
        }));
    }
    let mut all_ids = Vec::new();
    for task in tasks {
        let ids = task.await.expect("task").expect("answered");
        all_ids.extend(ids);
    }
    let store = app.sessions.store();
    let reports = store.session_reports(&id).await.expect("reports");
    assert_eq!(reports.len(), 3);
    let evidence = store.session_evidence(&id).await.expect("evidence");
    let stored: Vec<String> = evidence.iter().map(|e| e.id.clone()).collect();
    let expected: Vec<String> = (1..=stored.len()).map(|n| format!("E{n}")).collect();
    assert_eq!(stored, expected, "ids contiguous, none overwritten");
    all_ids.sort_by_key(|id| id[1..].parse::<u32>().unwrap_or(0));
    assert_eq!(all_ids, expected);
    let texts = user_texts(&store.session_messages(&id).await.expect("messages")).join("\n");
    for i in 0..3 {
        assert!(texts.contains(&format!("question {i}:")), "{texts}");
    }
    for replica in &replicas {
        replica.sessions.store().close().await;
    }
    place.cleanup().await;
}

async fn another_squad_cannot_see_or_continue_a_session(kind: StoreKind) {
    let place = TestStore::new(kind).await;
    let app = app_on(&place).await;
    let (id, _) = app.start_session(&checkout()).await.expect("session");
    let identity = Principal::new(Transport::Slack, "U0IDENTITY").in_channel("C0IDENTITY");
    assert!(matches!(
        app.session_for(&identity, &id).await,
        Err(AskError::NotFound)
    ));
    assert!(matches!(
        app.ask_in_session(&identity, &id, "show me", &NoEvents)
            .await,
        Err(AskError::NotFound)
    ));
    assert!(matches!(
        app.session_for(&checkout(), "nope").await,
        Err(AskError::NotFound)
    ));
    app.sessions.store().close().await;
    place.cleanup().await;
}

async fn leases_expire_interrupted_sessions_recover_and_prune_keeps_running_ones(kind: StoreKind) {
    let place = TestStore::new(kind).await;
    let store = place.open().await;
    let now = chrono::Utc::now();
    let squads = vec!["checkout".to_string()];
    assert!(store
        .create_session("s1", "slack:U1", &squads, now)
        .await
        .expect("create"));
    assert!(!store
        .create_session("s1", "slack:U1", &squads, now)
        .await
        .expect("dup"));
    let soon = now + chrono::Duration::seconds(30);
    assert_eq!(
        store.try_lease("s1", "a", now, soon).await.expect("lease"),
        LeaseOutcome::Taken
    );
    assert_eq!(
        store.try_lease("s1", "b", now, soon).await.expect("lease"),
        LeaseOutcome::Busy
    );
    assert_eq!(
        store.try_lease("zz", "b", now, soon).await.expect("lease"),
        LeaseOutcome::Unknown
    );
    store
        .mark_running("s1", "a", "q?", now)
        .await
        .expect("running");
    assert!(
        store.mark_running("s1", "b", "q?", now).await.is_err(),
        "not the holder"
    );
    // Holder "a" dies; after expiry "b" may take it, and a restart marks it interrupted.
    let later = soon + chrono::Duration::seconds(1);
    assert_eq!(store.recover_interrupted(later).await.expect("recover"), 1);
    let row = store.session("s1").await.expect("row").expect("exists");
    assert_eq!(row.status, SessionStatus::Interrupted);
    assert_eq!(row.pending_question.as_deref(), Some("q?"));
    // Listed by id prefix (LIKE wildcards in it are literal), then told once.
    let listed = store.interrupted_sessions("s", 10).await.expect("list");
    assert_eq!(
        listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["s1"]
    );
    for other in ["s_", "%", "x"] {
        assert!(
            store
                .interrupted_sessions(other, 10)
                .await
                .expect("list")
                .is_empty(),
            "{other}"
        );
    }
    assert!(store.settle_interrupted("s1", later).await.expect("settle"));
    assert!(!store.settle_interrupted("s1", later).await.expect("again"));
    let row = store.session("s1").await.expect("row").expect("exists");
    assert_eq!(row.status, SessionStatus::Idle);
    assert_eq!(row.pending_question.as_deref(), Some("q?"));
    assert!(store
        .interrupted_sessions("s", 10)
        .await
        .expect("list")
        .is_empty());
    assert_eq!(
        store
            .try_lease("s1", "b", later, later)
            .await
            .expect("lease"),
        LeaseOutcome::Taken
    );

    assert!(store.mark_event_processed("ev1", now).await.expect("event"));
    assert!(!store.mark_event_processed("ev1", now).await.expect("retry"));
    store
        .create_session("s2", "slack:U1", &squads, now)
        .await
        .expect("create");
    store.try_lease("s2", "c", now, soon).await.expect("lease");
    store
        .mark_running("s2", "c", "still going", now)
        .await
        .expect("running");
    let pruned = store
        .prune(later + chrono::Duration::days(1))
        .await
        .expect("prune");
    assert_eq!(pruned.sessions, 1, "the running session is kept");
    assert_eq!(pruned.events, 1);
    assert!(store.session("s1").await.expect("row").is_none());
    assert!(store.session("s2").await.expect("row").is_some());
    store.close().await;
    place.cleanup().await;
}

fn audit_record(replica: usize, i: usize) -> AuditRecord {
    AuditRecord {
        at: chrono::Utc
            .with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
            .single()
            .expect("valid date"),
        principal: format!("slack:U{replica}"),
        channel: None,
        squad: Some("checkout".to_owned()),
        source: "orders".to_owned(),
        tool: "run_query".to_owned(),
        statement: format!("SELECT {i}"),
        verdict: Verdict::Allowed,
        reason: None,
        rows: Some(1),
        duration_ms: Some(3),
        evidence_id: None,
        session_id: None,
    }
}

async fn concurrent_appenders_on_two_replicas_keep_one_chain(kind: StoreKind) {
    let place = TestStore::new(kind).await;
    let replicas = [place.open().await, place.open().await];
    // 20 appenders, alternating between the replicas, all at once.
    let appends = (0..20).map(|i| {
        let store = replicas[i % 2].clone();
        async move { store.append_audit(&audit_record(i % 2, i)).await }
    });
    let entries: Vec<_> = join_all(appends)
        .await
        .into_iter()
        .map(|r| r.expect("append"))
        .collect();
    let mut seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<i64>>(), "contiguous, no fork");
    for store in &replicas {
        let verified = store.verify_audit().await.expect("verify");
        assert!(verified.ok, "{:?}", verified.problems);
        assert_eq!(verified.entries, 20);
        assert_eq!(verified.head_seq, Some(20));
    }
    let tail = replicas[1].tail_audit(20).await.expect("tail");
    for pair in tail.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "linked");
    }
    for store in &replicas {
        store.close().await;
    }
    place.cleanup().await;
}

async fn two_replicas_racing_for_a_lease_take_it_once(kind: StoreKind) {
    let place = TestStore::new(kind).await;
    let replicas = [place.open().await, place.open().await];
    let now = chrono::Utc::now();
    let until = now + chrono::Duration::seconds(30);
    let squads = vec!["checkout".to_string()];
    replicas[0]
        .create_session("race", "slack:U1", &squads, now)
        .await
        .expect("create");
    let attempts = (0..10).map(|i| {
        let store = replicas[i % 2].clone();
        async move {
            store
                .try_lease("race", &format!("holder-{i}"), now, until)
                .await
        }
    });
    let outcomes: Vec<LeaseOutcome> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("lease"))
        .collect();
    let taken = outcomes
        .iter()
        .filter(|o| **o == LeaseOutcome::Taken)
        .count();
    assert_eq!(taken, 1, "{outcomes:?}");
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, LeaseOutcome::Taken | LeaseOutcome::Busy)));
    // Whoever won, the other replica cannot write under its own name ...
    assert!(replicas[1]
        .mark_running("race", "someone-else", "q", now)
        .await
        .is_err());
    // ... until the lease expires.
    let later = until + chrono::Duration::seconds(1);
    assert_eq!(
        replicas[1]
            .try_lease("race", "late", later, later + chrono::Duration::seconds(30))
            .await
            .expect("lease"),
        LeaseOutcome::Taken
    );
    for store in &replicas {
        store.close().await;
    }
    place.cleanup().await;
}
