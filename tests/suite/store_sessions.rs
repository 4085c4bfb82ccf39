//! Stored sessions: a follow-up after a restart continues the thread, concurrent
//! follow-ups lose nothing, other squads cannot see a session, retention prunes.

use std::path::Path;
use std::sync::Arc;

use investigator::access::{Principal, Transport};
use investigator::app::{App, AskError, ModelChoice};
use investigator::config::interpolate::ProcessEnv;
use investigator::engine::NoEvents;
use investigator::llm::{ContentBlock, Role};
use investigator::store::{SessionStatus, Store};

fn demo_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo"))
}

fn checkout() -> Principal {
    Principal::new(Transport::Slack, "U0DEMO").in_channel("C0DEMO")
}

async fn app_on(store: &Path) -> App {
    App::build(
        demo_dir(),
        &store.display().to_string(),
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

#[tokio::test]
async fn a_follow_up_after_a_restart_continues_the_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let (id, first_evidence) = {
        let app = app_on(&path).await;
        let (id, _) = app.start_session(&checkout()).await.expect("session");
        let outcome = app
            .ask_in_session(&checkout(), &id, "why is checkout erroring?", &NoEvents)
            .await
            .expect("answered");
        assert!(!outcome.new_evidence.is_empty());
        app.sessions.store().close().await;
        (id, outcome.new_evidence.len())
    };

    // A new process: everything is rebuilt from the store file.
    let app = app_on(&path).await;
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
}

#[tokio::test]
async fn concurrent_follow_ups_on_one_session_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = Arc::new(app_on(&dir.path().join("store.db")).await);
    let (id, _) = app.start_session(&checkout()).await.expect("session");
    let mut tasks = Vec::new();
    for i in 0..3 {
        let app = app.clone();
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
}

#[tokio::test]
async fn another_squad_cannot_see_or_continue_a_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on(&dir.path().join("store.db")).await;
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
}

#[tokio::test]
async fn leases_expire_interrupted_sessions_recover_and_prune_keeps_running_ones() {
    let store = Store::open_in_memory().await.expect("store");
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
    use investigator::store::LeaseOutcome;
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
}
