//! The offline planner: a [`Model`] that needs no network. Runbooks map question
//! patterns to tool calls with templated arguments; when the results are in, a
//! deterministic synthesis reads them (top error patterns, when errors began,
//! what changed just before) and submits a cited report.
//!
//! It sees exactly what a real model sees — the offered tools and the compact
//! evidence in the conversation — so it can reach nothing the principal cannot.

/// The offline planner's model name, so callers can tell it from Claude.
pub const OFFLINE_MODEL_NAME: &str = "offline-runbooks";

use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use regex::Regex;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{
    ContentBlock, Error, Model, ModelRequest, ModelResponse, Pricing, Result, Role, StopReason,
    ToolChoice, Usage,
};

const BUILTIN_RUNBOOKS: &[&str] = &[
    include_str!("../../config/runbooks/errors-after-change.yaml"),
    include_str!("../../config/runbooks/overview.yaml"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "match")]
    pub matcher: RunbookMatch,
    pub steps: Vec<RunbookStep>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookMatch {
    #[serde(default)]
    pub questions: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookStep {
    pub tool: String,
    #[serde(default)]
    pub args: Map<String, Value>,
}

struct Compiled {
    runbook: Runbook,
    patterns: Vec<Regex>,
}

pub struct OfflinePlanner {
    runbooks: Vec<Compiled>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    #[error("runbook {file}: {message}")]
    Invalid { file: String, message: String },
}

impl OfflinePlanner {
    /// Runbooks from `dir/*.yaml` when the directory exists, else the built-in ones.
    pub fn load(dir: Option<&Path>) -> std::result::Result<Self, RunbookError> {
        let mut texts: Vec<(String, String)> = Vec::new();
        if let Some(dir) = dir.filter(|d| d.is_dir()) {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .map_err(|e| RunbookError::Invalid {
                    file: dir.display().to_string(),
                    message: e.to_string(),
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            entries.sort();
            for path in entries {
                let text = std::fs::read_to_string(&path).map_err(|e| RunbookError::Invalid {
                    file: path.display().to_string(),
                    message: e.to_string(),
                })?;
                texts.push((path.display().to_string(), text));
            }
        }
        if texts.is_empty() {
            texts = BUILTIN_RUNBOOKS
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("built-in #{i}"), t.to_string()))
                .collect();
        }
        let mut runbooks = Vec::new();
        for (file, text) in texts {
            let runbook: Runbook =
                serde_saphyr::from_str(&text).map_err(|e| RunbookError::Invalid {
                    file: file.clone(),
                    message: e.to_string(),
                })?;
            let patterns = runbook
                .matcher
                .questions
                .iter()
                .map(|p| {
                    regex::RegexBuilder::new(p)
                        .case_insensitive(true)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| RunbookError::Invalid {
                            file: file.clone(),
                            message: format!("bad pattern `{p}`: {e}"),
                        })
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            runbooks.push(Compiled { runbook, patterns });
        }
        // The catch-all goes last whatever the file order.
        runbooks.sort_by_key(|c| c.runbook.matcher.questions.iter().any(|q| q == ".*"));
        Ok(OfflinePlanner { runbooks })
    }

    fn plan(&self, question: &str, request: &ModelRequest) -> Vec<ContentBlock> {
        let offered: Vec<&str> = request.tools.iter().map(|t| t.name.as_str()).collect();
        let mentioned = mentioned_service(question, &offered);
        let (start, end) = window(question);
        for compiled in &self.runbooks {
            let matches_question = compiled.patterns.iter().any(|p| p.is_match(question));
            let matches_service = compiled.runbook.matcher.services.is_empty()
                || mentioned
                    .as_ref()
                    .is_some_and(|s| compiled.runbook.matcher.services.contains(s));
            if !(matches_question && matches_service) {
                continue;
            }
            let mut blocks = vec![ContentBlock::Text {
                text: format!(
                    "Following runbook `{}`: {}",
                    compiled.runbook.name, compiled.runbook.description
                ),
            }];
            let mut n = 0;
            for step in &compiled.runbook.steps {
                for tool in offered
                    .iter()
                    .filter(|t| t.rsplit("__").next() == Some(step.tool.as_str()))
                {
                    n += 1;
                    let args = fill(
                        &Value::Object(step.args.clone()),
                        mentioned.as_deref().unwrap_or(""),
                        &start,
                        &end,
                    );
                    blocks.push(ContentBlock::ToolUse {
                        id: format!("plan_{n}"),
                        name: tool.to_string(),
                        input: args,
                    });
                }
            }
            if n > 0 {
                return blocks;
            }
        }
        Vec::new()
    }
}

/// "show me E2 by hour": the same filters as evidence E2, counted over time in the
/// asked bucket, on the same source. None when the question is not of that form or
/// the source cannot count over time.
fn regroup(question: &str, request: &ModelRequest) -> Option<Vec<ContentBlock>> {
    let id = Regex::new(r"(?i)\b(E\d+)\b")
        .ok()?
        .captures(question)?
        .get(1)?
        .as_str()
        .to_ascii_uppercase();
    let unit = Regex::new(r"(?i)\bby\s+(?:the\s+)?(minute|5\s*min\w*|15\s*min\w*|hour|day)")
        .ok()?
        .captures(question)?
        .get(1)?
        .as_str()
        .to_ascii_lowercase();
    let bucket = match unit.as_str() {
        "minute" => "1m",
        "hour" => "1h",
        "day" => "1d",
        u if u.starts_with('5') => "5m",
        _ => "15m",
    };
    let messages = &request.messages;
    let tool_use_id = messages
        .iter()
        .flat_map(|m| m.content.iter())
        .find_map(|b| match b {
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                ..
            } if content.starts_with(&format!("[{id}]")) => Some(tool_use_id.clone()),
            ContentBlock::ToolResult { .. }
            | ContentBlock::Text { .. }
            | ContentBlock::ToolUse { .. } => None,
        })?;
    let (name, input) = messages
        .iter()
        .flat_map(|m| m.content.iter())
        .find_map(|b| match b {
            ContentBlock::ToolUse { id, name, input } if *id == tool_use_id => {
                Some((name.clone(), input.clone()))
            }
            ContentBlock::ToolUse { .. }
            | ContentBlock::Text { .. }
            | ContentBlock::ToolResult { .. } => None,
        })?;
    let (source, _) = name.rsplit_once("__")?;
    let target = format!("{source}__count_over_time");
    if !request.tools.iter().any(|t| t.name == target) {
        return None;
    }
    let mut args = Map::new();
    for key in ["start", "end", "level", "service", "text"] {
        if let Some(value) = input.get(key) {
            args.insert(key.to_string(), value.clone());
        }
    }
    args.insert("bucket".into(), Value::String(bucket.into()));
    Some(vec![
        ContentBlock::Text {
            text: format!("Counting the lines of {id} per {unit}."),
        },
        ContentBlock::ToolUse {
            id: format!("regroup_{}", messages.len()),
            name: target,
            input: Value::Object(args),
        },
    ])
}

/// A service named in the question, if it matches something the tools mention.
fn mentioned_service(question: &str, _offered: &[&str]) -> Option<String> {
    let re = Regex::new(r"\b([a-z][a-z0-9]*-(?:service|api|svc|worker|gateway))\b").ok()?;
    re.captures(&question.to_ascii_lowercase())
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().to_string())
}

/// The question's time window; empty means "all the data there is".
fn window(_question: &str) -> (String, String) {
    (String::new(), String::new())
}

/// Replaces templates; an argument that becomes empty is dropped.
fn fill(value: &Value, service: &str, start: &str, end: &str) -> Value {
    match value {
        Value::String(s) => Value::String(
            s.replace("{{service}}", service)
                .replace("{{start}}", start)
                .replace("{{end}}", end),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| fill(v, service, start, end)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill(v, service, start, end)))
                .filter(|(_, v)| !matches!(v, Value::String(s) if s.is_empty()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One evidence item as the planner reads it back from the conversation.
#[derive(Debug, Clone, Default)]
struct Seen {
    id: String,
    tool: String,
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    failed: bool,
}

impl Seen {
    fn col(&self, names: &[&str]) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| names.iter().any(|n| c.eq_ignore_ascii_case(n)))
    }

    fn time_col(&self) -> Option<usize> {
        self.columns.iter().position(|c| {
            let c = c.to_ascii_lowercase();
            c.ends_with("_at")
                || c.contains("time")
                || c.contains("minute")
                || c.contains("hour")
                || c.starts_with("bucket")
        })
    }
}

/// Reads `[E3] source.tool — …` / `columns: a:T, …` / JSON rows.
fn parse_evidence(text: &str) -> Option<Seen> {
    let mut lines = text.lines();
    let head = lines.next()?;
    let id = head.strip_prefix('[')?.split(']').next()?.to_string();
    let tool = head
        .split(']')
        .nth(1)?
        .split_whitespace()
        .next()?
        .rsplit('.')
        .next()?
        .to_string();
    let mut seen = Seen {
        id,
        tool,
        failed: head.contains(" FAILED: "),
        ..Seen::default()
    };
    for line in lines {
        if let Some(cols) = line.strip_prefix("columns: ") {
            seen.columns = cols
                .split(", ")
                .map(|c| c.split(':').next().unwrap_or(c).to_string())
                .collect();
        } else if line.starts_with('[') {
            if let Ok(Value::Array(row)) = serde_json::from_str::<Value>(line) {
                seen.rows.push(row);
            }
        }
    }
    Some(seen)
}

fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    let text = value.as_str()?.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    None
}

fn hhmm(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn text_of(row: &[Value], i: Option<usize>) -> String {
    match i.and_then(|i| row.get(i)) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn number_of(row: &[Value], i: Option<usize>) -> f64 {
    match i.and_then(|i| row.get(i)) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// One row of a pattern-count result.
#[derive(Clone)]
struct PatternRow {
    pattern: String,
    count: f64,
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    example: String,
    services: String,
}

struct Change {
    at: DateTime<Utc>,
    evidence: String,
    service: String,
    description: String,
    action: String,
}

/// The deterministic synthesis: returns `submit_report` input.
fn synthesize(evidence: &[Seen]) -> Value {
    let usable: Vec<&Seen> = evidence.iter().filter(|e| !e.failed).collect();
    let failed: Vec<String> = evidence
        .iter()
        .filter(|e| e.failed)
        .map(|e| format!("{} ({}) failed and could not be checked", e.id, e.tool))
        .collect();

    // Error volume over time → onset and peak.
    let series = usable
        .iter()
        .find(|e| e.tool == "count_over_time" && !e.rows.is_empty());
    let mut onset: Option<(DateTime<Utc>, f64, f64)> = None;
    let mut peak: Option<(DateTime<Utc>, f64)> = None;
    if let Some(s) = series {
        let (ti, ci) = (
            s.col(&["bucket_start", "bucket", "time"]),
            s.col(&["count", "errors"]),
        );
        let points: Vec<(DateTime<Utc>, f64)> = s
            .rows
            .iter()
            .filter_map(|r| Some((parse_time(r.get(ti?)?)?, number_of(r, ci))))
            .collect();
        let head = points.len().max(3) / 3;
        let mut baseline: Vec<f64> = points.iter().take(head.max(1)).map(|p| p.1).collect();
        baseline.sort_by(|a, b| a.total_cmp(b));
        let base = baseline.get(baseline.len() / 2).copied().unwrap_or(0.0);
        let threshold = (base * 3.0).max(base + 5.0);
        for (i, (t, c)) in points.iter().enumerate() {
            let next_high = points.get(i + 1).is_none_or(|n| n.1 >= threshold);
            if *c >= threshold && next_high {
                onset = Some((*t, base, *c));
                break;
            }
        }
        peak = points.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
    }

    // Error patterns: the dominant one that is new since the onset.
    let patterns = usable
        .iter()
        .find(|e| e.tool == "count_by_pattern" && !e.rows.is_empty());
    let mut top: Option<PatternRow> = None;
    let mut services_hit: Vec<String> = Vec::new();
    if let Some(p) = patterns {
        let (pi, ci, fi, li, ei) = (
            p.col(&["pattern", "template"]),
            p.col(&["count"]),
            p.col(&["first_seen"]),
            p.col(&["last_seen"]),
            p.col(&["example"]),
        );
        let svc_i = p.col(&["service", "services"]);
        let mut candidates: Vec<_> = p
            .rows
            .iter()
            .map(|r| PatternRow {
                pattern: text_of(r, pi),
                count: number_of(r, ci),
                first_seen: fi.and_then(|i| r.get(i)).and_then(parse_time),
                last_seen: li.and_then(|i| r.get(i)).and_then(parse_time),
                example: text_of(r, ei),
                services: text_of(r, svc_i),
            })
            .collect();
        if let Some((t0, _, _)) = onset {
            let margin = chrono::Duration::minutes(15);
            let new: Vec<_> = candidates
                .iter()
                .filter(|c| c.first_seen.is_some_and(|f| f >= t0 - margin))
                .cloned()
                .collect();
            if !new.is_empty() {
                candidates = new;
            }
        }
        candidates.sort_by(|a, b| b.count.total_cmp(&a.count));
        for c in candidates.iter().take(3) {
            for svc in service_names(&c.services, &c.example) {
                if !services_hit.contains(&svc) {
                    services_hit.push(svc);
                }
            }
        }
        top = candidates.into_iter().next();
    }
    let onset_time = onset
        .map(|o| o.0)
        .or_else(|| top.as_ref().and_then(|t| t.first_seen));

    // Changes: any result with a time column and rows that look like deploys or config edits.
    let mut changes: Vec<Change> = Vec::new();
    for e in &usable {
        let Some(ti) = e.time_col() else { continue };
        let svc = e.col(&["service", "app"]);
        let (ver, prev) = (e.col(&["version"]), e.col(&["previous_version"]));
        let (key, old, new) = (
            e.col(&["key", "setting"]),
            e.col(&["old_value"]),
            e.col(&["new_value"]),
        );
        let summary = e.col(&["change_summary", "summary", "description"]);
        if ver.is_none() && key.is_none() {
            continue;
        }
        for row in &e.rows {
            let Some(at) = row.get(ti).and_then(parse_time) else {
                continue;
            };
            let service = text_of(row, svc);
            let (description, action) = if ver.is_some() {
                let (v, p) = (text_of(row, ver), text_of(row, prev));
                let extra = text_of(row, summary);
                (
                    format!(
                        "deploy of {service} {p}→{v}{}",
                        if extra.is_empty() {
                            String::new()
                        } else {
                            format!(" ({extra})")
                        }
                    ),
                    if p.is_empty() {
                        format!("Roll back {service} (deployed {v})")
                    } else {
                        format!("Roll back {service} to {p}")
                    },
                )
            } else {
                let (k, o, n) = (text_of(row, key), text_of(row, old), text_of(row, new));
                (
                    format!("config change on {service}: {k} {o}→{n}"),
                    format!("Restore {k} on {service} to {o} (now {n})"),
                )
            };
            changes.push(Change {
                at,
                evidence: e.id.clone(),
                service,
                description,
                action,
            });
        }
    }
    let window_start = onset_time.map(|t| t - chrono::Duration::hours(3));
    let mut suspects: Vec<&Change> = changes
        .iter()
        .filter(|c| match (onset_time, window_start) {
            (Some(t), Some(w)) => c.at <= t + chrono::Duration::minutes(2) && c.at >= w,
            _ => false,
        })
        .collect();
    suspects.sort_by_key(|c| std::cmp::Reverse(c.at));
    // The latest change, and others at the same moment (a deploy and its config).
    let latest = suspects.first().map(|c| c.at);
    let culprits: Vec<&Change> = suspects
        .into_iter()
        .filter(|c| latest.is_some_and(|l| (l - c.at).num_minutes().abs() <= 2))
        .collect();

    let cite = |ids: &mut Vec<String>, id: &str| {
        if !id.is_empty() && !ids.iter().any(|x| x == id) {
            ids.push(id.to_string());
        }
    };
    let mut root_ids = Vec::new();
    if let Some(p) = patterns {
        cite(&mut root_ids, &p.id);
    }
    if let Some(s) = series {
        cite(&mut root_ids, &s.id);
    }
    for c in &culprits {
        cite(&mut root_ids, &c.evidence);
    }
    if root_ids.is_empty() {
        if let Some(first) = usable.first() {
            cite(&mut root_ids, &first.id);
        }
    }

    let summary = match (&top, onset_time, culprits.first()) {
        (Some(PatternRow { pattern, count, .. }), Some(t), Some(change)) => {
            let minutes = (t - change.at).num_minutes().max(0);
            let services = if services_hit.is_empty() { String::new() } else { format!(" in {}", services_hit.join(", ")) };
            format!(
                "Errors{services} began at {} — dominated by `{pattern}` ({count:.0} occurrences) — {minutes} min after the {}. The change is the most likely cause.",
                hhmm(t),
                culprits.iter().map(|c| c.description.clone()).collect::<Vec<_>>().join(" and the ")
            )
        }
        (Some(PatternRow { pattern, count, .. }), Some(t), None) => format!(
            "Errors began at {}, dominated by `{pattern}` ({count:.0} occurrences); no deploy or config change was found shortly before it.",
            hhmm(t)
        ),
        (Some(PatternRow { pattern, count, .. }), None, _) => format!("The most frequent error is `{pattern}` ({count:.0} occurrences); when it began could not be established."),
        (None, _, _) => "No error pattern was found in the evidence; the cause could not be established.".to_string(),
    };

    let mut timeline = Vec::new();
    for c in &culprits {
        timeline
            .push(json!({"time": hhmm(c.at), "event": c.description, "evidence": [c.evidence]}));
    }
    if let (Some((t, base, first)), Some(s)) = (onset, series) {
        timeline.push(json!({"time": hhmm(t), "event": format!("errors rise from about {base:.0} to {first:.0} per bucket"), "evidence": [s.id]}));
    }
    if let (Some((t, n)), Some(s)) = (peak, series) {
        if onset.is_none_or(|o| o.0 != t) {
            timeline.push(json!({"time": hhmm(t), "event": format!("error peak: {n:.0} per bucket"), "evidence": [s.id]}));
        }
    }
    // Further series (a follow-up's regrouping, e.g. per hour): their busiest buckets.
    for other in usable
        .iter()
        .filter(|e| e.tool == "count_over_time" && series.is_some_and(|s| s.id != e.id))
    {
        let (ti, ci) = (
            other.col(&["bucket_start", "bucket", "time"]),
            other.col(&["count", "errors"]),
        );
        let mut points: Vec<(DateTime<Utc>, f64)> = other
            .rows
            .iter()
            .filter_map(|r| Some((parse_time(r.get(ti?)?)?, number_of(r, ci))))
            .collect();
        points.sort_by(|a, b| b.1.total_cmp(&a.1));
        if let Some((t, _)) = points.first() {
            let busiest: Vec<String> = points
                .iter()
                .take(3)
                .map(|(t, n)| format!("{} ({n:.0})", hhmm(*t)))
                .collect();
            timeline.push(json!({"time": hhmm(*t), "event": format!("busiest buckets in {}: {}", other.id, busiest.join(", ")), "evidence": [other.id]}));
        }
    }
    if let (
        Some(PatternRow {
            pattern,
            last_seen: Some(last),
            ..
        }),
        Some(p),
    ) = (&top, patterns)
    {
        timeline.push(json!({"time": hhmm(*last), "event": format!("last `{pattern}` seen"), "evidence": [p.id]}));
    }

    let mut components: Vec<Value> = Vec::new();
    let mut named: Vec<String> = Vec::new();
    for c in &culprits {
        if !c.service.is_empty() && !named.contains(&c.service) {
            named.push(c.service.clone());
            components.push(json!({"name": c.service, "evidence": [c.evidence]}));
        }
    }
    if let Some(p) = patterns {
        for s in &services_hit {
            if !named.contains(s) {
                named.push(s.clone());
                components.push(json!({"name": s, "evidence": [p.id]}));
            }
        }
    }

    let mut actions: Vec<Value> = culprits
        .iter()
        .map(|c| json!({"action": c.action, "evidence": [c.evidence]}))
        .collect();
    if let (Some(PatternRow { pattern, .. }), Some(p)) = (&top, patterns) {
        actions.push(json!({"action": format!("Alert on `{pattern}` so the next occurrence pages early"), "evidence": [p.id]}));
    }

    let confidence = match (culprits.first(), onset_time, &top) {
        (Some(c), Some(t), Some(_)) if (t - c.at).num_minutes() <= 30 => "high",
        (Some(_), Some(_), Some(_)) => "medium",
        _ => "low",
    };
    let mut open = failed;
    match onset_time.and_then(|t| traffic_shift(&usable, t)) {
        Some((id, before, after)) if after > before * 1.5 => {
            timeline.push(json!({"time": onset_time.map(hhmm).unwrap_or_default(), "event": format!("traffic rose from about {before:.0} to {after:.0} requests per bucket, which may contribute"), "evidence": [id]}));
        }
        Some((id, before, after)) => {
            timeline.push(json!({"time": onset_time.map(hhmm).unwrap_or_default(), "event": format!("traffic about {before:.0} requests per bucket before and {after:.0} after (×{:.1}): no surge large enough to explain the errors", after / before.max(1.0)), "evidence": [id]}));
        }
        None => {
            open.push("Traffic volume was not checked; a traffic surge cannot be ruled out.".into())
        }
    }
    if culprits.is_empty() {
        open.push("No recent deploy or configuration change was found in the evidence.".into());
    }
    // RFC-like "YYYY-MM-DD HH:MM UTC" strings sort chronologically; stable keeps ties in order.
    timeline.sort_by(|a, b| {
        a["time"]
            .as_str()
            .unwrap_or_default()
            .cmp(b["time"].as_str().unwrap_or_default())
    });
    json!({
        "root_cause": {"summary": summary, "evidence": root_ids},
        "timeline": timeline,
        "affected_components": components,
        "recommended_actions": actions,
        "confidence": confidence,
        "open_questions": open,
    })
}

/// Service names found in a services column or in an example line (JSON field,
/// `[service]` tag or `service=` pair; the example may be clipped, so no JSON parse).
fn service_names(column: &str, example: &str) -> Vec<String> {
    let mut out: Vec<String> = column
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if out.is_empty() {
        let patterns = [
            r#""service"\s*:\s*"([A-Za-z0-9_.-]+)""#,
            r"\bservice=([A-Za-z0-9_.-]+)",
            r"^\S+\s+\w+\s+\[([A-Za-z0-9_.-]+)\]",
        ];
        for pattern in patterns {
            if let Some(name) = Regex::new(pattern)
                .ok()
                .and_then(|re| re.captures(example))
                .and_then(|c| c.get(1))
            {
                out.push(name.as_str().to_string());
                break;
            }
        }
    }
    out
}

/// Requests per bucket before and after `onset`, from any result with a
/// `requests` column and a time column: tells a traffic surge from a fault.
fn traffic_shift(evidence: &[&Seen], onset: DateTime<Utc>) -> Option<(String, f64, f64)> {
    let e = evidence
        .iter()
        .find(|e| e.col(&["requests"]).is_some() && e.time_col().is_some())?;
    let (ri, ti) = (e.col(&["requests"]), e.time_col()?);
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for row in &e.rows {
        let Some(t) = row.get(ti).and_then(parse_time) else {
            continue;
        };
        let n = number_of(row, ri);
        if t < onset - chrono::Duration::minutes(10) {
            before.push(n);
        } else if t >= onset {
            after.push(n);
        }
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            None
        } else {
            Some(v.iter().sum::<f64>() / v.len() as f64)
        }
    };
    Some((e.id.clone(), mean(&before)?, mean(&after)?))
}

#[async_trait]
impl Model for OfflinePlanner {
    fn name(&self) -> &str {
        OFFLINE_MODEL_NAME
    }

    fn pricing(&self) -> Pricing {
        Pricing::FREE
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse> {
        let last = request
            .messages
            .last()
            .ok_or_else(|| Error::Protocol("empty conversation".into()))?;
        if last.role != Role::User {
            return Err(Error::Protocol("the last message is not the user's".into()));
        }
        let has_results = last
            .content
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolResult { .. }));
        let question = last.content.iter().rev().find_map(|b| match b {
            ContentBlock::Text { text } => Some(text.clone()),
            ContentBlock::ToolUse { .. } | ContentBlock::ToolResult { .. } => None,
        });
        let forced_report = matches!(&request.tool_choice, Some(ToolChoice::Tool { name }) if name == "submit_report");
        // A new question (also a follow-up after a report) gets a plan; results get a synthesis.
        let after_report = request
            .messages
            .iter()
            .rev()
            .skip(1)
            .find(|m| m.role == Role::Assistant)
            .is_some_and(|m| {
                m.content.iter().any(
                    |b| matches!(b, ContentBlock::ToolUse { name, .. } if name == "submit_report"),
                )
            });
        let planning = !forced_report && (!has_results || after_report) && question.is_some();
        if planning {
            if let Some(blocks) = question.as_deref().and_then(|q| regroup(q, request)) {
                return Ok(ModelResponse {
                    content: blocks,
                    stop_reason: StopReason::ToolUse,
                    usage: Usage::default(),
                });
            }
            let blocks = self.plan(question.as_deref().unwrap_or_default(), request);
            if !blocks.is_empty() {
                return Ok(ModelResponse {
                    content: blocks,
                    stop_reason: StopReason::ToolUse,
                    usage: Usage::default(),
                });
            }
        }
        // Synthesis over everything seen in the thread: a follow-up's new evidence
        // adds to what earlier questions found.
        let mut evidence: Vec<Seen> = Vec::new();
        for block in request.messages.iter().flat_map(|m| m.content.iter()) {
            if let ContentBlock::ToolResult { content, .. } = block {
                if let Some(seen) = parse_evidence(content) {
                    if !evidence.iter().any(|e| e.id == seen.id) {
                        evidence.push(seen);
                    }
                }
            }
        }
        if evidence.iter().all(|e| e.failed) {
            return Ok(ModelResponse {
                content: vec![ContentBlock::Text {
                    text: "No usable evidence could be gathered with the tools available.".into(),
                }],
                stop_reason: StopReason::EndTurn,
                usage: Usage::default(),
            });
        }
        Ok(ModelResponse {
            content: vec![ContentBlock::ToolUse {
                id: format!("report_{}", request.messages.len()),
                name: "submit_report".into(),
                input: synthesize(&evidence),
            }],
            stop_reason: StopReason::ToolUse,
            usage: Usage::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_runbooks_load() {
        let planner = OfflinePlanner::load(None);
        assert!(planner.is_ok_and(|p| p.runbooks.len() == 2));
    }

    #[test]
    fn evidence_text_round_trips() {
        let text = "[E2] app_logs.count_over_time — 3 row(s) returned, 3 in total\ncolumns: bucket_start:TEXT, count:INT8\n[\"2026-01-15T10:00:00Z\",1]\n[\"2026-01-15T10:05:00Z\",2]\n";
        let seen = parse_evidence(text).expect("parsed");
        assert_eq!(
            (seen.id.as_str(), seen.tool.as_str(), seen.rows.len()),
            ("E2", "count_over_time", 2)
        );
        assert_eq!(seen.columns, vec!["bucket_start", "count"]);
    }

    #[test]
    fn synthesis_finds_the_change_before_the_onset() {
        let series = Seen {
            id: "E2".into(),
            tool: "count_over_time".into(),
            columns: vec!["bucket_start".into(), "count".into()],
            rows: (0..12)
                .map(|i| {
                    vec![
                        json!(format!("2026-01-15T10:{:02}:00Z", i * 5)),
                        json!(if i >= 3 { 80 } else { 2 }),
                    ]
                })
                .collect(),
            failed: false,
        };
        let patterns = Seen {
            id: "E1".into(),
            tool: "count_by_pattern".into(),
            columns: vec![
                "pattern".into(),
                "count".into(),
                "first_seen".into(),
                "last_seen".into(),
                "levels".into(),
                "example".into(),
            ],
            rows: vec![
                vec![
                    json!("cache miss for key <*>"),
                    json!(900),
                    json!("2026-01-15T09:00:00Z"),
                    json!("2026-01-15T10:59:00Z"),
                    json!("WARN"),
                    json!("{}"),
                ],
                vec![
                    json!("Connection is not available, request timed out after <*>"),
                    json!(700),
                    json!("2026-01-15T10:14:00Z"),
                    json!("2026-01-15T10:59:00Z"),
                    json!("ERROR"),
                    json!("{\"service\":\"payment-service\"}"),
                ],
            ],
            failed: false,
        };
        let deploys = Seen {
            id: "E3".into(),
            tool: "run_query".into(),
            columns: vec![
                "service".into(),
                "version".into(),
                "previous_version".into(),
                "deployed_at".into(),
            ],
            rows: vec![
                vec![
                    json!("payment-service"),
                    json!("v2.14.0"),
                    json!("v2.13.2"),
                    json!("2026-01-15 10:12:00"),
                ],
                vec![
                    json!("inventory-service"),
                    json!("v1.9.0"),
                    json!("v1.8.9"),
                    json!("2026-01-14 16:00:00"),
                ],
            ],
            failed: false,
        };
        let report = synthesize(&[patterns, series, deploys]);
        let summary = report["root_cause"]["summary"].as_str().unwrap_or_default();
        assert!(
            summary.contains("payment-service v2.13.2→v2.14.0"),
            "{summary}"
        );
        assert!(summary.contains("Connection is not available"), "{summary}");
        assert_eq!(report["confidence"], json!("high"));
        assert_eq!(report["root_cause"]["evidence"], json!(["E1", "E2", "E3"]));
        assert!(report["recommended_actions"][0]["action"]
            .as_str()
            .unwrap_or_default()
            .contains("Roll back payment-service to v2.13.2"));
    }
}
