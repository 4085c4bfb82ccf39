//! A scripted fake of the Anthropic Messages API on 127.0.0.1:0.
//!
//! It answers `POST /v1/messages` with the replies a test scripts, in the real
//! wire format (message objects, `{"type":"error",...}` bodies, `retry-after`,
//! `request-id`), and checks what it is sent the way the real API does: the
//! key and version headers, the body's required fields, user/assistant
//! alternation, and that every `tool_use` is answered by exactly one
//! `tool_result` in the next message. A request that breaks a rule is recorded
//! in [`FakeAnthropic::violations`] and answered as the API would (401, or 400
//! `invalid_request_error`) without consuming the script, so a test that
//! forgets to look at the violations still fails.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The Messages API's request size limit.
const MAX_REQUEST_BYTES: usize = 32 << 20;
/// The API's limit on `cache_control` breakpoints in one request.
const MAX_CACHE_BREAKPOINTS: usize = 4;
const API_VERSION: &str = "2023-06-01";

/// One scripted answer, used by the next request that passes the checks.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// A 200 message with these raw content blocks and `usage` (input, output).
    Reply {
        content: Vec<Value>,
        stop_reason: &'static str,
        usage: (u64, u64),
    },
    /// An API error body with this status and error type, and `retry-after` (seconds) when set.
    Error {
        status: u16,
        error_type: &'static str,
        retry_after: Option<f64>,
    },
    /// Exactly this response: for bodies the API would never send, or full usage.
    Raw {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Waits, then answers with `then`: for client timeouts.
    Delay { seconds: f64, then: Box<Scripted> },
}

impl Scripted {
    /// A `tool_use` turn: one block per (id, tool name, input).
    pub fn tool_use(calls: &[(&str, &str, Value)]) -> Scripted {
        let content = calls
            .iter()
            .map(|(id, name, input)| json!({"type": "tool_use", "id": id, "name": name, "input": input}))
            .collect();
        Scripted::Reply {
            content,
            stop_reason: "tool_use",
            usage: (100, 50),
        }
    }

    /// A final answer.
    pub fn text(text: &str) -> Scripted {
        Scripted::Reply {
            content: vec![json!({"type": "text", "text": text})],
            stop_reason: "end_turn",
            usage: (100, 20),
        }
    }

    /// An API error without `retry-after`.
    pub fn error(status: u16, error_type: &'static str) -> Scripted {
        Scripted::Error {
            status,
            error_type,
            retry_after: None,
        }
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Scripted>,
    requests: Vec<Value>,
    violations: Vec<String>,
}

struct Shared {
    api_key: String,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test must not hide what the fake recorded.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct FakeAnthropic {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeAnthropic {
    /// The key [`FakeAnthropic::start`] expects in `x-api-key`.
    pub const DEFAULT_KEY: &'static str = "sk-ant-fake-test-key";

    pub async fn start(script: Vec<Scripted>) -> FakeAnthropic {
        Self::start_with_key(Self::DEFAULT_KEY, script).await
    }

    pub async fn start_with_key(api_key: &str, script: Vec<Scripted>) -> FakeAnthropic {
        let shared = Arc::new(Shared {
            api_key: api_key.to_owned(),
            inner: Mutex::new(Inner {
                script: script.into(),
                ..Inner::default()
            }),
        });
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .fallback(unknown_route)
            // The size check is ours, so an oversized request gets the API's JSON error.
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = served.await {
                panic!("fake Anthropic server failed: {e}");
            }
        });
        FakeAnthropic {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT`, for `AnthropicConfig::base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request body received on `/v1/messages`, in order (a body that is
    /// not JSON is recorded as a JSON string).
    pub fn requests(&self) -> Vec<Value> {
        self.shared.lock().requests.clone()
    }

    /// Every rule a request broke, prefixed with the request's index.
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// Scripted answers not used yet.
    pub fn remaining(&self) -> usize {
        self.shared.lock().script.len()
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), then stops.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn unknown_route(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    shared
        .lock()
        .violations
        .push(format!("unexpected request {method} {uri}"));
    error_response(
        StatusCode::NOT_FOUND,
        "not_found_error",
        &format!("{method} {uri} not found"),
        None,
        0,
    )
}

async fn messages(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body);
    let (index, scripted) = {
        let mut inner = shared.lock();
        let index = inner.requests.len();
        inner.requests.push(match &parsed {
            Ok(value) => value.clone(),
            Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
        });
        // Checked in the API's order: auth, headers, size, body.
        if let Some(problem) = check_key(&headers, &shared.api_key) {
            inner.violations.push(format!("request {index}: {problem}"));
            drop(inner);
            return error_response(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid x-api-key",
                None,
                index,
            );
        }
        let mut problems = check_headers(&headers);
        if body.len() > MAX_REQUEST_BYTES {
            inner
                .violations
                .push(format!("request {index}: body larger than the API's limit"));
            drop(inner);
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "Request exceeds the maximum allowed number of bytes.",
                None,
                index,
            );
        }
        match &parsed {
            Ok(value) => problems.extend(check_body(value)),
            Err(e) => problems.push(format!("body is not JSON: {e}")),
        }
        if !problems.is_empty() {
            inner
                .violations
                .extend(problems.iter().map(|p| format!("request {index}: {p}")));
            drop(inner);
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &problems.join("; "),
                None,
                index,
            );
        }
        let scripted = inner.script.pop_front();
        if scripted.is_none() {
            inner
                .violations
                .push(format!("request {index}: script exhausted"));
        }
        (index, scripted)
    };
    let Some(scripted) = scripted else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "script exhausted",
            None,
            index,
        );
    };
    let model = parsed
        .ok()
        .and_then(|body| body.get("model").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    respond(scripted, &model, index).await
}

async fn respond(mut scripted: Scripted, model: &str, index: usize) -> Response {
    // Unwrapped in a loop: a recursive async fn would need boxing.
    loop {
        match scripted {
            Scripted::Delay { seconds, then } => {
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                scripted = *then;
            }
            Scripted::Reply {
                content,
                stop_reason,
                usage: (input_tokens, output_tokens),
            } => {
                let body = json!({
                    "id": format!("msg_fake_{index}"),
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop_reason,
                    "stop_sequence": null,
                    "usage": {
                        "input_tokens": input_tokens,
                        "output_tokens": output_tokens,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                    },
                });
                return json_response(StatusCode::OK, &body, index);
            }
            Scripted::Error {
                status,
                error_type,
                retry_after,
            } => {
                let status = StatusCode::from_u16(status).expect("scripted status is valid");
                return error_response(
                    status,
                    error_type,
                    default_message(error_type),
                    retry_after,
                    index,
                );
            }
            Scripted::Raw {
                status,
                headers,
                body,
            } => {
                let status = StatusCode::from_u16(status).expect("scripted status is valid");
                let mut response = (status, body).into_response();
                for (name, value) in headers {
                    let value = HeaderValue::from_str(&value).expect("scripted header is valid");
                    response.headers_mut().insert(name, value);
                }
                return response;
            }
        }
    }
}

fn default_message(error_type: &str) -> &'static str {
    match error_type {
        "invalid_request_error" => "There was an issue with the format or content of your request.",
        "authentication_error" => "invalid x-api-key",
        "permission_error" => {
            "Your API key does not have permission to use the specified resource."
        }
        "not_found_error" => "The requested resource was not found.",
        "request_too_large" => "Request exceeds the maximum allowed number of bytes.",
        "rate_limit_error" => "Number of request tokens has exceeded your per-minute rate limit.",
        "api_error" => "Internal server error",
        "overloaded_error" => "Overloaded",
        "timeout_error" => "Request timed out",
        _ => "scripted error",
    }
}

fn json_response(status: StatusCode, body: &Value, index: usize) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(&format!("req_fake_{index}")) {
        headers.insert("request-id", id);
    }
    response
}

fn error_response(
    status: StatusCode,
    error_type: &str,
    message: &str,
    retry_after: Option<f64>,
    index: usize,
) -> Response {
    let body = json!({"type": "error", "error": {"type": error_type, "message": message}});
    let mut response = json_response(status, &body, index);
    if let Some(seconds) = retry_after {
        let value = HeaderValue::from_str(&seconds.to_string()).expect("retry-after is ASCII");
        response.headers_mut().insert("retry-after", value);
    }
    response
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn check_key(headers: &HeaderMap, expected: &str) -> Option<String> {
    match header(headers, "x-api-key") {
        None => Some("x-api-key header missing".to_owned()),
        // Not echoed: the violation list is printed by failing tests.
        Some(key) if key != expected => Some("x-api-key is not the expected key".to_owned()),
        Some(_) => None,
    }
}

fn check_headers(headers: &HeaderMap) -> Vec<String> {
    let mut problems = Vec::new();
    match header(headers, "anthropic-version") {
        None => problems.push("anthropic-version header missing".to_owned()),
        Some(API_VERSION) => {}
        Some(other) => problems.push(format!(
            "anthropic-version is {other:?}, expected {API_VERSION}"
        )),
    }
    let content_type = header(headers, "content-type").unwrap_or("");
    if !content_type.starts_with("application/json") {
        problems.push(format!(
            "content-type is {content_type:?}, expected application/json"
        ));
    }
    if headers.contains_key("authorization") {
        problems.push("authorization header sent (the Messages API takes x-api-key)".to_owned());
    }
    problems
}

/// Every rule of the request body this fake enforces, as readable problems.
fn check_body(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(object) = body.as_object() else {
        return vec!["body is not a JSON object".to_owned()];
    };
    match object.get("model").and_then(Value::as_str) {
        Some(model) if !model.is_empty() => {}
        Some(_) => problems.push("model: empty".to_owned()),
        None => problems.push("model: missing or not a string".to_owned()),
    }
    match object.get("max_tokens").and_then(Value::as_u64) {
        Some(0) => problems.push("max_tokens: must be at least 1".to_owned()),
        Some(_) => {}
        None => problems.push("max_tokens: missing or not a positive integer".to_owned()),
    }
    let mut breakpoints = 0;
    if let Some(system) = object.get("system") {
        check_system(system, &mut breakpoints, &mut problems);
    }
    let tool_names = match object.get("tools") {
        Some(tools) => check_tools(tools, &mut breakpoints, &mut problems),
        None => BTreeSet::new(),
    };
    if let Some(choice) = object.get("tool_choice") {
        check_tool_choice(
            choice,
            object.contains_key("tools"),
            &tool_names,
            &mut problems,
        );
    }
    match object.get("messages") {
        Some(messages) => check_messages(messages, &mut breakpoints, &mut problems),
        None => problems.push("messages: missing".to_owned()),
    }
    if breakpoints > MAX_CACHE_BREAKPOINTS {
        problems.push(format!(
            "{breakpoints} cache_control blocks, the API allows {MAX_CACHE_BREAKPOINTS}"
        ));
    }
    problems
}

fn check_cache_control(
    block: &Value,
    at: &str,
    breakpoints: &mut usize,
    problems: &mut Vec<String>,
) {
    let Some(cache_control) = block.get("cache_control") else {
        return;
    };
    *breakpoints += 1;
    if cache_control.get("type").and_then(Value::as_str) != Some("ephemeral") {
        problems.push(format!("{at}.cache_control: type must be \"ephemeral\""));
    }
}

fn check_system(system: &Value, breakpoints: &mut usize, problems: &mut Vec<String>) {
    match system {
        Value::String(_) => {}
        Value::Array(blocks) => {
            for (i, block) in blocks.iter().enumerate() {
                let at = format!("system[{i}]");
                if block.get("type").and_then(Value::as_str) != Some("text") {
                    problems.push(format!("{at}: only text blocks are allowed"));
                }
                match block.get("text").and_then(Value::as_str) {
                    Some(text) if !text.is_empty() => {}
                    Some(_) => {
                        problems.push(format!("{at}: text content blocks must be non-empty"))
                    }
                    None => problems.push(format!("{at}.text: missing")),
                }
                check_cache_control(block, &at, breakpoints, problems);
            }
        }
        _ => problems.push("system: must be a string or a list of text blocks".to_owned()),
    }
}

fn check_tools(
    tools: &Value,
    breakpoints: &mut usize,
    problems: &mut Vec<String>,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let Some(tools) = tools.as_array() else {
        problems.push("tools: must be a list".to_owned());
        return names;
    };
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        match tool.get("name").and_then(Value::as_str) {
            Some(name) if valid_tool_name(name) => {
                if !names.insert(name.to_owned()) {
                    problems.push(format!("{at}: tool names must be unique ({name})"));
                }
            }
            Some(name) => problems.push(format!(
                "{at}.name: {name:?} must match ^[a-zA-Z0-9_-]{{1,64}}$"
            )),
            None => problems.push(format!("{at}.name: missing")),
        }
        if tool.get("description").is_some_and(|d| !d.is_string()) {
            problems.push(format!("{at}.description: must be a string"));
        }
        match tool.get("input_schema") {
            Some(schema) if schema.get("type").and_then(Value::as_str) == Some("object") => {}
            Some(_) => problems.push(format!(
                "{at}.input_schema: must be a JSON schema with type \"object\""
            )),
            None => problems.push(format!("{at}.input_schema: missing")),
        }
        check_cache_control(tool, &at, breakpoints, problems);
    }
    names
}

fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_tool_choice(
    choice: &Value,
    has_tools: bool,
    tool_names: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    match choice.get("type").and_then(Value::as_str) {
        Some("auto" | "none") => {}
        Some("any") => {
            if !has_tools {
                problems.push("tool_choice: any requires tools".to_owned());
            }
        }
        Some("tool") => match choice.get("name").and_then(Value::as_str) {
            Some(name) if tool_names.contains(name) => {}
            Some(name) => problems.push(format!("tool_choice: tool {name:?} is not in tools")),
            None => problems.push("tool_choice.name: missing".to_owned()),
        },
        Some(other) => problems.push(format!("tool_choice.type: unknown {other:?}")),
        None => problems.push("tool_choice.type: missing".to_owned()),
    }
}

fn check_messages(messages: &Value, breakpoints: &mut usize, problems: &mut Vec<String>) {
    let Some(messages) = messages.as_array() else {
        problems.push("messages: must be a list".to_owned());
        return;
    };
    if messages.is_empty() {
        problems.push("messages: at least one message is required".to_owned());
        return;
    }
    let mut seen_ids: HashMap<String, usize> = HashMap::new();
    // The tool_use ids of the previous assistant message, awaiting results.
    let mut pending: Option<(usize, Vec<String>)> = None;
    let mut previous_role: Option<&str> = None;
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = message.get("role").and_then(Value::as_str);
        match (i, previous_role, role) {
            (_, _, None) => problems.push(format!("{at}.role: missing")),
            (_, _, Some(role)) if role != "user" && role != "assistant" => {
                problems.push(format!("{at}.role: unknown {role:?}"));
            }
            (0, _, Some("assistant")) => {
                problems.push(format!("{at}: the first message must use the user role"))
            }
            (_, Some(previous), Some(role)) if previous == role => {
                problems.push(format!(
                    "{at}: roles must alternate between user and assistant (two {role} messages)"
                ));
            }
            _ => {}
        }
        previous_role = role.or(previous_role);
        let blocks = content_blocks(message, &at, breakpoints, problems);
        let (mut uses, mut results) = (Vec::new(), Vec::new());
        for (j, block) in blocks.iter().enumerate() {
            let at = format!("{at}.content[{j}]");
            match block.get("type").and_then(Value::as_str) {
                Some("tool_use") => {
                    if role != Some("assistant") {
                        problems.push(format!(
                            "{at}: tool_use is only allowed in assistant messages"
                        ));
                    }
                    match block.get("id").and_then(Value::as_str) {
                        Some(id) if !id.is_empty() => {
                            if let Some(first) = seen_ids.insert(id.to_owned(), i) {
                                problems.push(format!(
                                    "{at}: tool_use id {id} already used in messages[{first}]"
                                ));
                            }
                            uses.push(id.to_owned());
                        }
                        _ => problems.push(format!("{at}.id: missing")),
                    }
                    if block.get("name").and_then(Value::as_str).is_none() {
                        problems.push(format!("{at}.name: missing"));
                    }
                    if !block.get("input").is_some_and(Value::is_object) {
                        problems.push(format!("{at}.input: must be an object"));
                    }
                }
                Some("tool_result") => {
                    if role != Some("user") {
                        problems.push(format!(
                            "{at}: tool_result is only allowed in user messages"
                        ));
                    }
                    // The API wants results first, any text after them.
                    if results.len() != j {
                        problems.push(format!(
                            "{at}: tool_result blocks must come before any other content"
                        ));
                    }
                    match block.get("tool_use_id").and_then(Value::as_str) {
                        Some(id) => results.push(id.to_owned()),
                        None => problems.push(format!("{at}.tool_use_id: missing")),
                    }
                    match block.get("content") {
                        None | Some(Value::String(_) | Value::Array(_)) => {}
                        Some(_) => {
                            problems.push(format!("{at}.content: must be a string or a list"))
                        }
                    }
                }
                Some("text") => match block.get("text").and_then(Value::as_str) {
                    Some(text) if !text.is_empty() => {}
                    Some(_) => {
                        problems.push(format!("{at}: text content blocks must be non-empty"))
                    }
                    None => problems.push(format!("{at}.text: missing")),
                },
                Some(other) => problems.push(format!("{at}: unexpected block type {other:?}")),
                None => problems.push(format!("{at}.type: missing")),
            }
        }
        // Results answer the assistant message just before, and only it.
        let expected = pending.take();
        match expected {
            Some((asked_at, ids)) => {
                if role != Some("user") {
                    problems.push(format!(
                        "messages[{asked_at}]: tool_use ids {ids:?} must be answered by tool_result blocks in the next (user) message"
                    ));
                } else {
                    check_pairing(&at, asked_at, &ids, &results, problems);
                }
            }
            None => {
                for id in &results {
                    problems.push(format!(
                        "{at}: tool_result for {id} has no tool_use in the previous assistant message"
                    ));
                }
            }
        }
        if !uses.is_empty() {
            pending = Some((i, uses));
        }
    }
    if let Some((asked_at, ids)) = pending {
        problems.push(format!(
            "messages[{asked_at}]: tool_use ids {ids:?} have no tool_result (the conversation ends there)"
        ));
    }
}

fn check_pairing(
    at: &str,
    asked_at: usize,
    asked: &[String],
    answered: &[String],
    problems: &mut Vec<String>,
) {
    for id in asked {
        match answered.iter().filter(|a| *a == id).count() {
            1 => {}
            0 => problems.push(format!(
                "{at}: tool_use {id} from messages[{asked_at}] has no tool_result in this message"
            )),
            n => problems.push(format!(
                "{at}: tool_use {id} has {n} tool_result blocks, expected one"
            )),
        }
    }
    for id in answered {
        if !asked.contains(id) {
            problems.push(format!(
                "{at}: tool_result for {id} matches no tool_use in messages[{asked_at}]"
            ));
        }
    }
}

/// The blocks of a message (a string content is one text block).
fn content_blocks(
    message: &Value,
    at: &str,
    breakpoints: &mut usize,
    problems: &mut Vec<String>,
) -> Vec<Value> {
    match message.get("content") {
        Some(Value::String(text)) => {
            if text.is_empty() {
                problems.push(format!("{at}.content: must be non-empty"));
            }
            vec![json!({"type": "text", "text": text})]
        }
        Some(Value::Array(blocks)) => {
            if blocks.is_empty() {
                problems.push(format!("{at}.content: must be non-empty"));
            }
            for (j, block) in blocks.iter().enumerate() {
                check_cache_control(block, &format!("{at}.content[{j}]"), breakpoints, problems);
            }
            blocks.clone()
        }
        _ => {
            problems.push(format!(
                "{at}.content: must be a string or a list of blocks"
            ));
            Vec::new()
        }
    }
}
