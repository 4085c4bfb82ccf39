//! Redaction of secrets and personal data in evidence, before it reaches the model,
//! a chat or an exported file.
//!
//! One [`Redactor`] is built per configuration (regexes compiled once, plus a
//! `RegexSet` so the common case, a cell with nothing to mask, costs one scan). It
//! walks every [`Content`] shape: table cells (and whole columns whose name looks
//! like a secret), JSON strings (and values under keys that look like secrets), and
//! text. A mask names what it replaced (`[redacted:email]`) so a reader knows
//! something was there; the number of masks goes into the evidence item's note.

use std::sync::{Arc, OnceLock};

use regex::{Captures, Regex, RegexSet};
use serde_json::Value;

pub use crate::config::RedactionConfig;
use crate::evidence::{Attachment, Content, EvidenceItem};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The message names the pattern's position, never its text (it may hold a secret).
    #[error("redaction pattern #{index} does not compile: {message}")]
    BadPattern { index: usize, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Names (of JSON keys, `key=value` fields and table columns) whose values are masked.
const SECRET_NAME: &str = r"(?i)^[A-Za-z0-9_.-]*?(password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|client[_-]?secret|credentials?|authorization|session[_-]?id|cookie)$";

/// The default rules: (label, pattern). A `secret` group limits the mask to it.
const DEFAULTS: &[(&str, &str)] = &[
    (
        "email",
        r"(?i)\b[A-Z0-9._%+-]{1,64}@[A-Z0-9-]{1,63}(?:\.[A-Z0-9-]{1,63})*\.[A-Z]{2,24}\b",
    ),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}",
    ),
    (
        "bearer",
        r"(?i)\b(?:bearer|basic|token)\s+(?P<secret>[A-Za-z0-9._~+/=-]{12,})",
    ),
    ("aws-key", r"\b(?:AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b"),
    (
        "token",
        r"\b(?:sk-(?:ant-|live-|test-|proj-)?[A-Za-z0-9_-]{16,}|xox[abposr]-[A-Za-z0-9-]{10,}|gh[pousr]_[A-Za-z0-9]{30,}|glpat-[A-Za-z0-9_-]{20,})",
    ),
    // `password=hunter2`, `"api_key": "abc"`, `token: abc`: the value only.
    (
        "secret-field",
        r#"(?i)\b[A-Za-z0-9_.-]*?(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|client[_-]?secret)["']?\s*[:=]\s*(?P<secret>"[^"]*"|'[^']*'|[^\s,;&"'}\]]+)"#,
    ),
    // Card networks start with 3–6 (epoch milliseconds start with 1), and the Luhn
    // check below keeps most other long numbers.
    ("card", r"\b[3-6]\d(?:[ -]?\d){11,17}\b"),
];

#[derive(Debug)]
struct Rule {
    label: String,
    regex: Regex,
    luhn: bool,
}

/// Masks secrets in evidence. Cheap to share: clone the `Arc` from [`Redactor::shared_default`].
#[derive(Debug)]
pub struct Redactor {
    rules: Vec<Rule>,
    set: RegexSet,
    /// None only in the empty fallback set.
    secret_name: Option<Regex>,
}

/// What one pass masked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Masked {
    pub count: usize,
}

impl Redactor {
    pub fn new(config: &RedactionConfig) -> Result<Self> {
        let mut rules = Vec::new();
        if !config.disable_defaults {
            for (label, pattern) in DEFAULTS {
                let regex = Regex::new(pattern).map_err(|e| Error::BadPattern {
                    index: rules.len(),
                    message: e.to_string(),
                })?;
                rules.push(Rule {
                    label: (*label).to_string(),
                    regex,
                    luhn: *label == "card",
                });
            }
        }
        for (index, pattern) in config.extra_patterns.iter().enumerate() {
            let regex = compile_extra(index, pattern)?;
            rules.push(Rule {
                label: "custom".into(),
                regex,
                luhn: false,
            });
        }
        let set = RegexSet::new(rules.iter().map(|r| r.regex.as_str())).map_err(|e| {
            Error::BadPattern {
                index: 0,
                message: e.to_string(),
            }
        })?;
        let secret_name = Regex::new(SECRET_NAME).map_err(|e| Error::BadPattern {
            index: 0,
            message: e.to_string(),
        })?;
        Ok(Redactor {
            rules,
            set,
            secret_name: Some(secret_name),
        })
    }

    /// The default rules, compiled once per process.
    pub fn shared_default() -> Arc<Redactor> {
        static DEFAULT: OnceLock<Arc<Redactor>> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                // The defaults are constants covered by tests; should one ever fail to
                // compile, masking with no rules beats refusing every investigation.
                let redactor = Redactor::new(&RedactionConfig::default()).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "default redaction rules do not compile");
                    Redactor::empty()
                });
                Arc::new(redactor)
            })
            .clone()
    }

    fn empty() -> Redactor {
        Redactor {
            rules: Vec::new(),
            set: RegexSet::empty(),
            secret_name: None,
        }
    }

    /// Whether a field or column name says its value is a secret.
    pub fn is_secret_name(&self, name: &str) -> bool {
        self.secret_name
            .as_ref()
            .is_some_and(|re| re.is_match(name.trim_matches(|c| c == '"' || c == '\'')))
    }

    /// Masks `text`, adding to `masked`.
    pub fn redact_text(&self, text: &str, masked: &mut Masked) -> Option<String> {
        let hits = self.set.matches(text);
        if !hits.matched_any() {
            return None;
        }
        let mut out = text.to_string();
        for index in hits.iter() {
            let Some(rule) = self.rules.get(index) else {
                continue;
            };
            let replaced = rule.regex.replace_all(&out, |caps: &Captures| {
                let whole = caps.get(0).map(|m| m.as_str()).unwrap_or_default();
                if rule.luhn && !luhn_valid(whole) {
                    return whole.to_string();
                }
                masked.count += 1;
                let mask = format!("[redacted:{}]", rule.label);
                match caps.name("secret") {
                    Some(secret) => {
                        let start = secret.start() - caps.get(0).map_or(0, |m| m.start());
                        let end = start + secret.as_str().len();
                        format!("{}{mask}{}", &whole[..start], &whole[end..])
                    }
                    None => mask,
                }
            });
            if let std::borrow::Cow::Owned(s) = replaced {
                out = s;
            }
        }
        Some(out)
    }

    /// Masks a JSON value in place: strings by the text rules, every scalar under a
    /// key named like a secret entirely.
    pub fn redact_json(&self, value: &mut Value, masked: &mut Masked) {
        match value {
            Value::String(s) => {
                if let Some(new) = self.redact_text(s, masked) {
                    *s = new;
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.redact_json(item, masked);
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    if self.is_secret_name(key) && !matches!(item, Value::Null) {
                        if let Value::Object(_) | Value::Array(_) = item {
                            self.redact_json(item, masked);
                        } else {
                            masked.count += 1;
                            *item = Value::String("[redacted:secret-field]".into());
                        }
                    } else {
                        self.redact_json(item, masked);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    pub fn redact_content(&self, content: &mut Content, masked: &mut Masked) {
        match content {
            Content::Table(table) => {
                let secret_columns: Vec<bool> = table
                    .columns
                    .iter()
                    .map(|c| self.is_secret_name(&c.name))
                    .collect();
                for row in &mut table.rows {
                    for (i, cell) in row.iter_mut().enumerate() {
                        if secret_columns.get(i).copied().unwrap_or(false)
                            && !matches!(cell, Value::Null)
                        {
                            masked.count += 1;
                            *cell = Value::String("[redacted:secret-field]".into());
                        } else {
                            self.redact_json(cell, masked);
                        }
                    }
                }
            }
            Content::Json(value) => self.redact_json(value, masked),
            Content::Text(text) => {
                if let Some(new) = self.redact_text(text, masked) {
                    *text = new;
                }
            }
        }
    }

    /// Masks an evidence item's content, error and note, and says how many values
    /// were masked in its note.
    pub fn redact_item(&self, item: &mut EvidenceItem) -> Masked {
        let mut masked = Masked::default();
        if let Some(content) = &mut item.content {
            self.redact_content(content, &mut masked);
        }
        for attachment in &mut item.attachments {
            self.redact_attachment(attachment, &mut masked);
        }
        for text in [&mut item.error, &mut item.note].into_iter().flatten() {
            if let Some(new) = self.redact_text(text, &mut masked) {
                *text = new;
            }
        }
        if masked.count > 0 {
            let line = format!("{} value(s) redacted", masked.count);
            item.note = Some(match item.note.take() {
                Some(note) => format!("{note}; {line}"),
                None => line,
            });
        }
        masked
    }
}

impl Redactor {
    /// Text attachments (NDJSON, JSON, CSV, plain text) are masked like content:
    /// NDJSON a document at a time, so secret-named keys are caught too. Images
    /// are left alone (they are drawn from numbers, never from text).
    pub fn redact_attachment(&self, attachment: &mut Attachment, masked: &mut Masked) {
        let media = attachment.media_type.as_str();
        let textual = media.starts_with("text/")
            || media == "application/json"
            || media == "application/x-ndjson";
        if !textual {
            return;
        }
        let text = String::from_utf8_lossy(&attachment.bytes).into_owned();
        let before = masked.count;
        let out = if media == "application/x-ndjson" {
            text.split('\n')
                .map(|line| match serde_json::from_str::<Value>(line) {
                    Ok(mut doc) => {
                        self.redact_json(&mut doc, masked);
                        doc.to_string()
                    }
                    Err(_) => self
                        .redact_text(line, masked)
                        .unwrap_or_else(|| line.to_string()),
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            self.redact_text(&text, masked).unwrap_or(text)
        };
        if masked.count > before {
            attachment.bytes = out.into_bytes();
            attachment.size = attachment.bytes.len();
        }
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor::new(&RedactionConfig::default()).unwrap_or_else(|_| Redactor::empty())
    }
}

/// Compiles an extra pattern, with a size limit so a configured pattern cannot make
/// every evidence item slow.
pub fn compile_extra(index: usize, pattern: &str) -> Result<Regex> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| Error::BadPattern {
            index,
            // regex errors quote the pattern; say only what kind of error it is.
            message: match e {
                regex::Error::CompiledTooBig(_) => "too large".into(),
                regex::Error::Syntax(_) => "syntax error".into(),
                _ => "invalid".into(),
            },
        })
}

/// The Luhn checksum over the digits of `text` (separators ignored), 13–19 digits.
pub fn luhn_valid(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{Column, Table};
    use serde_json::json;

    fn redact(text: &str) -> String {
        let mut masked = Masked::default();
        Redactor::shared_default()
            .redact_text(text, &mut masked)
            .unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn defaults_mask_the_usual_secrets() {
        let cases = [
            (
                "mail ana.lopez+x@shop.example.com now",
                "mail [redacted:email] now",
            ),
            (
                "Authorization: Bearer abcdef0123456789xyz",
                "Authorization: Bearer [redacted:bearer]",
            ),
            (
                "key AKIAIOSFODNN7EXAMPLE used",
                "key [redacted:aws-key] used",
            ),
            ("sk-ant-api03-abcdefghijklmnop1234", "[redacted:token]"),
            ("slack xoxb-1234567890-abcdef", "slack [redacted:token]"),
            (
                "login password=hunter2 ok",
                "login password=[redacted:secret-field] ok",
            ),
            (
                r#"{"api_key": "abc123"}"#,
                r#"{"api_key": [redacted:secret-field]}"#,
            ),
            (
                "card 4111 1111 1111 1111 charged",
                "card [redacted:card] charged",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "input: {input}");
        }
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(redact(&format!("t={jwt}")), "t=[redacted:jwt]");
    }

    #[test]
    fn ordinary_numbers_and_words_stay() {
        for text in [
            "order 1234567890123 failed", // 13 digits, not Luhn-valid
            "max_tokens=4096 token_count=12",
            "took 1700000000000 ms",
            "connection pool exhausted after 30000ms",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("5500-0000-0000-0004"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("1234"));
    }

    #[test]
    fn json_and_tables_are_walked() {
        let redactor = Redactor::shared_default();
        let mut content = Content::Json(json!({
            "user": {"email": "a@b.io", "password": 1234, "token": null},
            "hits": ["ok", "call me at x@y.org"],
        }));
        let mut masked = Masked::default();
        redactor.redact_content(&mut content, &mut masked);
        assert_eq!(
            content,
            Content::Json(json!({
                "user": {"email": "[redacted:email]", "password": "[redacted:secret-field]", "token": null},
                "hits": ["ok", "call me at [redacted:email]"],
            }))
        );
        assert_eq!(masked.count, 3);

        let mut table = Table::new(vec![
            Column {
                name: "id".into(),
                type_name: "INT8".into(),
            },
            Column {
                name: "api_key".into(),
                type_name: "TEXT".into(),
            },
        ]);
        table.rows.push(vec![json!(1), json!("plain")]);
        let mut content = Content::Table(table);
        let mut masked = Masked::default();
        redactor.redact_content(&mut content, &mut masked);
        let Content::Table(table) = content else {
            panic!("shape changed");
        };
        assert_eq!(
            table.rows[0],
            vec![json!(1), json!("[redacted:secret-field]")]
        );
    }

    #[test]
    fn text_attachments_are_masked_images_are_not() {
        let redactor = Redactor::shared_default();
        let ndjson = "{\"user\":\"a@b.io\",\"password\":\"pw\"}\nnot json a@b.io";
        let mut masked = Masked::default();
        let mut a = Attachment::new(
            "hits.ndjson",
            "application/x-ndjson",
            String::new(),
            ndjson.as_bytes().to_vec(),
        )
        .unwrap_or_else(|| panic!("attachment"));
        redactor.redact_attachment(&mut a, &mut masked);
        let text = String::from_utf8_lossy(&a.bytes).into_owned();
        assert_eq!(
            text,
            "{\"user\":\"[redacted:email]\",\"password\":\"[redacted:secret-field]\"}\nnot json [redacted:email]"
        );
        assert_eq!((masked.count, a.size), (3, a.bytes.len()));
        let mut png = Attachment::new("c.png", "image/png", String::new(), b"a@b.io".to_vec())
            .unwrap_or_else(|| panic!("attachment"));
        redactor.redact_attachment(&mut png, &mut masked);
        assert_eq!(png.bytes, b"a@b.io");
    }

    #[test]
    fn configured_patterns() {
        let config = RedactionConfig {
            extra_patterns: vec![r"ACME-(?P<secret>\d{6})".into()],
            disable_defaults: true,
        };
        let redactor = Redactor::new(&config).unwrap_or_else(|e| panic!("{e}"));
        let mut masked = Masked::default();
        assert_eq!(
            redactor.redact_text("id ACME-123456 by a@b.io", &mut masked),
            Some("id ACME-[redacted:custom] by a@b.io".into())
        );
        let bad = RedactionConfig {
            extra_patterns: vec!["(unclosed".into()],
            disable_defaults: false,
        };
        let err = Redactor::new(&bad).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("redaction pattern #0 does not compile: syntax error")
        );
    }
}
