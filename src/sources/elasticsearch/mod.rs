//! Elasticsearch and OpenSearch through their REST API, with reqwest and serde.
//!
//! Why not the official `elasticsearch` crate: it is published only as alphas, and
//! it sends Elasticsearch-only compatibility headers (`application/vnd.elasticsearch+json;
//! compatible-with=8`) that OpenSearch refuses. The handful of endpoints used here
//! (`_search`, `_count`, `/`) are plain JSON over HTTP, so one small client serves
//! both, and the query DSL is built from the tool's arguments, never taken from the
//! model.
//!
//! Scope: the indices searched are the configured patterns, narrowed by the grant's
//! `indices` (a granted pattern counts only where it lies within a configured one);
//! a grant with `services` or `namespaces` adds a `terms` filter on the service
//! or namespace field to every query, aggregations and every page included; a
//! `service` or `namespace` argument outside the grant is refused, never widened.
//! Hits are returned whole as evidence (and as an NDJSON attachment); the model
//! gets them grouped by message template.
//!
//! A 200 answer can still be incomplete (failed shards, `timed_out`); every tool
//! says so first in its note, since counts and hits are then too low.

mod query;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Map, Value};

use super::http::send_failure;
use super::{
    arg_opt_str, arg_opt_u64, arg_str, reject_unknown_args, BuildContext, CallContext, Error,
    Health, Result, Source, ToolOutput, ToolSpec,
};
use crate::access::SourceGrant;
use crate::config::{ElasticsearchConfig, HumanDuration, Secret, SourceEntry, SourceSpec};
use crate::evidence::metrics::{self, Series};
use crate::evidence::patterns::{Drain, DrainConfig};
use crate::evidence::{Attachment, Column, Content, Table};
use crate::sources::logfile::wildcard_match;

pub use query::{within, Filters, Partial};

/// Arguments every tool takes (see `filters` and `target`).
const FILTER_ARGS: [&str; 7] = [
    "start",
    "end",
    "service",
    "namespace",
    "level",
    "text",
    "index",
];

/// Refuses arguments other than the filters and the tool's `own`.
fn check_args(tool: &str, args: &Value, own: &[&str]) -> Result<()> {
    let known: Vec<&str> = FILTER_ARGS.iter().chain(own).copied().collect();
    reject_unknown_args(tool, args, &known)
}

pub const TOOL_SEARCH: &str = "search_logs";
pub const TOOL_COUNT: &str = "count";
pub const TOOL_COUNT_OVER_TIME: &str = "count_over_time";
pub const TOOL_TOP_VALUES: &str = "top_values";
const TOOLS: [&str; 4] = [
    TOOL_SEARCH,
    TOOL_COUNT,
    TOOL_COUNT_OVER_TIME,
    TOOL_TOP_VALUES,
];

/// Hits one page asks for.
pub const PAGE_SIZE: u64 = 500;
/// How long a point in time lives between two pages.
const PIT_KEEP_ALIVE: &str = "1m";
/// Hits one search returns at most (pages stop there), unless `max_hits` is lower.
pub const MAX_HITS: u64 = 5_000;
pub const DEFAULT_LIMIT: u64 = 200;
/// Buckets `count_over_time` aims for.
pub const TARGET_BUCKETS: i64 = 120;
pub const MAX_TOP: u64 = 100;
/// Templates the model sees per search.
pub const MAX_PATTERNS_SHOWN: usize = 30;
/// Bytes read of one response.
pub const MAX_RESPONSE_BYTES: usize = crate::sources::http::MAX_RESPONSE_BYTES;
/// Retries of a 429 (honouring `Retry-After`, capped at [`MAX_RETRY_WAIT`]).
const MAX_RETRIES: u32 = 2;
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ElasticsearchSource {
    name: String,
    kind: &'static str,
    hosts: Vec<String>,
    http: reqwest::Client,
    auth: Auth,
    timeout: Duration,
    patterns: Vec<String>,
    fields: Fields,
    max_hits: u64,
}

/// Field names in the documents.
#[derive(Debug, Clone)]
pub struct Fields {
    pub timestamp: String,
    pub service: String,
    pub namespace: String,
    pub level: String,
    pub message: String,
}

enum Auth {
    None,
    Basic(String, Option<Secret>),
    ApiKey(Secret),
    Bearer(Secret),
}

/// The registry's factory for `elasticsearch` and `opensearch`.
pub fn build(entry: &SourceEntry, ctx: &BuildContext) -> Result<Arc<dyn Source>> {
    let (config, kind) = match &entry.spec {
        SourceSpec::Elasticsearch(c) => (c, "elasticsearch"),
        SourceSpec::OpenSearch(c) => (c, "opensearch"),
        SourceSpec::Database(_)
        | SourceSpec::BigQuery(_)
        | SourceSpec::Datadog(_)
        | SourceSpec::NewRelic(_)
        | SourceSpec::Kubernetes(_)
        | SourceSpec::Prometheus(_)
        | SourceSpec::Logfile(_) => {
            return Err(Error::Config(format!(
                "source `{}` is not an elasticsearch/opensearch source",
                entry.name
            )))
        }
    };
    Ok(Arc::new(ElasticsearchSource::new(
        &entry.name,
        kind,
        config,
        ctx,
    )?))
}

impl ElasticsearchSource {
    pub fn new(
        name: &str,
        kind: &'static str,
        config: &ElasticsearchConfig,
        ctx: &BuildContext,
    ) -> Result<Self> {
        let key = ctx.master_key.as_deref();
        let resolve = |what: &str, secret: &crate::config::SecretRef| {
            secret
                .resolve(key)
                .map_err(|e| Error::Config(format!("{kind} `{name}`: {what}: {e}")))
        };
        let auth = match (&config.api_key, &config.bearer_token, &config.username) {
            (Some(k), None, None) => Auth::ApiKey(resolve("api_key", k)?),
            (None, Some(t), None) => Auth::Bearer(resolve("bearer_token", t)?),
            (None, None, Some(user)) => Auth::Basic(
                user.clone(),
                config
                    .password
                    .as_ref()
                    .map(|p| resolve("password", p))
                    .transpose()?,
            ),
            (None, None, None) => Auth::None,
            _ => {
                return Err(Error::Config(format!(
                    "{kind} `{name}`: set one of api_key, bearer_token or username/password"
                )))
            }
        };
        let timeout = config
            .timeout
            .map(|HumanDuration(d)| d)
            .unwrap_or(DEFAULT_TIMEOUT);
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10));
        if let Some(path) = &config.ca_cert {
            let path = ctx.config_dir.join(path);
            let pem = std::fs::read(&path).map_err(|e| {
                Error::Config(format!("{kind} `{name}`: ca_cert {}: {e}", path.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Error::Config(format!(
                    "{kind} `{name}`: ca_cert {} is not a PEM certificate: {e}",
                    path.display()
                ))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("{kind} `{name}`: http client: {e}")))?;
        let hosts: Vec<String> = config
            .hosts
            .iter()
            .map(|h| h.trim_end_matches('/').to_string())
            .collect();
        if hosts.is_empty()
            || hosts
                .iter()
                .any(|h| !(h.starts_with("http://") || h.starts_with("https://")))
        {
            return Err(Error::Config(format!(
                "{kind} `{name}`: hosts must be http:// or https:// URLs"
            )));
        }
        let patterns = config
            .indices
            .as_ref()
            .map(|i| i.patterns())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| vec!["*".to_string()]);
        for p in &patterns {
            query::check_index_pattern(p).map_err(|why| {
                Error::Config(format!("{kind} `{name}`: index pattern `{p}`: {why}"))
            })?;
        }
        Ok(ElasticsearchSource {
            name: name.to_string(),
            kind,
            hosts,
            http,
            auth,
            timeout,
            patterns,
            fields: Fields {
                timestamp: config
                    .timestamp_field
                    .clone()
                    .unwrap_or_else(|| "@timestamp".into()),
                service: config
                    .service_field
                    .clone()
                    .unwrap_or_else(|| "service.name".into()),
                namespace: config
                    .namespace_field
                    .clone()
                    .unwrap_or_else(|| "kubernetes.namespace".into()),
                level: config
                    .level_field
                    .clone()
                    .unwrap_or_else(|| "log.level".into()),
                message: config
                    .message_field
                    .clone()
                    .unwrap_or_else(|| "message".into()),
            },
            max_hits: u64::from(config.max_hits.unwrap_or(MAX_HITS as u32)).clamp(1, MAX_HITS),
        })
    }

    /// The index patterns a grant reaches: configured ones, or the granted ones that
    /// lie within a configured one.
    pub fn allowed_patterns(&self, grant: &SourceGrant) -> Vec<String> {
        match &grant.indices {
            None => self.patterns.clone(),
            Some(granted) => granted
                .iter()
                .filter(|g| query::check_index_pattern(g).is_ok())
                .filter(|g| self.patterns.iter().any(|p| within(g, p)))
                .cloned()
                .collect(),
        }
    }

    /// The `index` argument (optional) checked against what the grant reaches.
    fn target(&self, tool: &str, args: &Value, grant: &SourceGrant) -> Result<String> {
        let allowed = self.allowed_patterns(grant);
        if allowed.is_empty() {
            return Err(Error::Refused(format!(
                "no index of `{}` is granted to you",
                self.name
            )));
        }
        match arg_opt_str(tool, args, "index")? {
            None => Ok(allowed.join(",")),
            Some(asked) => {
                query::check_index_pattern(asked).map_err(|why| Error::BadArguments {
                    tool: tool.into(),
                    message: format!("`index`: {why}"),
                })?;
                if allowed.iter().any(|a| within(asked, a)) {
                    Ok(asked.to_string())
                } else {
                    Err(Error::Refused(format!(
                        "index `{asked}` is outside what you may search on `{}` ({})",
                        self.name,
                        allowed.join(", ")
                    )))
                }
            }
        }
    }

    fn filters(&self, tool: &str, args: &Value, grant: &SourceGrant) -> Result<Filters> {
        let now = Utc::now();
        let (start, end) = time_range(tool, args, now)?;
        let service = arg_opt_str(tool, args, "service")?.map(str::to_string);
        if let (Some(s), Some(granted)) = (&service, &grant.services) {
            if !granted.iter().any(|g| g == s) {
                return Err(Error::Refused(format!(
                    "service `{s}` is outside your grant ({})",
                    granted.join(", ")
                )));
            }
        }
        let namespace = arg_opt_str(tool, args, "namespace")?.map(str::to_string);
        if let Some(ns) = &namespace {
            if ns.trim().is_empty() || ns.len() > 253 {
                return Err(Error::BadArguments {
                    tool: tool.into(),
                    message: "`namespace` must be 1 to 253 characters".into(),
                });
            }
            if let Some(granted) = &grant.namespaces {
                if !granted.iter().any(|g| g == ns) {
                    return Err(Error::Refused(format!(
                        "namespace `{ns}` is outside your grant on `{}` (granted: {})",
                        self.name,
                        granted.join(", ")
                    )));
                }
            }
        }
        let text = arg_opt_str(tool, args, "text")?.map(str::to_string);
        if text.as_ref().is_some_and(|t| t.len() > 1000) {
            return Err(Error::BadArguments {
                tool: tool.into(),
                message: "`text` is longer than 1000 characters".into(),
            });
        }
        Ok(Filters {
            start,
            end,
            service,
            level: arg_opt_str(tool, args, "level")?.map(str::to_string),
            text,
            granted_services: grant.services.clone(),
            namespace,
            granted_namespaces: grant.namespaces.clone(),
        })
    }

    /// POSTs `body` to `path` on the first host that answers (a connection failure or
    /// a 502/503/504 moves on to the next), retrying a 429 after its `Retry-After`.
    /// Returns the parsed JSON of a 2xx.
    async fn post(&self, path: &str, body: &Value, timeout: Duration) -> Result<Value> {
        self.send_json(reqwest::Method::POST, path, body, timeout)
            .await
    }

    async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value> {
        let timeout = timeout.min(self.timeout);
        let mut last_error = None;
        for (h, host) in self.hosts.iter().enumerate() {
            let mut attempt = 0;
            loop {
                let mut request = self
                    .http
                    .request(method.clone(), format!("{host}{path}"))
                    .json(body)
                    .timeout(timeout);
                request = match &self.auth {
                    Auth::None => request,
                    Auth::Basic(user, password) => {
                        request.basic_auth(user, password.as_ref().map(|p| p.expose()))
                    }
                    Auth::ApiKey(key) => {
                        request.header("Authorization", format!("ApiKey {}", key.expose()))
                    }
                    Auth::Bearer(token) => request.bearer_auth(token.expose()),
                };
                let response = match request.send().await {
                    Ok(r) => r,
                    Err(e) if e.is_timeout() => return Err(Error::Timeout(timeout)),
                    Err(e) => {
                        // Connection-level failure: try the next host.
                        last_error = Some(format!("{host}: {}", send_failure(&e)));
                        break;
                    }
                };
                let status = response.status();
                if status.as_u16() == 429 && attempt < MAX_RETRIES {
                    attempt += 1;
                    let wait = retry_after(response.headers()).min(MAX_RETRY_WAIT);
                    tracing::info!(source = %self.name, wait_ms = wait.as_millis() as u64, "rate limited; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                let bytes = read_capped(response).await?;
                let parsed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if status.is_success() {
                    return Ok(parsed);
                }
                // A gateway or node that cannot serve now (a proxy in front of a
                // restarting node, a node leaving the cluster): another host may.
                // Reads only, so asking again is safe.
                if matches!(status.as_u16(), 502..=504) && h + 1 < self.hosts.len() {
                    tracing::info!(source = %self.name, status = status.as_u16(), "host unavailable; trying the next");
                    last_error = Some(format!("{host}: HTTP {}", status.as_u16()));
                    break;
                }
                return Err(self.error_of(status.as_u16(), &parsed));
            }
        }
        Err(Error::Unavailable(format!(
            "{} `{}`: no host answered ({})",
            self.kind,
            self.name,
            last_error.unwrap_or_default()
        )))
    }

    /// Maps an error response: the reason of the root cause, which both products put
    /// in `error.root_cause[0].reason` (older ones send `error` as a string).
    fn error_of(&self, status: u16, body: &Value) -> Error {
        let error = body.get("error");
        let root = error
            .and_then(|e| e.get("root_cause"))
            .and_then(|r| r.get(0));
        let kind = root
            .or(error)
            .and_then(|e| e.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("error");
        let reason = root
            .or(error)
            .and_then(|e| e.get("reason"))
            .and_then(Value::as_str)
            .or_else(|| error.and_then(Value::as_str))
            .unwrap_or("no reason given");
        match status {
            401 | 403 => Error::Unavailable(format!(
                "{} `{}` refused our credentials (HTTP {status} {kind})",
                self.kind, self.name
            )),
            429 => Error::Unavailable(format!(
                "{} `{}` is rate limiting us (HTTP 429) after {MAX_RETRIES} retries",
                self.kind, self.name
            )),
            400 | 404 => Error::Query(format!("{kind}: {reason}")),
            _ => Error::Unavailable(format!("HTTP {status} {kind}: {reason}")),
        }
    }

    async fn search(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_SEARCH;
        check_args(tool, args, &["limit"])?;
        let index = self.target(tool, args, grant)?;
        let filters = self.filters(tool, args, grant)?;
        let limit = arg_opt_u64(tool, args, "limit")?
            .unwrap_or(DEFAULT_LIMIT)
            .clamp(1, self.max_hits);
        let deadline = Instant::now() + ctx.timeout;
        let mut paged = Paged::default();
        // More than one page: page through one point in time, so documents indexed
        // or refreshed meanwhile neither shift nor repeat hits across pages.
        let mut pit = if limit > PAGE_SIZE {
            self.open_pit(&index, deadline).await
        } else {
            None
        };
        let outcome = self
            .page_hits(&filters, &index, limit, deadline, &mut pit, &mut paged)
            .await;
        if let Some(id) = pit {
            self.close_pit(&id).await;
        }
        outcome?;
        let Paged {
            hits,
            total,
            pages,
            notes: paging_notes,
            partial,
            tiebreak,
        } = paged;
        // Partial results first: they qualify every number after them.
        let mut notes: Vec<String> = partial.note().into_iter().collect();
        notes.extend(paging_notes);
        let (total_count, exact) = total.unwrap_or((hits.len() as u64, true));
        if total_count > hits.len() as u64 {
            notes.push(format!(
                "{} of {}{total_count} hits returned (newest first, limit {limit})",
                hits.len(),
                if exact { "" } else { "at least " }
            ));
        }
        let rows: Vec<LogRow> = hits.iter().map(|h| self.row(h)).collect();
        let ndjson = hits
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let attachment = Attachment::new(
            "hits.ndjson",
            "application/x-ndjson",
            format!("{} hits as returned, one JSON document a line", hits.len()),
            ndjson.into_bytes(),
        );
        if attachment.is_none() && !hits.is_empty() {
            notes.push("hits too large to attach as NDJSON".into());
        }
        let content = log_hits_json(&rows, total_count, exact);
        Ok(ToolOutput {
            statement: format!(
                "POST /{index}/_search ({pages} page(s)) {}",
                query::search_body(
                    &self.fields,
                    &filters,
                    PAGE_SIZE.min(limit),
                    None,
                    tiebreak.unwrap_or(query::Tiebreak::Doc)
                )
            ),
            content: Content::Json(content),
            note: (!notes.is_empty()).then(|| notes.join("; ")),
            attachments: attachment.into_iter().collect(),
        })
    }

    /// The search_after loop of `search_logs`, through `pit` when one is open.
    /// What it gathered stays in `paged` even when a later page fails.
    async fn page_hits(
        &self,
        filters: &query::Filters,
        index: &str,
        limit: u64,
        deadline: Instant,
        pit: &mut Option<String>,
        paged: &mut Paged,
    ) -> Result<()> {
        let Paged {
            hits,
            total,
            pages,
            notes,
            partial,
            tiebreak: used,
        } = paged;
        let mut search_after: Option<Value> = None;
        let mut tiebreak = match (self.kind, pit.is_some()) {
            ("elasticsearch", true) => query::Tiebreak::ShardDoc,
            _ => query::Tiebreak::Doc,
        };
        while (hits.len() as u64) < limit {
            let size = (limit - hits.len() as u64).min(PAGE_SIZE);
            let mut body =
                query::search_body(&self.fields, filters, size, search_after.as_ref(), tiebreak);
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                notes.push("stopped paging at the call's time limit".to_string());
                break;
            }
            // A point in time names its indices; the search path must not.
            let path = match pit.as_ref() {
                Some(id) => {
                    body["pit"] = json!({"id": id, "keep_alive": PIT_KEEP_ALIVE});
                    "/_search".to_string()
                }
                None => format!("/{}/_search", encode_index(index)),
            };
            let response = match self.post(&path, &body, remaining).await {
                // Elasticsearch 7.10 and 7.11 have points in time but not `_shard_doc`:
                // the first page says so, and paging goes on with `_doc`.
                Err(Error::Query(message))
                    if tiebreak == query::Tiebreak::ShardDoc
                        && *pages == 0
                        && message.contains("_shard_doc") =>
                {
                    tracing::debug!(source = %self.name, %message, "no _shard_doc; ties broken by _doc");
                    tiebreak = query::Tiebreak::Doc;
                    continue;
                }
                other => other?,
            };
            *pages += 1;
            *used = Some(tiebreak);
            partial.add(&response);
            // Elasticsearch may hand out a new id with each page; the newest counts.
            if let (Some(id), Some(newer)) =
                (pit.as_mut(), response.get("pit_id").and_then(Value::as_str))
            {
                *id = newer.to_string();
            }
            if total.is_none() {
                *total = query::total_hits(&response);
            }
            let page: Vec<Value> = response
                .pointer("/hits/hits")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let got = page.len() as u64;
            search_after = page.last().and_then(|h| h.get("sort")).cloned();
            hits.extend(page);
            if got < size || search_after.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// Opens a point in time on `index` (Elasticsearch 7.10+: `_pit`; OpenSearch
    /// 2.4+: `_search/point_in_time`). None when the cluster has none or refuses
    /// (older versions, missing privilege): paging then goes without one.
    async fn open_pit(&self, index: &str, deadline: Instant) -> Option<String> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let (path, field) = match self.kind {
            "opensearch" => ("_search/point_in_time", "pit_id"),
            _ => ("_pit", "id"),
        };
        let path = format!(
            "/{}/{path}?keep_alive={PIT_KEEP_ALIVE}",
            encode_index(index)
        );
        match self
            .post(&path, &json!({}), remaining.min(Duration::from_secs(5)))
            .await
        {
            Ok(response) => response
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_string),
            Err(err) => {
                tracing::debug!(source = %self.name, error = %err, "no point in time; paging without one");
                None
            }
        }
    }

    /// Frees a point in time; if this fails it expires after its keep-alive.
    async fn close_pit(&self, id: &str) {
        let (path, body) = match self.kind {
            "opensearch" => ("/_search/point_in_time", json!({"pit_id": [id]})),
            _ => ("/_pit", json!({"id": id})),
        };
        if let Err(err) = self
            .send_json(reqwest::Method::DELETE, path, &body, Duration::from_secs(5))
            .await
        {
            tracing::debug!(source = %self.name, error = %err, "closing a point in time failed; it expires by itself");
        }
    }

    fn row(&self, hit: &Value) -> LogRow {
        let source = hit.get("_source").unwrap_or(&Value::Null);
        let field = |name: &str| field_text(source, name);
        LogRow {
            timestamp: field(&self.fields.timestamp),
            level: field(&self.fields.level),
            service: field(&self.fields.service),
            message: message_of(source, &self.fields.message),
            index: hit
                .get("_index")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }
    }

    async fn count(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_COUNT;
        check_args(tool, args, &[])?;
        let index = self.target(tool, args, grant)?;
        let filters = self.filters(tool, args, grant)?;
        let body = json!({"query": query::bool_query(&self.fields, &filters)});
        let response = self
            .post(
                &format!("/{}/_count", encode_index(&index)),
                &body,
                ctx.timeout,
            )
            .await?;
        let count = response
            .get("count")
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::Query("_count answered without a count".into()))?;
        let mut table = Table::new(vec![column("count", "INT8")]);
        table.rows.push(vec![json!(count)]);
        table.total_rows = Some(1);
        Ok(ToolOutput {
            statement: format!("POST /{index}/_count {body}"),
            content: Content::Table(table),
            note: partial_note(&response),
            attachments: Vec::new(),
        })
    }

    async fn count_over_time(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_COUNT_OVER_TIME;
        check_args(tool, args, &["interval"])?;
        let index = self.target(tool, args, grant)?;
        let filters = self.filters(tool, args, grant)?;
        let span = (filters.end - filters.start).num_seconds().max(1);
        let interval = match arg_opt_str(tool, args, "interval")? {
            Some(text) => HumanDuration::parse(text)
                .map_err(|message| Error::BadArguments {
                    tool: tool.into(),
                    message,
                })?
                .0
                .as_secs()
                .max(1) as i64,
            None => (span / TARGET_BUCKETS).max(1),
        }
        .max(span / 2_000 + 1);
        let body = json!({
            "size": 0,
            "track_total_hits": true,
            "query": query::bool_query(&self.fields, &filters),
            "aggs": {"over_time": {"date_histogram": {
                "field": self.fields.timestamp,
                "fixed_interval": format!("{interval}s"),
                "min_doc_count": 0,
                "extended_bounds": {
                    "min": filters.start.timestamp_millis(),
                    "max": filters.end.timestamp_millis()
                }
            }}}
        });
        let response = self
            .post(
                &format!("/{}/_search", encode_index(&index)),
                &body,
                ctx.timeout,
            )
            .await?;
        let points: Vec<(i64, f64)> = response
            .pointer("/aggregations/over_time/buckets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|b| {
                let t = b.get("key").and_then(Value::as_i64)? / 1000;
                let n = b.get("doc_count").and_then(Value::as_f64)?;
                Some((t, n))
            })
            .collect();
        let mut labels = BTreeMap::from([("__name__".to_string(), "hits".to_string())]);
        if let Some(s) = &filters.service {
            labels.insert("service".into(), s.clone());
        }
        if let Some(n) = &filters.namespace {
            labels.insert("namespace".into(), n.clone());
        }
        if let Some(l) = &filters.level {
            labels.insert("level".into(), l.clone());
        }
        let series = vec![Series { labels, points }];
        let chart = metrics::chart_png(&series.iter().collect::<Vec<_>>(), 900, 320)
            .ok()
            .and_then(|png| {
                Attachment::new(
                    "count_over_time.png",
                    "image/png",
                    format!("hits per {interval}s on {index}"),
                    png,
                )
            });
        Ok(ToolOutput {
            statement: format!("POST /{index}/_search {body}"),
            content: Content::Json(metrics::series_to_json(&series, interval)),
            note: partial_note(&response),
            attachments: chart.into_iter().collect(),
        })
    }

    async fn top_values(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_TOP_VALUES;
        check_args(tool, args, &["field", "size"])?;
        let field = arg_str(tool, args, "field")?;
        if !field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
        {
            return Err(Error::BadArguments {
                tool: tool.into(),
                message: "`field` must be a field name like service.name or http.status_code"
                    .into(),
            });
        }
        let index = self.target(tool, args, grant)?;
        let filters = self.filters(tool, args, grant)?;
        let size = arg_opt_u64(tool, args, "size")?
            .unwrap_or(10)
            .clamp(1, MAX_TOP);
        let body = json!({
            "size": 0,
            "query": query::bool_query(&self.fields, &filters),
            "aggs": {"top": {"terms": {"field": field, "size": size}}}
        });
        let response = self
            .post(
                &format!("/{}/_search", encode_index(&index)),
                &body,
                ctx.timeout,
            )
            .await?;
        let mut table = Table::new(vec![column("value", "TEXT"), column("count", "INT8")]);
        for bucket in response
            .pointer("/aggregations/top/buckets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = bucket
                .get("key_as_string")
                .or_else(|| bucket.get("key"))
                .cloned()
                .unwrap_or(Value::Null);
            let key = match key {
                Value::String(s) => s,
                other => other.to_string(),
            };
            table.rows.push(vec![
                json!(key),
                bucket.get("doc_count").cloned().unwrap_or(json!(0)),
            ]);
        }
        let others = response
            .pointer("/aggregations/top/sum_other_doc_count")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        table.total_rows = Some(table.rows.len() as u64);
        let notes: Vec<String> = partial_note(&response)
            .into_iter()
            .chain((others > 0).then(|| format!("{others} hits have other values")))
            .collect();
        Ok(ToolOutput {
            statement: format!("POST /{index}/_search {body}"),
            content: Content::Table(table),
            note: (!notes.is_empty()).then(|| notes.join("; ")),
            attachments: Vec::new(),
        })
    }
}

/// What the pages of one `search_logs` gathered.
#[derive(Default)]
struct Paged {
    hits: Vec<Value>,
    total: Option<(u64, bool)>,
    pages: u32,
    notes: Vec<String>,
    partial: Partial,
    /// The tiebreak the pages were sorted by (for the statement shown).
    tiebreak: Option<query::Tiebreak>,
}

/// The partial-results note of a single response, if it was incomplete.
fn partial_note(response: &Value) -> Option<String> {
    let mut partial = Partial::default();
    partial.add(response);
    partial.note()
}

/// One hit as the compact view uses it (shared with the other log sources).
pub(crate) struct LogRow {
    pub(crate) timestamp: String,
    pub(crate) level: String,
    pub(crate) service: String,
    pub(crate) message: String,
    pub(crate) index: String,
}

/// The evidence shape of log hits: `{"kind": "log_hits", "total": …, "patterns":
/// [{template, count, first, last, levels, example}], "hits": [{timestamp, level,
/// service, message, index}]}`. Patterns are computed here so the compact view needs
/// no templater.
pub(crate) fn log_hits_json(rows: &[LogRow], total: u64, exact: bool) -> Value {
    struct Group {
        count: u64,
        first: String,
        last: String,
        levels: BTreeMap<String, u64>,
        example: String,
        services: BTreeMap<String, u64>,
    }
    // A Drain parse tree, as for log files: templates learn which tokens vary
    // across the hits, so ids, counts and hosts become <*>.
    let mut drain = Drain::new(DrainConfig {
        track_parameters: false,
        max_examples: 0,
        ..DrainConfig::default()
    });
    let ids: Vec<usize> = rows.iter().map(|row| drain.add(&row.message)).collect();
    // By final group (groups whose templates became equal merged meanwhile).
    let mut groups: BTreeMap<usize, Group> = BTreeMap::new();
    for (row, id) in rows.iter().zip(ids) {
        let g = groups.entry(drain.resolve(id)).or_insert_with(|| Group {
            count: 0,
            first: row.timestamp.clone(),
            last: row.timestamp.clone(),
            levels: BTreeMap::new(),
            example: row.message.chars().take(500).collect(),
            services: BTreeMap::new(),
        });
        g.count += 1;
        // RFC 3339 strings in one format compare in time order.
        if row.timestamp < g.first {
            g.first = row.timestamp.clone();
        }
        if row.timestamp > g.last {
            g.last = row.timestamp.clone();
        }
        *g.levels.entry(row.level.clone()).or_default() += 1;
        *g.services.entry(row.service.clone()).or_default() += 1;
    }
    let mut patterns: Vec<(String, Group)> = groups
        .into_iter()
        .map(|(id, g)| (drain.template(id), g))
        .collect();
    patterns.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
    json!({
        "kind": "log_hits",
        "total": total,
        "total_exact": exact,
        "patterns": patterns.iter().map(|(t, g)| json!({
            "template": t,
            "count": g.count,
            "first": g.first,
            "last": g.last,
            "levels": g.levels,
            "services": g.services,
            "example": g.example,
        })).collect::<Vec<_>>(),
        "hits": rows.iter().map(|r| json!({
            "timestamp": r.timestamp,
            "level": r.level,
            "service": r.service,
            "message": r.message,
            "index": r.index,
        })).collect::<Vec<_>>(),
    })
}

fn column(name: &str, type_name: &str) -> Column {
    Column {
        name: name.into(),
        type_name: type_name.into(),
    }
}

/// Index names and patterns are checked to `[a-z0-9*._-]` plus commas between
/// patterns, so the path needs no further encoding; kept as one function in case
/// that rule ever widens.
fn encode_index(index: &str) -> String {
    index.to_string()
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(1))
}

async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>> {
    crate::sources::http::read_capped(response, MAX_RESPONSE_BYTES, "narrow the search").await
}

/// `start`/`end`: RFC 3339, unix seconds, `now`, `now-1h`. Default: the last hour.
fn time_range(
    tool: &str,
    args: &Value,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let parse = |key: &str, text: &str| -> Result<DateTime<Utc>> {
        let bad = || Error::BadArguments {
            tool: tool.into(),
            message: format!(
                "`{key}`: `{text}` is not a time (RFC 3339, unix seconds, `now` or `now-2h`)"
            ),
        };
        let text = text.trim();
        if text == "now" {
            return Ok(now);
        }
        if let Some(ago) = text.strip_prefix("now-").or_else(|| text.strip_prefix('-')) {
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
    };
    let end = match arg_opt_str(tool, args, "end")? {
        Some(t) => parse("end", t)?,
        None => now,
    };
    let start = match arg_opt_str(tool, args, "start")? {
        Some(t) => parse("start", t)?,
        None => end - TimeDelta::hours(1),
    };
    if start >= end {
        return Err(Error::BadArguments {
            tool: tool.into(),
            message: "`start` must be before `end`".into(),
        });
    }
    Ok((start, end))
}

fn schema(extra: &[(&str, Value)], required: &[&str]) -> Value {
    let mut props = Map::new();
    for (k, v) in extra {
        props.insert((*k).to_string(), v.clone());
    }
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

fn filter_props(
    allowed: &[String],
    services: Option<&Vec<String>>,
    namespaces: Option<&Vec<String>>,
    namespace_field: &str,
) -> Vec<(&'static str, Value)> {
    let mut service = json!({"type": "string", "description": "Exact service name."});
    if let Some(list) = services {
        service["enum"] = json!(list);
    }
    let mut namespace = json!({"type": "string", "description": format!("Exact namespace (field `{namespace_field}`).")});
    if let Some(list) = namespaces {
        namespace["enum"] = json!(list);
    }
    vec![
        (
            "start",
            json!({"type": "string", "description": "Start: RFC 3339, unix seconds or now-2h. Default: one hour before end."}),
        ),
        (
            "end",
            json!({"type": "string", "description": "End: same forms; default now."}),
        ),
        ("service", service),
        ("namespace", namespace),
        (
            "level",
            json!({"type": "string", "description": "Log level, e.g. ERROR (matched in any case)."}),
        ),
        (
            "text",
            json!({"type": "string", "description": "Words the message must contain (simple query string: quotes for phrases, - to exclude)."}),
        ),
        (
            "index",
            json!({"type": "string", "description": format!("Index or pattern within: {}. Default: all of them.", allowed.join(", "))}),
        ),
    ]
}

#[async_trait]
impl Source for ElasticsearchSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn tools(&self, grant: &SourceGrant) -> Vec<ToolSpec> {
        let allowed = self.allowed_patterns(grant);
        if allowed.is_empty() {
            return Vec::new();
        }
        let name = &self.name;
        let product = match self.kind {
            "opensearch" => "OpenSearch",
            _ => "Elasticsearch",
        };
        let mut scope = String::new();
        if let Some(list) = &grant.services {
            scope.push_str(&format!(
                " Only documents of the services {} are visible to you.",
                list.join(", ")
            ));
        }
        if let Some(list) = &grant.namespaces {
            scope.push_str(&format!(
                " Only documents of the namespaces {} are visible to you.",
                list.join(", ")
            ));
        }
        let filters = filter_props(
            &allowed,
            grant.services.as_ref(),
            grant.namespaces.as_ref(),
            &self.fields.namespace,
        );
        let with = |extra: Vec<(&'static str, Value)>| {
            let mut all = filters.clone();
            all.extend(extra);
            all
        };
        vec![
            ToolSpec {
                name: TOOL_SEARCH.into(),
                description: format!(
                    "Search log documents in {product} `{name}` (indices {}), newest first. You get the hits grouped by message template (count, first/last seen, levels, one example) plus the newest few; all hits are kept as evidence. Filter by time, service, namespace, level and words.{scope}",
                    allowed.join(", ")
                ),
                input_schema: schema(
                    &with(vec![("limit", json!({"type": "integer", "minimum": 1, "maximum": self.max_hits, "description": format!("Hits to fetch (default {DEFAULT_LIMIT}, at most {}).", self.max_hits)}))]),
                    &[],
                ),
            },
            ToolSpec {
                name: TOOL_COUNT.into(),
                description: format!("Count the log documents in {product} `{name}` matching the filters (exact, cheap).{scope}"),
                input_schema: schema(&filters, &[]),
            },
            ToolSpec {
                name: TOOL_COUNT_OVER_TIME.into(),
                description: format!("Count matching log documents in {product} `{name}` per time bucket (date histogram), summarised with change points; a chart is attached for people. Use it to see when errors started.{scope}"),
                input_schema: schema(
                    &with(vec![("interval", json!({"type": "string", "description": format!("Bucket like 1m or 5m; default about {TARGET_BUCKETS} buckets.")}))]),
                    &[],
                ),
            },
            ToolSpec {
                name: TOOL_TOP_VALUES.into(),
                description: format!("The most frequent values of one field (terms aggregation) among matching documents in {product} `{name}`, e.g. service.name, http.status_code, error.type, host.name.{scope}"),
                input_schema: schema(
                    &with(vec![
                        ("field", json!({"type": "string", "description": "A keyword field."})),
                        ("size", json!({"type": "integer", "minimum": 1, "maximum": MAX_TOP, "description": "Values to return (default 10)."})),
                    ]),
                    &["field"],
                ),
            },
        ]
    }

    async fn health(&self) -> Health {
        let started = Instant::now();
        let mut request = self
            .http
            .get(format!("{}/", self.hosts[0]))
            .timeout(Duration::from_secs(10));
        request = match &self.auth {
            Auth::None => request,
            Auth::Basic(user, password) => {
                request.basic_auth(user, password.as_ref().map(|p| p.expose()))
            }
            Auth::ApiKey(key) => {
                request.header("Authorization", format!("ApiKey {}", key.expose()))
            }
            Auth::Bearer(token) => request.bearer_auth(token.expose()),
        };
        let result = match request.send().await {
            Ok(r) if r.status().is_success() => r.json::<Value>().await.map_err(|e| e.to_string()),
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(e) => Err(send_failure(&e)),
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(info) => {
                let distribution = info
                    .pointer("/version/distribution")
                    .and_then(Value::as_str)
                    .unwrap_or("elasticsearch");
                let number = info
                    .pointer("/version/number")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                Health {
                    ok: true,
                    detail: format!("{distribution} {number}"),
                    latency_ms,
                }
            }
            Err(detail) => Health {
                ok: false,
                detail,
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
            TOOL_SEARCH => self.search(args, grant, ctx).await,
            TOOL_COUNT => self.count(args, grant, ctx).await,
            TOOL_COUNT_OVER_TIME => self.count_over_time(args, grant, ctx).await,
            TOOL_TOP_VALUES => self.top_values(args, grant, ctx).await,
            other => Err(Error::UnknownTool {
                tool: other.to_string(),
                offered: TOOLS.join(", "),
            }),
        }
    }

    async fn describe(&self, grant: &SourceGrant, _ctx: &CallContext) -> Result<String> {
        let allowed = self.allowed_patterns(grant);
        let services = grant
            .services
            .as_ref()
            .map(|s| format!("; services {}", s.join(", ")))
            .unwrap_or_default();
        let namespaces = grant
            .namespaces
            .as_ref()
            .map(|n| format!("; namespaces {}", n.join(", ")))
            .unwrap_or_default();
        Ok(format!(
            "{} `{}`: indices {}{services}{namespaces}; fields: time `{}`, service `{}`, namespace `{}`, level `{}`, message `{}`",
            self.kind,
            self.name,
            allowed.join(", "),
            self.fields.timestamp,
            self.fields.service,
            self.fields.namespace,
            self.fields.level,
            self.fields.message
        ))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Whether `text` matches the glob `pattern` (re-exported for the query module).
fn glob(pattern: &str, text: &str) -> bool {
    wildcard_match(pattern, text)
}

/// A field of a hit's `_source` as text: a flat key first (`"log.level": …`), then the
/// dotted path through nested objects; empty when absent or null.
fn field_text(source: &Value, name: &str) -> String {
    let value = source
        .get(name)
        .or_else(|| source.pointer(&format!("/{}", name.replace('.', "/"))));
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Where a hit's message is looked for when the configured field is empty or absent
/// (indices of one pattern may come from different shippers): ECS/Filebeat, zap/pino,
/// Fluent Bit's Kubernetes default, ECS's original event.
const MESSAGE_FALLBACKS: [&str; 4] = ["message", "msg", "log", "event.original"];

/// The message of a hit: the configured field, else the first usual one that has text
/// (an empty message would put every such hit in one pattern).
fn message_of(source: &Value, configured: &str) -> String {
    let message = field_text(source, configured);
    if !message.is_empty() {
        return message;
    }
    MESSAGE_FALLBACKS
        .iter()
        .map(|name| field_text(source, name))
        .find(|m| !m.is_empty())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_fall_back_to_the_usual_fields() {
        let hit = |v: Value| v;
        assert_eq!(
            message_of(&hit(json!({"message": "m", "msg": "x"})), "message"),
            "m"
        );
        assert_eq!(
            message_of(&hit(json!({"msg": "from zap"})), "message"),
            "from zap"
        );
        assert_eq!(
            message_of(&hit(json!({"log": "from fluent bit\n"})), "message"),
            "from fluent bit\n"
        );
        assert_eq!(
            message_of(
                &hit(json!({"message": "", "event": {"original": "raw"}})),
                "message"
            ),
            "raw"
        );
        // The configured field wins, flat or nested.
        assert_eq!(
            message_of(
                &hit(json!({"body": {"text": "t"}, "msg": "x"})),
                "body.text"
            ),
            "t"
        );
        assert_eq!(
            message_of(&hit(json!({"body.text": "flat", "msg": "x"})), "body.text"),
            "flat"
        );
        assert_eq!(message_of(&hit(json!({"other": 1})), "message"), "");
        assert_eq!(message_of(&Value::Null, "message"), "");
    }

    fn row(i: usize, message: String) -> LogRow {
        LogRow {
            timestamp: format!("2024-05-01T10:{:02}:00Z", i % 60),
            level: if message.contains("ERROR") {
                "error"
            } else {
                "info"
            }
            .into(),
            service: "checkout".into(),
            message,
            index: "logs-1".into(),
        }
    }

    /// Hits are grouped by Drain: words that vary between hits of one event (user
    /// names here) become `<*>`, and a rare error keeps its own template and count.
    #[test]
    fn hits_are_grouped_by_drain_templates() {
        let users = ["alice", "bob", "carol", "dave"];
        let mut rows: Vec<LogRow> = (0..400)
            .map(|i| {
                row(
                    i,
                    format!(
                        "session opened for user {} from 10.0.{}.{}",
                        users[i % 4],
                        i % 7,
                        i % 250
                    ),
                )
            })
            .collect();
        rows.push(row(
            401,
            "ERROR HikariPool-1 - Connection is not available, request timed out after 30000ms"
                .into(),
        ));
        let value = log_hits_json(&rows, 401, true);
        let patterns = value["patterns"].as_array().expect("patterns");
        let summary: Vec<(String, u64)> = patterns
            .iter()
            .map(|p| {
                (
                    p["template"].as_str().unwrap_or("").to_string(),
                    p["count"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("session opened for user <*> from <*>".to_string(), 400),
                (
                    "ERROR HikariPool-<*> - Connection is not available, request timed out after <*>"
                        .to_string(),
                    1
                ),
            ]
        );
        assert_eq!(patterns[0]["first"], json!("2024-05-01T10:00:00Z"));
        assert_eq!(patterns[0]["last"], json!("2024-05-01T10:59:00Z"));
        assert_eq!(patterns[1]["levels"], json!({"error": 1}));
        assert_eq!(value["hits"].as_array().map(Vec::len), Some(401));
    }
}
