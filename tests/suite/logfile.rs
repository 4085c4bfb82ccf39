//! Local log files: filters, grants by service, bad input, and the demo incident.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use investigator::config;
use investigator::engine::CallError;
use investigator::evidence::patterns::{Drain, DrainConfig};
use investigator::evidence::{cell_text, Content, Table};
use investigator::sources::logfile::MAX_CELL_CHARS;
use investigator::sources::{BuildContext, CallContext, Error as SourceError, ToolOutput};
use serde_json::{json, Value};

use super::common::{parse_config, Harness};

fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo")
}

async fn demo() -> Harness {
    let env: HashMap<String, String> = HashMap::new();
    let config = match config::load(&demo_dir(), &env) {
        Ok(config) => config,
        Err(err) => panic!("demo configuration rejected: {err}"),
    };
    let ctx = BuildContext {
        config_dir: demo_dir(),
        ..BuildContext::default()
    };
    Harness::with_context(config, ctx).await
}

/// A harness over `files` written into a temp dir, with `sources` and `squads`
/// YAML; relative paths resolve against the temp dir.
async fn fixture(
    files: &[(&str, Vec<u8>)],
    sources: &str,
    squads: &str,
) -> (tempfile::TempDir, Harness) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).expect("write log");
    }
    let ctx = BuildContext {
        config_dir: dir.path().to_path_buf(),
        ..BuildContext::default()
    };
    let h = Harness::with_context(parse_config(sources, squads), ctx).await;
    (dir, h)
}

async fn call(
    h: &Harness,
    user: &str,
    source: &str,
    tool: &str,
    args: Value,
) -> Result<ToolOutput, CallError> {
    h.gate
        .call(
            &h.access(user),
            source,
            tool,
            &args,
            &CallContext::default(),
        )
        .await
        .result
}

async fn table(
    h: &Harness,
    user: &str,
    source: &str,
    tool: &str,
    args: Value,
) -> (Table, Option<String>) {
    match call(h, user, source, tool, args.clone()).await {
        Ok(ToolOutput {
            content: Content::Table(t),
            note,
            ..
        }) => (t, note),
        Ok(other) => panic!("{tool} {args}: expected a table, got {:?}", other.content),
        Err(err) => panic!("{tool} {args}: {err}"),
    }
}

fn col(t: &Table, name: &str) -> Vec<String> {
    let i = t
        .columns
        .iter()
        .position(|c| c.name == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    t.rows.iter().map(|r| cell_text(&r[i])).collect()
}

fn is_bad_args(result: &Result<ToolOutput, CallError>) -> bool {
    matches!(
        result,
        Err(CallError::Source(SourceError::BadArguments { .. }))
    )
}

const SMALL_NDJSON: &str = r#"{"@timestamp":"2026-01-15T10:00:00Z","level":"info","service":"api","message":"GET /a 200 in 12ms","trace_id":"t1"}
{"@timestamp":"2026-01-15T10:01:00Z","level":"error","service":"api","message":"upstream db returned 503","trace_id":"t2"}
{"@timestamp":"2026-01-15T10:02:00Z","level":"warning","service":"db","message":"slow query took 1200ms"}
{"@timestamp":"2026-01-15T10:03:00Z","level":"error","service":"db","message":"deadlock detected on table orders"}
{"level":"info","service":"api","message":"no timestamp here"}
{"@timestamp":"2026-01-15T10:05:00Z","level":"info","message":"a line with no service"}
"#;

const SMALL_TEXT: &str = "2026-01-15T10:00:30.000Z INFO [api] GET /b 200 in 9ms\n\
2026-01-15 10:04:00 ERROR [api] upstream db returned 504\n\
[2026-01-15T10:06:00Z] [warn] service=db Checkpoint took 2.5s\n\
plain line without anything\n";

const SMALL_SOURCES: &str = "data_sources:\n  logfiles:\n    - {name: logs, paths: [\"*.ndjson\", \"*.log\"], squad: ops}\n";
const SMALL_SQUADS: &str = "squads:\n  ops:\n    members: {slack: [U_OPS]}\n  apionly:\n    members: {slack: [U_API]}\n    grants:\n      - {source: logs, services: [api]}\n";

async fn small() -> (tempfile::TempDir, Harness) {
    fixture(
        &[
            ("app.ndjson", SMALL_NDJSON.as_bytes().to_vec()),
            ("app.log", SMALL_TEXT.as_bytes().to_vec()),
            (
                "ignored.txt",
                b"2026-01-15T10:00:00Z ERROR [api] never read\n".to_vec(),
            ),
        ],
        SMALL_SOURCES,
        SMALL_SQUADS,
    )
    .await
}

#[tokio::test]
async fn search_filters_by_time_level_service_text_and_regex() {
    let (_dir, h) = small().await;
    let (all, _) = table(&h, "U_OPS", "logs", "search_logs", json!({})).await;
    assert_eq!(all.total_rows, Some(10), "{:?}", all.rows);
    assert_eq!(
        all.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec!["timestamp", "level", "service", "message", "fields"]
    );
    // Newest last, merged across both files; lines without a time come first.
    let times: Vec<String> = col(&all, "timestamp")
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    assert_eq!(
        times.last().map(String::as_str),
        Some("2026-01-15T10:06:00.000Z")
    );
    assert!(!col(&all, "message")
        .iter()
        .any(|m| m.contains("never read")));

    // Time range: start inclusive, end exclusive, untimed lines excluded.
    let (t, _) = table(
        &h,
        "U_OPS",
        "logs",
        "search_logs",
        json!({"start": "2026-01-15T10:01:00Z", "end": "2026-01-15T10:04:00Z"}),
    )
    .await;
    assert_eq!(
        col(&t, "message"),
        vec![
            "upstream db returned 503",
            "slow query took 1200ms",
            "deadlock detected on table orders"
        ]
    );

    // Levels: one string, a list, synonyms, any case; plain-text levels count too.
    let (t, _) = table(
        &h,
        "U_OPS",
        "logs",
        "search_logs",
        json!({"level": "ERROR"}),
    )
    .await;
    assert_eq!(t.total_rows, Some(3));
    let (t, _) = table(
        &h,
        "U_OPS",
        "logs",
        "search_logs",
        json!({"level": ["Warning", "fatal"]}),
    )
    .await;
    assert_eq!(
        col(&t, "message"),
        vec!["slow query took 1200ms", "service=db Checkpoint took 2.5s"]
    );
    assert_eq!(col(&t, "level"), vec!["WARN", "WARN"]);

    // Service: from the JSON field, `[api]` and `service=db` in text.
    let (t, _) = table(&h, "U_OPS", "logs", "search_logs", json!({"service": "DB"})).await;
    assert_eq!(col(&t, "service"), vec!["db", "db", "db"]);
    let (t, _) = table(
        &h,
        "U_OPS",
        "logs",
        "search_logs",
        json!({"service": "api", "level": "error"}),
    )
    .await;
    assert_eq!(
        col(&t, "message"),
        vec!["upstream db returned 503", "upstream db returned 504"]
    );

    // Text is a case-insensitive substring of the raw line (JSON fields included).
    let (t, _) = table(
        &h,
        "U_OPS",
        "logs",
        "search_logs",
        json!({"text": "DEADLOCK"}),
    )
    .await;
    assert_eq!(t.total_rows, Some(1));
    let (t, _) = table(
        &h,
        "U_OPS",
        "logs",
        "search_logs",
        json!({"text": "\"trace_id\":\"t2\""}),
    )
    .await;
    assert_eq!(col(&t, "message"), vec!["upstream db returned 503"]);
    assert_eq!(t.rows[0][4], json!({"trace_id": "t2"}));
    let (t, _) = table(
        &h,
        "U_OPS",
        "logs",
        "search_logs",
        json!({"regex": r"returned 50[34]$"}),
    )
    .await;
    assert_eq!(
        t.total_rows,
        Some(1),
        "the JSON line ends in `}}`, the text line in 504"
    );
    let (t, _) = table(
        &h,
        "U_OPS",
        "logs",
        "search_logs",
        json!({"regex": r"returned 50[34]"}),
    )
    .await;
    assert_eq!(t.total_rows, Some(2));

    // Limit keeps the newest and says how many matched.
    let (t, note) = table(
        &h,
        "U_OPS",
        "logs",
        "search_logs",
        json!({"start": "2026-01-15T00:00:00Z", "limit": 2}),
    )
    .await;
    assert_eq!(
        col(&t, "timestamp"),
        vec!["2026-01-15T10:05:00.000Z", "2026-01-15T10:06:00.000Z"]
    );
    assert_eq!((t.total_rows, t.truncated), (Some(8), true));
    assert!(note.unwrap_or_default().contains("newest 2 of 8"));
}

#[tokio::test]
async fn patterns_and_time_buckets_on_small_files() {
    let (_dir, h) = small().await;
    let (t, note) = table(
        &h,
        "U_OPS",
        "logs",
        "count_by_pattern",
        json!({"level": "error"}),
    )
    .await;
    assert_eq!(col(&t, "pattern")[0], "upstream db returned <*>");
    assert_eq!(col(&t, "count")[0], "2");
    assert_eq!(col(&t, "levels")[0], "ERROR");
    assert_eq!(col(&t, "first_seen")[0], "2026-01-15T10:01:00.000Z");
    assert_eq!(col(&t, "last_seen")[0], "2026-01-15T10:04:00.000Z");
    assert!(col(&t, "example")[0].contains("upstream db returned 50"));
    assert!(note
        .unwrap_or_default()
        .contains("3 matching line(s) in 2 pattern(s)"));
    let (t, _) = table(&h, "U_OPS", "logs", "count_by_pattern", json!({"top": 1})).await;
    assert_eq!((t.rows.len(), t.truncated), (1, true));

    let (t, note) = table(
        &h,
        "U_OPS",
        "logs",
        "count_over_time",
        json!({"bucket": "1m"}),
    )
    .await;
    let buckets = col(&t, "bucket_start");
    assert_eq!(
        buckets.first().map(String::as_str),
        Some("2026-01-15T10:00:00Z")
    );
    assert_eq!(
        buckets.last().map(String::as_str),
        Some("2026-01-15T10:06:00Z")
    );
    assert_eq!(col(&t, "count"), vec!["2", "1", "1", "1", "1", "1", "1"]);
    assert!(note
        .unwrap_or_default()
        .contains("2 matching line(s) have no timestamp"));
    // Zero-filled across an explicit range; the default bucket keeps ≤ 120 buckets.
    let (t, _) = table(
        &h,
        "U_OPS",
        "logs",
        "count_over_time",
        json!({"level": "error", "start": "2026-01-15T09:58:00Z", "end": "2026-01-15T10:05:00Z"}),
    )
    .await;
    assert_eq!(col(&t, "count"), vec!["0", "0", "0", "1", "0", "1", "1"]);
    let (t, _) = table(
        &h,
        "U_OPS",
        "logs",
        "count_over_time",
        json!({"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}),
    )
    .await;
    assert!(
        t.rows.len() <= 120 && !t.rows.is_empty(),
        "{}",
        t.rows.len()
    );
    let too_many = call(
        &h,
        "U_OPS",
        "logs",
        "count_over_time",
        json!({"bucket": "1m", "start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}),
    )
    .await;
    assert!(is_bad_args(&too_many), "{:?}", too_many.err());
}

#[tokio::test]
async fn a_services_grant_hides_every_other_line_in_every_tool() {
    let (_dir, h) = small().await;
    let refused = call(&h, "U_API", "logs", "search_logs", json!({"service": "db"})).await;
    match refused {
        Err(CallError::Source(SourceError::Refused(message))) => {
            assert_eq!(
                message,
                "refused: service `db` is outside your grant (granted: api)"
            )
        }
        other => panic!("expected a refusal, got {:?}", other.map(|o| o.statement)),
    }
    for tool in ["count_by_pattern", "count_over_time"] {
        let r = call(&h, "U_API", "logs", tool, json!({"service": "db"})).await;
        assert!(
            matches!(r, Err(CallError::Source(SourceError::Refused(_)))),
            "{tool}"
        );
    }
    let (t, _) = table(&h, "U_API", "logs", "search_logs", json!({})).await;
    assert_eq!(t.total_rows, Some(5));
    assert!(
        col(&t, "service").iter().all(|s| s == "api"),
        "{:?}",
        t.rows
    );
    // Even text that only other services' lines contain finds nothing.
    let (t, _) = table(
        &h,
        "U_API",
        "logs",
        "search_logs",
        json!({"text": "deadlock"}),
    )
    .await;
    assert_eq!(t.total_rows, Some(0));
    let (t, _) = table(
        &h,
        "U_API",
        "logs",
        "search_logs",
        json!({"text": "no service"}),
    )
    .await;
    assert_eq!(
        t.total_rows,
        Some(0),
        "a line without a service is invisible under a services grant"
    );
    let (t, _) = table(&h, "U_API", "logs", "count_by_pattern", json!({})).await;
    let examples = col(&t, "example").join("\n");
    for other in ["deadlock", "slow query", "Checkpoint", "no service"] {
        assert!(
            !examples.contains(other),
            "{other} leaked into:\n{examples}"
        );
    }
    assert_eq!(
        col(&t, "count")
            .iter()
            .map(|c| c.parse::<u64>().unwrap_or(0))
            .sum::<u64>(),
        5
    );
    let (t, _) = table(&h, "U_API", "logs", "count_over_time", json!({})).await;
    assert_eq!(
        col(&t, "count")
            .iter()
            .map(|c| c.parse::<u64>().unwrap_or(0))
            .sum::<u64>(),
        4,
        "one api line has no time"
    );
    // The offered tools name only the granted service; the owner's are unrestricted.
    let access = h.access("U_API");
    let tools = h.gate.tools_for(&access);
    let search = tools
        .iter()
        .find(|t| t.spec.name == "search_logs")
        .expect("search_logs offered");
    assert_eq!(
        search.spec.input_schema["properties"]["service"]["enum"],
        json!(["api"])
    );
    assert_eq!(
        search.spec.input_schema["additionalProperties"],
        json!(false)
    );
    let source = h.source("logs");
    let grant = access.grant("logs").expect("grant").clone();
    let described = source
        .describe(&grant, &CallContext::default())
        .await
        .expect("describe");
    assert!(
        described.contains("services seen (sampled): api\n"),
        "{described}"
    );
    let owner = h
        .access("U_OPS")
        .grant("logs")
        .expect("owner grant")
        .clone();
    let described = source
        .describe(&owner, &CallContext::default())
        .await
        .expect("describe");
    assert!(
        described.contains("api, db") && described.contains("2 file(s)"),
        "{described}"
    );
    assert!(
        described.contains("2026-01-15T10:00:00.000Z to 2026-01-15T10:06:00.000Z"),
        "{described}"
    );
}

#[tokio::test]
async fn bad_input_is_an_error_the_model_can_fix_or_a_note_never_a_panic() {
    let mut hostile = b"2026-01-15T10:00:00Z ERROR [api] bad bytes \xff\xfe here\n".to_vec();
    hostile.extend(b"2026-01-15T10:00:01Z ERROR [api] ");
    hostile.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    hostile.extend(b"\n2026-01-15T10:00:02Z INFO [api] after the long line\n");
    hostile.extend(b"not-a-time ERROR [api] 2026-99-99T99:99:99Z\n");
    hostile.extend(b"{\"@timestamp\": \"last tuesday\", \"level\": \"error\", \"service\": \"api\", \"message\": \"vague time\"}\n");
    let (_dir, h) = fixture(
        &[("x.log", hostile)],
        "data_sources:\n  logfiles:\n    - {name: logs, paths: [\"x.log\"], squad: ops}\n",
        "squads:\n  ops:\n    members: {slack: [U_OPS]}\n",
    )
    .await;
    let (t, note) = table(&h, "U_OPS", "logs", "search_logs", json!({})).await;
    assert_eq!(t.total_rows, Some(5));
    let messages = col(&t, "message");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("bad bytes \u{fffd}\u{fffd} here")),
        "{messages:?}"
    );
    assert!(messages.iter().any(|m| m == "after the long line"));
    assert!(messages
        .iter()
        .all(|m| m.chars().count() <= MAX_CELL_CHARS + 1));
    let note = note.unwrap_or_default();
    assert!(
        note.contains("1 line(s) longer than 64 KiB were cut") && note.contains("cut at 4096"),
        "{note}"
    );
    // Unparseable timestamps: no timestamp, so excluded from any time range.
    let (t, _) = table(
        &h,
        "U_OPS",
        "logs",
        "search_logs",
        json!({"start": "2026-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(t.total_rows, Some(3));
    // The line whose first word is not a time has no level either; the JSON line
    // with a vague time keeps its level.
    let (t, _) = table(
        &h,
        "U_OPS",
        "logs",
        "count_by_pattern",
        json!({"level": "error"}),
    )
    .await;
    assert_eq!(
        col(&t, "count")
            .iter()
            .map(|c| c.parse::<u64>().unwrap_or(0))
            .sum::<u64>(),
        3
    );

    for (tool, args) in [
        ("search_logs", json!({"regex": "(unclosed"})),
        ("search_logs", json!({"regex": "a{1000}{1000}"})),
        ("search_logs", json!({"regex": "(?<=x)y"})),
        (
            "search_logs",
            json!({"start": "2026-01-15T11:00:00Z", "end": "2026-01-15T10:00:00Z"}),
        ),
        (
            "count_over_time",
            json!({"start": "2026-01-15T11:00:00Z", "end": "2026-01-15T10:00:00Z"}),
        ),
        ("search_logs", json!({"start": "yesterday"})),
        ("search_logs", json!({"limit": 0})),
        ("search_logs", json!({"limit": "ten"})),
        ("search_logs", json!({"level": 3})),
        ("search_logs", json!({"level": []})),
        ("search_logs", json!({"query": "x"})),
        ("count_by_pattern", json!({"regex": "x"})),
        ("count_over_time", json!({"bucket": "7m"})),
        ("search_logs", json!("not an object")),
    ] {
        let r = call(&h, "U_OPS", "logs", tool, args.clone()).await;
        assert!(
            is_bad_args(&r),
            "{tool} {args}: {:?}",
            r.map(|o| o.statement)
        );
    }
    let r = call(&h, "U_OPS", "logs", "tail_logs", json!({})).await;
    assert!(matches!(
        r,
        Err(CallError::Source(SourceError::UnknownTool { .. }))
    ));
    let (t, note) = table(&h, "U_OPS", "logs", "search_logs", json!({"limit": 5000})).await;
    assert_eq!(t.total_rows, Some(5));
    assert!(note.unwrap_or_default().contains("capped at 1000"));
}

#[tokio::test]
async fn scanning_stops_at_the_byte_cap_and_says_so() {
    let body: String = (0..2000)
        .map(|i| format!("2026-01-15T10:00:{:02}Z INFO [api] line {i}\n", i % 60))
        .collect();
    let (_dir, h) = fixture(
        &[("big.log", body.into_bytes())],
        "data_sources:\n  logfiles:\n    - {name: logs, paths: [\"*.log\"], squad: ops, max_bytes_scanned: 4096}\n",
        "squads:\n  ops:\n    members: {slack: [U_OPS]}\n",
    )
    .await;
    let (t, note) = table(&h, "U_OPS", "logs", "count_over_time", json!({})).await;
    let counted: u64 = col(&t, "count")
        .iter()
        .map(|c| c.parse::<u64>().unwrap_or(0))
        .sum();
    assert!(counted > 0 && counted < 200, "{counted}");
    assert!(note.unwrap_or_default().contains("max_bytes_scanned"));
}

#[tokio::test]
async fn health_needs_every_pattern_to_match_a_file() {
    let (_dir, h) = fixture(
        &[("a.log", b"2026-01-15T10:00:00Z INFO x\n".to_vec())],
        "data_sources:\n  logfiles:\n    - {name: good, paths: [\"*.log\"], squad: ops}\n    - {name: half, paths: [\"*.log\", \"missing/*.ndjson\"], squad: ops}\n",
        "squads:\n  ops:\n    members: {slack: [U_OPS]}\n",
    )
    .await;
    let good = h.source("good").health().await;
    assert!(
        good.ok && good.detail.contains("1 file(s)"),
        "{}",
        good.detail
    );
    let half = h.source("half").health().await;
    assert!(
        !half.ok
            && half
                .detail
                .contains("`missing/*.ndjson` matches no readable file"),
        "{}",
        half.detail
    );
}

#[test]
fn config_rejects_bad_logfile_settings_without_io() {
    let env: HashMap<String, String> = HashMap::new();
    let sources = "data_sources:\n  logfiles:\n    - {name: a, paths: [\"logs/*/x.log\", \"\", \"logs/\"], format: xml, squad: ops, timestamp_field: \"\", max_bytes_scanned: 0, colour: red}\n";
    let err = match config::parse("sources.yaml", sources, "squads.yaml", None, &env) {
        Ok(_) => panic!("accepted"),
        Err(err) => err.to_string(),
    };
    for expected in [
        "logfiles[0].paths[0]: `logs/*/x.log`: `*` is supported in the file name only",
        "logfiles[0].paths[1]: must not be empty",
        "logfiles[0].paths[2]: `logs/` names a directory",
        "logfiles[0].format: unknown format `xml` (expected: auto, ndjson, text)",
        "logfiles[0].timestamp_field: must not be empty",
        "logfiles[0].max_bytes_scanned: must be at least 1",
        "logfiles[0].colour: unknown key",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
}

#[test]
fn templates_mask_what_varies() {
    let mut drain = Drain::new(DrainConfig::default());
    let a = drain.add("could not obtain connection from pool (active=5, idle=0, waiting=37)");
    let b = drain.add("could not obtain connection from pool (active=5, idle=0, waiting=24)");
    assert_eq!(drain.resolve(a), drain.resolve(b));
    let c = drain.add("POST /checkout 200 in 255ms");
    assert_eq!(drain.template(c), "POST /checkout <*> in <*>");
}

// ---- The demo dataset -------------------------------------------------------

const INCIDENT_START: &str = "2026-01-15T10:12:00Z";

#[tokio::test]
async fn demo_pool_exhaustion_is_the_top_error_pattern_after_the_deploy() {
    let h = demo().await;
    let (t, note) = table(
        &h,
        "U0DEMO",
        "app_logs",
        "count_by_pattern",
        json!({"level": "ERROR", "start": INCIDENT_START, "top": 5}),
    )
    .await;
    let patterns = col(&t, "pattern");
    let counts: Vec<u64> = col(&t, "count")
        .iter()
        .map(|c| c.parse().unwrap_or(0))
        .collect();
    assert!(
        patterns[0].contains("Connection is not available, request timed out after"),
        "{patterns:?}"
    );
    assert!(counts[0] > counts[1], "{counts:?}");
    assert!(col(&t, "example")[0].contains("HikariPool-1 - Connection is not available"));
    assert!(
        patterns
            .iter()
            .any(|p| p.contains("could not obtain connection from pool")),
        "{patterns:?}"
    );
    assert!(
        patterns
            .iter()
            .any(|p| p == "upstream payment-service returned <*>"),
        "{patterns:?}"
    );
    assert!(
        col(&t, "first_seen")[0].as_str() >= "2026-01-15T10:13",
        "{:?}",
        col(&t, "first_seen")
    );
    assert!(note.is_some());
    // Before the deploy the same query finds only a handful of unrelated errors.
    let (t, _) = table(
        &h,
        "U0DEMO",
        "app_logs",
        "count_by_pattern",
        json!({"level": "error", "end": INCIDENT_START}),
    )
    .await;
    let before: u64 = col(&t, "count")
        .iter()
        .map(|c| c.parse::<u64>().unwrap_or(0))
        .sum();
    assert!(before < 30, "{before} errors before the deploy");
    assert!(!col(&t, "pattern").iter().any(|p| p.contains("HikariPool")));
}

#[tokio::test]
async fn demo_errors_step_up_after_the_deploy() {
    let h = demo().await;
    let (t, _) = table(
        &h,
        "U0DEMO",
        "app_logs",
        "count_over_time",
        json!({"level": "error", "service": "payment-service", "start": "2026-01-15T09:00:00Z", "end": "2026-01-15T11:00:00Z", "bucket": "1m"}),
    )
    .await;
    assert_eq!(t.rows.len(), 120);
    let rows: Vec<(String, u64)> = col(&t, "bucket_start")
        .into_iter()
        .zip(col(&t, "count").iter().map(|c| c.parse().unwrap_or(0)))
        .collect();
    let before: u64 = rows
        .iter()
        .filter(|(b, _)| b.as_str() < "2026-01-15T10:12")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        before, 0,
        "payment-service logs no errors before the deploy"
    );
    for (bucket, n) in rows
        .iter()
        .filter(|(b, _)| b.as_str() >= "2026-01-15T10:15")
    {
        assert!(*n >= 5, "{bucket}: only {n} errors");
    }
    // The default bucket stays within 120 buckets and still shows the step.
    let (t, note) = table(
        &h,
        "U0DEMO",
        "app_logs",
        "count_over_time",
        json!({"level": ["ERROR"]}),
    )
    .await;
    assert!(t.rows.len() <= 120 && t.rows.len() > 20, "{}", t.rows.len());
    assert!(note.unwrap_or_default().contains("bucket"));
    let counts: Vec<u64> = col(&t, "count")
        .iter()
        .map(|c| c.parse().unwrap_or(0))
        .collect();
    let half = counts.len() / 2;
    let (early, late): (u64, u64) = (counts[..half].iter().sum(), counts[half..].iter().sum());
    assert!(late > 20 * early.max(1), "early {early}, late {late}");
}

#[tokio::test]
async fn demo_logs_show_the_deploy_and_the_gateway_failures() {
    let h = demo().await;
    let (t, _) = table(
        &h,
        "U0DEMO",
        "app_logs",
        "search_logs",
        json!({"service": "payment-service", "text": "maxpoolsize"}),
    )
    .await;
    assert_eq!(t.total_rows, Some(3), "one config line per new pod");
    assert!(col(&t, "message")
        .iter()
        .all(|m| m.contains("db.pool.maxPoolSize=5")));
    assert!(col(&t, "timestamp")
        .iter()
        .all(|ts| ts.as_str() < "2026-01-15T10:12:41"));
    let (t, _) = table(
        &h,
        "U0DEMO",
        "app_logs",
        "search_logs",
        json!({"service": "gateway", "level": "error", "start": INCIDENT_START, "limit": 50}),
    )
    .await;
    assert!(t.total_rows.unwrap_or(0) > 300, "{:?}", t.total_rows);
    assert!(col(&t, "message").iter().all(
        |m| m.contains("POST /api/v1/checkout") && (m.contains(" 503 ") || m.contains(" 504 "))
    ));
    // Trace ids tie the files together: the gateway's req_id finds the app lines.
    let message = col(&t, "message").pop().unwrap_or_default();
    let trace = message
        .rsplit("req_id=")
        .next()
        .unwrap_or_default()
        .to_string();
    let (t, _) = table(
        &h,
        "U0DEMO",
        "app_logs",
        "search_logs",
        json!({"text": trace}),
    )
    .await;
    let services = col(&t, "service");
    assert!(
        services.contains(&"checkout-api".to_string()) && services.contains(&"gateway".to_string()),
        "{services:?}"
    );
    // The regex tool works on the demo too.
    let (t, _) = table(
        &h,
        "U0DEMO",
        "app_logs",
        "search_logs",
        json!({"regex": r"waiting=4[0-9]\)", "limit": 1}),
    )
    .await;
    assert!(t.total_rows.unwrap_or(0) > 10);
}

#[tokio::test]
async fn demo_identity_sees_only_user_service_lines_and_its_own_log() {
    let h = demo().await;
    let r = call(
        &h,
        "U0IDENTITY",
        "app_logs",
        "search_logs",
        json!({"service": "payment-service"}),
    )
    .await;
    match r {
        Err(CallError::Source(SourceError::Refused(m))) => {
            assert_eq!(
                m,
                "refused: service `payment-service` is outside your grant (granted: user-service)"
            )
        }
        other => panic!("expected refusal, got {:?}", other.map(|o| o.statement)),
    }
    let (t, _) = table(
        &h,
        "U0IDENTITY",
        "app_logs",
        "search_logs",
        json!({"text": "HikariPool", "limit": 1000}),
    )
    .await;
    assert_eq!(t.total_rows, Some(0));
    let (t, _) = table(
        &h,
        "U0IDENTITY",
        "app_logs",
        "search_logs",
        json!({"start": INCIDENT_START, "limit": 1000}),
    )
    .await;
    assert!(t.total_rows.unwrap_or(0) > 1000);
    assert!(col(&t, "service").iter().all(|s| s == "user-service"));
    let (t, _) = table(
        &h,
        "U0IDENTITY",
        "app_logs",
        "count_by_pattern",
        json!({"top": 100}),
    )
    .await;
    for example in col(&t, "example") {
        assert!(
            example.contains("\"service\":\"user-service\""),
            "{example}"
        );
    }
    let (t, _) = table(
        &h,
        "U0IDENTITY",
        "app_logs",
        "count_over_time",
        json!({"level": "error"}),
    )
    .await;
    let errors: u64 = col(&t, "count")
        .iter()
        .map(|c| c.parse::<u64>().unwrap_or(0))
        .sum();
    assert!(
        errors < 30,
        "identity sees only user-service errors, got {errors}"
    );
    let (t, _) = table(
        &h,
        "U0IDENTITY",
        "identity_logs",
        "search_logs",
        json!({"level": "warn", "limit": 5}),
    )
    .await;
    assert!(col(&t, "service").iter().all(|s| s == "auth-service"));
    assert!(col(&t, "timestamp")
        .iter()
        .all(|ts| ts.starts_with("2026-01-15T")));
    // The checkout squad cannot use identity's log at all.
    let r = call(&h, "U0DEMO", "identity_logs", "search_logs", json!({})).await;
    assert!(
        matches!(r, Err(CallError::Denied(_))),
        "{:?}",
        r.map(|o| o.statement)
    );
    // And describe() for identity names no other service.
    let source = h.source("app_logs");
    let grant = h
        .access("U0IDENTITY")
        .grant("app_logs")
        .expect("grant")
        .clone();
    let described = source
        .describe(&grant, &CallContext::default())
        .await
        .expect("describe");
    assert!(
        !described.contains("payment-service") && described.contains("user-service"),
        "{described}"
    );
}

#[tokio::test]
async fn demo_database_tells_the_same_story() {
    let h = demo().await;
    let change = h
        .query("U0DEMO", "checkout_db", "SELECT old_value, new_value, changed_at FROM config_changes WHERE service = 'payment-service' AND key = 'db.pool.maxPoolSize'")
        .await
        .expect("config_changes");
    assert_eq!(
        change.rows,
        vec![vec![json!("50"), json!("5"), json!("2026-01-15 10:12:00")]]
    );
    let deploy = h
        .query("U0DEMO", "checkout_db", "SELECT previous_version, version FROM deploys WHERE service = 'payment-service' AND deployed_at >= '2026-01-15'")
        .await
        .expect("deploys");
    assert_eq!(deploy.rows, vec![vec![json!("2.13.2"), json!("2.14.0")]]);
    let failed = h
        .query("U0DEMO", "checkout_db", "SELECT sum(created_at < '2026-01-15 10:12'), sum(created_at >= '2026-01-15 10:14') FROM orders WHERE status = 'failed' AND failure_reason IN ('payment_timeout', 'payment_unavailable')")
        .await
        .expect("orders");
    assert_eq!(failed.rows[0][0], json!(0));
    assert!(
        failed.rows[0][1].as_i64().unwrap_or(0) > 500,
        "{:?}",
        failed.rows
    );
    let p95 = h
        .query("U0DEMO", "checkout_db", "SELECT max(CASE WHEN minute < '2026-01-15 10:12' THEN p95_ms END), min(CASE WHEN minute >= '2026-01-15 10:15' THEN p95_ms END) FROM traffic_minutely WHERE service = 'payment-service'")
        .await
        .expect("traffic");
    let (before, after) = (
        p95.rows[0][0].as_i64().unwrap_or(0),
        p95.rows[0][1].as_i64().unwrap_or(0),
    );
    assert!(
        before < 1000 && after > 10_000,
        "p95 before {before}, after {after}"
    );
    // Identity has no grant on the database.
    assert!(matches!(
        h.query("U0IDENTITY", "checkout_db", "SELECT 1").await,
        Err(CallError::Denied(_))
    ));
}

#[test]
fn demo_config_checks_and_connects_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_investigator"))
        .arg("--config")
        .arg(demo_dir())
        .arg("--store")
        .arg(dir.path().join("store.db"))
        .arg("check")
        .env_remove("INVESTIGATOR_MASTER_KEY")
        .output()
        .expect("run investigator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["checkout_db", "app_logs", "identity_logs"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default();
        assert!(line.contains(" ok "), "{name}: {line}\n{stdout}");
    }
}
