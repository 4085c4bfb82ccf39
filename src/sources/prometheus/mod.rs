//! Prometheus through its HTTP API (`/api/v1/query`, `query_range`, `series`,
//! `labels`, `label/<name>/values`).
//!
//! A grant with `namespaces` or `services` is enforced by rewriting every PromQL
//! selector to carry a matcher on the configured label (see [`promql`]); discovery
//! calls get the same matcher as `match[]`. Range queries pick a step that bounds the
//! points per series, return every series whole as evidence, and the model sees a
//! summary per series (`evidence::metrics`), with a PNG chart of the series that
//! changed most attached.

pub mod promql;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Map, Value};

use super::http::{send_failure, ui_link};
use super::{
    arg_opt_str, arg_str, reject_unknown_args, BuildContext, CallContext, Error, Health, Result,
    Source, ToolOutput, ToolSpec,
};
use crate::access::SourceGrant;
use crate::config::{HumanDuration, PrometheusConfig, Secret, SourceEntry, SourceSpec};
use crate::evidence::metrics::{self, Series};
use crate::evidence::{Attachment, Column, Content, Table};
use promql::Scope;

pub const TOOL_QUERY_RANGE: &str = "query_range";
pub const TOOL_QUERY: &str = "query";
pub const TOOL_SERIES: &str = "series";
pub const TOOL_LABELS: &str = "labels";
pub const TOOL_LABEL_VALUES: &str = "label_values";
const TOOLS: [&str; 5] = [
    TOOL_QUERY_RANGE,
    TOOL_QUERY,
    TOOL_SERIES,
    TOOL_LABELS,
    TOOL_LABEL_VALUES,
];

/// Points per series a range query aims for when no step is given.
pub const TARGET_POINTS: i64 = 240;
/// Most points per series: a smaller step is raised to keep within it.
pub const MAX_POINTS: i64 = 1_000;
/// Series kept from one range query; the rest are counted.
pub const MAX_SERIES: usize = 200;
/// Rows kept from an instant query, `series`, `labels`, `label_values`.
pub const MAX_ROWS: usize = 500;
/// Series drawn on the attached chart.
pub const CHART_SERIES: usize = 6;
/// Longest window one query may span.
pub const MAX_RANGE: TimeDelta = TimeDelta::days(31);
/// Bytes read of one response.
pub const MAX_RESPONSE_BYTES: usize = crate::sources::http::MAX_RESPONSE_BYTES;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct PrometheusSource {
    name: String,
    base: String,
    http: reqwest::Client,
    auth: Auth,
    timeout: Duration,
    namespace_label: String,
    service_label: String,
}

enum Auth {
    None,
    Bearer(Secret),
    Basic(String, Option<Secret>),
}

/// The registry's factory for `prometheus`.
pub fn build(entry: &SourceEntry, ctx: &BuildContext) -> Result<Arc<dyn Source>> {
    let SourceSpec::Prometheus(config) = &entry.spec else {
        return Err(Error::Config(format!(
            "source `{}` is not a prometheus source",
            entry.name
        )));
    };
    Ok(Arc::new(PrometheusSource::new(&entry.name, config, ctx)?))
}

impl PrometheusSource {
    pub fn new(name: &str, config: &PrometheusConfig, ctx: &BuildContext) -> Result<Self> {
        let key = ctx.master_key.as_deref();
        let resolve = |what: &str, secret: &crate::config::SecretRef| {
            secret
                .resolve(key)
                .map_err(|e| Error::Config(format!("prometheus `{name}`: {what}: {e}")))
        };
        let auth = match (&config.bearer_token, &config.username) {
            (Some(token), None) => Auth::Bearer(resolve("bearer_token", token)?),
            (None, Some(user)) => Auth::Basic(
                user.clone(),
                config
                    .password
                    .as_ref()
                    .map(|p| resolve("password", p))
                    .transpose()?,
            ),
            (None, None) => Auth::None,
            (Some(_), Some(_)) => {
                return Err(Error::Config(format!(
                    "prometheus `{name}`: set bearer_token or username/password, not both"
                )))
            }
        };
        let timeout = config
            .timeout
            .map(|HumanDuration(d)| d)
            .unwrap_or(DEFAULT_TIMEOUT);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Config(format!("prometheus `{name}`: http client: {e}")))?;
        let base = config.url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Config(format!(
                "prometheus `{name}`: url must start with http:// or https://"
            )));
        }
        Ok(PrometheusSource {
            name: name.to_string(),
            base,
            http,
            auth,
            timeout,
            namespace_label: config
                .namespace_label
                .clone()
                .unwrap_or_else(|| "namespace".into()),
            service_label: config
                .service_label
                .clone()
                .unwrap_or_else(|| "service".into()),
        })
    }

    /// The label matchers the grant imposes.
    fn scopes(&self, grant: &SourceGrant) -> Vec<Scope> {
        let mut scopes = Vec::new();
        if let Some(namespaces) = &grant.namespaces {
            scopes.push(Scope {
                label: self.namespace_label.clone(),
                values: namespaces.clone(),
            });
        }
        if let Some(services) = &grant.services {
            scopes.push(Scope {
                label: self.service_label.clone(),
                values: services.clone(),
            });
        }
        scopes
    }

    fn scoped(&self, tool: &str, query: &str, grant: &SourceGrant) -> Result<String> {
        promql::scope_query(query, &self.scopes(grant)).map_err(|e| Error::BadArguments {
            tool: tool.to_string(),
            message: e.to_string(),
        })
    }

    /// GET `path` with `params`; the `data` of a success, or the error mapped so the
    /// model can tell its mistakes (bad_data) from the server's trouble.
    async fn get(&self, path: &str, params: &[(&str, String)], timeout: Duration) -> Result<Value> {
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .query(params)
            .timeout(timeout.min(self.timeout));
        request = match &self.auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token.expose()),
            Auth::Basic(user, password) => {
                request.basic_auth(user, password.as_ref().map(|p| p.expose()))
            }
        };
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                Error::Timeout(timeout)
            } else {
                // reqwest errors name the URL, which holds no secret (auth is in headers).
                Error::Unavailable(format!("prometheus `{}`: {}", self.name, send_failure(&e)))
            }
        })?;
        let status = response.status();
        let body = read_capped(response).await?;
        let parsed: Value = serde_json::from_slice(&body).map_err(|_| {
            Error::Unavailable(format!(
                "prometheus `{}` answered HTTP {status} with a body that is not JSON",
                self.name
            ))
        })?;
        if parsed.get("status").and_then(Value::as_str) == Some("success") {
            return Ok(parsed.get("data").cloned().unwrap_or(Value::Null));
        }
        let kind = parsed
            .get("errorType")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let message = parsed
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        Err(match (status.as_u16(), kind) {
            (401 | 403, _) => Error::Unavailable(format!(
                "prometheus `{}` refused our credentials (HTTP {status})",
                self.name
            )),
            (_, "bad_data") | (400 | 422, _) => Error::Query(message.to_string()),
            (_, "timeout") => Error::Timeout(timeout),
            _ => Error::Unavailable(format!("HTTP {status} {kind}: {message}")),
        })
    }

    async fn query_range(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_QUERY_RANGE;
        reject_unknown_args(tool, args, &["query", "start", "end", "step"])?;
        let query = self.scoped(tool, arg_str(tool, args, "query")?, grant)?;
        let now = Utc::now();
        let (start, end) = time_range(tool, args, now)?;
        let span = (end - start).num_seconds().max(1) as u64;
        let mut notes = Vec::new();
        let step = match arg_opt_str(tool, args, "step")? {
            Some(text) => {
                let asked = HumanDuration::parse(text)
                    .map_err(|message| Error::BadArguments {
                        tool: tool.into(),
                        message,
                    })?
                    .0
                    .as_secs()
                    .max(1) as i64;
                let floor = span.div_ceil(MAX_POINTS as u64) as i64;
                if asked < floor {
                    notes.push(format!(
                        "step raised from {asked}s to {floor}s to stay within {MAX_POINTS} points"
                    ));
                }
                asked.max(floor)
            }
            None => (span.div_ceil(TARGET_POINTS as u64) as i64).max(1),
        };
        let data = self
            .get(
                "/api/v1/query_range",
                &[
                    ("query", query.clone()),
                    ("start", start.timestamp().to_string()),
                    ("end", end.timestamp().to_string()),
                    ("step", format!("{step}s")),
                ],
                ctx.timeout,
            )
            .await?;
        let mut series = parse_matrix(&data)?;
        let total = series.len();
        if total > MAX_SERIES {
            series.truncate(MAX_SERIES);
            notes.push(format!(
                "{total} series matched; the first {MAX_SERIES} are kept (narrow the query or aggregate)"
            ));
        }
        notes.push(format!(
            "open in Prometheus: {}",
            ui_link(
                &self.base,
                "/graph",
                &[
                    ("g0.expr", query.clone()),
                    ("g0.tab", "0".into()),
                    ("g0.range_input", format!("{span}s")),
                    ("g0.end_input", end.format("%Y-%m-%d %H:%M:%S").to_string()),
                    ("g0.step_input", step.to_string()),
                ],
            )
        ));
        let attachments = chart(&series).into_iter().collect();
        Ok(ToolOutput {
            statement: format!(
                "query_range {query} start={} end={} step={step}s",
                metrics::ts(start.timestamp()),
                metrics::ts(end.timestamp())
            ),
            content: Content::Json(metrics::series_to_json(&series, step)),
            note: (!notes.is_empty()).then(|| notes.join("; ")),
            attachments,
        })
    }

    async fn query(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_QUERY;
        reject_unknown_args(tool, args, &["query", "time"])?;
        let query = self.scoped(tool, arg_str(tool, args, "query")?, grant)?;
        let at = match arg_opt_str(tool, args, "time")? {
            Some(text) => parse_time_arg(tool, "time", text, Utc::now())?,
            None => Utc::now(),
        };
        let data = self
            .get(
                "/api/v1/query",
                &[
                    ("query", query.clone()),
                    ("time", at.timestamp().to_string()),
                ],
                ctx.timeout,
            )
            .await?;
        let mut table = Table::new(vec![
            column("series", "TEXT"),
            column("value", "FLOAT8"),
            column("timestamp", "TIMESTAMPTZ"),
        ]);
        let result = data.get("result");
        match data.get("resultType").and_then(Value::as_str) {
            Some("vector") => {
                for sample in result.and_then(Value::as_array).into_iter().flatten() {
                    let labels = labels_of(sample.get("metric"));
                    let (t, v) = parse_point(sample.get("value"))?;
                    table.rows.push(vec![
                        json!(Series::named(labels).display_name()),
                        number(v),
                        json!(metrics::ts(t)),
                    ]);
                }
            }
            Some("scalar") | Some("string") => {
                let (t, v) = parse_point(result)?;
                table
                    .rows
                    .push(vec![json!("scalar"), number(v), json!(metrics::ts(t))]);
            }
            Some("matrix") => {
                return Err(Error::BadArguments {
                    tool: tool.into(),
                    message: "this query returns a range vector; use query_range for series over time, or wrap it in a function (rate, max_over_time)".into(),
                })
            }
            other => {
                return Err(Error::Query(format!(
                    "unexpected result type {}",
                    other.unwrap_or("(none)")
                )))
            }
        }
        let note = cap_rows(&mut table);
        Ok(ToolOutput {
            statement: format!("query {query} time={}", metrics::ts(at.timestamp())),
            content: Content::Table(table),
            note,
            attachments: Vec::new(),
        })
    }

    /// `series`, `labels` and `label_values` share the discovery shape.
    async fn discover(
        &self,
        tool: &str,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let allowed: &[&str] = match tool {
            TOOL_SERIES => &["match", "start", "end"],
            TOOL_LABEL_VALUES => &["label", "match", "start", "end"],
            _ => &["match", "start", "end"],
        };
        reject_unknown_args(tool, args, allowed)?;
        let matcher = match (tool, arg_opt_str(tool, args, "match")?) {
            (_, Some(m)) => Some(m.to_string()),
            (TOOL_SERIES, None) => {
                return Err(Error::BadArguments {
                    tool: tool.into(),
                    message: "missing required argument `match` (a selector like up{job=\"api\"})"
                        .into(),
                })
            }
            (_, None) => None,
        };
        let scopes = self.scopes(grant);
        // A selector is required by the API for `series`; for the others one is added
        // only when the grant scopes, so an unscoped grant sees every label.
        let selector = match matcher {
            Some(m) => Some(self.scoped(tool, &m, grant)?),
            None if !scopes.is_empty() => Some(self.scoped(tool, "{}", grant)?),
            None => None,
        };
        let now = Utc::now();
        let (start, end) = time_range(tool, args, now)?;
        let mut params = vec![
            ("start", start.timestamp().to_string()),
            ("end", end.timestamp().to_string()),
        ];
        if let Some(s) = &selector {
            params.push(("match[]", s.clone()));
        }
        let (path, column_name) = match tool {
            TOOL_SERIES => ("/api/v1/series".to_string(), "series"),
            TOOL_LABEL_VALUES => {
                let label = arg_str(tool, args, "label")?;
                if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(Error::BadArguments {
                        tool: tool.into(),
                        message: "`label` must be a label name ([a-zA-Z_][a-zA-Z0-9_]*)".into(),
                    });
                }
                (format!("/api/v1/label/{label}/values"), "value")
            }
            _ => ("/api/v1/labels".to_string(), "label"),
        };
        let data = self.get(&path, &params, ctx.timeout).await?;
        let mut table = Table::new(vec![column(column_name, "TEXT")]);
        for item in data.as_array().into_iter().flatten() {
            let text = match item {
                Value::String(s) => s.clone(),
                Value::Object(_) => Series::named(labels_of(Some(item))).display_name(),
                other => other.to_string(),
            };
            table.rows.push(vec![json!(text)]);
        }
        let note = cap_rows(&mut table);
        let shown: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(ToolOutput {
            statement: format!("{path} {}", shown.join(" ")),
            content: Content::Table(table),
            note,
            attachments: Vec::new(),
        })
    }
}

/// Reads a response body up to [`MAX_RESPONSE_BYTES`].
async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>> {
    crate::sources::http::read_capped(
        response,
        MAX_RESPONSE_BYTES,
        "narrow the query, aggregate, or use a larger step",
    )
    .await
}

pub(crate) fn column(name: &str, type_name: &str) -> Column {
    Column {
        name: name.into(),
        type_name: type_name.into(),
    }
}

pub(crate) fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or_else(|| json!(v.to_string()))
}

pub(crate) fn cap_rows(table: &mut Table) -> Option<String> {
    let total = table.rows.len();
    table.total_rows = Some(total as u64);
    if total > MAX_ROWS {
        table.rows.truncate(MAX_ROWS);
        table.truncated = true;
        table.truncated_by = Some(format!("row cap {MAX_ROWS}"));
        Some(format!("{total} rows; the first {MAX_ROWS} are kept"))
    } else {
        None
    }
}

fn labels_of(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `[1700000000.123, "1.5"]` → (seconds, value).
fn parse_point(value: Option<&Value>) -> Result<(i64, f64)> {
    let pair = value.and_then(Value::as_array);
    let t = pair.and_then(|p| p.first()).and_then(Value::as_f64);
    let v = pair
        .and_then(|p| p.get(1))
        .and_then(Value::as_str)
        .map(parse_sample_value);
    match (t, v) {
        (Some(t), Some(v)) => Ok((t.floor() as i64, v)),
        _ => Err(Error::Query("malformed sample in the response".into())),
    }
}

/// Prometheus writes values as strings, with `NaN`, `+Inf`, `-Inf`.
fn parse_sample_value(text: &str) -> f64 {
    match text {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().unwrap_or(f64::NAN),
    }
}

fn parse_matrix(data: &Value) -> Result<Vec<Series>> {
    if data.get("resultType").and_then(Value::as_str) != Some("matrix") {
        return Err(Error::Query(
            "query_range returned no matrix (is this an instant-only expression?)".into(),
        ));
    }
    let mut out = Vec::new();
    for item in data
        .get("result")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut points = Vec::new();
        for p in item
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            points.push(parse_point(Some(p))?);
        }
        out.push(Series {
            labels: labels_of(item.get("metric")),
            points,
        });
    }
    Ok(out)
}

/// A PNG of the series that changed most, when any did.
pub(crate) fn chart(series: &[Series]) -> Option<Attachment> {
    let mut ranked: Vec<(f64, &Series)> = series
        .iter()
        .map(|s| (metrics::summarize(s).salience(), s))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let drawn: Vec<&Series> = ranked.iter().take(CHART_SERIES).map(|(_, s)| *s).collect();
    if drawn.is_empty() {
        return None;
    }
    let png = match metrics::chart_png(&drawn, 900, 320) {
        Ok(png) => png,
        Err(err) => {
            tracing::warn!(error = %err, "chart not drawn");
            return None;
        }
    };
    let legend: Vec<String> = drawn
        .iter()
        .zip(metrics::PALETTE_NAMES)
        .map(|(s, colour)| format!("{colour}: {}", s.display_name()))
        .collect();
    Attachment::new(
        "chart.png",
        "image/png",
        format!("line chart; {}", legend.join("; ")),
        png,
    )
}

/// `start`/`end` arguments: RFC 3339, unix seconds, `now`, `now-1h`, `-30m`.
/// Defaults: the last hour.
pub(crate) fn time_range(
    tool: &str,
    args: &Value,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let end = match arg_opt_str(tool, args, "end")? {
        Some(text) => parse_time_arg(tool, "end", text, now)?,
        None => now,
    };
    let start = match arg_opt_str(tool, args, "start")? {
        Some(text) => parse_time_arg(tool, "start", text, now)?,
        None => end - TimeDelta::hours(1),
    };
    let bad = |message: String| Error::BadArguments {
        tool: tool.into(),
        message,
    };
    if start >= end {
        return Err(bad("`start` must be before `end`".into()));
    }
    if end - start > MAX_RANGE {
        return Err(bad(format!(
            "the window may span at most {} days",
            MAX_RANGE.num_days()
        )));
    }
    Ok((start, end))
}

fn parse_time_arg(tool: &str, key: &str, text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let text = text.trim();
    let bad = || {
        Error::BadArguments {
        tool: tool.into(),
        message: format!(
            "`{key}`: `{text}` is not a time (use RFC 3339 like 2024-05-01T10:00:00Z, unix seconds, `now`, or `now-2h`)"
        ),
    }
    };
    if text == "now" {
        return Ok(now);
    }
    let relative = text.strip_prefix("now-").or_else(|| text.strip_prefix('-'));
    if let Some(ago) = relative {
        let d = HumanDuration::parse(ago).map_err(|_| bad())?.0;
        return TimeDelta::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(bad);
    }
    if let Ok(seconds) = text.parse::<i64>() {
        return DateTime::from_timestamp(seconds, 0).ok_or_else(bad);
    }
    crate::sources::logfile::parse_time(text).ok_or_else(bad)
}

pub(crate) fn props(extra: &[(&str, Value)]) -> Value {
    let mut map = Map::new();
    let mut required = Vec::new();
    for (key, value) in extra {
        let mut value = value.clone();
        if let Some(obj) = value.as_object_mut() {
            if obj.remove("required") == Some(Value::Bool(true)) {
                required.push(json!(key));
            }
        }
        map.insert((*key).to_string(), value);
    }
    json!({
        "type": "object",
        "properties": Value::Object(map),
        "required": required,
        "additionalProperties": false
    })
}

pub(crate) fn time_props() -> [(&'static str, Value); 2] {
    [
        (
            "start",
            json!({"type": "string", "description": "Start: RFC 3339 (2024-05-01T10:00:00Z), unix seconds, or relative (now-3h). Default: one hour before end."}),
        ),
        (
            "end",
            json!({"type": "string", "description": "End: same forms; default now."}),
        ),
    ]
}

#[async_trait]
impl Source for PrometheusSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "prometheus"
    }

    fn tools(&self, grant: &SourceGrant) -> Vec<ToolSpec> {
        let name = &self.name;
        let scopes = self.scopes(grant);
        let scope = if scopes.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = scopes
                .iter()
                .map(|s| format!("{} in [{}]", s.label, s.values.join(", ")))
                .collect();
            format!(
                " Every selector is narrowed to series with {} (added for you; other series are invisible).",
                parts.join(" and ")
            )
        };
        let [start, end] = time_props();
        let query = |d: &str| json!({"type": "string", "required": true, "description": d});
        vec![
            ToolSpec {
                name: TOOL_QUERY_RANGE.into(),
                description: format!(
                    "Run a PromQL range query on Prometheus `{name}` and get, per series, min/max/mean/p95/last, the times its level changed, and the windows that differ from the start of the range; a chart is attached for people. Use it to see when a metric changed, e.g. sum by (service) (rate(http_requests_total{{code=~\"5..\"}}[5m])). Aggregate (sum by, topk) to keep the series count small (at most {MAX_SERIES} kept).{scope}"
                ),
                input_schema: props(&[
                    ("query", query("PromQL expression.")),
                    start.clone(),
                    end.clone(),
                    ("step", json!({"type": "string", "description": format!("Resolution like 30s or 5m; by default about {TARGET_POINTS} points over the range (never more than {MAX_POINTS}).")})),
                ]),
            },
            ToolSpec {
                name: TOOL_QUERY.into(),
                description: format!(
                    "Run a PromQL instant query on Prometheus `{name}` (one value per series at `time`, default now), e.g. topk(5, sum by (pod) (rate(container_cpu_usage_seconds_total[5m]))).{scope}"
                ),
                input_schema: props(&[
                    ("query", query("PromQL expression.")),
                    ("time", json!({"type": "string", "description": "Evaluation time: RFC 3339, unix seconds or now-15m; default now."})),
                ]),
            },
            ToolSpec {
                name: TOOL_SERIES.into(),
                description: format!(
                    "List the series (metric name and labels) on Prometheus `{name}` matching a selector in a time range, to find what exists before querying.{scope}"
                ),
                input_schema: props(&[
                    ("match", json!({"type": "string", "required": true, "description": "Series selector, e.g. http_requests_total{job=\"api\"} or {__name__=~\"payment_.*\"}."})),
                    start.clone(),
                    end.clone(),
                ]),
            },
            ToolSpec {
                name: TOOL_LABELS.into(),
                description: format!("List label names on Prometheus `{name}`, optionally of the series matching a selector.{scope}"),
                input_schema: props(&[
                    ("match", json!({"type": "string", "description": "Optional series selector."})),
                    start.clone(),
                    end.clone(),
                ]),
            },
            ToolSpec {
                name: TOOL_LABEL_VALUES.into(),
                description: format!("List the values of one label on Prometheus `{name}` (label `__name__` lists metric names), optionally of the series matching a selector.{scope}"),
                input_schema: props(&[
                    ("label", json!({"type": "string", "required": true, "description": "Label name, e.g. job, service, __name__."})),
                    ("match", json!({"type": "string", "description": "Optional series selector."})),
                    start,
                    end,
                ]),
            },
        ]
    }

    async fn health(&self) -> Health {
        let started = Instant::now();
        let result = self
            .get("/api/v1/status/buildinfo", &[], Duration::from_secs(10))
            .await;
        let latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(data) => Health {
                ok: true,
                detail: format!(
                    "Prometheus {}",
                    data.get("version").and_then(Value::as_str).unwrap_or("?")
                ),
                latency_ms,
            },
            Err(err) => Health {
                ok: false,
                detail: err.to_string(),
                latency_ms,
            },
        }
    }

    async fn call(
        &self,
        tool: &str,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        match tool {
            TOOL_QUERY_RANGE => self.query_range(args, grant, ctx).await,
            TOOL_QUERY => self.query(args, grant, ctx).await,
            TOOL_SERIES | TOOL_LABELS | TOOL_LABEL_VALUES => {
                self.discover(tool, args, grant, ctx).await
            }
            other => Err(Error::UnknownTool {
                tool: other.to_string(),
                offered: TOOLS.join(", "),
            }),
        }
    }

    async fn describe(&self, grant: &SourceGrant, ctx: &CallContext) -> Result<String> {
        let args = json!({"label": "__name__", "start": "now-1h"});
        let output = self.discover(TOOL_LABEL_VALUES, &args, grant, ctx).await?;
        let Content::Table(table) = output.content else {
            return Ok(String::new());
        };
        let names: Vec<String> = table
            .rows
            .iter()
            .take(150)
            .filter_map(|r| r.first().and_then(Value::as_str).map(str::to_string))
            .collect();
        let more = table.rows.len().saturating_sub(names.len());
        let scopes = self.scopes(grant);
        let scope = if scopes.is_empty() {
            "all series".to_string()
        } else {
            scopes
                .iter()
                .map(|s| format!("{} in [{}]", s.label, s.values.join(", ")))
                .collect::<Vec<_>>()
                .join(" and ")
        };
        Ok(format!(
            "Prometheus `{}` ({scope}); metrics seen in the last hour: {}{}",
            self.name,
            names.join(", "),
            if more > 0 {
                format!(" … and {more} more")
            } else {
                String::new()
            }
        ))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
