//! The Anthropic Messages API client: one `POST /v1/messages` per turn, with
//! the system prompt and the tool list marked for prompt caching, retries with
//! full-jitter backoff that honour `retry-after`, and cost accounting.
//!
//! The API key lives in a [`Secret`] and goes out only as a sensitive header;
//! every error message built from server text is scrubbed of it as well.

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    ContentBlock, Error, Message, Model, ModelRequest, ModelResponse, Pricing, Result, StopReason,
    ToolChoice, ToolDef, Usage,
};
use crate::config::Secret;

pub const API_KEY_ENV: &str = "ANTHROPIC_API_KEY";
pub const BASE_URL_ENV: &str = "ANTHROPIC_BASE_URL";
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
pub const API_VERSION: &str = "2023-06-01";
pub const DEFAULT_MAX_RETRIES: u32 = 4;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

const MESSAGES_PATH: &str = "/v1/messages";
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A reply is bounded by `max_tokens`; this only stops a broken proxy from eating memory.
const MAX_RESPONSE_BYTES: usize = 32 << 20;
/// Error bodies are short JSON; anything past this is noise (an HTML error page).
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;
const MAX_ERROR_MESSAGE_CHARS: usize = 500;
const MAX_REQUEST_ID_CHARS: usize = 100;
const REDACTED: &str = "***";

/// Where and how to reach the API. Debug shows the key as `***`.
#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    pub api_key: Secret,
    /// Without the `/v1/messages` path; a trailing `/` is ignored.
    pub base_url: String,
    pub model: String,
    /// Retries after the first attempt, so at most `max_retries + 1` requests.
    pub max_retries: u32,
    /// For one attempt, connecting to the last byte of the body.
    pub request_timeout: Duration,
    /// Cap on one backoff wait; a `retry-after` longer than this ends the call.
    pub max_backoff: Duration,
    pub anthropic_version: String,
}

impl AnthropicConfig {
    /// The defaults, with this key.
    pub fn new(api_key: Secret) -> Self {
        AnthropicConfig {
            api_key,
            base_url: DEFAULT_BASE_URL.to_owned(),
            model: DEFAULT_MODEL.to_owned(),
            max_retries: DEFAULT_MAX_RETRIES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_backoff: DEFAULT_MAX_BACKOFF,
            anthropic_version: API_VERSION.to_owned(),
        }
    }

    /// Reads `ANTHROPIC_API_KEY` and `ANTHROPIC_BASE_URL`. None when the key
    /// is unset, blank or not UTF-8: the caller then runs without a model.
    pub fn from_env(model: Option<String>) -> Option<Self> {
        Self::from_values(
            std::env::var(API_KEY_ENV).ok(),
            std::env::var(BASE_URL_ENV).ok(),
            model,
        )
    }

    /// Split from `from_env` so tests need not mutate the process environment.
    fn from_values(
        api_key: Option<String>,
        base_url: Option<String>,
        model: Option<String>,
    ) -> Option<Self> {
        // Keys pasted from files or `$(cat …)` often carry a newline; real keys have no spaces.
        let api_key = api_key?.trim().to_owned();
        if api_key.is_empty() {
            return None;
        }
        let mut config = AnthropicConfig::new(Secret::new(api_key));
        if let Some(base_url) = base_url.map(|url| url.trim().to_owned()) {
            if !base_url.is_empty() {
                config.base_url = base_url;
            }
        }
        if let Some(model) = model.map(|model| model.trim().to_owned()) {
            if !model.is_empty() {
                config.model = model;
            }
        }
        Some(config)
    }
}

/// Why an [`AnthropicModel`] could not be built. Never contains the key.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the Anthropic API key is empty")]
    EmptyKey,
    #[error("the Anthropic API key contains characters not allowed in an HTTP header")]
    InvalidKey,
    #[error("invalid anthropic-version {0:?}")]
    InvalidVersion(String),
    #[error("invalid Anthropic base URL {url:?}: {reason}")]
    InvalidBaseUrl { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Claude over the Messages API.
pub struct AnthropicModel {
    config: AnthropicConfig,
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    pricing: Pricing,
}

impl fmt::Debug for AnthropicModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicModel")
            .field("model", &self.config.model)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl AnthropicModel {
    pub fn new(config: AnthropicConfig) -> std::result::Result<Self, BuildError> {
        let url = messages_url(&config.base_url)?;
        let headers = fixed_headers(&config)?;
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(config.request_timeout))
            // A redirect would resend x-api-key to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BuildError::Client(error_chain(&e)))?;
        let pricing = pricing_for(&config.model);
        Ok(AnthropicModel {
            config,
            client,
            url,
            headers,
            pricing,
        })
    }

    pub fn config(&self) -> &AnthropicConfig {
        &self.config
    }

    async fn complete_unscrubbed(&self, request: &ModelRequest) -> Result<ModelResponse> {
        let body = serde_json::to_vec(&WireRequest::new(&self.config.model, request))
            .map_err(|e| Error::Protocol(format!("cannot encode the request: {e}")))?;
        let max_attempts = self.config.max_retries.saturating_add(1);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let Attempt { status, outcome } = self.attempt(&body).await;
            let status = status.map_or_else(|| "none".to_owned(), |s| s.to_string());
            let (message, retry_after) = match outcome {
                Outcome::Done(bytes) => {
                    self.log_attempt(attempt, &status, None, "succeeded");
                    return parse_response(&bytes);
                }
                Outcome::Fail(error) => {
                    self.log_attempt(attempt, &status, None, "failed, not retryable");
                    return Err(error);
                }
                Outcome::Retry {
                    message,
                    retry_after,
                } => (message, retry_after),
            };
            if attempt >= max_attempts {
                self.log_attempt(attempt, &status, None, "failed, retries exhausted");
                return Err(Error::Unavailable {
                    attempts: attempt,
                    message,
                });
            }
            let wait = match retry_after {
                Some(asked) if asked > self.config.max_backoff => {
                    self.log_attempt(attempt, &status, None, "failed, retry-after too long");
                    return Err(Error::Unavailable {
                        attempts: attempt,
                        message: format!(
                            "{message}; the server asked to wait {}s, more than the {}s limit",
                            asked.as_secs_f64(),
                            self.config.max_backoff.as_secs_f64()
                        ),
                    });
                }
                Some(asked) => asked,
                None => backoff(attempt, self.config.max_backoff),
            };
            self.log_attempt(attempt, &status, Some(wait), "failed, retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// The one debug line per attempt. Messages stay out: they go into the error.
    fn log_attempt(&self, attempt: u32, status: &str, wait: Option<Duration>, outcome: &str) {
        tracing::debug!(
            model = %self.config.model,
            attempt,
            status,
            wait_ms = wait.map_or(0, millis),
            outcome,
            "anthropic messages request"
        );
    }

    /// One HTTP exchange, classified.
    async fn attempt(&self, body: &[u8]) -> Attempt {
        let sent = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body.to_vec())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return self.transport_failure(None, &e),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let request_id = response
            .headers()
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let request_id = request_id.as_deref();
        let outcome = match classify(status) {
            StatusClass::Success => match read_body(response, MAX_RESPONSE_BYTES).await {
                Ok(Body::Complete(bytes)) => Outcome::Done(bytes),
                Ok(Body::Truncated(_)) => Outcome::Fail(Error::Protocol(format!(
                    "response body larger than {MAX_RESPONSE_BYTES} bytes"
                ))),
                Err(e) => return self.transport_failure(Some(status), &e),
            },
            StatusClass::Auth => {
                // The reason ("invalid x-api-key") is only logged: Auth carries no message.
                let detail = self.error_detail(response, request_id).await;
                tracing::debug!(status, detail = %detail, "anthropic authentication failed");
                Outcome::Fail(Error::Auth { status })
            }
            StatusClass::Rejected => Outcome::Fail(Error::Rejected {
                status,
                message: self.error_detail(response, request_id).await,
            }),
            StatusClass::Retry => Outcome::Retry {
                message: format!(
                    "HTTP {status} {}",
                    self.error_detail(response, request_id).await
                ),
                retry_after,
            },
            StatusClass::Unexpected => Outcome::Fail(Error::Protocol(format!(
                "unexpected HTTP {status} from {}: {}",
                self.url,
                self.error_detail(response, request_id).await
            ))),
        };
        Attempt {
            status: Some(status),
            outcome,
        }
    }

    fn transport_failure(&self, status: Option<u16>, error: &reqwest::Error) -> Attempt {
        let outcome = if error.is_builder() {
            Outcome::Fail(Error::Protocol(format!(
                "cannot build the request: {}",
                error_chain(error)
            )))
        } else if error.is_timeout() {
            Outcome::Retry {
                message: format!(
                    "no complete response within {}s",
                    self.config.request_timeout.as_secs_f64()
                ),
                retry_after: None,
            }
        } else {
            Outcome::Retry {
                message: error_chain(error),
                retry_after: None,
            }
        };
        Attempt { status, outcome }
    }

    /// `overloaded_error: Overloaded (request-id req_…)` from an error response,
    /// or the start of whatever text came instead of the documented JSON.
    /// Scrubbed here, before it can reach a log line.
    async fn error_detail(&self, response: reqwest::Response, request_id: Option<&str>) -> String {
        let body = match read_body(response, MAX_ERROR_BODY_BYTES).await {
            Ok(Body::Complete(bytes) | Body::Truncated(bytes)) => bytes,
            Err(e) => format!("(error body unreadable: {})", error_chain(&e)).into_bytes(),
        };
        let mut detail = match serde_json::from_slice::<ApiErrorBody>(&body) {
            Ok(ApiErrorBody { error }) => format!("{}: {}", error.kind, error.message),
            Err(_) => {
                let text = String::from_utf8_lossy(&body);
                let text = text.trim();
                if text.is_empty() {
                    "(empty body)".to_owned()
                } else {
                    text.to_owned()
                }
            }
        };
        // Redacted before truncating, which could cut the key past recognition.
        detail = redact(detail, self.config.api_key.expose());
        truncate_chars(&mut detail, MAX_ERROR_MESSAGE_CHARS);
        if let Some(id) = request_id {
            let mut id = id.to_owned();
            truncate_chars(&mut id, MAX_REQUEST_ID_CHARS);
            detail.push_str(&format!(" (request-id {id})"));
        }
        redact(detail, self.config.api_key.expose())
    }
}

#[async_trait]
impl Model for AnthropicModel {
    fn name(&self) -> &str {
        &self.config.model
    }

    fn pricing(&self) -> Pricing {
        self.pricing
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse> {
        self.complete_unscrubbed(request)
            .await
            .map_err(|e| scrub(e, self.config.api_key.expose()))
    }
}

struct Attempt {
    /// None when no response came.
    status: Option<u16>,
    outcome: Outcome,
}

enum Outcome {
    Done(Vec<u8>),
    Retry {
        message: String,
        retry_after: Option<Duration>,
    },
    Fail(Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusClass {
    Success,
    Auth,
    Rejected,
    Retry,
    Unexpected,
}

/// As the official SDKs do: timeouts, conflicts, rate limits and every 5xx
/// (529 is `overloaded_error`) may pass; other 4xx will not.
fn classify(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        401 | 403 => StatusClass::Auth,
        408 | 409 | 429 | 500..=599 => StatusClass::Retry,
        400..=499 => StatusClass::Rejected,
        // 1xx, and 3xx since redirects are not followed.
        _ => StatusClass::Unexpected,
    }
}

/// `retry-after` in seconds, fractions allowed. An HTTP date is ignored (the
/// API sends seconds), and so falls back to the backoff.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    if seconds.is_nan() || seconds < 0.0 {
        return None;
    }
    // Too large for a Duration is still "longer than we will wait".
    Some(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
}

/// Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))].
fn backoff(attempt: u32, cap: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(31);
    let ceiling = BACKOFF_BASE.saturating_mul(1u32 << exponent).min(cap);
    let ceiling_ms = millis(ceiling);
    Duration::from_millis(rand::thread_rng().gen_range(0..=ceiling_ms))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn messages_url(base_url: &str) -> std::result::Result<reqwest::Url, BuildError> {
    let invalid = |reason: String| BuildError::InvalidBaseUrl {
        url: base_url.to_owned(),
        reason,
    };
    let joined = format!("{}{MESSAGES_PATH}", base_url.trim_end_matches('/'));
    let url = reqwest::Url::parse(&joined).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "https" | "http" => {}
        other => return Err(invalid(format!("scheme {other:?} is not http or https"))),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed".to_owned()));
    }
    Ok(url)
}

fn fixed_headers(config: &AnthropicConfig) -> std::result::Result<HeaderMap, BuildError> {
    if config.api_key.is_empty() {
        return Err(BuildError::EmptyKey);
    }
    let mut key =
        HeaderValue::from_str(config.api_key.expose()).map_err(|_| BuildError::InvalidKey)?;
    // Keeps it out of reqwest's and hyper's Debug output.
    key.set_sensitive(true);
    let version = HeaderValue::from_str(&config.anthropic_version)
        .map_err(|_| BuildError::InvalidVersion(config.anthropic_version.clone()))?;
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static("x-api-key"), key);
    headers.insert(HeaderName::from_static("anthropic-version"), version);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(headers)
}

enum Body {
    Complete(Vec<u8>),
    Truncated(Vec<u8>),
}

async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> std::result::Result<Body, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok(Body::Truncated(body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Body::Complete(body))
}

#[derive(Deserialize)]
struct ApiErrorBody {
    error: ApiError,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

fn truncate_chars(text: &mut String, max: usize) {
    if let Some((cut, _)) = text.char_indices().nth(max) {
        text.truncate(cut);
        text.push('…');
    }
}

/// reqwest's Display stops at "error sending request"; the cause is in the chain.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn redact(text: String, key: &str) -> String {
    if key.is_empty() || !text.contains(key) {
        text
    } else {
        text.replace(key, REDACTED)
    }
}

/// Belt and braces: server text is redacted where it is read, and no other
/// path puts the key in a message, but every error is checked on the way out.
fn scrub(error: Error, key: &str) -> Error {
    match error {
        Error::Rejected { status, message } => Error::Rejected {
            status,
            message: redact(message, key),
        },
        Error::Auth { status } => Error::Auth { status },
        Error::Unavailable { attempts, message } => Error::Unavailable {
            attempts,
            message: redact(message, key),
        },
        Error::Timeout(duration) => Error::Timeout(duration),
        Error::Protocol(message) => Error::Protocol(redact(message, key)),
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    /// Omitted when empty: the API rejects empty text blocks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<SystemBlock<'a>>,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'a ToolChoice>,
}

impl<'a> WireRequest<'a> {
    fn new(model: &'a str, request: &'a ModelRequest) -> Self {
        let system = if request.system.is_empty() {
            Vec::new()
        } else {
            vec![SystemBlock {
                kind: "text",
                text: &request.system,
                cache_control: EPHEMERAL,
            }]
        };
        // The cache prefix runs tools → system → messages, so a breakpoint on the
        // last tool caches the whole list and the one on the system prompt both.
        let last = request.tools.len().saturating_sub(1);
        let tools = request
            .tools
            .iter()
            .enumerate()
            .map(|(i, tool)| WireTool::new(tool, i == last))
            .collect();
        WireRequest {
            model,
            max_tokens: request.max_tokens,
            system,
            messages: &request.messages,
            tools,
            tool_choice: request.tool_choice.as_ref(),
        }
    }
}

#[derive(Serialize, Clone, Copy)]
struct CacheControl {
    #[serde(rename = "type")]
    kind: &'static str,
}

const EPHEMERAL: CacheControl = CacheControl { kind: "ephemeral" };

#[derive(Serialize)]
struct SystemBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    cache_control: CacheControl,
}

#[derive(Serialize)]
struct WireTool<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<CacheControl>,
}

impl<'a> WireTool<'a> {
    fn new(tool: &'a ToolDef, cached: bool) -> Self {
        WireTool {
            name: &tool.name,
            description: &tool.description,
            input_schema: &tool.input_schema,
            cache_control: cached.then_some(EPHEMERAL),
        }
    }
}

#[derive(Deserialize)]
struct WireResponse {
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<StopReason>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// Lenient where `Usage` is strict: counts may be null or absent.
#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(wire: WireUsage) -> Self {
        Usage {
            input_tokens: wire.input_tokens.unwrap_or(0),
            output_tokens: wire.output_tokens.unwrap_or(0),
            cache_creation_input_tokens: wire.cache_creation_input_tokens.unwrap_or(0),
            cache_read_input_tokens: wire.cache_read_input_tokens.unwrap_or(0),
        }
    }
}

fn parse_response(body: &[u8]) -> Result<ModelResponse> {
    let wire: WireResponse = serde_json::from_slice(body)
        .map_err(|e| Error::Protocol(format!("cannot decode the response: {e}")))?;
    let mut content = Vec::with_capacity(wire.content.len());
    for (index, block) in wire.content.into_iter().enumerate() {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "text" | "tool_use" => {
                let parsed = serde_json::from_value::<ContentBlock>(block).map_err(|e| {
                    Error::Protocol(format!("content block {index} is malformed: {e}"))
                })?;
                content.push(parsed);
            }
            // thinking, server tool blocks and whatever comes next carry nothing we act on.
            other => {
                tracing::debug!(block_type = other, index, "ignoring content block");
            }
        }
    }
    Ok(ModelResponse {
        content,
        stop_reason: wire.stop_reason.unwrap_or(StopReason::Unknown),
        usage: wire.usage.unwrap_or_default().into(),
    })
}

/// USD per million tokens by model name; unknown names get Sonnet's prices.
/// Cache writes (5-minute TTL) cost 1.25x input, cache reads 0.1x.
pub fn pricing_for(model: &str) -> Pricing {
    const fn priced(input: f64, output: f64, cache_write: f64, cache_read: f64) -> Pricing {
        Pricing {
            input,
            output,
            cache_write,
            cache_read,
        }
    }
    const OPUS_4: Pricing = priced(15.0, 75.0, 18.75, 1.5);
    const OPUS_4_5: Pricing = priced(5.0, 25.0, 6.25, 0.5);
    const SONNET: Pricing = priced(3.0, 15.0, 3.75, 0.30);
    const HAIKU_4_5: Pricing = priced(1.0, 5.0, 1.25, 0.10);
    const HAIKU_3_5: Pricing = priced(0.8, 4.0, 1.0, 0.08);

    let Some((family, version)) = family_and_version(model) else {
        return SONNET;
    };
    match (family, version.as_slice()) {
        // Opus 4.5 cut the price; later 4.x releases kept it.
        ("opus", [4, minor, ..]) if *minor >= 5 => OPUS_4_5,
        ("opus", [4] | [4, 0 | 1, ..]) => OPUS_4,
        ("haiku", [4, minor, ..]) if *minor >= 5 => HAIKU_4_5,
        ("haiku", [3, 5, ..]) => HAIKU_3_5,
        _ => SONNET,
    }
}

/// `claude-opus-4-5-20251101` → ("opus", [4, 5]); `claude-3-5-haiku-latest` →
/// ("haiku", [3, 5]). Dates (8 digits) and tags are not version numbers.
fn family_and_version(model: &str) -> Option<(&'static str, Vec<u32>)> {
    let parts: Vec<&str> = model.split('-').collect();
    let (at, family) = parts.iter().enumerate().find_map(|(i, part)| match *part {
        "opus" => Some((i, "opus")),
        "sonnet" => Some((i, "sonnet")),
        "haiku" => Some((i, "haiku")),
        _ => None,
    })?;
    let numbers = |parts: &[&str]| -> Vec<u32> {
        parts
            .iter()
            .take_while(|p| p.len() <= 2)
            .map_while(|p| p.parse::<u32>().ok())
            .collect()
    };
    // New names put the version after the family, old ones before it.
    let after = numbers(&parts[at + 1..]);
    if !after.is_empty() {
        return Some((family, after));
    }
    let before: Vec<&str> = parts[..at]
        .iter()
        .copied()
        .filter(|p| *p != "claude")
        .collect();
    Some((family, numbers(&before)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_parses_seconds_only() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0.05 "), Some(Duration::from_millis(50)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1e30"), Some(Duration::MAX));
        assert_eq!(parse_retry_after("inf"), Some(Duration::MAX));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after(""), None);
    }

    #[test]
    fn backoff_is_jittered_under_the_exponential_ceiling_and_the_cap() {
        let cap = Duration::from_secs(30);
        for attempt in 1..=40 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(1u32 << (attempt - 1).min(31))
                .min(cap);
            for _ in 0..50 {
                assert!(backoff(attempt, cap) <= ceiling, "attempt {attempt}");
            }
        }
        assert!(backoff(u32::MAX, Duration::from_millis(7)) <= Duration::from_millis(7));
        assert_eq!(backoff(3, Duration::ZERO), Duration::ZERO);
        // Full jitter spreads waits: 200 draws under a 2 s ceiling are not all equal.
        let draws: std::collections::BTreeSet<_> = (0..200).map(|_| backoff(3, cap)).collect();
        assert!(draws.len() > 10);
    }

    #[test]
    fn statuses_are_classified() {
        for status in [400, 404, 413, 422] {
            assert_eq!(classify(status), StatusClass::Rejected, "{status}");
        }
        for status in [401, 403] {
            assert_eq!(classify(status), StatusClass::Auth, "{status}");
        }
        for status in [408, 409, 429, 500, 502, 503, 504, 529] {
            assert_eq!(classify(status), StatusClass::Retry, "{status}");
        }
        for status in [200, 201] {
            assert_eq!(classify(status), StatusClass::Success, "{status}");
        }
        for status in [100, 301, 307] {
            assert_eq!(classify(status), StatusClass::Unexpected, "{status}");
        }
    }

    #[test]
    fn prices_follow_the_model_family_and_version() {
        let cases: &[(&str, f64, f64, f64, f64)] = &[
            ("claude-opus-4-20250514", 15.0, 75.0, 18.75, 1.5),
            ("claude-opus-4-0", 15.0, 75.0, 18.75, 1.5),
            ("claude-opus-4-1", 15.0, 75.0, 18.75, 1.5),
            ("claude-opus-4-1-20250805", 15.0, 75.0, 18.75, 1.5),
            ("claude-opus-4-5", 5.0, 25.0, 6.25, 0.5),
            ("claude-opus-4-5-20251101", 5.0, 25.0, 6.25, 0.5),
            ("claude-opus-4-6", 5.0, 25.0, 6.25, 0.5),
            ("claude-sonnet-4-5", 3.0, 15.0, 3.75, 0.30),
            ("claude-sonnet-4-20250514", 3.0, 15.0, 3.75, 0.30),
            ("claude-3-7-sonnet-latest", 3.0, 15.0, 3.75, 0.30),
            ("claude-haiku-4-5", 1.0, 5.0, 1.25, 0.10),
            ("claude-haiku-4-5-20251001", 1.0, 5.0, 1.25, 0.10),
            ("claude-3-5-haiku-20241022", 0.8, 4.0, 1.0, 0.08),
            ("claude-3-5-haiku-latest", 0.8, 4.0, 1.0, 0.08),
            ("some-future-model", 3.0, 15.0, 3.75, 0.30),
            ("", 3.0, 15.0, 3.75, 0.30),
        ];
        for &(model, input, output, cache_write, cache_read) in cases {
            let expected = Pricing {
                input,
                output,
                cache_write,
                cache_read,
            };
            assert_eq!(pricing_for(model), expected, "{model}");
        }
    }

    #[test]
    fn config_from_values() {
        assert!(AnthropicConfig::from_values(None, None, None).is_none());
        assert!(AnthropicConfig::from_values(Some(String::new()), None, None).is_none());
        assert!(AnthropicConfig::from_values(Some(" \n".into()), None, None).is_none());

        let Some(defaults) = AnthropicConfig::from_values(Some("sk-ant-x\n".into()), None, None)
        else {
            panic!("a key gives a config");
        };
        assert_eq!(defaults.api_key.expose(), "sk-ant-x");
        assert_eq!(defaults.base_url, DEFAULT_BASE_URL);
        assert_eq!(defaults.model, DEFAULT_MODEL);
        assert_eq!(defaults.max_retries, 4);
        assert_eq!(defaults.request_timeout, Duration::from_secs(120));
        assert_eq!(defaults.max_backoff, Duration::from_secs(30));
        assert_eq!(defaults.anthropic_version, "2023-06-01");
        assert!(!format!("{defaults:?}").contains("sk-ant-x"));

        let Some(custom) = AnthropicConfig::from_values(
            Some("k".into()),
            Some("http://127.0.0.1:9/".into()),
            Some("claude-haiku-4-5".into()),
        ) else {
            panic!("a key gives a config");
        };
        assert_eq!(custom.base_url, "http://127.0.0.1:9/");
        assert_eq!(custom.model, "claude-haiku-4-5");
        let Some(blank) =
            AnthropicConfig::from_values(Some("k".into()), Some(" ".into()), Some(String::new()))
        else {
            panic!("a key gives a config");
        };
        assert_eq!(blank.base_url, DEFAULT_BASE_URL);
        assert_eq!(blank.model, DEFAULT_MODEL);
    }

    #[test]
    fn urls_are_joined_and_checked() {
        let url = |base: &str| messages_url(base).map(|u| u.to_string());
        assert_eq!(
            url("https://api.anthropic.com").ok().as_deref(),
            Some("https://api.anthropic.com/v1/messages")
        );
        assert_eq!(
            url("http://127.0.0.1:8080/").ok().as_deref(),
            Some("http://127.0.0.1:8080/v1/messages")
        );
        assert_eq!(
            url("https://gateway.example/anthropic").ok().as_deref(),
            Some("https://gateway.example/anthropic/v1/messages")
        );
        for bad in ["", "api.anthropic.com", "ftp://x", "https://x/?a=b"] {
            assert!(
                matches!(messages_url(bad), Err(BuildError::InvalidBaseUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        let mut config = AnthropicConfig::new(Secret::new("sk-ant\nsecret-part"));
        let refused = AnthropicModel::new(config.clone()).err();
        assert!(matches!(refused, Some(BuildError::InvalidKey)));
        let shown = refused.map(|e| format!("{e} {e:?}")).unwrap_or_default();
        assert!(!shown.contains("secret-part"), "{shown}");
        config.api_key = Secret::new("");
        assert!(matches!(
            AnthropicModel::new(config).err(),
            Some(BuildError::EmptyKey)
        ));
    }

    #[test]
    fn scrub_removes_the_key_everywhere() {
        let key = "sk-ant-api03-abcdef";
        let errors = [
            Error::Rejected {
                status: 400,
                message: format!("bad key {key}"),
            },
            Error::Unavailable {
                attempts: 2,
                message: format!("{key}{key}"),
            },
            Error::Protocol(format!("x {key} y")),
            Error::Auth { status: 401 },
            Error::Timeout(Duration::from_secs(1)),
        ];
        for error in errors {
            let scrubbed = scrub(error, key);
            let shown = format!("{scrubbed} {scrubbed:?}");
            assert!(!shown.contains(key), "{shown}");
        }
    }

    #[test]
    fn error_messages_are_truncated_on_char_boundaries() {
        let mut text = "é".repeat(10);
        truncate_chars(&mut text, 4);
        assert_eq!(text, "éééé…");
        let mut short = "abc".to_owned();
        truncate_chars(&mut short, 4);
        assert_eq!(short, "abc");
    }
}
