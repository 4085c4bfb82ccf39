//! The report: what `submit_report` must contain, and its validation (every claim
//! cites evidence ids that exist).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::evidence::EvidenceLog;
use crate::llm::ToolDef;

pub const SUBMIT_REPORT: &str = "submit_report";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pub summary: String,
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineEvent {
    pub time: String,
    pub event: String,
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub name: String,
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub action: String,
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// What the model submits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Findings {
    pub root_cause: Claim,
    pub timeline: Vec<TimelineEvent>,
    pub affected_components: Vec<Component>,
    pub recommended_actions: Vec<Action>,
    pub confidence: Confidence,
    #[serde(default)]
    pub open_questions: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// Submitted through `submit_report` and validated.
    Structured,
    /// The model answered in prose only; kept as is and marked.
    Unstructured,
}

/// The end of an investigation, whatever happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub kind: ReportKind,
    pub findings: Option<Findings>,
    /// Prose, for unstructured reports (and any text the model added).
    pub text: Option<String>,
    /// True when a budget or failure stopped the investigation early.
    pub partial: bool,
    pub partial_reason: Option<String>,
    /// What could not be checked: failed sources, calls left out by budgets.
    pub not_checked: Vec<String>,
    /// Evidence ids this report cites (all exist).
    pub cited: Vec<String>,
}

pub fn submit_report_tool() -> ToolDef {
    let ids = json!({"type": "array", "items": {"type": "string", "pattern": "^E[0-9]+$"}, "description": "Evidence ids (E1, E2, …) from tool results that support this."});
    ToolDef {
        name: SUBMIT_REPORT.into(),
        description: "Submit the final investigation report. Every claim must cite the evidence ids (E1, E2, …) of the tool results that support it; cite only ids you were given. Say what you could not check in open_questions.".into(),
        input_schema: json!({
            "type": "object",
            "properties": {
                "root_cause": {"type": "object", "properties": {"summary": {"type": "string"}, "evidence": ids}, "required": ["summary", "evidence"], "additionalProperties": false},
                "timeline": {"type": "array", "items": {"type": "object", "properties": {"time": {"type": "string", "description": "UTC time, RFC 3339 or HH:MM"}, "event": {"type": "string"}, "evidence": ids}, "required": ["time", "event", "evidence"], "additionalProperties": false}},
                "affected_components": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "evidence": ids}, "required": ["name", "evidence"], "additionalProperties": false}},
                "recommended_actions": {"type": "array", "items": {"type": "object", "properties": {"action": {"type": "string"}, "evidence": ids}, "required": ["action"], "additionalProperties": false}},
                "confidence": {"type": "string", "enum": ["low", "medium", "high"]},
                "open_questions": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["root_cause", "timeline", "affected_components", "recommended_actions", "confidence"],
            "additionalProperties": false
        }),
    }
}

/// Checks a `submit_report` input. Errors are written for the model to fix.
pub fn validate(input: &Value, evidence: &EvidenceLog) -> Result<(Findings, Vec<String>), String> {
    let findings: Findings = serde_json::from_value(input.clone())
        .map_err(|e| format!("submit_report arguments do not match its schema: {e}"))?;
    let mut problems = Vec::new();
    let mut cited = Vec::new();
    let mut check = |what: &str, ids: &[String], required: bool| {
        if required && ids.is_empty() {
            problems.push(format!("{what} cites no evidence"));
        }
        for id in ids {
            let id = id.trim().to_ascii_uppercase();
            if evidence.contains(&id) {
                if !cited.contains(&id) {
                    cited.push(id);
                }
            } else {
                problems.push(format!("{what} cites {id}, which does not exist"));
            }
        }
    };
    check("root_cause", &findings.root_cause.evidence, true);
    for (i, event) in findings.timeline.iter().enumerate() {
        check(&format!("timeline[{i}]"), &event.evidence, true);
    }
    for (i, component) in findings.affected_components.iter().enumerate() {
        check(
            &format!("affected_components[{i}] ({})", component.name),
            &component.evidence,
            true,
        );
    }
    for (i, action) in findings.recommended_actions.iter().enumerate() {
        check(
            &format!("recommended_actions[{i}]"),
            &action.evidence,
            false,
        );
    }
    if findings.root_cause.summary.trim().is_empty() {
        problems.push("root_cause.summary is empty".into());
    }
    if problems.is_empty() {
        Ok((findings, cited))
    } else {
        let known: Vec<&str> = evidence.items().iter().map(|i| i.id.as_str()).collect();
        Err(format!(
            "report not accepted: {}. Existing evidence ids: {}. Fix the citations and call submit_report again.",
            problems.join("; "),
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        ))
    }
}

/// Keeps only citations that exist (used when the model could not fix them).
pub fn strip_invalid(findings: &mut Findings, evidence: &EvidenceLog) -> Vec<String> {
    let keep = |ids: &mut Vec<String>| ids.retain(|id| evidence.contains(id));
    keep(&mut findings.root_cause.evidence);
    findings
        .timeline
        .iter_mut()
        .for_each(|e| keep(&mut e.evidence));
    findings
        .affected_components
        .iter_mut()
        .for_each(|c| keep(&mut c.evidence));
    findings
        .recommended_actions
        .iter_mut()
        .for_each(|a| keep(&mut a.evidence));
    let mut cited = Vec::new();
    let all = std::iter::once(&findings.root_cause.evidence)
        .chain(findings.timeline.iter().map(|e| &e.evidence))
        .chain(findings.affected_components.iter().map(|c| &c.evidence))
        .chain(findings.recommended_actions.iter().map(|a| &a.evidence));
    for ids in all {
        for id in ids {
            let id = id.to_ascii_uppercase();
            if !cited.contains(&id) {
                cited.push(id);
            }
        }
    }
    cited
}
