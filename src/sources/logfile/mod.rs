//! Local log files: the air-gapped and demo stand-in for Elasticsearch.
//!
//! Files are read a line at a time on every call (no index), with every line capped
//! at 64 KiB and every call capped by `max_bytes_scanned` and the call's time limit;
//! hitting a cap is said in the output's note. A grant that lists services makes
//! every other line, and every line with no service, invisible to every tool.

mod files;
mod parse;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use regex::{Regex, RegexBuilder};
use serde_json::{json, Map, Value};

use super::{
    arg_opt_str, arg_opt_u64, reject_unknown_args, BuildContext, CallContext, Error, Health,
    Result, Source, ToolOutput, ToolSpec,
};
use crate::access::SourceGrant;
use crate::config::{LogfileConfig, SourceEntry, SourceSpec};
use crate::evidence::patterns::{Drain, DrainConfig};
use crate::evidence::{Column, Content, Table};

pub use files::{wildcard_match, MAX_LINE_BYTES};
pub use parse::{normalize_level, parse_line, parse_time, FieldNames, LineFormat, Record};

use files::{expand_all, open_lines, sample_lines, LogFile, PathPattern};

pub const TOOL_SEARCH_LOGS: &str = "search_logs";
pub const TOOL_COUNT_BY_PATTERN: &str = "count_by_pattern";
pub const TOOL_COUNT_OVER_TIME: &str = "count_over_time";
const TOOLS: [&str; 3] = [
    TOOL_SEARCH_LOGS,
    TOOL_COUNT_BY_PATTERN,
    TOOL_COUNT_OVER_TIME,
];

pub const DEFAULT_MAX_BYTES_SCANNED: u64 = 512 * 1024 * 1024;
pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 1000;
pub const DEFAULT_TOP: u64 = 20;
pub const MAX_TOP: u64 = 100;
/// Distinct templates tracked by one `count_by_pattern`; later new ones are pooled.
pub const MAX_PATTERNS: usize = 10_000;
/// Buckets the default `count_over_time` bucket size aims to stay within.
pub const TARGET_BUCKETS: i64 = 120;
/// Most buckets one `count_over_time` returns.
pub const MAX_BUCKETS: i64 = 1000;
/// Longest message or example cell returned, in characters.
pub const MAX_CELL_CHARS: usize = 4096;
/// Longest `regex` or `text` argument.
const MAX_PATTERN_ARG: usize = 2000;
/// Compiled size limit for `regex`, so a pathological pattern is refused, not run.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Bytes read from each end of a file by `describe`.
const SAMPLE_WINDOW: u64 = 64 * 1024;
/// How often (in lines) the scan looks at the clock.
const DEADLINE_CHECK_EVERY: u64 = 4096;

const BUCKETS: &[(&str, i64)] = &[
    ("1m", 60),
    ("5m", 300),
    ("15m", 900),
    ("1h", 3600),
    ("6h", 6 * 3600),
    ("1d", 24 * 3600),
];

/// Pooled key for templates beyond [`MAX_PATTERNS`].
const OTHER_PATTERNS: &str = "(other patterns, beyond the tracked limit)";

pub struct LogfileSource {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    patterns: Vec<PathPattern>,
    format: LineFormat,
    fields: FieldNames,
    max_bytes_scanned: u64,
}

/// The registry's factory for `logfile`.
pub fn build(entry: &SourceEntry, ctx: &BuildContext) -> Result<Arc<dyn Source>> {
    let SourceSpec::Logfile(config) = &entry.spec else {
        return Err(Error::Config(format!(
            "source `{}` is not a logfile source",
            entry.name
        )));
    };
    Ok(Arc::new(LogfileSource::new(&entry.name, config, ctx)?))
}

impl LogfileSource {
    pub fn new(name: &str, config: &LogfileConfig, ctx: &BuildContext) -> Result<Self> {
        let format = match config.format.as_deref() {
            None => LineFormat::Auto,
            Some(text) => LineFormat::parse(text).ok_or_else(|| {
                Error::Config(format!(
                    "logfile `{name}`: unknown format `{text}` (expected: {})",
                    LineFormat::NAMES.join(", ")
                ))
            })?,
        };
        if config.paths.is_empty() {
            return Err(Error::Config(format!("logfile `{name}` has no paths")));
        }
        Ok(LogfileSource {
            inner: Arc::new(Inner {
                name: name.to_string(),
                patterns: config
                    .paths
                    .iter()
                    .map(|p| PathPattern::new(p, &ctx.config_dir))
                    .collect(),
                format,
                fields: FieldNames::new(
                    config.timestamp_field.as_deref(),
                    config.message_field.as_deref(),
                    config.level_field.as_deref(),
                    config.service_field.as_deref(),
                ),
                max_bytes_scanned: config
                    .max_bytes_scanned
                    .unwrap_or(DEFAULT_MAX_BYTES_SCANNED)
                    .max(1),
            }),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        // File reads block; keep them off the async workers.
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| Error::Unavailable(format!("log scan did not finish: {e}")))?
    }
}

/// The filters every tool shares, checked against the grant.
#[derive(Debug, Clone)]
struct Query {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    levels: Option<Vec<String>>,
    service: Option<String>,
    text: Option<(String, Regex)>,
    regex: Option<(String, Regex)>,
    /// The grant's services; `None` means every line is visible.
    granted: Option<Vec<String>>,
}

fn bad(tool: &str, message: impl Into<String>) -> Error {
    Error::BadArguments {
        tool: tool.to_string(),
        message: message.into(),
    }
}

fn arg_time(tool: &str, args: &Value, key: &str) -> Result<Option<DateTime<Utc>>> {
    let Some(text) = arg_opt_str(tool, args, key)? else {
        return Ok(None);
    };
    parse_time(text).map(Some).ok_or_else(|| {
        bad(
            tool,
            format!("`{key}` must be an RFC 3339 time like 2026-01-15T10:00:00Z, got `{text}`"),
        )
    })
}

fn arg_levels(tool: &str, args: &Value) -> Result<Option<Vec<String>>> {
    let raw: Vec<&str> = match args.get("level") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.split(',').collect(),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => out.push(s.as_str()),
                    Value::Null
                    | Value::Bool(_)
                    | Value::Number(_)
                    | Value::Array(_)
                    | Value::Object(_) => {
                        return Err(bad(tool, "`level` must be a string or a list of strings"))
                    }
                }
            }
            out
        }
        Some(Value::Bool(_) | Value::Number(_) | Value::Object(_)) => {
            return Err(bad(tool, "`level` must be a string or a list of strings"))
        }
    };
    let levels: Vec<String> = raw.iter().filter_map(|l| normalize_level(l)).collect();
    if levels.is_empty() {
        return Err(bad(
            tool,
            "`level` names no level (use e.g. \"ERROR\" or [\"ERROR\", \"WARN\"])",
        ));
    }
    Ok(Some(levels))
}

fn bounded(tool: &str, args: &Value, key: &str, default: u64, max: u64) -> Result<(usize, bool)> {
    match arg_opt_u64(tool, args, key)? {
        None => Ok((default as usize, false)),
        Some(0) => Err(bad(tool, format!("`{key}` must be at least 1"))),
        Some(n) if n > max => Ok((max as usize, true)),
        Some(n) => Ok((n as usize, false)),
    }
}

impl Query {
    fn from_args(
        tool: &str,
        args: &Value,
        grant: &SourceGrant,
        allow_regex: bool,
    ) -> Result<Query> {
        let start = arg_time(tool, args, "start")?;
        let end = arg_time(tool, args, "end")?;
        if let (Some(s), Some(e)) = (start, end) {
            if e < s {
                return Err(bad(
                    tool,
                    format!("`end` ({}) is before `start` ({})", fmt_ts(e), fmt_ts(s)),
                ));
            }
        }
        let granted = grant.services.clone();
        let service = match arg_opt_str(tool, args, "service")? {
            None => None,
            Some(wanted) => {
                let wanted = wanted.trim();
                if let Some(list) = &granted {
                    if !list.iter().any(|g| g.eq_ignore_ascii_case(wanted)) {
                        return Err(Error::Refused(format!(
                            "refused: service `{wanted}` is outside your grant (granted: {})",
                            list.join(", ")
                        )));
                    }
                }
                Some(wanted.to_string())
            }
        };
        let text = match arg_opt_str(tool, args, "text")? {
            None => None,
            Some(text) if text.len() > MAX_PATTERN_ARG => {
                return Err(bad(
                    tool,
                    format!("`text` is longer than {MAX_PATTERN_ARG} bytes"),
                ))
            }
            Some(text) => {
                let compiled = RegexBuilder::new(&regex::escape(text))
                    .case_insensitive(true)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| bad(tool, format!("`text` cannot be searched: {e}")))?;
                Some((text.to_string(), compiled))
            }
        };
        let regex = if allow_regex {
            match arg_opt_str(tool, args, "regex")? {
                None => None,
                Some(pattern) if pattern.len() > MAX_PATTERN_ARG => {
                    return Err(bad(
                        tool,
                        format!("`regex` is longer than {MAX_PATTERN_ARG} bytes"),
                    ))
                }
                Some(pattern) => {
                    let compiled = RegexBuilder::new(pattern)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .dfa_size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| {
                            bad(
                                tool,
                                format!(
                                    "invalid `regex` (Rust regex syntax, no look-around or backreferences): {}",
                                    first_line(&e.to_string())
                                ),
                            )
                        })?;
                    Some((pattern.to_string(), compiled))
                }
            }
        } else {
            None
        };
        Ok(Query {
            start,
            end,
            levels: arg_levels(tool, args)?,
            service,
            text,
            regex,
            granted,
        })
    }

    /// The grant first: a line outside it is never looked at further.
    fn visible(&self, record: &Record) -> bool {
        match (&self.granted, &record.service) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(list), Some(service)) => list.iter().any(|g| g.eq_ignore_ascii_case(service)),
        }
    }

    fn matches(&self, record: &Record, raw: &str) -> bool {
        if !self.visible(record) {
            return false;
        }
        if self.start.is_some() || self.end.is_some() {
            // A line without a timestamp cannot be placed in a range, so a range
            // excludes it.
            let Some(ts) = record.ts else { return false };
            if self.start.is_some_and(|s| ts < s) || self.end.is_some_and(|e| ts >= e) {
                return false;
            }
        }
        if let Some(wanted) = &self.service {
            if !record
                .service
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(wanted))
            {
                return false;
            }
        }
        if let Some(levels) = &self.levels {
            if !record
                .level
                .as_ref()
                .is_some_and(|l| levels.iter().any(|w| w == l))
            {
                return false;
            }
        }
        if let Some((_, text)) = &self.text {
            if !text.is_match(raw) {
                return false;
            }
        }
        if let Some((_, regex)) = &self.regex {
            if !regex.is_match(raw) {
                return false;
            }
        }
        true
    }

    /// What ran, for the audit log and the evidence.
    fn statement(&self, tool: &str, extra: &[(&str, Value)], files: &[LogFile]) -> String {
        let mut q = Map::new();
        if let Some(s) = self.start {
            q.insert("start".into(), json!(fmt_ts(s)));
        }
        if let Some(e) = self.end {
            q.insert("end".into(), json!(fmt_ts(e)));
        }
        if let Some(levels) = &self.levels {
            q.insert("level".into(), json!(levels));
        }
        if let Some(service) = &self.service {
            q.insert("service".into(), json!(service));
        }
        if let Some((text, _)) = &self.text {
            q.insert("text".into(), json!(text));
        }
        if let Some((regex, _)) = &self.regex {
            q.insert("regex".into(), json!(regex));
        }
        for (key, value) in extra {
            q.insert((*key).into(), value.clone());
        }
        if let Some(granted) = &self.granted {
            q.insert("visible_services".into(), json!(granted));
        }
        format!("{tool} {} over {} file(s)", Value::Object(q), files.len())
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn fmt_ts(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn clip(text: &str, max_chars: usize) -> (String, bool) {
    match text.char_indices().nth(max_chars) {
        None => (text.to_string(), false),
        Some((at, _)) => (format!("{}…", &text[..at]), true),
    }
}

fn human_size(bytes: u64) -> String {
    if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

/// Why a scan ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    ByteCap,
    Deadline,
}

#[derive(Debug, Default)]
struct ScanStats {
    files: Vec<LogFile>,
    files_capped: bool,
    bytes: u64,
    lines: u64,
    cut_lines: u64,
    stop: Option<Stop>,
    unreadable: Vec<String>,
    matched: u64,
}

/// Where a line sits, for a stable "newest last" order across files.
type LineKey = (Option<(i64, u32)>, usize, u64);

impl Inner {
    /// Streams every line of every file through `visit` until the end, the byte cap
    /// or the deadline.
    fn scan(
        &self,
        query: &Query,
        deadline: Instant,
        mut visit: impl FnMut(Record, &str, LineKey),
    ) -> ScanStats {
        let (files, files_capped) = expand_all(&self.patterns);
        let mut stats = ScanStats {
            files_capped,
            ..ScanStats::default()
        };
        'files: for (index, file) in files.iter().enumerate() {
            let mut reader = match open_lines(&file.path) {
                Ok(reader) => reader,
                Err(err) => {
                    stats
                        .unreadable
                        .push(format!("{}: {err}", self.display(file)));
                    continue;
                }
            };
            let mut line_no = 0u64;
            loop {
                if stats.bytes >= self.max_bytes_scanned {
                    stats.stop = Some(Stop::ByteCap);
                    break 'files;
                }
                if stats.lines % DEADLINE_CHECK_EVERY == 0 && Instant::now() >= deadline {
                    stats.stop = Some(Stop::Deadline);
                    break 'files;
                }
                let line = match reader.next_line() {
                    Ok(Some(line)) => line,
                    Ok(None) => break,
                    Err(err) => {
                        stats
                            .unreadable
                            .push(format!("{}: {err}", self.display(file)));
                        break;
                    }
                };
                line_no += 1;
                stats.lines += 1;
                stats.bytes += line.consumed;
                if line.cut {
                    stats.cut_lines += 1;
                }
                let raw = line.text;
                if raw.trim().is_empty() {
                    continue;
                }
                let record = parse_line(&raw, self.format, &self.fields);
                if query.matches(&record, &raw) {
                    stats.matched += 1;
                    let key = (
                        record
                            .ts
                            .map(|t| (t.timestamp(), t.timestamp_subsec_nanos())),
                        index,
                        line_no,
                    );
                    visit(record, &raw, key);
                }
            }
        }
        stats.files = files;
        stats
    }

    /// A path as the reader knows it: relative to the configuration when inside it.
    fn display(&self, file: &LogFile) -> String {
        for pattern in &self.patterns {
            if let Ok(rest) = file.path.strip_prefix(&pattern.dir) {
                let configured_dir = std::path::Path::new(&pattern.configured)
                    .parent()
                    .map(|p| p.to_path_buf())
                    .unwrap_or_default();
                return configured_dir.join(rest).display().to_string();
            }
        }
        file.path.display().to_string()
    }

    /// The note every tool appends: caps hit, unreadable files, cut lines.
    fn scan_notes(&self, stats: &ScanStats, timeout: Duration, notes: &mut Vec<String>) {
        let total: u64 = stats.files.iter().map(|f| f.size).sum();
        match stats.stop {
            Some(Stop::ByteCap) => notes.push(format!(
                "stopped after scanning {} of {} (max_bytes_scanned); lines after that point are not included",
                human_size(stats.bytes),
                human_size(total)
            )),
            Some(Stop::Deadline) => notes.push(format!(
                "stopped at the call's time limit ({}s) after scanning {} of {}; results are partial",
                timeout.as_secs(),
                human_size(stats.bytes),
                human_size(total)
            )),
            None => {}
        }
        if stats.files.is_empty() {
            notes.push(format!(
                "no readable file matches {}",
                self.patterns
                    .iter()
                    .map(|p| p.configured.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if stats.files_capped {
            notes.push(format!(
                "only the first {} files were read",
                files::MAX_FILES
            ));
        }
        if stats.cut_lines > 0 {
            notes.push(format!(
                "{} line(s) longer than {} KiB were cut",
                stats.cut_lines,
                MAX_LINE_BYTES / 1024
            ));
        }
        if !stats.unreadable.is_empty() {
            notes.push(format!("could not read: {}", stats.unreadable.join("; ")));
        }
    }

    fn search(
        &self,
        query: &Query,
        limit: usize,
        limit_capped: bool,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<ToolOutput> {
        struct Kept {
            key: LineKey,
            row: Vec<Value>,
            clipped: bool,
        }
        impl PartialEq for Kept {
            fn eq(&self, other: &Self) -> bool {
                self.key == other.key
            }
        }
        impl Eq for Kept {}
        impl PartialOrd for Kept {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Kept {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.key.cmp(&other.key)
            }
        }
        // A min-heap of the newest `limit` matches: the oldest is dropped first.
        let mut heap: BinaryHeap<Reverse<Kept>> = BinaryHeap::with_capacity(limit + 1);
        let stats = self.scan(query, deadline, |record, _raw, key| {
            if heap.len() >= limit && heap.peek().is_some_and(|Reverse(oldest)| key < oldest.key) {
                return;
            }
            let (message, clipped) = clip(&record.message, MAX_CELL_CHARS);
            let fields = match record.json {
                Some(map) if !map.is_empty() => {
                    let value = Value::Object(map);
                    let text = value.to_string();
                    if text.chars().count() > MAX_CELL_CHARS {
                        Value::String(clip(&text, MAX_CELL_CHARS).0)
                    } else {
                        value
                    }
                }
                Some(_) | None => Value::Null,
            };
            let row = vec![
                record.ts.map(|t| json!(fmt_ts(t))).unwrap_or(Value::Null),
                record.level.map(Value::String).unwrap_or(Value::Null),
                record.service.map(Value::String).unwrap_or(Value::Null),
                Value::String(message),
                fields,
            ];
            heap.push(Reverse(Kept { key, row, clipped }));
            if heap.len() > limit {
                heap.pop();
            }
        });
        let mut kept: Vec<Kept> = heap.into_iter().map(|Reverse(k)| k).collect();
        kept.sort();
        let clipped = kept.iter().filter(|k| k.clipped).count();
        let mut table = Table::new(vec![
            column("timestamp", "TIMESTAMP"),
            column("level", "TEXT"),
            column("service", "TEXT"),
            column("message", "TEXT"),
            column("fields", "JSON"),
        ]);
        table.rows = kept.into_iter().map(|k| k.row).collect();
        table.total_rows = Some(stats.matched);
        table.truncated = stats.matched > table.rows.len() as u64;
        if table.truncated {
            table.truncated_by = Some(format!("limit {limit}, newest kept"));
        }
        let mut notes = Vec::new();
        if table.truncated {
            notes.push(format!(
                "showing the newest {} of {} matching lines; narrow `start`/`end` or the filters to see others",
                table.rows.len(),
                stats.matched
            ));
        }
        if limit_capped {
            notes.push(format!("`limit` is capped at {MAX_LIMIT}"));
        }
        if clipped > 0 {
            notes.push(format!(
                "{clipped} message(s) cut at {MAX_CELL_CHARS} characters"
            ));
        }
        self.scan_notes(&stats, timeout, &mut notes);
        Ok(ToolOutput {
            statement: query.statement(TOOL_SEARCH_LOGS, &[("limit", json!(limit))], &stats.files),
            content: Content::Table(table),
            note: join_notes(notes),
            attachments: Vec::new(),
        })
    }

    fn patterns(
        &self,
        query: &Query,
        top: usize,
        top_capped: bool,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<ToolOutput> {
        struct Group {
            count: u64,
            first: Option<DateTime<Utc>>,
            last: Option<DateTime<Utc>>,
            levels: BTreeMap<String, u64>,
            example: String,
            order: u64,
        }
        // Lines are grouped by a Drain parse tree (evidence::patterns): templates
        // learn which tokens vary, so ids, counts and hosts become <*>.
        let mut drain = Drain::new(DrainConfig {
            max_groups: MAX_PATTERNS,
            track_parameters: false,
            max_examples: 0,
            ..DrainConfig::default()
        });
        let mut by_id: HashMap<usize, Group> = HashMap::new();
        let mut seen = 0u64;
        let stats = self.scan(query, deadline, |record, raw, _key| {
            let id = drain.add(&record.message);
            seen += 1;
            let group = by_id.entry(id).or_insert_with(|| Group {
                count: 0,
                first: None,
                last: None,
                levels: BTreeMap::new(),
                example: clip(raw, MAX_CELL_CHARS).0,
                order: seen,
            });
            group.count += 1;
            if let Some(ts) = record.ts {
                group.first = Some(group.first.map_or(ts, |f| f.min(ts)));
                group.last = Some(group.last.map_or(ts, |l| l.max(ts)));
            }
            let level = record.level.unwrap_or_else(|| "-".to_string());
            *group.levels.entry(level).or_default() += 1;
        });
        // Groups whose templates became equal were merged by the parser; fold ours too.
        let pooled = drain.groups().iter().any(|g| g.overflow);
        let mut groups: HashMap<String, Group> = HashMap::new();
        for (id, group) in by_id {
            let key = drain.template(drain.resolve(id));
            match groups.get_mut(&key) {
                Some(into) => {
                    into.count += group.count;
                    into.first = match (into.first, group.first) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    into.last = match (into.last, group.last) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                    for (level, n) in group.levels {
                        *into.levels.entry(level).or_default() += n;
                    }
                    if group.order < into.order {
                        into.order = group.order;
                        into.example = group.example;
                    }
                }
                None => {
                    groups.insert(key, group);
                }
            }
        }
        let distinct = groups.len();
        let mut sorted: Vec<(String, Group)> = groups.into_iter().collect();
        // Ties broken by first appearance, so output is stable across runs.
        sorted.sort_by(|(_, a), (_, b)| b.count.cmp(&a.count).then(a.order.cmp(&b.order)));
        let mut table = Table::new(vec![
            column("pattern", "TEXT"),
            column("count", "INTEGER"),
            column("first_seen", "TIMESTAMP"),
            column("last_seen", "TIMESTAMP"),
            column("levels", "TEXT"),
            column("example", "TEXT"),
        ]);
        for (pattern, group) in sorted.into_iter().take(top) {
            let mut levels: Vec<(String, u64)> = group.levels.into_iter().collect();
            levels.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            table.rows.push(vec![
                json!(pattern),
                json!(group.count),
                group.first.map(|t| json!(fmt_ts(t))).unwrap_or(Value::Null),
                group.last.map(|t| json!(fmt_ts(t))).unwrap_or(Value::Null),
                json!(levels
                    .into_iter()
                    .map(|(l, _)| l)
                    .collect::<Vec<_>>()
                    .join(", ")),
                json!(group.example),
            ]);
        }
        table.total_rows = Some(distinct as u64);
        table.truncated = distinct > table.rows.len();
        if table.truncated {
            table.truncated_by = Some(format!("top {top}"));
        }
        let mut notes = vec![format!(
            "{} matching line(s) in {distinct} pattern(s){}",
            stats.matched,
            if table.truncated {
                format!(", showing the top {}", table.rows.len())
            } else {
                String::new()
            }
        )];
        if top_capped {
            notes.push(format!("`top` is capped at {MAX_TOP}"));
        }
        if pooled {
            notes.push(format!(
                "more than {MAX_PATTERNS} distinct patterns: the rest are counted together as \"{OTHER_PATTERNS}\""
            ));
        }
        self.scan_notes(&stats, timeout, &mut notes);
        Ok(ToolOutput {
            statement: query.statement(TOOL_COUNT_BY_PATTERN, &[("top", json!(top))], &stats.files),
            content: Content::Table(table),
            note: join_notes(notes),
            attachments: Vec::new(),
        })
    }

    fn over_time(
        &self,
        tool: &str,
        query: &Query,
        bucket: Option<(&'static str, i64)>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<ToolOutput> {
        // `end` is exclusive: the last bucket is the one holding the instant before it.
        let range_hi = |end: DateTime<Utc>| end - TimeDelta::nanoseconds(1);
        if let (Some((label, secs)), Some(start), Some(end)) = (bucket, query.start, query.end) {
            check_bucket_count(
                tool,
                label,
                secs,
                start.timestamp(),
                range_hi(end).timestamp(),
            )?;
        }
        let mut minutes: BTreeMap<i64, u64> = BTreeMap::new();
        let mut untimed = 0u64;
        let stats = self.scan(query, deadline, |record, _raw, _key| match record.ts {
            Some(ts) => *minutes.entry(ts.timestamp().div_euclid(60)).or_default() += 1,
            None => untimed += 1,
        });
        let first = minutes.keys().next().map(|m| m * 60);
        let last = minutes.keys().next_back().map(|m| m * 60);
        let lo = query.start.map(|s| s.timestamp()).or(first);
        let hi = query.end.map(|e| range_hi(e).timestamp()).or(last);
        let mut table = Table::new(vec![
            column("bucket_start", "TIMESTAMP"),
            column("count", "INTEGER"),
        ]);
        let mut notes = Vec::new();
        let mut chosen = None;
        if let (Some(lo), Some(hi)) = (lo, hi) {
            if lo <= hi {
                let (label, secs) = match bucket {
                    Some(b) => b,
                    None => default_bucket(lo, hi),
                };
                check_bucket_count(tool, label, secs, lo, hi)?;
                chosen = Some(label);
                let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
                for (minute, n) in &minutes {
                    *counts
                        .entry((minute * 60).div_euclid(secs) * secs)
                        .or_default() += n;
                }
                let mut at = lo.div_euclid(secs) * secs;
                let end = hi.div_euclid(secs) * secs;
                while at <= end {
                    let start = DateTime::from_timestamp(at, 0)
                        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
                    table.rows.push(vec![
                        start.map(Value::String).unwrap_or(Value::Null),
                        json!(counts.get(&at).copied().unwrap_or(0)),
                    ]);
                    at += secs;
                }
            }
        }
        table.total_rows = Some(table.rows.len() as u64);
        notes.push(format!(
            "{} matching line(s){}",
            stats.matched,
            chosen.map(|b| format!(", bucket {b}")).unwrap_or_default()
        ));
        if untimed > 0 {
            notes.push(format!(
                "{untimed} matching line(s) have no timestamp and are not counted"
            ));
        }
        self.scan_notes(&stats, timeout, &mut notes);
        Ok(ToolOutput {
            statement: query.statement(
                TOOL_COUNT_OVER_TIME,
                &[("bucket", json!(chosen.or(bucket.map(|b| b.0))))],
                &stats.files,
            ),
            content: Content::Table(table),
            note: join_notes(notes),
            attachments: Vec::new(),
        })
    }

    /// Files, time span, services and levels, from the first and last 64 KiB of each
    /// file, limited to what the grant sees.
    fn describe(&self, granted: Option<Vec<String>>) -> String {
        let query = Query {
            start: None,
            end: None,
            levels: None,
            service: None,
            text: None,
            regex: None,
            granted,
        };
        let (files, capped) = expand_all(&self.patterns);
        let total: u64 = files.iter().map(|f| f.size).sum();
        let mut earliest: Option<DateTime<Utc>> = None;
        let mut latest: Option<DateTime<Utc>> = None;
        let mut services: BTreeMap<String, ()> = BTreeMap::new();
        let mut levels: BTreeMap<String, ()> = BTreeMap::new();
        for file in &files {
            let Ok((head, tail)) = sample_lines(&file.path, SAMPLE_WINDOW) else {
                continue;
            };
            for (i, line) in head.iter().chain(tail.iter()).enumerate() {
                let record = parse_line(line, self.format, &self.fields);
                if !query.visible(&record) {
                    continue;
                }
                if let Some(ts) = record.ts {
                    if i < head.len() {
                        earliest = Some(earliest.map_or(ts, |e| e.min(ts)));
                    }
                    latest = Some(latest.map_or(ts, |l| l.max(ts)));
                }
                if let Some(s) = record.service {
                    services.insert(s, ());
                }
                if let Some(l) = record.level {
                    levels.insert(l, ());
                }
            }
        }
        let mut listed: Vec<String> = files
            .iter()
            .take(20)
            .map(|f| format!("{} ({})", self.display(f), human_size(f.size)))
            .collect();
        if files.len() > 20 || capped {
            listed.push(format!("and {} more", files.len().saturating_sub(20)));
        }
        let join = |m: &BTreeMap<String, ()>| {
            if m.is_empty() {
                "none seen".to_string()
            } else {
                m.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        };
        let mut out = vec![format!(
            "local log files, {} file(s), {}: {}",
            files.len(),
            human_size(total),
            if listed.is_empty() {
                "none found".to_string()
            } else {
                listed.join(", ")
            }
        )];
        out.push(format!(
            "time span (sampled from each file's start and end): {}",
            match (earliest, latest) {
                (Some(e), Some(l)) => format!("{} to {}", fmt_ts(e), fmt_ts(l)),
                (Some(_), None) | (None, Some(_)) | (None, None) => "unknown".to_string(),
            }
        ));
        out.push(format!("services seen (sampled): {}", join(&services)));
        out.push(format!("levels seen (sampled): {}", join(&levels)));
        if let Some(granted) = &query.granted {
            out.push(format!(
                "your grant limits this source to services: {}",
                granted.join(", ")
            ));
        }
        out.join("\n")
    }
}

fn default_bucket(lo: i64, hi: i64) -> (&'static str, i64) {
    for (label, secs) in BUCKETS {
        if (hi.div_euclid(*secs) - lo.div_euclid(*secs)) < TARGET_BUCKETS {
            return (label, *secs);
        }
    }
    ("1d", 24 * 3600)
}

fn check_bucket_count(tool: &str, label: &str, secs: i64, lo: i64, hi: i64) -> Result<()> {
    let n = hi.div_euclid(secs) - lo.div_euclid(secs) + 1;
    if n > MAX_BUCKETS {
        return Err(bad(
            tool,
            format!(
                "bucket {label} over this range gives {n} buckets (at most {MAX_BUCKETS}); use a larger bucket or a narrower start/end"
            ),
        ));
    }
    Ok(())
}

fn column(name: &str, type_name: &str) -> Column {
    Column {
        name: name.to_string(),
        type_name: type_name.to_string(),
    }
}

fn join_notes(notes: Vec<String>) -> Option<String> {
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// The argument properties every tool shares.
fn filter_properties(grant: &SourceGrant) -> Map<String, Value> {
    let mut service = json!({
        "type": "string",
        "description": "Only lines of this service (exact name, case-insensitive)."
    });
    if let Some(granted) = &grant.services {
        service["enum"] = json!(granted);
    }
    let mut props = Map::new();
    props.insert(
        "start".into(),
        json!({"type": "string", "description": "Inclusive start, RFC 3339 (e.g. 2026-01-15T10:00:00Z). Lines without a timestamp are excluded when start or end is given."}),
    );
    props.insert(
        "end".into(),
        json!({"type": "string", "description": "Exclusive end, RFC 3339. Must not be before start."}),
    );
    props.insert(
        "level".into(),
        json!({
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}}
            ],
            "description": "Level or levels to keep: ERROR, WARN, INFO, DEBUG, FATAL, TRACE (any case; WARNING means WARN)."
        }),
    );
    props.insert("service".into(), service);
    props.insert(
        "text".into(),
        json!({"type": "string", "description": "Case-insensitive substring the raw line must contain (for JSON lines the raw JSON, so ids in any field match)."}),
    );
    props
}

fn tool_schema(mut props: Map<String, Value>, extra: &[(&str, Value)]) -> Value {
    for (key, value) in extra {
        props.insert((*key).to_string(), value.clone());
    }
    json!({
        "type": "object",
        "properties": Value::Object(props),
        "additionalProperties": false
    })
}

const FILTER_KEYS: [&str; 5] = ["start", "end", "level", "service", "text"];

#[async_trait]
impl Source for LogfileSource {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> &'static str {
        "logfile"
    }

    fn tools(&self, grant: &SourceGrant) -> Vec<ToolSpec> {
        let name = &self.inner.name;
        let scope = match &grant.services {
            Some(list) => format!(
                " You can only see lines of the services {}; lines of other services or without a service are invisible to you.",
                list.join(", ")
            ),
            None => String::new(),
        };
        let props = filter_properties(grant);
        vec![
            ToolSpec {
                name: TOOL_SEARCH_LOGS.into(),
                description: format!(
                    "Search the log lines of `{name}` (local log files, JSON or plain text). Returns matching lines as rows (timestamp, level, service, message, other fields), oldest first; when more match than `limit`, the newest are kept and the total is reported. Filter by time range, level, service, a case-insensitive substring and/or a regex. Start narrow (a level and a time window) and use count_by_pattern first when you do not know what to look for.{scope}"
                ),
                input_schema: tool_schema(
                    props.clone(),
                    &[
                        ("regex", json!({"type": "string", "description": "Rust regex the raw line must match (case-sensitive unless it starts with (?i); no look-around or backreferences)."})),
                        ("limit", json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": format!("Lines to return (default {DEFAULT_LIMIT}, at most {MAX_LIMIT}).")})),
                    ],
                ),
            },
            ToolSpec {
                name: TOOL_COUNT_BY_PATTERN.into(),
                description: format!(
                    "Group the matching log lines of `{name}` by message template (numbers, ids, durations, IPs, quoted strings and key=value values masked as <*>) and count them, most frequent first, with first/last seen time, levels and one real example line. The fastest way to see which errors dominate a time window: e.g. level ERROR after a deploy time.{scope}"
                ),
                input_schema: tool_schema(
                    props.clone(),
                    &[("top", json!({"type": "integer", "minimum": 1, "maximum": MAX_TOP, "description": format!("Patterns to return (default {DEFAULT_TOP}, at most {MAX_TOP}).")}))],
                ),
            },
            ToolSpec {
                name: TOOL_COUNT_OVER_TIME.into(),
                description: format!(
                    "Count the matching log lines of `{name}` per time bucket (zero-filled), to see when something started or stopped, e.g. ERROR lines of one service per minute around an incident.{scope}"
                ),
                input_schema: tool_schema(
                    props,
                    &[(
                        "bucket",
                        json!({"type": "string", "enum": BUCKETS.iter().map(|b| b.0).collect::<Vec<_>>(), "description": format!("Bucket size; by default the smallest giving at most {TARGET_BUCKETS} buckets.")}),
                    )],
                ),
            },
        ]
    }

    async fn health(&self) -> Health {
        let started = Instant::now();
        let result = self
            .run(|inner| {
                let mut problems = Vec::new();
                let mut all = Vec::new();
                for pattern in &inner.patterns {
                    let found = pattern.expand();
                    if found.is_empty() {
                        problems.push(format!("`{}` matches no readable file", pattern.configured));
                    }
                    all.extend(found);
                }
                all.sort();
                all.dedup_by(|a, b| a.path == b.path);
                let total: u64 = all.iter().map(|f| f.size).sum();
                let summary = format!("{} file(s), {}", all.len(), human_size(total));
                Ok(if problems.is_empty() {
                    (true, summary)
                } else {
                    (false, format!("{}; {summary}", problems.join("; ")))
                })
            })
            .await;
        let latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok((ok, detail)) => Health {
                ok,
                detail,
                latency_ms,
            },
            Err(err) => Health {
                ok: false,
                detail: err.to_string(),
                latency_ms,
            },
        }
    }

    async fn call(
        &self,
        tool: &str,
        args: &Value,
        grant: &SourceGrant,
        ctx: &CallContext,
    ) -> Result<ToolOutput> {
        let timeout = ctx.timeout;
        let deadline = Instant::now() + timeout;
        match tool {
            TOOL_SEARCH_LOGS => {
                let mut known = FILTER_KEYS.to_vec();
                known.extend(["regex", "limit"]);
                reject_unknown_args(tool, args, &known)?;
                let query = Query::from_args(tool, args, grant, true)?;
                let (limit, capped) = bounded(tool, args, "limit", DEFAULT_LIMIT, MAX_LIMIT)?;
                self.run(move |inner| inner.search(&query, limit, capped, deadline, timeout))
                    .await
            }
            TOOL_COUNT_BY_PATTERN => {
                let mut known = FILTER_KEYS.to_vec();
                known.push("top");
                reject_unknown_args(tool, args, &known)?;
                let query = Query::from_args(tool, args, grant, false)?;
                let (top, capped) = bounded(tool, args, "top", DEFAULT_TOP, MAX_TOP)?;
                self.run(move |inner| inner.patterns(&query, top, capped, deadline, timeout))
                    .await
            }
            TOOL_COUNT_OVER_TIME => {
                let mut known = FILTER_KEYS.to_vec();
                known.push("bucket");
                reject_unknown_args(tool, args, &known)?;
                let query = Query::from_args(tool, args, grant, false)?;
                let bucket = match arg_opt_str(tool, args, "bucket")? {
                    None => None,
                    Some(label) => Some(
                        BUCKETS
                            .iter()
                            .find(|(l, _)| l.eq_ignore_ascii_case(label.trim()))
                            .copied()
                            .ok_or_else(|| {
                                bad(
                                    tool,
                                    format!(
                                        "unknown bucket `{label}` (expected one of: {})",
                                        BUCKETS.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
                                    ),
                                )
                            })?,
                    ),
                };
                self.run(move |inner| {
                    inner.over_time(TOOL_COUNT_OVER_TIME, &query, bucket, deadline, timeout)
                })
                .await
            }
            other => Err(Error::UnknownTool {
                tool: other.to_string(),
                offered: TOOLS.join(", "),
            }),
        }
    }

    async fn describe(&self, grant: &SourceGrant, _ctx: &CallContext) -> Result<String> {
        let granted = grant.services.clone();
        self.run(move |inner| Ok(inner.describe(granted))).await
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
