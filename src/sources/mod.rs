//! Data sources: the `Source` trait, the registry of kinds, and the built set.
//!
//! A source never decides access: it is handed the principal's [`SourceGrant`] for
//! its instance on every call and enforces it in what it runs.

pub mod bigquery;
pub mod datadog;
pub mod elasticsearch;
pub mod http;
pub mod kubernetes;
pub mod logfile;
pub mod newrelic;
pub mod prometheus;
pub mod sql;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::access::SourceGrant;
use crate::config::{Config, MasterKey, SourceEntry};
use crate::evidence::{Attachment, Content};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The guard or the grant said no. The model can act on it.
    #[error("{0}")]
    Refused(String),
    #[error("invalid arguments for {tool}: {message}")]
    BadArguments { tool: String, message: String },
    #[error("unknown tool `{tool}` (this source offers: {offered})")]
    UnknownTool { tool: String, offered: String },
    /// The statement ran and the database rejected it (unknown column, syntax the
    /// guard accepted but the server did not). The model can fix it.
    #[error("query failed: {0}")]
    Query(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Connection refused, bad credentials, DNS: the source is down for us.
    #[error("source unavailable: {0}")]
    Unavailable(String),
    #[error("configuration: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A tool as offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub input_schema: Value,
}

/// Per-call context from the engine.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub session_id: Option<String>,
    /// Upper bound for this call; a source may use less (its own statement timeout).
    pub timeout: Duration,
}

impl Default for CallContext {
    fn default() -> Self {
        CallContext {
            session_id: None,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What a call returned.
#[derive(Debug, Clone, Serialize)]
pub struct ToolOutput {
    /// What actually ran (SQL text, request), for the audit log and the evidence.
    pub statement: String,
    pub content: Content,
    /// A line for the reader: caps hit, estimates used.
    pub note: Option<String>,
    /// Files for the reader (charts, NDJSON hits), capped in size and number.
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub ok: bool,
    /// Server version or a short reason.
    pub detail: String,
    pub latency_ms: u64,
}

#[async_trait]
pub trait Source: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn kind(&self) -> &'static str;
    /// The tools offered to a principal holding `grant`.
    fn tools(&self, grant: &SourceGrant) -> Vec<ToolSpec>;
    /// Connects if needed and checks the source answers.
    async fn health(&self) -> Health;
    async fn call(
        &self,
        tool: &str,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput>;
    /// A short description of what the grant reaches (tables, indices, metrics), for
    /// the planner's prompt.
    async fn describe(&self, grant: &SourceGrant, ctx: &CallContext) -> Result<String>;
    /// For tests and diagnostics that need the concrete kind.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// What a factory needs besides the entry itself.
#[derive(Clone, Default)]
pub struct BuildContext {
    pub master_key: Option<Arc<MasterKey>>,
    pub config_dir: std::path::PathBuf,
}

/// Validation without IO beyond config decoding, then a lazily connecting source.
pub type Factory = fn(&SourceEntry, &BuildContext) -> Result<Arc<dyn Source>>;

/// Maps kind names to constructors. Every kind is registered here, in one place.
pub struct Registry {
    kinds: BTreeMap<&'static str, Factory>,
}

/// Kinds the configuration accepts whose sources have not landed yet.
pub const PLANNED_KINDS: &[&str] = &[];

impl Registry {
    pub fn builtin() -> Self {
        let mut registry = Registry {
            kinds: BTreeMap::new(),
        };
        registry.register("postgresql", sql::build);
        registry.register("mysql", sql::build);
        registry.register("sqlite", sql::build);
        registry.register("logfile", logfile::build);
        registry.register("prometheus", prometheus::build);
        registry.register("kubernetes", kubernetes::build);
        registry.register("bigquery", bigquery::build);
        registry.register("datadog", datadog::build);
        registry.register("newrelic", newrelic::build);
        registry.register("elasticsearch", elasticsearch::build);
        registry.register("opensearch", elasticsearch::build);
        registry
    }

    pub fn register(&mut self, kind: &'static str, factory: Factory) {
        self.kinds.insert(kind, factory);
    }

    pub fn known_kinds(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }

    pub fn build(
        &self,
        entry: &SourceEntry,
        ctx: &BuildContext,
    ) -> std::result::Result<Arc<dyn Source>, Unavailable> {
        let kind = entry.spec.kind();
        match self.kinds.get(kind) {
            Some(factory) => factory(entry, ctx).map_err(|e| Unavailable::Failed(e.to_string())),
            None if PLANNED_KINDS.contains(&kind) => Err(Unavailable::NotYetAvailable(kind)),
            None => Err(Unavailable::UnknownKind {
                kind: kind.to_string(),
                known: self.known_kinds().join(", "),
            }),
        }
    }
}

/// Why a configured source has no instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("kind `{0}` is accepted in configuration but not available in this version yet")]
    NotYetAvailable(&'static str),
    #[error("unknown kind `{kind}` (known: {known})")]
    UnknownKind { kind: String, known: String },
    #[error("disabled in configuration")]
    Disabled,
    #[error("{0}")]
    Failed(String),
}

/// The built sources of one configuration.
#[derive(Clone, Default)]
pub struct Sources {
    built: BTreeMap<String, Arc<dyn Source>>,
    unavailable: BTreeMap<String, Unavailable>,
}

impl Sources {
    /// Builds every enabled source. Pools connect lazily, so this does no network IO.
    pub fn build(config: &Config, registry: &Registry, ctx: &BuildContext) -> Self {
        let mut out = Sources::default();
        for entry in &config.sources {
            if !entry.enabled {
                out.unavailable
                    .insert(entry.name.clone(), Unavailable::Disabled);
                continue;
            }
            match registry.build(entry, ctx) {
                Ok(source) => {
                    out.built.insert(entry.name.clone(), source);
                }
                Err(why) => {
                    out.unavailable.insert(entry.name.clone(), why);
                }
            }
        }
        out
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Source>> {
        self.built.get(name)
    }

    pub fn unavailable(&self, name: &str) -> Option<&Unavailable> {
        self.unavailable.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<dyn Source>)> {
        self.built.iter()
    }

    pub fn unavailable_iter(&self) -> impl Iterator<Item = (&String, &Unavailable)> {
        self.unavailable.iter()
    }

    /// For tests and embedding: add an instance directly.
    pub fn insert(&mut self, source: Arc<dyn Source>) {
        self.built.insert(source.name().to_string(), source);
    }
}

/// Services a principal sees on an instance that covers `configured` services
/// (None: all): the grant narrowed to them. None means every service.
pub fn visible_services(
    granted: Option<&[String]>,
    configured: Option<&[String]>,
) -> Option<Vec<String>> {
    match (granted, configured) {
        (Some(granted), Some(mine)) => Some(
            granted
                .iter()
                .filter(|s| mine.contains(s))
                .cloned()
                .collect(),
        ),
        (Some(granted), None) => Some(granted.to_vec()),
        (None, Some(mine)) => Some(mine.to_vec()),
        (None, None) => None,
    }
}

/// Reads a required string argument.
pub fn arg_str<'a>(tool: &str, args: &'a Value, key: &str) -> Result<&'a str> {
    match args.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(Error::BadArguments {
            tool: tool.to_string(),
            message: format!("`{key}` must not be empty"),
        }),
        Some(other) => Err(Error::BadArguments {
            tool: tool.to_string(),
            message: format!("`{key}` must be a string, got {}", json_type(other)),
        }),
        None => Err(Error::BadArguments {
            tool: tool.to_string(),
            message: format!("missing required argument `{key}`"),
        }),
    }
}

/// Reads an optional string argument.
pub fn arg_opt_str<'a>(tool: &str, args: &'a Value, key: &str) -> Result<Option<&'a str>> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => arg_str(tool, args, key).map(Some),
    }
}

/// Reads an optional non-negative integer argument.
pub fn arg_opt_u64(tool: &str, args: &Value, key: &str) -> Result<Option<u64>> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| Error::BadArguments {
            tool: tool.to_string(),
            message: format!("`{key}` must be a non-negative integer"),
        }),
        Some(other) => Err(Error::BadArguments {
            tool: tool.to_string(),
            message: format!("`{key}` must be an integer, got {}", json_type(other)),
        }),
    }
}

/// Rejects argument keys the tool does not define, so a typo is not silently ignored.
pub fn reject_unknown_args(tool: &str, args: &Value, known: &[&str]) -> Result<()> {
    match args {
        Value::Object(map) => {
            let unknown: Vec<&String> = map
                .keys()
                .filter(|k| !known.contains(&k.as_str()))
                .collect();
            if unknown.is_empty() {
                Ok(())
            } else {
                Err(Error::BadArguments {
                    tool: tool.to_string(),
                    message: format!(
                        "unknown argument(s) {} (expected: {})",
                        unknown
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        known.join(", ")
                    ),
                })
            }
        }
        Value::Null => Ok(()),
        other => Err(Error::BadArguments {
            tool: tool.to_string(),
            message: format!("arguments must be a JSON object, got {}", json_type(other)),
        }),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
