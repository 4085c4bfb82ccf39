//! Block Kit rendering of a report: root cause, timeline, affected components,
//! recommended actions, confidence, evidence ids, buttons and a footer. Text is
//! split to stay under Slack's limits (3000 characters per section text, 50
//! blocks per message), so a long report becomes several messages, not an error.

use serde_json::{json, Value};

use crate::engine::{Outcome, Report, ReportKind};
use crate::evidence::{log::describe, EvidenceLog};

/// Slack's limit on a section's text.
pub const MAX_SECTION_CHARS: usize = 3000;
/// Slack's limit on blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Fallback `text` (notifications) is kept short; the blocks carry the report.
const MAX_FALLBACK_CHARS: usize = 300;

pub const ACTION_DIG_DEEPER: &str = "dig_deeper";
pub const ACTION_MARK_WRONG: &str = "mark_wrong";
/// Ask a thread's question again after a restart cut it off.
pub const ACTION_RETRY: &str = "retry_question";

/// Posted in a thread whose question a restart cut off: what was asked, that the
/// evidence so far is kept, and a button to ask again.
pub fn interrupted_message(question: &str, session: &str) -> SlackMessage {
    let question: String = question.chars().take(500).collect();
    let text = format!(
        ":warning: I was restarted while investigating \u{201c}{}\u{201d} and could not finish. \
         The evidence gathered before the restart is kept. Press *Ask again* (or reply here) \
         and I'll continue.",
        escape(&question)
    );
    let fallback: String = text.chars().take(MAX_FALLBACK_CHARS).collect();
    SlackMessage {
        text: fallback,
        blocks: vec![
            json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}),
            json!({"type": "actions", "elements": [
                {"type": "button", "action_id": ACTION_RETRY, "value": session, "style": "primary",
                 "text": {"type": "plain_text", "text": "Ask again"}}
            ]}),
        ],
    }
}

/// One `chat.postMessage`: fallback text and its blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackMessage {
    pub text: String,
    pub blocks: Vec<Value>,
}

fn ids(list: &[String]) -> String {
    if list.is_empty() {
        String::new()
    } else {
        format!(" `{}`", list.join("` `"))
    }
}

/// Slack mrkdwn treats `&`, `<` and `>` as control characters.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Splits on line boundaries where possible, never inside a character.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        if current.chars().count() + line.chars().count() <= max {
            current.push_str(line);
            continue;
        }
        if !current.is_empty() {
            parts.push(std::mem::take(&mut current));
        }
        // A single line longer than the limit is cut by characters.
        let mut chunk = String::new();
        for c in line.chars() {
            if chunk.chars().count() == max {
                parts.push(std::mem::take(&mut chunk));
            }
            chunk.push(c);
        }
        current = chunk;
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

fn sections(blocks: &mut Vec<Value>, text: &str) {
    for part in split_text(text, MAX_SECTION_CHARS) {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": part}}));
    }
}

/// The footer: duration, tool calls, tokens and cost.
pub fn footer(outcome: &Outcome) -> String {
    format!(
        "{:.1}s · {} tool call(s) · {} model turn(s) · {} tokens · ${:.4}",
        outcome.duration_ms as f64 / 1000.0,
        outcome.tool_calls,
        outcome.turns,
        outcome.usage.total_tokens(),
        outcome.cost_usd
    )
}

/// The report as one or more messages. `session` goes into the buttons' values.
pub fn report_messages(
    report: &Report,
    evidence: &EvidenceLog,
    new_evidence: &[String],
    outcome: &Outcome,
    session: &str,
) -> Vec<SlackMessage> {
    let mut blocks = Vec::new();
    let fallback;
    if report.partial {
        let reason = report
            .partial_reason
            .clone()
            .unwrap_or_else(|| "the investigation stopped early".into());
        sections(
            &mut blocks,
            &format!(":warning: *Partial report*: {}.", escape(&reason)),
        );
    }
    match (&report.kind, &report.findings) {
        (ReportKind::Structured, Some(f)) => {
            blocks.push(json!({"type": "header", "text": {"type": "plain_text", "text": "Investigation report"}}));
            fallback = format!("Root cause: {}", f.root_cause.summary);
            sections(
                &mut blocks,
                &format!(
                    "*Root cause*\n{}{}\n*Confidence:* {}",
                    escape(&f.root_cause.summary),
                    ids(&f.root_cause.evidence),
                    f.confidence.as_str()
                ),
            );
            if !f.timeline.is_empty() {
                let lines: Vec<String> = f
                    .timeline
                    .iter()
                    .map(|e| {
                        format!(
                            "• {} — {}{}",
                            escape(&e.time),
                            escape(&e.event),
                            ids(&e.evidence)
                        )
                    })
                    .collect();
                sections(&mut blocks, &format!("*Timeline*\n{}", lines.join("\n")));
            }
            if !f.affected_components.is_empty() {
                let lines: Vec<String> = f
                    .affected_components
                    .iter()
                    .map(|c| format!("• {}{}", escape(&c.name), ids(&c.evidence)))
                    .collect();
                sections(
                    &mut blocks,
                    &format!("*Affected components*\n{}", lines.join("\n")),
                );
            }
            if !f.recommended_actions.is_empty() {
                let lines: Vec<String> = f
                    .recommended_actions
                    .iter()
                    .enumerate()
                    .map(|(i, a)| format!("{}. {}{}", i + 1, escape(&a.action), ids(&a.evidence)))
                    .collect();
                sections(
                    &mut blocks,
                    &format!("*Recommended actions*\n{}", lines.join("\n")),
                );
            }
            if !f.open_questions.is_empty() {
                let lines: Vec<String> = f
                    .open_questions
                    .iter()
                    .map(|q| format!("• {}", escape(q)))
                    .collect();
                sections(
                    &mut blocks,
                    &format!("*Open questions*\n{}", lines.join("\n")),
                );
            }
        }
        (ReportKind::Structured, None) | (ReportKind::Unstructured, _) => {
            let text = report.text.as_deref().unwrap_or("(no answer)");
            fallback = text.to_string();
            sections(
                &mut blocks,
                &format!(
                    "*Answer* _(unstructured: the model did not submit a structured report)_\n{}",
                    escape(text)
                ),
            );
        }
    }
    if !report.not_checked.is_empty() {
        let lines: Vec<String> = report
            .not_checked
            .iter()
            .map(|n| format!("• {}", escape(n)))
            .collect();
        sections(
            &mut blocks,
            &format!(
                ":warning: *Not checked* (a source was down or a budget ran out)\n{}",
                lines.join("\n")
            ),
        );
    }
    let cited: Vec<String> = evidence
        .items()
        .iter()
        .filter(|i| new_evidence.contains(&i.id) || report.cited.contains(&i.id))
        .map(|i| format!("• {}", escape(&describe(i))))
        .collect();
    if !cited.is_empty() {
        sections(&mut blocks, &format!("*Evidence*\n{}", cited.join("\n")));
    }
    blocks.push(json!({
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": ACTION_DIG_DEEPER, "value": session,
             "text": {"type": "plain_text", "text": "Dig deeper"}},
            {"type": "button", "action_id": ACTION_MARK_WRONG, "value": session, "style": "danger",
             "text": {"type": "plain_text", "text": "Mark answer wrong"}}
        ]
    }));
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": footer(outcome)}]}),
    );
    let fallback: String = fallback.chars().take(MAX_FALLBACK_CHARS).collect();
    blocks
        .chunks(MAX_BLOCKS)
        .enumerate()
        .map(|(i, chunk)| SlackMessage {
            text: if i == 0 {
                fallback.clone()
            } else {
                "(report continued)".to_string()
            },
            blocks: chunk.to_vec(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::engine::report::{Claim, TimelineEvent};
    use crate::engine::{Confidence, Findings};

    #[test]
    fn a_long_report_becomes_several_messages_within_limits() {
        let findings = Findings {
            root_cause: Claim {
                summary: "pool <exhausted> & co".into(),
                evidence: vec!["E1".into()],
            },
            timeline: (0..2000)
                .map(|i| TimelineEvent {
                    time: format!("12:{:02}", i % 60),
                    event: "x".repeat(90),
                    evidence: vec!["E1".into()],
                })
                .collect(),
            affected_components: vec![],
            recommended_actions: vec![],
            confidence: Confidence::Medium,
            open_questions: vec![],
        };
        let report = Report {
            kind: ReportKind::Structured,
            findings: Some(findings),
            text: None,
            partial: true,
            partial_reason: Some("the token budget ran out".into()),
            not_checked: vec!["checkout_db: connection refused".into()],
            cited: vec!["E1".into()],
        };
        let outcome = Outcome {
            report: report.clone(),
            usage: Default::default(),
            cost_usd: 0.01,
            turns: 3,
            tool_calls: 4,
            duration_ms: 1500,
            new_evidence: vec![],
        };
        let messages = report_messages(&report, &EvidenceLog::default(), &[], &outcome, "s");
        assert!(messages.len() >= 2);
        for m in &messages {
            assert!(m.blocks.len() <= MAX_BLOCKS);
            assert!(!m.text.is_empty());
            for b in &m.blocks {
                let text = b
                    .pointer("/text/text")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                assert!(text.chars().count() <= MAX_SECTION_CHARS);
            }
        }
        let all = serde_json::to_string(&messages.iter().map(|m| &m.blocks).collect::<Vec<_>>())
            .unwrap_or_default();
        assert!(all.contains("pool &lt;exhausted&gt; &amp; co"));
        assert!(all.contains("Partial report") && all.contains("token budget"));
        assert!(all.contains("Not checked") && all.contains("connection refused"));
        assert!(all.contains("4 tool call(s)"));
    }

    #[test]
    fn split_respects_limit_and_keeps_everything() {
        let text = format!(
            "{}\n{}\n{}",
            "a".repeat(2000),
            "b".repeat(2000),
            "é".repeat(7000)
        );
        let parts = split_text(&text, MAX_SECTION_CHARS);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_SECTION_CHARS));
        assert_eq!(parts.concat(), text);
        assert!(parts.len() >= 4);
    }
}
