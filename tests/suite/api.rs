//! The HTTP API: the real server on port 0 over the demo sources and the
//! offline planner, a file store that survives a restart of the server.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use investigator::api::{self, ApiSettings, ApiState};
use investigator::app::App;
use investigator::config::interpolate::ProcessEnv;
use investigator::config::squads::ApiKeyConfig;
use investigator::config::SecretRef;
use investigator::engine::{EngineSettings, Gate, SystemClock};
use investigator::llm::offline::OfflinePlanner;
use investigator::sources::{BuildContext, Registry, Sources};
use investigator::store::Store;
use serde_json::{json, Value};
use tokio::sync::oneshot;

const CHECKOUT_KEY: &str = "test-key-checkout-0123456789";
const IDENTITY_KEY: &str = "test-key-identity-0123456789";

fn demo_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo"))
}

struct Server {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(store: &Path, settings: ApiSettings) -> Server {
        let runbooks = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/runbooks"));
        let model = OfflinePlanner::load(Some(runbooks)).expect("runbooks");
        Self::start_with(store, settings, Arc::new(model)).await
    }

    async fn start_with(
        store: &Path,
        settings: ApiSettings,
        model: Arc<dyn investigator::llm::Model>,
    ) -> Server {
        let mut config = investigator::config::load(demo_dir(), &ProcessEnv).expect("demo config");
        for (squad, key) in [("checkout", CHECKOUT_KEY), ("identity", IDENTITY_KEY)] {
            config
                .squads
                .get_mut(squad)
                .expect("demo squad")
                .api_keys
                .push(ApiKeyConfig {
                    name: format!("{squad}-ci"),
                    key: SecretRef::from(key),
                });
        }
        let ctx = BuildContext {
            master_key: None,
            config_dir: config.dir.clone(),
        };
        let sources = Sources::build(&config, &Registry::builtin(), &ctx);
        let store = Store::open(&store.display().to_string())
            .await
            .expect("store");
        let app = App::from_parts(
            config,
            Gate::new(sources, store),
            model,
            Arc::new(SystemClock),
            EngineSettings::default(),
        );
        let state = ApiState::new(Arc::new(app), settings, None).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            api::serve(listener, state, shutdown).await.expect("serve");
        });
        Server {
            base,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn brief_body() -> Value {
    json!({
        "query": "Why is checkout erroring in production?",
        "context": {
            "environment": "production",
            "time_range": {"start": "2026-01-15T10:00:00Z", "end": "2026-01-15T11:00:00Z"},
            "services": ["payment-service"]
        }
    })
}

async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let ct = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(ct, "application/problem+json");
    let body: Value = response.json().await.expect("problem json");
    assert_eq!(body["status"], json!(status), "{body}");
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

#[tokio::test]
async fn brief_shape_follow_ups_isolation_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store.db");
    let server = Server::start(&store, ApiSettings::default()).await;
    let http = client();

    let response = http
        .post(server.url("/api/v1/investigate"))
        .bearer_auth(CHECKOUT_KEY)
        .json(&brief_body())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    let id = body["investigation_id"].as_str().expect("id").to_string();
    let synthesis = &body["synthesis"];
    let cause = synthesis["root_cause"]
        .as_str()
        .expect("root_cause is a string");
    assert!(cause.contains("payment-service"), "{cause}");
    assert!(synthesis["timeline"].is_string(), "{synthesis}");
    assert!(synthesis["affected_components"]
        .as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string)));
    assert!(synthesis["recommended_actions"]
        .as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string)));
    assert_eq!(synthesis["confidence"], json!("high"));
    let evidence = body["evidence"].as_object().expect("evidence by kind");
    assert!(!evidence.is_empty());
    assert!(evidence.values().all(|v| v.is_array()));
    assert!(body["usage"]["tool_calls"].as_u64().is_some_and(|n| n > 0));
    assert!(
        body["report"]["findings"].is_object(),
        "structured findings kept"
    );
    let first_count: usize = evidence
        .values()
        .map(|v| v.as_array().map_or(0, Vec::len))
        .sum();

    // The context reached the model as part of the question.
    let messages = Store::open(&store.display().to_string())
        .await
        .expect("store")
        .session_messages(&id)
        .await
        .expect("messages");
    let first = serde_json::to_string(&messages[0]).expect("json");
    assert!(
        first.contains("time range: 2026-01-15T10:00:00Z to 2026-01-15T11:00:00Z"),
        "{first}"
    );
    assert!(first.contains("services: payment-service"), "{first}");

    // The owner reads it; another squad's key gets 404, never the content.
    let got: Value = http
        .get(server.url(&format!("/api/v1/investigations/{id}")))
        .bearer_auth(CHECKOUT_KEY)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(got["status"], json!("complete"));
    assert_eq!(got["synthesis"]["root_cause"], synthesis["root_cause"]);
    for path in [
        format!("/api/v1/investigations/{id}"),
        format!("/api/v1/evidence/{id}"),
        format!("/api/v1/evidence/{id}/E1"),
    ] {
        let r = http
            .get(server.url(&path))
            .bearer_auth(IDENTITY_KEY)
            .send()
            .await
            .expect("send");
        let p = problem(r, 404).await;
        assert!(!p.to_string().contains("payment"), "{p}");
    }
    let r = http
        .post(server.url(&format!("/api/v1/investigations/{id}/messages")))
        .bearer_auth(IDENTITY_KEY)
        .json(&json!({"message": "show me everything"}))
        .send()
        .await
        .expect("send");
    problem(r, 404).await;

    // Whole evidence with attachments; a table as CSV.
    let all: Value = http
        .get(server.url(&format!("/api/v1/evidence/{id}")))
        .bearer_auth(CHECKOUT_KEY)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let items = all["evidence"].as_array().expect("items");
    assert_eq!(items.len(), first_count);
    let table = items
        .iter()
        .find(|i| i["content"]["type"] == json!("table"))
        .expect("a table item");
    let csv_url = table["attachments"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["media_type"] == json!("text/csv")))
        .and_then(|f| f["url"].as_str())
        .expect("csv attachment")
        .to_string();
    let csv = http
        .get(server.url(&csv_url))
        .bearer_auth(CHECKOUT_KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(csv.status().as_u16(), 200);
    assert!(csv.text().await.expect("text").lines().count() >= 2);

    // Feedback on the answer: only the owner's squad, a rating of 1 or -1, kept
    // with the investigation.
    let feedback_url = server.url(&format!("/api/v1/investigations/{id}/feedback"));
    let r = http
        .post(&feedback_url)
        .bearer_auth(IDENTITY_KEY)
        .json(&json!({"rating": -1, "comment": "wrong"}))
        .send()
        .await
        .expect("send");
    problem(r, 404).await;
    for bad in [
        json!({"rating": 0}),
        json!({"rating": 5}),
        json!({"rating": -1, "extra": true}),
        json!({"comment": "no rating"}),
        json!({"rating": 1, "comment": "x".repeat(2001)}),
    ] {
        let r = http
            .post(&feedback_url)
            .bearer_auth(CHECKOUT_KEY)
            .json(&bad)
            .send()
            .await
            .expect("send");
        problem(r, 400).await;
    }
    let r = http
        .post(&feedback_url)
        .bearer_auth(CHECKOUT_KEY)
        .json(&json!({"rating": -1, "comment": "  the pool size was not the cause  "}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 201);
    let got: Value = http
        .get(server.url(&format!("/api/v1/investigations/{id}")))
        .bearer_auth(CHECKOUT_KEY)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let feedback = got["feedback"].as_array().expect("feedback");
    assert_eq!(feedback.len(), 1, "{feedback:?}");
    assert_eq!(feedback[0]["rating"], json!(-1));
    assert_eq!(
        feedback[0]["comment"],
        json!("the pool size was not the cause")
    );
    assert!(feedback[0]["principal"]
        .as_str()
        .is_some_and(|p| p.starts_with("api:")));

    server.stop().await;

    // A new server process on the same store continues the investigation.
    let server = Server::start(&store, ApiSettings::default()).await;
    let response = http
        .post(server.url(&format!("/api/v1/investigations/{id}/messages")))
        .bearer_auth(CHECKOUT_KEY)
        .json(&json!({"message": "why is checkout erroring after the deploy?"}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["investigation_id"], json!(id));
    let new_ids: Vec<String> = body["evidence"]
        .as_object()
        .expect("evidence")
        .values()
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect();
    assert!(!new_ids.is_empty());
    assert!(
        new_ids
            .iter()
            .all(|e| e[1..].parse::<usize>().is_ok_and(|n| n > first_count)),
        "ids continue after {first_count}: {new_ids:?}"
    );
    let got: Value = http
        .get(server.url(&format!("/api/v1/investigations/{id}")))
        .bearer_auth(CHECKOUT_KEY)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(got["questions"].as_array().map(Vec::len), Some(2));
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_clear_problems_and_nothing_leaks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("store.db"), ApiSettings::default()).await;
    let http = client();
    let post = |body: String| {
        http.post(server.url("/api/v1/investigate"))
            .bearer_auth(CHECKOUT_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let r = http
        .post(server.url("/api/v1/investigate"))
        .json(&brief_body())
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    problem(r, 401).await;
    let r = http
        .post(server.url("/api/v1/investigate"))
        .bearer_auth("nope")
        .json(&brief_body())
        .send()
        .await
        .expect("send");
    problem(r, 401).await;

    let p = problem(post("{\"query\": ".into()).await.expect("send"), 400).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("malformed JSON"),
        "{p}"
    );
    let p = problem(
        post(json!({"query": "x", "bogus": 1}).to_string())
            .await
            .expect("send"),
        400,
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap_or_default().contains("bogus"),
        "{p}"
    );
    let p = problem(
        post(json!({"context": {}}).to_string())
            .await
            .expect("send"),
        400,
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap_or_default().contains("query"),
        "{p}"
    );
    let p = problem(post(json!({"query": "x", "context": {"time_range": {"start": "2026-01-15T11:00:00Z", "end": "2026-01-15T10:00:00Z"}}}).to_string()).await.expect("send"), 400).await;
    assert!(
        p["detail"].as_str().unwrap_or_default().contains("after"),
        "{p}"
    );
    let p = problem(post(json!({"query": "x", "context": {"time_range": {"start": "yesterday", "end": "2026-01-15T10:00:00Z"}}}).to_string()).await.expect("send"), 400).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("RFC 3339"),
        "{p}"
    );
    let p = problem(
        post(json!({"query": "x", "context": {"services": [1]}}).to_string())
            .await
            .expect("send"),
        400,
    )
    .await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("context.services"),
        "{p}"
    );
    let huge = json!({"query": "x".repeat(100_000)}).to_string();
    problem(post(huge).await.expect("send"), 413).await;
    problem(
        post(json!({"query": "   "}).to_string())
            .await
            .expect("send"),
        400,
    )
    .await;

    for path in [
        "/api/v1/investigations/does-not-exist",
        "/api/v1/evidence/does-not-exist",
        "/api/v1/nothing",
    ] {
        let r = http
            .get(server.url(path))
            .bearer_auth(CHECKOUT_KEY)
            .send()
            .await
            .expect("send");
        problem(r, 404).await;
    }
    let r = http
        .get(server.url("/api/v1/investigate"))
        .bearer_auth(CHECKOUT_KEY)
        .send()
        .await
        .expect("send");
    problem(r, 405).await;

    // Text-to-SQL without a model says so clearly.
    let r = http
        .post(server.url("/api/v1/query-agent"))
        .bearer_auth(CHECKOUT_KEY)
        .json(&json!({"prompt": "top 10 orders", "dataset_id": "checkout_db"}))
        .send()
        .await
        .expect("send");
    let p = problem(r, 501).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("ANTHROPIC_API_KEY"),
        "{p}"
    );
    // A dataset of another squad is not even named as existing.
    let r = http
        .post(server.url("/api/v1/query-agent"))
        .bearer_auth(IDENTITY_KEY)
        .json(&json!({"prompt": "top 10 orders", "dataset_id": "checkout_db"}))
        .send()
        .await
        .expect("send");
    problem(r, 404).await;
    server.stop().await;
}

#[tokio::test]
async fn stream_async_rate_limits_and_service_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = ApiSettings {
        per_key_per_minute: 1,
        burst: 4,
        ..ApiSettings::default()
    };
    let server = Server::start(&dir.path().join("store.db"), settings).await;
    let http = client();

    let mut body = brief_body();
    body["stream"] = json!(true);
    let r = http
        .post(server.url("/api/v1/investigate"))
        .bearer_auth(CHECKOUT_KEY)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .starts_with("text/event-stream"));
    let text = r.text().await.expect("stream");
    for event in [
        "event: investigation",
        "event: tool_started",
        "event: tool_finished",
        "event: report",
    ] {
        assert!(text.contains(event), "{event} missing in {text}");
    }
    let report_line = text
        .lines()
        .skip_while(|l| *l != "event: report")
        .find_map(|l| l.strip_prefix("data: "))
        .expect("report data");
    let report: Value = serde_json::from_str(report_line).expect("report json");
    assert!(report["synthesis"]["root_cause"].is_string());

    let mut body = brief_body();
    body["async"] = json!(true);
    let r = http
        .post(server.url("/api/v1/investigate"))
        .bearer_auth(CHECKOUT_KEY)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 202);
    let accepted: Value = r.json().await.expect("json");
    let url = accepted["url"].as_str().expect("url").to_string();
    // Polls go through the other key's budget? No: same key; one poll at a time.
    let mut status = String::new();
    for _ in 0..100 {
        let r = http
            .get(server.url(&url))
            .bearer_auth(CHECKOUT_KEY)
            .send()
            .await
            .expect("send");
        if r.status().as_u16() == 429 {
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            assert!(retry.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
            problem(r, 429).await;
            break;
        }
        let got: Value = r.json().await.expect("json");
        status = got["status"].as_str().unwrap_or_default().to_string();
        if status == "complete" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Burst 4 at 1/minute: stream, async and polls exhaust it soon; either the
    // poll saw the result or the limiter answered 429 with Retry-After.
    let r = http
        .get(server.url(&url))
        .bearer_auth(CHECKOUT_KEY)
        .send()
        .await
        .expect("send");
    if status != "complete" {
        problem(r, 429).await;
    }

    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"] {
        let r = http.get(server.url(path)).send().await.expect("send");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("investigator_investigations_total{outcome=\"complete\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("investigator_tool_calls_total{source=\"checkout_db\",outcome=\"ok\"}"),
        "{metrics}"
    );
    let ready: Value = http
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["store"], json!("ok"));
    let doc: Value = http
        .get(server.url("/openapi.json"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    for (method, path) in api::DOCUMENTED_ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
        // Every documented route exists (the fallback would say "no such route").
        let url = server.url(&path.replace("{id}", "x").replace("{item}", "E1"));
        let r = match *method {
            "post" => http.post(url).send().await,
            _ => http.get(url).send().await,
        }
        .expect("send");
        assert_ne!(r.status().as_u16(), 405, "{method} {path}");
        let text = r.text().await.unwrap_or_default();
        assert!(!text.contains("no such route"), "{method} {path}");
    }
    let page = http
        .get(server.url("/docs"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("/openapi.json") && !page.contains("https://"),
        "no CDN"
    );
    server.stop().await;
}

#[tokio::test]
async fn query_agent_runs_claude_sql_through_the_guard() {
    use super::fake_anthropic::{FakeAnthropic, Scripted};
    use investigator::config::Secret;
    use investigator::llm::anthropic::{AnthropicConfig, AnthropicModel};

    let fake = FakeAnthropic::start(vec![
        Scripted::tool_use(&[(
            "q1",
            "run_sql",
            json!({"sql": "SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY status",
                   "explanation": "Orders per status."}),
        )]),
        Scripted::tool_use(&[(
            "q2",
            "run_sql",
            json!({"sql": "DELETE FROM orders", "explanation": "Deletes everything."}),
        )]),
    ])
    .await;
    let mut settings = AnthropicConfig::new(Secret::new(FakeAnthropic::DEFAULT_KEY));
    settings.base_url = fake.base_url();
    let model = AnthropicModel::new(settings).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        &dir.path().join("s.db"),
        ApiSettings::default(),
        Arc::new(model),
    )
    .await;
    let http = client();
    let ask = |prompt: &str, dataset: &str, key: &str| {
        http.post(server.url("/api/v1/query-agent"))
            .bearer_auth(key)
            .json(&json!({"prompt": prompt, "dataset_id": dataset}))
            .send()
    };

    let answer = ask("How many orders per status?", "checkout_db", CHECKOUT_KEY)
        .await
        .expect("send");
    assert_eq!(answer.status().as_u16(), 200);
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["explanation"], json!("Orders per status."));
    assert!(body["sql"]
        .as_str()
        .unwrap_or_default()
        .starts_with("SELECT status"));
    let rows = body["rows"].as_array().cloned().unwrap_or_default();
    assert!(
        rows.iter().any(|r| r["status"] == json!("failed")),
        "{body}"
    );
    // The model was shown the dataset's schema, and only it.
    let requests = fake.requests();
    let system = requests[0]["system"].to_string();
    assert!(
        system.contains("orders") && system.contains("payments"),
        "{system}"
    );
    assert!(!system.contains("auth.log"), "{system}");

    // SQL that writes is refused by the guard; the answer says so and no row changes.
    let refused = ask("Delete all orders", "checkout_db", CHECKOUT_KEY)
        .await
        .expect("send");
    assert_eq!(refused.status().as_u16(), 200);
    let body: Value = refused.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("refused:"),
        "{body}"
    );
    assert_eq!(body["rows"], json!([]));

    // Another squad's key cannot name checkout's database; no model call is made.
    let foreign = ask("How many orders?", "checkout_db", IDENTITY_KEY)
        .await
        .expect("send");
    assert_eq!(foreign.status().as_u16(), 404);
    assert_eq!(fake.requests().len(), 2);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    server.stop().await;
    fake.shutdown().await;
}
