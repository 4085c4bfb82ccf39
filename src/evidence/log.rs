//! The evidence of one session: every tool result kept whole, with a short id a
//! human can cite (`E7`), and the compact view the model gets.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Content;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvidenceItem {
    pub id: String,
    pub source: String,
    pub kind: String,
    pub tool: String,
    pub arguments: Value,
    /// What actually ran.
    pub statement: String,
    pub at: DateTime<Utc>,
    pub duration_ms: u64,
    /// The whole result; None when the call failed.
    pub content: Option<Content>,
    /// Why the call failed (shown to the model and in the report).
    pub error: Option<String>,
    pub note: Option<String>,
    /// Files that go with the item (charts, NDJSON hits).
    #[serde(default)]
    pub attachments: Vec<super::Attachment>,
}

impl EvidenceItem {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    pub fn rows(&self) -> Option<u64> {
        self.content.as_ref().and_then(Content::count)
    }
}

/// Evidence of one session, in order. Ids continue across follow-ups.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EvidenceLog {
    items: Vec<EvidenceItem>,
}

impl EvidenceLog {
    /// Rebuilds a log from stored items, in order, keeping their ids (a session
    /// loaded from the store continues numbering where it stopped).
    pub fn from_items(items: Vec<EvidenceItem>) -> Self {
        EvidenceLog { items }
    }

    pub fn next_id(&self) -> String {
        format!("E{}", self.items.len() + 1)
    }

    /// Stores an item, assigning its id.
    pub fn push(&mut self, mut item: EvidenceItem) -> String {
        item.id = self.next_id();
        let id = item.id.clone();
        self.items.push(item);
        id
    }

    pub fn get(&self, id: &str) -> Option<&EvidenceItem> {
        let wanted = id.trim().to_ascii_uppercase();
        self.items.iter().find(|item| item.id == wanted)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    pub fn items(&self) -> &[EvidenceItem] {
        &self.items
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The view of one item the model gets, within `budget` characters. Tables show
/// columns, then rows as JSON arrays until the budget, then what was left out.
/// (The compaction issue replaces this with pattern and series summaries; this
/// function is the seam.)
pub fn compact_for_model(item: &EvidenceItem, budget: usize) -> String {
    let mut out = format!("[{}] {}.{}", item.id, item.source, item.tool);
    if let Some(error) = &item.error {
        out.push_str(&format!(" FAILED: {error}"));
        return clip(out, budget);
    }
    match &item.content {
        None => out.push_str(" (no content)"),
        Some(Content::Table(table)) => {
            let total = table
                .total_rows
                .map(|t| t.to_string())
                .unwrap_or_else(|| "unknown".into());
            out.push_str(&format!(
                " — {} row(s) returned, {total} in total",
                table.rows.len()
            ));
            if let Some(note) = &item.note {
                out.push_str(&format!(" ({note})"));
            }
            out.push('\n');
            if let Some(grouped) = grouped_log_lines(table, budget.saturating_sub(out.len())) {
                out.push_str(&grouped);
                return clip(out, budget);
            }
            let columns: Vec<String> = table
                .columns
                .iter()
                .map(|c| format!("{}:{}", c.name, c.type_name))
                .collect();
            out.push_str(&format!("columns: {}\n", columns.join(", ")));
            let mut shown = 0;
            for row in &table.rows {
                let cells: Vec<Value> = row.iter().map(|v| clip_value(v, 300)).collect();
                let line = Value::Array(cells).to_string();
                if out.len() + line.len() + 80 > budget {
                    break;
                }
                out.push_str(&line);
                out.push('\n');
                shown += 1;
            }
            if shown < table.rows.len() {
                out.push_str(&format!(
                    "… {} more row(s) not shown here; the whole result is kept as evidence {}\n",
                    table.rows.len() - shown,
                    item.id
                ));
            }
        }
        Some(Content::Json(value)) => {
            out.push('\n');
            match super::metrics::series_from_json(value) {
                // Series are summarised: the points stay in the evidence and the chart.
                Some(series) => {
                    let summaries: Vec<_> = series.iter().map(super::metrics::summarize).collect();
                    out.push_str(&format!("{} series", summaries.len()));
                    if let Some(note) = &item.note {
                        out.push_str(&format!(" ({note})"));
                    }
                    out.push('\n');
                    out.push_str(&super::metrics::render_all(
                        &summaries,
                        budget.saturating_sub(out.len()),
                    ));
                    for a in &item.attachments {
                        out.push_str(&format!(
                            "attached for the reader: {} ({})\n",
                            a.name, a.description
                        ));
                    }
                }
                None if value.get("kind").and_then(Value::as_str) == Some("log_hits") => {
                    compact_log_hits(&mut out, item, value, budget);
                    return clip(out, budget);
                }
                None => out.push_str(&value.to_string()),
            }
        }
        Some(Content::Text(text)) => {
            out.push('\n');
            out.push_str(text);
        }
    }
    clip(out, budget)
}

/// Newest hits shown after the templates.
const NEWEST_HITS: usize = 20;

/// Log hits as templates with counts (most frequent first, but every template seen
/// at most a few times is listed before the budget runs out: a rare error is often
/// the cause), then the newest hits while room is left.
fn compact_log_hits(out: &mut String, item: &EvidenceItem, value: &Value, budget: usize) {
    let total = value.get("total").and_then(Value::as_u64).unwrap_or(0);
    let exact = value
        .get("total_exact")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let empty = Vec::new();
    let patterns = value
        .get("patterns")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let hits = value
        .get("hits")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    out.push_str(&format!(
        " — {}{total} hit(s) matched, {} fetched, {} template(s)",
        if exact { "" } else { "at least " },
        hits.len(),
        patterns.len()
    ));
    if let Some(note) = &item.note {
        out.push_str(&format!(" ({note})"));
    }
    out.push('\n');
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let line = |p: &Value| {
        let levels = p
            .get("levels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        format!(
            "{}× [{}] {} ({}..{}) e.g. {}\n",
            p.get("count").and_then(Value::as_u64).unwrap_or(0),
            levels,
            text(p, "template"),
            text(p, "first"),
            text(p, "last"),
            clip_value(&Value::String(text(p, "example")), 300)
                .as_str()
                .unwrap_or("")
        )
    };
    // Reserve room for the rare templates: the common ones fill at most two thirds.
    let reserve = budget / 3;
    let mut shown = vec![false; patterns.len()];
    for (i, p) in patterns.iter().enumerate() {
        let l = line(p);
        if out.len() + l.len() + reserve > budget {
            break;
        }
        out.push_str(&l);
        shown[i] = true;
    }
    for (i, p) in patterns.iter().enumerate().rev() {
        if shown[i] {
            continue;
        }
        let l = line(p);
        if out.len() + l.len() + 100 > budget {
            break;
        }
        out.push_str(&format!("(rare) {l}"));
        shown[i] = true;
    }
    let hidden = shown.iter().filter(|s| !**s).count();
    if hidden > 0 {
        out.push_str(&format!(
            "… {hidden} more template(s) in evidence {}\n",
            item.id
        ));
    }
    // A few newest hits for context; the templates above carry the volume. Room is
    // kept for the attachment lines.
    let reserved: usize = item
        .attachments
        .iter()
        .map(|a| a.name.len() + a.description.len() + 40)
        .sum();
    out.push_str("newest hits:\n");
    for h in hits.iter().take(NEWEST_HITS) {
        let l = format!(
            "{} {} {} {}\n",
            text(h, "timestamp"),
            text(h, "level"),
            text(h, "service"),
            clip_value(&Value::String(text(h, "message")), 300)
                .as_str()
                .unwrap_or("")
        );
        if out.len() + l.len() + reserved + 60 > budget {
            break;
        }
        out.push_str(&l);
    }
    for a in &item.attachments {
        out.push_str(&format!(
            "attached for the reader: {} ({})\n",
            a.name, a.description
        ));
    }
}

/// Log lines (a table with a `message` column and more than a screenful of rows)
/// reach the model grouped by message pattern: count, first and last time,
/// levels, services and one example row per pattern. When not all patterns fit,
/// the last third of the budget goes to the rarest ones, so a rare causal line is
/// not crowded out by noise.
fn grouped_log_lines(table: &super::Table, budget: usize) -> Option<String> {
    const MIN_ROWS: usize = 20;
    let col = |names: &[&str]| {
        table
            .columns
            .iter()
            .position(|c| names.iter().any(|n| c.name.eq_ignore_ascii_case(n)))
    };
    let message = col(&["message", "msg"])?;
    if table.rows.len() < MIN_ROWS {
        return None;
    }
    let (time, level, service) = (
        col(&["timestamp", "@timestamp", "time"]),
        col(&["level", "severity"]),
        col(&["service", "service.name", "app"]),
    );
    let text = |row: &[Value], i: Option<usize>| {
        i.and_then(|i| row.get(i))
            .map(super::cell_text)
            .unwrap_or_default()
    };
    struct Group {
        count: usize,
        first: String,
        last: String,
        levels: Vec<String>,
        services: Vec<String>,
        example: usize,
    }
    let mut drain = super::patterns::Drain::new(super::patterns::DrainConfig {
        track_parameters: false,
        max_examples: 0,
        max_groups: 10_000,
        ..super::patterns::DrainConfig::default()
    });
    let mut by_id: std::collections::HashMap<usize, Group> = std::collections::HashMap::new();
    for (index, row) in table.rows.iter().enumerate() {
        let id = drain.add(&text(row, Some(message)));
        let (t, l, s) = (text(row, time), text(row, level), text(row, service));
        let group = by_id.entry(id).or_insert_with(|| Group {
            count: 0,
            first: t.clone(),
            last: t.clone(),
            levels: Vec::new(),
            services: Vec::new(),
            example: index,
        });
        group.count += 1;
        if !t.is_empty() && (group.first.is_empty() || t < group.first) {
            group.first = t.clone();
        }
        if t > group.last {
            group.last = t;
        }
        if !l.is_empty() && !group.levels.contains(&l) {
            group.levels.push(l);
        }
        if !s.is_empty() && !group.services.contains(&s) && group.services.len() < 5 {
            group.services.push(s);
        }
    }
    let mut merged: Vec<(String, Group)> = Vec::new();
    for (id, group) in by_id {
        let pattern = drain.template(drain.resolve(id));
        match merged.iter_mut().find(|(p, _)| *p == pattern) {
            Some((_, into)) => {
                into.count += group.count;
                if !group.first.is_empty() && (into.first.is_empty() || group.first < into.first) {
                    into.first = group.first;
                }
                if group.last > into.last {
                    into.last = group.last;
                }
                into.levels.extend(
                    group
                        .levels
                        .into_iter()
                        .filter(|l| !into.levels.contains(l))
                        .collect::<Vec<_>>(),
                );
                into.services.extend(
                    group
                        .services
                        .into_iter()
                        .filter(|s| !into.services.contains(s))
                        .collect::<Vec<_>>(),
                );
                into.example = into.example.min(group.example);
            }
            None => merged.push((pattern, group)),
        }
    }
    merged.sort_by(|a, b| {
        b.1.count
            .cmp(&a.1.count)
            .then(a.1.example.cmp(&b.1.example))
    });
    let line_of = |(pattern, g): &(String, Group)| {
        let example: Vec<Value> = table.rows[g.example]
            .iter()
            .map(|v| clip_value(v, 200))
            .collect();
        serde_json::json!([
            pattern,
            g.count,
            g.first,
            g.last,
            g.levels.join(","),
            g.services.join(","),
            example
        ])
        .to_string()
    };
    let mut out = format!(
        "{} line(s) grouped into {} message pattern(s); the whole lines are kept in the evidence\ncolumns: pattern:TEXT, count:INTEGER, first_seen:TEXT, last_seen:TEXT, levels:TEXT, services:TEXT, example:JSON\n",
        table.rows.len(),
        merged.len()
    );
    let lines: Vec<String> = merged.iter().map(line_of).collect();
    let total: usize = lines.iter().map(|l| l.len() + 1).sum();
    if out.len() + total <= budget {
        for line in &lines {
            out.push_str(line);
            out.push('\n');
        }
        return Some(out);
    }
    // Frequent first, then the rarest in the last third.
    let room = budget.saturating_sub(out.len() + 80);
    let frequent_room = room * 2 / 3;
    let mut used = 0;
    let mut shown = vec![false; lines.len()];
    for (i, line) in lines.iter().enumerate() {
        if used + line.len() + 1 > frequent_room {
            break;
        }
        used += line.len() + 1;
        shown[i] = true;
    }
    for (i, line) in lines.iter().enumerate().rev() {
        if shown[i] {
            break;
        }
        if used + line.len() + 1 > room {
            continue;
        }
        used += line.len() + 1;
        shown[i] = true;
    }
    let mut hidden = (0usize, 0usize);
    for (i, line) in lines.iter().enumerate() {
        if shown[i] {
            out.push_str(line);
            out.push('\n');
        } else {
            hidden.0 += 1;
            hidden.1 += merged[i].1.count;
        }
    }
    if hidden.0 > 0 {
        out.push_str(&format!(
            "… {} more pattern(s) covering {} line(s) not shown\n",
            hidden.0, hidden.1
        ));
    }
    Some(out)
}

fn clip_value(value: &Value, max: usize) -> Value {
    match value {
        Value::String(s) if s.chars().count() > max => {
            Value::String(format!("{}…", s.chars().take(max).collect::<String>()))
        }
        other => other.clone(),
    }
}

fn clip(text: String, budget: usize) -> String {
    if text.len() <= budget {
        return text;
    }
    let mut end = budget.saturating_sub(40);
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [truncated to {budget} chars]", &text[..end])
}

/// One line naming an item, for reports and progress.
pub fn describe(item: &EvidenceItem) -> String {
    let what = match &item.content {
        Some(Content::Table(t)) => format!("{} row(s)", t.rows.len()),
        Some(Content::Json(_)) => "json".into(),
        Some(Content::Text(t)) => format!("{} chars", t.len()),
        None => "failed".into(),
    };
    let statement: String = item.statement.chars().take(100).collect();
    let mut line = format!(
        "{} {}.{} ({what}): {statement}",
        item.id, item.source, item.tool
    );
    // Counts and hits of a partial answer are too low: the reader must see it beside
    // the evidence, not only the model.
    let partial: Vec<&str> = item
        .note
        .iter()
        .flat_map(|note| note.split("; "))
        .filter(|part| part.starts_with(PARTIAL_RESULTS))
        .collect();
    if !partial.is_empty() {
        let warning: String = partial.join("; ").chars().take(160).collect();
        line.push_str(&format!(" [{warning}]"));
    }
    line
}

/// How a source starts a note saying its answer is incomplete (failed shards, a
/// timed-out search); `describe` shows such notes to people.
pub const PARTIAL_RESULTS: &str = "PARTIAL RESULTS";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn descriptions_warn_of_partial_results() {
        let mut item = EvidenceItem {
            id: "E2".into(),
            source: "logs".into(),
            kind: "elasticsearch".into(),
            tool: "count".into(),
            arguments: json!({}),
            statement: "POST logs-*/_count".into(),
            at: chrono::Utc::now(),
            duration_ms: 12,
            note: Some("PARTIAL RESULTS: 2 of 5 shards failed (query_shard_exception); showing 500 of 9,000 hits".into()),
            content: Some(Content::Text("9000".into())),
            error: None,
            attachments: Vec::new(),
        };
        let line = describe(&item);
        assert!(
            line.ends_with("[PARTIAL RESULTS: 2 of 5 shards failed (query_shard_exception)]"),
            "{line}"
        );
        item.note = Some("showing 500 of 9,000 hits".into());
        assert!(!describe(&item).contains('['), "{}", describe(&item));
    }

    /// Hundreds of common templates and one rare one: the rare one is in the view.
    #[test]
    fn rare_log_templates_survive_compaction() {
        let mut patterns: Vec<Value> = (0..400)
            .map(|i| {
                json!({"template": format!("GET /endpoint{i}/<*> 200 in <*>ms with a fairly long tail of words"), "count": 100_000 - i, "first": "10:00", "last": "10:20", "levels": {"INFO": 1}, "example": format!("GET /endpoint{i}/1 200 in 5ms")})
            })
            .collect();
        patterns.push(json!({"template": "payment gateway rejected connection: TLS certificate expired", "count": 3, "first": "10:15", "last": "10:19", "levels": {"ERROR": 3}, "example": "payment gateway rejected connection: TLS certificate expired"}));
        let item = EvidenceItem {
            id: "E1".into(),
            source: "logs".into(),
            kind: "elasticsearch".into(),
            tool: "search_logs".into(),
            arguments: json!({}),
            statement: String::new(),
            at: Utc::now(),
            duration_ms: 0,
            content: Some(Content::Json(
                json!({"kind": "log_hits", "total": 40_000_000, "total_exact": false, "patterns": patterns, "hits": []}),
            )),
            error: None,
            note: None,
            attachments: Vec::new(),
        };
        let view = compact_for_model(&item, 8_000);
        assert!(view.len() <= 8_000);
        assert!(
            view.contains("(rare) 3× [ERROR:3] payment gateway"),
            "{view}"
        );
        assert!(view.contains("at least 40000000 hit(s)"), "{view}");
        assert!(view.contains("more template(s) in evidence E1"), "{view}");
    }
}

#[cfg(test)]
mod grouping_tests {
    use super::*;
    use crate::evidence::{Column, Table};
    use serde_json::json;

    fn item_with(rows: Vec<Vec<Value>>) -> EvidenceItem {
        let mut table = Table::new(
            ["timestamp", "level", "service", "message"]
                .iter()
                .map(|n| Column {
                    name: n.to_string(),
                    type_name: "TEXT".into(),
                })
                .collect(),
        );
        table.total_rows = Some(rows.len() as u64);
        table.rows = rows;
        EvidenceItem {
            id: "E1".into(),
            source: "logs".into(),
            kind: "logfile".into(),
            tool: "search_logs".into(),
            arguments: json!({}),
            statement: String::new(),
            at: chrono::Utc::now(),
            duration_ms: 0,
            content: Some(Content::Table(table)),
            error: None,
            note: None,
            attachments: Vec::new(),
        }
    }

    #[test]
    fn log_lines_are_grouped_and_a_rare_pattern_survives_the_budget() {
        let mut rows = Vec::new();
        for i in 0..3000 {
            // Many noisy patterns, each frequent.
            let message = format!(
                "request {i} served path /api/v{} in {}ms variant{}",
                i % 3,
                i % 97,
                i % 40
            );
            rows.push(vec![
                json!(format!("2026-01-15T10:{:02}:00Z", i % 60)),
                json!("INFO"),
                json!("gateway"),
                json!(message),
            ]);
        }
        rows.push(vec![
            json!("2026-01-15T10:14:00Z"),
            json!("ERROR"),
            json!("payment-service"),
            json!("HikariPool-1 - Connection is not available, request timed out after 30000ms."),
        ]);
        let item = item_with(rows);
        let compact = compact_for_model(&item, 4_000);
        assert!(compact.len() <= 4_000, "{}", compact.len());
        assert!(compact.contains("Connection is not available"), "{compact}");
        assert!(compact.contains("grouped into"), "{compact}");
        let raw = serde_json::to_string(&item.content)
            .unwrap_or_default()
            .len();
        assert!(raw / compact.len() >= 20, "ratio {}", raw / compact.len());
    }

    #[test]
    fn small_log_results_are_shown_as_rows() {
        let rows = (0..5)
            .map(|i| {
                vec![
                    json!("t"),
                    json!("INFO"),
                    json!("s"),
                    json!(format!("line {i}")),
                ]
            })
            .collect();
        let compact = compact_for_model(&item_with(rows), 4_000);
        assert!(!compact.contains("grouped into"), "{compact}");
        assert!(compact.contains("line 4"));
    }
}
