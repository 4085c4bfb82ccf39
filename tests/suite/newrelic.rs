//! The New Relic source against an in-process NerdGraph fake: one POST endpoint,
//! the `API-Key` header, the NRQL document with its variables, results in
//! `data.actor.account.nrql.results` (facets, TIMESERIES buckets, nested
//! percentile objects), GraphQL `errors` with HTTP 200, and 429 with
//! `Retry-After`. The fake records every NRQL text so the bounding and the
//! `appName` scoping are checked on the wire.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use investigator::engine::CallError;
use investigator::evidence::Content;
use investigator::sources::{CallContext, Error as SourceError, ToolOutput};
use serde_json::{json, Value};

use super::common::{parse_config, Harness};

const KEY: &str = "NRAK-secret-0001";

#[derive(Default)]
struct Seen {
    nrql: Vec<String>,
    violations: Vec<String>,
    throttle: u32,
    throttled: u32,
}

type Shared = Arc<Mutex<Seen>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn results(rows: Value) -> Response {
    Json(json!({"data": {"actor": {"account": {"nrql": {"results": rows}}}}})).into_response()
}

async fn graphql(
    State(seen): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let key = headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if key != KEY {
        return Json(json!({
            "data": {"actor": {"account": null}},
            "errors": [{"message": "Invalid API key", "extensions": {"errorClass": "UNAUTHORIZED"}}]
        }))
        .into_response();
    }
    let document = body.get("query").and_then(Value::as_str).unwrap_or("");
    let mut s = lock(&seen);
    if body.pointer("/variables/id") != Some(&json!(4242)) {
        s.violations.push(format!("account id: {body}"));
    }
    if !document.contains("nrql(query: $nrql") {
        // The health query.
        return Json(
            json!({"data": {"actor": {"account": {"id": 4242, "name": "Payments prod"}}}}),
        )
        .into_response();
    }
    let nrql = body
        .pointer("/variables/nrql")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    s.nrql.push(nrql.clone());
    if s.throttle > 0 {
        s.throttle -= 1;
        s.throttled += 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "0")],
            Json(json!({"errors": [{"message": "Too many requests"}]})),
        )
            .into_response();
    }
    drop(s);
    if nrql.contains("NoSuchEvent") {
        return Json(json!({
            "data": {"actor": {"account": {"nrql": null}}},
            "errors": [{"message": "NRQL Syntax Error: Error at line 1 position 22, unexpected 'NoSuchEvent'", "path": ["actor", "account", "nrql"], "extensions": {"errorClass": "INVALID_INPUT"}}]
        }))
        .into_response();
    }
    if nrql.contains("TIMESERIES") {
        let rows: Vec<Value> = (0..30)
            .flat_map(|i| {
                let t = 1_714_557_600 + i * 60;
                ["checkout", "billing"].into_iter().map(move |app| {
                    json!({
                        "beginTimeSeconds": t, "endTimeSeconds": t + 60, "facet": app, "appName": app,
                        "percentile.duration": {"95": if i >= 20 && app == "checkout" { 2.5 } else { 0.2 }}
                    })
                })
            })
            .collect();
        return results(json!(rows));
    }
    if nrql.contains("FROM TransactionError") {
        return results(json!([
            {"facet": ["checkout", "java.net.SocketTimeoutException", "Read timed out"], "appName": "checkout", "error.class": "java.net.SocketTimeoutException", "error.message": "Read timed out", "count": 412, "earliest.timestamp": 1714557720000i64, "latest.timestamp": 1714558790000i64}
        ]));
    }
    if nrql.contains("FROM Transaction") {
        return results(json!([
            {"facet": ["checkout", "WebTransaction/Spring/cart (POST)"], "appName": "checkout", "name": "WebTransaction/Spring/cart (POST)", "count": 9000, "error %": 4.6, "percentile.duration": {"50": 0.12, "95": 2.4, "99": 4.1}}
        ]));
    }
    results(json!([{"count": 17}]))
}

async fn start() -> (Shared, String) {
    let seen: Shared = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route("/graphql", post(graphql))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (seen, format!("http://{addr}/graphql"))
}

const SQUADS: &str = r#"
squads:
  payment:
    members:
      slack: [U_PAY]
    grants:
      - source: newrelic
        services: [checkout]
  ops:
    members:
      slack: [U_OPS]
    grants:
      - source: newrelic
"#;

fn sources(url: &str, key: &str) -> String {
    format!(
        "data_sources:\n  apm:\n    newrelic:\n      api_key: {key}\n      account_id: 4242\n      region: eu\n      base_url: \"{url}\"\n"
    )
}

async fn call(h: &Harness, user: &str, tool: &str, args: Value) -> Result<ToolOutput, CallError> {
    h.gate
        .call(
            &h.access(user),
            "newrelic",
            tool,
            &args,
            &CallContext::default(),
        )
        .await
        .result
}

#[tokio::test]
async fn newrelic_nrql_bounded_scoped_and_summarised() {
    let (seen, url) = start().await;
    let h = Harness::new(parse_config(&sources(&url, KEY), SQUADS)).await;
    let health = h.source("newrelic").health().await;
    assert!(health.ok, "{health:?}");
    assert!(health.detail.contains("Payments prod"));

    // Bounded and scoped; a 429 is waited out.
    lock(&seen).throttle = 1;
    let output = call(
        &h,
        "U_PAY",
        "nrql",
        json!({"query": "SELECT count(*) FROM Log WHERE httpResponseCode = '500' OR error IS true LIMIT MAX"}),
    )
    .await
    .expect("nrql");
    assert_eq!(lock(&seen).throttled, 1);
    assert_eq!(
        lock(&seen).nrql.last().map(String::as_str),
        Some("SELECT count(*) FROM Log WHERE appName IN ('checkout') AND (httpResponseCode = '500' OR error IS true) LIMIT 2000 SINCE 1 hour ago")
    );
    let note = output.note.unwrap_or_default();
    assert!(note.contains("LIMIT lowered to 2000"), "{note}");
    assert!(
        note.contains("https://one.eu.newrelic.com/data-exploration/query-builder?accountId=4242&query=SELECT"),
        "{note}"
    );
    let Content::Table(table) = &output.content else {
        panic!("table")
    };
    assert_eq!(table.rows, vec![vec![json!(17)]]);

    // TIMESERIES → metric series, one per facet, with a chart.
    let output = call(
        &h,
        "U_OPS",
        "nrql",
        json!({"query": "SELECT percentile(duration, 95) FROM Transaction FACET appName TIMESERIES 1 minute SINCE 30 minutes ago"}),
    )
    .await
    .expect("timeseries");
    let Content::Json(value) = &output.content else {
        panic!("json")
    };
    assert_eq!(value["kind"], "metric_series");
    assert_eq!(value["step_seconds"], 60);
    assert_eq!(value["series"].as_array().map(Vec::len), Some(2));
    assert!(!output.attachments.is_empty());
    // Without an instance app_id list or a grant list, ops is unscoped.
    assert!(!lock(&seen)
        .nrql
        .last()
        .is_some_and(|q| q.contains("appName IN")));

    // Refusals before the wire.
    for (query, why) in [
        ("SHOW EVENT TYPES", "SELECT"),
        (
            "SELECT count(*) FROM A WHERE x IN (SELECT y FROM B)",
            "subqueries",
        ),
        ("SELECT * FROM A; SELECT * FROM B", "one statement"),
    ] {
        let before = lock(&seen).nrql.len();
        let err = call(&h, "U_PAY", "nrql", json!({"query": query}))
            .await
            .expect_err(query);
        assert!(err.to_string().contains(why), "{query}: {err}");
        assert_eq!(lock(&seen).nrql.len(), before);
    }

    // A GraphQL error in a 200 answer is a query error the model can fix.
    let err = call(
        &h,
        "U_PAY",
        "nrql",
        json!({"query": "SELECT count(*) FROM NoSuchEvent"}),
    )
    .await
    .expect_err("syntax");
    assert!(
        matches!(err, CallError::Source(SourceError::Query(_))),
        "{err}"
    );
    assert!(err.to_string().contains("NRQL Syntax Error"));

    // errors / transactions: canned NRQL, scoped; a foreign service is refused.
    let output = call(
        &h,
        "U_PAY",
        "errors",
        json!({"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T10:20:00Z"}),
    )
    .await
    .expect("errors");
    let q = lock(&seen).nrql.last().cloned().unwrap_or_default();
    assert!(q.contains("FROM TransactionError WHERE appName IN ('checkout') FACET appName, error.class, error.message SINCE 1714557600000 UNTIL 1714558800000"), "{q}");
    let Content::Table(table) = &output.content else {
        panic!("table")
    };
    assert_eq!(table.rows.len(), 1);
    let output = call(&h, "U_PAY", "transactions", json!({"service": "checkout"}))
        .await
        .expect("transactions");
    let q = lock(&seen).nrql.last().cloned().unwrap_or_default();
    assert!(
        q.contains("WHERE appName IN ('checkout') AND (appName = 'checkout')"),
        "{q}"
    );
    let Content::Table(table) = &output.content else {
        panic!("table")
    };
    let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"percentile.duration.95"), "{names:?}");
    let err = call(&h, "U_PAY", "transactions", json!({"service": "billing"}))
        .await
        .expect_err("foreign");
    assert!(
        matches!(err, CallError::Source(SourceError::Refused(_))),
        "{err}"
    );

    assert!(
        lock(&seen).violations.is_empty(),
        "{:?}",
        lock(&seen).violations
    );
}

#[tokio::test]
async fn newrelic_bad_key_is_unavailable_and_not_shown() {
    let (_seen, url) = start().await;
    let h = Harness::new(parse_config(&sources(&url, "NRAK-wrong-9"), SQUADS)).await;
    let health = h.source("newrelic").health().await;
    assert!(!health.ok);
    assert!(health.detail.contains("refused our key"), "{health:?}");
    let err = call(
        &h,
        "U_OPS",
        "nrql",
        json!({"query": "SELECT count(*) FROM Transaction"}),
    )
    .await
    .expect_err("refused");
    assert!(matches!(
        err,
        CallError::Source(SourceError::Unavailable(_))
    ));
    assert!(!err.to_string().contains("NRAK-wrong-9"));
}
