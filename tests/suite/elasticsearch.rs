//! The Elasticsearch/OpenSearch source against an in-process fake that speaks the
//! real wire format: `_search` with bool filters, sort and `search_after`,
//! `track_total_hits`, `date_histogram` and `terms` aggregations, `_count`, the
//! error body (`error.root_cause[].reason`), 429 with `Retry-After`, and the
//! version differences of `hits.total` (a number before 7, an object since, and in
//! OpenSearch). It checks what it receives: auth, content type (no
//! Elasticsearch-only compatibility header), that every query carries the time
//! range (and, when a test asks, the namespace filter of a grant), and which
//! indices are searched. It can fail shards (documents on them are missing from
//! the answer, as in a real cluster) and time out searches, both in 200 answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, TimeZone, Utc};
use investigator::engine::CallError;
use investigator::evidence::{compact_for_model, metrics, Content};
use investigator::sources::{CallContext, ToolOutput};
use serde_json::{json, Value};

use super::common::{evidence_of, parse_config, Harness};

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    Es6,
    Es8,
    OpenSearch,
}

#[derive(Default)]
struct Seen {
    requests: Vec<(String, Value)>,
    violations: Vec<String>,
    throttle: u32,
    /// Point-in-time ids handed out → (the point in time, its indices).
    pit_ids: BTreeMap<String, (u32, String)>,
    /// Points in time opened and not yet closed.
    pits_open: std::collections::BTreeSet<u32>,
    pits_opened: u32,
    /// Ids handed out so far (each one is new).
    pit_serial: u32,
    /// When set, every query must carry a `terms` filter on
    /// `kubernetes.namespace` whose values all lie in this list.
    namespace_filter: Option<Vec<String>>,
    /// Queries checked against `namespace_filter`.
    namespace_checked: u32,
    /// Shards that fail: documents on them are left out of answers.
    shard_failure: Option<ShardFailure>,
    /// Searches answer `timed_out: true`.
    time_out: bool,
    /// Requests answered 503 (a node that cannot serve), counted down.
    unavailable: u32,
    /// Elasticsearch 7.10/7.11: points in time, but no `_shard_doc` to sort on.
    no_shard_doc: bool,
}

#[derive(Clone)]
struct ShardFailure {
    total: u64,
    failed: u64,
    kind: &'static str,
}

const NAMESPACE_FIELD: &str = "kubernetes.namespace";

struct Fake {
    docs: Vec<(String, Value)>,
    flavor: Flavor,
    expected_auth: String,
    seen: Mutex<Seen>,
}

type Shared = Arc<Fake>;

fn field<'a>(doc: &'a Value, dotted: &str) -> Option<&'a Value> {
    doc.get(dotted)
        .or_else(|| doc.pointer(&format!("/{}", dotted.replace('.', "/"))))
}

fn glob(pattern: &str) -> regex::Regex {
    let regex = format!("^{}$", regex::escape(pattern).replace("\\*", ".*"));
    regex::Regex::new(&regex).unwrap_or_else(|e| panic!("{pattern}: {e}"))
}

fn millis(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.timestamp_millis())
        .unwrap_or(i64::MIN)
}

fn error(status: StatusCode, kind: &str, reason: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
            "status": status.as_u16()
        })),
    )
        .into_response()
}

impl Fake {
    fn check(&self, headers: &HeaderMap, path: &str, body: &Value) -> Option<Response> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.requests.push((path.to_string(), body.clone()));
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != self.expected_auth {
            seen.violations.push(format!("bad authorization `{auth}`"));
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "security_exception",
                "missing authentication credentials",
            ));
        }
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type != "application/json" {
            seen.violations
                .push(format!("content-type `{content_type}`"));
        }
        let filters = body.pointer("/query/bool/filter").and_then(Value::as_array);
        let has_range = filters.is_some_and(|f| f.iter().any(|c| c.get("range").is_some()));
        if !has_range {
            seen.violations
                .push(format!("query without a time range: {body}"));
        }
        if let Some(granted) = seen.namespace_filter.clone() {
            seen.namespace_checked += 1;
            let limited = filters.is_some_and(|f| {
                f.iter().any(|c| {
                    c.get("terms")
                        .and_then(|t| t.get(NAMESPACE_FIELD))
                        .and_then(Value::as_array)
                        .is_some_and(|values| {
                            !values.is_empty()
                                && values.iter().all(|v| {
                                    v.as_str().is_some_and(|v| granted.iter().any(|g| g == v))
                                })
                        })
                })
            });
            if !limited {
                seen.violations.push(format!(
                    "{path}: query without a namespace filter within {granted:?}: {body}"
                ));
            }
        }
        if seen.unavailable > 0 {
            seen.unavailable -= 1;
            return Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cluster_block_exception",
                "blocked by: [SERVICE_UNAVAILABLE/2/no master];",
            ));
        }
        if seen.throttle > 0 {
            seen.throttle -= 1;
            return Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "0")],
                    axum::Json(json!({"error": {"root_cause": [{"type": "es_rejected_execution_exception", "reason": "rejected execution"}], "type": "es_rejected_execution_exception", "reason": "rejected execution"}, "status": 429})),
                )
                    .into_response(),
            );
        }
        None
    }

    /// Documents of `indices` that pass every filter clause, in sort order,
    /// leaving out those on failed shards (document `pos` lives on shard
    /// `pos % total`; shards `0..failed` fail).
    fn matching(&self, indices: &str, body: &Value) -> Vec<(usize, &(String, Value))> {
        let failure = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shard_failure
            .clone();
        let patterns: Vec<regex::Regex> = indices.split(',').map(glob).collect();
        let clauses = body
            .pointer("/query/bool/filter")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut out: Vec<(usize, &(String, Value))> = self
            .docs
            .iter()
            .enumerate()
            .filter(|(_, (index, _))| patterns.iter().any(|p| p.is_match(index)))
            .filter(|(pos, _)| {
                failure
                    .as_ref()
                    .is_none_or(|f| (*pos as u64) % f.total >= f.failed)
            })
            .filter(|(_, (_, doc))| clauses.iter().all(|c| passes(doc, c)))
            .collect();
        out.sort_by_key(|(pos, (_, doc))| {
            let t = field(doc, "@timestamp")
                .and_then(Value::as_str)
                .map(millis)
                .unwrap_or(0);
            (std::cmp::Reverse(t), *pos)
        });
        out
    }
}

fn passes(doc: &Value, clause: &Value) -> bool {
    if let Some(range) = clause.get("range").and_then(Value::as_object) {
        return range.iter().all(|(f, cond)| {
            let t = field(doc, f)
                .and_then(Value::as_str)
                .map(millis)
                .unwrap_or(i64::MIN);
            let gte = cond
                .get("gte")
                .and_then(Value::as_str)
                .map(millis)
                .unwrap_or(i64::MIN);
            let lt = cond
                .get("lt")
                .and_then(Value::as_str)
                .map(millis)
                .unwrap_or(i64::MAX);
            t >= gte && t < lt
        });
    }
    if let Some(terms) = clause.get("terms").and_then(Value::as_object) {
        return terms.iter().all(|(f, list)| {
            let v = field(doc, f).cloned().unwrap_or(Value::Null);
            list.as_array().is_some_and(|l| l.contains(&v))
        });
    }
    if let Some(term) = clause.get("term").and_then(Value::as_object) {
        return term.iter().all(|(f, v)| field(doc, f) == Some(v));
    }
    if let Some(q) = clause.get("simple_query_string") {
        let text = q
            .get("query")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_lowercase();
        let message = field(doc, "message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_lowercase();
        return text.split_whitespace().all(|w| message.contains(w));
    }
    false
}

async fn root(State(fake): State<Shared>) -> Response {
    let (number, distribution) = match fake.flavor {
        Flavor::Es6 => ("6.8.23", None),
        Flavor::Es8 => ("8.13.4", None),
        Flavor::OpenSearch => ("2.13.0", Some("opensearch")),
    };
    let mut version = json!({"number": number, "lucene_version": "9.10.0"});
    if let Some(d) = distribution {
        version["distribution"] = json!(d);
    }
    axum::Json(json!({"name": "node-1", "cluster_name": "test", "version": version, "tagline": "You Know, for Search"})).into_response()
}

async fn search(
    State(fake): State<Shared>,
    Path(indices): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(response) = fake.check(&headers, &format!("/{indices}/_search"), &body) {
        return response;
    }
    if body.get("pit").is_some() {
        fake.violation("a point-in-time search named its indices in the path");
    }
    match search_in(&fake, &indices, &body) {
        Ok(response) => axum::Json(response).into_response(),
        Err(problem) => *problem,
    }
}

impl Fake {
    /// `_shards` of an answer on `indices`, with a `failures` entry per failed
    /// shard as Elasticsearch lists them.
    fn shards(&self, indices: &str) -> Value {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match &seen.shard_failure {
            None => json!({"total": 1, "successful": 1, "skipped": 0, "failed": 0}),
            Some(f) => {
                let failures: Vec<Value> = (0..f.failed)
                    .map(|shard| {
                        json!({
                            "shard": shard,
                            "index": indices.split(',').next().unwrap_or(""),
                            "node": "n1",
                            "reason": {"type": f.kind, "reason": format!("shard {shard} failed")}
                        })
                    })
                    .collect();
                json!({"total": f.total, "successful": f.total - f.failed, "skipped": 0, "failed": f.failed, "failures": failures})
            }
        }
    }

    fn violation(&self, what: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.violations.push(what.to_string());
    }

    fn authorized(&self, headers: &HeaderMap, path: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.requests.push((path.to_string(), Value::Null));
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        auth == self.expected_auth
    }

    /// A new id for point in time `pit` on `indices` (Elasticsearch may change it
    /// with every search).
    fn pit_id(&self, pit: u32, indices: &str) -> String {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.pit_serial += 1;
        let id = format!("pit{pit}-{}", seen.pit_serial);
        seen.pit_ids.insert(id.clone(), (pit, indices.to_string()));
        id
    }

    fn open_pit(&self, indices: &str) -> String {
        let pit = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.pits_opened += 1;
            let pit = seen.pits_opened;
            seen.pits_open.insert(pit);
            pit
        };
        self.pit_id(pit, indices)
    }

    fn close_pit(&self, id: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.pit_ids.get(id).map(|(pit, _)| *pit) {
            Some(pit) => seen.pits_open.remove(&pit),
            None => false,
        }
    }
}

/// `POST /{index}/_pit` (Elasticsearch 7.10+).
async fn open_pit_es(
    State(fake): State<Shared>,
    Path(indices): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !fake.authorized(&headers, &format!("/{indices}/_pit")) {
        return error(
            StatusCode::UNAUTHORIZED,
            "security_exception",
            "missing authentication credentials",
        );
    }
    match fake.flavor {
        Flavor::Es8 => {}
        // Elasticsearch 6 reads `_pit` as a document type; OpenSearch has no `_pit`.
        Flavor::Es6 | Flavor::OpenSearch => {
            return error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                "request [/_pit] contains unrecognized parameter: [keep_alive]",
            );
        }
    }
    if !q.contains_key("keep_alive") {
        fake.violation("a point in time without keep_alive");
        return error(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "[keep_alive] is not specified",
        );
    }
    axum::Json(json!({"id": fake.open_pit(&indices), "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}})).into_response()
}

/// `POST /{index}/_search/point_in_time` (OpenSearch 2.4+).
async fn open_pit_opensearch(
    State(fake): State<Shared>,
    Path(indices): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !fake.authorized(&headers, &format!("/{indices}/_search/point_in_time")) {
        return error(
            StatusCode::UNAUTHORIZED,
            "security_exception",
            "missing authentication credentials",
        );
    }
    if !matches!(fake.flavor, Flavor::OpenSearch) || !q.contains_key("keep_alive") {
        fake.violation(
            "OpenSearch's point-in-time path sent to another product, or without keep_alive",
        );
        return error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            "no handler",
        );
    }
    axum::Json(json!({"pit_id": fake.open_pit(&indices), "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}, "creation_time": 1714557600000i64})).into_response()
}

/// `POST /_search` with `pit`: the point in time names the indices.
async fn search_pit(State(fake): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(response) = fake.check(&headers, "/_search", &body) {
        return response;
    }
    let id = body
        .pointer("/pit/id")
        .and_then(Value::as_str)
        .unwrap_or("");
    if body.pointer("/pit/keep_alive").is_none() {
        fake.violation("a point-in-time search without keep_alive");
    }
    let known = {
        let seen = fake.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.pit_ids
            .get(id)
            .filter(|(pit, _)| seen.pits_open.contains(pit))
            .cloned()
    };
    let Some((pit, indices)) = known else {
        fake.violation(&format!("search on unknown or closed point in time `{id}`"));
        return error(
            StatusCode::NOT_FOUND,
            "search_context_missing_exception",
            "No search context found",
        );
    };
    let mut response = match search_in(&fake, &indices, &body) {
        Ok(response) => response,
        Err(problem) => return *problem,
    };
    if matches!(fake.flavor, Flavor::Es8) {
        // Elasticsearch hands out a fresh id; the old one must not be used again.
        let newer = fake.pit_id(pit, &indices);
        {
            let mut seen = fake.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.pit_ids.remove(id);
        }
        if let Some(map) = response.as_object_mut() {
            map.insert("pit_id".into(), json!(newer));
        }
    }
    axum::Json(response).into_response()
}

/// `DELETE /_pit` (Elasticsearch) and `DELETE /_search/point_in_time` (OpenSearch).
async fn close_pit(
    State(fake): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !fake.authorized(&headers, &format!("DELETE {}", uri.path())) {
        return error(
            StatusCode::UNAUTHORIZED,
            "security_exception",
            "missing authentication credentials",
        );
    }
    match fake.flavor {
        Flavor::Es8 => {
            let id = body.get("id").and_then(Value::as_str).unwrap_or("");
            let freed = fake.close_pit(id);
            axum::Json(json!({"succeeded": freed, "num_freed": u32::from(freed)})).into_response()
        }
        Flavor::OpenSearch => {
            let ids: Vec<String> = body
                .get("pit_id")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let pits: Vec<Value> = ids
                .iter()
                .map(|id| json!({"pit_id": id, "successful": fake.close_pit(id)}))
                .collect();
            axum::Json(json!({"pits": pits})).into_response()
        }
        Flavor::Es6 => error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            "no handler",
        ),
    }
}

fn search_in(fake: &Fake, indices: &str, body: &Value) -> Result<Value, Box<Response>> {
    // As Elasticsearch answers `_shard_doc`: only under a point in time, only from 7.12.
    let shard_doc = body
        .get("sort")
        .and_then(Value::as_array)
        .is_some_and(|sort| sort.iter().any(|s| s.get("_shard_doc").is_some()));
    if shard_doc {
        let no_shard_doc = fake.seen.lock().map(|s| s.no_shard_doc).unwrap_or_default();
        if !matches!(fake.flavor, Flavor::Es8) || no_shard_doc {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "query_shard_exception",
                "No mapping found for [_shard_doc] in order to sort on",
            )));
        }
        if body.get("pit").is_none() {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                "[_shard_doc] sort field cannot be used without [point in time]",
            )));
        }
    }
    if let Some(terms) = body
        .pointer("/aggs/top/terms/field")
        .and_then(Value::as_str)
    {
        if terms == "message" {
            return Err(Box::new(error(StatusCode::BAD_REQUEST, "illegal_argument_exception", "Text fields are not optimised for operations that require per-document field data like aggregations and sorting, so these operations are disabled by default. Please use a keyword field instead.")));
        }
    }
    let all = fake.matching(indices, body);
    let track = body
        .get("track_total_hits")
        .and_then(Value::as_u64)
        .unwrap_or(10_000) as usize;
    let total = match fake.flavor {
        Flavor::Es6 => json!(all.len()),
        Flavor::Es8 | Flavor::OpenSearch if all.len() > track => {
            json!({"value": track, "relation": "gte"})
        }
        Flavor::Es8 | Flavor::OpenSearch => json!({"value": all.len(), "relation": "eq"}),
    };
    let size = body.get("size").and_then(Value::as_u64).unwrap_or(10) as usize;
    let after = body.get("search_after").and_then(Value::as_array).map(|a| {
        (
            a.first().and_then(Value::as_i64).unwrap_or(0),
            a.get(1).and_then(Value::as_u64).unwrap_or(0) as usize,
        )
    });
    let hits: Vec<Value> = all
        .iter()
        .filter(|(pos, (_, doc))| match after {
            None => true,
            Some((t, p)) => {
                let dt = field(doc, "@timestamp").and_then(Value::as_str).map(millis).unwrap_or(0);
                dt < t || (dt == t && *pos > p)
            }
        })
        .take(size)
        .map(|(pos, (index, doc))| {
            let t = field(doc, "@timestamp").and_then(Value::as_str).map(millis).unwrap_or(0);
            json!({"_index": index, "_id": format!("d{pos}"), "_score": null, "_source": doc, "sort": [t, pos]})
        })
        .collect();
    let timed_out = fake.seen.lock().map(|s| s.time_out).unwrap_or_default();
    let mut response = json!({
        "took": 3, "timed_out": timed_out,
        "_shards": fake.shards(indices),
        "hits": {"total": total, "max_score": null, "hits": hits}
    });
    if let Some(hist) = body.pointer("/aggs/over_time/date_histogram") {
        let step = hist
            .get("fixed_interval")
            .and_then(Value::as_str)
            .and_then(|s| s.trim_end_matches('s').parse::<i64>().ok())
            .unwrap_or(60)
            * 1000;
        let min = hist
            .pointer("/extended_bounds/min")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let max = hist
            .pointer("/extended_bounds/max")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let mut buckets = BTreeMap::new();
        let mut t = min - min.rem_euclid(step);
        while t <= max {
            buckets.insert(t, 0u64);
            t += step;
        }
        for (_, (_, doc)) in &all {
            let dt = field(doc, "@timestamp")
                .and_then(Value::as_str)
                .map(millis)
                .unwrap_or(0);
            *buckets.entry(dt - dt.rem_euclid(step)).or_default() += 1;
        }
        let list: Vec<Value> = buckets
            .iter()
            .map(|(k, n)| json!({"key_as_string": Utc.timestamp_millis_opt(*k).single().map(|d| d.to_rfc3339()).unwrap_or_default(), "key": k, "doc_count": n}))
            .collect();
        response["aggregations"] = json!({"over_time": {"buckets": list}});
    }
    if let Some(f) = body
        .pointer("/aggs/top/terms/field")
        .and_then(Value::as_str)
    {
        let size = body
            .pointer("/aggs/top/terms/size")
            .and_then(Value::as_u64)
            .unwrap_or(10) as usize;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for (_, (_, doc)) in &all {
            if let Some(v) = field(doc, f) {
                *counts
                    .entry(
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                    .or_default() += 1;
            }
        }
        let mut sorted: Vec<(String, u64)> = counts.into_iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let others: u64 = sorted.iter().skip(size).map(|(_, n)| n).sum();
        let buckets: Vec<Value> = sorted
            .iter()
            .take(size)
            .map(|(k, n)| json!({"key": k, "doc_count": n}))
            .collect();
        response["aggregations"] = json!({"top": {"doc_count_error_upper_bound": 0, "sum_other_doc_count": others, "buckets": buckets}});
    }
    Ok(response)
}

async fn count(
    State(fake): State<Shared>,
    Path(indices): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(response) = fake.check(&headers, &format!("/{indices}/_count"), &body) {
        return response;
    }
    let n = fake.matching(&indices, &body).len();
    axum::Json(json!({"count": n, "_shards": fake.shards(&indices)})).into_response()
}

/// 20 minutes of payment and identity logs, one line a second each; from 10:15
/// payment also logs a rare gateway error every 40 seconds. A third of the
/// payment lines come from the `payment-canary` namespace, the rest (errors
/// included) from `payment`; identity lines from `identity`.
fn documents() -> Vec<(String, Value)> {
    let base = Utc
        .with_ymd_and_hms(2024, 5, 1, 10, 0, 0)
        .single()
        .unwrap_or_default();
    let mut docs = Vec::new();
    for i in 0..1200i64 {
        let t = base + chrono::TimeDelta::seconds(i);
        let ts = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        docs.push((
            "logs-payment-2024.05.01".to_string(),
            json!({"@timestamp": ts, "service": {"name": "checkout"}, "kubernetes": {"namespace": if i % 3 == 0 { "payment-canary" } else { "payment" }}, "log": {"level": "INFO"}, "message": format!("GET /cart/{} 200 in {}ms", i % 97, 5 + i % 13), "user": {"email": format!("u{i}@shop.example")}}),
        ));
        docs.push((
            "logs-identity-2024.05.01".to_string(),
            json!({"@timestamp": ts, "service": {"name": "login"}, "kubernetes": {"namespace": "identity"}, "log": {"level": "ERROR"}, "message": "identity secret material"}),
        ));
        if i >= 900 && i % 40 == 0 {
            docs.push((
                "logs-payment-2024.05.01".to_string(),
                json!({"@timestamp": ts, "service": {"name": "checkout"}, "kubernetes": {"namespace": "payment"}, "log": {"level": "ERROR"}, "message": format!("payment gateway timeout after 30000ms order={}", 5000 + i)}),
            ));
        }
    }
    docs
}

async fn start(flavor: Flavor, expected_auth: &str) -> (Shared, String) {
    let fake = Arc::new(Fake {
        docs: documents(),
        flavor,
        expected_auth: expected_auth.to_string(),
        seen: Mutex::new(Seen::default()),
    });
    let app = Router::new()
        .route("/", get(root))
        .route("/{indices}/_search", post(search))
        .route("/_search", post(search_pit))
        .route("/{indices}/_pit", post(open_pit_es))
        .route(
            "/{indices}/_search/point_in_time",
            post(open_pit_opensearch),
        )
        .route("/_pit", axum::routing::delete(close_pit))
        .route("/_search/point_in_time", axum::routing::delete(close_pit))
        .route("/{indices}/_count", post(count))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (fake, format!("http://{addr}"))
}

const SQUADS: &str = r#"
squads:
  payment:
    members:
      slack: [U_PAY]
    grants:
      - source: logs
        indices: ["logs-payment-*", "secrets-*"]
        services: [checkout]
  ops:
    members:
      slack: [U_OPS]
    grants:
      - source: logs
"#;

fn sources(kind: &str, url: &str, auth: &str) -> String {
    format!(
        "data_sources:\n  {kind}:\n    name: logs\n    hosts: [\"{url}\"]\n{auth}    indices:\n      logs: \"logs-*\"\n      errors: \"errors-*\"\n    max_hits: 1200\n"
    )
}

async fn call(h: &Harness, user: &str, tool: &str, args: Value) -> Result<ToolOutput, CallError> {
    h.gate
        .call(
            &h.access(user),
            "logs",
            tool,
            &args,
            &CallContext::default(),
        )
        .await
        .result
}

/// The error text of a call expected to fail (empty if it succeeded).
async fn call_err(h: &Harness, user: &str, tool: &str, args: Value) -> String {
    call(h, user, tool, args)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

fn window() -> Value {
    json!({"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T10:20:00Z"})
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

#[tokio::test]
async fn elasticsearch_8_search_pages_scopes_and_compacts() {
    let (fake, url) = start(Flavor::Es8, "ApiKey a2V5OnNlY3JldA==").await;
    let h = Harness::new(parse_config(
        &sources("elasticsearch", &url, "    api_key: a2V5OnNlY3JldA==\n"),
        SQUADS,
    ))
    .await;
    let health = h.source("logs").health().await;
    assert!(
        health.ok && health.detail == "elasticsearch 8.13.4",
        "{health:?}"
    );

    // 1200 INFO + 7 rare errors in the payment index; paged by 500 with search_after.
    let output = call(
        &h,
        "U_PAY",
        "search_logs",
        with(window(), json!({"limit": 1200})),
    )
    .await
    .expect("search");
    let Content::Json(value) = &output.content else {
        panic!("json")
    };
    assert_eq!(value["hits"].as_array().map(Vec::len), Some(1200));
    assert_eq!(value["total"], json!(1207));
    let statement = &output.statement;
    assert!(
        statement.contains("/logs-payment-*/_search (3 page(s))"),
        "{statement}"
    );
    {
        let seen = fake.seen.lock().unwrap_or_else(|p| p.into_inner());
        assert!(seen.violations.is_empty(), "{:?}", seen.violations);
        // More than one page: a point in time on the granted index only (within the
        // configured ones), three pages through it with the services filter on each,
        // each page after the last with the newest id, then the point in time freed.
        let paths: Vec<&str> = seen.requests.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/logs-payment-*/_pit",
                "/_search",
                "/_search",
                "/_search",
                "DELETE /_pit"
            ]
        );
        let pages: Vec<&Value> = seen.requests[1..4].iter().map(|(_, b)| b).collect();
        for body in &pages {
            assert!(
                body.to_string()
                    .contains(r#"{"terms":{"service.name":["checkout"]}}"#),
                "{body}"
            );
            assert_eq!(body["pit"]["keep_alive"], "1m");
        }
        assert!(pages[0].get("search_after").is_none());
        assert!(pages[1].get("search_after").is_some());
        assert_ne!(
            pages[0]["pit"]["id"], pages[1]["pit"]["id"],
            "the newest id is used"
        );
        // Ties are broken by shard and document under the point in time (`_doc`
        // alone repeats across shards).
        for body in &pages {
            assert_eq!(body["sort"][1], json!({"_shard_doc": "asc"}), "{body}");
        }
        assert_eq!(seen.pits_opened, 1);
        assert!(seen.pits_open.is_empty(), "the point in time was not freed");
    }
    assert!(statement.contains(r#"{"_shard_doc":"asc"}"#), "{statement}");
    // Every hit is unique across pages.
    let ids: std::collections::BTreeSet<String> = value["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| format!("{}{}", h["timestamp"], h["message"]))
        .collect();
    assert_eq!(ids.len(), 1200);
    assert_eq!(output.attachments.len(), 1);
    assert_eq!(output.attachments[0].name, "hits.ndjson");
    let ndjson = String::from_utf8_lossy(&output.attachments[0].bytes).into_owned();
    assert_eq!(ndjson.lines().count(), 1200);

    // The compact view keeps the rare error pattern among 1200 normal lines.
    let item = evidence_of("logs", "elasticsearch", "search_logs", json!({}), &output);
    let compact = compact_for_model(&item, 4_000);
    assert!(
        compact.contains("payment gateway timeout after <*>"),
        "{compact}"
    );
    assert!(compact.contains("1200 fetched"), "{compact}");
    let raw = serde_json::to_string(&output.content)
        .unwrap_or_default()
        .len()
        + ndjson.len();
    assert!(
        raw / compact.len() >= 20,
        "ratio {} ({raw} / {})",
        raw / compact.len(),
        compact.len()
    );

    // Refusals: an index outside the grant, a service outside the grant.
    let err = call_err(
        &h,
        "U_PAY",
        "count",
        with(window(), json!({"index": "logs-identity-*"})),
    )
    .await;
    assert!(err.contains("outside what you may search"), "{err}");
    let err = call_err(
        &h,
        "U_PAY",
        "count",
        with(window(), json!({"service": "login"})),
    )
    .await;
    assert!(err.contains("outside your grant"), "{err}");
    let err = call_err(
        &h,
        "U_PAY",
        "count",
        with(window(), json!({"index": "logs-*,secrets"})),
    )
    .await;
    assert!(err.contains("only lowercase"), "{err}");

    // _count, with level and text.
    let output = call(
        &h,
        "U_PAY",
        "count",
        with(
            window(),
            json!({"level": "error", "text": "gateway timeout"}),
        ),
    )
    .await
    .expect("count");
    let Content::Table(t) = &output.content else {
        panic!("table")
    };
    assert_eq!(t.rows[0][0], json!(7));
    // The unscoped squad searches both configured patterns.
    let output = call(&h, "U_OPS", "count", window()).await.expect("count");
    assert!(
        output.statement.starts_with("POST /errors-*,logs-*/_count"),
        "{}",
        output.statement
    );
    let Content::Table(t) = &output.content else {
        panic!("table")
    };
    assert_eq!(t.rows[0][0], json!(2407));

    // date_histogram → a series with a change point, and a chart.
    let output = call(
        &h,
        "U_PAY",
        "count_over_time",
        with(window(), json!({"level": "ERROR", "interval": "1m"})),
    )
    .await
    .expect("histogram");
    let Content::Json(value) = &output.content else {
        panic!("json")
    };
    let series = metrics::series_from_json(value).expect("series");
    let summary = metrics::summarize(&series[0]);
    assert_eq!(summary.points, 21, "{summary:?}");
    assert_eq!(output.attachments[0].media_type, "image/png");

    // terms aggregation, and the error body of a bad one.
    let output = call(
        &h,
        "U_OPS",
        "top_values",
        with(window(), json!({"field": "service.name"})),
    )
    .await
    .expect("terms");
    let Content::Table(t) = &output.content else {
        panic!("table")
    };
    assert_eq!(t.rows[0], vec![json!("checkout"), json!(1207)]);
    let err = call_err(
        &h,
        "U_OPS",
        "top_values",
        with(window(), json!({"field": "message"})),
    )
    .await;
    assert!(
        err.contains("illegal_argument_exception: Text fields are not optimised"),
        "{err}"
    );
}

/// Elasticsearch 7.10 and 7.11 have points in time but cannot sort on `_shard_doc`:
/// the refused first page is asked again with `_doc`, and paging goes on.
#[tokio::test]
async fn points_in_time_without_shard_doc_page_by_doc() {
    let (fake, url) = start(Flavor::Es8, "ApiKey a2V5OnNlY3JldA==").await;
    fake.seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .no_shard_doc = true;
    let h = Harness::new(parse_config(
        &sources("elasticsearch", &url, "    api_key: a2V5OnNlY3JldA==\n"),
        SQUADS,
    ))
    .await;
    let output = call(
        &h,
        "U_PAY",
        "search_logs",
        with(window(), json!({"limit": 1200})),
    )
    .await
    .expect("search");
    let Content::Json(value) = &output.content else {
        panic!("json")
    };
    let ids: std::collections::BTreeSet<String> = value["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| format!("{}{}", h["timestamp"], h["message"]))
        .collect();
    assert_eq!(ids.len(), 1200);
    assert!(
        output.statement.contains("(3 page(s))"),
        "{}",
        output.statement
    );
    assert!(
        output.statement.contains(r#"{"_doc":"asc"}"#),
        "{}",
        output.statement
    );
    let seen = fake.seen.lock().unwrap_or_else(|p| p.into_inner());
    let sorts: Vec<(&str, String)> = seen
        .requests
        .iter()
        .map(|(path, body)| (path.as_str(), body["sort"][1].to_string()))
        .collect();
    assert_eq!(
        sorts,
        [
            ("/logs-payment-*/_pit", "null".to_string()),
            ("/_search", r#"{"_shard_doc":"asc"}"#.to_string()),
            ("/_search", r#"{"_doc":"asc"}"#.to_string()),
            ("/_search", r#"{"_doc":"asc"}"#.to_string()),
            ("/_search", r#"{"_doc":"asc"}"#.to_string()),
            ("DELETE /_pit", "null".to_string()),
        ]
    );
    assert!(seen.pits_open.is_empty(), "the point in time was not freed");
}

#[tokio::test]
async fn rate_limits_versions_and_auth() {
    // Elasticsearch 6: `hits.total` is a number; basic auth.
    let (fake, url) = start(Flavor::Es6, "Basic ZWxhc3RpYzpwdw==").await;
    let h = Harness::new(parse_config(
        &sources(
            "elasticsearch",
            &url,
            "    username: elastic\n    password: pw\n",
        ),
        SQUADS,
    ))
    .await;
    fake.seen.lock().unwrap_or_else(|p| p.into_inner()).throttle = 2;
    let output = call(
        &h,
        "U_PAY",
        "search_logs",
        with(window(), json!({"limit": 10})),
    )
    .await
    .expect("search after two 429s");
    let Content::Json(value) = &output.content else {
        panic!("json")
    };
    assert_eq!(value["total"], json!(1207));
    assert_eq!(fake.seen.lock().map(|s| s.requests.len()).unwrap_or(0), 3);
    // Beyond the retries, a 429 is reported as the source being unavailable.
    fake.seen.lock().unwrap_or_else(|p| p.into_inner()).throttle = 5;
    let err = call_err(&h, "U_PAY", "count", window()).await;
    assert!(err.contains("rate limiting"), "{err}");
    // Several pages on a version without points in time: plain search_after.
    fake.seen.lock().unwrap_or_else(|p| p.into_inner()).throttle = 0;
    let before = fake.seen.lock().map(|s| s.requests.len()).unwrap_or(0);
    let output = call(
        &h,
        "U_PAY",
        "search_logs",
        with(window(), json!({"limit": 700})),
    )
    .await
    .expect("paged without a point in time");
    let Content::Json(value) = &output.content else {
        panic!("json")
    };
    assert_eq!(value["hits"].as_array().map(Vec::len), Some(700));
    let paths: Vec<String> = fake
        .seen
        .lock()
        .map(|s| s.requests[before..].iter().map(|r| r.0.clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        paths,
        [
            "/logs-payment-*/_pit",
            "/logs-payment-*/_search",
            "/logs-payment-*/_search"
        ]
    );

    // OpenSearch: `hits.total` as an object, bearer auth, `distribution` in `/`.
    let (fake, url) = start(Flavor::OpenSearch, "Bearer tok-123").await;
    let h = Harness::new(parse_config(
        &sources("opensearch", &url, "    bearer_token: tok-123\n"),
        SQUADS,
    ))
    .await;
    let health = h.source("logs").health().await;
    assert_eq!(health.detail, "opensearch 2.13.0");
    let output = call(
        &h,
        "U_OPS",
        "search_logs",
        with(window(), json!({"limit": 5})),
    )
    .await
    .expect("search");
    let Content::Json(value) = &output.content else {
        panic!("json")
    };
    assert_eq!(value["total"], json!(2407));
    assert!(
        output
            .note
            .as_deref()
            .unwrap_or("")
            .contains("5 of 2407 hits"),
        "{:?}",
        output.note
    );
    // Several pages: OpenSearch's own point-in-time API, freed afterwards.
    let before = fake.seen.lock().map(|s| s.requests.len()).unwrap_or(0);
    let output = call(
        &h,
        "U_OPS",
        "search_logs",
        with(window(), json!({"limit": 600})),
    )
    .await
    .expect("paged through a point in time");
    let Content::Json(value) = &output.content else {
        panic!("json")
    };
    assert_eq!(value["hits"].as_array().map(Vec::len), Some(600));
    {
        let seen = fake.seen.lock().unwrap_or_else(|p| p.into_inner());
        let paths: Vec<&str> = seen.requests[before..]
            .iter()
            .map(|r| r.0.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "/errors-*,logs-*/_search/point_in_time",
                "/_search",
                "/_search",
                "DELETE /_search/point_in_time"
            ]
        );
        assert!(seen.pits_open.is_empty(), "the point in time was not freed");
    }
    let violations = fake
        .seen
        .lock()
        .map(|s| s.violations.clone())
        .unwrap_or_default();
    assert!(violations.is_empty(), "{violations:?}");

    // Wrong credentials: the fake answers 401; the source says so without the secret.
    let (_fake, url) = start(Flavor::Es8, "ApiKey right").await;
    let h = Harness::new(parse_config(
        &sources("elasticsearch", &url, "    api_key: wrong-key\n"),
        SQUADS,
    ))
    .await;
    let err = call_err(&h, "U_PAY", "count", window()).await;
    assert!(err.contains("refused our credentials"), "{err}");
    assert!(!err.contains("wrong-key"), "{err}");
}

/// Through the engine: the model gets the compact views (templates, a series
/// summary), cites them, and the report lists the chart and the NDJSON hits.
#[tokio::test]
async fn evidence_reaches_the_model_compact_and_cited_with_charts() {
    use investigator::chat::render::report_markdown;
    use investigator::engine::{Conversation, Engine, EngineSettings, Gate, NoEvents, ReportKind};
    use investigator::store::Store;

    use super::engine::{report, tool_use, ScriptedModel, SteppingClock};

    let (_fake, url) = start(Flavor::Es8, "ApiKey k").await;
    let config = parse_config(&sources("elasticsearch", &url, "    api_key: k\n"), SQUADS);
    let h = Harness::new(config.clone()).await;
    let model = ScriptedModel::new(vec![
        tool_use(&[
            (
                "t1",
                "logs__search_logs",
                with(window(), json!({"limit": 1200})),
            ),
            (
                "t2",
                "logs__count_over_time",
                with(window(), json!({"level": "ERROR", "interval": "1m"})),
            ),
        ]),
        report("r1", &["E1", "E2"]),
    ]);
    let sources = h.gate.sources().clone();
    let engine = Engine::new(
        Gate::new(sources, Store::open_in_memory().await.expect("store")),
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
            "why?",
            &NoEvents,
        )
        .await;
    assert_eq!(outcome.report.kind, ReportKind::Structured);
    assert!(model.violations().is_empty(), "{:?}", model.violations());
    let second = format!("{:?}", model.requests()[1].messages);
    assert!(
        second.contains("payment gateway timeout after <*>"),
        "{second}"
    );
    assert!(
        second.contains("differs from baseline 0 2024-05-01T10:15:00Z"),
        "{second}"
    );
    assert!(
        second.contains("attached for the reader: hits.ndjson"),
        "{second}"
    );
    // The e-mail addresses in the documents never reach the model or the evidence.
    assert!(!second.contains("@shop.example"));
    let stored = serde_json::to_string(&conversation.evidence).unwrap_or_default();
    assert!(!stored.contains("@shop.example"));
    let items = conversation.evidence.items();
    let ndjson = String::from_utf8_lossy(&items[0].attachments[0].bytes).into_owned();
    assert_eq!(ndjson.lines().count(), 1200);
    assert!(!ndjson.contains("@shop.example"), "attachment not redacted");
    assert!(ndjson.contains("[redacted:email]"));
    assert_eq!(
        items[0].note.as_deref().map(|n| n.contains("redacted")),
        Some(true)
    );
    assert!(second.len() < 40_000, "{}", second.len());
    let markdown = report_markdown(
        "why?",
        &outcome.report,
        &conversation.evidence,
        Some(&outcome),
    );
    assert!(
        markdown.contains("`E1-hits.ndjson` (application/x-ndjson"),
        "{markdown}"
    );
    assert!(
        markdown.contains("`E2-count_over_time.png` (image/png"),
        "{markdown}"
    );
}

/// `ca_cert` makes a private CA trusted; without it the same server is refused
/// (not by an insecure fallback), and the model is told so in one line without
/// TLS internals.
#[tokio::test]
async fn tls_with_a_custom_ca() {
    let (fake, url) = start(Flavor::Es8, "ApiKey k").await;
    let https = super::common::tls_front(&url, false).await;
    let ca = super::common::tls_fixture("ca.pem");
    let ca = ca.display();

    let trusted = sources(
        "elasticsearch",
        &https,
        &format!("    api_key: k\n    ca_cert: \"{ca}\"\n"),
    );
    let h = Harness::new(parse_config(&trusted, SQUADS)).await;
    let health = h.source("logs").health().await;
    assert!(health.ok, "{health:?}");
    let out = call(
        &h,
        "U_PAY",
        "search_logs",
        with(window(), json!({"limit": 10})),
    )
    .await
    .expect("search over https with the private CA");
    let Content::Json(v) = &out.content else {
        panic!("json")
    };
    assert!(v["total"].as_u64().is_some_and(|n| n > 0), "{v}");
    let searched = fake
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .requests
        .iter()
        .filter(|(path, _)| path.ends_with("/_search"))
        .count();
    assert!(searched >= 1);

    let untrusted = sources("elasticsearch", &https, "    api_key: k\n");
    let h = Harness::new(parse_config(&untrusted, SQUADS)).await;
    let health = h.source("logs").health().await;
    assert!(!health.ok, "{health:?}");
    let requests = || fake.seen.lock().map(|s| s.requests.len()).unwrap_or(0);
    let before = requests();
    let err = call(
        &h,
        "U_PAY",
        "search_logs",
        with(window(), json!({"limit": 10})),
    )
    .await
    .expect_err("an unknown CA is refused");
    assert_eq!(requests(), before, "nothing got through");
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(
        !text.contains("rustls") && !text.contains("webpki"),
        "{text}"
    );
    // Said so that whoever reads it knows what to configure.
    for said in [&text, &health.detail] {
        assert!(
            said.contains("certificate is not trusted") && said.contains("`ca_cert`"),
            "{said}"
        );
    }
}

const NAMESPACE_SQUADS: &str = r#"
squads:
  payment:
    members:
      slack: [U_PAY]
    grants:
      - source: logs
        indices: ["logs-payment-*"]
        namespaces: [payment, payment-canary]
  canary:
    members:
      slack: [U_CAN]
    grants:
      - source: logs
        namespaces: [payment-canary]
"#;

/// The indices the hits came from.
fn indices_of(content: &Content) -> std::collections::BTreeSet<String> {
    let Content::Json(value) = content else {
        panic!("json")
    };
    value["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["index"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The namespaces of the hits, read from the documents as returned (NDJSON).
fn ndjson_namespaces(output: &ToolOutput) -> std::collections::BTreeSet<String> {
    let text = output
        .attachments
        .iter()
        .find(|a| a.name == "hits.ndjson")
        .map(|a| String::from_utf8_lossy(&a.bytes).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|hit| {
            hit.pointer("/_source/kubernetes/namespace")
                .and_then(Value::as_str)
                .unwrap_or("(none)")
                .to_string()
        })
        .collect()
}

fn table_of(output: &ToolOutput) -> Vec<Vec<Value>> {
    match &output.content {
        Content::Table(t) => t.rows.clone(),
        Content::Json(_) | Content::Text(_) => panic!("table expected"),
    }
}

/// A `namespaces` grant puts a `terms` filter on `kubernetes.namespace` into
/// every query (search pages through a point in time and through plain
/// search_after, counts, both aggregations); a `namespace` argument narrows to
/// one granted namespace, and one outside the grant is refused before anything
/// is sent.
#[tokio::test]
async fn namespace_grant_filters_every_query() {
    for flavor in [Flavor::Es8, Flavor::Es6, Flavor::OpenSearch] {
        let (fake, url) = start(flavor, "ApiKey k").await;
        let kind = match flavor {
            Flavor::OpenSearch => "opensearch",
            Flavor::Es6 | Flavor::Es8 => "elasticsearch",
        };
        let h = Harness::new(parse_config(
            &sources(kind, &url, "    api_key: k\n"),
            NAMESPACE_SQUADS,
        ))
        .await;
        let granted = |list: &[&str]| {
            fake.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .namespace_filter = Some(list.iter().map(|s| s.to_string()).collect());
        };

        // The model is told which namespaces it may name.
        let offered = h.gate.tools_for(&h.access("U_PAY"));
        let search = offered
            .iter()
            .find(|t| t.spec.name == "search_logs")
            .expect("search_logs offered");
        assert_eq!(
            search.spec.input_schema["properties"]["namespace"]["enum"],
            json!(["payment", "payment-canary"])
        );
        assert!(
            search
                .spec
                .description
                .contains("namespaces payment, payment-canary"),
            "{}",
            search.spec.description
        );

        granted(&["payment", "payment-canary"]);
        // 1200 of the 1207 payment documents, in three pages.
        let output = call(
            &h,
            "U_PAY",
            "search_logs",
            with(window(), json!({"limit": 1200})),
        )
        .await
        .expect("search");
        assert!(
            output.statement.contains("(3 page(s))"),
            "{}",
            output.statement
        );
        assert_eq!(
            ndjson_namespaces(&output),
            ["payment", "payment-canary"]
                .map(str::to_string)
                .into_iter()
                .collect()
        );
        assert_eq!(
            indices_of(&output.content),
            ["logs-payment-2024.05.01".to_string()]
                .into_iter()
                .collect()
        );
        // Narrowed to one granted namespace: the grant's filter stays, the
        // argument adds its own.
        let output = call(
            &h,
            "U_PAY",
            "count",
            with(window(), json!({"namespace": "payment-canary"})),
        )
        .await
        .expect("count");
        assert_eq!(table_of(&output)[0][0], json!(400));
        assert!(
            output.statement.contains(
                r#"{"terms":{"kubernetes.namespace":["payment","payment-canary"]}},{"term":{"kubernetes.namespace":"payment-canary"}}"#
            ),
            "{}",
            output.statement
        );
        let output = call(
            &h,
            "U_PAY",
            "search_logs",
            with(window(), json!({"namespace": "payment", "limit": 900})),
        )
        .await
        .expect("narrowed search");
        assert_eq!(
            ndjson_namespaces(&output),
            ["payment".to_string()].into_iter().collect()
        );
        let output = call(
            &h,
            "U_PAY",
            "count_over_time",
            with(
                window(),
                json!({"namespace": "payment-canary", "interval": "5m"}),
            ),
        )
        .await
        .expect("histogram");
        let Content::Json(value) = &output.content else {
            panic!("json")
        };
        let series = metrics::series_from_json(value).expect("series");
        let sum: f64 = series[0].points.iter().map(|(_, n)| n).sum();
        assert_eq!(sum, 400.0);
        let output = call(
            &h,
            "U_PAY",
            "top_values",
            with(window(), json!({"field": "kubernetes.namespace"})),
        )
        .await
        .expect("terms");
        assert_eq!(
            table_of(&output),
            vec![
                vec![json!("payment"), json!(807)],
                vec![json!("payment-canary"), json!(400)]
            ]
        );

        // Outside the grant: refused with the granted list, and nothing is sent.
        let requests = || fake.seen.lock().map(|s| s.requests.len()).unwrap_or(0);
        let before = requests();
        for tool in ["search_logs", "count", "count_over_time"] {
            let err = call(
                &h,
                "U_PAY",
                tool,
                with(window(), json!({"namespace": "identity"})),
            )
            .await
            .expect_err("a namespace outside the grant");
            let text = err.to_string();
            assert!(
                text.contains("namespace `identity` is outside your grant on `logs` (granted: payment, payment-canary)"),
                "{text}"
            );
        }
        let err = call(
            &h,
            "U_PAY",
            "top_values",
            with(
                window(),
                json!({"field": "message", "namespace": "identity"}),
            ),
        )
        .await
        .expect_err("refused");
        assert!(err.to_string().contains("outside your grant"), "{err}");
        assert_eq!(requests(), before, "a refused call reached the cluster");

        // A squad granted every index but one namespace sees only that one, in
        // every configured pattern (identity documents included in the indices).
        granted(&["payment-canary"]);
        let output = call(&h, "U_CAN", "count", window()).await.expect("count");
        assert_eq!(table_of(&output)[0][0], json!(400));
        let output = call(
            &h,
            "U_CAN",
            "search_logs",
            with(window(), json!({"limit": 1000})),
        )
        .await
        .expect("search");
        assert_eq!(
            ndjson_namespaces(&output),
            ["payment-canary".to_string()].into_iter().collect()
        );
        let err = call(
            &h,
            "U_CAN",
            "count",
            with(window(), json!({"namespace": "payment"})),
        )
        .await
        .expect_err("refused");
        assert!(err.to_string().contains("outside your grant"), "{err}");

        let seen = fake.seen.lock().unwrap_or_else(|p| p.into_inner());
        assert!(seen.violations.is_empty(), "{:?}", seen.violations);
        // Search pages, counts and aggregations were all checked.
        assert!(seen.namespace_checked >= 9, "{}", seen.namespace_checked);
        let pit_pages = seen
            .requests
            .iter()
            .filter(|(path, _)| path == "/_search")
            .count();
        match flavor {
            Flavor::Es8 | Flavor::OpenSearch => assert!(pit_pages >= 4, "{pit_pages}"),
            Flavor::Es6 => assert_eq!(pit_pages, 0),
        }
    }
}

/// Failed shards and timed-out searches in 200 answers are said first in the
/// note of every tool (and so in the model's view), with the counts the cluster
/// could still give.
#[tokio::test]
async fn partial_results_are_said() {
    let (fake, url) = start(Flavor::Es8, "ApiKey k").await;
    let h = Harness::new(parse_config(
        &sources("elasticsearch", &url, "    api_key: k\n"),
        SQUADS,
    ))
    .await;
    let complete = call(&h, "U_PAY", "count", window()).await.expect("count");
    assert_eq!(table_of(&complete)[0][0], json!(1207));
    assert_eq!(complete.note, None);

    fake.seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .shard_failure = Some(ShardFailure {
        total: 5,
        failed: 2,
        kind: "query_shard_exception",
    });
    let said = "PARTIAL RESULTS: 2 of 5 shards failed (query_shard_exception)";
    let note = |o: &ToolOutput| o.note.clone().unwrap_or_default();

    let output = call(
        &h,
        "U_PAY",
        "search_logs",
        with(window(), json!({"limit": 1200})),
    )
    .await
    .expect("search through a point in time");
    assert!(note(&output).starts_with(said), "{:?}", output.note);
    let Content::Json(value) = &output.content else {
        panic!("json")
    };
    let total = value["total"].as_u64().unwrap_or(0);
    assert!(total > 0 && total < 1207, "{total}");
    // The model reads it beside the numbers it qualifies.
    let item = evidence_of("logs", "elasticsearch", "search_logs", json!({}), &output);
    assert!(compact_for_model(&item, 4_000).contains(said));

    let output = call(&h, "U_PAY", "count", window()).await.expect("count");
    assert_eq!(note(&output), said);
    let counted = table_of(&output)[0][0].as_u64().unwrap_or(0);
    assert!(counted > 0 && counted < 1207, "{counted}");

    let output = call(
        &h,
        "U_PAY",
        "count_over_time",
        with(window(), json!({"interval": "1m"})),
    )
    .await
    .expect("histogram");
    assert_eq!(note(&output), said);

    let output = call(
        &h,
        "U_OPS",
        "top_values",
        with(window(), json!({"field": "service.name", "size": 1})),
    )
    .await
    .expect("terms");
    assert!(note(&output).starts_with(said), "{:?}", output.note);
    assert!(
        note(&output).ends_with("hits have other values"),
        "{:?}",
        output.note
    );

    // A search that ran out of time, shards all well.
    {
        let mut seen = fake.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.shard_failure = None;
        seen.time_out = true;
    }
    let output = call(
        &h,
        "U_PAY",
        "search_logs",
        with(window(), json!({"limit": 10})),
    )
    .await
    .expect("search");
    assert!(
        note(&output).starts_with("PARTIAL RESULTS: search timed out"),
        "{:?}",
        output.note
    );
    let output = call(
        &h,
        "U_PAY",
        "count_over_time",
        with(window(), json!({"interval": "1m"})),
    )
    .await
    .expect("histogram");
    assert_eq!(note(&output), "PARTIAL RESULTS: search timed out");
    let output = call(
        &h,
        "U_PAY",
        "top_values",
        with(window(), json!({"field": "log.level"})),
    )
    .await
    .expect("terms");
    assert_eq!(note(&output), "PARTIAL RESULTS: search timed out");
    // `_count` has no time-out flag; it stays complete.
    let output = call(&h, "U_PAY", "count", window()).await.expect("count");
    assert_eq!(output.note, None);

    let violations = fake
        .seen
        .lock()
        .map(|s| s.violations.clone())
        .unwrap_or_default();
    assert!(violations.is_empty(), "{violations:?}");
}

#[tokio::test]
async fn an_unavailable_host_hands_over_to_the_next() {
    let (down, down_url) = start(Flavor::Es8, "ApiKey k").await;
    let (up, up_url) = start(Flavor::Es8, "ApiKey k").await;
    let config = sources("elasticsearch", &down_url, "    api_key: k\n").replace(
        &format!("[\"{down_url}\"]"),
        &format!("[\"{down_url}\", \"{up_url}\"]"),
    );
    let h = Harness::new(parse_config(&config, SQUADS)).await;
    down.seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unavailable = 100;
    let output = call(&h, "U_OPS", "count", window())
        .await
        .expect("counted on the second host");
    let Content::Table(t) = &output.content else {
        panic!("table")
    };
    assert_eq!(t.rows[0][0], json!(2407));
    let requests = |fake: &Shared| fake.seen.lock().map(|s| s.requests.len()).unwrap_or(0);
    assert_eq!((requests(&down), requests(&up)), (1, 1));

    // The last host's 503 is the answer: said, not retried forever.
    up.seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unavailable = 100;
    let err = call_err(&h, "U_OPS", "count", window()).await;
    assert!(err.contains("503"), "{err}");
    assert_eq!((requests(&down), requests(&up)), (2, 2));
}
