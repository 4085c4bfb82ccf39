//! New Relic through NerdGraph (GraphQL over HTTPS POST, `API-Key` header), NRQL
//! only: `actor { account(id) { nrql(query) { results } } }`.
//!
//! Every NRQL text goes through [`nrql::bound`]: SELECT…FROM only, a LIMIT cap, a
//! default `SINCE 1 hour ago`, and, for a principal whose services are scoped,
//! `appName IN (…)` ANDed into WHERE. The query travels as a GraphQL variable, so
//! no quoting of ours can break the GraphQL document. TIMESERIES results become
//! `metric_series` evidence (summaries, change points, a chart); others a table.

pub mod nrql;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{json, Map, Value};

use super::http::{send_failure, ui_link};
use super::prometheus::{cap_rows, chart, column, props, time_props, time_range};
use super::{
    arg_opt_str, arg_str, reject_unknown_args, BuildContext, CallContext, Error, Health, Result,
    Source, ToolOutput, ToolSpec,
};
use crate::access::SourceGrant;
use crate::config::{NewRelicConfig, Secret, SourceEntry, SourceSpec};
use crate::evidence::metrics::{self, Series};
use crate::evidence::{Content, Table};

pub const TOOL_NRQL: &str = "nrql";
pub const TOOL_ERRORS: &str = "errors";
pub const TOOL_TRANSACTIONS: &str = "transactions";
const TOOLS: [&str; 3] = [TOOL_NRQL, TOOL_ERRORS, TOOL_TRANSACTIONS];

pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 2000;
pub const MAX_RESPONSE_BYTES: usize = crate::sources::http::MAX_RESPONSE_BYTES;
const MAX_RETRIES: u32 = 2;
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const NRQL_DOCUMENT: &str = "query($id: Int!, $nrql: Nrql!) { actor { account(id: $id) { nrql(query: $nrql, timeout: 30) { results } } } }";

pub struct NewRelicSource {
    name: String,
    endpoint: String,
    /// UI base for links.
    ui: String,
    http: reqwest::Client,
    api_key: Secret,
    account_id: u64,
    services: Option<Vec<String>>,
}

/// The registry's factory for `newrelic`.
pub fn build(entry: &SourceEntry, ctx: &BuildContext) -> Result<Arc<dyn Source>> {
    let SourceSpec::NewRelic(config) = &entry.spec else {
        return Err(Error::Config(format!(
            "source `{}` is not a newrelic source",
            entry.name
        )));
    };
    Ok(Arc::new(NewRelicSource::new(&entry.name, config, ctx)?))
}

impl NewRelicSource {
    pub fn new(name: &str, config: &NewRelicConfig, ctx: &BuildContext) -> Result<Self> {
        let api_key = config
            .api_key
            .resolve(ctx.master_key.as_deref())
            .map_err(|e| Error::Config(format!("newrelic `{name}`: api_key: {e}")))?;
        let eu = match config
            .region
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("us") => false,
            Some("eu") => true,
            Some(other) => {
                return Err(Error::Config(format!(
                    "newrelic `{name}`: region `{other}` (expected us or eu)"
                )))
            }
        };
        let endpoint = match &config.base_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None if eu => "https://api.eu.newrelic.com/graphql".into(),
            None => "https://api.newrelic.com/graphql".into(),
        };
        let ui = if eu {
            "https://one.eu.newrelic.com"
        } else {
            "https://one.newrelic.com"
        };
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Config(format!("newrelic `{name}`: http client: {e}")))?;
        Ok(NewRelicSource {
            name: name.to_string(),
            endpoint,
            ui: ui.into(),
            http,
            api_key,
            account_id: config.account_id,
            services: config.app_id.as_ref().map(|l| l.items()),
        })
    }

    /// The services this principal sees (`None`: all): the grant narrowed by `app_id`.
    pub fn visible_services(&self, grant: &SourceGrant) -> Option<Vec<String>> {
        crate::sources::visible_services(grant.services.as_deref(), self.services.as_deref())
    }

    /// POSTs a GraphQL document; returns `data`, or the `errors` array as an error.
    async fn graphql(&self, document: &str, variables: Value, timeout: Duration) -> Result<Value> {
        let timeout = timeout.min(DEFAULT_TIMEOUT);
        let body = json!({"query": document, "variables": variables});
        let mut attempt = 0;
        loop {
            let response = self
                .http
                .post(&self.endpoint)
                .timeout(timeout)
                .header("API-Key", self.api_key.expose())
                .json(&body)
                .send()
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        Error::Timeout(timeout)
                    } else {
                        // The key travels in a header; the URL holds none.
                        Error::Unavailable(format!(
                            "newrelic `{}`: {}",
                            self.name,
                            send_failure(&e)
                        ))
                    }
                })?;
            let status = response.status();
            if status.as_u16() == 429 && attempt < MAX_RETRIES {
                attempt += 1;
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64)
                    .unwrap_or(Duration::from_secs(1))
                    .min(MAX_RETRY_WAIT);
                tracing::info!(source = %self.name, wait_ms = wait.as_millis() as u64, "rate limited; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            let bytes = read_capped(response).await?;
            let parsed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let errors: Vec<(String, String)> = parsed
                .get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e.get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("error")
                            .to_string(),
                        e.pointer("/extensions/errorClass")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .collect();
            let messages = || {
                errors
                    .iter()
                    .map(|(m, _)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            if matches!(status.as_u16(), 401 | 403)
                || errors
                    .iter()
                    .any(|(_, class)| class == "UNAUTHORIZED" || class == "FORBIDDEN")
            {
                return Err(Error::Unavailable(format!(
                    "newrelic `{}` refused our key (HTTP {status}: {})",
                    self.name,
                    messages()
                )));
            }
            if status.as_u16() == 429 {
                return Err(Error::Unavailable(format!(
                    "newrelic `{}` is rate limiting us (HTTP 429) after {MAX_RETRIES} retries",
                    self.name
                )));
            }
            if !status.is_success() {
                return Err(Error::Unavailable(format!("HTTP {status}: {}", messages())));
            }
            if !errors.is_empty() {
                // NerdGraph answers 200 with `errors` for NRQL syntax and timeouts.
                return Err(Error::Query(messages()));
            }
            return Ok(parsed.get("data").cloned().unwrap_or(Value::Null));
        }
    }

    /// Bounds, scopes and runs one NRQL query.
    async fn run_nrql(
        &self,
        tool: &str,
        query: &str,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let visible = self.visible_services(grant);
        let (query, mut notes) = nrql::bound(query, visible.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)
            .map_err(|e| match e {
            nrql::Error::Subquery | nrql::Error::BadService(_) => Error::Refused(e.to_string()),
            nrql::Error::NotSelect
            | nrql::Error::Multiple
            | nrql::Error::Unbalanced
            | nrql::Error::Repeated(_)
            | nrql::Error::BadLimit => Error::BadArguments {
                tool: tool.into(),
                message: e.to_string(),
            },
        })?;
        let data = self
            .graphql(
                NRQL_DOCUMENT,
                json!({"id": self.account_id, "nrql": query}),
                ctx.timeout,
            )
            .await?;
        let results = data
            .pointer("/actor/account/nrql/results")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| Error::Query("NerdGraph returned no NRQL results".into()))?;
        let link = link(&self.ui, self.account_id, &query);
        notes.push(format!("open in New Relic: {link}"));
        let rows: Vec<Map<String, Value>> = results
            .iter()
            .map(|r| {
                let mut flat = Map::new();
                flatten("", r, &mut flat);
                flat
            })
            .collect();
        let timeseries =
            !rows.is_empty() && rows.iter().all(|r| r.contains_key("beginTimeSeconds"));
        let (content, attachments) = if timeseries {
            let series = to_series(&rows);
            let step = rows
                .first()
                .and_then(|r| {
                    Some(r.get("endTimeSeconds")?.as_i64()? - r.get("beginTimeSeconds")?.as_i64()?)
                })
                .unwrap_or(60);
            let attachments = chart(&series).into_iter().collect();
            (
                Content::Json(metrics::series_to_json(&series, step)),
                attachments,
            )
        } else {
            let mut names: Vec<String> = Vec::new();
            for r in &rows {
                for k in r.keys() {
                    if !names.contains(k) {
                        names.push(k.clone());
                    }
                }
            }
            let mut table = Table::new(names.iter().map(|n| column(n, "JSON")).collect());
            for r in &rows {
                table.rows.push(
                    names
                        .iter()
                        .map(|n| r.get(n).cloned().unwrap_or(Value::Null))
                        .collect(),
                );
            }
            if let Some(n) = cap_rows(&mut table) {
                notes.push(n);
            }
            (Content::Table(table), Vec::new())
        };
        Ok(ToolOutput {
            statement: format!("NRQL account {}: {query}", self.account_id),
            content,
            note: Some(notes.join("; ")),
            attachments,
        })
    }

    /// `SINCE … UNTIL …` from the `start`/`end` arguments, in epoch milliseconds.
    fn window(&self, tool: &str, args: &Value) -> Result<String> {
        let (start, end) = time_range(tool, args, Utc::now())?;
        Ok(format!(
            "SINCE {} UNTIL {}",
            start.timestamp_millis(),
            end.timestamp_millis()
        ))
    }

    /// `WHERE appName = '<s>'` for a named service, checked against the grant.
    fn service_filter(&self, tool: &str, args: &Value, grant: &SourceGrant) -> Result<String> {
        let Some(service) = arg_opt_str(tool, args, "service")? else {
            return Ok(String::new());
        };
        if let Some(v) = self.visible_services(grant) {
            if !v.iter().any(|s| s == service) {
                return Err(Error::Refused(format!(
                    "service `{service}` is outside your grant on `{}` (you may see: {})",
                    self.name,
                    v.join(", ")
                )));
            }
        }
        if service.contains(['\'', '\\']) {
            return Err(Error::BadArguments {
                tool: tool.into(),
                message: "`service` must not contain quotes".into(),
            });
        }
        Ok(format!(" WHERE appName = '{service}'"))
    }
}

/// Flattens nested objects (`percentile.duration: {"95": 0.3}`) into dotted keys.
fn flatten(prefix: &str, value: &Value, out: &mut Map<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// TIMESERIES rows → one series per (facet, numeric field).
fn to_series(rows: &[Map<String, Value>]) -> Vec<Series> {
    let mut by_key: BTreeMap<(String, String), Vec<(i64, f64)>> = BTreeMap::new();
    for r in rows {
        let Some(t) = r.get("beginTimeSeconds").and_then(Value::as_i64) else {
            continue;
        };
        let facet = match r.get("facet") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| p.to_string())
                })
                .collect::<Vec<_>>()
                .join(", "),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        for (k, v) in r {
            if matches!(
                k.as_str(),
                "beginTimeSeconds" | "endTimeSeconds" | "facet" | "inspectedCount"
            ) {
                continue;
            }
            if let Some(v) = v.as_f64() {
                by_key
                    .entry((facet.clone(), k.clone()))
                    .or_default()
                    .push((t, v));
            }
        }
    }
    by_key
        .into_iter()
        .map(|((facet, field), points)| {
            let mut labels = BTreeMap::new();
            labels.insert("field".to_string(), field);
            if !facet.is_empty() {
                labels.insert("facet".to_string(), facet);
            }
            Series { labels, points }
        })
        .collect()
}

/// A query-builder link carrying the NRQL text (best effort: New Relic documents
/// no stable deep-link format, the account and the query are what a reader needs).
fn link(ui: &str, account_id: u64, query: &str) -> String {
    ui_link(
        ui,
        "/data-exploration/query-builder",
        &[
            ("accountId", account_id.to_string()),
            ("query", query.to_string()),
        ],
    )
}

async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>> {
    crate::sources::http::read_capped(response, MAX_RESPONSE_BYTES, "narrow the query").await
}

#[async_trait]
impl Source for NewRelicSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "newrelic"
    }

    fn tools(&self, grant: &SourceGrant) -> Vec<ToolSpec> {
        let name = &self.name;
        let scope = match self.visible_services(grant) {
            Some(v) => format!(
                " Only applications [{}] are visible: `appName IN (…)` is added to every query for you.",
                v.join(", ")
            ),
            None => String::new(),
        };
        let [start, end] = time_props();
        let service = json!({"type": "string", "description": "Application name (appName); default all visible ones."});
        vec![
            ToolSpec {
                name: TOOL_NRQL.into(),
                description: format!(
                    "Run one NRQL SELECT on New Relic `{name}`, e.g. `SELECT percentile(duration, 95) FROM Transaction FACET name TIMESERIES 5 minutes SINCE 3 hours ago`. SELECT…FROM only; without SINCE the last hour is used; LIMIT at most {MAX_LIMIT} (default {DEFAULT_LIMIT}). TIMESERIES results come back summarised per series (changes, windows) with a chart.{scope}"
                ),
                input_schema: props(&[(
                    "query",
                    json!({"type": "string", "required": true, "description": "NRQL SELECT statement."}),
                )]),
            },
            ToolSpec {
                name: TOOL_ERRORS.into(),
                description: format!(
                    "Top errors on New Relic `{name}`: TransactionError counts by application, error class and message, with first and last seen.{scope}"
                ),
                input_schema: props(&[("service", service.clone()), start.clone(), end.clone()]),
            },
            ToolSpec {
                name: TOOL_TRANSACTIONS.into(),
                description: format!(
                    "Slowest and busiest transactions on New Relic `{name}`: count, error rate, and p50/p95/p99 duration (seconds) per application and transaction name.{scope}"
                ),
                input_schema: props(&[("service", service), start, end]),
            },
        ]
    }

    async fn health(&self) -> Health {
        let started = Instant::now();
        let result = self
            .graphql(
                "query($id: Int!) { actor { account(id: $id) { id name } } }",
                json!({"id": self.account_id}),
                Duration::from_secs(10),
            )
            .await;
        let latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(data) => match data.pointer("/actor/account/name").and_then(Value::as_str) {
                Some(account) => Health {
                    ok: true,
                    detail: format!("New Relic account {} ({account})", self.account_id),
                    latency_ms,
                },
                None => Health {
                    ok: false,
                    detail: format!("the key cannot read New Relic account {}", self.account_id),
                    latency_ms,
                },
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
            TOOL_NRQL => {
                reject_unknown_args(tool, args, &["query"])?;
                let query = arg_str(tool, args, "query")?;
                self.run_nrql(tool, query, grant, ctx).await
            }
            TOOL_ERRORS => {
                reject_unknown_args(tool, args, &["service", "start", "end"])?;
                let filter = self.service_filter(tool, args, grant)?;
                let window = self.window(tool, args)?;
                let query = format!(
                    "SELECT count(*), earliest(timestamp), latest(timestamp) FROM TransactionError{filter} FACET appName, error.class, error.message {window} LIMIT 50"
                );
                self.run_nrql(tool, &query, grant, ctx).await
            }
            TOOL_TRANSACTIONS => {
                reject_unknown_args(tool, args, &["service", "start", "end"])?;
                let filter = self.service_filter(tool, args, grant)?;
                let window = self.window(tool, args)?;
                let query = format!(
                    "SELECT count(*), percentage(count(*), WHERE error IS true) AS 'error %', percentile(duration, 50, 95, 99) FROM Transaction{filter} FACET appName, name {window} LIMIT 50"
                );
                self.run_nrql(tool, &query, grant, ctx).await
            }
            other => Err(Error::UnknownTool {
                tool: other.to_string(),
                offered: TOOLS.join(", "),
            }),
        }
    }

    async fn describe(&self, grant: &SourceGrant, _ctx: &CallContext) -> Result<String> {
        Ok(match self.visible_services(grant) {
            Some(v) => format!(
                "New Relic `{}` (account {}): NRQL over applications {}",
                self.name,
                self.account_id,
                v.join(", ")
            ),
            None => format!(
                "New Relic `{}` (account {}): NRQL over every application",
                self.name, self.account_id
            ),
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
