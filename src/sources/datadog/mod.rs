//! Datadog through its public REST API (no SDK): logs search
//! (`POST /api/v2/logs/events/search`), metric timeseries (`GET /api/v1/query`), APM
//! service errors/latency through the `trace.*` metrics APM computes from every
//! span, and monitors in alert (`GET /api/v1/monitor`).
//!
//! Scoping: the services a principal may see are the grant's `services` (narrowed
//! by the instance's `app_id` list when both are set) or, without a grant list,
//! the `app_id` list. Every logs query is wrapped as `(<query>) service:(a OR b)`;
//! metric queries get `,service:<one granted service>` in every `{…}` scope (a
//! comma is Datadog's AND there, so another service's tag matches nothing); a
//! `service` argument outside the set is refused. Every output names a link back to
//! the Datadog UI in its note.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::elasticsearch::{log_hits_json, LogRow};
use super::http::{send_failure, ui_link as link};
use super::prometheus::{cap_rows, chart, column, props, time_props, time_range};
use super::{
    arg_opt_str, arg_opt_u64, arg_str, reject_unknown_args, BuildContext, CallContext, Error,
    Health, Result, Source, ToolOutput, ToolSpec,
};
use crate::access::SourceGrant;
use crate::config::{DatadogConfig, Secret, SourceEntry, SourceSpec};
use crate::evidence::metrics::{self, Series};
use crate::evidence::{Content, Table};

pub const TOOL_SEARCH_LOGS: &str = "search_logs";
pub const TOOL_QUERY_METRICS: &str = "query_metrics";
pub const TOOL_SERVICE_HEALTH: &str = "apm_service_health";
pub const TOOL_MONITORS: &str = "monitors_in_alert";
const TOOLS: [&str; 4] = [
    TOOL_SEARCH_LOGS,
    TOOL_QUERY_METRICS,
    TOOL_SERVICE_HEALTH,
    TOOL_MONITORS,
];

pub use crate::config::DATADOG_SITES as SITES;
/// The logs API returns at most 1000 events per page.
pub const PAGE_LIMIT: u64 = 1000;
/// Default and most log events one search returns (so at most 5 pages).
pub const DEFAULT_LOG_LIMIT: u64 = 500;
pub const MAX_LOG_LIMIT: u64 = 5000;
pub const MAX_SERIES: usize = 200;
/// Bytes read of one response.
pub const MAX_RESPONSE_BYTES: usize = crate::sources::http::MAX_RESPONSE_BYTES;
/// Retries of a 429; each wait is the server's reset time, capped.
const MAX_RETRIES: u32 = 2;
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct DatadogSource {
    name: String,
    /// API base, `https://api.<site>` or the configured `base_url`.
    api: String,
    /// UI base for links, `https://app.<site>`.
    ui: String,
    http: reqwest::Client,
    api_key: Secret,
    app_key: Option<Secret>,
    /// The instance's `app_id` services; `None` covers every service.
    services: Option<Vec<String>>,
}

/// The registry's factory for `datadog`.
pub fn build(entry: &SourceEntry, ctx: &BuildContext) -> Result<Arc<dyn Source>> {
    let SourceSpec::Datadog(config) = &entry.spec else {
        return Err(Error::Config(format!(
            "source `{}` is not a datadog source",
            entry.name
        )));
    };
    Ok(Arc::new(DatadogSource::new(&entry.name, config, ctx)?))
}

/// The UI host of a site: the two oldest sites put the app on `app.`, the newer
/// ones serve it on the site name itself.
pub fn ui_base(site: &str) -> String {
    match site {
        "datadoghq.com" | "datadoghq.eu" | "ddog-gov.com" => format!("https://app.{site}"),
        other => format!("https://{other}"),
    }
}

impl DatadogSource {
    pub fn new(name: &str, config: &DatadogConfig, ctx: &BuildContext) -> Result<Self> {
        let key = ctx.master_key.as_deref();
        let api_key = config
            .api_key
            .resolve(key)
            .map_err(|e| Error::Config(format!("datadog `{name}`: api_key: {e}")))?;
        let app_key = config
            .app_key
            .as_ref()
            .map(|k| k.resolve(key))
            .transpose()
            .map_err(|e| Error::Config(format!("datadog `{name}`: app_key: {e}")))?;
        let site = config.site.as_deref().unwrap_or("datadoghq.com");
        if config.base_url.is_none() && !SITES.contains(&site) {
            return Err(Error::Config(format!(
                "datadog `{name}`: unknown site `{site}` (known: {})",
                SITES.join(", ")
            )));
        }
        let api = match &config.base_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://api.{site}"),
        };
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Config(format!("datadog `{name}`: http client: {e}")))?;
        Ok(DatadogSource {
            name: name.to_string(),
            api,
            ui: ui_base(site),
            http,
            api_key,
            app_key,
            services: config.app_id.as_ref().map(|l| l.items()),
        })
    }

    /// The services this principal sees: `None` is every service.
    pub fn visible_services(&self, grant: &SourceGrant) -> Option<Vec<String>> {
        crate::sources::visible_services(grant.services.as_deref(), self.services.as_deref())
    }

    /// The service a tool names, checked against the visible set; when the set has
    /// exactly one service it is the default.
    fn pick_service(
        &self,
        tool: &str,
        args: &Value,
        grant: &SourceGrant,
    ) -> Result<Option<String>> {
        let visible = self.visible_services(grant);
        let asked = arg_opt_str(tool, args, "service")?;
        match (asked, visible) {
            (Some(s), Some(v)) if !v.iter().any(|x| x == s) => Err(Error::Refused(format!(
                "service `{s}` is outside your grant on `{}` (you may see: {})",
                self.name,
                v.join(", ")
            ))),
            (Some(s), _) => {
                check_tag_value(tool, s)?;
                Ok(Some(s.to_string()))
            }
            (None, Some(v)) if v.len() == 1 => Ok(v.into_iter().next()),
            (None, Some(v)) if v.is_empty() => Err(Error::Refused(format!(
                "your grant on `{}` reaches no service this instance covers",
                self.name
            ))),
            (None, Some(v)) => Err(Error::BadArguments {
                tool: tool.into(),
                message: format!("name a `service`, one of: {}", v.join(", ")),
            }),
            (None, None) => Ok(None),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, timeout: Duration) -> Result<Value> {
        let timeout = timeout.min(DEFAULT_TIMEOUT);
        let mut attempt = 0;
        loop {
            let Some(mut this) = request.try_clone() else {
                return Err(Error::Config("request body cannot be retried".into()));
            };
            this = this
                .timeout(timeout)
                .header("DD-API-KEY", self.api_key.expose())
                .header("Accept", "application/json");
            if let Some(app) = &self.app_key {
                this = this.header("DD-APPLICATION-KEY", app.expose());
            }
            let response = this.send().await.map_err(|e| {
                if e.is_timeout() {
                    Error::Timeout(timeout)
                } else {
                    // The URL holds no secret: the keys travel in headers.
                    Error::Unavailable(format!("datadog `{}`: {}", self.name, send_failure(&e)))
                }
            })?;
            let status = response.status();
            if status.as_u16() == 429 && attempt < MAX_RETRIES {
                attempt += 1;
                let wait = rate_limit_wait(response.headers()).min(MAX_RETRY_WAIT);
                tracing::info!(source = %self.name, wait_ms = wait.as_millis() as u64, "rate limited; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            let body = read_capped(response).await?;
            let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(parsed);
            }
            let message = error_text(&parsed);
            return Err(match status.as_u16() {
                401 | 403 => Error::Unavailable(format!(
                    "datadog `{}` refused our keys (HTTP {status}: {message})",
                    self.name
                )),
                429 => Error::Unavailable(format!(
                    "datadog `{}` is rate limiting us (HTTP 429) after {MAX_RETRIES} retries",
                    self.name
                )),
                400 | 404 | 422 => Error::Query(message),
                _ => Error::Unavailable(format!("HTTP {status}: {message}")),
            });
        }
    }

    async fn search_logs(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_SEARCH_LOGS;
        reject_unknown_args(tool, args, &["query", "start", "end", "limit"])?;
        let asked = arg_opt_str(tool, args, "query")?.unwrap_or("*");
        check_balanced(tool, asked)?;
        let query = match self.visible_services(grant) {
            Some(v) if v.is_empty() => {
                return Err(Error::Refused(format!(
                    "your grant on `{}` reaches no service this instance covers",
                    self.name
                )))
            }
            Some(v) => {
                for s in &v {
                    check_tag_value(tool, s)?;
                }
                format!("({asked}) service:({})", v.join(" OR "))
            }
            None => asked.to_string(),
        };
        let (start, end) = time_range(tool, args, Utc::now())?;
        let limit = arg_opt_u64(tool, args, "limit")?
            .unwrap_or(DEFAULT_LOG_LIMIT)
            .clamp(1, MAX_LOG_LIMIT);
        let mut rows = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        let mut more = false;
        loop {
            let page_size = (limit - rows.len() as u64).min(PAGE_LIMIT);
            let mut body = json!({
                "filter": {
                    "query": query,
                    "from": start.to_rfc3339(),
                    "to": end.to_rfc3339(),
                },
                "sort": "-timestamp",
                "page": {"limit": page_size},
            });
            if let Some(c) = &cursor {
                body["page"]["cursor"] = json!(c);
            }
            let request = self
                .http
                .post(format!("{}/api/v2/logs/events/search", self.api))
                .json(&body);
            let response = self.send(request, ctx.timeout).await?;
            pages += 1;
            for event in response
                .get("data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let a = event.get("attributes").unwrap_or(&Value::Null);
                let text = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                rows.push(LogRow {
                    timestamp: text("timestamp"),
                    level: text("status"),
                    service: text("service"),
                    message: text("message"),
                    index: text("host"),
                });
            }
            cursor = response
                .pointer("/meta/page/after")
                .and_then(Value::as_str)
                .map(str::to_string);
            if cursor.is_none() {
                break;
            }
            if rows.len() as u64 >= limit {
                more = true;
                break;
            }
        }
        let total = rows.len() as u64;
        let link = link(
            &self.ui,
            "/logs",
            &[
                ("query", query.clone()),
                ("from_ts", start.timestamp_millis().to_string()),
                ("to_ts", end.timestamp_millis().to_string()),
                ("live", "false".into()),
            ],
        );
        let mut notes = vec![format!("open in Datadog: {link}")];
        if more {
            notes.push(format!(
                "more events match; the newest {total} are kept (narrow the query or raise `limit`, at most {MAX_LOG_LIMIT})"
            ));
        }
        let mut content = log_hits_json(&rows, total, !more);
        content["link"] = json!(link);
        Ok(ToolOutput {
            statement: format!(
                "POST /api/v2/logs/events/search query={query} from={} to={} pages={pages}",
                start.to_rfc3339(),
                end.to_rfc3339()
            ),
            content: Content::Json(content),
            note: Some(notes.join("; ")),
            attachments: Vec::new(),
        })
    }

    /// Runs a v1 metric query and returns the series (`pointlist` in milliseconds).
    async fn metric_series(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        ctx: &CallContext,
    ) -> Result<(Vec<Series>, i64)> {
        let request = self.http.get(format!("{}/api/v1/query", self.api)).query(&[
            ("from", start.timestamp().to_string()),
            ("to", end.timestamp().to_string()),
            ("query", query.to_string()),
        ]);
        let response = self.send(request, ctx.timeout).await?;
        if response.get("status").and_then(Value::as_str) == Some("error") {
            return Err(Error::Query(error_text(&response)));
        }
        let mut out = Vec::new();
        let mut step = 0;
        for s in response
            .get("series")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            step = step.max(s.get("interval").and_then(Value::as_i64).unwrap_or(0));
            let mut labels = BTreeMap::new();
            labels.insert(
                "expression".to_string(),
                s.get("expression")
                    .or_else(|| s.get("metric"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            );
            labels.insert(
                "scope".to_string(),
                s.get("scope")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            );
            let points = s
                .get("pointlist")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let t = p.get(0).and_then(Value::as_f64)?;
                    // A null value is a gap in Datadog's series; skip it.
                    let v = p.get(1).and_then(Value::as_f64)?;
                    Some(((t / 1000.0).floor() as i64, v))
                })
                .collect();
            out.push(Series { labels, points });
        }
        Ok((out, step))
    }

    async fn query_metrics(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_QUERY_METRICS;
        reject_unknown_args(tool, args, &["query", "start", "end", "service"])?;
        let asked = arg_str(tool, args, "query")?;
        let service = self.pick_service(tool, args, grant)?;
        let query = match &service {
            Some(s) => scope_metric_query(tool, asked, s)?,
            None => asked.to_string(),
        };
        let (start, end) = time_range(tool, args, Utc::now())?;
        let (mut series, step) = self.metric_series(&query, start, end, ctx).await?;
        let mut notes = vec![format!(
            "open in Datadog: {}",
            link(
                &self.ui,
                "/metric/explorer",
                &[
                    ("exp_query", query.clone()),
                    ("from_ts", start.timestamp_millis().to_string()),
                    ("to_ts", end.timestamp_millis().to_string()),
                    ("live", "false".into()),
                ],
            )
        )];
        if series.len() > MAX_SERIES {
            notes.push(format!(
                "{} series; the first {MAX_SERIES} are kept (aggregate with `by {{…}}` on fewer tags)",
                series.len()
            ));
            series.truncate(MAX_SERIES);
        }
        Ok(ToolOutput {
            statement: format!(
                "GET /api/v1/query query={query} from={} to={}",
                start.timestamp(),
                end.timestamp()
            ),
            content: Content::Json(metrics::series_to_json(&series, step)),
            note: Some(notes.join("; ")),
            attachments: chart(&series).into_iter().collect(),
        })
    }

    async fn service_health(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_SERVICE_HEALTH;
        reject_unknown_args(tool, args, &["service", "operation", "env", "start", "end"])?;
        let Some(service) = self.pick_service(tool, args, grant)? else {
            return Err(Error::BadArguments {
                tool: tool.into(),
                message: "missing required argument `service`".into(),
            });
        };
        let operation = arg_opt_str(tool, args, "operation")?.unwrap_or("http.request");
        if !operation
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        {
            return Err(Error::BadArguments {
                tool: tool.into(),
                message: "`operation` is a span operation name like http.request or grpc.server"
                    .into(),
            });
        }
        let mut scope = format!("service:{service}");
        if let Some(env) = arg_opt_str(tool, args, "env")? {
            check_tag_value(tool, env)?;
            scope.push_str(&format!(",env:{env}"));
        }
        // APM keeps these trace metrics for every service it sees: hit and error
        // counts and a latency distribution (percentile aggregators on the bare name).
        let query = format!(
            "sum:trace.{operation}.hits{{{scope}}}.as_count(),sum:trace.{operation}.errors{{{scope}}}.as_count(),p95:trace.{operation}{{{scope}}},p99:trace.{operation}{{{scope}}}"
        );
        let (start, end) = time_range(tool, args, Utc::now())?;
        let (series, step) = self.metric_series(&query, start, end, ctx).await?;
        let link = link(
            &self.ui,
            &format!("/apm/services/{service}"),
            &[
                ("start", start.timestamp_millis().to_string()),
                ("end", end.timestamp_millis().to_string()),
                ("paused", "true".into()),
            ],
        );
        Ok(ToolOutput {
            statement: format!(
                "GET /api/v1/query query={query} from={} to={}",
                start.timestamp(),
                end.timestamp()
            ),
            content: Content::Json(metrics::series_to_json(&series, step)),
            note: Some(format!(
                "series: hits, errors (counts per interval), p95 and p99 latency (seconds); open in Datadog: {link}"
            )),
            attachments: chart(&series).into_iter().collect(),
        })
    }

    async fn monitors(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_MONITORS;
        reject_unknown_args(tool, args, &["include_warn"])?;
        let include_warn = args
            .get("include_warn")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let request = self
            .http
            .get(format!("{}/api/v1/monitor", self.api))
            .query(&[("group_states", "alert,warn"), ("page_size", "1000")]);
        let response = self.send(request, ctx.timeout).await?;
        let visible = self.visible_services(grant);
        let mut table = Table::new(vec![
            column("id", "INT8"),
            column("name", "TEXT"),
            column("state", "TEXT"),
            column("since", "TEXT"),
            column("query", "TEXT"),
            column("tags", "TEXT"),
            column("link", "TEXT"),
        ]);
        let mut hidden = 0;
        for m in response.as_array().into_iter().flatten() {
            let state = m.get("overall_state").and_then(Value::as_str).unwrap_or("");
            if !(state == "Alert" || (include_warn && state == "Warn")) {
                continue;
            }
            let tags: Vec<&str> = m
                .get("tags")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let query = m.get("query").and_then(Value::as_str).unwrap_or("");
            // A scoped principal sees a monitor only if it is about a visible service:
            // tagged `service:x` or querying `service:x`.
            if let Some(v) = &visible {
                let about = v.iter().any(|s| {
                    let tag = format!("service:{s}");
                    tags.contains(&tag.as_str()) || mentions_tag(query, &tag)
                });
                if !about {
                    hidden += 1;
                    continue;
                }
            }
            let id = m.get("id").and_then(Value::as_i64).unwrap_or(0);
            table.rows.push(vec![
                json!(id),
                json!(m.get("name").and_then(Value::as_str).unwrap_or("")),
                json!(state),
                json!(m
                    .get("overall_state_modified")
                    .and_then(Value::as_str)
                    .unwrap_or("")),
                json!(query),
                json!(tags.join(",")),
                json!(format!("{}/monitors/{id}", self.ui)),
            ]);
        }
        let mut notes = Vec::new();
        if let Some(n) = cap_rows(&mut table) {
            notes.push(n);
        }
        if hidden > 0 {
            notes.push(format!(
                "{hidden} alerting monitors are about services outside your grant and are not shown"
            ));
        }
        notes.push(format!(
            "open in Datadog: {}",
            link(
                &self.ui,
                "/monitors/manage",
                &[("q", "status:alert".to_string())]
            )
        ));
        Ok(ToolOutput {
            statement: "GET /api/v1/monitor?group_states=alert,warn".into(),
            content: Content::Table(table),
            note: Some(notes.join("; ")),
            attachments: Vec::new(),
        })
    }
}

/// `X-RateLimit-Reset` (seconds until the window resets) or `Retry-After`.
fn rate_limit_wait(headers: &reqwest::header::HeaderMap) -> Duration {
    ["x-ratelimit-reset", "retry-after"]
        .iter()
        .find_map(|h| {
            headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
        })
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(1))
}

/// Datadog errors: `{"errors": ["…"]}` (v1 and v2) or `{"error": "…"}` (v1 query).
fn error_text(body: &Value) -> String {
    if let Some(list) = body.get("errors").and_then(Value::as_array) {
        let parts: Vec<String> = list
            .iter()
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => other
                    .get("detail")
                    .or_else(|| other.get("title"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| other.to_string()),
            })
            .collect();
        return parts.join("; ");
    }
    body.get("error")
        .and_then(Value::as_str)
        .unwrap_or("no message")
        .to_string()
}

/// A tag value we put into a query ourselves: no spaces, quotes, braces or
/// operators, so it cannot change the query's structure.
fn check_tag_value(tool: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadArguments {
            tool: tool.into(),
            message: format!("`{value}` is not a plain tag value"),
        })
    }
}

/// The wrapped logs query `(<query>) service:(…)` is only sound if the model's
/// query cannot close our parenthesis: its parentheses must balance outside quotes.
fn check_balanced(tool: &str, query: &str) -> Result<()> {
    let mut depth = 0i64;
    let mut quoted = false;
    let mut escaped = false;
    for c in query.chars() {
        match (escaped, quoted, c) {
            (true, _, _) => escaped = false,
            (false, _, '\\') => escaped = true,
            (false, _, '"') => quoted = !quoted,
            (false, false, '(') => depth += 1,
            (false, false, ')') => {
                depth -= 1;
                if depth < 0 {
                    break;
                }
            }
            (false, _, _) => {}
        }
    }
    if depth == 0 && !quoted && !escaped {
        Ok(())
    } else {
        Err(Error::BadArguments {
            tool: tool.into(),
            message: "unbalanced parentheses or quotes in `query`".into(),
        })
    }
}

/// Adds `,service:<s>` to every `{…}` scope of a metric query (`{*}` becomes
/// `{service:<s>}`). A query without a scope, or using boolean scope syntax
/// (which cannot be mixed with commas), is refused.
pub fn scope_metric_query(tool: &str, query: &str, service: &str) -> Result<String> {
    check_tag_value(tool, service)?;
    let bad = |message: &str| Error::BadArguments {
        tool: tool.into(),
        message: message.into(),
    };
    let mut out = String::with_capacity(query.len() + 32);
    let mut rest = query;
    let mut scopes = 0;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(bad("unclosed `{` in the metric query"));
        };
        let inner = rest[open + 1..open + close].trim();
        if inner.contains('{') {
            return Err(bad("nested `{` in the metric query"));
        }
        let words: Vec<&str> = inner.split_whitespace().collect();
        if words
            .iter()
            .any(|w| matches!(w.to_ascii_uppercase().as_str(), "OR" | "AND" | "NOT" | "IN"))
            || inner.contains('!')
        {
            return Err(bad(
                "write scopes with commas only (env:prod,status:error); boolean scopes cannot be narrowed to your services",
            ));
        }
        out.push_str(&rest[..open + 1]);
        // `by {host}` groups rather than scopes: it passes unchanged.
        let before = rest[..open].trim_end().to_ascii_lowercase();
        if before.ends_with(" by") || before == "by" {
            out.push_str(&rest[open + 1..open + close + 1]);
            rest = &rest[open + close + 1..];
            continue;
        }
        if inner.is_empty() || inner == "*" {
            out.push_str(&format!("service:{service}"));
        } else {
            out.push_str(&format!("{inner},service:{service}"));
        }
        out.push('}');
        rest = &rest[open + close + 1..];
        scopes += 1;
    }
    if rest.contains('}') {
        return Err(bad("unbalanced `}` in the metric query"));
    }
    out.push_str(rest);
    if scopes == 0 {
        return Err(bad(
            "the metric query needs a scope, e.g. avg:system.cpu.user{*}",
        ));
    }
    Ok(out)
}

/// Whether `query` names `tag` as a whole tag (not a prefix of a longer value).
fn mentions_tag(query: &str, tag: &str) -> bool {
    query.match_indices(tag).any(|(i, _)| {
        let after = query[i + tag.len()..].chars().next();
        !after.is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    })
}

async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>> {
    crate::sources::http::read_capped(response, MAX_RESPONSE_BYTES, "narrow the query").await
}

#[async_trait]
impl Source for DatadogSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "datadog"
    }

    fn tools(&self, grant: &SourceGrant) -> Vec<ToolSpec> {
        let name = &self.name;
        let scope = match self.visible_services(grant) {
            Some(v) => format!(
                " Only services [{}] are visible (the filter is added for you).",
                v.join(", ")
            ),
            None => String::new(),
        };
        let [start, end] = time_props();
        let service = json!({"type": "string", "description": "Service name (the `service` tag). Required when more than one service is visible to you."});
        vec![
            ToolSpec {
                name: TOOL_SEARCH_LOGS.into(),
                description: format!(
                    "Search logs in Datadog `{name}` with Datadog log search syntax (e.g. `status:error @http.status_code:5*` or `\"connection refused\"`); returns the newest events grouped into message templates with counts, levels and first/last times.{scope}"
                ),
                input_schema: props(&[
                    ("query", json!({"type": "string", "description": "Datadog log query; default `*`."})),
                    start.clone(),
                    end.clone(),
                    ("limit", json!({"type": "integer", "description": format!("Events to fetch, newest first; default {DEFAULT_LOG_LIMIT}, at most {MAX_LOG_LIMIT}.")})),
                ]),
            },
            ToolSpec {
                name: TOOL_QUERY_METRICS.into(),
                description: format!(
                    "Query Datadog `{name}` metrics (e.g. `avg:system.cpu.user{{env:prod}} by {{host}}` or `sum:trace.http.request.errors{{*}}.as_count()`) and get, per series, min/max/mean/p95/last and when its level changed. Scopes use commas only; the service is added to every scope.{scope}"
                ),
                input_schema: props(&[
                    ("query", json!({"type": "string", "required": true, "description": "Datadog metric query with a {…} scope."})),
                    ("service", service.clone()),
                    start.clone(),
                    end.clone(),
                ]),
            },
            ToolSpec {
                name: TOOL_SERVICE_HEALTH.into(),
                description: format!(
                    "APM health of one service in Datadog `{name}`: request hits, errors, and p95/p99 latency over time, from the trace metrics of one span operation.{scope}"
                ),
                input_schema: props(&[
                    ("service", service),
                    ("operation", json!({"type": "string", "description": "Span operation name, default http.request (others: grpc.server, rack.request, servlet.request, …)."})),
                    ("env", json!({"type": "string", "description": "Optional env tag, e.g. prod."})),
                    start,
                    end,
                ]),
            },
            ToolSpec {
                name: TOOL_MONITORS.into(),
                description: format!(
                    "List Datadog `{name}` monitors currently in Alert (optionally Warn), with their query and since when.{scope}"
                ),
                input_schema: props(&[(
                    "include_warn",
                    json!({"type": "boolean", "description": "Also list monitors in Warn."}),
                )]),
            },
        ]
    }

    async fn health(&self) -> Health {
        let started = Instant::now();
        let request = self.http.get(format!("{}/api/v1/validate", self.api));
        let result = self.send(request, Duration::from_secs(10)).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(body) if body.get("valid").and_then(Value::as_bool) == Some(true) => {
                if self.app_key.is_none() {
                    return Health {
                        ok: false,
                        detail: "Datadog API key valid; no app_key, so queries will be refused"
                            .into(),
                        latency_ms,
                    };
                }
                // validate checks the API key only; listing one monitor needs both keys
                // (and the monitors_read scope the monitors tool uses anyway).
                let check = self
                    .http
                    .get(format!("{}/api/v1/monitor", self.api))
                    .query(&[("page", "0"), ("page_size", "1")]);
                let checked = self.send(check, Duration::from_secs(10)).await;
                let latency_ms = started.elapsed().as_millis() as u64;
                match checked {
                    Ok(_) => Health {
                        ok: true,
                        detail: "Datadog API and application keys valid".into(),
                        latency_ms,
                    },
                    Err(err) => Health {
                        ok: false,
                        detail: format!(
                            "Datadog API key valid, but a query with the application key failed: {err}"
                        ),
                        latency_ms,
                    },
                }
            }
            Ok(_) => Health {
                ok: false,
                detail: "Datadog says the API key is not valid".into(),
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
            TOOL_SEARCH_LOGS => self.search_logs(args, grant, ctx).await,
            TOOL_QUERY_METRICS => self.query_metrics(args, grant, ctx).await,
            TOOL_SERVICE_HEALTH => self.service_health(args, grant, ctx).await,
            TOOL_MONITORS => self.monitors(args, grant, ctx).await,
            other => Err(Error::UnknownTool {
                tool: other.to_string(),
                offered: TOOLS.join(", "),
            }),
        }
    }

    async fn describe(&self, grant: &SourceGrant, _ctx: &CallContext) -> Result<String> {
        Ok(match self.visible_services(grant) {
            Some(v) => format!(
                "Datadog `{}`: logs, metrics, APM and monitors of services {}",
                self.name,
                v.join(", ")
            ),
            None => format!(
                "Datadog `{}`: logs, metrics, APM and monitors of every service",
                self.name
            ),
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_scopes_get_the_service() {
        let q = scope_metric_query("t", "avg:a{*} by {host}", "checkout");
        assert_eq!(q.ok().as_deref(), Some("avg:a{service:checkout} by {host}"));
        assert!(scope_metric_query("t", "avg:a{env:prod OR service:x}", "c").is_err());
        assert!(scope_metric_query("t", "avg:a", "c").is_err());
        assert!(check_balanced("t", "a) OR (b").is_err());
        assert!(check_balanced("t", "\"a)\" (b)").is_ok());
        assert!(mentions_tag("avg:x{service:pay}", "service:pay"));
        assert!(!mentions_tag("avg:x{service:payroll}", "service:pay"));
    }
}
