//! The BigQuery source against an in-process fake of the REST API v2 and the
//! OAuth2 token endpoint: a service-account key file signs an RS256 JWT that the
//! fake checks (grant type, claims, freshness, the RS256 signature against the key) before it issues a token;
//! every API call must carry that bearer token. The dry run (`jobs.insert` with
//! `dryRun`) reports the statement type, referenced tables and bytes, the query
//! (`jobs.query`) answers a first page and `getQueryResults` the rest, and errors
//! come in BigQuery's `{"error": {"code", "message", "errors": [{"reason"}]}}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use investigator::engine::CallError;
use investigator::evidence::Content;
use investigator::sources::{CallContext, Error as SourceError, ToolOutput};
use serde_json::{json, Value};

use super::common::{parse_config, Harness};

/// A throwaway 2048-bit key generated for this test only; it signs nothing real.
const TEST_ONLY_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC+aQfY5RrpDtAx\nu00Ew/9gtXqP/xbqo4UZpI/vo3bCdDfE7UZHtFVeAm7Eh90OmStspTcyce5xTW9R\nK8XrHCmMgYiwx1AyS6JJVsf2lsFlMX/4wCfmPRgJMmzNnv8d/sp6XWoQDAp+Rmzf\niuey9cNZpwEWV2jVoKLGZC67u0lQbTHjDaD5gzcnJCS3MdcfVr3gorbxx8Rky11+\nyUCx+q2DQwpItWzU2IWAsDuY4Himbmd1exZyq/8F/FtdfQrLMIxXLIGx5n5E7B0H\nMJ9K0MFDivBBospyMteG0h0dtvDj0MldfEWRM8FFXCVYmgDKx168z7Xt/fvGl8hE\n3kBAmysnAgMBAAECggEAHjpGSKR2VTFI09xMKcmDrTKiNmHknXNAGgYJ450rqUsR\n321bjt6N/tKcCw8WhM7EGgdQb+2uUMZeOaCdVumtnuShco7xqEphhQsFy5u7L/lf\nu3ml2+MvAabDpxDqpzRfqHVT9SA0Oj+r4QEIL1zcmkrs3UMbHW7W6G/XC258AQxN\n29hIluuXAI+Hq9+i7RnMXa3gTr+vHK0cDLxj8q1SD5LEZrh1zDe7M0muv8Ka5BO0\nkTobRNOtsBYsxo72xatYyiE0+AhPclS/5w3+Myk1tmIX9nN185bjtqibPtBRagxe\nDUUZJ/XxYCq9rRYJwLbSVfZV6WgiKMaCGeJFRrYUIQKBgQD/T+xKNZ3fKTiC6epT\nFe19FAdX4cKw3vLOnMeAhrD3QkzRazs+9L89oNanoIwh00m4C7cAuaPWVydKvxVB\nP8KitqSveoSHz8wUkUOXC/nnEy0ya94zyRASyNJoRfS20jm9sVy5N9O79qsjo30k\neRELT0pXuJHEaGCP630Zvn13SwKBgQC+7FkJOhkqawKPHbVi2Y81ZRvD7nUikqKz\n2ECHNGj+FL/LYaOaUlS+NC1ihp3lFFWV/zSrWl/K5BU3R/7u7hieAFiZl5wLpuw1\nDSgOOI3/Tf8ZQdnvwer6vRrsRQUNB+aRyJat++UOgd5u3RRsvMh1j8GCCo7fQagK\nko30MInmFQKBgQDG4g+DT3kHmii3clhjGLXDtZJy1x6+gS5L3L1cVZANTMxiZlHk\nnOtMqroMIniG8PyALkAEhJgoJAQrqeZ4yZ5o+jYXrC0JTsn/S5mHVID7jGis2nJh\njMLEn0OojrYupFzuc/dzIRYDWge+32BgxR6N3Npgsxp6EYUHF76AC2/ZOQKBgQCB\naSZ4sJ66N8qGQ3bdR+ZgJOaLCijvhEEwchZbDtVT07ClJMuGIOQ8AJX6wJBp5DyW\n7WM/+oQPvEX9MJnGTjD1d/qWMUOeSki1NPO/n+nv8WhGMHKOpvyldGS5XZcs2/wX\nOMWZrLH4AWNJ9iSQB+5AcW6SvKFXBuPmNqxtpjDyeQKBgG4mW5z4ZRZGKQZM6wOW\nPsxOPu3dPjvY6OBCRoXUMBhrvO4xrzu+RlurUEo3biEnk3zOnVTLzYwqdf9RFlHT\ngI4vuPp5/B33PexfULq0eDu0oXnLTBvLra5cwHFU3HARAAlzue/lbUkMjJapq0fe\nPG17uZOtMf48Y0hP5iRQE3YF\n-----END PRIVATE KEY-----";
const TOKEN: &str = "ya29.fake-token";

#[derive(Default)]
struct Seen {
    tokens_issued: u32,
    dry_runs: Vec<Value>,
    queries: Vec<Value>,
    pages: Vec<HashMap<String, String>>,
    violations: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn bq_error(status: StatusCode, reason: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": status.as_u16(), "message": message, "errors": [{"reason": reason, "message": message, "domain": "global"}], "status": "INVALID_ARGUMENT"}})),
    )
        .into_response()
}

fn authorised(seen: &Shared, headers: &HeaderMap) -> Option<Response> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {TOKEN}") {
        lock(seen)
            .violations
            .push(format!("authorization `{auth}`"));
        return Some(bq_error(
            StatusCode::UNAUTHORIZED,
            "authError",
            "Request had invalid authentication credentials.",
        ));
    }
    None
}

/// The public half of TEST_ONLY_KEY (RSAPublicKey DER, as ring verifies it).
fn test_public_key() -> Vec<u8> {
    let body: String = TEST_ONLY_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("test key base64");
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("test key");
    use ring::signature::KeyPair;
    pair.public_key().as_ref().to_vec()
}

async fn token(State(seen): State<Shared>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    let form: HashMap<String, String> = reqwest::Url::parse(&format!("http://form/?{text}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let mut s = lock(&seen);
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        s.violations
            .push(format!("grant_type {:?}", form.get("grant_type")));
    }
    let assertion = form.get("assertion").cloned().unwrap_or_default();
    let parts: Vec<&str> = assertion.split('.').collect();
    let claims: Value = parts
        .get(1)
        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        .and_then(|b: Vec<u8>| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null);
    let header: Value = parts
        .first()
        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        .and_then(|b: Vec<u8>| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null);
    let signature = parts
        .get(2)
        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        .unwrap_or_default();
    // Google checks the RS256 signature with the service account's public key.
    let signed = format!(
        "{}.{}",
        parts.first().copied().unwrap_or(""),
        parts.get(1).copied().unwrap_or("")
    );
    let verified = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        test_public_key(),
    )
    .verify(signed.as_bytes(), &signature)
    .is_ok();
    let now = chrono::Utc::now().timestamp();
    let fresh = claims["iat"]
        .as_i64()
        .is_some_and(|iat| (iat - now).abs() < 120)
        && claims["exp"]
            .as_i64()
            .zip(claims["iat"].as_i64())
            .is_some_and(|(exp, iat)| exp > iat && exp - iat <= 3600);
    if parts.len() != 3
        || header["alg"] != "RS256"
        || claims["iss"] != "reader@proj.iam.gserviceaccount.com"
        || claims["scope"] != "https://www.googleapis.com/auth/bigquery.readonly"
        || !claims["aud"]
            .as_str()
            .is_some_and(|a| a.ends_with("/token"))
        || !fresh
        || !verified
    {
        s.violations.push(format!("assertion claims {claims}"));
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})),
        )
            .into_response();
    }
    s.tokens_issued += 1;
    Json(json!({"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"})).into_response()
}

async fn datasets(State(seen): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = authorised(&seen, &headers) {
        return r;
    }
    let ds = |id: &str| json!({"kind": "bigquery#dataset", "id": format!("proj:{id}"), "datasetReference": {"datasetId": id, "projectId": "proj"}, "location": "EU"});
    Json(json!({"kind": "bigquery#datasetList", "datasets": [ds("payments"), ds("marketing"), ds("audit")]})).into_response()
}

async fn tables(
    State(seen): State<Shared>,
    headers: HeaderMap,
    Path((_p, dataset)): Path<(String, String)>,
) -> Response {
    if let Some(r) = authorised(&seen, &headers) {
        return r;
    }
    let t = |id: &str, kind: &str| json!({"tableReference": {"projectId": "proj", "datasetId": dataset, "tableId": id}, "type": kind});
    Json(json!({"kind": "bigquery#tableList", "tables": [t("orders", "TABLE"), t("orders_daily", "VIEW")], "totalItems": 2})).into_response()
}

async fn table(
    State(seen): State<Shared>,
    headers: HeaderMap,
    Path((_p, _d, _t)): Path<(String, String, String)>,
) -> Response {
    if let Some(r) = authorised(&seen, &headers) {
        return r;
    }
    Json(json!({
        "kind": "bigquery#table", "type": "TABLE", "numRows": "2500", "numBytes": "81920",
        "timePartitioning": {"type": "DAY", "field": "created_at"},
        "schema": {"fields": [
            {"name": "id", "type": "STRING", "mode": "REQUIRED"},
            {"name": "created_at", "type": "TIMESTAMP", "mode": "NULLABLE"},
            {"name": "payment", "type": "RECORD", "mode": "NULLABLE", "fields": [
                {"name": "status", "type": "STRING", "mode": "NULLABLE", "description": "gateway status"}
            ]}
        ]}
    })).into_response()
}

/// `dataset.table` words in the SQL, as BigQuery would resolve them.
fn referenced(sql: &str) -> Vec<Value> {
    sql.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .map(|w| w.trim_matches('`'))
        .filter_map(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            match parts.as_slice() {
                [d, t]
                    if !d.is_empty() && d.chars().all(|c| c.is_ascii_lowercase() || c == '_') =>
                {
                    Some(json!({"projectId": "proj", "datasetId": d, "tableId": t}))
                }
                [p, d, t] => Some(json!({"projectId": p, "datasetId": d, "tableId": t})),
                _ => None,
            }
        })
        .collect()
}

async fn jobs(State(seen): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(r) = authorised(&seen, &headers) {
        return r;
    }
    lock(&seen).dry_runs.push(body.clone());
    if body.pointer("/configuration/dryRun") != Some(&json!(true)) {
        lock(&seen)
            .violations
            .push(format!("jobs.insert without dryRun: {body}"));
        return bq_error(StatusCode::BAD_REQUEST, "invalid", "only dry runs expected");
    }
    let sql = body
        .pointer("/configuration/query/query")
        .and_then(Value::as_str)
        .unwrap_or("");
    if sql.contains("nosuchcolumn") {
        return bq_error(
            StatusCode::BAD_REQUEST,
            "invalidQuery",
            "Unrecognized name: nosuchcolumn at [1:8]",
        );
    }
    let bytes = if sql.contains("big_table") {
        "53687091200"
    } else {
        "81920"
    };
    Json(json!({
        "kind": "bigquery#job",
        "status": {"state": "DONE"},
        "configuration": body["configuration"],
        "jobReference": {"projectId": "proj", "location": "EU"},
        "statistics": {
            "creationTime": "1714557600000",
            "totalBytesProcessed": bytes,
            "query": {"totalBytesProcessed": bytes, "statementType": "SELECT", "referencedTables": referenced(sql), "totalBytesProcessedAccuracy": "PRECISE"}
        }
    })).into_response()
}

fn rows(from: usize, count: usize) -> Vec<Value> {
    (from..from + count)
        .map(|i| json!({"f": [{"v": format!("ord_{i}")}, {"v": if i % 10 == 0 { "declined" } else { "ok" }}]}))
        .collect()
}

const TOTAL: usize = 2500;

async fn query(
    State(seen): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = authorised(&seen, &headers) {
        return r;
    }
    lock(&seen).queries.push(body.clone());
    let max = body
        .get("maxResults")
        .and_then(Value::as_u64)
        .unwrap_or(1000) as usize;
    Json(json!({
        "kind": "bigquery#queryResponse",
        "schema": {"fields": [{"name": "id", "type": "STRING"}, {"name": "status", "type": "STRING"}]},
        "jobReference": {"projectId": "proj", "jobId": "job_abc", "location": "EU"},
        "totalRows": TOTAL.to_string(),
        "rows": rows(0, max.min(TOTAL)),
        "pageToken": format!("p{}", max.min(TOTAL)),
        "totalBytesProcessed": "81920",
        "jobComplete": true,
        "cacheHit": false
    })).into_response()
}

async fn results(
    State(seen): State<Shared>,
    headers: HeaderMap,
    Path((_p, job)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = authorised(&seen, &headers) {
        return r;
    }
    lock(&seen).pages.push(params.clone());
    if job != "job_abc" || params.get("location").map(String::as_str) != Some("EU") {
        return bq_error(StatusCode::NOT_FOUND, "notFound", "Not found: Job proj:job");
    }
    let from: usize = params
        .get("pageToken")
        .and_then(|t| t.strip_prefix('p'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let max: usize = params
        .get("maxResults")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let count = max.min(TOTAL - from.min(TOTAL));
    let mut out = json!({
        "kind": "bigquery#getQueryResultsResponse",
        "schema": {"fields": [{"name": "id", "type": "STRING"}, {"name": "status", "type": "STRING"}]},
        "jobReference": {"projectId": "proj", "jobId": job, "location": "EU"},
        "totalRows": TOTAL.to_string(),
        "rows": rows(from, count),
        "jobComplete": true
    });
    if from + count < TOTAL {
        out["pageToken"] = json!(format!("p{}", from + count));
    }
    Json(out).into_response()
}

async fn start() -> (Shared, String) {
    let seen: Shared = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route("/token", post(token))
        .route("/bigquery/v2/projects/{p}/datasets", get(datasets))
        .route("/bigquery/v2/projects/{p}/datasets/{d}/tables", get(tables))
        .route(
            "/bigquery/v2/projects/{p}/datasets/{d}/tables/{t}",
            get(table),
        )
        .route("/bigquery/v2/projects/{p}/jobs", post(jobs))
        .route("/bigquery/v2/projects/{p}/queries", post(query))
        .route("/bigquery/v2/projects/{p}/queries/{job}", get(results))
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
      - source: warehouse
        datasets: [payments]
  data:
    members:
      slack: [U_DATA]
    grants:
      - source: warehouse
"#;

/// sources.yaml with the `warehouse` BigQuery source on the fake, its service
/// account key written in `dir`.
fn warehouse(url: &str, dir: &std::path::Path) -> String {
    let key_path = dir.join("sa.json");
    let key = json!({
        "type": "service_account", "project_id": "proj", "private_key_id": "k1",
        "private_key": TEST_ONLY_KEY, "client_email": "reader@proj.iam.gserviceaccount.com",
        "token_uri": format!("{url}/token")
    });
    std::fs::write(&key_path, key.to_string()).expect("write key");
    format!(
        "data_sources:\n  bigquery:\n    name: warehouse\n    project_id: proj\n    credentials_path: \"{}\"\n    location: EU\n    datasets: [payments, marketing]\n    max_bytes_billed: 1000000000\n    base_url: \"{url}\"\n",
        key_path.display()
    )
}

async fn call(h: &Harness, user: &str, tool: &str, args: Value) -> Result<ToolOutput, CallError> {
    h.gate
        .call(
            &h.access(user),
            "warehouse",
            tool,
            &args,
            &CallContext::default(),
        )
        .await
        .result
}

fn table_of(output: &ToolOutput) -> &investigator::evidence::Table {
    match &output.content {
        Content::Table(t) => t,
        other => panic!("expected a table, got {other:?}"),
    }
}

#[tokio::test]
async fn bigquery_dry_run_caps_grants_and_pages() {
    let (seen, url) = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::new(parse_config(&warehouse(&url, dir.path()), SQUADS)).await;
    let health = h.source("warehouse").health().await;
    assert!(health.ok, "{health:?}");

    // Datasets: the instance list narrowed by the grant; audit is never listed.
    let out = call(&h, "U_PAY", "list_datasets", json!({}))
        .await
        .expect("datasets");
    assert_eq!(
        table_of(&out).rows,
        vec![vec![json!("payments"), json!("EU")]]
    );
    let out = call(&h, "U_DATA", "list_datasets", json!({}))
        .await
        .expect("datasets");
    assert_eq!(table_of(&out).rows.len(), 2);
    let err = call(&h, "U_PAY", "list_tables", json!({"dataset": "marketing"}))
        .await
        .expect_err("grant");
    assert!(
        matches!(err, CallError::Source(SourceError::Refused(_))),
        "{err}"
    );
    let out = call(
        &h,
        "U_PAY",
        "table_schema",
        json!({"dataset": "payments", "table": "orders"}),
    )
    .await
    .expect("schema");
    let columns: Vec<String> = table_of(&out)
        .rows
        .iter()
        .filter_map(|r| r[0].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        columns,
        vec!["id", "created_at", "payment", "payment.status"]
    );
    assert!(out
        .note
        .unwrap_or_default()
        .contains("partitioned by created_at"));

    // The description the planner and the query agent write SQL from.
    let grant = h.access("U_PAY").grants["warehouse"].clone();
    let text = h
        .source("warehouse")
        .describe(&grant, &CallContext::default())
        .await
        .expect("describe");
    assert!(
        text.contains("payments.orders (id STRING, created_at TIMESTAMP, payment RECORD, payment.status STRING)"),
        "{text}"
    );
    assert!(!text.contains("marketing"), "{text}");

    // A query: dry run, then jobs.query with the caps, then pages up to max_rows.
    let sql = "SELECT id, status FROM payments.orders WHERE status = 'declined'";
    let out = call(
        &h,
        "U_PAY",
        "run_query",
        json!({"sql": sql, "max_rows": 2200}),
    )
    .await
    .expect("query");
    assert!(
        out.note.as_deref().is_some_and(|n| n.contains(
            "open in BigQuery: https://console.cloud.google.com/bigquery?project=proj&j=bq%3AEU%3Ajob_abc&page=queryresults"
        )),
        "{:?}",
        out.note
    );
    let t = table_of(&out);
    assert_eq!(t.rows.len(), 2200);
    assert_eq!(t.total_rows, Some(2500));
    assert!(t.truncated);
    assert_eq!(t.rows[1500][0], json!("ord_1500"));
    {
        let s = lock(&seen);
        let q = s.queries.last().expect("jobs.query");
        assert_eq!(q["maximumBytesBilled"], "1000000000");
        assert_eq!(q["location"], "EU");
        assert_eq!(q["useLegacySql"], false);
        assert!(q["timeoutMs"].as_u64().is_some());
        let d = s.dry_runs.last().expect("dry run");
        assert_eq!(d.pointer("/jobReference/location"), Some(&json!("EU")));
        // Two more pages: 1000 from jobs.query, then 1000 and 200.
        let asked: Vec<String> = s
            .pages
            .iter()
            .map(|p| {
                format!(
                    "{}:{}",
                    p.get("pageToken").cloned().unwrap_or_default(),
                    p.get("maxResults").cloned().unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(asked, vec!["p1000:1000", "p2000:200"]);
        assert_eq!(s.tokens_issued, 1, "the token is cached");
    }

    // Refusals: a table in another dataset or project (seen by the dry run), bytes
    // above the cap, writes and scripts (seen by the parser), federated queries.
    let before = lock(&seen).queries.len();
    for (user, sql, why) in [
        (
            "U_PAY",
            "SELECT * FROM marketing.campaigns",
            "outside your grant",
        ),
        ("U_DATA", "SELECT * FROM audit.events", "outside your grant"),
        (
            "U_DATA",
            "SELECT * FROM other_proj.payments.orders",
            "another project",
        ),
        ("U_PAY", "SELECT * FROM payments.big_table", "above the cap"),
        (
            "U_PAY",
            "DELETE FROM payments.orders WHERE true",
            "only SELECT",
        ),
        ("U_PAY", "SELECT 1; SELECT 2", "one statement"),
        (
            "U_PAY",
            "SELECT * FROM EXTERNAL_QUERY('proj.eu.conn', 'SELECT * FROM users')",
            "EXTERNAL_QUERY",
        ),
        (
            "U_PAY",
            "SELECT query FROM `region-eu`.INFORMATION_SCHEMA.JOBS",
            "INFORMATION_SCHEMA",
        ),
    ] {
        let err = call(&h, user, "run_query", json!({"sql": sql}))
            .await
            .expect_err(sql);
        assert!(
            matches!(err, CallError::Source(SourceError::Refused(_))),
            "{sql}: {err}"
        );
        assert!(err.to_string().contains(why), "{sql}: {err}");
    }
    assert_eq!(lock(&seen).queries.len(), before, "nothing refused ran");

    // BigQuery's own error is a query error the model can fix.
    let err = call(
        &h,
        "U_PAY",
        "run_query",
        json!({"sql": "SELECT nosuchcolumn FROM payments.orders"}),
    )
    .await
    .expect_err("bad column");
    assert!(
        matches!(err, CallError::Source(SourceError::Query(_))),
        "{err}"
    );
    assert!(err.to_string().contains("Unrecognized name"));

    assert!(
        lock(&seen).violations.is_empty(),
        "{:?}",
        lock(&seen).violations
    );
}

/// The fake is as strict as Google's token endpoint: a well-formed assertion whose
/// signature was not made with the service account's key is refused.
#[tokio::test]
async fn the_fake_token_endpoint_refuses_a_forged_signature() {
    let (seen, url) = start().await;
    let now = chrono::Utc::now().timestamp();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        json!({
            "iss": "reader@proj.iam.gserviceaccount.com",
            "scope": "https://www.googleapis.com/auth/bigquery.readonly",
            "aud": format!("{url}/token"), "iat": now, "exp": now + 3600
        })
        .to_string(),
    );
    let forged = format!("{header}.{claims}.{}", URL_SAFE_NO_PAD.encode([7u8; 256]));
    let response = reqwest::Client::new()
        .post(format!("{url}/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", forged.as_str()),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(lock(&seen).tokens_issued, 0);
}

/// The query agent (`/api/v1/query-agent`'s engine) on BigQuery: Claude (the fake
/// Messages API) is shown the granted dataset's schema only, its SQL is dry-run,
/// capped and run; SQL over a dataset outside the grant is refused before any job.
#[tokio::test]
async fn query_agent_writes_bigquery_sql_from_the_granted_schema() {
    use investigator::app::App;
    use investigator::config::Secret;
    use investigator::engine::{EngineSettings, Gate, SystemClock};
    use investigator::llm::anthropic::{AnthropicConfig, AnthropicModel};
    use investigator::store::Store;

    use super::fake_anthropic::{FakeAnthropic, Scripted};

    let (seen, url) = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = parse_config(&warehouse(&url, dir.path()), SQUADS);
    let h = Harness::new(config.clone()).await;
    let claude = FakeAnthropic::start(vec![
        Scripted::tool_use(&[(
            "q1",
            "run_sql",
            json!({"sql": "SELECT id, status FROM payments.orders WHERE status = 'declined'",
                   "explanation": "Declined orders."}),
        )]),
        Scripted::tool_use(&[(
            "q2",
            "run_sql",
            json!({"sql": "SELECT * FROM marketing.campaigns", "explanation": "Campaigns."}),
        )]),
    ])
    .await;
    let mut settings = AnthropicConfig::new(Secret::new(FakeAnthropic::DEFAULT_KEY));
    settings.base_url = claude.base_url();
    let model = AnthropicModel::new(settings).expect("client");
    let app = App::from_parts(
        config,
        Gate::new(
            h.gate.sources().clone(),
            Store::open_in_memory().await.expect("store"),
        ),
        std::sync::Arc::new(model),
        std::sync::Arc::new(SystemClock),
        EngineSettings::default(),
    );
    let access = h.access("U_PAY");

    let answer = app
        .query_agent(&access, "warehouse", "Which orders were declined?")
        .await
        .expect("answer");
    assert_eq!(answer["explanation"], json!("Declined orders."));
    assert!(answer.get("error").is_none(), "{answer}");
    let rows = answer["rows"].as_array().cloned().unwrap_or_default();
    assert!(!rows.is_empty(), "{answer}");
    assert_eq!(answer["columns"], json!(["id", "status"]));
    let system = claude.requests()[0]["system"].to_string();
    assert!(system.contains("payments.orders"), "{system}");
    assert!(!system.contains("marketing"), "{system}");
    {
        let s = lock(&seen);
        assert_eq!(s.dry_runs.len(), 1, "dry run first");
        let q = s.queries.last().expect("jobs.query");
        assert_eq!(q["maximumBytesBilled"], "1000000000");
    }

    let queries_before = lock(&seen).queries.len();
    let refused = app
        .query_agent(&access, "warehouse", "Show me the marketing campaigns")
        .await
        .expect("answer");
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(error.contains("outside your grant"), "{refused}");
    assert_eq!(refused["rows"], json!([]));
    assert_eq!(lock(&seen).queries.len(), queries_before, "no job ran");
    assert!(
        lock(&seen).violations.is_empty(),
        "{:?}",
        lock(&seen).violations
    );
}
