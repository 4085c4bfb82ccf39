//! BigQuery through its REST API (v2) on reqwest.
//!
//! Auth: a service-account key file (`credentials_path`) is exchanged for an
//! access token with a self-signed RS256 JWT (OAuth2 JWT bearer grant, signed with
//! `ring`, which rustls already builds); without a key file the token comes from
//! the GCE/GKE metadata server (workload identity). Tokens are cached until a
//! minute before they expire.
//!
//! A query is checked three times: sqlparser (BigQuery dialect) accepts exactly one
//! SELECT and no `EXTERNAL_QUERY`; a dry run then reports, from BigQuery itself,
//! the statement type (must be SELECT), every referenced table (each must be in a
//! granted dataset of this project) and the bytes it would scan (refused above
//! `max_bytes_billed`); only then it runs with `maximumBytesBilled` as a hard cap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use sqlparser::dialect::BigQueryDialect;
use sqlparser::parser::Parser;

use super::http::{send_failure, ui_link};
use super::prometheus::column;
use super::{
    arg_opt_u64, arg_str, reject_unknown_args, BuildContext, CallContext, Error, Health, Result,
    Source, ToolOutput, ToolSpec,
};
use crate::access::SourceGrant;
use crate::config::{BigQueryConfig, HumanDuration, SourceEntry, SourceSpec};
use crate::evidence::{Content, Table};

pub const TOOL_DATASETS: &str = "list_datasets";
pub const TOOL_TABLES: &str = "list_tables";
pub const TOOL_SCHEMA: &str = "table_schema";
pub const TOOL_QUERY: &str = "run_query";
const TOOLS: [&str; 4] = [TOOL_DATASETS, TOOL_TABLES, TOOL_SCHEMA, TOOL_QUERY];

/// 10 GiB unless configured.
pub const DEFAULT_MAX_BYTES_BILLED: u64 = 10 * 1024 * 1024 * 1024;
pub const DEFAULT_MAX_ROWS: u64 = 1000;
pub const MAX_ROWS: u64 = 10_000;
/// Pages of `getQueryResults` read per query.
pub const MAX_PAGES: usize = 10;
pub const MAX_RESPONSE_BYTES: usize = crate::sources::http::MAX_RESPONSE_BYTES;
/// What `describe` reads: datasets, and tables whose columns it lists.
pub const DESCRIBE_DATASETS: usize = 10;
pub const DESCRIBE_TABLES: usize = 30;
const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(60);
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery.readonly";
const METADATA_TOKEN_URL: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";

pub struct BigQuerySource {
    name: String,
    project: String,
    api: String,
    location: Option<String>,
    /// The instance's dataset allowlist; `None` is every dataset.
    datasets: Option<Vec<String>>,
    max_bytes_billed: u64,
    job_timeout: Duration,
    http: reqwest::Client,
    auth: Auth,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

enum Auth {
    ServiceAccount {
        email: String,
        token_uri: String,
        key: Box<ring::signature::RsaKeyPair>,
    },
    Metadata,
}

/// The registry's factory for `bigquery`.
pub fn build(entry: &SourceEntry, ctx: &BuildContext) -> Result<Arc<dyn Source>> {
    let SourceSpec::BigQuery(config) = &entry.spec else {
        return Err(Error::Config(format!(
            "source `{}` is not a bigquery source",
            entry.name
        )));
    };
    Ok(Arc::new(BigQuerySource::new(&entry.name, config, ctx)?))
}

impl BigQuerySource {
    pub fn new(name: &str, config: &BigQueryConfig, ctx: &BuildContext) -> Result<Self> {
        let auth = match &config.credentials_path {
            Some(path) => {
                let path = if std::path::Path::new(path).is_absolute() {
                    std::path::PathBuf::from(path)
                } else {
                    ctx.config_dir.join(path)
                };
                // Reading a small local file at build time, like a CA certificate.
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Error::Config(format!(
                        "bigquery `{name}`: credentials {}: {e}",
                        path.display()
                    ))
                })?;
                service_account(&text)
                    .map_err(|e| Error::Config(format!("bigquery `{name}`: credentials: {e}")))?
            }
            None => Auth::Metadata,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Config(format!("bigquery `{name}`: http client: {e}")))?;
        Ok(BigQuerySource {
            name: name.to_string(),
            project: config.project_id.clone(),
            api: config
                .base_url
                .as_deref()
                .unwrap_or("https://bigquery.googleapis.com")
                .trim_end_matches('/')
                .to_string(),
            location: config.location.clone(),
            datasets: config.datasets.clone(),
            max_bytes_billed: config.max_bytes_billed.unwrap_or(DEFAULT_MAX_BYTES_BILLED),
            job_timeout: config
                .job_timeout
                .map(|HumanDuration(d)| d)
                .unwrap_or(DEFAULT_JOB_TIMEOUT),
            http,
            auth,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// Datasets this principal may read: the grant narrowed by the instance list.
    pub fn visible_datasets(&self, grant: &SourceGrant) -> Option<Vec<String>> {
        match (&grant.datasets, &self.datasets) {
            (Some(granted), Some(mine)) => Some(
                granted
                    .iter()
                    .filter(|d| mine.contains(d))
                    .cloned()
                    .collect(),
            ),
            (Some(granted), None) => Some(granted.clone()),
            (None, Some(mine)) => Some(mine.clone()),
            (None, None) => None,
        }
    }

    fn check_dataset(&self, grant: &SourceGrant, dataset: &str) -> Result<()> {
        match self.visible_datasets(grant) {
            Some(v) if !v.iter().any(|d| d == dataset) => Err(Error::Refused(format!(
                "dataset `{dataset}` is outside your grant on `{}` (granted: {})",
                self.name,
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            ))),
            Some(_) | None => Ok(()),
        }
    }

    async fn access_token(&self) -> Result<String> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let response = match &self.auth {
            Auth::ServiceAccount {
                email,
                token_uri,
                key,
            } => {
                let assertion = sign_jwt(key, email, token_uri)?;
                self.http
                    .post(token_uri)
                    .timeout(Duration::from_secs(20))
                    .form(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        ("assertion", assertion.as_str()),
                    ])
                    .send()
                    .await
            }
            Auth::Metadata => {
                self.http
                    .get(METADATA_TOKEN_URL)
                    .timeout(Duration::from_secs(5))
                    .header("Metadata-Flavor", "Google")
                    .send()
                    .await
            }
        }
        .map_err(|e| Error::Unavailable(format!("bigquery `{}`: token: {e}", self.name)))?;
        let status = response.status();
        let body: Value = serde_json::from_slice(&read_capped(response).await?).unwrap_or_default();
        let token = body.get("access_token").and_then(Value::as_str);
        let (true, Some(token)) = (status.is_success(), token) else {
            // The token endpoint's error names the problem, never the key.
            let why = body
                .get("error_description")
                .or_else(|| body.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            return Err(Error::Unavailable(format!(
                "bigquery `{}`: no access token (HTTP {status}: {why})",
                self.name
            )));
        };
        let lifetime = body
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(300);
        let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(60).max(10));
        *cached = Some((token.to_string(), until));
        Ok(token.to_string())
    }

    /// One authenticated call; BigQuery errors are `{"error": {"code", "message",
    /// "errors": [{"reason"}]}}`.
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value> {
        let token = self.access_token().await?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .query(query)
            .bearer_auth(token)
            .timeout(timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                Error::Timeout(timeout)
            } else {
                Error::Unavailable(format!("bigquery `{}`: {}", self.name, send_failure(&e)))
            }
        })?;
        let status = response.status();
        let parsed: Value =
            serde_json::from_slice(&read_capped(response).await?).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(parsed);
        }
        let message = parsed
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .to_string();
        let reason = parsed
            .pointer("/error/errors/0/reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        Err(match (status.as_u16(), reason) {
            (401, _) | (403, "accessDenied") => Error::Unavailable(format!(
                "bigquery `{}` refused our credentials (HTTP {status}: {message})",
                self.name
            )),
            (_, "bytesBilledLimitExceeded") => Error::Refused(message),
            (400 | 404, _) => Error::Query(message),
            _ => Error::Unavailable(format!("HTTP {status} {reason}: {message}")),
        })
    }

    async fn list_datasets(&self, grant: &SourceGrant, ctx: &CallContext) -> Result<ToolOutput> {
        let path = format!("/bigquery/v2/projects/{}/datasets", self.project);
        let body = self
            .request(
                reqwest::Method::GET,
                &path,
                &[("maxResults", "1000".into())],
                None,
                ctx.timeout,
            )
            .await?;
        let visible = self.visible_datasets(grant);
        let mut table = Table::new(vec![column("dataset", "TEXT"), column("location", "TEXT")]);
        for d in body
            .get("datasets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let id = d
                .pointer("/datasetReference/datasetId")
                .and_then(Value::as_str)
                .unwrap_or("");
            if visible.as_ref().is_some_and(|v| !v.iter().any(|x| x == id)) {
                continue;
            }
            table.rows.push(vec![
                json!(id),
                json!(d.get("location").and_then(Value::as_str).unwrap_or("")),
            ]);
        }
        table.total_rows = Some(table.rows.len() as u64);
        Ok(ToolOutput {
            statement: format!("GET {path}"),
            content: Content::Table(table),
            note: None,
            attachments: Vec::new(),
        })
    }

    async fn list_tables(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_TABLES;
        reject_unknown_args(tool, args, &["dataset"])?;
        let dataset = arg_str(tool, args, "dataset")?;
        check_id(tool, "dataset", dataset)?;
        self.check_dataset(grant, dataset)?;
        let path = format!(
            "/bigquery/v2/projects/{}/datasets/{dataset}/tables",
            self.project
        );
        let body = self
            .request(
                reqwest::Method::GET,
                &path,
                &[("maxResults", "1000".into())],
                None,
                ctx.timeout,
            )
            .await?;
        let mut table = Table::new(vec![column("table", "TEXT"), column("type", "TEXT")]);
        for t in body
            .get("tables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            table.rows.push(vec![
                json!(t
                    .pointer("/tableReference/tableId")
                    .and_then(Value::as_str)
                    .unwrap_or("")),
                json!(t.get("type").and_then(Value::as_str).unwrap_or("")),
            ]);
        }
        table.total_rows = Some(table.rows.len() as u64);
        let more = body.get("nextPageToken").is_some();
        Ok(ToolOutput {
            statement: format!("GET {path}"),
            content: Content::Table(table),
            note: more.then(|| "more than 1000 tables; the first page is shown".to_string()),
            attachments: Vec::new(),
        })
    }

    async fn table_schema(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_SCHEMA;
        reject_unknown_args(tool, args, &["dataset", "table"])?;
        let dataset = arg_str(tool, args, "dataset")?;
        let table_id = arg_str(tool, args, "table")?;
        check_id(tool, "dataset", dataset)?;
        check_id(tool, "table", table_id)?;
        self.check_dataset(grant, dataset)?;
        let path = format!(
            "/bigquery/v2/projects/{}/datasets/{dataset}/tables/{table_id}",
            self.project
        );
        let body = self
            .request(reqwest::Method::GET, &path, &[], None, ctx.timeout)
            .await?;
        let mut table = Table::new(vec![
            column("column", "TEXT"),
            column("type", "TEXT"),
            column("mode", "TEXT"),
            column("description", "TEXT"),
        ]);
        fn walk(prefix: &str, fields: &Value, table: &mut Table) {
            for f in fields.as_array().into_iter().flatten() {
                let name = f.get("name").and_then(Value::as_str).unwrap_or("");
                let full = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}.{name}")
                };
                let text = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                table.rows.push(vec![
                    json!(full),
                    json!(text("type")),
                    json!(text("mode")),
                    json!(text("description")),
                ]);
                if let Some(sub) = f.get("fields") {
                    walk(&full, sub, table);
                }
            }
        }
        walk(
            "",
            body.pointer("/schema/fields").unwrap_or(&Value::Null),
            &mut table,
        );
        table.total_rows = Some(table.rows.len() as u64);
        let facts: Vec<String> = [("numRows", "rows"), ("numBytes", "bytes"), ("type", "type")]
            .iter()
            .filter_map(|(k, label)| {
                body.get(*k)
                    .and_then(Value::as_str)
                    .map(|v| format!("{label} {v}"))
            })
            .collect();
        let partition = body
            .pointer("/timePartitioning/field")
            .and_then(Value::as_str)
            .map(|f| format!("; partitioned by {f} (filter on it to scan less)"))
            .unwrap_or_default();
        Ok(ToolOutput {
            statement: format!("GET {path}"),
            content: Content::Table(table),
            note: Some(format!("{}{partition}", facts.join(", "))),
            attachments: Vec::new(),
        })
    }

    async fn run_query(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_QUERY;
        reject_unknown_args(tool, args, &["sql", "max_rows"])?;
        let sql = arg_str(tool, args, "sql")?;
        let max_rows = arg_opt_u64(tool, args, "max_rows")?
            .unwrap_or(DEFAULT_MAX_ROWS)
            .clamp(1, MAX_ROWS);
        check_select(sql)?;
        let timeout = ctx.timeout.min(self.job_timeout);
        // The dry run goes through jobs.insert: only a Job carries the statement
        // type and referenced tables (jobs.query's answer has neither).
        let mut dry_body = json!({
            "configuration": {"dryRun": true, "query": {"query": sql, "useLegacySql": false}},
        });
        if let Some(location) = &self.location {
            dry_body["jobReference"] = json!({"projectId": self.project, "location": location});
        }
        let dry = self
            .request(
                reqwest::Method::POST,
                &format!("/bigquery/v2/projects/{}/jobs", self.project),
                &[],
                Some(&dry_body),
                timeout,
            )
            .await?;
        let path = format!("/bigquery/v2/projects/{}/queries", self.project);
        let mut body = json!({"query": sql, "useLegacySql": false});
        if let Some(location) = &self.location {
            body["location"] = json!(location);
        }
        // BigQuery's own account of what the statement is and reads.
        let statement_type = dry
            .pointer("/statistics/query/statementType")
            .and_then(Value::as_str)
            .unwrap_or("");
        if statement_type != "SELECT" {
            return Err(Error::Refused(format!(
                "refused: BigQuery reports a {} statement; only SELECT runs",
                if statement_type.is_empty() {
                    "unknown"
                } else {
                    statement_type
                }
            )));
        }
        let visible = self.visible_datasets(grant);
        for t in dry
            .pointer("/statistics/query/referencedTables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let project = t.get("projectId").and_then(Value::as_str).unwrap_or("");
            let dataset = t.get("datasetId").and_then(Value::as_str).unwrap_or("");
            let table = t.get("tableId").and_then(Value::as_str).unwrap_or("");
            if project != self.project {
                return Err(Error::Refused(format!(
                    "refused: {project}.{dataset}.{table} is in another project; only {} is granted",
                    self.project
                )));
            }
            if let Some(v) = &visible {
                if !v.iter().any(|d| d == dataset) {
                    return Err(Error::Refused(format!(
                        "refused: {dataset}.{table} is in a dataset outside your grant (granted: {})",
                        v.join(", ")
                    )));
                }
            }
        }
        let bytes = dry
            .pointer("/statistics/totalBytesProcessed")
            .and_then(|v| {
                v.as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .or(v.as_u64())
            })
            .unwrap_or(0);
        if bytes > self.max_bytes_billed {
            return Err(Error::Refused(format!(
                "refused: the query would scan {bytes} bytes, above the cap of {} bytes on `{}`; filter on the partition column or select fewer columns",
                self.max_bytes_billed, self.name
            )));
        }
        body["maximumBytesBilled"] = json!(self.max_bytes_billed.to_string());
        body["timeoutMs"] = json!(timeout.as_millis() as u64);
        body["maxResults"] = json!(max_rows.min(1000));
        let first = self
            .request(reqwest::Method::POST, &path, &[], Some(&body), timeout)
            .await?;
        let job_id = first
            .pointer("/jobReference/jobId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let job_location = first
            .pointer("/jobReference/location")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| self.location.clone());
        let mut page = first;
        let started = Instant::now();
        // A job still running after timeoutMs answers jobComplete=false; poll
        // getQueryResults until it completes or our time is up.
        let mut pages = 0;
        let mut columns: Vec<String> = Vec::new();
        let mut rows: Vec<Vec<Value>> = Vec::new();
        let mut total: Option<u64> = None;
        loop {
            let complete = page
                .get("jobComplete")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if complete {
                if columns.is_empty() {
                    columns = page
                        .pointer("/schema/fields")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|f| {
                            f.get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string()
                        })
                        .collect();
                }
                total = page
                    .get("totalRows")
                    .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()))
                    .or(total);
                for r in page
                    .get("rows")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if rows.len() as u64 >= max_rows {
                        break;
                    }
                    rows.push(
                        r.get("f")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .map(|c| c.get("v").cloned().unwrap_or(Value::Null))
                            .collect(),
                    );
                }
                pages += 1;
            }
            let token = page
                .get("pageToken")
                .and_then(Value::as_str)
                .map(str::to_string);
            let wanted_more = complete && token.is_some() && (rows.len() as u64) < max_rows;
            if complete && !wanted_more {
                break;
            }
            if pages >= MAX_PAGES || started.elapsed() >= timeout || job_id.is_empty() {
                if !complete {
                    return Err(Error::Timeout(timeout));
                }
                break;
            }
            let mut params = vec![
                (
                    "maxResults",
                    (max_rows - rows.len() as u64).min(1000).to_string(),
                ),
                (
                    "timeoutMs",
                    timeout
                        .saturating_sub(started.elapsed())
                        .as_millis()
                        .to_string(),
                ),
            ];
            if let Some(t) = token.filter(|_| complete) {
                params.push(("pageToken", t));
            }
            if let Some(l) = &job_location {
                params.push(("location", l.clone()));
            }
            page = self
                .request(
                    reqwest::Method::GET,
                    &format!("/bigquery/v2/projects/{}/queries/{job_id}", self.project),
                    &params,
                    None,
                    timeout,
                )
                .await?;
        }
        let mut table = Table::new(columns.iter().map(|c| column(c, "JSON")).collect());
        table.rows = rows;
        table.total_rows = total.or(Some(table.rows.len() as u64));
        let mut note = format!("dry run: {bytes} bytes processed");
        if !job_id.is_empty() {
            // The job in the console, where a person can see the same result.
            let job = format!("bq:{}:{job_id}", job_location.as_deref().unwrap_or("US"));
            let link = ui_link(
                "https://console.cloud.google.com",
                "/bigquery",
                &[
                    ("project", self.project.clone()),
                    ("j", job),
                    ("page", "queryresults".into()),
                ],
            );
            note.push_str(&format!("; open in BigQuery: {link}"));
        }
        if total.is_some_and(|t| t > table.rows.len() as u64) {
            table.truncated = true;
            table.truncated_by = Some(format!("row cap {max_rows}"));
            note.push_str(&format!(
                "; {} rows, the first {} are kept",
                total.unwrap_or(0),
                table.rows.len()
            ));
        }
        Ok(ToolOutput {
            statement: sql.to_string(),
            content: Content::Table(table),
            note: Some(note),
            attachments: Vec::new(),
        })
    }
}

/// Reads the fields we need from a service-account key file.
fn service_account(text: &str) -> std::result::Result<Auth, String> {
    let v: Value = serde_json::from_str(text).map_err(|_| "not JSON".to_string())?;
    if v.get("type").and_then(Value::as_str) != Some("service_account") {
        return Err("not a service_account key file".into());
    }
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("missing `{k}`"))
    };
    let pem = field("private_key")?;
    let der_b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(der_b64)
        .map_err(|_| "`private_key` is not PEM".to_string())?;
    // The error text of ring names no key material.
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der)
        .map_err(|e| format!("`private_key` is not a PKCS#8 RSA key: {e}"))?;
    Ok(Auth::ServiceAccount {
        email: field("client_email")?,
        token_uri: v
            .get("token_uri")
            .and_then(Value::as_str)
            .unwrap_or("https://oauth2.googleapis.com/token")
            .to_string(),
        key: Box::new(key),
    })
}

fn sign_jwt(key: &ring::signature::RsaKeyPair, email: &str, audience: &str) -> Result<String> {
    let now = chrono::Utc::now().timestamp();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": email, "scope": SCOPE, "aud": audience, "iat": now, "exp": now + 3600})
            .to_string(),
    );
    let signing_input = format!("{header}.{claims}");
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| Error::Unavailable("signing the token request failed".into()))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// The local check before the dry run: one SELECT statement in BigQuery's dialect,
/// no federated `EXTERNAL_QUERY` (which reads another database and appears in no
/// referenced-table list) and no `INFORMATION_SCHEMA`.
pub fn check_select(sql: &str) -> Result<()> {
    let refuse = |m: &str| Error::Refused(format!("refused: {m}"));
    let lower = sql.to_ascii_lowercase();
    if lower.contains("external_query") {
        return Err(refuse("EXTERNAL_QUERY is not allowed"));
    }
    // INFORMATION_SCHEMA views (JOBS holds every user's query text) may not
    // appear among a dry run's referenced tables, so the dataset check cannot
    // see them; the list_tables and table_schema tools cover metadata.
    if lower.contains("information_schema") {
        return Err(refuse(
            "INFORMATION_SCHEMA is not allowed; use list_tables and table_schema",
        ));
    }
    let statements = Parser::parse_sql(&BigQueryDialect {}, sql)
        .map_err(|e| refuse(&format!("could not parse as BigQuery SQL: {e}")))?;
    match statements.as_slice() {
        [sqlparser::ast::Statement::Query(_)] => Ok(()),
        [_] => Err(refuse("only SELECT queries run")),
        _ => Err(refuse("exactly one statement")),
    }
}

/// Dataset and table ids go into URL paths: letters, digits, underscores (and `-`,
/// `$` for partition decorators are not needed here).
fn check_id(tool: &str, key: &str, id: &str) -> Result<()> {
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(Error::BadArguments {
            tool: tool.into(),
            message: format!("`{key}` must be letters, digits and underscores"),
        })
    }
}

async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>> {
    crate::sources::http::read_capped(response, MAX_RESPONSE_BYTES, "select fewer rows or columns")
        .await
}

fn schema(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

#[async_trait]
impl Source for BigQuerySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "bigquery"
    }

    fn tools(&self, grant: &SourceGrant) -> Vec<ToolSpec> {
        let name = &self.name;
        let project = &self.project;
        let scope = match self.visible_datasets(grant) {
            Some(v) => format!(" Only datasets [{}] may be read.", v.join(", ")),
            None => String::new(),
        };
        let cap = self.max_bytes_billed;
        vec![
            ToolSpec {
                name: TOOL_DATASETS.into(),
                description: format!("List the BigQuery datasets of project `{project}` on `{name}` that you may read.{scope}"),
                input_schema: schema(json!({}), &[]),
            },
            ToolSpec {
                name: TOOL_TABLES.into(),
                description: format!("List the tables and views of one BigQuery dataset on `{name}`.{scope}"),
                input_schema: schema(json!({"dataset": {"type": "string", "description": "Dataset id."}}), &["dataset"]),
            },
            ToolSpec {
                name: TOOL_SCHEMA.into(),
                description: format!("Columns (nested fields dotted), types, row count and partitioning of one BigQuery table on `{name}`.{scope}"),
                input_schema: schema(json!({
                    "dataset": {"type": "string", "description": "Dataset id."},
                    "table": {"type": "string", "description": "Table id."}
                }), &["dataset", "table"]),
            },
            ToolSpec {
                name: TOOL_QUERY.into(),
                description: format!("Run one read-only GoogleSQL SELECT on BigQuery `{name}` (project `{project}`; name tables as dataset.table). A dry run first checks it reads only granted datasets and scans at most {cap} bytes; filter on partition columns and select only needed columns to stay under it.{scope}"),
                input_schema: schema(json!({
                    "sql": {"type": "string", "description": "One GoogleSQL SELECT statement."},
                    "max_rows": {"type": "integer", "description": format!("Rows to return, default {DEFAULT_MAX_ROWS}, at most {MAX_ROWS}.")}
                }), &["sql"]),
            },
        ]
    }

    async fn health(&self) -> Health {
        let started = Instant::now();
        let path = format!("/bigquery/v2/projects/{}/datasets", self.project);
        let result = self
            .request(
                reqwest::Method::GET,
                &path,
                &[("maxResults", "1".into())],
                None,
                Duration::from_secs(10),
            )
            .await;
        let latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(_) => Health {
                ok: true,
                detail: format!("BigQuery project {}", self.project),
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
            TOOL_DATASETS => {
                reject_unknown_args(tool, args, &[])?;
                self.list_datasets(grant, ctx).await
            }
            TOOL_TABLES => self.list_tables(args, grant, ctx).await,
            TOOL_SCHEMA => self.table_schema(args, grant, ctx).await,
            TOOL_QUERY => self.run_query(args, grant, ctx).await,
            other => Err(Error::UnknownTool {
                tool: other.to_string(),
                offered: TOOLS.join(", "),
            }),
        }
    }

    /// Tables with their columns, for the planner and the query agent (which writes
    /// SQL from it): bounded to [`DESCRIBE_DATASETS`] datasets, [`DESCRIBE_TABLES`]
    /// tables with columns, the rest named only.
    async fn describe(&self, grant: &SourceGrant, ctx: &CallContext) -> Result<String> {
        let datasets = match self.visible_datasets(grant) {
            Some(v) => v,
            None => {
                let out = self.list_datasets(grant, ctx).await?;
                match out.content {
                    Content::Table(t) => t
                        .rows
                        .iter()
                        .filter_map(|r| r.first().and_then(Value::as_str).map(str::to_string))
                        .collect(),
                    Content::Json(_) | Content::Text(_) => Vec::new(),
                }
            }
        };
        let mut lines = vec![format!(
            "BigQuery `{}` (project {}; name tables dataset.table):",
            self.name, self.project
        )];
        let mut described = 0;
        for dataset in datasets.iter().take(DESCRIBE_DATASETS) {
            let out = self
                .list_tables(&json!({"dataset": dataset}), grant, ctx)
                .await?;
            let Content::Table(tables) = out.content else {
                continue;
            };
            for row in &tables.rows {
                let Some(table) = row.first().and_then(Value::as_str) else {
                    continue;
                };
                if described >= DESCRIBE_TABLES {
                    lines.push(format!("{dataset}.{table}"));
                    continue;
                }
                described += 1;
                let schema = self
                    .table_schema(&json!({"dataset": dataset, "table": table}), grant, ctx)
                    .await?;
                let columns: Vec<String> = match &schema.content {
                    Content::Table(t) => t
                        .rows
                        .iter()
                        .map(|r| {
                            format!(
                                "{} {}",
                                r.first().and_then(Value::as_str).unwrap_or(""),
                                r.get(1).and_then(Value::as_str).unwrap_or("")
                            )
                        })
                        .collect(),
                    Content::Json(_) | Content::Text(_) => Vec::new(),
                };
                lines.push(format!(
                    "{dataset}.{table} ({}) {}",
                    columns.join(", "),
                    schema.note.unwrap_or_default()
                ));
            }
        }
        if datasets.len() > DESCRIBE_DATASETS {
            lines.push(format!(
                "… and {} more datasets",
                datasets.len() - DESCRIBE_DATASETS
            ));
        }
        Ok(lines.join("\n"))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
