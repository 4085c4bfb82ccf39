//! The query DSL built from tool arguments, index pattern rules, and the parts of
//! responses that differ between versions.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::{glob, Fields};

/// Filters common to every tool.
#[derive(Debug, Clone)]
pub struct Filters {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub service: Option<String>,
    pub level: Option<String>,
    pub text: Option<String>,
    /// The grant's services: always a filter when set, whatever else is asked.
    pub granted_services: Option<Vec<String>>,
    /// One namespace asked for (within the grant when the grant has namespaces).
    pub namespace: Option<String>,
    /// The grant's namespaces: always a filter when set, like `granted_services`.
    pub granted_namespaces: Option<Vec<String>>,
}

/// Index patterns: lowercase names, `*`, `.`, `-`, `_`; no commas, exclusions
/// (`-logs`), cross-cluster (`:`), date math (`<…>`) or `_all`, so a pattern means
/// what it looks like.
pub fn check_index_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() || pattern.len() > 255 {
        return Err("must be 1 to 255 characters".into());
    }
    if pattern.starts_with(['-', '_', '+']) || pattern == "_all" {
        return Err("must not start with -, _ or +".into());
    }
    if pattern.starts_with('.') {
        return Err("hidden and system indices (starting with .) are not searchable".into());
    }
    if !pattern
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "*.-_".contains(c))
    {
        return Err("only lowercase letters, digits, *, ., - and _ are allowed".into());
    }
    Ok(())
}

/// Whether every index `narrow` can match is matched by `wide`. Index names hold no
/// `*`, so when `narrow`'s own text matches `wide` each of its `*` falls inside one
/// of `wide`'s, which then absorbs whatever it stands for.
pub fn within(narrow: &str, wide: &str) -> bool {
    glob(wide, narrow)
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The `bool` query of `filters`: filter context only (no scoring needed).
pub fn bool_query(fields: &Fields, filters: &Filters) -> Value {
    let mut clauses = vec![json!({"range": {fields.timestamp.as_str(): {
        "gte": ts(filters.start),
        "lt": ts(filters.end),
        "format": "strict_date_optional_time"
    }}})];
    if let Some(granted) = &filters.granted_services {
        clauses.push(json!({"terms": {fields.service.as_str(): granted}}));
    }
    if let Some(service) = &filters.service {
        clauses.push(json!({"term": {fields.service.as_str(): service}}));
    }
    if let Some(granted) = &filters.granted_namespaces {
        clauses.push(json!({"terms": {fields.namespace.as_str(): granted}}));
    }
    if let Some(namespace) = &filters.namespace {
        clauses.push(json!({"term": {fields.namespace.as_str(): namespace}}));
    }
    if let Some(level) = &filters.level {
        // Levels are stored as written (ERROR, error, Error); match the usual spellings.
        let mut spellings = vec![
            level.clone(),
            level.to_ascii_uppercase(),
            level.to_ascii_lowercase(),
        ];
        let mut chars = level.to_ascii_lowercase();
        if let Some(first) = chars.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        spellings.push(chars);
        spellings.sort();
        spellings.dedup();
        clauses.push(json!({"terms": {fields.level.as_str(): spellings}}));
    }
    if let Some(text) = &filters.text {
        clauses.push(json!({"simple_query_string": {
            "query": text,
            "fields": [fields.message],
            "default_operator": "and"
        }}));
    }
    json!({"bool": {"filter": clauses}})
}

/// What breaks ties between hits with the same timestamp, so that `search_after`
/// pages neither repeat nor skip them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiebreak {
    /// Lucene's document number: unique within a shard only, so hits of another shard
    /// with the same timestamp may be skipped at a page boundary. What there is
    /// without a point in time, and on OpenSearch.
    Doc,
    /// Shard and document number under an Elasticsearch point in time (7.12+):
    /// unique across shards and indices.
    ShardDoc,
}

impl Tiebreak {
    fn field(self) -> &'static str {
        match self {
            Tiebreak::Doc => "_doc",
            Tiebreak::ShardDoc => "_shard_doc",
        }
    }
}

/// A page of hits, newest first; `search_after` continues after the last page's
/// `sort` values.
pub fn search_body(
    fields: &Fields,
    filters: &Filters,
    size: u64,
    search_after: Option<&Value>,
    tiebreak: Tiebreak,
) -> Value {
    let mut body = json!({
        "size": size,
        "track_total_hits": 100_000,
        "query": bool_query(fields, filters),
        "sort": [
            {fields.timestamp.as_str(): {"order": "desc", "unmapped_type": "date"}},
            {tiebreak.field(): "asc"}
        ]
    });
    if let Some(after) = search_after {
        body["search_after"] = after.clone();
    }
    body
}

/// `hits.total`: a number before Elasticsearch 7, `{value, relation}` since (and in
/// OpenSearch). Returns (count, exact).
pub fn total_hits(response: &Value) -> Option<(u64, bool)> {
    match response.pointer("/hits/total")? {
        Value::Number(n) => n.as_u64().map(|n| (n, true)),
        Value::Object(o) => {
            let value = o.get("value")?.as_u64()?;
            let exact = o.get("relation").and_then(Value::as_str) != Some("gte");
            Some((value, exact))
        }
        _ => None,
    }
}

/// What a 2xx answer says about its own completeness: shards that failed and a
/// search that ran out of time both leave hits, counts and buckets short, yet the
/// status is 200. Pages of one search are merged into one of these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    pub failed: u64,
    pub total: u64,
    /// The `reason.type` of the first failure listed.
    pub reason: Option<String>,
    pub timed_out: bool,
}

impl Partial {
    /// Folds one response's `_shards` and `timed_out` into what is known so far.
    /// Pages of one search see the same shards, so the worst page counts.
    pub fn add(&mut self, response: &Value) {
        if response.get("timed_out").and_then(Value::as_bool) == Some(true) {
            self.timed_out = true;
        }
        let Some(shards) = response.get("_shards") else {
            return;
        };
        let failed = shards.get("failed").and_then(Value::as_u64).unwrap_or(0);
        if failed == 0 {
            return;
        }
        let total = shards.get("total").and_then(Value::as_u64).unwrap_or(0);
        if failed > self.failed {
            self.failed = failed;
            self.total = total.max(failed);
        }
        if self.reason.is_none() {
            self.reason = shards
                .pointer("/failures/0/reason/type")
                .and_then(Value::as_str)
                // The type comes from the server; keep it a short identifier.
                .map(|t| t.chars().take(100).collect());
        }
    }

    /// The note's words, or None when the answer was complete.
    pub fn note(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.failed > 0 {
            parts.push(format!(
                "{}: {} of {} shards failed ({})",
                crate::evidence::log::PARTIAL_RESULTS,
                self.failed,
                self.total,
                self.reason.as_deref().unwrap_or("no reason given")
            ));
        }
        if self.timed_out {
            parts.push(format!(
                "{}: search timed out",
                crate::evidence::log::PARTIAL_RESULTS
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_within_patterns() {
        assert!(within("logs-payment-*", "logs-*"));
        assert!(within("logs-payment-2024.05.01", "logs-*"));
        assert!(!within("logs-*", "logs-payment-*"));
        assert!(!within("errors-*", "logs-*"));
        assert!(!within("*", "logs-*"));
        assert!(within("logs-*-x", "logs-*"));
        assert!(!within("logs-*", "logs-*-x"));
    }

    #[test]
    fn odd_patterns_are_refused() {
        for p in [
            "",
            "_all",
            "-logs",
            ".security",
            "logs,secrets",
            "remote:logs",
            "<logs-{now/d}>",
            "Logs",
        ] {
            assert!(check_index_pattern(p).is_err(), "{p}");
        }
        assert!(check_index_pattern("logs-*").is_ok());
    }

    #[test]
    fn shard_failures_and_timeouts_are_partial() {
        let mut p = Partial::default();
        p.add(&json!({"timed_out": false, "_shards": {"total": 5, "successful": 5, "failed": 0}}));
        assert_eq!(p.note(), None);
        p.add(&json!({"timed_out": false, "_shards": {"total": 5, "successful": 3, "failed": 2, "failures": [
            {"shard": 1, "index": "logs-a", "reason": {"type": "query_shard_exception", "reason": "x"}},
            {"shard": 3, "index": "logs-a", "reason": {"type": "node_not_connected_exception", "reason": "y"}}
        ]}}));
        p.add(&json!({"timed_out": false, "_shards": {"total": 5, "successful": 4, "failed": 1, "failures": [
            {"shard": 1, "reason": {"type": "other_exception"}}
        ]}}));
        assert_eq!(
            p.note().as_deref(),
            Some("PARTIAL RESULTS: 2 of 5 shards failed (query_shard_exception)")
        );
        p.add(&json!({"timed_out": true}));
        assert_eq!(
            p.note().as_deref(),
            Some("PARTIAL RESULTS: 2 of 5 shards failed (query_shard_exception); PARTIAL RESULTS: search timed out")
        );
        let mut q = Partial::default();
        q.add(&json!({"count": 3, "_shards": {"total": 2, "failed": 1}}));
        assert_eq!(
            q.note().as_deref(),
            Some("PARTIAL RESULTS: 1 of 2 shards failed (no reason given)")
        );
    }

    #[test]
    fn totals_of_every_version() {
        assert_eq!(
            total_hits(&json!({"hits": {"total": 12}})),
            Some((12, true))
        );
        assert_eq!(
            total_hits(&json!({"hits": {"total": {"value": 10000, "relation": "gte"}}})),
            Some((10000, false))
        );
        assert_eq!(
            total_hits(&json!({"hits": {"total": {"value": 3, "relation": "eq"}}})),
            Some((3, true))
        );
        assert_eq!(total_hits(&json!({"hits": {}})), None);
    }
}
