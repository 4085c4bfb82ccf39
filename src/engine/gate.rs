//! The one path from a principal to a source: access re-checked on every call, the
//! source's own guard, and an audit entry for every attempt, allowed or not. The
//! CLI's `query`, the bot and the API all call through here.

use std::time::Instant;

use serde_json::Value;
use tracing::{info_span, Instrument};

use crate::access::Access;
use crate::sources::{self, CallContext, Sources, ToolOutput, ToolSpec};
use crate::store::audit::{AuditRecord, Verdict};
use crate::store::Store;

/// Longest statement text kept in the audit log.
const AUDIT_STATEMENT_MAX: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Access said no: the source is not granted, unknown, or not available.
    #[error("{0}")]
    Denied(String),
    #[error(transparent)]
    Source(#[from] sources::Error),
    /// The audit log could not be written. Nothing unaudited is returned, so this is
    /// fatal for the caller.
    #[error("audit log unavailable: {0}")]
    Audit(String),
}

impl CallError {
    /// True when the caller (or a model) can do something about it.
    pub fn is_actionable(&self) -> bool {
        match self {
            CallError::Denied(_) => true,
            CallError::Source(e) => match e {
                sources::Error::Refused(_)
                | sources::Error::BadArguments { .. }
                | sources::Error::UnknownTool { .. }
                | sources::Error::Query(_)
                | sources::Error::Timeout(_) => true,
                sources::Error::Unavailable(_) | sources::Error::Config(_) => false,
            },
            CallError::Audit(_) => false,
        }
    }
}

/// A tool as the engine offers it: qualified by its source.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferedTool {
    pub source: String,
    pub kind: &'static str,
    pub spec: ToolSpec,
}

pub struct GateOutcome {
    pub result: Result<ToolOutput, CallError>,
    pub duration_ms: u64,
    pub audit_seq: Option<i64>,
}

#[derive(Clone)]
pub struct Gate {
    sources: Sources,
    store: Store,
}

impl Gate {
    pub fn new(sources: Sources, store: Store) -> Self {
        Gate { sources, store }
    }

    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Only what `access` may use; nothing else is ever offered.
    pub fn tools_for(&self, access: &Access) -> Vec<OfferedTool> {
        access
            .grants
            .values()
            .filter_map(|grant| {
                let source = self.sources.get(&grant.source)?;
                Some(source.tools(grant).into_iter().map(|spec| OfferedTool {
                    source: grant.source.clone(),
                    kind: source.kind(),
                    spec,
                }))
            })
            .flatten()
            .collect()
    }

    /// Audits a request refused before any access could be resolved (unknown
    /// user, wrong channel): refused queries are audited like any other.
    pub async fn record_denied(
        &self,
        principal: &crate::access::Principal,
        source_name: &str,
        tool: &str,
        args: &Value,
        reason: &str,
    ) -> Result<(), CallError> {
        let record = AuditRecord {
            at: chrono::Utc::now(),
            principal: principal.to_string(),
            channel: principal.channel_label(),
            squad: None,
            source: source_name.to_string(),
            tool: tool.to_string(),
            statement: clip(&statement_of(tool, args), AUDIT_STATEMENT_MAX),
            verdict: Verdict::Refused,
            reason: Some(reason.to_string()),
            rows: None,
            duration_ms: Some(0),
            evidence_id: None,
            session_id: None,
        };
        self.store
            .append_audit(&record)
            .await
            .map(|_| ())
            .map_err(|e| CallError::Audit(e.to_string()))
    }

    pub async fn call(
        &self,
        access: &Access,
        source_name: &str,
        tool: &str,
        args: &Value,
        ctx: &CallContext,
    ) -> GateOutcome {
        let span = info_span!(
            "tool_call",
            session_id = ctx.session_id.as_deref().unwrap_or(""),
            principal = %access.principal,
            source = source_name,
            tool,
        );
        async move {
            let started = Instant::now();
            let grant = access.grant(source_name);
            let result = match (grant, self.sources.get(source_name)) {
                (None, _) => Err(CallError::Denied(format!(
                    "refused: source `{source_name}` is not available to you (your sources: {})",
                    if access.grants.is_empty() {
                        "none".to_string()
                    } else {
                        access.grants.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ))),
                (Some(_), None) => Err(CallError::Denied(format!(
                    "source `{source_name}` is configured but not available: {}",
                    self.sources
                        .unavailable(source_name)
                        .map(|u| u.to_string())
                        .unwrap_or_else(|| "not built".into())
                ))),
                (Some(grant), Some(source)) => source
                    .call(tool, args, grant, ctx)
                    .await
                    .map_err(CallError::from),
            };
            let duration_ms = started.elapsed().as_millis() as u64;
            let (verdict, reason, rows) = match &result {
                Ok(output) => (Verdict::Allowed, None, output.content.count().map(|n| n as i64)),
                Err(err @ CallError::Denied(_)) => (Verdict::Refused, Some(err.to_string()), None),
                Err(err @ CallError::Source(sources::Error::Refused(_))) => {
                    (Verdict::Refused, Some(err.to_string()), None)
                }
                Err(err) => (Verdict::Failed, Some(err.to_string()), None),
            };
            let statement = match &result {
                Ok(output) => output.statement.clone(),
                Err(_) => statement_of(tool, args),
            };
            let record = AuditRecord {
                at: chrono::Utc::now(),
                principal: access.principal.clone(),
                channel: access.channel.clone(),
                squad: grant.map(|g| g.squads.join(",")).or_else(|| Some(access.squads_label())),
                source: source_name.to_string(),
                tool: tool.to_string(),
                statement: clip(&statement, AUDIT_STATEMENT_MAX),
                verdict,
                reason,
                rows,
                duration_ms: Some(duration_ms as i64),
                evidence_id: None,
                session_id: ctx.session_id.clone(),
            };
            match self.store.append_audit(&record).await {
                Ok(entry) => {
                    tracing::info!(verdict = ?verdict, duration_ms, seq = entry.seq, "tool call audited");
                    GateOutcome { result, duration_ms, audit_seq: Some(entry.seq) }
                }
                Err(err) => {
                    tracing::error!(error = %err, "audit append failed");
                    GateOutcome {
                        result: Err(CallError::Audit(err.to_string())),
                        duration_ms,
                        audit_seq: None,
                    }
                }
            }
        }
        .instrument(span)
        .await
    }
}

fn statement_of(tool: &str, args: &Value) -> String {
    match args.get("sql") {
        Some(Value::String(sql)) => sql.clone(),
        _ => format!("{tool} {args}"),
    }
}

fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes]", &text[..end], text.len())
}
