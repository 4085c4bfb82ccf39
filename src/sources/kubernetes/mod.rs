//! Kubernetes through the API server's REST paths on reqwest (no `kube` crate:
//! six fixed GET paths do not need its client, and `k8s-openapi` costs minutes
//! of build on the shared builders).
//!
//! Read-only by construction: every request is a GET on a path built here from
//! a fixed list (pods, pod logs, events, deployments, replicasets, HPAs, nodes);
//! nothing reaches secrets or configmaps. A `namespaces` grant is checked on the
//! namespace argument, and cluster-scoped reads (nodes) need an unscoped grant;
//! a `contexts` grant picks which kubeconfig contexts a squad may use.
//!
//! Credentials: bearer tokens, client certificates and `exec` credential plugins
//! (EKS, GKE, kubelogin; see `exec.rs`) from a kubeconfig, or the in-cluster
//! service account (its token is re-read on every call, since the kubelet rotates
//! it).

mod exec;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::elasticsearch::{log_hits_json, LogRow};
use super::http::send_failure;
use super::prometheus::{cap_rows, column};
use super::{
    arg_opt_str, arg_opt_u64, arg_str, reject_unknown_args, BuildContext, CallContext, Error,
    Health, Result, Source, ToolOutput, ToolSpec,
};
use crate::access::SourceGrant;
use crate::config::{KubernetesConfig, Secret, SourceEntry, SourceSpec};
use crate::evidence::{Content, Table};

pub const TOOL_PODS: &str = "pods";
pub const TOOL_DESCRIBE_POD: &str = "describe_pod";
pub const TOOL_EVENTS: &str = "events";
pub const TOOL_LOGS: &str = "pod_logs";
pub const TOOL_ROLLOUTS: &str = "rollouts";
pub const TOOL_HPA: &str = "hpa";
pub const TOOL_NODES: &str = "nodes";
const TOOLS: [&str; 7] = [
    TOOL_PODS,
    TOOL_DESCRIBE_POD,
    TOOL_EVENTS,
    TOOL_LOGS,
    TOOL_ROLLOUTS,
    TOOL_HPA,
    TOOL_NODES,
];

pub const DEFAULT_TAIL_LINES: u64 = 500;
pub const MAX_TAIL_LINES: u64 = 5000;
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
const LIST_LIMIT: &str = "500";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const IN_CLUSTER_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub struct KubernetesSource {
    name: String,
    /// Context name → cluster connection, in configuration order.
    clusters: Vec<(String, Cluster)>,
}

struct Cluster {
    server: String,
    http: reqwest::Client,
    token: Token,
}

enum Token {
    None,
    Static(Secret),
    /// Re-read per call (projected service-account tokens rotate).
    File(PathBuf),
    /// From a credential plugin, cached until it expires.
    Exec(Box<exec::ExecPlugin>),
}

#[derive(Deserialize)]
struct KubeConfig {
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: T,
}

#[derive(Deserialize)]
struct ClusterEntry {
    server: String,
    #[serde(rename = "certificate-authority-data", default)]
    ca_data: Option<String>,
    #[serde(rename = "certificate-authority", default)]
    ca_file: Option<String>,
}

#[derive(Deserialize, Default)]
struct UserEntry {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "tokenFile", default)]
    token_file: Option<String>,
    #[serde(rename = "client-certificate-data", default)]
    cert_data: Option<String>,
    #[serde(rename = "client-key-data", default)]
    key_data: Option<String>,
    #[serde(rename = "client-certificate", default)]
    cert_file: Option<String>,
    #[serde(rename = "client-key", default)]
    key_file: Option<String>,
    #[serde(default)]
    exec: Option<exec::ExecConfig>,
}

#[derive(Deserialize)]
struct ContextEntry {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
}

/// The registry's factory for `kubernetes`.
pub fn build(entry: &SourceEntry, ctx: &BuildContext) -> Result<Arc<dyn Source>> {
    let SourceSpec::Kubernetes(config) = &entry.spec else {
        return Err(Error::Config(format!(
            "source `{}` is not a kubernetes source",
            entry.name
        )));
    };
    Ok(Arc::new(KubernetesSource::new(&entry.name, config, ctx)?))
}

fn b64(text: &str) -> std::result::Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "not base64".to_string())
}

fn client(
    ca: Option<Vec<u8>>,
    identity: Option<Vec<u8>>,
) -> std::result::Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(DEFAULT_TIMEOUT)
        .connect_timeout(Duration::from_secs(10));
    if let Some(pem) = ca {
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| format!("CA: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    if let Some(pem) = identity {
        // The error text describes the PEM's structure, never its bytes.
        let id =
            reqwest::Identity::from_pem(&pem).map_err(|e| format!("client certificate: {e}"))?;
        builder = builder.identity(id);
    }
    builder.build().map_err(|e| format!("http client: {e}"))
}

impl KubernetesSource {
    pub fn new(name: &str, config: &KubernetesConfig, ctx: &BuildContext) -> Result<Self> {
        let fail = |m: String| Error::Config(format!("kubernetes `{name}`: {m}"));
        let mut clusters = Vec::new();
        if config.in_cluster {
            let host = std::env::var("KUBERNETES_SERVICE_HOST")
                .map_err(|_| fail("in_cluster: KUBERNETES_SERVICE_HOST is not set".into()))?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            let ca = std::fs::read(Path::new(IN_CLUSTER_DIR).join("ca.crt"))
                .map_err(|e| fail(format!("in_cluster CA: {e}")))?;
            let http = client(Some(ca), None).map_err(fail)?;
            clusters.push((
                "in-cluster".to_string(),
                Cluster {
                    server: format!("https://{host}:{port}"),
                    http,
                    token: Token::File(Path::new(IN_CLUSTER_DIR).join("token")),
                },
            ));
        }
        if let Some(path) = &config.kubeconfig_path {
            let path = expand(path, &ctx.config_dir);
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| fail(format!("kubeconfig {}: {e}", path.display())))?;
            let kc: KubeConfig = serde_saphyr::from_str(&text)
                .map_err(|e| fail(format!("kubeconfig {}: {e}", path.display())))?;
            let wanted: Vec<String> = if config.contexts.is_empty() {
                kc.current_context.clone().into_iter().collect()
            } else {
                config.contexts.clone()
            };
            if wanted.is_empty() {
                return Err(fail(
                    "no `contexts` configured and no current-context".into(),
                ));
            }
            for context in wanted {
                let c = kc
                    .contexts
                    .iter()
                    .find(|c| c.name == context)
                    .ok_or_else(|| fail(format!("context `{context}` is not in the kubeconfig")))?;
                let cluster = kc
                    .clusters
                    .iter()
                    .find(|x| x.name == c.value.cluster)
                    .ok_or_else(|| fail(format!("cluster `{}` not found", c.value.cluster)))?;
                let user = c
                    .value
                    .user
                    .as_ref()
                    .and_then(|u| kc.users.iter().find(|x| &x.name == u))
                    .map(|u| &u.value);
                let default_user = UserEntry::default();
                let user = user.unwrap_or(&default_user);
                let ca = match (&cluster.value.ca_data, &cluster.value.ca_file) {
                    (Some(data), _) => Some(b64(data).map_err(|m| fail(format!("CA data: {m}")))?),
                    (None, Some(file)) => Some(
                        std::fs::read(expand(file, &dir))
                            .map_err(|e| fail(format!("CA file: {e}")))?,
                    ),
                    (None, None) => None,
                };
                // Inline (`-data`, base64) or a file path, as kubectl reads them.
                let pem_of =
                    |data: &Option<String>, file: &Option<String>, what: &str| match (data, file) {
                        (Some(d), _) => b64(d).map(Some).map_err(|m| fail(format!("{what}: {m}"))),
                        (None, Some(f)) => std::fs::read(expand(f, &dir))
                            .map(Some)
                            .map_err(|e| fail(format!("{what} file: {e}"))),
                        (None, None) => Ok(None),
                    };
                let cert = pem_of(&user.cert_data, &user.cert_file, "client cert")?;
                let key = pem_of(&user.key_data, &user.key_file, "client key")?;
                let identity = match (cert, key) {
                    (Some(mut pem), Some(key)) => {
                        pem.push(b'\n');
                        pem.extend(key);
                        Some(pem)
                    }
                    (None, None) => None,
                    (Some(_), None) | (None, Some(_)) => {
                        return Err(fail("client certificate and key must both be set".into()))
                    }
                };
                let token = match (&user.token, &user.token_file, &user.exec) {
                    (Some(t), _, _) => Token::Static(Secret::new(t.clone())),
                    (None, Some(f), _) => Token::File(expand(f, &dir)),
                    (None, None, Some(plugin)) => {
                        Token::Exec(Box::new(exec::ExecPlugin::new(plugin.clone(), &dir)))
                    }
                    (None, None, None) => Token::None,
                };
                clusters.push((
                    context.clone(),
                    Cluster {
                        server: cluster.value.server.trim_end_matches('/').to_string(),
                        http: client(ca, identity).map_err(fail)?,
                        token,
                    },
                ));
            }
        }
        if clusters.is_empty() {
            return Err(fail("set `kubeconfig_path` or `in_cluster: true`".into()));
        }
        Ok(KubernetesSource {
            name: name.to_string(),
            clusters,
        })
    }

    /// The context asked for (or the first granted) and its cluster.
    fn cluster(&self, tool: &str, args: &Value, grant: &SourceGrant) -> Result<(&str, &Cluster)> {
        let asked = arg_opt_str(tool, args, "context")?;
        let allowed = |c: &str| {
            grant
                .contexts
                .as_ref()
                .is_none_or(|list| list.iter().any(|x| x == c))
        };
        let found = match asked {
            Some(name) => self.clusters.iter().find(|(n, _)| n == name),
            None => self.clusters.iter().find(|(n, _)| allowed(n)),
        };
        match found {
            Some((n, c)) if allowed(n) => Ok((n.as_str(), c)),
            Some((n, _)) => Err(Error::Refused(format!(
                "context `{n}` is outside your grant on `{}`",
                self.name
            ))),
            None => Err(Error::BadArguments {
                tool: tool.into(),
                message: format!(
                    "unknown context (configured: {})",
                    self.clusters
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    fn namespace<'a>(&self, tool: &str, args: &'a Value, grant: &SourceGrant) -> Result<&'a str> {
        let ns = arg_str(tool, args, "namespace")?;
        check_name(tool, "namespace", ns)?;
        if let Some(list) = &grant.namespaces {
            if !list.iter().any(|n| n == ns) {
                return Err(Error::Refused(format!(
                    "namespace `{ns}` is outside your grant on `{}` (granted: {})",
                    self.name,
                    list.join(", ")
                )));
            }
        }
        Ok(ns)
    }

    async fn get(
        &self,
        cluster: &Cluster,
        path: &str,
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        let timeout = timeout.min(DEFAULT_TIMEOUT);
        let mut request = cluster
            .http
            .get(format!("{}{path}", cluster.server))
            .query(query)
            .timeout(timeout);
        match &cluster.token {
            Token::None => {}
            Token::Static(t) => request = request.bearer_auth(t.expose()),
            Token::File(p) => {
                let t = tokio::fs::read_to_string(p).await.map_err(|e| {
                    Error::Unavailable(format!("kubernetes `{}`: token file: {e}", self.name))
                })?;
                request = request.bearer_auth(t.trim());
            }
            Token::Exec(plugin) => {
                let token = plugin
                    .token()
                    .await
                    .map_err(|m| Error::Unavailable(format!("kubernetes `{}`: {m}", self.name)))?;
                request = request.bearer_auth(token.expose());
            }
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                Error::Timeout(timeout)
            } else {
                Error::Unavailable(format!("kubernetes `{}`: {}", self.name, send_failure(&e)))
            }
        })?;
        let status = response.status();
        let body = read_capped(response).await?;
        if status.is_success() {
            return Ok(body);
        }
        // A Status object: {"kind":"Status","message":…,"reason":…}.
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let message = parsed
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .to_string();
        Err(match status.as_u16() {
            401 => Error::Unavailable(format!(
                "kubernetes `{}` refused our credentials (HTTP 401)",
                self.name
            )),
            403 => Error::Refused(format!("the cluster's RBAC forbids this: {message}")),
            400 | 404 => Error::Query(message),
            _ => Error::Unavailable(format!("HTTP {status}: {message}")),
        })
    }

    async fn get_json(
        &self,
        cluster: &Cluster,
        path: &str,
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Value> {
        let body = self.get(cluster, path, query, timeout).await?;
        serde_json::from_slice(&body)
            .map_err(|_| Error::Unavailable("the API server answered with non-JSON".into()))
    }

    async fn pods(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_PODS;
        reject_unknown_args(tool, args, &["namespace", "context", "label_selector"])?;
        let (context, cluster) = self.cluster(tool, args, grant)?;
        let ns = self.namespace(tool, args, grant)?;
        let mut query = vec![("limit", LIST_LIMIT.to_string())];
        let mut check = vec!["-n", ns, "get", "pods"];
        let selector = arg_opt_str(tool, args, "label_selector")?;
        if let Some(sel) = selector {
            query.push(("labelSelector", sel.to_string()));
            check.extend(["-l", sel]);
        }
        check.extend(["-o", "wide"]);
        let check = kubectl(context, &check);
        let path = format!("/api/v1/namespaces/{ns}/pods");
        let list = self.get_json(cluster, &path, &query, ctx.timeout).await?;
        let mut table = Table::new(vec![
            column("pod", "TEXT"),
            column("phase", "TEXT"),
            column("ready", "TEXT"),
            column("restarts", "INT8"),
            column("waiting_or_last_terminated", "TEXT"),
            column("node", "TEXT"),
            column("started", "TEXT"),
        ]);
        for pod in items(&list) {
            let statuses: Vec<&Value> = pod
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .collect();
            let ready = statuses
                .iter()
                .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
                .count();
            let restarts: i64 = statuses
                .iter()
                .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
                .sum();
            let reasons: Vec<String> = statuses
                .iter()
                .filter_map(|s| {
                    let c = s.get("name").and_then(Value::as_str).unwrap_or("");
                    s.pointer("/state/waiting/reason")
                        .and_then(Value::as_str)
                        .map(|r| format!("{c}: waiting {r}"))
                        .or_else(|| {
                            let t = s.pointer("/lastState/terminated")?;
                            Some(format!(
                                "{c}: last terminated {} (exit {}) at {}",
                                t.get("reason").and_then(Value::as_str).unwrap_or("?"),
                                t.get("exitCode").and_then(Value::as_i64).unwrap_or(0),
                                t.get("finishedAt").and_then(Value::as_str).unwrap_or("?")
                            ))
                        })
                })
                .collect();
            table.rows.push(vec![
                json!(text(pod, "/metadata/name")),
                json!(text(pod, "/status/phase")),
                json!(format!("{ready}/{}", statuses.len())),
                json!(restarts),
                json!(reasons.join("; ")),
                json!(text(pod, "/spec/nodeName")),
                json!(text(pod, "/status/startTime")),
            ]);
        }
        let note = with_check(cap_rows(&mut table), &check);
        Ok(ToolOutput {
            statement: format!("GET {path}"),
            content: Content::Table(table),
            note,
            attachments: Vec::new(),
        })
    }

    async fn describe_pod(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_DESCRIBE_POD;
        reject_unknown_args(tool, args, &["namespace", "context", "pod"])?;
        let (context, cluster) = self.cluster(tool, args, grant)?;
        let ns = self.namespace(tool, args, grant)?;
        let pod_name = arg_str(tool, args, "pod")?;
        check_name(tool, "pod", pod_name)?;
        let path = format!("/api/v1/namespaces/{ns}/pods/{pod_name}");
        let pod = self.get_json(cluster, &path, &[], ctx.timeout).await?;
        let events = self
            .get_json(
                cluster,
                &format!("/api/v1/namespaces/{ns}/events"),
                &[
                    ("fieldSelector", format!("involvedObject.name={pod_name}")),
                    ("limit", LIST_LIMIT.to_string()),
                ],
                ctx.timeout,
            )
            .await?;
        let text = describe_text(&pod, &events);
        Ok(ToolOutput {
            statement: format!("GET {path}, events of the pod"),
            content: Content::Text(text),
            note: with_check(
                None,
                &kubectl(context, &["-n", ns, "describe", "pod", pod_name]),
            ),
            attachments: Vec::new(),
        })
    }

    async fn events(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_EVENTS;
        reject_unknown_args(tool, args, &["namespace", "context", "warnings_only"])?;
        let (context, cluster) = self.cluster(tool, args, grant)?;
        let ns = self.namespace(tool, args, grant)?;
        let mut query = vec![("limit", LIST_LIMIT.to_string())];
        let mut check = vec!["-n", ns, "get", "events", "--sort-by=.lastTimestamp"];
        if args.get("warnings_only").and_then(Value::as_bool) == Some(true) {
            query.push(("fieldSelector", "type=Warning".into()));
            check.push("--field-selector=type=Warning");
        }
        let check = kubectl(context, &check);
        let path = format!("/api/v1/namespaces/{ns}/events");
        let list = self.get_json(cluster, &path, &query, ctx.timeout).await?;
        let mut rows: Vec<(String, Vec<Value>)> = items(&list)
            .map(|e| {
                let last = [
                    "/lastTimestamp",
                    "/eventTime",
                    "/metadata/creationTimestamp",
                ]
                .iter()
                .map(|p| text(e, p))
                .find(|t| !t.is_empty())
                .unwrap_or_default();
                (
                    last.clone(),
                    vec![
                        json!(last),
                        json!(text(e, "/type")),
                        json!(text(e, "/reason")),
                        json!(format!(
                            "{}/{}",
                            text(e, "/involvedObject/kind"),
                            text(e, "/involvedObject/name")
                        )),
                        json!(e.get("count").and_then(Value::as_i64).unwrap_or(1)),
                        json!(text(e, "/message")),
                    ],
                )
            })
            .collect();
        // Newest first: the API lists events in no useful order.
        rows.sort_by(|a, b| b.0.cmp(&a.0));
        let mut table = Table::new(vec![
            column("last_seen", "TEXT"),
            column("type", "TEXT"),
            column("reason", "TEXT"),
            column("object", "TEXT"),
            column("count", "INT8"),
            column("message", "TEXT"),
        ]);
        table.rows = rows.into_iter().map(|(_, r)| r).collect();
        let note = with_check(cap_rows(&mut table), &check);
        Ok(ToolOutput {
            statement: format!("GET {path}"),
            content: Content::Table(table),
            note,
            attachments: Vec::new(),
        })
    }

    async fn logs(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_LOGS;
        reject_unknown_args(
            tool,
            args,
            &[
                "namespace",
                "context",
                "pod",
                "container",
                "tail_lines",
                "since_seconds",
                "previous",
            ],
        )?;
        let (context, cluster) = self.cluster(tool, args, grant)?;
        let ns = self.namespace(tool, args, grant)?;
        let pod = arg_str(tool, args, "pod")?;
        check_name(tool, "pod", pod)?;
        let tail = arg_opt_u64(tool, args, "tail_lines")?
            .unwrap_or(DEFAULT_TAIL_LINES)
            .clamp(1, MAX_TAIL_LINES);
        let mut query = vec![
            ("tailLines", tail.to_string()),
            ("timestamps", "true".to_string()),
            ("limitBytes", MAX_RESPONSE_BYTES.to_string()),
        ];
        let tail_flag = format!("--tail={tail}");
        let mut check = vec!["-n", ns, "logs", pod];
        let container = arg_opt_str(tool, args, "container")?;
        if let Some(c) = container {
            check_name(tool, "container", c)?;
            query.push(("container", c.to_string()));
            check.extend(["-c", c]);
        }
        check.extend([tail_flag.as_str(), "--timestamps"]);
        let since_flag = arg_opt_u64(tool, args, "since_seconds")?
            .map(|s| {
                query.push(("sinceSeconds", s.max(1).to_string()));
                format!("--since={}s", s.max(1))
            })
            .unwrap_or_default();
        if !since_flag.is_empty() {
            check.push(&since_flag);
        }
        if args.get("previous").and_then(Value::as_bool) == Some(true) {
            check.push("--previous");
            query.push(("previous", "true".into()));
        }
        let path = format!("/api/v1/namespaces/{ns}/pods/{pod}/log");
        let body = self.get(cluster, &path, &query, ctx.timeout).await?;
        let text = String::from_utf8_lossy(&body);
        let fields = crate::sources::logfile::FieldNames::default();
        let rows: Vec<LogRow> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let (ts, message) = line.split_once(' ').unwrap_or(("", line));
                let (level, message) = pod_message(message, &fields);
                LogRow {
                    timestamp: ts.to_string(),
                    level,
                    service: pod.to_string(),
                    message: message.chars().take(4096).collect(),
                    index: ns.to_string(),
                }
            })
            .collect();
        let total = rows.len() as u64;
        Ok(ToolOutput {
            statement: format!("GET {path} tailLines={tail}"),
            content: Content::Json(log_hits_json(&rows, total, true)),
            note: with_check(
                (total >= tail).then(|| {
                    format!("the last {tail} lines; older lines exist (raise tail_lines, at most {MAX_TAIL_LINES})")
                }),
                &kubectl(context, &check),
            ),
            attachments: Vec::new(),
        })
    }

    async fn rollouts(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_ROLLOUTS;
        reject_unknown_args(tool, args, &["namespace", "context", "deployment"])?;
        let (context, cluster) = self.cluster(tool, args, grant)?;
        let ns = self.namespace(tool, args, grant)?;
        let only = arg_opt_str(tool, args, "deployment")?;
        let query = [("limit", LIST_LIMIT.to_string())];
        let deployments = self
            .get_json(
                cluster,
                &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
                &query,
                ctx.timeout,
            )
            .await?;
        let replicasets = self
            .get_json(
                cluster,
                &format!("/apis/apps/v1/namespaces/{ns}/replicasets"),
                &query,
                ctx.timeout,
            )
            .await?;
        let mut table = Table::new(vec![
            column("deployment", "TEXT"),
            column("revision", "INT8"),
            column("replicaset", "TEXT"),
            column("created", "TEXT"),
            column("images", "TEXT"),
            column("ready", "TEXT"),
            column("deployment_status", "TEXT"),
        ]);
        let mut rows: Vec<(String, i64, Vec<Value>)> = Vec::new();
        for d in items(&deployments) {
            let name = text(d, "/metadata/name");
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let conditions: Vec<String> = d
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{}={} {}",
                        text(c, "/type"),
                        text(c, "/status"),
                        text(c, "/reason")
                    )
                })
                .collect();
            let uid = text(d, "/metadata/uid");
            for rs in items(&replicasets) {
                let owned = rs
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|o| o.get("uid").and_then(Value::as_str) == Some(uid.as_str()));
                if !owned {
                    continue;
                }
                let revision: i64 = rs
                    .pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
                    .and_then(Value::as_str)
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                let images: Vec<String> = rs
                    .pointer("/spec/template/spec/containers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|c| text(c, "/image"))
                    .collect();
                rows.push((
                    name.clone(),
                    revision,
                    vec![
                        json!(name),
                        json!(revision),
                        json!(text(rs, "/metadata/name")),
                        json!(text(rs, "/metadata/creationTimestamp")),
                        json!(images.join(", ")),
                        json!(format!(
                            "{}/{}",
                            rs.pointer("/status/readyReplicas")
                                .and_then(Value::as_i64)
                                .unwrap_or(0),
                            rs.pointer("/spec/replicas")
                                .and_then(Value::as_i64)
                                .unwrap_or(0)
                        )),
                        json!(conditions.join("; ")),
                    ],
                ));
            }
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        table.rows = rows.into_iter().map(|(_, _, r)| r).collect();
        let target = only.map(|d| format!("deployment/{d}"));
        let check = match &target {
            Some(target) => kubectl(context, &["-n", ns, "rollout", "history", target]),
            None => kubectl(context, &["-n", ns, "get", "replicasets", "-o", "wide"]),
        };
        let note = with_check(cap_rows(&mut table), &check);
        Ok(ToolOutput {
            statement: format!("GET /apis/apps/v1/namespaces/{ns}/deployments, replicasets"),
            content: Content::Table(table),
            note,
            attachments: Vec::new(),
        })
    }

    async fn hpa(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_HPA;
        reject_unknown_args(tool, args, &["namespace", "context"])?;
        let (context, cluster) = self.cluster(tool, args, grant)?;
        let ns = self.namespace(tool, args, grant)?;
        let path = format!("/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers");
        let list = self
            .get_json(
                cluster,
                &path,
                &[("limit", LIST_LIMIT.to_string())],
                ctx.timeout,
            )
            .await?;
        let mut table = Table::new(vec![
            column("hpa", "TEXT"),
            column("target", "TEXT"),
            column("replicas", "TEXT"),
            column("min_max", "TEXT"),
            column("conditions", "TEXT"),
        ]);
        for h in items(&list) {
            let conditions: Vec<String> = h
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{}={} {}: {}",
                        text(c, "/type"),
                        text(c, "/status"),
                        text(c, "/reason"),
                        text(c, "/message")
                    )
                })
                .collect();
            let num = |p: &str| h.pointer(p).and_then(Value::as_i64).unwrap_or(0);
            table.rows.push(vec![
                json!(text(h, "/metadata/name")),
                json!(format!(
                    "{}/{}",
                    text(h, "/spec/scaleTargetRef/kind"),
                    text(h, "/spec/scaleTargetRef/name")
                )),
                json!(format!(
                    "{} current, {} desired",
                    num("/status/currentReplicas"),
                    num("/status/desiredReplicas")
                )),
                json!(format!(
                    "{}..{}",
                    num("/spec/minReplicas"),
                    num("/spec/maxReplicas")
                )),
                json!(conditions.join("; ")),
            ]);
        }
        let note = with_check(
            cap_rows(&mut table),
            &kubectl(context, &["-n", ns, "get", "hpa"]),
        );
        Ok(ToolOutput {
            statement: format!("GET {path}"),
            content: Content::Table(table),
            note,
            attachments: Vec::new(),
        })
    }

    async fn nodes(
        &self,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let tool = TOOL_NODES;
        reject_unknown_args(tool, args, &["context"])?;
        if grant.namespaces.is_some() {
            return Err(Error::Refused(
                "nodes are cluster-wide; your grant is limited to namespaces".into(),
            ));
        }
        let (context, cluster) = self.cluster(tool, args, grant)?;
        let list = self
            .get_json(
                cluster,
                "/api/v1/nodes",
                &[("limit", LIST_LIMIT.to_string())],
                ctx.timeout,
            )
            .await?;
        let mut table = Table::new(vec![
            column("node", "TEXT"),
            column("ready", "TEXT"),
            column("problems", "TEXT"),
            column("unschedulable", "BOOL"),
            column("kubelet", "TEXT"),
        ]);
        for n in items(&list) {
            let mut ready = String::new();
            let mut problems = Vec::new();
            for c in n
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let kind = text(c, "/type");
                let status = text(c, "/status");
                if kind == "Ready" {
                    ready = format!("{status} {}", text(c, "/reason"));
                } else if status == "True" {
                    problems.push(format!("{kind}: {}", text(c, "/message")));
                }
            }
            table.rows.push(vec![
                json!(text(n, "/metadata/name")),
                json!(ready.trim()),
                json!(problems.join("; ")),
                json!(n
                    .pointer("/spec/unschedulable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)),
                json!(text(n, "/status/nodeInfo/kubeletVersion")),
            ]);
        }
        let note = with_check(
            cap_rows(&mut table),
            &kubectl(context, &["describe", "nodes"]),
        );
        Ok(ToolOutput {
            statement: "GET /api/v1/nodes".into(),
            content: Content::Table(table),
            note,
            attachments: Vec::new(),
        })
    }
}

/// A pod as `kubectl describe pod` shows it, without environment variables or
/// volume contents (they may hold secrets): only what an investigation needs.
fn describe_text(pod: &Value, events: &Value) -> String {
    let mut out = String::new();
    let line = |out: &mut String, text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(&mut out, format!("Name: {}", text(pod, "/metadata/name")));
    line(
        &mut out,
        format!("Namespace: {}", text(pod, "/metadata/namespace")),
    );
    line(&mut out, format!("Node: {}", text(pod, "/spec/nodeName")));
    line(
        &mut out,
        format!("Start time: {}", text(pod, "/status/startTime")),
    );
    line(
        &mut out,
        format!(
            "Status: {}{}",
            text(pod, "/status/phase"),
            Some(text(pod, "/status/reason"))
                .filter(|r| !r.is_empty())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
    );
    line(
        &mut out,
        format!("QoS class: {}", text(pod, "/status/qosClass")),
    );
    let owner: Vec<String> = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|o| format!("{}/{}", text(o, "/kind"), text(o, "/name")))
        .collect();
    if !owner.is_empty() {
        line(&mut out, format!("Controlled by: {}", owner.join(", ")));
    }
    line(&mut out, "Conditions:".into());
    for c in pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let reason = text(c, "/reason");
        line(
            &mut out,
            format!(
                "  {}={}{} since {}",
                text(c, "/type"),
                text(c, "/status"),
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                },
                text(c, "/lastTransitionTime")
            ),
        );
    }
    let statuses: Vec<&Value> = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    line(&mut out, "Containers:".into());
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = text(c, "/name");
        line(&mut out, format!("  {name}:"));
        line(&mut out, format!("    Image: {}", text(c, "/image")));
        let status = statuses
            .iter()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(name.as_str()));
        if let Some(s) = status {
            line(
                &mut out,
                format!("    State: {}", container_state(s.get("state"))),
            );
            let last = container_state(s.get("lastState"));
            if last != "none" {
                line(&mut out, format!("    Last state: {last}"));
            }
            line(
                &mut out,
                format!(
                    "    Ready: {}, restarts: {}",
                    s.get("ready").and_then(Value::as_bool).unwrap_or(false),
                    s.get("restartCount").and_then(Value::as_i64).unwrap_or(0)
                ),
            );
        }
        for kind in ["requests", "limits"] {
            if let Some(map) = c
                .pointer(&format!("/resources/{kind}"))
                .and_then(Value::as_object)
            {
                let values: Vec<String> = map
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{k}={}",
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string())
                        )
                    })
                    .collect();
                line(&mut out, format!("    {kind}: {}", values.join(", ")));
            }
        }
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if let Some(p) = c.get(probe) {
                let target = match (
                    p.pointer("/httpGet/path"),
                    p.pointer("/tcpSocket/port"),
                    p.get("exec"),
                ) {
                    (Some(path), _, _) => format!("http-get {}", path.as_str().unwrap_or("")),
                    (None, Some(port), _) => format!("tcp-socket :{port}"),
                    (None, None, Some(_)) => "exec (command not shown)".to_string(),
                    (None, None, None) => "?".to_string(),
                };
                line(
                    &mut out,
                    format!(
                        "    {probe}: {target} delay={}s period={}s failure-threshold={}",
                        p.get("initialDelaySeconds")
                            .and_then(Value::as_i64)
                            .unwrap_or(0),
                        p.get("periodSeconds").and_then(Value::as_i64).unwrap_or(10),
                        p.get("failureThreshold")
                            .and_then(Value::as_i64)
                            .unwrap_or(3)
                    ),
                );
            }
        }
    }
    let mut rows: Vec<(String, String)> = items(events)
        .map(|e| {
            let last = [
                "/lastTimestamp",
                "/eventTime",
                "/firstTimestamp",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .map(|p| text(e, p))
            .find(|t| !t.is_empty())
            .unwrap_or_default();
            let row = format!(
                "  {last} {} {} (x{}): {}",
                text(e, "/type"),
                text(e, "/reason"),
                e.get("count").and_then(Value::as_i64).unwrap_or(1),
                text(e, "/message")
            );
            (last, row)
        })
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    line(&mut out, format!("Events ({}, newest first):", rows.len()));
    for (_, row) in rows.iter().take(50) {
        line(&mut out, row.clone());
    }
    if rows.len() > 50 {
        line(
            &mut out,
            format!("  … {} older events not shown", rows.len() - 50),
        );
    }
    out
}

/// `waiting (CrashLoopBackOff)`, `running since …`, `terminated (OOMKilled, exit 137) at …`.
fn container_state(state: Option<&Value>) -> String {
    let Some(state) = state.and_then(Value::as_object) else {
        return "none".into();
    };
    if let Some(w) = state.get("waiting") {
        return format!("waiting ({})", text(w, "/reason"));
    }
    if let Some(r) = state.get("running") {
        return format!("running since {}", text(r, "/startedAt"));
    }
    if let Some(t) = state.get("terminated") {
        return format!(
            "terminated ({}, exit {}) at {}",
            text(t, "/reason"),
            t.get("exitCode").and_then(Value::as_i64).unwrap_or(0),
            text(t, "/finishedAt")
        );
    }
    "none".into()
}

/// The kubectl command that shows the same thing, so a person can check the
/// evidence at its source; arguments are quoted for a POSIX shell.
fn kubectl(context: &str, args: &[&str]) -> String {
    let mut command = String::from("kubectl");
    for arg in ["--context", context].iter().chain(args) {
        command.push(' ');
        command.push_str(&shell_quote(arg));
    }
    command
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '=' | ':' | ',' | '@')
        });
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// The note of a result with the command to check it at its source appended.
fn with_check(note: Option<String>, command: &str) -> Option<String> {
    Some(match note {
        Some(note) => format!("{note}; check at the source: {command}"),
        None => format!("check at the source: {command}"),
    })
}

fn expand(path: &str, base: &Path) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    let p = PathBuf::from(path);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list.get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// DNS-1123 names: what namespaces, pods and containers are; checked before
/// they go into a path.
fn check_name(tool: &str, key: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(Error::BadArguments {
            tool: tool.into(),
            message: format!("`{key}` must be a Kubernetes name (a-z, 0-9, -, .)"),
        })
    }
}

/// A level guessed from the line (container logs carry none of their own).
/// Level and message of one container log line. A JSON line (zap, logrus, pino,
/// logback's JSON encoders) gives its own level and message, and its other scalar
/// fields follow as ` key=value` (the error, the status: what the cause is often in);
/// anything else is the line itself, its level guessed from its words.
fn pod_message(message: &str, fields: &crate::sources::logfile::FieldNames) -> (String, String) {
    use crate::sources::logfile::{parse_line, LineFormat};
    /// Characters kept of one field's value.
    const MAX_FIELD_CHARS: usize = 300;
    if message.trim_start().starts_with('{') {
        let record = parse_line(message, LineFormat::Auto, fields);
        if let Some(others) = record.json {
            let level = match record.level {
                Some(level) => level.to_ascii_lowercase(),
                None => level_of(&record.message),
            };
            let mut text = record.message;
            for (key, value) in &others {
                let value = match value {
                    Value::String(s) => s.chars().take(MAX_FIELD_CHARS).collect(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Null | Value::Array(_) | Value::Object(_) => continue,
                };
                text.push(' ');
                text.push_str(key);
                text.push('=');
                text.push_str(&value);
            }
            return (level, text);
        }
    }
    (level_of(message), message.to_string())
}

fn level_of(message: &str) -> String {
    let upper: String = message
        .chars()
        .take(200)
        .collect::<String>()
        .to_ascii_uppercase();
    for level in ["FATAL", "PANIC", "ERROR", "WARN", "INFO", "DEBUG"] {
        if upper.contains(level) {
            return level.to_ascii_lowercase();
        }
    }
    String::new()
}

async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>> {
    crate::sources::http::read_capped(
        response,
        MAX_RESPONSE_BYTES,
        "narrow it (label_selector, tail_lines)",
    )
    .await
}

fn schema(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

#[async_trait]
impl Source for KubernetesSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn tools(&self, grant: &SourceGrant) -> Vec<ToolSpec> {
        let name = &self.name;
        let contexts: Vec<&str> = self
            .clusters
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| {
                grant
                    .contexts
                    .as_ref()
                    .is_none_or(|l| l.iter().any(|x| x == n))
            })
            .collect();
        let scope = match &grant.namespaces {
            Some(list) => format!(" Namespaces you may read: {}.", list.join(", ")),
            None => String::new(),
        };
        let ns = json!({"type": "string", "description": "Namespace."});
        let context = json!({"type": "string", "description": format!("Cluster context, one of: {}; default the first.", contexts.join(", "))});
        let mut tools = vec![
            ToolSpec {
                name: TOOL_PODS.into(),
                description: format!("List pods of a namespace on Kubernetes `{name}` with phase, ready containers, restarts, and why containers wait or last terminated (CrashLoopBackOff, OOMKilled, exit codes).{scope}"),
                input_schema: schema(json!({"namespace": ns, "context": context, "label_selector": {"type": "string", "description": "Optional label selector, e.g. app=checkout."}}), &["namespace"]),
            },
            ToolSpec {
                name: TOOL_DESCRIBE_POD.into(),
                description: format!("Describe one pod on Kubernetes `{name}` as kubectl describe does: node, QoS, conditions, each container's image, state, last termination, restarts, resource requests and limits and probes, and the pod's own events, newest first. Environment variables are not shown (they may hold secrets).{scope}"),
                input_schema: schema(json!({"namespace": ns, "context": context, "pod": {"type": "string", "description": "Pod name (from the pods tool)."}}), &["namespace", "pod"]),
            },
            ToolSpec {
                name: TOOL_EVENTS.into(),
                description: format!("Recent events of a namespace on Kubernetes `{name}`, newest first (scheduling failures, probes failing, image pulls, OOM kills, scaling).{scope}"),
                input_schema: schema(json!({"namespace": ns, "context": context, "warnings_only": {"type": "boolean", "description": "Only Warning events."}}), &["namespace"]),
            },
            ToolSpec {
                name: TOOL_LOGS.into(),
                description: format!("The last lines of one pod's container log on Kubernetes `{name}`, grouped into message templates with counts (JSON lines by their message, their other fields after it as key=value); `previous` reads the crashed instance before the last restart.{scope}"),
                input_schema: schema(json!({
                    "namespace": ns, "context": context,
                    "pod": {"type": "string", "description": "Pod name (from the pods tool)."},
                    "container": {"type": "string", "description": "Container; needed when the pod has several."},
                    "tail_lines": {"type": "integer", "description": format!("Lines from the end, default {DEFAULT_TAIL_LINES}, at most {MAX_TAIL_LINES}.")},
                    "since_seconds": {"type": "integer", "description": "Only lines newer than this many seconds."},
                    "previous": {"type": "boolean", "description": "The previous (crashed) container instance."}
                }), &["namespace", "pod"]),
            },
            ToolSpec {
                name: TOOL_ROLLOUTS.into(),
                description: format!("Rollout history on Kubernetes `{name}`: each deployment's replicasets by revision with creation time, images and ready replicas, plus the deployment's conditions. Use it to see what was deployed when.{scope}"),
                input_schema: schema(json!({"namespace": ns, "context": context, "deployment": {"type": "string", "description": "Optional: one deployment."}}), &["namespace"]),
            },
            ToolSpec {
                name: TOOL_HPA.into(),
                description: format!("Horizontal pod autoscalers of a namespace on Kubernetes `{name}`: current/desired replicas, bounds and conditions (ScalingLimited means it hit max).{scope}"),
                input_schema: schema(json!({"namespace": ns, "context": context}), &["namespace"]),
            },
        ];
        if grant.namespaces.is_none() {
            tools.push(ToolSpec {
                name: TOOL_NODES.into(),
                description: format!("Nodes of Kubernetes `{name}` with Ready status and any pressure conditions (memory, disk, PID) or unschedulable flag."),
                input_schema: schema(json!({"context": context}), &[]),
            });
        }
        tools
    }

    async fn health(&self) -> Health {
        let started = Instant::now();
        let mut details = Vec::new();
        let mut ok = true;
        for (name, cluster) in &self.clusters {
            match self
                .get_json(cluster, "/version", &[], Duration::from_secs(10))
                .await
            {
                Ok(v) => details.push(format!(
                    "{name}: Kubernetes {}",
                    v.get("gitVersion").and_then(Value::as_str).unwrap_or("?")
                )),
                Err(e) => {
                    ok = false;
                    details.push(format!("{name}: {e}"));
                }
            }
        }
        Health {
            ok,
            detail: details.join("; "),
            latency_ms: started.elapsed().as_millis() as u64,
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
            TOOL_PODS => self.pods(args, grant, ctx).await,
            TOOL_DESCRIBE_POD => self.describe_pod(args, grant, ctx).await,
            TOOL_EVENTS => self.events(args, grant, ctx).await,
            TOOL_LOGS => self.logs(args, grant, ctx).await,
            TOOL_ROLLOUTS => self.rollouts(args, grant, ctx).await,
            TOOL_HPA => self.hpa(args, grant, ctx).await,
            TOOL_NODES => self.nodes(args, grant, ctx).await,
            other => Err(Error::UnknownTool {
                tool: other.to_string(),
                offered: TOOLS.join(", "),
            }),
        }
    }

    async fn describe(&self, grant: &SourceGrant, _ctx: &CallContext) -> Result<String> {
        let contexts: BTreeMap<&str, ()> = self
            .clusters
            .iter()
            .map(|(n, _)| (n.as_str(), ()))
            .collect();
        Ok(format!(
            "Kubernetes `{}` (contexts {}); namespaces: {}",
            self.name,
            contexts.keys().copied().collect::<Vec<_>>().join(", "),
            grant
                .namespaces
                .as_ref()
                .map(|l| l.join(", "))
                .unwrap_or_else(|| "all".into())
        ))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_commands_quote_what_a_shell_would_split() {
        assert_eq!(
            kubectl(
                "prod",
                &[
                    "-n",
                    "payments",
                    "get",
                    "pods",
                    "-l",
                    "app=checkout,tier!=db"
                ]
            ),
            "kubectl --context prod -n payments get pods -l 'app=checkout,tier!=db'"
        );
        assert_eq!(
            kubectl("prod", &["-l", "app in (a, b)"]),
            "kubectl --context prod -l 'app in (a, b)'"
        );
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(
            with_check(Some("capped".into()), "kubectl get pods").as_deref(),
            Some("capped; check at the source: kubectl get pods")
        );
    }
}
