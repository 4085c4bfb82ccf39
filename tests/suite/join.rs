//! An investigation whose cause shows only when two sources are read together: a
//! rollout in Kubernetes (revision 4, image 1.42, at 09:00) and an error rise in
//! Datadog (from 09:02). The real engine drives the real Kubernetes and Datadog
//! sources against their fakes; a scripted model asks both in one turn (and tries
//! another squad's namespace and service), then reports citing both.

use investigator::engine::{Conversation, Engine, EngineSettings, Gate, NoEvents, ReportKind};
use investigator::llm::{ContentBlock, ModelResponse};
use investigator::store::Store;
use serde_json::{json, Value};

use super::common::{parse_config, Harness};
use super::engine::{tool_use, ScriptedModel, SteppingClock};
use super::{datadog, kubernetes};

const SQUADS: &str = r#"
squads:
  payment:
    members:
      slack: [U_PAY]
    grants:
      - source: k8s
        namespaces: [payments]
        contexts: [prod]
      - source: datadog
        services: [checkout]
  billing:
    members:
      slack: [U_BILL]
    grants:
      - source: k8s
        namespaces: [billing]
      - source: datadog
        services: [billing]
"#;

/// The report a model would write once it has both: each claim cites the
/// rollout (E1) and the error series (E2).
fn joined_report() -> ModelResponse {
    tool_use(&[(
        "r1",
        "submit_report",
        json!({
            "root_cause": {
                "summary": "The checkout rollout to registry/checkout:1.42 (revision 4, 09:00) is followed two minutes later by a tenfold error rise on checkout",
                "evidence": ["E1", "E2"]
            },
            "timeline": [
                {"time": "2024-05-01T09:00:00Z", "event": "checkout revision 4 (image 1.42) rolled out", "evidence": ["E1"]},
                {"time": "2024-05-01T09:02:00Z", "event": "checkout errors rise from 5 to 50 per minute", "evidence": ["E2"]}
            ],
            "affected_components": [{"name": "checkout", "evidence": ["E1", "E2"]}],
            "recommended_actions": [{"action": "kubectl rollout undo deployment/checkout -n payments (back to 1.41)", "evidence": ["E1"]}],
            "confidence": "high",
            "open_questions": []
        }),
    )])
}

/// The text of every tool_result the model was sent, by tool_use id.
fn tool_results(requests: &[investigator::llm::ModelRequest]) -> Vec<(String, String, bool)> {
    requests
        .iter()
        .flat_map(|r| r.messages.iter())
        .flat_map(|m| m.content.iter())
        .filter_map(|b| match b {
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => Some((tool_use_id.clone(), content.clone(), *is_error)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_deploy_in_kubernetes_and_an_error_rise_in_datadog_explain_it_together() {
    let (k8s_seen, k8s_url) = kubernetes::start().await;
    let (dd_seen, dd_url) = datadog::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = kubernetes::write_kubeconfig(dir.path(), &k8s_url);
    let sources = format!(
        "data_sources:\n  kubernetes:\n    name: k8s\n    kubeconfig_path: \"{}\"\n    contexts: [prod, staging]\n  apm:\n    datadog:\n      api_key: {}\n      app_key: {}\n      app_id: checkout,billing\n      site: datadoghq.eu\n      base_url: \"{dd_url}\"\n",
        kubeconfig.display(),
        datadog::API_KEY,
        datadog::APP_KEY,
    );
    let h = Harness::new(parse_config(&sources, SQUADS)).await;
    let window = json!({"start": "2024-05-01T08:22:00Z", "end": "2024-05-01T09:22:00Z"});
    let with_window = |extra: Value| {
        let mut v = window.clone();
        if let (Some(map), Value::Object(more)) = (v.as_object_mut(), extra) {
            map.extend(more);
        }
        v
    };
    let model = ScriptedModel::new(vec![
        tool_use(&[
            (
                "t1",
                "k8s__rollouts",
                json!({"namespace": "payments", "deployment": "checkout"}),
            ),
            (
                "t2",
                "datadog__query_metrics",
                with_window(
                    json!({"query": "sum:trace.http.request.errors{env:prod}.as_count()", "service": "checkout"}),
                ),
            ),
            // Another squad's namespace and service: refused, never sent.
            ("t3", "k8s__rollouts", json!({"namespace": "billing"})),
            (
                "t4",
                "datadog__query_metrics",
                with_window(
                    json!({"query": "sum:trace.http.request.errors{env:prod}.as_count()", "service": "billing"}),
                ),
            ),
        ]),
        joined_report(),
    ]);
    let engine = Engine::new(
        Gate::new(
            h.gate.sources().clone(),
            Store::open_in_memory().await.expect("store"),
        ),
        model.clone(),
        SteppingClock::new(10),
        EngineSettings::default(),
    );
    let mut conversation = Conversation::default();
    let outcome = engine
        .ask(
            &h.access("U_PAY"),
            &mut conversation,
            "system".into(),
            "why is checkout erroring since this morning?",
            &NoEvents,
        )
        .await;
    assert!(model.violations().is_empty(), "{:?}", model.violations());
    assert_eq!(outcome.report.kind, ReportKind::Structured);

    // On the wire: only the granted namespace, context and service were read.
    let k8s_requests = kubernetes::lock(&k8s_seen).requests.clone();
    assert!(
        k8s_requests
            .iter()
            .any(|r| r == "GET /apis/apps/v1/namespaces/payments/replicasets"),
        "{k8s_requests:?}"
    );
    assert!(
        !k8s_requests.iter().any(|r| r.contains("billing")),
        "{k8s_requests:?}"
    );
    assert!(kubernetes::lock(&k8s_seen).violations.is_empty());
    let dd_requests = datadog::lock(&dd_seen).requests.clone();
    let metric_queries: Vec<&String> = dd_requests
        .iter()
        .filter(|(path, _)| path == "/api/v1/query")
        .map(|(_, q)| q)
        .collect();
    assert_eq!(metric_queries.len(), 1, "{dd_requests:?}");
    assert!(
        metric_queries[0].contains("service:checkout") && !metric_queries[0].contains("billing"),
        "{metric_queries:?}"
    );
    assert!(datadog::lock(&dd_seen).violations.is_empty());

    // What the model was sent: the rollout's revision, image and time, and the
    // error series' level change two minutes later, both compact; the refusals as
    // errors it can act on.
    let results = tool_results(&model.requests());
    let find = |id: &str| {
        results
            .iter()
            .find(|(t, _, _)| t == id)
            .unwrap_or_else(|| panic!("no tool_result for {id}: {results:?}"))
    };
    let (_, rollout, rollout_error) = find("t1");
    assert!(!rollout_error, "{rollout}");
    for needle in [
        "E1",
        r#"["checkout",4,"checkout-7d9f","2024-05-01T09:00:00Z","registry/checkout:1.42""#,
        "registry/checkout:1.41",
        "2024-05-01T09:00:00Z",
        "kubectl --context prod -n payments rollout history deployment/checkout",
    ] {
        assert!(rollout.contains(needle), "{needle} not in {rollout}");
    }
    let (_, errors, errors_error) = find("t2");
    assert!(!errors_error, "{errors}");
    for needle in [
        "E2",
        "change at 2024-05-01T09:02:00Z: 5 → 50",
        "open in Datadog: https://app.datadoghq.eu/metric/explorer",
        "attached for the reader: chart.png",
    ] {
        assert!(errors.contains(needle), "{needle} not in {errors}");
    }
    assert!(errors.len() < 8_000, "not compact: {} chars", errors.len());
    for refused in ["t3", "t4"] {
        let (_, text, is_error) = find(refused);
        assert!(is_error, "{refused}: {text}");
        assert!(
            text.contains("outside your grant")
                || text.contains("not visible")
                || text.contains("billing"),
            "{refused}: {text}"
        );
    }

    // The evidence: both items whole, each with its way back to the source.
    let items = conversation.evidence.items();
    let by_id = |id: &str| {
        items
            .iter()
            .find(|i| i.id == id)
            .unwrap_or_else(|| panic!("no {id}"))
    };
    let e1 = by_id("E1");
    assert_eq!((e1.source.as_str(), e1.tool.as_str()), ("k8s", "rollouts"));
    assert!(e1
        .note
        .as_deref()
        .is_some_and(|n| n
            .contains("kubectl --context prod -n payments rollout history deployment/checkout")));
    let e2 = by_id("E2");
    assert_eq!(
        (e2.source.as_str(), e2.tool.as_str()),
        ("datadog", "query_metrics")
    );
    assert!(e2
        .note
        .as_deref()
        .is_some_and(|n| n.contains("https://app.datadoghq.eu/metric/explorer")));
    assert_eq!(e2.attachments.len(), 1, "the chart");
    assert_eq!(e2.attachments[0].media_type, "image/png");
    let with_data: Vec<&str> = items
        .iter()
        .filter(|i| i.content.is_some())
        .map(|i| i.id.as_str())
        .collect();
    assert_eq!(with_data, ["E1", "E2"], "a refused call produced data");

    // The report: its cause cites both sources, its timeline one each.
    let report = serde_json::to_value(&outcome.report).expect("report json");
    let text = report.to_string();
    assert!(
        text.contains("1.42") && text.contains("error rise"),
        "{text}"
    );
    let cited: Vec<String> = report
        .pointer("/findings/root_cause/evidence")
        .or_else(|| report.pointer("/root_cause/evidence"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert_eq!(cited, ["E1", "E2"], "{report}");
}
