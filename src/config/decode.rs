//! Typed decoding that reports every problem, not just the first.
//!
//! serde stops at the first error, so a file with three mistakes would take three
//! edit-and-retry rounds. Instead each section and each list element is decoded on
//! its own, and after an error the offending key is removed and decoding retried,
//! so every independent mistake is reported in one run, each with its path.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ConfigError;

/// Most retries per decoded unit: every retry removes one key, so this bounds work
/// on hostile input while being far more than any real entry has keys.
const MAX_ATTEMPTS: usize = 64;

/// Decodes `value` as `T`, appending every error found to `errors` with paths under `base`.
pub fn decode_all<T: DeserializeOwned>(
    file: &str,
    base: &str,
    mut value: Value,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let result: Result<T, serde_path_to_error::Error<serde_json::Error>> =
            serde_path_to_error::deserialize(&value);
        let err = match result {
            Ok(decoded) => return Some(decoded),
            Err(err) => err,
        };
        let path = err.path().to_string();
        let raw = err.inner().to_string();
        let (path, message) = refine(&path, &raw);
        let full = join_path(base, &path);
        // A missing field whose wrong-typed value we already reported and removed is
        // the same mistake seen twice: say it once.
        let duplicate = missing_field(&raw)
            .map(|field| removed.contains(&join_path(&full, field)))
            .unwrap_or(false);
        if !duplicate {
            errors.push(ConfigError::new(file, full.clone(), message));
        }
        if !remove_at(&mut value, &path) {
            return None;
        }
        removed.push(full);
    }
    errors.push(ConfigError::new(
        file,
        base.to_string(),
        format!("too many errors; stopped after {MAX_ATTEMPTS}"),
    ));
    None
}

pub fn join_path(base: &str, path: &str) -> String {
    match (base.is_empty(), path.is_empty() || path == ".") {
        (true, _) => path.trim_start_matches('.').to_string(),
        (false, true) => base.to_string(),
        (false, false) if path.starts_with('[') => format!("{base}{path}"),
        (false, false) => format!("{base}.{path}"),
    }
}

fn missing_field(raw: &str) -> Option<&str> {
    let rest = raw.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Turns serde's messages into ones a person editing YAML understands, and for an
/// unknown key points the path at the key itself and suggests the closest known one.
fn refine(path: &str, raw: &str) -> (String, String) {
    let path = if path == "." {
        String::new()
    } else {
        path.to_string()
    };
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let (field, expected) = split_backticked(rest);
        let known = backticked_list(expected);
        let key_path = join_path(&path, &field);
        // serde_path_to_error already includes the unknown key in the path in some
        // versions; avoid doubling it.
        let key_path = if path.ends_with(&field) {
            path.clone()
        } else {
            key_path
        };
        return (key_path, unknown_message("key", &field, &known));
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let (variant, expected) = split_backticked(rest);
        let known = backticked_list(expected);
        return (path, unknown_message("value", &variant, &known));
    }
    if let Some(field) = missing_field(raw) {
        return (path, format!("missing required key `{field}`"));
    }
    if let Some(rest) = raw.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return (
                path,
                format!("expected {}, found {}", friendly_expected(expected), found),
            );
        }
    }
    if let Some(rest) = raw.strip_prefix("invalid value: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return (
                path,
                format!("expected {}, found {}", friendly_expected(expected), found),
            );
        }
    }
    (path, raw.to_string())
}

fn unknown_message(what: &str, name: &str, known: &[String]) -> String {
    let mut message = format!("unknown {what} `{name}`");
    if let Some(best) = did_you_mean(name, known) {
        message.push_str(&format!(", did you mean `{best}`?"));
    }
    if !known.is_empty() {
        message.push_str(&format!(" (expected one of: {})", known.join(", ")));
    }
    message
}

pub fn did_you_mean<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate.as_str())
}

fn split_backticked(rest: &str) -> (String, &str) {
    match rest.split_once('`') {
        Some((name, tail)) => (name.to_string(), tail),
        None => (rest.to_string(), ""),
    }
}

fn backticked_list(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

fn friendly_expected(expected: &str) -> String {
    let e = expected.trim();
    match e {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            let range = match e {
                "u16" => " between 0 and 65535",
                "u8" => " between 0 and 255",
                "u32" | "u64" | "usize" => " (zero or more)",
                _ => "",
            };
            format!("an integer{range}")
        }
        "f32" | "f64" => "a number".to_string(),
        "a boolean" | "bool" => "true or false".to_string(),
        "a string" | "string" => "a string".to_string(),
        "a sequence" => "a list".to_string(),
        "a map" => "a mapping".to_string(),
        other if other.starts_with("struct ") => "a mapping".to_string(),
        other if other.starts_with("a sequence") => "a list".to_string(),
        other => other.to_string(),
    }
}

/// Removes the node at a serde_path_to_error path (`a.b[2].c`). Returns false when
/// nothing could be removed, which means retrying would loop on the same error.
fn remove_at(value: &mut Value, path: &str) -> bool {
    let segments = parse_path(path);
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = value;
    for segment in parents {
        let next = match (segment, node) {
            (Segment::Key(key), Value::Object(map)) => map.get_mut(key),
            (Segment::Index(i), Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match (last, node) {
        (Segment::Key(key), Value::Object(map)) => map.remove(key).is_some(),
        // Replacing keeps later indices stable so their paths stay right.
        (Segment::Index(i), Value::Array(items)) => match items.get_mut(*i) {
            Some(slot) if !slot.is_null() => {
                *slot = Value::Null;
                true
            }
            _ => false,
        },
        _ => false,
    }
}

enum Segment {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.') {
        if part.is_empty() {
            continue;
        }
        let mut rest = part;
        if let Some(pos) = rest.find('[') {
            let key = &rest[..pos];
            if !key.is_empty() {
                out.push(Segment::Key(key.to_string()));
            }
            rest = &rest[pos..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(end) = stripped.find(']') else { break };
                if let Ok(i) = stripped[..end].parse::<usize>() {
                    out.push(Segment::Index(i));
                }
                rest = &stripped[end + 1..];
            }
        } else {
            out.push(Segment::Key(rest.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Db {
        name: String,
        port: Option<u16>,
        host: Option<String>,
    }

    fn errors_of(value: Value) -> Vec<String> {
        let mut errors = Vec::new();
        let _ = decode_all::<Db>("f.yaml", "dbs[1]", value, &mut errors);
        errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    #[test]
    fn reports_every_error_in_one_entry() {
        let errs = errors_of(serde_json::json!({"name": "a", "port": "x", "hots": "h"}));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs
            .iter()
            .any(|e| e.starts_with("dbs[1].port: expected an integer")));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("dbs[1].hots: unknown key `hots`, did you mean `host`?")));
    }

    #[test]
    fn wrong_typed_required_field_is_reported_once() {
        let errs = errors_of(serde_json::json!({"name": 3}));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("dbs[1].name: expected a string"));
    }

    #[test]
    fn missing_field_is_named() {
        let errs = errors_of(serde_json::json!({"port": 1}));
        assert_eq!(
            errs,
            vec!["dbs[1]: missing required key `name`".to_string()]
        );
    }

    #[test]
    fn out_of_range_port() {
        let errs = errors_of(serde_json::json!({"name": "a", "port": 70000}));
        assert!(errs[0].contains("between 0 and 65535"), "{errs:?}");
    }
}
