//! The HTTP API (axum): investigations, follow-ups, evidence, health, metrics,
//! the OpenAPI document and a local docs page.
//!
//! Every investigation runs in a task the API tracks, not in the request: a
//! client that disconnects does not cancel it, and shutdown can wait for it or
//! mark it interrupted (resumable with `POST /api/v1/investigations/{id}/resume`).

mod docs;
mod metrics;
mod problem;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::access::{Principal, Transport};
use crate::app::{App, AskError};
use crate::config::{MasterKey, Secret};
use crate::engine::{Event, EventSink, Outcome, Report};
use crate::evidence::{Content, EvidenceItem};
use crate::store::{SessionStatus, StoredReport};

pub use docs::ROUTES as DOCUMENTED_ROUTES;
pub use metrics::Metrics;
pub use problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API key {name:?} of squad {squad}: {error}")]
    Key {
        squad: String,
        name: String,
        error: crate::config::secret::Error,
    },
    #[error("cannot serve: {0}")]
    Serve(std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Limits of the API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Requests per minute per API key (with `burst` at once).
    pub per_key_per_minute: u32,
    pub burst: u32,
    pub body_limit: usize,
    /// How long shutdown waits for running investigations before marking
    /// them interrupted.
    pub shutdown_grace: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            per_key_per_minute: 120,
            burst: 20,
            body_limit: 64 * 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

struct ApiKey {
    name: String,
    secret: Secret,
}

struct Inner {
    app: Arc<App>,
    keys: Vec<ApiKey>,
    limiters: HashMap<String, DefaultDirectRateLimiter>,
    metrics: Metrics,
    tasks: Mutex<JoinSet<()>>,
    settings: ApiSettings,
}

/// Shared by every request; cheap to clone.
#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

impl ApiState {
    /// Resolves every squad's API keys once (a bad reference fails here, at start).
    pub fn new(
        app: Arc<App>,
        settings: ApiSettings,
        master_key: Option<&MasterKey>,
    ) -> Result<ApiState> {
        let mut keys = Vec::new();
        let per_minute =
            NonZeroU32::new(settings.per_key_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let mut limiters = HashMap::new();
        for (squad, config) in &app.config.squads {
            for key in &config.api_keys {
                let secret = key.key.resolve(master_key).map_err(|error| Error::Key {
                    squad: squad.clone(),
                    name: key.name.clone(),
                    error,
                })?;
                limiters.entry(key.name.clone()).or_insert_with(|| {
                    RateLimiter::direct(Quota::per_minute(per_minute).allow_burst(burst))
                });
                keys.push(ApiKey {
                    name: key.name.clone(),
                    secret,
                });
            }
        }
        Ok(ApiState(Arc::new(Inner {
            app,
            keys,
            limiters,
            metrics: Metrics::default(),
            tasks: Mutex::new(JoinSet::new()),
            settings,
        })))
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.0.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Waits up to the grace period for running investigations, then cancels
    /// the rest, which marks their sessions interrupted.
    pub async fn drain(&self) {
        let mut tasks = {
            let mut guard = self.0.tasks.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *guard)
        };
        let grace = self.0.settings.shutdown_grace;
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                running = tasks.len(),
                "shutdown: investigations still running are marked interrupted"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            // The cancelled leases mark their sessions in spawned tasks; let them run.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The principal of a bearer key, rate limited per key.
    fn authenticate(&self, headers: &HeaderMap) -> std::result::Result<Principal, Problem> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(Problem::unauthorized(
                "send an API key as `Authorization: Bearer <key>`",
            ));
        };
        let text = value.to_str().unwrap_or_default();
        let Some(token) = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
        else {
            return Err(Problem::unauthorized(
                "the Authorization header must be `Bearer <key>`",
            ));
        };
        let offered = Secret::new(token.trim());
        // Every key is compared (in constant time each), so timing does not
        // tell which key nearly matched.
        let mut found: Option<&ApiKey> = None;
        for key in &self.0.keys {
            if key.secret == offered && found.is_none() {
                found = Some(key);
            }
        }
        let Some(key) = found else {
            return Err(Problem::unauthorized("unknown API key"));
        };
        if let Some(limiter) = self.0.limiters.get(&key.name) {
            if let Err(not_until) = limiter.check() {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let mut problem = Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    "Too many requests",
                    format!(
                        "this API key is limited to {} requests per minute",
                        self.0.settings.per_key_per_minute
                    ),
                );
                problem.retry_after = Some(wait.as_secs().max(1));
                return Err(problem);
            }
        }
        Ok(Principal::new(Transport::Api, key.name.clone()))
    }
}

/// The router. The caller binds the listener and owns shutdown, so tests can
/// serve on port 0.
pub fn app(state: ApiState) -> Router {
    let limit = state.0.settings.body_limit;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .route("/docs", get(docs_page))
        .route("/api/v1/investigate", post(investigate))
        .route("/api/v1/investigations/{id}", get(get_investigation))
        .route("/api/v1/investigations/{id}/messages", post(follow_up))
        .route("/api/v1/investigations/{id}/resume", post(resume))
        .route("/api/v1/investigations/{id}/feedback", post(feedback))
        .route("/api/v1/evidence/{id}", get(get_evidence_all))
        .route("/api/v1/evidence/{id}/{item}", get(get_evidence_item))
        .route("/api/v1/query-agent", post(query_agent))
        .fallback(|| async { Problem::not_found("no such route; see /docs") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not accept that method; see /docs",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then drains running investigations.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let router = app(state.clone());
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)?;
    state.drain().await;
    Ok(())
}

// ---------------------------------------------------------------- bodies

/// Parses a JSON body with the path of the first mistake, or a problem.
/// The caller and its JSON body: 401 before the body is read, then 400/413.
fn authenticated<T: DeserializeOwned>(
    state: &ApiState,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<(Principal, T), Problem> {
    let principal = state.authenticate(headers)?;
    Ok((principal, parse_body(headers, body)?))
}

fn parse_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<T, Problem> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                "the request body is larger than the API accepts",
            )
        } else {
            Problem::bad_request("the request body could not be read")
        }
    })?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        if !ct.starts_with("application/json") {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as application/json",
            ));
        }
    }
    let mut de = serde_json::Deserializer::from_slice(&body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let what = if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {inner}")
        } else if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        Problem::bad_request(what)
    })?;
    de.end()
        .map_err(|e| Problem::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvestigateRequest {
    query: String,
    #[serde(default)]
    context: Option<InvestigateContext>,
    #[serde(default)]
    stream: bool,
    #[serde(default, rename = "async")]
    run_async: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvestigateContext {
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    time_range: Option<TimeRange>,
    #[serde(default)]
    services: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeRange {
    start: String,
    end: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowUpRequest {
    message: String,
    #[serde(default)]
    stream: bool,
    #[serde(default, rename = "async")]
    run_async: bool,
}

/// Whether the last answer was right: 1 helpful, -1 wrong.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackRequest {
    rating: i64,
    #[serde(default)]
    comment: Option<String>,
}

const MAX_FEEDBACK_COMMENT: usize = 2_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryAgentRequest {
    prompt: String,
    dataset_id: String,
}

const MAX_QUESTION: usize = 4_000;

fn check_text(field: &str, text: &str, max: usize) -> std::result::Result<(), Problem> {
    if text.trim().is_empty() {
        return Err(Problem::bad_request(format!("{field} is empty")));
    }
    if text.chars().count() > max {
        return Err(Problem::bad_request(format!(
            "{field} is longer than {max} characters"
        )));
    }
    Ok(())
}

fn parse_time(field: &str, text: &str) -> std::result::Result<DateTime<Utc>, Problem> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            Problem::bad_request(format!(
                "{field} must be an RFC 3339 time such as 2026-01-15T10:00:00Z"
            ))
        })
}

/// The question the model sees: the query, then the context as plain lines.
fn question_text(request: &InvestigateRequest) -> std::result::Result<String, Problem> {
    check_text("query", &request.query, MAX_QUESTION)?;
    let mut text = request.query.trim().to_string();
    let Some(context) = &request.context else {
        return Ok(text);
    };
    let mut lines = Vec::new();
    if let Some(env) = &context.environment {
        check_text("context.environment", env, 100)?;
        lines.push(format!("- environment: {}", env.trim()));
    }
    if let Some(range) = &context.time_range {
        let start = parse_time("context.time_range.start", &range.start)?;
        let end = parse_time("context.time_range.end", &range.end)?;
        if end <= start {
            return Err(Problem::bad_request(
                "context.time_range.end must be after context.time_range.start",
            ));
        }
        lines.push(format!(
            "- time range: {} to {} (UTC)",
            start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    if context.services.len() > 50 {
        return Err(Problem::bad_request(
            "context.services lists more than 50 services",
        ));
    }
    for (i, service) in context.services.iter().enumerate() {
        check_text(&format!("context.services[{i}]"), service, 200)?;
    }
    if !context.services.is_empty() {
        lines.push(format!("- services: {}", context.services.join(", ")));
    }
    if !lines.is_empty() {
        text.push_str("\n\nContext given with the question:\n");
        text.push_str(&lines.join("\n"));
    }
    Ok(text)
}

// ---------------------------------------------------------------- shapes

/// The brief's synthesis (strings a brief-only client expects), from a report.
fn synthesis(report: &Report) -> Value {
    match &report.findings {
        Some(f) => json!({
            "root_cause": f.root_cause.summary,
            "timeline": f.timeline.iter().map(|e| format!("{} {}", e.time, e.event)).collect::<Vec<_>>().join("; "),
            "affected_components": f.affected_components.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
            "recommended_actions": f.recommended_actions.iter().map(|a| a.action.clone()).collect::<Vec<_>>(),
            "confidence": f.confidence.as_str(),
        }),
        None => json!({
            "root_cause": report.text.clone().unwrap_or_default(),
            "timeline": "",
            "affected_components": [],
            "recommended_actions": [],
            "confidence": "low",
        }),
    }
}

fn evidence_summary(investigation: &str, item: &EvidenceItem) -> Value {
    json!({
        "id": item.id,
        "source": item.source,
        "tool": item.tool,
        "statement": item.statement,
        "at": item.at,
        "duration_ms": item.duration_ms,
        "ok": item.ok(),
        "rows": item.rows(),
        "error": item.error,
        "note": item.note,
        "url": format!("/api/v1/evidence/{investigation}/{}", item.id),
    })
}

/// `{<source kind>: [items]}`, as the brief groups evidence.
fn evidence_by_kind<'a>(
    investigation: &str,
    items: impl Iterator<Item = &'a EvidenceItem>,
) -> Value {
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for item in items {
        groups
            .entry(item.kind.clone())
            .or_default()
            .push(evidence_summary(investigation, item));
    }
    json!(groups)
}

fn answer_body(id: &str, outcome: &Outcome, items: &[EvidenceItem]) -> Value {
    let new: Vec<&EvidenceItem> = items
        .iter()
        .filter(|i| outcome.new_evidence.contains(&i.id))
        .collect();
    json!({
        "investigation_id": id,
        "status": "complete",
        "synthesis": synthesis(&outcome.report),
        "evidence": evidence_by_kind(id, new.into_iter()),
        "usage": {
            "input_tokens": outcome.usage.input_tokens + outcome.usage.cache_creation_input_tokens + outcome.usage.cache_read_input_tokens,
            "output_tokens": outcome.usage.output_tokens,
            "cost_usd": outcome.cost_usd,
            "turns": outcome.turns,
            "tool_calls": outcome.tool_calls,
            "duration_ms": outcome.duration_ms,
        },
        "report": outcome.report,
        "url": format!("/api/v1/investigations/{id}"),
    })
}

fn ask_problem(err: AskError) -> Problem {
    match err {
        AskError::Denied(denial) => Problem::forbidden(denial.to_string()),
        AskError::NotFound => Problem::not_found("no such investigation"),
        AskError::Busy => Problem::new(
            StatusCode::CONFLICT,
            "busy",
            "Investigation busy",
            "another question in this investigation is still being answered; try again later",
        ),
        AskError::Store(err) => {
            tracing::error!(error = %err, "store failed");
            Problem::internal()
        }
    }
}

// ---------------------------------------------------------------- events

/// Feeds metrics, and a stream when the client asked for one.
struct ApiEvents {
    state: ApiState,
    tx: Option<mpsc::UnboundedSender<Event>>,
}

impl EventSink for ApiEvents {
    fn emit(&self, event: Event) {
        if let Event::ToolFinished {
            source,
            ok,
            duration_ms,
            ..
        } = &event
        {
            self.state
                .metrics()
                .tool_call(source, *ok, *duration_ms as f64 / 1000.0);
        }
        if let Some(tx) = &self.tx {
            // A client that went away only stops hearing about it.
            let _ = tx.send(event);
        }
    }
}

// ---------------------------------------------------------------- handlers

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<ApiState>) -> Response {
    let store_ok = match state.0.app.sessions.store().ping().await {
        Ok(()) => true,
        Err(err) => {
            tracing::error!(error = %err, "readyz: store failed");
            false
        }
    };
    let sources = state.0.app.engine.gate().sources();
    let checks = sources.iter().map(|(name, source)| async move {
        let ok = tokio::time::timeout(Duration::from_secs(2), source.health())
            .await
            .map(|h| h.ok)
            .unwrap_or(false);
        (name.clone(), ok)
    });
    let results: BTreeMap<String, bool> = futures::future::join_all(checks)
        .await
        .into_iter()
        .collect();
    // A failing source makes investigations partial, not impossible; only
    // the store decides readiness, so one broken database does not take every
    // replica out of the load balancer.
    let status = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if store_ok { "ready" } else { "not ready" },
        "store": if store_ok { "ok" } else { "failed" },
        "sources": results.iter().map(|(k, ok)| (k.clone(), json!(if *ok { "ok" } else { "failed" }))).collect::<serde_json::Map<_, _>>(),
    });
    (status, Json(body)).into_response()
}

async fn metrics_text(State(state): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics().render(),
    )
        .into_response()
}

async fn openapi() -> Json<Value> {
    Json(docs::openapi())
}

async fn docs_page() -> Html<&'static str> {
    Html(docs::PAGE)
}

/// How the client wants the answer.
#[derive(Clone, Copy)]
enum Mode {
    Sync,
    Stream,
    Async,
}

fn mode(stream: bool, run_async: bool) -> std::result::Result<Mode, Problem> {
    match (stream, run_async) {
        (true, true) => Err(Problem::bad_request("stream and async cannot both be true")),
        (true, false) => Ok(Mode::Stream),
        (false, true) => Ok(Mode::Async),
        (false, false) => Ok(Mode::Sync),
    }
}

async fn investigate(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let response = investigate_inner(&state, &headers, body).await;
    state.metrics().request(
        "investigate",
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn investigate_inner(
    state: &ApiState,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let (principal, request): (Principal, InvestigateRequest) =
        match authenticated(state, headers, body) {
            Ok(x) => x,
            Err(p) => return p.into_response(),
        };
    let (question, mode) = match question_text(&request)
        .and_then(|q| mode(request.stream, request.run_async).map(|m| (q, m)))
    {
        Ok(x) => x,
        Err(p) => return p.into_response(),
    };
    let id = match state.0.app.start_session(&principal).await {
        Ok((id, _)) => id,
        Err(err) => return ask_problem(err).into_response(),
    };
    run_question(state, principal, id, question, mode).await
}

async fn follow_up(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let (principal, request): (Principal, FollowUpRequest) =
        match authenticated(&state, &headers, body) {
            Ok(x) => x,
            Err(p) => return p.into_response(),
        };
    if let Err(p) = check_text("message", &request.message, MAX_QUESTION) {
        return p.into_response();
    }
    let mode = match mode(request.stream, request.run_async) {
        Ok(m) => m,
        Err(p) => return p.into_response(),
    };
    if let Err(err) = state.0.app.session_for(&principal, &id).await {
        return ask_problem(err).into_response();
    }
    run_question(
        &state,
        principal,
        id,
        request.message.trim().to_string(),
        mode,
    )
    .await
}

async fn resume(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let principal = match state.authenticate(&headers) {
        Ok(p) => p,
        Err(p) => return p.into_response(),
    };
    let row = match state.0.app.session_for(&principal, &id).await {
        Ok((row, _)) => row,
        Err(err) => return ask_problem(err).into_response(),
    };
    match (row.status, row.pending_question) {
        (SessionStatus::Interrupted, Some(question)) => {
            run_question(&state, principal, id, question, Mode::Async).await
        }
        (SessionStatus::Idle | SessionStatus::Running | SessionStatus::Interrupted, _) => {
            Problem::new(
                StatusCode::CONFLICT,
                "not-interrupted",
                "Nothing to resume",
                "only an interrupted investigation can be resumed",
            )
            .into_response()
        }
    }
}

/// Feedback on an investigation's answer, kept with the session (as Slack's "mark
/// answer wrong" button is), to review answers that were wrong.
async fn feedback(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let (principal, request): (Principal, FeedbackRequest) =
        match authenticated(&state, &headers, body) {
            Ok(x) => x,
            Err(p) => return p.into_response(),
        };
    if !matches!(request.rating, -1 | 1) {
        return Problem::bad_request("rating must be 1 (helpful) or -1 (wrong)".to_string())
            .into_response();
    }
    let comment = request
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if let Some(comment) = comment {
        if let Err(p) = check_text("comment", comment, MAX_FEEDBACK_COMMENT) {
            return p.into_response();
        }
    }
    // The same 404 as reading it: another squad's investigation does not exist here.
    if let Err(err) = state.0.app.session_for(&principal, &id).await {
        return ask_problem(err).into_response();
    }
    let store = state.0.app.sessions.store();
    match store
        .add_feedback(
            &id,
            &principal.to_string(),
            request.rating,
            comment,
            Utc::now(),
        )
        .await
    {
        Ok(()) => {
            tracing::info!(session_id = %id, principal = %principal, rating = request.rating, "feedback");
            (
                StatusCode::CREATED,
                Json(json!({"investigation_id": id, "rating": request.rating})),
            )
                .into_response()
        }
        Err(err) => {
            tracing::error!(session_id = %id, error = %err, "storing feedback failed");
            Problem::internal().into_response()
        }
    }
}

/// Runs one question in a tracked task and answers in the requested mode.
async fn run_question(
    state: &ApiState,
    principal: Principal,
    id: String,
    question: String,
    mode: Mode,
) -> Response {
    let (tx, rx) = match mode {
        Mode::Stream => {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        }
        Mode::Sync | Mode::Async => (None, None),
    };
    let (done_tx, done_rx) = oneshot::channel::<std::result::Result<Value, Problem>>();
    let task_state = state.clone();
    let task_id = id.clone();
    state.spawn(async move {
        let events = ApiEvents {
            state: task_state.clone(),
            tx,
        };
        let app = &task_state.0.app;
        let result = app
            .ask_in_session(&principal, &task_id, &question, &events)
            .await;
        let body = match result {
            Ok(outcome) => {
                let outcome_label = if outcome.report.partial {
                    "partial"
                } else {
                    "complete"
                };
                task_state.metrics().investigation(
                    outcome_label,
                    outcome.duration_ms as f64 / 1000.0,
                    outcome.usage.input_tokens
                        + outcome.usage.cache_creation_input_tokens
                        + outcome.usage.cache_read_input_tokens,
                    outcome.usage.output_tokens,
                    outcome.cost_usd,
                );
                match app.sessions.store().session_evidence(&task_id).await {
                    Ok(items) => Ok(answer_body(&task_id, &outcome, &items)),
                    Err(err) => {
                        tracing::error!(session_id = %task_id, error = %err, "reading evidence back failed");
                        Err(Problem::internal())
                    }
                }
            }
            Err(err) => {
                task_state.metrics().investigation("failed", 0.0, 0, 0, 0.0);
                Err(ask_problem(err))
            }
        };
        // The receiver is gone for async requests and closed streams; the
        // answer is in the store either way.
        let _ = done_tx.send(body);
    });
    match mode {
        Mode::Sync => match done_rx.await {
            Ok(Ok(body)) => (StatusCode::OK, Json(body)).into_response(),
            Ok(Err(problem)) => problem.into_response(),
            Err(_) => Problem::internal().into_response(),
        },
        Mode::Async => {
            let url = format!("/api/v1/investigations/{id}");
            let mut response = (
                StatusCode::ACCEPTED,
                Json(json!({"investigation_id": id, "status": "running", "url": url})),
            )
                .into_response();
            if let Ok(value) = HeaderValue::from_str(&url) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Mode::Stream => {
            let Some(rx) = rx else {
                return Problem::internal().into_response();
            };
            let first = futures::stream::once({
                let id = id.clone();
                async move {
                    Ok::<_, Infallible>(
                        SseEvent::default()
                            .event("investigation")
                            .data(json!({"investigation_id": id}).to_string()),
                    )
                }
            });
            let progress = futures::stream::unfold(rx, |mut rx| async move {
                let event = rx.recv().await?;
                let name = match &event {
                    Event::ModelCalled { .. } => "model_called",
                    Event::ToolStarted { .. } => "tool_started",
                    Event::ToolFinished { .. } => "tool_finished",
                    Event::Finished { .. } => "finished",
                };
                let data = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
                Some((
                    Ok::<_, Infallible>(SseEvent::default().event(name).data(data)),
                    rx,
                ))
            });
            let last = futures::stream::once(async move {
                let event = match done_rx.await {
                    Ok(Ok(body)) => SseEvent::default().event("report").data(body.to_string()),
                    Ok(Err(problem)) => SseEvent::default().event("error").data(
                        json!({"status": problem.status.as_u16(), "title": problem.title, "detail": problem.detail}).to_string(),
                    ),
                    Err(_) => SseEvent::default()
                        .event("error")
                        .data(json!({"status": 500, "title": "Internal error"}).to_string()),
                };
                Ok::<_, Infallible>(event)
            });
            Sse::new(first.chain(progress).chain(last))
                .keep_alive(KeepAlive::default())
                .into_response()
        }
    }
}

async fn get_investigation(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let response = get_investigation_inner(&state, &id, &headers).await;
    state.metrics().request(
        "get_investigation",
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn get_investigation_inner(state: &ApiState, id: &str, headers: &HeaderMap) -> Response {
    let principal = match state.authenticate(headers) {
        Ok(p) => p,
        Err(p) => return p.into_response(),
    };
    let row = match state.0.app.session_for(&principal, id).await {
        Ok((row, _)) => row,
        Err(err) => return ask_problem(err).into_response(),
    };
    let store = state.0.app.sessions.store();
    let (reports, items, feedback) = match tokio::try_join!(
        store.session_reports(id),
        store.session_evidence(id),
        store.feedback(id)
    ) {
        Ok(x) => x,
        Err(err) => {
            tracing::error!(session_id = %id, error = %err, "reading an investigation failed");
            return Problem::internal().into_response();
        }
    };
    let last: Option<&StoredReport> = reports.last();
    let report: Option<Report> = last.and_then(|r| serde_json::from_value(r.report.clone()).ok());
    let usage = {
        let (mut input, mut output, mut cost, mut turns, mut calls, mut ms) =
            (0u64, 0u64, 0f64, 0i64, 0i64, 0i64);
        for r in &reports {
            input += r.usage.input_tokens
                + r.usage.cache_creation_input_tokens
                + r.usage.cache_read_input_tokens;
            output += r.usage.output_tokens;
            cost += r.cost_usd;
            turns += r.turns;
            calls += r.tool_calls;
            ms += r.duration_ms;
        }
        json!({"input_tokens": input, "output_tokens": output, "cost_usd": cost, "turns": turns, "tool_calls": calls, "duration_ms": ms})
    };
    let body = json!({
        "investigation_id": row.id,
        "status": match (row.status, report.is_some()) {
            (SessionStatus::Idle, true) => "complete",
            (SessionStatus::Idle, false) => "created",
            (SessionStatus::Running, _) => "running",
            (SessionStatus::Interrupted, _) => "interrupted",
        },
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "pending_question": row.pending_question,
        "synthesis": report.as_ref().map(synthesis),
        "evidence": evidence_by_kind(id, items.iter()),
        "usage": usage,
        "feedback": feedback,
        "report": report,
        "questions": reports.iter().map(|r| json!({
            "seq": r.seq,
            "question": r.question,
            "asked_at": r.created_at,
            "synthesis": serde_json::from_value::<Report>(r.report.clone()).ok().as_ref().map(synthesis),
            "new_evidence": r.new_evidence,
        })).collect::<Vec<_>>(),
    });
    Json(body).into_response()
}

/// Attachment files of one item: the whole item as JSON, tables also as CSV.
fn with_attachments(investigation: &str, item: &EvidenceItem) -> Value {
    let mut files = vec![json!({
        "name": format!("{}.json", item.id),
        "media_type": "application/json",
        "url": format!("/api/v1/evidence/{investigation}/{}?format=json", item.id),
    })];
    if let Some(Content::Table(_)) = &item.content {
        files.push(json!({
            "name": format!("{}.csv", item.id),
            "media_type": "text/csv",
            "url": format!("/api/v1/evidence/{investigation}/{}?format=csv", item.id),
        }));
    }
    let mut value = serde_json::to_value(item).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("attachments".into(), Value::Array(files));
    }
    value
}

async fn get_evidence_all(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let principal = match state.authenticate(&headers) {
        Ok(p) => p,
        Err(p) => return p.into_response(),
    };
    if let Err(err) = state.0.app.session_for(&principal, &id).await {
        return ask_problem(err).into_response();
    }
    match state.0.app.sessions.store().session_evidence(&id).await {
        Ok(items) => Json(json!({
            "investigation_id": id,
            "evidence": items.iter().map(|i| with_attachments(&id, i)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(err) => {
            tracing::error!(session_id = %id, error = %err, "reading evidence failed");
            Problem::internal().into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceQuery {
    #[serde(default)]
    format: Option<String>,
}

async fn get_evidence_item(
    State(state): State<ApiState>,
    Path((id, item_id)): Path<(String, String)>,
    query: std::result::Result<Query<EvidenceQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let principal = match state.authenticate(&headers) {
        Ok(p) => p,
        Err(p) => return p.into_response(),
    };
    let Ok(Query(query)) = query else {
        return Problem::bad_request("the only query parameter is format=json|csv").into_response();
    };
    if let Err(err) = state.0.app.session_for(&principal, &id).await {
        return ask_problem(err).into_response();
    }
    let wanted = item_id.trim().to_ascii_uppercase();
    let item = match state
        .0
        .app
        .sessions
        .store()
        .evidence_item(&id, &wanted)
        .await
    {
        Ok(Some(item)) => item,
        Ok(None) => {
            return Problem::not_found("no such evidence in this investigation").into_response()
        }
        Err(err) => {
            tracing::error!(session_id = %id, error = %err, "reading evidence failed");
            return Problem::internal().into_response();
        }
    };
    match query.format.as_deref() {
        None => Json(with_attachments(&id, &item)).into_response(),
        Some("json") => (
            [(
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.json\"", item.id),
            )],
            Json(serde_json::to_value(&item).unwrap_or(Value::Null)),
        )
            .into_response(),
        Some("csv") => match &item.content {
            Some(Content::Table(table)) => match table.to_csv() {
                Ok(csv) => (
                    [
                        (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                        (
                            header::CONTENT_DISPOSITION,
                            format!("attachment; filename=\"{}.csv\"", item.id),
                        ),
                    ],
                    csv,
                )
                    .into_response(),
                Err(err) => {
                    tracing::error!(error = %err, "csv export failed");
                    Problem::internal().into_response()
                }
            },
            Some(Content::Json(_) | Content::Text(_)) | None => {
                Problem::not_found("this evidence is not a table; it has no CSV").into_response()
            }
        },
        Some(_) => Problem::bad_request("format must be json or csv").into_response(),
    }
}

async fn query_agent(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let (principal, request): (Principal, QueryAgentRequest) =
        match authenticated(&state, &headers, body) {
            Ok(x) => x,
            Err(p) => return p.into_response(),
        };
    if let Err(p) = check_text("prompt", &request.prompt, MAX_QUESTION)
        .and_then(|()| check_text("dataset_id", &request.dataset_id, 200))
    {
        return p.into_response();
    }
    let access = match state.0.app.resolve(&principal) {
        Ok(a) => a,
        Err(denial) => return Problem::forbidden(denial.to_string()).into_response(),
    };
    if access.grant(&request.dataset_id).is_none() {
        // Unknown and not granted look the same, as for investigations.
        return Problem::not_found(format!(
            "no dataset {:?} is available to this API key",
            request.dataset_id
        ))
        .into_response();
    }
    if state.0.app.engine.model_name() == crate::llm::offline::OFFLINE_MODEL_NAME {
        return Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "model-required",
            "Text-to-SQL needs Claude",
            "the query agent writes SQL with Claude; set ANTHROPIC_API_KEY and restart the server (the offline planner cannot write SQL)",
        )
        .into_response();
    }
    match state
        .0
        .app
        .query_agent(&access, &request.dataset_id, &request.prompt)
        .await
    {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => {
            let problem = match err {
                crate::app::QueryAgentError::NotSql => Problem::bad_request(
                    "this dataset is not a SQL source; the query agent works on SQL sources",
                ),
                crate::app::QueryAgentError::NoSql(why) => Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "no-sql",
                    "No query produced",
                    why,
                ),
                crate::app::QueryAgentError::Model(why) => {
                    tracing::warn!(error = %why, "query agent: model failed");
                    Problem::new(
                        StatusCode::BAD_GATEWAY,
                        "model-failed",
                        "The model call failed",
                        "the model could not be reached or refused; try again later",
                    )
                }
            };
            problem.into_response()
        }
    }
}
