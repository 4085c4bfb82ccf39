//! The Datadog source against an in-process fake that speaks the real response
//! shapes: logs search v2 (`data[].attributes`, `meta.page.after` cursors), the v1
//! metric query (`series[].pointlist` in milliseconds, nulls as gaps), monitors,
//! `/api/v1/validate`, `{"errors": [...]}` bodies and 429 with
//! `X-RateLimit-Reset`. It checks the key headers on every request and records the
//! queries, so the service scoping is checked on the wire.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use investigator::engine::CallError;
use investigator::evidence::{compact_for_model, Content};
use investigator::sources::{CallContext, Error as SourceError, ToolOutput};
use serde_json::{json, Value};

use super::common::{evidence_of, parse_config, Harness};

pub(super) const API_KEY: &str = "dd-api-secret-123";
pub(super) const APP_KEY: &str = "dd-app-secret-456";

#[derive(Default)]
pub(super) struct Seen {
    /// (path, query text) of every request.
    pub(super) requests: Vec<(String, String)>,
    pub(super) violations: Vec<String>,
    throttle: u32,
    throttled: u32,
}

pub(super) type Shared = Arc<Mutex<Seen>>;

pub(super) fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn errors(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"errors": [message]}))).into_response()
}

/// Header check and throttling shared by every route.
fn check(seen: &Shared, headers: &HeaderMap, path: &str, query: &str) -> Option<Response> {
    let mut s = lock(seen);
    s.requests.push((path.to_string(), query.to_string()));
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
    if header("dd-api-key") != API_KEY {
        return Some(errors(StatusCode::FORBIDDEN, "Forbidden"));
    }
    if path != "/api/v1/validate" && header("dd-application-key") != APP_KEY {
        s.violations
            .push(format!("{path} without the application key"));
        return Some(errors(StatusCode::FORBIDDEN, "Forbidden"));
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        s.throttled += 1;
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("x-ratelimit-limit", "300"),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "0"),
                ],
                Json(json!({"errors": ["Too many requests"]})),
            )
                .into_response(),
        );
    }
    None
}

async fn validate(State(seen): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = check(&seen, &headers, "/api/v1/validate", "") {
        return r;
    }
    Json(json!({"valid": true})).into_response()
}

/// 1500 events per service, newest first: `checkout` and `billing`, one rare error
/// template in checkout.
fn event(service: &str, i: usize) -> Value {
    let (status, message) = if service == "checkout" && i % 300 == 7 {
        ("error", format!("payment gateway timeout after {i} ms"))
    } else {
        ("info", format!("request {i} served in {} ms", i % 90))
    };
    json!({
        "id": format!("AQAAAY{service}{i}"),
        "type": "log",
        "attributes": {
            "timestamp": format!("2024-05-01T10:{:02}:{:02}.000Z", 19 - (i / 100) % 20, 59 - i % 60),
            "status": status,
            "service": service,
            "host": format!("{service}-7d9f"),
            "message": message,
            "tags": [format!("service:{service}"), "env:prod"],
            "attributes": {"http": {"status_code": 200}}
        }
    })
}

async fn logs(State(seen): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let query = body
        .pointer("/filter/query")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(r) = check(&seen, &headers, "/api/v2/logs/events/search", &query) {
        return r;
    }
    if body.pointer("/filter/from").is_none() || body.pointer("/filter/to").is_none() {
        lock(&seen)
            .violations
            .push(format!("no time range: {body}"));
    }
    let limit = body
        .pointer("/page/limit")
        .and_then(Value::as_u64)
        .unwrap_or(10) as usize;
    if limit > 1000 {
        lock(&seen).violations.push(format!("page limit {limit}"));
        return errors(StatusCode::BAD_REQUEST, "page[limit] must be <= 1000");
    }
    let offset: usize = body
        .pointer("/page/cursor")
        .and_then(Value::as_str)
        .and_then(|c| c.strip_prefix("cur-"))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let services: Vec<&str> = ["checkout", "billing"]
        .into_iter()
        .filter(|s| !query.contains("service:(") || query.contains(&format!("service:({s})")))
        .collect();
    let all: Vec<Value> = (0..1500)
        .flat_map(|i| services.iter().map(move |s| event(s, i)))
        .collect();
    let page: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
    let next = offset + page.len();
    let mut meta = json!({"elapsed": 12, "request_id": "pddv1", "status": "done"});
    if next < all.len() {
        meta["page"] = json!({"after": format!("cur-{next}")});
    }
    Json(json!({"data": page, "meta": meta, "links": {}})).into_response()
}

#[derive(serde::Deserialize)]
struct MetricParams {
    from: i64,
    to: i64,
    query: String,
}

async fn metric_query(
    State(seen): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<MetricParams>,
) -> Response {
    if let Some(r) = check(&seen, &headers, "/api/v1/query", &p.query) {
        return r;
    }
    if p.query.contains("nosuch") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "error", "res_type": "time_series", "series": [], "error": "Error parsing query: unknown metric nosuch", "query": p.query})),
        )
            .into_response();
    }
    // Expressions are separated by commas outside `{…}`.
    let mut exprs = vec![String::new()];
    let mut depth = 0;
    for c in p.query.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                exprs.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = exprs.last_mut() {
            last.push(c);
        }
    }
    let series: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(n, expr)| {
            let points: Vec<Value> = (0..60)
                .map(|i| {
                    let t = (p.from + i * 60) * 1000;
                    // A step at minute 40 and a gap at minute 3.
                    if i == 3 {
                        json!([t, null])
                    } else if i >= 40 {
                        json!([t, 50.0 + n as f64])
                    } else {
                        json!([t, 5.0 + n as f64])
                    }
                })
                .collect();
            json!({
                "metric": expr.split(['{', ':']).nth(1).unwrap_or(""),
                "expression": expr,
                "scope": expr.split('{').nth(1).and_then(|s| s.split('}').next()).unwrap_or(""),
                "display_name": expr,
                "interval": 60,
                "length": 60,
                "pointlist": points,
                "start": p.from * 1000,
                "end": p.to * 1000,
                "aggr": "avg",
                "tag_set": [],
                "unit": null
            })
        })
        .collect();
    Json(json!({
        "status": "ok", "res_type": "time_series", "resp_version": 1,
        "query": p.query, "from_date": p.from * 1000, "to_date": p.to * 1000,
        "series": series, "values": [], "times": [], "message": "", "group_by": []
    }))
    .into_response()
}

async fn monitors(State(seen): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = check(&seen, &headers, "/api/v1/monitor", "") {
        return r;
    }
    let monitor = |id: i64, name: &str, state: &str, query: &str, tags: &[&str]| {
        json!({
            "id": id, "name": name, "type": "query alert", "query": query,
            "message": "@slack-oncall", "tags": tags, "overall_state": state,
            "overall_state_modified": "2024-05-01T10:12:00+00:00",
            "options": {"thresholds": {"critical": 5}}, "priority": null,
            "state": {"groups": {}}
        })
    };
    Json(json!([
        monitor(
            101,
            "Checkout 5xx",
            "Alert",
            "sum(last_5m):sum:trace.http.request.errors{service:checkout}.as_count() > 5",
            &["team:payment"]
        ),
        monitor(
            102,
            "Billing latency",
            "Alert",
            "avg(last_5m):p95:trace.http.request{env:prod} > 1",
            &["service:billing"]
        ),
        monitor(
            103,
            "Checkout CPU",
            "OK",
            "avg(last_5m):avg:system.cpu.user{service:checkout} > 90",
            &["service:checkout"]
        ),
        monitor(
            104,
            "Checkout queue",
            "Warn",
            "avg(last_5m):avg:queue.depth{service:checkout} > 90",
            &[]
        ),
        monitor(
            105,
            "Checkoutv2 errors",
            "Alert",
            "sum(last_5m):sum:errors{service:checkoutv2} > 1",
            &[]
        ),
    ]))
    .into_response()
}

pub(super) async fn start() -> (Shared, String) {
    let seen: Shared = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route("/api/v1/validate", get(validate))
        .route("/api/v2/logs/events/search", post(logs))
        .route("/api/v1/query", get(metric_query))
        .route("/api/v1/monitor", get(monitors))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (seen, format!("http://{addr}"))
}

const SQUADS: &str = r#"
squads:
  payment:
    members:
      slack: [U_PAY]
    grants:
      - source: datadog
        services: [checkout]
  ops:
    members:
      slack: [U_OPS]
    grants:
      - source: datadog
"#;

fn sources(url: &str, api_key: &str) -> String {
    sources_with(url, api_key, APP_KEY)
}

fn sources_with(url: &str, api_key: &str, app_key: &str) -> String {
    format!(
        "data_sources:\n  apm:\n    datadog:\n      api_key: {api_key}\n      app_key: {app_key}\n      app_id: checkout,billing\n      site: datadoghq.eu\n      base_url: \"{url}\"\n"
    )
}

async fn call(h: &Harness, user: &str, tool: &str, args: Value) -> Result<ToolOutput, CallError> {
    h.gate
        .call(
            &h.access(user),
            "datadog",
            tool,
            &args,
            &CallContext::default(),
        )
        .await
        .result
}

fn window() -> Value {
    json!({"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T10:20:00Z"})
}

#[tokio::test]
async fn datadog_logs_metrics_monitors_scoped_by_service() {
    let (seen, url) = start().await;
    let h = Harness::new(parse_config(&sources(&url, API_KEY), SQUADS)).await;
    let health = h.source("datadog").health().await;
    assert!(health.ok, "{health:?}");
    assert_eq!(health.detail, "Datadog API and application keys valid");

    // Logs: 1200 of checkout's events in two pages (1000 + 200), wrapped in the
    // service filter, after one 429 waited out.
    lock(&seen).throttle = 1;
    let mut args = window();
    args["query"] = json!("env:prod");
    args["limit"] = json!(1200);
    let output = call(&h, "U_PAY", "search_logs", args)
        .await
        .expect("search");
    let Content::Json(value) = &output.content else {
        panic!("json")
    };
    assert_eq!(value["kind"], "log_hits");
    let hits = value["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 1200);
    assert!(hits.iter().all(|h| h["service"] == "checkout"));
    let note = output.note.clone().unwrap_or_default();
    assert!(
        note.contains(
            "https://app.datadoghq.eu/logs?query=%28env%3Aprod%29+service%3A%28checkout%29"
        ),
        "{note}"
    );
    assert!(note.contains("more events match"), "{note}");
    {
        let s = lock(&seen);
        assert_eq!(s.throttled, 1);
        let searches: Vec<&String> = s
            .requests
            .iter()
            .filter(|(p, _)| p == "/api/v2/logs/events/search")
            .map(|(_, q)| q)
            .collect();
        // One throttled, then two pages.
        assert_eq!(searches.len(), 3, "{searches:?}");
        assert!(searches
            .iter()
            .all(|q| q.as_str() == "(env:prod) service:(checkout)"));
    }
    // The shared pattern grouping: the rare error template is in the compact view.
    let item = evidence_of("datadog", "datadog", "search_logs", json!({}), &output);
    let compact = compact_for_model(&item, 4_000);
    assert!(compact.contains("payment gateway timeout"), "{compact}");

    // The ops squad is bounded by the instance's app_id list.
    let output = call(&h, "U_OPS", "search_logs", window())
        .await
        .expect("search");
    assert!(output
        .statement
        .contains("(*) service:(checkout OR billing)"));

    // A query that tries to close our parenthesis is refused before the wire.
    let mut args = window();
    args["query"] = json!("x) OR (service:billing");
    let err = call(&h, "U_PAY", "search_logs", args)
        .await
        .expect_err("unbalanced");
    assert!(matches!(
        err,
        CallError::Source(SourceError::BadArguments { .. })
    ));

    // Metrics: the service is added to every scope; another service is refused.
    let mut args = window();
    args["query"] = json!("avg:system.cpu.user{env:prod} by {host}");
    let output = call(&h, "U_PAY", "query_metrics", args.clone())
        .await
        .expect("metrics");
    assert!(output
        .statement
        .contains("avg:system.cpu.user{env:prod,service:checkout} by {host}"));
    let Content::Json(value) = &output.content else {
        panic!("json")
    };
    assert_eq!(value["kind"], "metric_series");
    // 60 points less the null gap, in seconds.
    let values = value["series"][0]["values"].as_array().expect("values");
    assert_eq!(values.len(), 59);
    assert!(values[0][0].as_i64().is_some_and(|t| t < 10_000_000_000));
    assert!(output
        .note
        .unwrap_or_default()
        .contains("https://app.datadoghq.eu/metric/explorer?exp_query="));
    assert!(!output.attachments.is_empty(), "a chart is attached");

    args["service"] = json!("billing");
    let err = call(&h, "U_PAY", "query_metrics", args)
        .await
        .expect_err("outside the grant");
    assert!(
        matches!(err, CallError::Source(SourceError::Refused(_))),
        "{err}"
    );
    let mut args = window();
    args["query"] = json!("avg:nosuch{*}");
    let err = call(&h, "U_PAY", "query_metrics", args)
        .await
        .expect_err("query error");
    assert!(err.to_string().contains("unknown metric nosuch"), "{err}");

    // APM: hits, errors, p95, p99 of the one visible service.
    let output = call(&h, "U_PAY", "apm_service_health", window())
        .await
        .expect("apm");
    assert!(output
        .statement
        .contains("sum:trace.http.request.errors{service:checkout}.as_count()"));
    assert!(output
        .statement
        .contains("p95:trace.http.request{service:checkout}"));
    let Content::Json(value) = &output.content else {
        panic!("json")
    };
    assert_eq!(value["series"].as_array().map(Vec::len), Some(4));
    assert!(output
        .note
        .unwrap_or_default()
        .contains("https://app.datadoghq.eu/apm/services/checkout?"));
    // The ops squad sees two services, so it must name one.
    let err = call(&h, "U_OPS", "apm_service_health", window())
        .await
        .expect_err("which service");
    assert!(err.to_string().contains("checkout, billing"), "{err}");

    // Monitors: payment sees the alerting checkout monitor only (by query), not
    // billing's, not the OK or Warn ones, nor checkoutv2's.
    let output = call(&h, "U_PAY", "monitors_in_alert", json!({}))
        .await
        .expect("monitors");
    let Content::Table(table) = &output.content else {
        panic!("table")
    };
    let ids: Vec<i64> = table.rows.iter().filter_map(|r| r[0].as_i64()).collect();
    assert_eq!(ids, vec![101]);
    assert!(output
        .note
        .unwrap_or_default()
        .contains("2 alerting monitors"));
    let output = call(
        &h,
        "U_OPS",
        "monitors_in_alert",
        json!({"include_warn": true}),
    )
    .await
    .expect("monitors");
    let Content::Table(table) = &output.content else {
        panic!("table")
    };
    let ids: Vec<i64> = table.rows.iter().filter_map(|r| r[0].as_i64()).collect();
    assert_eq!(ids, vec![101, 102, 104]);

    assert!(
        lock(&seen).violations.is_empty(),
        "{:?}",
        lock(&seen).violations
    );
}

#[tokio::test]
async fn datadog_bad_key_is_unhealthy_and_never_shown() {
    let (_seen, url) = start().await;
    let h = Harness::new(parse_config(&sources(&url, "wrong-key-789"), SQUADS)).await;
    let health = h.source("datadog").health().await;
    assert!(!health.ok);
    assert!(health.detail.contains("403"), "{health:?}");
    assert!(!health.detail.contains("wrong-key-789"));
    let err = call(&h, "U_PAY", "search_logs", window())
        .await
        .expect_err("refused");
    assert!(!err.to_string().contains("wrong-key-789"));
    assert!(!err.to_string().contains(APP_KEY));
}

/// `/api/v1/validate` accepts any valid API key; the health check also makes one
/// request that needs the application key, so a wrong one shows before a question.
#[tokio::test]
async fn datadog_wrong_application_key_is_unhealthy_and_never_shown() {
    let (_seen, url) = start().await;
    let h = Harness::new(parse_config(
        &sources_with(&url, API_KEY, "wrong-app-key-000"),
        SQUADS,
    ))
    .await;
    let health = h.source("datadog").health().await;
    assert!(!health.ok, "{health:?}");
    assert!(
        health.detail.contains("application key") && health.detail.contains("403"),
        "{health:?}"
    );
    assert!(!health.detail.contains("wrong-app-key-000"));
    assert!(!health.detail.contains(API_KEY));
}
