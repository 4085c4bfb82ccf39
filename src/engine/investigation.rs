//! The investigation as an IO-free state machine.
//!
//! The driver asks [`Investigation::next_step`] what to do, does it (calls the
//! model, runs the tools), and feeds the outcome back. Budgets are checked here,
//! so they hold whatever the model does; the last turn offers only
//! `submit_report`, and every path ends in a [`Report`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::report::{self, submit_report_tool, Report, ReportKind, SUBMIT_REPORT};
use crate::evidence::{compact_for_model, EvidenceItem, EvidenceLog};
use crate::guard::Redactor;
use crate::llm::{
    ContentBlock, Message, ModelRequest, ModelResponse, Pricing, Role, StopReason, ToolChoice,
    ToolDef, Usage,
};

/// Limits of one investigation. Hitting one ends it with a partial report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budgets {
    pub max_turns: u32,
    pub max_tool_calls: u32,
    pub max_tokens: u64,
    pub max_wall: Duration,
    pub max_cost_usd: f64,
    /// Tool calls run from one model turn; the rest are answered "not run".
    pub max_calls_per_turn: usize,
    /// Characters of one tool result sent to the model.
    pub result_chars: usize,
    pub max_output_tokens: u32,
    /// Times the model may be asked to fix its report before it is accepted as is.
    pub max_report_fixes: u32,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            max_turns: 12,
            max_tool_calls: 40,
            max_tokens: 600_000,
            max_wall: Duration::from_secs(300),
            max_cost_usd: 3.0,
            max_calls_per_turn: 8,
            result_chars: 8_000,
            max_output_tokens: 4_096,
            max_report_fixes: 2,
        }
    }
}

/// A tool the model may call, and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRoute {
    pub source: String,
    pub kind: String,
    pub tool: String,
}

/// A call the driver must run.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCall {
    pub tool_use_id: String,
    pub route: ToolRoute,
    pub arguments: Value,
}

/// What the driver reports back for one planned call.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub tool_use_id: String,
    /// The evidence to keep (content on success, error otherwise). Its id is set here.
    pub evidence: EvidenceItem,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    CallModel(ModelRequest),
    RunTools(Vec<PlannedCall>),
    Finished(Report),
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    NeedModel,
    /// Waiting for these calls; `answered` holds results already decided (denied,
    /// malformed) in tool_use order.
    Running {
        planned: Vec<PlannedCall>,
        order: Vec<String>,
        answered: HashMap<String, (String, bool)>,
    },
    Done(Report),
}

/// Everything an investigation starts from besides the question.
pub struct Setup {
    pub system: String,
    pub tools: Vec<(ToolDef, ToolRoute)>,
    pub history: Vec<Message>,
    pub evidence: EvidenceLog,
    pub budgets: Budgets,
    pub pricing: Pricing,
    /// Masks secrets in every result before it is stored, so neither the model, a
    /// chat, nor an exported file sees them.
    pub redactor: Arc<Redactor>,
}

pub struct Investigation {
    redactor: Arc<Redactor>,
    system: String,
    tools: Vec<ToolDef>,
    routes: HashMap<String, ToolRoute>,
    messages: Vec<Message>,
    evidence: EvidenceLog,
    budgets: Budgets,
    pricing: Pricing,
    started: DateTime<Utc>,
    usage: Usage,
    turns: u32,
    tool_calls: u32,
    report_fixes: u32,
    asked_for_report: bool,
    final_turn_sent: bool,
    budget_hit: Option<String>,
    not_checked: Vec<String>,
    last_text: String,
    phase: Phase,
}

impl Investigation {
    /// Starts answering `question`; `setup.history` and `setup.evidence` carry a
    /// session's earlier turns into a follow-up.
    pub fn new(setup: Setup, question: &str, now: DateTime<Utc>) -> Self {
        let Setup {
            system,
            tools,
            history,
            evidence,
            budgets,
            pricing,
            redactor,
        } = setup;
        let mut routes = HashMap::new();
        let mut defs = Vec::new();
        for (def, route) in tools {
            if def.name == SUBMIT_REPORT || routes.contains_key(&def.name) {
                continue;
            }
            routes.insert(def.name.clone(), route);
            defs.push(def);
        }
        defs.push(submit_report_tool());
        let mut messages = history;
        // A finished turn ends with the user's tool results; the question joins
        // that message so roles keep alternating.
        match messages.last_mut() {
            Some(last) if last.role == Role::User => last.content.push(ContentBlock::Text {
                text: question.to_string(),
            }),
            Some(_) | None => messages.push(Message::user_text(question)),
        }
        Investigation {
            redactor,
            system,
            tools: defs,
            routes,
            messages,
            evidence,
            budgets,
            pricing,
            started: now,
            usage: Usage::default(),
            turns: 0,
            tool_calls: 0,
            report_fixes: 0,
            asked_for_report: false,
            final_turn_sent: false,
            budget_hit: None,
            not_checked: Vec::new(),
            last_text: String::new(),
            phase: Phase::NeedModel,
        }
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    pub fn cost_usd(&self) -> f64 {
        self.pricing.cost(&self.usage)
    }

    pub fn turns(&self) -> u32 {
        self.turns
    }

    pub fn tool_calls(&self) -> u32 {
        self.tool_calls
    }

    pub fn evidence(&self) -> &EvidenceLog {
        &self.evidence
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Tools offered to the model (including submit_report).
    pub fn tools(&self) -> &[ToolDef] {
        &self.tools
    }

    /// Consumes the investigation, keeping what a session needs for follow-ups.
    pub fn into_parts(self) -> (Vec<Message>, EvidenceLog) {
        (self.messages, self.evidence)
    }

    /// What to do next. Call after construction and after each `on_*`.
    pub fn next_step(&mut self, now: DateTime<Utc>) -> Step {
        match &self.phase {
            Phase::Done(report) => return Step::Finished(report.clone()),
            Phase::Running { planned, .. } => return Step::RunTools(planned.clone()),
            Phase::NeedModel => {}
        }
        if self.budget_hit.is_none() {
            self.budget_hit = self.exhausted(now);
        }
        if self.budget_hit.is_some() && self.final_turn_sent {
            // The final turn came back without a usable report: stop with what we have.
            return self.finish(self.fallback_report());
        }
        let last_turn = self.budget_hit.is_some() || self.turns + 1 >= self.budgets.max_turns;
        let (tools, tool_choice) = if last_turn {
            self.final_turn_sent = true;
            if self.budget_hit.is_none() {
                self.budget_hit = Some(format!(
                    "turn budget ({} turns) reached",
                    self.budgets.max_turns
                ));
            }
            let reason = self.budget_hit.clone().unwrap_or_default();
            self.push_user_note(format!(
                "Budget reached ({reason}). No more tools can run. Call submit_report now with what the evidence shows, and list what was not checked in open_questions."
            ));
            (
                vec![submit_report_tool()],
                Some(ToolChoice::Tool {
                    name: SUBMIT_REPORT.into(),
                }),
            )
        } else if self.asked_for_report {
            (
                self.tools.clone(),
                Some(ToolChoice::Tool {
                    name: SUBMIT_REPORT.into(),
                }),
            )
        } else {
            (self.tools.clone(), Some(ToolChoice::Auto))
        };
        self.turns += 1;
        Step::CallModel(ModelRequest {
            system: self.system.clone(),
            messages: self.messages.clone(),
            tools,
            tool_choice,
            max_tokens: self.budgets.max_output_tokens,
        })
    }

    fn exhausted(&self, now: DateTime<Utc>) -> Option<String> {
        let elapsed = (now - self.started).to_std().unwrap_or_default();
        if elapsed >= self.budgets.max_wall {
            return Some(format!(
                "wall time budget ({}s) reached",
                self.budgets.max_wall.as_secs()
            ));
        }
        if self.usage.total_tokens() >= self.budgets.max_tokens {
            return Some(format!(
                "token budget ({} tokens) reached",
                self.budgets.max_tokens
            ));
        }
        if self.cost_usd() >= self.budgets.max_cost_usd {
            return Some(format!(
                "cost budget (${:.2}) reached",
                self.budgets.max_cost_usd
            ));
        }
        if self.tool_calls >= self.budgets.max_tool_calls {
            return Some(format!(
                "tool call budget ({} calls) reached",
                self.budgets.max_tool_calls
            ));
        }
        None
    }

    /// The model could not be reached at all: end with what we have.
    pub fn on_model_error(&mut self, error: &str) {
        self.budget_hit = Some(format!("the model failed: {error}"));
        let report = self.fallback_report();
        self.phase = Phase::Done(report);
    }

    pub fn on_model_response(&mut self, response: ModelResponse) {
        self.usage.add(&response.usage);
        let mut content = response.content;
        if content.is_empty() {
            // The API rejects empty assistant turns in history; keep a placeholder.
            content.push(ContentBlock::Text {
                text: "(no content)".into(),
            });
        }
        // The API rejects history whose tool_use input is not an object; keep the
        // malformed value visible to the model, wrapped in one.
        let history: Vec<ContentBlock> = content
            .iter()
            .map(|block| match block {
                ContentBlock::ToolUse { id, name, input } if !input.is_object() => {
                    ContentBlock::ToolUse {
                        id: id.clone(),
                        name: name.clone(),
                        input: serde_json::json!({ "invalid_arguments": input.to_string() }),
                    }
                }
                other => other.clone(),
            })
            .collect();
        self.messages.push(Message {
            role: Role::Assistant,
            content: history,
        });
        let text: Vec<&str> = content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } => Some(text.as_str()),
                ContentBlock::ToolUse { .. } | ContentBlock::ToolResult { .. } => None,
            })
            .collect();
        if !text.is_empty() {
            self.last_text = text.join("\n");
        }
        let uses: Vec<(String, String, Value)> = content
            .into_iter()
            .filter_map(|b| match b {
                ContentBlock::ToolUse { id, name, input } => Some((id, name, input)),
                ContentBlock::Text { .. } | ContentBlock::ToolResult { .. } => None,
            })
            .collect();

        if uses.is_empty() {
            if response.stop_reason == StopReason::MaxTokens && !self.asked_for_report {
                self.asked_for_report = true;
                self.push_user_note(
                    "Your answer was cut off. Call submit_report with the findings so far.".into(),
                );
                self.phase = Phase::NeedModel;
                return;
            }
            if !self.asked_for_report && !self.final_turn_sent {
                self.asked_for_report = true;
                self.push_user_note(
                    "Please call submit_report with your findings; every claim must cite evidence ids.".into(),
                );
                self.phase = Phase::NeedModel;
                return;
            }
            let report = self.unstructured_report();
            self.phase = Phase::Done(report);
            return;
        }

        let report_call = uses
            .iter()
            .find(|(_, name, _)| name == SUBMIT_REPORT)
            .cloned();
        let mut order = Vec::new();
        let mut answered: HashMap<String, (String, bool)> = HashMap::new();
        let mut planned = Vec::new();
        if let Some((report_id, _, input)) = report_call {
            match report::validate(&input, &self.evidence) {
                Ok((findings, cited)) => {
                    let report = self.structured(findings, cited);
                    // Answer every tool_use so the transcript stays well-formed for follow-ups.
                    self.answer_all(&uses, &report_id, "report accepted");
                    self.phase = Phase::Done(report);
                    return;
                }
                Err(problem) => {
                    self.report_fixes += 1;
                    if self.report_fixes > self.budgets.max_report_fixes {
                        if let Ok(mut findings) =
                            serde_json::from_value::<report::Findings>(input.clone())
                        {
                            let cited = report::strip_invalid(&mut findings, &self.evidence);
                            let mut report = self.structured(findings, cited);
                            report.not_checked.push(
                                "some citations could not be verified and were removed".into(),
                            );
                            self.answer_all(
                                &uses,
                                &report_id,
                                "report accepted with invalid citations removed",
                            );
                            self.phase = Phase::Done(report);
                            return;
                        }
                    }
                    self.asked_for_report = true;
                    for (id, _, _) in &uses {
                        order.push(id.clone());
                        let message = if *id == report_id {
                            problem.clone()
                        } else {
                            "not run: submit_report was called in the same turn".to_string()
                        };
                        answered.insert(id.clone(), (message, true));
                    }
                    self.complete_turn(order, answered, Vec::new());
                    return;
                }
            }
        }

        let mut runnable = 0usize;
        for (id, name, input) in uses {
            order.push(id.clone());
            let Some(route) = self.routes.get(&name).cloned() else {
                answered.insert(
                    id,
                    (
                        format!(
                            "tool `{name}` is not available to you; use only the tools offered"
                        ),
                        true,
                    ),
                );
                continue;
            };
            if !input.is_object() {
                answered.insert(
                    id,
                    (
                        format!("arguments for `{name}` must be a JSON object"),
                        true,
                    ),
                );
                continue;
            }
            if runnable >= self.budgets.max_calls_per_turn {
                self.not_checked.push(format!(
                    "{}.{} (per-turn call limit)",
                    route.source, route.tool
                ));
                answered.insert(
                    id,
                    (
                        format!(
                            "not run: at most {} tool calls per turn",
                            self.budgets.max_calls_per_turn
                        ),
                        true,
                    ),
                );
                continue;
            }
            if self.tool_calls >= self.budgets.max_tool_calls {
                self.not_checked.push(format!(
                    "{}.{} (tool call budget)",
                    route.source, route.tool
                ));
                answered.insert(
                    id,
                    ("not run: the tool call budget is exhausted".into(), true),
                );
                continue;
            }
            runnable += 1;
            self.tool_calls += 1;
            planned.push(PlannedCall {
                tool_use_id: id,
                route,
                arguments: input,
            });
        }
        self.complete_turn(order, answered, planned);
    }

    fn complete_turn(
        &mut self,
        order: Vec<String>,
        answered: HashMap<String, (String, bool)>,
        planned: Vec<PlannedCall>,
    ) {
        if planned.is_empty() {
            let blocks = order
                .iter()
                .map(|id| {
                    let (content, is_error) = answered
                        .get(id)
                        .cloned()
                        .unwrap_or_else(|| ("not run".into(), true));
                    ContentBlock::ToolResult {
                        tool_use_id: id.clone(),
                        content,
                        is_error,
                    }
                })
                .collect();
            self.messages.push(Message {
                role: Role::User,
                content: blocks,
            });
            self.phase = Phase::NeedModel;
        } else {
            self.phase = Phase::Running {
                planned,
                order,
                answered,
            };
        }
    }

    fn answer_all(&mut self, uses: &[(String, String, Value)], report_id: &str, note: &str) {
        let blocks = uses
            .iter()
            .map(|(id, _, _)| ContentBlock::ToolResult {
                tool_use_id: id.clone(),
                content: if id == report_id {
                    note.to_string()
                } else {
                    "not run: the report was submitted".into()
                },
                is_error: id != report_id,
            })
            .collect();
        self.messages.push(Message {
            role: Role::User,
            content: blocks,
        });
    }

    /// Results of the planned calls, in any order. Missing ones count as failed.
    pub fn on_tool_results(&mut self, outcomes: Vec<CallOutcome>) {
        let Phase::Running {
            planned,
            order,
            mut answered,
        } = std::mem::replace(&mut self.phase, Phase::NeedModel)
        else {
            return;
        };
        let mut by_id: HashMap<String, EvidenceItem> = outcomes
            .into_iter()
            .map(|o| (o.tool_use_id, o.evidence))
            .collect();
        for call in &planned {
            let mut item = by_id
                .remove(&call.tool_use_id)
                .unwrap_or_else(|| EvidenceItem {
                    id: String::new(),
                    source: call.route.source.clone(),
                    kind: call.route.kind.clone(),
                    tool: call.route.tool.clone(),
                    arguments: call.arguments.clone(),
                    statement: String::new(),
                    at: self.started,
                    duration_ms: 0,
                    content: None,
                    error: Some("no result (the call was lost)".into()),
                    note: None,
                    attachments: Vec::new(),
                });
            if let Some(error) = &item.error {
                self.not_checked
                    .push(format!("{}.{}: {error}", item.source, item.tool));
            }
            // Before storing: the stored item is what compaction, reports and exports read.
            self.redactor.redact_item(&mut item);
            let failed = !item.ok();
            let id = self.evidence.push(item);
            let text = self
                .evidence
                .get(&id)
                .map(|item| compact_for_model(item, self.budgets.result_chars))
                .unwrap_or_default();
            answered.insert(call.tool_use_id.clone(), (text, failed));
        }
        self.complete_turn(order, answered, Vec::new());
    }

    fn push_user_note(&mut self, note: String) {
        // Merge into a trailing user message (tool results) so roles keep alternating.
        match self.messages.last_mut() {
            Some(last) if last.role == Role::User => {
                last.content.push(ContentBlock::Text { text: note })
            }
            Some(_) | None => self.messages.push(Message::user_text(note)),
        }
    }

    fn structured(&self, findings: report::Findings, cited: Vec<String>) -> Report {
        Report {
            kind: ReportKind::Structured,
            findings: Some(findings),
            text: (!self.last_text.is_empty()).then(|| self.last_text.clone()),
            partial: self.budget_hit.is_some(),
            partial_reason: self.budget_hit.clone(),
            not_checked: self.not_checked.clone(),
            cited,
        }
    }

    fn unstructured_report(&self) -> Report {
        Report {
            kind: ReportKind::Unstructured,
            findings: None,
            text: Some(if self.last_text.is_empty() {
                "(the model gave no answer)".into()
            } else {
                self.last_text.clone()
            }),
            partial: self.budget_hit.is_some(),
            partial_reason: self.budget_hit.clone(),
            not_checked: self.not_checked.clone(),
            cited: Vec::new(),
        }
    }

    /// What we can say without the model: the evidence gathered, and why we stopped.
    fn fallback_report(&self) -> Report {
        let mut lines = vec![format!(
            "The investigation stopped before a conclusion ({}).",
            self.budget_hit
                .clone()
                .unwrap_or_else(|| "unknown reason".into())
        )];
        if self.evidence.is_empty() {
            lines.push("No evidence was gathered.".into());
        } else {
            lines.push("Evidence gathered so far:".into());
            lines.extend(
                self.evidence
                    .items()
                    .iter()
                    .map(|item| format!("- {}", crate::evidence::log::describe(item))),
            );
        }
        if !self.last_text.is_empty() {
            lines.push(format!("Last notes from the model: {}", self.last_text));
        }
        Report {
            kind: ReportKind::Unstructured,
            findings: None,
            text: Some(lines.join("\n")),
            partial: true,
            partial_reason: self.budget_hit.clone(),
            not_checked: self.not_checked.clone(),
            cited: Vec::new(),
        }
    }

    fn finish(&mut self, report: Report) -> Step {
        self.phase = Phase::Done(report.clone());
        Step::Finished(report)
    }
}
