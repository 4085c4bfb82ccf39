//! The audit log: one row per query / tool call, hash-chained so that editing
//! or deleting a row is detectable.
//!
//! # Hash format (version 1)
//!
//! `hash = hex(sha256(prev_hash + "\n" + canonical))` where `prev_hash` is the
//! previous entry's hash (64 zeros for entry 1) and `canonical` is a compact
//! JSON object with the keys, in this order:
//! `v` (1), `seq`, `at`, `principal`, `channel`, `squad`, `source`, `tool`,
//! `statement`, `verdict`, `reason`, `rows`, `duration_ms`, `evidence_id`,
//! `session_id`. Absent values are `null`; `at` is the stored text
//! (RFC 3339 UTC, microseconds, `Z`). Strings use JSON's minimal escaping
//! (`"`, `\`, and control characters; `\b\f\n\r\t` short forms, else
//! `\u00xx`), so an external verifier can reproduce it, e.g. Python's
//! `json.dumps(obj, ensure_ascii=False, separators=(",", ":"))` over a dict
//! built in that key order.
//!
//! # What the chain cannot show
//!
//! Removing the *newest* entries leaves a valid, shorter chain. Detecting that
//! needs the head (`head_seq`, `head_hash` from [`Store::verify_audit`])
//! recorded somewhere else, e.g. logged periodically to another system, and
//! compared later. The same holds for rewriting the whole chain from some
//! entry onwards.

use std::fmt;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{ColumnIndex, Decode, FromRow, QueryBuilder, Row, Type};

use super::{Dialect, Result, Store};

/// `prev_hash` of entry 1.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical form new entries are hashed with.
const HASH_VERSION: i64 = 1;
/// Rows fetched per round trip by `verify_audit`, bounding its memory.
const VERIFY_PAGE: i64 = 1000;
/// Problems listed by `verify_audit`; past that only a count is given.
const MAX_PROBLEMS: usize = 100;
/// Width of the statement in `audit_line`.
const LINE_STATEMENT_CHARS: usize = 120;

// A macro rather than a const so `concat!` yields `&'static str` queries.
macro_rules! columns {
    () => {
        "seq, occurred_at, principal, channel, squad, source, tool, statement, verdict, \
         reason, row_count, duration_ms, evidence_id, session_id, hash_version, prev_hash, hash"
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allowed,
    Refused,
    /// Allowed by guard and access, but the execution errored (timeout,
    /// connection).
    Failed,
}

impl Verdict {
    /// The stored and hashed spelling; also serde's.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Refused => "refused",
            Verdict::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "allowed" => Some(Verdict::Allowed),
            "refused" => Some(Verdict::Refused),
            "failed" => Some(Verdict::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the caller knows about one query/tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Stored with microsecond precision; finer digits are dropped.
    pub at: DateTime<Utc>,
    /// "slack:U123" (transport:user).
    pub principal: String,
    /// "slack:C1".
    pub channel: Option<String>,
    /// Squad(s) whose grant applied, comma-joined; None when refused before
    /// resolution.
    pub squad: Option<String>,
    /// Source instance name.
    pub source: String,
    /// e.g. "run_query".
    pub tool: String,
    /// The SQL or tool arguments JSON (already free of secrets).
    pub statement: String,
    pub verdict: Verdict,
    /// Refusal / failure reason.
    pub reason: Option<String>,
    pub rows: Option<i64>,
    pub duration_ms: Option<i64>,
    pub evidence_id: Option<String>,
    pub session_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub record: AuditRecord,
    pub prev_hash: String,
    pub hash: String,
}

/// Narrows `tail_audit_filtered`; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub principal: Option<String>,
    pub source: Option<String>,
    pub verdict: Option<Verdict>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    /// Rows walked.
    pub entries: u64,
    pub ok: bool,
    /// e.g. "entry 17: hash mismatch (row was modified)"; at most 100, plus
    /// one line counting the rest.
    pub problems: Vec<String>,
    /// The last entry's seq and hash: record them elsewhere to later detect
    /// removal of the newest entries, which the chain alone cannot.
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
}

/// One row exactly as stored: verification hashes these strings as they are,
/// so any byte changed in the file shows.
#[derive(Debug, Clone)]
struct StoredRow {
    seq: i64,
    at: String,
    principal: String,
    channel: Option<String>,
    squad: Option<String>,
    source: String,
    tool: String,
    statement: String,
    verdict: String,
    reason: Option<String>,
    rows: Option<i64>,
    duration_ms: Option<i64>,
    evidence_id: Option<String>,
    session_id: Option<String>,
    hash_version: i64,
    prev_hash: String,
    hash: String,
}

/// For any driver's row: the column types are the same on both backends.
impl<'r, R> FromRow<'r, R> for StoredRow
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> sqlx::Result<Self> {
        Ok(StoredRow {
            seq: row.try_get("seq")?,
            at: row.try_get("occurred_at")?,
            principal: row.try_get("principal")?,
            channel: row.try_get("channel")?,
            squad: row.try_get("squad")?,
            source: row.try_get("source")?,
            tool: row.try_get("tool")?,
            statement: row.try_get("statement")?,
            verdict: row.try_get("verdict")?,
            reason: row.try_get("reason")?,
            rows: row.try_get("row_count")?,
            duration_ms: row.try_get("duration_ms")?,
            evidence_id: row.try_get("evidence_id")?,
            session_id: row.try_get("session_id")?,
            hash_version: row.try_get("hash_version")?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
        })
    }
}

impl StoredRow {
    fn fields(&self) -> Fields<'_> {
        Fields {
            seq: self.seq,
            at: &self.at,
            principal: &self.principal,
            channel: self.channel.as_deref(),
            squad: self.squad.as_deref(),
            source: &self.source,
            tool: &self.tool,
            statement: &self.statement,
            verdict: &self.verdict,
            reason: self.reason.as_deref(),
            rows: self.rows,
            duration_ms: self.duration_ms,
            evidence_id: self.evidence_id.as_deref(),
            session_id: self.session_id.as_deref(),
        }
    }

    fn into_entry(self, store: &Store) -> Result<AuditEntry> {
        let seq = self.seq;
        let at = DateTime::parse_from_rfc3339(&self.at)
            .map_err(|e| {
                store.corrupt(format!(
                    "audit entry {seq}: bad timestamp {:?}: {e}",
                    self.at
                ))
            })?
            .with_timezone(&Utc);
        let verdict = Verdict::parse(&self.verdict).ok_or_else(|| {
            store.corrupt(format!(
                "audit entry {seq}: unknown verdict {:?}",
                self.verdict
            ))
        })?;
        Ok(AuditEntry {
            seq,
            record: AuditRecord {
                at,
                principal: self.principal,
                channel: self.channel,
                squad: self.squad,
                source: self.source,
                tool: self.tool,
                statement: self.statement,
                verdict,
                reason: self.reason,
                rows: self.rows,
                duration_ms: self.duration_ms,
                evidence_id: self.evidence_id,
                session_id: self.session_id,
            },
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

/// The hashed fields, borrowed either from a record being appended or from a
/// stored row being verified.
struct Fields<'a> {
    seq: i64,
    at: &'a str,
    principal: &'a str,
    channel: Option<&'a str>,
    squad: Option<&'a str>,
    source: &'a str,
    tool: &'a str,
    statement: &'a str,
    verdict: &'a str,
    reason: Option<&'a str>,
    rows: Option<i64>,
    duration_ms: Option<i64>,
    evidence_id: Option<&'a str>,
    session_id: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn of_record(seq: i64, at: &'a str, r: &'a AuditRecord) -> Fields<'a> {
        Fields {
            seq,
            at,
            principal: &r.principal,
            channel: r.channel.as_deref(),
            squad: r.squad.as_deref(),
            source: &r.source,
            tool: &r.tool,
            statement: &r.statement,
            verdict: r.verdict.as_str(),
            reason: r.reason.as_deref(),
            rows: r.rows,
            duration_ms: r.duration_ms,
            evidence_id: r.evidence_id.as_deref(),
            session_id: r.session_id.as_deref(),
        }
    }
}

/// Written out by hand, not via serde, so key order and escaping can never
/// change with a dependency or its features (e.g. serde_json's
/// `preserve_order`).
fn canonical_v1(f: &Fields<'_>) -> String {
    let mut out = String::with_capacity(320 + f.statement.len());
    out.push_str("{\"v\":1");
    field_int(&mut out, "seq", Some(f.seq));
    field_str(&mut out, "at", Some(f.at));
    field_str(&mut out, "principal", Some(f.principal));
    field_str(&mut out, "channel", f.channel);
    field_str(&mut out, "squad", f.squad);
    field_str(&mut out, "source", Some(f.source));
    field_str(&mut out, "tool", Some(f.tool));
    field_str(&mut out, "statement", Some(f.statement));
    field_str(&mut out, "verdict", Some(f.verdict));
    field_str(&mut out, "reason", f.reason);
    field_int(&mut out, "rows", f.rows);
    field_int(&mut out, "duration_ms", f.duration_ms);
    field_str(&mut out, "evidence_id", f.evidence_id);
    field_str(&mut out, "session_id", f.session_id);
    out.push('}');
    out
}

fn push_key(out: &mut String, key: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
}

fn field_int(out: &mut String, key: &str, value: Option<i64>) {
    push_key(out, key);
    match value {
        Some(n) => out.push_str(&n.to_string()),
        None => out.push_str("null"),
    }
}

fn field_str(out: &mut String, key: &str, value: Option<&str>) {
    push_key(out, key);
    let Some(s) = value else {
        out.push_str("null");
        return;
    };
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn chain_hash(prev_hash: &str, canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

fn format_at(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Store {
    /// Appends one entry and returns it as stored (`at` cut to microseconds).
    ///
    /// The last hash is read under a write lock taken first, so appenders in
    /// any number of tasks, processes or replicas serialise instead of forking
    /// the chain: on SQLite `BEGIN IMMEDIATE` (waiting up to the busy
    /// timeout), on PostgreSQL `LOCK TABLE ... IN SHARE ROW EXCLUSIVE MODE`,
    /// which conflicts with itself but not with readers, and is held to the
    /// end of the transaction. Under READ COMMITTED the SELECT after the lock
    /// sees every append committed before it.
    pub async fn append_audit(&self, record: &AuditRecord) -> Result<AuditEntry> {
        let at = record.at.trunc_subsecs(6);
        let at_text = format_at(at);

        let (seq, prev_hash, hash) = on_pool!(self, pool => {
            // Dropping `tx` on any early return (or cancellation) rolls back.
            let mut tx = match self.dialect() {
                Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
                Dialect::Postgres => pool.begin().await,
            }
            .map_err(|e| self.query_error(e))?;
            match self.dialect() {
                Dialect::Sqlite => {}
                Dialect::Postgres => {
                    sqlx::query("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.query_error(e))?;
                }
            }

            let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.query_error(e))?;
            let (seq, prev_hash) = match last {
                Some(row) => {
                    let last_seq: i64 = row.try_get("seq").map_err(|e| self.query_error(e))?;
                    let last_hash: String =
                        row.try_get("hash").map_err(|e| self.query_error(e))?;
                    let seq = last_seq.checked_add(1).ok_or_else(|| {
                        self.corrupt(format!("audit seq overflow after {last_seq}"))
                    })?;
                    (seq, last_hash)
                }
                None => (1, GENESIS_HASH.to_owned()),
            };

            let fields = Fields::of_record(seq, &at_text, record);
            let hash = chain_hash(&prev_hash, &canonical_v1(&fields));

            sqlx::query(concat!(
                "INSERT INTO audit_log (",
                columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
            ))
            .bind(seq)
            .bind(&at_text)
            .bind(&record.principal)
            .bind(&record.channel)
            .bind(&record.squad)
            .bind(&record.source)
            .bind(&record.tool)
            .bind(&record.statement)
            .bind(record.verdict.as_str())
            .bind(&record.reason)
            .bind(record.rows)
            .bind(record.duration_ms)
            .bind(&record.evidence_id)
            .bind(&record.session_id)
            .bind(HASH_VERSION)
            .bind(&prev_hash)
            .bind(&hash)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.query_error(e))?;

            tx.commit().await.map_err(|e| self.query_error(e))?;
            (seq, prev_hash, hash)
        });

        Ok(AuditEntry {
            seq,
            record: AuditRecord {
                at,
                ..record.clone()
            },
            prev_hash,
            hash,
        })
    }

    /// The last `n` entries, oldest first.
    pub async fn tail_audit(&self, n: u32) -> Result<Vec<AuditEntry>> {
        self.tail_audit_filtered(n, &AuditFilter::default()).await
    }

    /// The last `n` entries matching `filter`, oldest first.
    pub async fn tail_audit_filtered(
        &self,
        n: u32,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEntry>> {
        // The builder writes each driver's own placeholders.
        let rows: Vec<StoredRow> = on_pool!(self, pool => {
            let mut qb = QueryBuilder::new(concat!(
                "SELECT ",
                columns!(),
                " FROM audit_log WHERE 1 = 1"
            ));
            if let Some(principal) = &filter.principal {
                qb.push(" AND principal = ").push_bind(principal.clone());
            }
            if let Some(source) = &filter.source {
                qb.push(" AND source = ").push_bind(source.clone());
            }
            if let Some(verdict) = filter.verdict {
                qb.push(" AND verdict = ").push_bind(verdict.as_str());
            }
            qb.push(" ORDER BY seq DESC LIMIT ").push_bind(i64::from(n));
            qb.build_query_as().fetch_all(pool).await
        })
        .map_err(|e| self.query_error(e))?;
        rows.into_iter().rev().map(|r| r.into_entry(self)).collect()
    }

    /// Walks the whole chain in seq order, a page at a time, recomputing each
    /// hash from the stored fields and checking links and contiguity. Problems
    /// are reported, not returned as errors; `Err` means the walk itself
    /// failed. Entries appended meanwhile are included as the walk reaches
    /// them.
    pub async fn verify_audit(&self) -> Result<AuditVerification> {
        self.verify_audit_paged(VERIFY_PAGE).await
    }

    async fn verify_audit_paged(&self, page_size: i64) -> Result<AuditVerification> {
        let mut walk = ChainWalk::default();
        // Start below any possible seq so rows slipped in at <= 0 are seen too.
        let mut after = i64::MIN;
        loop {
            let walked = on_pool!(self, pool => {
                let page = sqlx::query(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
                ))
                .bind(after)
                .bind(page_size)
                .fetch_all(pool)
                .await
                .map_err(|e| self.query_error(e))?;

                for row in &page {
                    let seq: i64 = row.try_get("seq").map_err(|e| self.query_error(e))?;
                    after = seq;
                    match StoredRow::from_row(row) {
                        Ok(stored) => walk.check(&stored),
                        // e.g. a number where text belongs: report, keep walking.
                        Err(e) => walk.unreadable(seq, row.try_get("hash").ok(), &e.to_string()),
                    }
                }
                page.len()
            });
            if i64::try_from(walked).unwrap_or(i64::MAX) < page_size {
                break;
            }
        }
        let result = walk.finish();
        if !result.ok {
            tracing::warn!(
                store = %self.location(),
                problems = result.problems.len(),
                "audit log verification found problems"
            );
        }
        Ok(result)
    }
}

/// The verification state machine, separate from I/O.
#[derive(Default)]
struct ChainWalk {
    entries: u64,
    problems: Vec<String>,
    unlisted: u64,
    /// seq and stored hash of the previous row walked.
    prev: Option<(i64, Option<String>)>,
}

impl ChainWalk {
    fn problem(&mut self, message: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(message);
        } else {
            self.unlisted += 1;
        }
    }

    /// Contiguity: the first entry is 1, each next one is the previous + 1.
    fn check_seq(&mut self, seq: i64) {
        self.entries += 1;
        let expected = match &self.prev {
            Some((p, _)) => p.saturating_add(1),
            None => 1,
        };
        if seq > expected {
            let last_missing = seq - 1;
            if last_missing == expected {
                self.problem(format!("entry {expected} missing"));
            } else {
                self.problem(format!("entries {expected}..{last_missing} missing"));
            }
        } else if seq < expected {
            self.problem(format!(
                "entry {seq}: unexpected seq (expected {expected} or later)"
            ));
        }
    }

    fn check(&mut self, row: &StoredRow) {
        let seq = row.seq;
        self.check_seq(seq);

        if seq == 1 {
            if row.prev_hash != GENESIS_HASH {
                self.problem("entry 1: prev_hash is not the genesis hash".to_owned());
            }
        } else if let Some((prev_seq, prev_hash)) = &self.prev {
            // Across a gap there is nothing to compare with; the gap is reported.
            if *prev_seq == seq - 1 && prev_hash.as_deref() != Some(row.prev_hash.as_str()) {
                let prev_seq = *prev_seq;
                self.problem(format!(
                    "entry {seq}: prev_hash does not match entry {prev_seq}"
                ));
            }
        }

        match row.hash_version {
            1 => {
                if chain_hash(&row.prev_hash, &canonical_v1(&row.fields())) != row.hash {
                    self.problem(format!("entry {seq}: hash mismatch (row was modified)"));
                }
            }
            other => self.problem(format!("entry {seq}: unknown hash version {other}")),
        }

        self.prev = Some((seq, Some(row.hash.clone())));
    }

    fn unreadable(&mut self, seq: i64, hash: Option<String>, why: &str) {
        self.check_seq(seq);
        self.problem(format!("entry {seq}: unreadable row ({why})"));
        self.prev = Some((seq, hash));
    }

    fn finish(mut self) -> AuditVerification {
        if self.unlisted > 0 {
            self.problems.push(format!(
                "... and {} more problems not listed",
                self.unlisted
            ));
        }
        let (head_seq, head_hash) = match self.prev {
            Some((seq, hash)) => (Some(seq), hash),
            None => (None, None),
        };
        AuditVerification {
            entries: self.entries,
            ok: self.problems.is_empty(),
            problems: self.problems,
            head_seq,
            head_hash,
        }
    }
}

/// One line for `investigator audit tail`:
/// `2024-05-01T12:00:00Z #42 refused slack:U1 squad=- source=orders rows=- 3ms run_query: DELETE … [reason: ...]`.
/// Every field is flattened to one line and stripped of control characters,
/// since principals and statements come from chat users and must not be able
/// to drive the operator's terminal.
pub fn audit_line(entry: &AuditEntry) -> String {
    let r = &entry.record;
    let opt = |v: &Option<String>, max: usize| {
        v.as_deref()
            .map_or_else(|| "-".to_owned(), |s| one_line(s, max))
    };
    let mut line = format!(
        "{} #{} {} {} squad={} source={} rows={} {} {}: {}",
        r.at.to_rfc3339_opts(SecondsFormat::Secs, true),
        entry.seq,
        r.verdict,
        one_line(&r.principal, 60),
        opt(&r.squad, 60),
        one_line(&r.source, 60),
        r.rows.map_or_else(|| "-".to_owned(), |n| n.to_string()),
        r.duration_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms")),
        one_line(&r.tool, 40),
        one_line(&r.statement, LINE_STATEMENT_CHARS),
    );
    if r.reason.is_some() {
        line.push_str(&format!(" [reason: {}]", opt(&r.reason, 120)));
    }
    line
}

/// Collapses whitespace runs to one space, replaces other control and
/// bidi/invisible formatting characters with '?', and cuts to `max` chars
/// with a trailing '…'.
fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4));
    let mut chars = 0;
    let mut pending_space = false;
    for c in s.trim().chars() {
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        let c = if c.is_control() || is_invisible_format(c) {
            '?'
        } else {
            c
        };
        let need = if pending_space { 2 } else { 1 };
        if chars + need > max {
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            chars += 1;
            pending_space = false;
        }
        out.push(c);
        chars += 1;
    }
    out
}

/// Zero-width and bidirectional-override characters that can make a line
/// read differently from what it contains.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::path::Path;

    fn record(i: usize) -> AuditRecord {
        AuditRecord {
            // Nanoseconds on purpose: storage cuts them to microseconds.
            at: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
                + chrono::Duration::nanoseconds(123_456_789 + i as i64),
            principal: format!("slack:U{i}"),
            channel: Some("slack:C1".to_owned()),
            squad: Some("payments,risk".to_owned()),
            source: "orders-db".to_owned(),
            tool: "run_query".to_owned(),
            statement: format!("SELECT * FROM orders WHERE id = {i}"),
            verdict: Verdict::Allowed,
            reason: None,
            rows: Some(i as i64),
            duration_ms: Some(12),
            evidence_id: None,
            session_id: Some("s-1".to_owned()),
        }
    }

    async fn file_store(dir: &Path) -> Store {
        Store::open(dir.join("store.db").to_str().unwrap())
            .await
            .unwrap()
    }

    /// Plays someone with write access to the file: the append-only
    /// triggers are no obstacle to them.
    async fn tamper(store: &Store, sql: &str) {
        sqlx::raw_sql(
            "DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;",
        )
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::raw_sql(sql).execute(store.pool()).await.unwrap();
    }

    async fn append_n(store: &Store, n: usize) -> Vec<AuditEntry> {
        let mut out = Vec::new();
        for i in 1..=n {
            out.push(store.append_audit(&record(i)).await.unwrap());
        }
        out
    }

    #[test]
    fn canonical_form_is_pinned() {
        let r = AuditRecord {
            at: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(),
            principal: "slack:U1".to_owned(),
            channel: None,
            squad: Some("payments".to_owned()),
            source: "orders-db".to_owned(),
            tool: "run_query".to_owned(),
            statement: "SELECT \"a\\b\"\n\tFROM t -- é\u{1}".to_owned(),
            verdict: Verdict::Refused,
            reason: Some("writes".to_owned()),
            rows: None,
            duration_ms: Some(-1),
            evidence_id: None,
            session_id: None,
        };
        let at = format_at(r.at);
        assert_eq!(at, "2024-05-01T12:00:00.000000Z");
        let canonical = canonical_v1(&Fields::of_record(7, &at, &r));
        assert_eq!(
            canonical,
            r#"{"v":1,"seq":7,"at":"2024-05-01T12:00:00.000000Z","principal":"slack:U1","channel":null,"squad":"payments","source":"orders-db","tool":"run_query","statement":"SELECT \"a\\b\"\n\tFROM t -- é\u0001","verdict":"refused","reason":"writes","rows":null,"duration_ms":-1,"evidence_id":null,"session_id":null}"#
        );
        // Changing this breaks every existing log: bump HASH_VERSION instead.
        assert_eq!(
            chain_hash(GENESIS_HASH, &canonical),
            "e2f4ee9196d2768d3bc20604bd63c25ce4cbfb5ef49c0cb52a7141391591be88"
        );
    }

    #[test]
    fn string_escaping_matches_json() {
        for s in [
            "plain",
            "q\"uote",
            "back\\slash",
            "ctl\u{0}\u{1f}\u{7f}",
            "\u{8}\u{c}\n\r\t",
            "ünï 🦀",
            "</script>",
        ] {
            let mut ours = String::new();
            field_str(&mut ours, "k", Some(s));
            let expected = format!(",\"k\":{}", serde_json::to_string(s).unwrap());
            assert_eq!(ours, expected);
            let back: String = serde_json::from_str(&ours[5..]).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn verdict_spellings_agree_with_serde() {
        for v in [Verdict::Allowed, Verdict::Refused, Verdict::Failed] {
            assert_eq!(
                serde_json::to_string(&v).unwrap(),
                format!("\"{}\"", v.as_str())
            );
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
        }
        assert_eq!(Verdict::parse("Allowed"), None);
    }

    #[tokio::test]
    async fn append_tail_verify_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(dir.path()).await;

        let empty = store.verify_audit().await.unwrap();
        assert!(empty.ok);
        assert_eq!(empty.entries, 0);
        assert_eq!(empty.head_hash, None);

        let appended = append_n(&store, 5).await;
        assert_eq!(appended[0].seq, 1);
        assert_eq!(appended[0].prev_hash, GENESIS_HASH);
        for pair in appended.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq + 1);
            assert_eq!(pair[1].prev_hash, pair[0].hash);
        }
        assert_eq!(appended[0].record.at.timestamp_subsec_nanos(), 123_456_000);

        // What append returns is exactly what reading back gives.
        let tail = store.tail_audit(3).await.unwrap();
        assert_eq!(tail, appended[2..].to_vec());
        assert_eq!(store.tail_audit(100).await.unwrap(), appended);
        assert!(store.tail_audit(0).await.unwrap().is_empty());

        let v = store.verify_audit().await.unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.entries, 5);
        assert_eq!(v.head_seq, Some(5));
        assert_eq!(v.head_hash.as_deref(), Some(appended[4].hash.as_str()));

        store.close().await;
        let reopened = file_store(dir.path()).await;
        assert_eq!(reopened.verify_audit().await.unwrap(), v);
        assert_eq!(reopened.tail_audit(10).await.unwrap(), appended);
        // The chain continues across the reopen.
        let next = reopened.append_audit(&record(6)).await.unwrap();
        assert_eq!(next.seq, 6);
        assert_eq!(next.prev_hash, appended[4].hash);
        assert!(reopened.verify_audit().await.unwrap().ok);
    }

    #[tokio::test]
    async fn optional_fields_and_verdicts_round_trip() {
        let store = Store::open_in_memory().await.unwrap();
        let mut r = record(1);
        r.channel = None;
        r.squad = None;
        r.rows = None;
        r.duration_ms = None;
        r.session_id = None;
        r.evidence_id = Some("ev-9".to_owned());
        for verdict in [Verdict::Allowed, Verdict::Refused, Verdict::Failed] {
            r.verdict = verdict;
            r.reason = Some(format!("because {verdict}"));
            store.append_audit(&r).await.unwrap();
        }
        let tail = store.tail_audit(3).await.unwrap();
        let verdicts: Vec<Verdict> = tail.iter().map(|e| e.record.verdict).collect();
        assert_eq!(
            verdicts,
            [Verdict::Allowed, Verdict::Refused, Verdict::Failed]
        );
        assert_eq!(tail[2].record.reason.as_deref(), Some("because failed"));
        assert_eq!(tail[2].record.squad, None);
        assert!(store.verify_audit().await.unwrap().ok);
    }

    #[tokio::test]
    async fn tail_filters() {
        let store = Store::open_in_memory().await.unwrap();
        for i in 1..=6 {
            let mut r = record(i % 2);
            r.source = if i <= 3 { "a" } else { "b" }.to_owned();
            r.verdict = if i == 5 {
                Verdict::Refused
            } else {
                Verdict::Allowed
            };
            store.append_audit(&r).await.unwrap();
        }
        let seqs = |entries: Vec<AuditEntry>| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
        let by_principal = AuditFilter {
            principal: Some("slack:U1".to_owned()),
            ..AuditFilter::default()
        };
        assert_eq!(
            seqs(store.tail_audit_filtered(10, &by_principal).await.unwrap()),
            [1, 3, 5]
        );
        assert_eq!(
            seqs(store.tail_audit_filtered(2, &by_principal).await.unwrap()),
            [3, 5]
        );
        let combined = AuditFilter {
            source: Some("b".to_owned()),
            verdict: Some(Verdict::Allowed),
            ..AuditFilter::default()
        };
        assert_eq!(
            seqs(store.tail_audit_filtered(10, &combined).await.unwrap()),
            [4, 6]
        );
    }

    #[tokio::test]
    async fn triggers_refuse_update_and_delete() {
        let store = Store::open_in_memory().await.unwrap();
        append_n(&store, 2).await;
        for sql in [
            "UPDATE audit_log SET statement = 'x' WHERE seq = 1",
            "DELETE FROM audit_log WHERE seq = 2",
        ] {
            let err = sqlx::query(sql).execute(store.pool()).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
        }
        assert!(store.verify_audit().await.unwrap().ok);
    }

    #[tokio::test]
    async fn modified_statement_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(dir.path()).await;
        append_n(&store, 4).await;
        tamper(
            &store,
            "UPDATE audit_log SET statement = 'SELECT 1' WHERE seq = 2",
        )
        .await;
        let v = store.verify_audit().await.unwrap();
        assert!(!v.ok);
        assert_eq!(v.problems, ["entry 2: hash mismatch (row was modified)"]);
        assert_eq!(v.entries, 4);
    }

    #[tokio::test]
    async fn rehashed_row_breaks_the_next_link() {
        let store = Store::open_in_memory().await.unwrap();
        let entries = append_n(&store, 3).await;
        // A careful forger fixes the row's own hash too ...
        let mut forged = record(2);
        forged.statement = "SELECT 1".to_owned();
        let at = format_at(entries[1].record.at);
        let hash = chain_hash(
            &entries[0].hash,
            &canonical_v1(&Fields::of_record(2, &at, &forged)),
        );
        tamper(
            &store,
            &format!("UPDATE audit_log SET statement = 'SELECT 1', hash = '{hash}' WHERE seq = 2"),
        )
        .await;
        // ... which the next entry's link still gives away.
        let v = store.verify_audit().await.unwrap();
        assert_eq!(v.problems, ["entry 3: prev_hash does not match entry 2"]);
    }

    #[tokio::test]
    async fn deleted_rows_show_as_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(dir.path()).await;
        append_n(&store, 8).await;
        tamper(&store, "DELETE FROM audit_log WHERE seq = 3").await;
        let v = store.verify_audit().await.unwrap();
        assert_eq!(v.problems, ["entry 3 missing"]);
        assert_eq!(v.entries, 7);

        tamper(&store, "DELETE FROM audit_log WHERE seq IN (5, 6, 7)").await;
        let v = store.verify_audit().await.unwrap();
        assert_eq!(v.problems, ["entry 3 missing", "entries 5..7 missing"]);

        tamper(&store, "DELETE FROM audit_log WHERE seq = 1").await;
        let v = store.verify_audit().await.unwrap();
        assert_eq!(v.problems[0], "entry 1 missing");
    }

    #[tokio::test]
    async fn renumbering_after_a_delete_is_reported() {
        let store = Store::open_in_memory().await.unwrap();
        append_n(&store, 4).await;
        tamper(
            &store,
            "DELETE FROM audit_log WHERE seq = 2; UPDATE audit_log SET seq = seq - 1 WHERE seq > 2;",
        )
        .await;
        let v = store.verify_audit().await.unwrap();
        assert!(!v.ok);
        assert!(
            v.problems
                .contains(&"entry 2: prev_hash does not match entry 1".to_owned()),
            "{v:?}"
        );
        assert!(
            v.problems
                .contains(&"entry 2: hash mismatch (row was modified)".to_owned()),
            "{v:?}"
        );
    }

    /// The chain alone cannot tell that the newest entries were removed; the
    /// head reported by verify is what an operator anchors elsewhere.
    #[tokio::test]
    async fn deleting_the_last_row_needs_an_external_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(dir.path()).await;
        append_n(&store, 3).await;
        let anchored = store.verify_audit().await.unwrap();
        tamper(&store, "DELETE FROM audit_log WHERE seq = 3").await;

        let v = store.verify_audit().await.unwrap();
        assert!(v.ok, "undetectable by the chain alone");
        assert_eq!(v.entries, 2);
        assert_eq!(v.head_seq, Some(2));
        assert_ne!(v.head_hash, anchored.head_hash, "but the head moved");

        // The next append reuses seq 3 and chains onto entry 2: still valid,
        // with a head that differs from the anchored one.
        let next = store.append_audit(&record(9)).await.unwrap();
        assert_eq!(next.seq, 3);
        let v = store.verify_audit().await.unwrap();
        assert!(v.ok);
        assert_eq!(v.head_seq, anchored.head_seq);
        assert_ne!(v.head_hash, anchored.head_hash);
    }

    #[tokio::test]
    async fn unreadable_and_foreign_rows_are_reported() {
        let store = Store::open_in_memory().await.unwrap();
        append_n(&store, 3).await;
        tamper(
            &store,
            "UPDATE audit_log SET row_count = 'lots' WHERE seq = 2",
        )
        .await;
        tamper(
            &store,
            "UPDATE audit_log SET hash_version = 9 WHERE seq = 3",
        )
        .await;
        let v = store.verify_audit().await.unwrap();
        assert_eq!(v.problems.len(), 2, "{v:?}");
        assert!(
            v.problems[0].starts_with("entry 2: unreadable row"),
            "{v:?}"
        );
        assert_eq!(v.problems[1], "entry 3: unknown hash version 9");
        // Reading such a row is an error naming the store, not a panic.
        assert!(store.tail_audit(5).await.is_err());
    }

    #[tokio::test]
    async fn verify_pages_through_the_log() {
        let store = Store::open_in_memory().await.unwrap();
        let entries = append_n(&store, 10).await;
        for page in [1, 3, 10, 11] {
            let v = store.verify_audit_paged(page).await.unwrap();
            assert!(v.ok, "page {page}: {v:?}");
            assert_eq!(v.entries, 10);
            assert_eq!(v.head_hash.as_deref(), Some(entries[9].hash.as_str()));
        }
        tamper(&store, "DELETE FROM audit_log WHERE seq IN (3, 4)").await;
        let v = store.verify_audit_paged(3).await.unwrap();
        assert_eq!(v.problems, ["entries 3..4 missing"]);
    }

    #[tokio::test]
    async fn problems_are_capped() {
        let store = Store::open_in_memory().await.unwrap();
        append_n(&store, MAX_PROBLEMS + 5).await;
        tamper(&store, "UPDATE audit_log SET statement = 'x'").await;
        let v = store.verify_audit().await.unwrap();
        assert!(!v.ok);
        assert_eq!(v.problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(
            v.problems[MAX_PROBLEMS],
            "... and 5 more problems not listed"
        );
    }

    /// Appenders in many tasks, through two pools on one file (as two
    /// processes would be), must serialise into one contiguous chain.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appenders_keep_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let a = file_store(dir.path()).await;
        let b = file_store(dir.path()).await;
        let mut tasks = Vec::new();
        for i in 0..50 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(
                async move { store.append_audit(&record(i)).await },
            ));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().unwrap().seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=50).collect::<Vec<i64>>());

        let v = a.verify_audit().await.unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.entries, 50);
        assert_eq!(b.tail_audit(50).await.unwrap().len(), 50);
    }

    #[test]
    fn audit_line_is_one_safe_line() {
        let mut r = record(1);
        r.statement = format!(
            "SELECT *\n\n  FROM   t\r\n WHERE x = '\u{1b}[31m' {}",
            "y".repeat(300)
        );
        r.verdict = Verdict::Refused;
        r.reason = Some("writes are\nnot allowed".to_owned());
        r.squad = None;
        let entry = AuditEntry {
            seq: 42,
            record: r,
            prev_hash: GENESIS_HASH.to_owned(),
            hash: GENESIS_HASH.to_owned(),
        };
        let line = audit_line(&entry);
        assert!(!line.contains(['\n', '\r', '\u{1b}']), "{line}");
        assert!(line.starts_with(
            "2024-05-01T12:00:00Z #42 refused slack:U1 squad=- source=orders-db rows=1 12ms run_query: SELECT * FROM t WHERE x = '?[31m' yyy"
        ), "{line}");
        assert!(
            line.ends_with("… [reason: writes are not allowed]"),
            "{line}"
        );
    }

    #[test]
    fn one_line_cuts_on_chars() {
        assert_eq!(one_line("  a \t b  ", 10), "a b");
        assert_eq!(one_line("ééééé", 5), "ééééé");
        assert_eq!(one_line("éééééé", 5), "ééééé…");
        assert_eq!(one_line("abcd efgh", 5), "abcd…");
        assert_eq!(one_line("a\u{202e}b", 5), "a?b");
        assert_eq!(one_line("", 5), "");
    }
}
