//! Reports as plain text / Markdown, shared by the terminal and file exports.

use crate::engine::{Outcome, Report, ReportKind};
use crate::evidence::{log::describe, EvidenceLog};

fn ids(list: &[String]) -> String {
    if list.is_empty() {
        String::new()
    } else {
        format!(" [{}]", list.join(", "))
    }
}

/// Markdown: readable in a terminal and in a file.
pub fn report_markdown(
    question: &str,
    report: &Report,
    evidence: &EvidenceLog,
    outcome: Option<&Outcome>,
) -> String {
    let mut out = format!("# Investigation: {question}\n\n");
    if report.partial {
        out.push_str(&format!(
            "> **Partial report**: {}.\n\n",
            report
                .partial_reason
                .clone()
                .unwrap_or_else(|| "the investigation stopped early".into())
        ));
    }
    match (&report.kind, &report.findings) {
        (ReportKind::Structured, Some(f)) => {
            out.push_str(&format!(
                "## Root cause\n\n{}{}\n\n",
                f.root_cause.summary,
                ids(&f.root_cause.evidence)
            ));
            out.push_str(&format!("**Confidence:** {}\n\n", f.confidence.as_str()));
            if !f.timeline.is_empty() {
                out.push_str("## Timeline\n\n");
                for e in &f.timeline {
                    out.push_str(&format!("- {} — {}{}\n", e.time, e.event, ids(&e.evidence)));
                }
                out.push('\n');
            }
            if !f.affected_components.is_empty() {
                out.push_str("## Affected components\n\n");
                for c in &f.affected_components {
                    out.push_str(&format!("- {}{}\n", c.name, ids(&c.evidence)));
                }
                out.push('\n');
            }
            if !f.recommended_actions.is_empty() {
                out.push_str("## Recommended actions\n\n");
                for (i, a) in f.recommended_actions.iter().enumerate() {
                    out.push_str(&format!("{}. {}{}\n", i + 1, a.action, ids(&a.evidence)));
                }
                out.push('\n');
            }
            if !f.open_questions.is_empty() {
                out.push_str("## Open questions\n\n");
                for q in &f.open_questions {
                    out.push_str(&format!("- {q}\n"));
                }
                out.push('\n');
            }
        }
        (ReportKind::Structured, None) | (ReportKind::Unstructured, _) => {
            out.push_str(
                "## Answer (unstructured: the model did not submit a structured report)\n\n",
            );
            out.push_str(report.text.as_deref().unwrap_or("(no answer)"));
            out.push_str("\n\n");
        }
    }
    if !report.not_checked.is_empty() {
        out.push_str("## Not checked\n\n");
        for n in &report.not_checked {
            out.push_str(&format!("- {n}\n"));
        }
        out.push('\n');
    }
    if !evidence.is_empty() {
        out.push_str("## Evidence\n\n");
        for item in evidence.items() {
            out.push_str(&format!("- {}\n", describe(item)));
            if let Some(crate::evidence::Content::Table(_)) = &item.content {
                out.push_str(&format!("  - attachment `{}.csv` (text/csv)\n", item.id));
            }
            for a in &item.attachments {
                out.push_str(&format!(
                    "  - attachment `{}` ({}, {} B): {}\n",
                    a.file_name(&item.id),
                    a.media_type,
                    a.size,
                    a.description
                ));
            }
        }
        out.push('\n');
    }
    if let Some(o) = outcome {
        out.push_str(&format!(
            "_{} tool call(s), {} model turn(s), {} tokens, ${:.4}, {:.1}s_\n",
            o.tool_calls,
            o.turns,
            o.usage.total_tokens(),
            o.cost_usd,
            o.duration_ms as f64 / 1000.0
        ));
    }
    out
}
