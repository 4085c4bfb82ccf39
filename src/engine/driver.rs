//! Drives an [`Investigation`]: calls the model, runs each turn's tool calls in
//! parallel through the gate (per-source concurrency limits, a timeout per call),
//! and reports progress as events. All IO of an investigation happens here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::{info_span, Instrument};

use super::gate::Gate;
use super::investigation::{
    Budgets, CallOutcome, Investigation, PlannedCall, Setup, Step, ToolRoute,
};
use super::report::Report;
use crate::access::Access;
use crate::evidence::{EvidenceItem, EvidenceLog};
use crate::guard::Redactor;
use crate::llm::{Message, Model, ToolDef, Usage};
use crate::sources::CallContext;

/// Time, injectable so tests are deterministic.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Progress, for transports to render.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    ModelCalled {
        turn: u32,
    },
    ToolStarted {
        call_id: String,
        source: String,
        tool: String,
        arguments: serde_json::Value,
    },
    ToolFinished {
        call_id: String,
        evidence_id: String,
        source: String,
        tool: String,
        ok: bool,
        rows: Option<u64>,
        duration_ms: u64,
        error: Option<String>,
    },
    Finished {
        partial: bool,
    },
}

pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);
}

/// Discards events.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: Event) {}
}

#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub budgets: Budgets,
    /// Calls to one source at a time.
    pub per_source_concurrency: usize,
    /// Upper bound for one tool call, whatever the source's own timeouts.
    pub tool_timeout: Duration,
    /// Masks secrets in results (the configuration's `redaction:` section).
    pub redactor: Arc<Redactor>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            budgets: Budgets::default(),
            per_source_concurrency: 4,
            tool_timeout: Duration::from_secs(45),
            redactor: Redactor::shared_default(),
        }
    }
}

/// The outcome of one question.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: Report,
    pub usage: Usage,
    pub cost_usd: f64,
    pub turns: u32,
    pub tool_calls: u32,
    pub duration_ms: u64,
    /// Ids of evidence added by this question.
    pub new_evidence: Vec<String>,
}

pub struct Engine {
    gate: Gate,
    model: Arc<dyn Model>,
    clock: Arc<dyn Clock>,
    settings: EngineSettings,
    limits: std::sync::Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A conversation's memory between questions.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    pub id: String,
    pub messages: Vec<Message>,
    pub evidence: EvidenceLog,
}

impl Engine {
    pub fn new(
        gate: Gate,
        model: Arc<dyn Model>,
        clock: Arc<dyn Clock>,
        settings: EngineSettings,
    ) -> Self {
        Engine {
            gate,
            model,
            clock,
            settings,
            limits: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    pub fn model(&self) -> &Arc<dyn Model> {
        &self.model
    }

    pub fn model_name(&self) -> &str {
        self.model.name()
    }

    /// The tools `access` may use, named for the model (`<source>__<tool>`).
    pub fn tools_for(&self, access: &Access) -> Vec<(ToolDef, ToolRoute)> {
        self.gate
            .tools_for(access)
            .into_iter()
            .map(|offered| {
                let name = format!("{}__{}", offered.source, offered.spec.name);
                let description = format!(
                    "[{} source `{}`] {}",
                    offered.kind, offered.source, offered.spec.description
                );
                (
                    ToolDef {
                        name,
                        description,
                        input_schema: offered.spec.input_schema,
                    },
                    ToolRoute {
                        source: offered.source,
                        kind: offered.kind.to_string(),
                        tool: offered.spec.name,
                    },
                )
            })
            .collect()
    }

    /// Answers one question in `conversation`, which keeps the messages and evidence.
    pub async fn ask(
        &self,
        access: &Access,
        conversation: &mut Conversation,
        system: String,
        question: &str,
        events: &dyn EventSink,
    ) -> Outcome {
        let span = info_span!("investigation", session_id = %conversation.id, principal = %access.principal);
        async move {
            let started = self.clock.now();
            let before = conversation.evidence.len();
            let setup = Setup {
                system,
                tools: self.tools_for(access),
                history: std::mem::take(&mut conversation.messages),
                evidence: std::mem::take(&mut conversation.evidence),
                budgets: self.settings.budgets,
                pricing: self.model.pricing(),
                redactor: self.settings.redactor.clone(),
            };
            let mut investigation = Investigation::new(setup, question, started);
            let report = loop {
                match investigation.next_step(self.clock.now()) {
                    Step::Finished(report) => break report,
                    Step::CallModel(request) => {
                        events.emit(Event::ModelCalled {
                            turn: investigation.turns(),
                        });
                        match self.model.complete(&request).await {
                            Ok(response) => investigation.on_model_response(response),
                            Err(err) => {
                                tracing::warn!(error = %err, "model call failed");
                                investigation.on_model_error(&err.to_string());
                            }
                        }
                    }
                    Step::RunTools(calls) => {
                        let base = investigation.evidence().len();
                        let outcomes = self
                            .run_calls(access, &conversation.id, base, calls, events)
                            .await;
                        investigation.on_tool_results(outcomes);
                    }
                }
            };
            events.emit(Event::Finished {
                partial: report.partial,
            });
            let usage = investigation.usage();
            let cost_usd = investigation.cost_usd();
            let turns = investigation.turns();
            let tool_calls = investigation.tool_calls();
            let (messages, evidence) = investigation.into_parts();
            let new_evidence = evidence.items()[before.min(evidence.len())..]
                .iter()
                .map(|i| i.id.clone())
                .collect();
            conversation.messages = messages;
            conversation.evidence = evidence;
            let duration_ms = (self.clock.now() - started).num_milliseconds().max(0) as u64;
            tracing::info!(
                turns,
                tool_calls,
                tokens = usage.total_tokens(),
                cost_usd,
                partial = report.partial,
                "investigation finished"
            );
            Outcome {
                report,
                usage,
                cost_usd,
                turns,
                tool_calls,
                duration_ms,
                new_evidence,
            }
        }
        .instrument(span)
        .await
    }

    fn semaphore(&self, source: &str) -> Arc<Semaphore> {
        // A poisoned lock only means another task panicked mid-insert; the map is still usable.
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        limits
            .entry(source.to_string())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(self.settings.per_source_concurrency.max(1)))
            })
            .clone()
    }

    /// Runs a turn's calls concurrently; one slow source never holds the others
    /// beyond its own timeout.
    async fn run_calls(
        &self,
        access: &Access,
        session_id: &str,
        evidence_base: usize,
        calls: Vec<PlannedCall>,
        events: &dyn EventSink,
    ) -> Vec<CallOutcome> {
        let futures = calls.into_iter().enumerate().map(|(index, call)| {
            let semaphore = self.semaphore(&call.route.source);
            async move {
                events.emit(Event::ToolStarted {
                    call_id: call.tool_use_id.clone(),
                    source: call.route.source.clone(),
                    tool: call.route.tool.clone(),
                    arguments: call.arguments.clone(),
                });
                let at = self.clock.now();
                let timeout = self.settings.tool_timeout;
                let ctx = CallContext {
                    session_id: Some(session_id.to_string()),
                    timeout,
                };
                let run = async {
                    let _permit = semaphore.acquire().await;
                    self.gate
                        .call(
                            access,
                            &call.route.source,
                            &call.route.tool,
                            &call.arguments,
                            &ctx,
                        )
                        .await
                };
                let (content, statement, note, error, attachments) =
                    match tokio::time::timeout(timeout, run).await {
                        Ok(outcome) => match outcome.result {
                            Ok(output) => (
                                Some(output.content),
                                output.statement,
                                output.note,
                                None,
                                output.attachments,
                            ),
                            Err(err) => (
                                None,
                                attempted(&call),
                                None,
                                Some(err.to_string()),
                                Vec::new(),
                            ),
                        },
                        Err(_) => (
                            None,
                            attempted(&call),
                            None,
                            Some(format!("timed out after {}s", timeout.as_secs())),
                            Vec::new(),
                        ),
                    };
                let duration_ms = (self.clock.now() - at).num_milliseconds().max(0) as u64;
                let evidence = EvidenceItem {
                    id: String::new(),
                    source: call.route.source.clone(),
                    kind: call.route.kind.clone(),
                    tool: call.route.tool.clone(),
                    arguments: call.arguments.clone(),
                    statement,
                    at,
                    duration_ms,
                    content,
                    error,
                    note,
                    attachments,
                };
                // The investigation stores results in plan order, so the id is known now.
                events.emit(Event::ToolFinished {
                    call_id: call.tool_use_id.clone(),
                    evidence_id: format!("E{}", evidence_base + index + 1),
                    source: evidence.source.clone(),
                    tool: evidence.tool.clone(),
                    ok: evidence.ok(),
                    rows: evidence.rows(),
                    duration_ms,
                    error: evidence.error.clone(),
                });
                CallOutcome {
                    tool_use_id: call.tool_use_id,
                    evidence,
                }
            }
        });
        futures::future::join_all(futures).await
    }
}

/// What a failed call tried to run, for the evidence and the report.
fn attempted(call: &PlannedCall) -> String {
    match call.arguments.get("sql") {
        Some(serde_json::Value::String(sql)) => sql.clone(),
        _ => format!("{} {}", call.route.tool, call.arguments),
    }
}
