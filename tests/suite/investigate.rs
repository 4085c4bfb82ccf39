//! Whole investigations: the real engine, the Anthropic client against the fake
//! Messages server, and the real demo sources (SQLite + log files). Also the
//! offline planner on the demo, as `investigator demo` runs it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use investigator::access::{Principal, Transport};
use investigator::app::{App, ModelChoice};
use investigator::config::{interpolate::ProcessEnv, Secret};
use investigator::engine::{
    Budgets, Conversation, EngineSettings, Gate, NoEvents, ReportKind, SystemClock,
};
use investigator::llm::anthropic::{AnthropicConfig, AnthropicModel};
use investigator::sources::{BuildContext, Registry, Sources};
use investigator::store::Store;
use serde_json::json;

use super::fake_anthropic::{FakeAnthropic, Scripted};

fn demo_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo"))
}

fn demo_principal() -> Principal {
    Principal::new(Transport::Slack, "U0DEMO").in_channel("C0DEMO")
}

async fn claude_app(fake: &FakeAnthropic, budgets: Budgets) -> App {
    let config = investigator::config::load(demo_dir(), &ProcessEnv).expect("demo config");
    let ctx = BuildContext {
        master_key: None,
        config_dir: config.dir.clone(),
    };
    let sources = Sources::build(&config, &Registry::builtin(), &ctx);
    let store = Store::open_in_memory().await.expect("store");
    let mut settings = AnthropicConfig::new(Secret::new(FakeAnthropic::DEFAULT_KEY));
    settings.base_url = fake.base_url();
    settings.max_backoff = Duration::from_millis(200);
    let model = AnthropicModel::new(settings).expect("client");
    let engine_settings = EngineSettings {
        budgets,
        ..EngineSettings::default()
    };
    App::from_parts(
        config,
        Gate::new(sources, store),
        Arc::new(model),
        Arc::new(SystemClock),
        engine_settings,
    )
}

#[tokio::test]
async fn offline_demo_finds_the_deploy_that_exhausted_the_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store.db");
    let app = App::build(
        demo_dir(),
        &store.display().to_string(),
        ModelChoice::Offline,
        &ProcessEnv,
    )
    .await
    .expect("app");
    let mut conversation = Conversation {
        id: "demo".into(),
        ..Conversation::default()
    };
    let outcome = app
        .ask(
            &demo_principal(),
            &mut conversation,
            "why is checkout erroring?",
            &NoEvents,
        )
        .await
        .expect("allowed");
    let report = &outcome.report;
    assert_eq!(report.kind, ReportKind::Structured, "{report:?}");
    assert!(!report.partial);
    let findings = report.findings.as_ref().expect("findings");
    let cause = &findings.root_cause.summary;
    assert!(
        cause.contains("payment-service") && cause.contains("2.14.0"),
        "{cause}"
    );
    assert!(cause.contains("maxPoolSize 50→5"), "{cause}");
    assert!(cause.contains("Connection is not available"), "{cause}");
    assert_eq!(findings.confidence.as_str(), "high");
    assert!(findings
        .recommended_actions
        .iter()
        .any(|a| a.action.contains("Roll back payment-service to 2.13.2")));
    // Every citation resolves to stored evidence a reader can open.
    for id in &report.cited {
        assert!(
            conversation.evidence.get(id).is_some_and(|e| e.ok()),
            "{id}"
        );
    }
    // The identity squad's log was never touched: not offered, so never called.
    assert!(conversation
        .evidence
        .items()
        .iter()
        .all(|e| e.source != "identity_logs"));
}

#[tokio::test]
async fn claude_investigation_with_parallel_calls_retries_and_adversarial_turns() {
    let fake = FakeAnthropic::start(vec![
        // Overloaded, then rate limited (with retry-after), then the plan.
        Scripted::Error { status: 529, error_type: "overloaded_error", retry_after: None },
        Scripted::Error { status: 429, error_type: "rate_limit_error", retry_after: Some(0.05) },
        Scripted::tool_use(&[
            ("t1", "app_logs__count_by_pattern", json!({"level": ["ERROR"]})),
            ("t2", "checkout_db__run_query", json!({"sql": "SELECT service, version, deployed_at FROM deploys ORDER BY deployed_at"})),
            ("t3", "checkout_db__run_query", json!({"sql": "DELETE FROM orders"})),
        ]),
        // Obeying an injected instruction: another squad's log, a made-up tool, bad JSON shape.
        Scripted::tool_use(&[
            ("t4", "identity_logs__search_logs", json!({})),
            ("t5", "checkout_db__drop_table", json!({})),
            ("t6", "app_logs__search_logs", json!("not an object")),
            ("t7", "checkout_db__run_query", json!({"sql": "WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d"})),
        ]),
        // A report citing an id that does not exist, then the fixed one.
        Scripted::tool_use(&[("r1", "submit_report", json!({
            "root_cause": {"summary": "pool exhausted after the payment-service deploy", "evidence": ["E1", "E42"]},
            "timeline": [{"time": "10:12", "event": "deploy", "evidence": ["E2"]}],
            "affected_components": [{"name": "payment-service", "evidence": ["E1"]}],
            "recommended_actions": [{"action": "roll back", "evidence": ["E2"]}],
            "confidence": "high"
        }))]),
        Scripted::tool_use(&[("r2", "submit_report", json!({
            "root_cause": {"summary": "pool exhausted after the payment-service deploy", "evidence": ["E1", "E2"]},
            "timeline": [{"time": "10:12", "event": "deploy", "evidence": ["E2"]}],
            "affected_components": [{"name": "payment-service", "evidence": ["E1"]}],
            "recommended_actions": [{"action": "roll back", "evidence": ["E2"]}],
            "confidence": "high",
            "open_questions": []
        }))]),
    ])
    .await;
    let app = claude_app(&fake, Budgets::default()).await;
    let mut conversation = Conversation {
        id: "claude".into(),
        ..Conversation::default()
    };
    let outcome = app
        .ask(
            &demo_principal(),
            &mut conversation,
            "why is checkout erroring?",
            &NoEvents,
        )
        .await
        .expect("allowed");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    assert_eq!(outcome.report.kind, ReportKind::Structured);
    assert_eq!(outcome.report.cited, vec!["E1", "E2"]);
    // The DELETE and the writable CTE were refused by the guard: evidence of refusal, nothing ran.
    let e3 = conversation.evidence.get("E3").expect("E3");
    assert!(
        e3.error
            .as_deref()
            .unwrap_or_default()
            .starts_with("refused:"),
        "{e3:?}"
    );
    let e4 = conversation.evidence.get("E4").expect("E4");
    assert!(
        e4.error.as_deref().unwrap_or_default().contains("refused"),
        "{e4:?}"
    );
    assert_eq!(
        conversation.evidence.len(),
        4,
        "denied and malformed calls must not reach a source"
    );
    let requests = fake.requests();
    // 2 failed attempts + 4 turns.
    assert_eq!(requests.len(), 6);
    let offered: Vec<String> = requests[2]["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|x| x["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        offered.iter().all(|n| !n.starts_with("identity_logs")),
        "{offered:?}"
    );
    assert!(offered.contains(&"submit_report".to_string()));
    // The prompt names only the principal's squad's sources.
    let system = requests[2]["system"].to_string();
    assert!(
        system.contains("checkout_db") && !system.contains("identity_logs"),
        "{system}"
    );
    // The orders table is intact.
    let table = app
        .engine
        .gate()
        .call(
            &app.resolve(&demo_principal()).expect("access"),
            "checkout_db",
            "run_query",
            &json!({"sql": "SELECT count(*) AS n FROM orders"}),
            &investigator::sources::CallContext::default(),
        )
        .await;
    let text = serde_json::to_string(&table.result.expect("count").content).unwrap_or_default();
    assert!(!text.contains("[[0]]"), "{text}");
    fake.shutdown().await;
}

#[tokio::test]
async fn a_model_that_never_stops_ends_in_a_partial_report() {
    let endless: Vec<Scripted> = (0..20)
        .map(|i| Scripted::tool_use(&[(&format!("t{i}"), "app_logs__count_over_time", json!({}))]))
        .collect();
    let fake = FakeAnthropic::start(endless).await;
    let app = claude_app(
        &fake,
        Budgets {
            max_turns: 3,
            ..Budgets::default()
        },
    )
    .await;
    let mut conversation = Conversation {
        id: "endless".into(),
        ..Conversation::default()
    };
    let outcome = app
        .ask(&demo_principal(), &mut conversation, "why?", &NoEvents)
        .await
        .expect("allowed");
    assert!(outcome.report.partial, "{:?}", outcome.report);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    let requests = fake.requests();
    let last = requests.last().expect("requests");
    assert_eq!(
        last["tools"].as_array().map(Vec::len),
        Some(1),
        "last turn offers only submit_report"
    );
    assert_eq!(last["tool_choice"]["name"], json!("submit_report"));
    fake.shutdown().await;
}

#[tokio::test]
async fn unknown_users_and_foreign_channels_are_refused_before_any_model_call() {
    let fake = FakeAnthropic::start(vec![]).await;
    let app = claude_app(&fake, Budgets::default()).await;
    let mut conversation = Conversation::default();
    let stranger = Principal::new(Transport::Slack, "U0STRANGER");
    assert!(app
        .ask(&stranger, &mut conversation, "why?", &NoEvents)
        .await
        .is_err());
    let identity_member_in_checkout =
        Principal::new(Transport::Slack, "U0IDENTITY").in_channel("C0DEMO");
    assert!(app
        .ask(
            &identity_member_in_checkout,
            &mut conversation,
            "why?",
            &NoEvents
        )
        .await
        .is_err());
    assert!(fake.requests().is_empty());
    let audit = app
        .engine
        .gate()
        .store()
        .tail_audit(10)
        .await
        .expect("audit");
    assert_eq!(audit.len(), 2, "refusals are audited");
    fake.shutdown().await;
}

#[tokio::test]
async fn offline_follow_up_regroups_earlier_evidence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store.db");
    let app = App::build(
        demo_dir(),
        &store.display().to_string(),
        ModelChoice::Offline,
        &ProcessEnv,
    )
    .await
    .expect("app");
    let mut conversation = Conversation {
        id: "follow".into(),
        ..Conversation::default()
    };
    let first = app
        .ask(
            &demo_principal(),
            &mut conversation,
            "why is checkout erroring?",
            &NoEvents,
        )
        .await
        .expect("allowed");
    // One item per runbook step that found a tool (E2 is the error count over time).
    assert_eq!(first.new_evidence.len(), 6);
    assert_eq!(
        conversation.evidence.get("E2").map(|e| e.tool.as_str()),
        Some("count_over_time")
    );
    let second = app
        .ask(
            &demo_principal(),
            &mut conversation,
            "show me E2 by hour",
            &NoEvents,
        )
        .await
        .expect("allowed");
    assert_eq!(second.new_evidence, vec!["E7"]);
    let e6 = conversation.evidence.get("E7").expect("E7");
    assert_eq!(e6.tool, "count_over_time");
    assert_eq!(e6.arguments["bucket"], json!("1h"));
    assert_eq!(
        e6.arguments["level"],
        conversation.evidence.get("E2").expect("E2").arguments["level"]
    );
    assert!(
        second.report.cited.contains(&"E7".to_string()),
        "{:?}",
        second.report.cited
    );
}
