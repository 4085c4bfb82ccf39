//! One log line → timestamp, level, service, message. Never fails: what cannot be
//! parsed is simply absent (a line with no recognisable timestamp has none).

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use serde_json::{Map, Value};

/// How lines of a file are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// Per line: one starting with `{` is NDJSON, anything else plain text.
    Auto,
    Ndjson,
    Text,
}

impl LineFormat {
    /// The names, as validated by the configuration.
    pub const NAMES: &'static [&'static str] = crate::config::LOGFILE_FORMATS;

    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(LineFormat::Auto),
            "ndjson" => Some(LineFormat::Ndjson),
            "text" => Some(LineFormat::Text),
            _ => None,
        }
    }
}

/// Field names tried in order for NDJSON lines. A dotted name matches a flat key
/// (`"service.name": …`) or a nested object (`"service": {"name": …}`).
#[derive(Debug, Clone)]
pub struct FieldNames {
    pub timestamp: Vec<String>,
    pub message: Vec<String>,
    pub level: Vec<String>,
    pub service: Vec<String>,
}

impl FieldNames {
    pub const DEFAULT_TIMESTAMP: &'static [&'static str] =
        &["@timestamp", "timestamp", "time", "ts"];
    pub const DEFAULT_MESSAGE: &'static [&'static str] = &["message", "msg"];
    pub const DEFAULT_LEVEL: &'static [&'static str] = &["level", "severity", "log.level"];
    pub const DEFAULT_SERVICE: &'static [&'static str] = &["service", "service.name", "app"];

    /// The defaults, each replaced by the configured field when one is set.
    pub fn new(
        timestamp: Option<&str>,
        message: Option<&str>,
        level: Option<&str>,
        service: Option<&str>,
    ) -> Self {
        let pick = |configured: Option<&str>, defaults: &[&str]| match configured {
            Some(field) => vec![field.to_string()],
            None => defaults.iter().map(|s| s.to_string()).collect(),
        };
        FieldNames {
            timestamp: pick(timestamp, Self::DEFAULT_TIMESTAMP),
            message: pick(message, Self::DEFAULT_MESSAGE),
            level: pick(level, Self::DEFAULT_LEVEL),
            service: pick(service, Self::DEFAULT_SERVICE),
        }
    }

    fn all(&self) -> impl Iterator<Item = &String> {
        self.timestamp
            .iter()
            .chain(&self.message)
            .chain(&self.level)
            .chain(&self.service)
    }
}

impl Default for FieldNames {
    fn default() -> Self {
        FieldNames::new(None, None, None, None)
    }
}

/// A parsed line. `message` is the line itself when no message could be picked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub ts: Option<DateTime<Utc>>,
    /// Normalised: ERROR, WARN, INFO, DEBUG, FATAL, TRACE, or the line's own word
    /// upper-cased when it is none of those.
    pub level: Option<String>,
    pub service: Option<String>,
    pub message: String,
    /// The other fields of an NDJSON line (not the ones picked out above).
    pub json: Option<Map<String, Value>>,
}

pub fn parse_line(line: &str, format: LineFormat, fields: &FieldNames) -> Record {
    let json_like = line.trim_start().starts_with('{');
    let try_json = match format {
        LineFormat::Auto => json_like,
        LineFormat::Ndjson => true,
        LineFormat::Text => false,
    };
    if try_json {
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(line) {
            return parse_json(line, map, fields);
        }
    }
    // A line that is not valid JSON (cut at the line cap, or plain text in an NDJSON
    // file) is still searchable as text.
    parse_text(line)
}

fn parse_json(line: &str, mut map: Map<String, Value>, fields: &FieldNames) -> Record {
    let ts = fields
        .timestamp
        .iter()
        .find_map(|f| lookup(&map, f).and_then(json_timestamp));
    let level = fields
        .level
        .iter()
        .find_map(|f| lookup(&map, f).and_then(json_level));
    let service = fields
        .service
        .iter()
        .find_map(|f| lookup(&map, f).and_then(scalar_text))
        .filter(|s| !s.is_empty());
    let message = fields
        .message
        .iter()
        .find_map(|f| lookup(&map, f).and_then(scalar_text));
    let message = match message {
        Some(m) => m,
        None => line.trim().to_string(),
    };
    // `shift_remove` keeps the line's own field order for the reader.
    for name in fields.all() {
        map.shift_remove(name.as_str());
    }
    Record {
        ts,
        level,
        service,
        message,
        json: Some(map),
    }
}

/// A flat key first, then the dotted path through nested objects.
fn lookup<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = map.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut current = map.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn json_timestamp(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(s) => parse_time(s),
        Value::Number(n) => epoch(n.as_f64()?),
        Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Epoch seconds, milliseconds, microseconds or nanoseconds, told apart by size.
fn epoch(value: f64) -> Option<DateTime<Utc>> {
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let nanos = if value < 1e11 {
        value * 1e9
    } else if value < 1e14 {
        value * 1e6
    } else if value < 1e17 {
        value * 1e3
    } else {
        value
    };
    if nanos > i64::MAX as f64 {
        return None;
    }
    Some(DateTime::from_timestamp_nanos(nanos as i64))
}

fn json_level(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => normalize_level(s),
        // bunyan/pino numeric levels.
        Value::Number(n) => Some(
            match n.as_u64()? {
                0..=10 => "TRACE",
                11..=20 => "DEBUG",
                21..=30 => "INFO",
                31..=40 => "WARN",
                41..=50 => "ERROR",
                _ => "FATAL",
            }
            .to_string(),
        ),
        Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Upper-cases a level and folds synonyms, so `warning`, `Warn` and `WARN` filter alike.
pub fn normalize_level(raw: &str) -> Option<String> {
    let word = raw.trim();
    if word.is_empty() || word.len() > 32 {
        return None;
    }
    let upper = word.to_ascii_uppercase();
    Some(match upper.as_str() {
        "ERR" | "ERROR" => "ERROR".to_string(),
        "WARN" | "WARNING" => "WARN".to_string(),
        "INFO" | "INFORMATION" => "INFO".to_string(),
        "DEBUG" | "DBG" => "DEBUG".to_string(),
        "FATAL" | "CRITICAL" | "CRIT" | "PANIC" | "EMERG" | "ALERT" => "FATAL".to_string(),
        "TRACE" => "TRACE".to_string(),
        _ => upper,
    })
}

/// Only these words are taken as a level in plain text, so an ordinary first word
/// of a message is not mistaken for one.
fn text_level(token: &str) -> Option<String> {
    let word = token
        .trim_start_matches(['[', '('])
        .trim_end_matches([']', ')', ':']);
    match word.to_ascii_uppercase().as_str() {
        "ERROR" | "ERR" | "WARN" | "WARNING" | "INFO" | "DEBUG" | "FATAL" | "CRITICAL"
        | "TRACE" => normalize_level(word),
        _ => None,
    }
}

/// `[checkout-api]`: a bracketed name that is not a level.
fn bracketed_service(token: &str) -> Option<String> {
    let inner = token.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner.strip_suffix(':').unwrap_or(inner);
    let plausible = !inner.is_empty()
        && inner.len() <= 64
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && inner.chars().any(|c| c.is_ascii_alphabetic());
    (plausible && text_level(token).is_none()).then(|| inner.to_string())
}

fn key_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|token| {
        let value = token.strip_prefix(key)?.strip_prefix('=')?;
        let value = value.trim_matches(['"', '\'']).trim_end_matches([',', ';']);
        (!value.is_empty()).then_some(value)
    })
}

/// `<timestamp> <LEVEL> [service] message`, each part optional; `service=x` and
/// `level=x` tokens anywhere count too.
pub fn parse_text(line: &str) -> Record {
    let mut rest = line.trim();
    let mut ts = None;
    let bracketed = rest.strip_prefix('[');
    if let Some((parsed, used)) = parse_leading_timestamp(bracketed.unwrap_or(rest)) {
        let after = &bracketed.unwrap_or(rest)[used..];
        let after = if bracketed.is_some() {
            after.strip_prefix(']')
        } else {
            Some(after)
        };
        if let Some(after) = after {
            ts = Some(parsed);
            rest = after.trim_start();
        }
    }
    let mut level = None;
    let mut service = None;
    // At most a level and a service right after the timestamp, in either order.
    for _ in 0..2 {
        let token = rest.split_whitespace().next().unwrap_or_default();
        if token.is_empty() {
            break;
        }
        if level.is_none() {
            if let Some(found) = text_level(token) {
                level = Some(found);
                rest = rest[token.len()..].trim_start();
                continue;
            }
        }
        if service.is_none() {
            if let Some(found) = bracketed_service(token) {
                service = Some(found);
                rest = rest[token.len()..].trim_start();
                continue;
            }
        }
        break;
    }
    if service.is_none() {
        service = key_value(line, "service").map(str::to_string);
    }
    if level.is_none() {
        level = key_value(line, "level").and_then(normalize_level);
    }
    let message = if rest.is_empty() { line.trim() } else { rest };
    Record {
        ts,
        level,
        service,
        message: message.to_string(),
        json: None,
    }
}

/// A whole string as a time: RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC), or a
/// date alone (midnight UTC).
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Some((ts, used)) = parse_leading_timestamp(text) {
        return (used == text.len()).then_some(ts);
    }
    if text.len() == 10 {
        let date = parse_date(text.as_bytes())?;
        return Some(Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN)));
    }
    None
}

fn digits(bytes: &[u8], at: usize, n: usize) -> Option<u32> {
    let slice = bytes.get(at..at + n)?;
    let mut value = 0u32;
    for b in slice {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(b - b'0');
    }
    Some(value)
}

fn parse_date(b: &[u8]) -> Option<NaiveDate> {
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(b, 0, 4)? as i32, digits(b, 5, 2)?, digits(b, 8, 2)?)
}

/// A timestamp at the start of `text`, and how many bytes it took. Without a zone
/// the time is taken as UTC.
pub fn parse_leading_timestamp(text: &str) -> Option<(DateTime<Utc>, usize)> {
    let b = text.as_bytes();
    let date = parse_date(b)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let (hour, minute) = (digits(b, 11, 2)?, digits(b, 14, 2)?);
    let second = if b.get(16) == Some(&b':') {
        digits(b, 17, 2)?
    } else {
        return None;
    };
    let mut at = 19;
    let mut nanos = 0u32;
    if matches!(b.get(at), Some(b'.' | b',')) && b.get(at + 1).is_some_and(u8::is_ascii_digit) {
        at += 1;
        let mut scale = 100_000_000u32;
        while let Some(d) = b.get(at).filter(|d| d.is_ascii_digit()) {
            nanos += u32::from(d - b'0') * scale;
            scale /= 10;
            at += 1;
        }
    }
    // A leap second (":60") is folded into the last nanosecond of the minute.
    let time = if second == 60 {
        NaiveTime::from_hms_nano_opt(hour, minute, 59, 999_999_999)?
    } else {
        NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?
    };
    let local = NaiveDateTime::new(date, time);
    let mut offset_secs = 0i64;
    match b.get(at) {
        Some(b'Z' | b'z') => at += 1,
        Some(sign @ (b'+' | b'-')) => {
            let sign = if *sign == b'-' { -1 } else { 1 };
            let hours = digits(b, at + 1, 2);
            if let Some(hours) = hours {
                let (minutes, used) = if b.get(at + 3) == Some(&b':') {
                    (digits(b, at + 4, 2), 6)
                } else if let Some(m) = digits(b, at + 3, 2) {
                    (Some(m), 5)
                } else {
                    (Some(0), 3)
                };
                if let Some(minutes) = minutes.filter(|m| *m < 60 && hours < 24) {
                    offset_secs = sign * (i64::from(hours) * 3600 + i64::from(minutes) * 60);
                    at += used;
                }
            }
        }
        _ => {}
    }
    let utc = local.checked_sub_signed(TimeDelta::try_seconds(offset_secs)?)?;
    Some((Utc.from_utc_datetime(&utc), at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        parse_time(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn timestamps_in_the_usual_shapes() {
        let base = at("2026-01-15T10:12:03Z");
        assert_eq!(at("2026-01-15 10:12:03"), base);
        assert_eq!(at("2026-01-15T11:12:03+01:00"), base);
        assert_eq!(at("2026-01-15T05:12:03-0500"), base);
        assert_eq!(
            at("2026-01-15T10:12:03.250Z") - base,
            TimeDelta::milliseconds(250)
        );
        assert_eq!(
            at("2026-01-15 10:12:03,5") - base,
            TimeDelta::milliseconds(500)
        );
        assert_eq!(at("2026-01-15"), at("2026-01-15T00:00:00Z"));
        for bad in [
            "2026-13-15T10:12:03Z",
            "yesterday",
            "2026-01-15T25:00:00Z",
            "2026-01-15T10:12",
            "",
            "2026-01-15T10:12:03Zjunk",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn text_lines_yield_level_service_and_message() {
        let r = parse_text("2026-01-15T10:14:03.120Z ERROR [payment-service] pool exhausted");
        assert_eq!(r.level.as_deref(), Some("ERROR"));
        assert_eq!(r.service.as_deref(), Some("payment-service"));
        assert_eq!(r.message, "pool exhausted");
        assert!(r.ts.is_some());
        let r = parse_text("[2026-01-15 10:14:03] [warning] slow query service=inventory took 2s");
        assert_eq!(r.level.as_deref(), Some("WARN"));
        assert_eq!(r.service.as_deref(), Some("inventory"));
        assert_eq!(r.message, "slow query service=inventory took 2s");
        let r = parse_text("just words here");
        assert_eq!((r.ts, r.level, r.service), (None, None, None));
        assert_eq!(r.message, "just words here");
        let r = parse_text("2026-01-15 10:14:03 level=error msg done");
        assert_eq!(r.level.as_deref(), Some("ERROR"));
    }

    #[test]
    fn json_lines_pick_fields_flat_or_nested() {
        let fields = FieldNames::default();
        let r = parse_line(
            r#"{"@timestamp":"2026-01-15T10:00:00Z","log":{"level":"warning"},"service":{"name":"api"},"msg":"hi","trace_id":"abc"}"#,
            LineFormat::Auto,
            &fields,
        );
        assert_eq!(r.level.as_deref(), Some("WARN"));
        assert_eq!(r.service.as_deref(), Some("api"));
        assert_eq!(r.message, "hi");
        assert_eq!(
            r.json.and_then(|m| m.get("trace_id").cloned()),
            Some(Value::from("abc"))
        );
        let r = parse_line(
            r#"{"ts":1768471200000,"level":50,"msg":"x"}"#,
            LineFormat::Auto,
            &fields,
        );
        assert_eq!(r.ts, Some(at("2026-01-15T10:00:00Z")));
        assert_eq!(r.level.as_deref(), Some("ERROR"));
        // Broken JSON is text, never an error.
        let r = parse_line(r#"{"level":"error","#, LineFormat::Ndjson, &fields);
        assert_eq!(r.message, r#"{"level":"error","#);
    }
}
