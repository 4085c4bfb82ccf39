//! Scoping PromQL to a grant by rewriting it, the way prom-label-proxy does: every
//! vector selector in the query gets one more matcher per scoped label
//! (`namespace=~"^(?:a|b)$"`). PromQL ANDs all matchers of a selector, including
//! several on the same label, so whatever the model wrote, a series outside the
//! grant cannot match.
//!
//! This needs only a lexer, not a full parser: a selector is a metric name (an
//! identifier that is not a keyword, a function call, a grouping label or an
//! aggregation modifier's list) or a `{…}` block. Anything the lexer does not
//! recognise is refused rather than passed on, so an unusual spelling can not slip
//! a selector past the rewrite.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("PromQL not understood at byte {at}: {why}")]
    Syntax { at: usize, why: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Longest query accepted.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;

/// Words that are never metric names in PromQL.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// Aggregation operators: keywords in PromQL, so never metric names, and may be
/// followed by `by (…)` / `without (…)` before their `(`.
const AGGREGATORS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised list of label names (not selectors).
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// One label the grant scopes, with the values allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub label: String,
    pub values: Vec<String>,
}

impl Scope {
    /// The matcher added to every selector: an anchored alternation of the escaped
    /// values, written as a PromQL double-quoted string.
    pub fn matcher(&self) -> String {
        let alternatives: Vec<String> = self.values.iter().map(|v| regex::escape(v)).collect();
        let pattern = format!("^(?:{})$", alternatives.join("|"));
        format!("{}=~{}", self.label, quote(&pattern))
    }
}

/// A PromQL double-quoted string literal.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `query` with every vector selector narrowed by `scopes`. With no scopes the query
/// is returned as is (after the same lexing, so it is checked the same way).
pub fn scope_query(query: &str, scopes: &[Scope]) -> Result<String> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(Error::Syntax {
            at: MAX_QUERY_BYTES,
            why: format!("query longer than {MAX_QUERY_BYTES} bytes"),
        });
    }
    let matchers: Vec<String> = scopes.iter().map(Scope::matcher).collect();
    let injected = matchers.join(",");
    let bytes = query.as_bytes();
    let mut out = String::with_capacity(query.len() + 64);
    let mut i = 0;
    // True right after a label-list keyword: the next `(…)` holds label names.
    let mut expect_label_list = false;
    let mut selectors = 0usize;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                out.push(c as char);
                i += 1;
            }
            b'#' => {
                // A comment runs to the end of the line; drop it (it could hide nothing,
                // but the rewritten query need not carry it).
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' | b'`' => {
                let end = string_end(bytes, i)?;
                out.push_str(&query[i..end]);
                i = end;
            }
            b'{' => {
                let end = brace_end(bytes, i)?;
                push_selector_braces(&mut out, &query[i..end], &injected);
                selectors += 1;
                i = end;
            }
            b'[' => {
                // Range or subquery durations: `[5m]`, `[1h:30s]`.
                let end = query[i..]
                    .find(']')
                    .map(|e| i + e + 1)
                    .ok_or(Error::Syntax {
                        at: i,
                        why: "unclosed `[`".into(),
                    })?;
                let inner = &query[i + 1..end - 1];
                if !inner
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b' ')
                {
                    return Err(Error::Syntax {
                        at: i,
                        why: "a range must be a duration like [5m] or [1h:1m]".into(),
                    });
                }
                out.push_str(&query[i..end]);
                i = end;
            }
            b'(' if expect_label_list => {
                let end = query[i..]
                    .find(')')
                    .map(|e| i + e + 1)
                    .ok_or(Error::Syntax {
                        at: i,
                        why: "unclosed label list".into(),
                    })?;
                let inner = &query[i + 1..end - 1];
                if !inner
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_, \t\n".contains(&b))
                {
                    return Err(Error::Syntax {
                        at: i,
                        why: "a grouping list holds label names only".into(),
                    });
                }
                out.push_str(&query[i..end]);
                expect_label_list = false;
                i = end;
            }
            b'0'..=b'9' | b'.' => {
                // Numbers, durations after `offset` (5m), hex, exponents: all
                // alphanumerics and dots.
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'_')
                {
                    i += 1;
                }
                out.push_str(&query[start..i]);
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
                {
                    i += 1;
                }
                let word = &query[start..i];
                let lower = word.to_ascii_lowercase();
                let next = next_non_space(bytes, i);
                if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                    out.push_str(word);
                    expect_label_list = next == Some(b'(');
                    continue;
                }
                if KEYWORDS.contains(&lower.as_str())
                    || AGGREGATORS.contains(&lower.as_str())
                    || next == Some(b'(')
                {
                    // A keyword, or a function/aggregation name.
                    out.push_str(word);
                    continue;
                }
                // `@ start()` / `@ end()` are functions (handled above); a bare word
                // now is a metric name: a selector.
                selectors += 1;
                out.push_str(word);
                let after_space = skip_space(bytes, i);
                if bytes.get(after_space) == Some(&b'{') {
                    let end = brace_end(bytes, after_space)?;
                    push_selector_braces(&mut out, &query[after_space..end], &injected);
                    i = end;
                } else if !injected.is_empty() {
                    out.push('{');
                    out.push_str(&injected);
                    out.push('}');
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'=' | b'!' | b'<' | b'>' | b'(' | b')'
            | b',' | b'@' => {
                out.push(c as char);
                i += 1;
            }
            other => {
                return Err(Error::Syntax {
                    at: i,
                    why: format!("unexpected character `{}`", other as char),
                })
            }
        }
    }
    if selectors == 0 && !query.trim().is_empty() && !injected.is_empty() {
        // A pure number expression touches no series; nothing to scope.
        tracing::debug!("query has no selector");
    }
    Ok(out)
}

/// Writes a `{…}` block with the scope matchers added first.
fn push_selector_braces(out: &mut String, block: &str, injected: &str) {
    let inner = block[1..block.len() - 1].trim();
    out.push('{');
    out.push_str(injected);
    if !inner.is_empty() {
        if !injected.is_empty() {
            out.push(',');
        }
        out.push_str(inner.trim_end_matches(','));
    }
    out.push('}');
}

fn next_non_space(bytes: &[u8], from: usize) -> Option<u8> {
    bytes.get(skip_space(bytes, from)).copied()
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// End (exclusive) of the string literal starting at `start`.
fn string_end(bytes: &[u8], start: usize) -> Result<usize> {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote != b'`' => i += 2,
            b if b == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(Error::Syntax {
        at: start,
        why: "unclosed string".into(),
    })
}

/// End (exclusive) of the `{…}` block at `start`, skipping strings inside it. Only
/// label matchers may appear there: names, operators, commas and strings.
fn brace_end(bytes: &[u8], start: usize) -> Result<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' | b'`' => i = string_end(bytes, i)?,
            b'}' => return Ok(i + 1),
            b if b.is_ascii_alphanumeric() || b"_=!~, \t\n\r".contains(&b) => i += 1,
            other => {
                return Err(Error::Syntax {
                    at: i,
                    why: format!("unexpected `{}` in a label matcher list", other as char),
                })
            }
        }
    }
    Err(Error::Syntax {
        at: start,
        why: "unclosed `{`".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(values: &[&str]) -> Vec<Scope> {
        vec![Scope {
            label: "namespace".into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }]
    }

    fn scoped(query: &str) -> String {
        scope_query(query, &ns(&["payments"])).unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    const M: &str = r#"namespace=~"^(?:payments)$""#;

    #[test]
    fn every_selector_is_narrowed() {
        assert_eq!(scoped("up"), format!("up{{{M}}}"));
        assert_eq!(
            scoped(r#"rate(http_requests_total{code=~"5.."}[5m])"#),
            format!(r#"rate(http_requests_total{{{M},code=~"5.."}}[5m])"#)
        );
        assert_eq!(
            scoped(
                r#"sum by (service) (rate(errors_total[5m])) / on(service) group_left sum(rate(requests_total[5m]))"#
            ),
            format!(
                r#"sum by (service) (rate(errors_total{{{M}}}[5m])) / on(service) group_left sum(rate(requests_total{{{M}}}[5m]))"#
            )
        );
        assert_eq!(
            scoped(r#"{__name__=~".+"}"#),
            format!(r#"{{{M},__name__=~".+"}}"#)
        );
        assert_eq!(
            scoped("max_over_time(x[1h:5m]) offset 5m > bool 3"),
            format!("max_over_time(x{{{M}}}[1h:5m]) offset 5m > bool 3")
        );
        assert_eq!(
            scoped("histogram_quantile(0.95, sum(rate(lat_bucket[5m])) by (le))"),
            format!("histogram_quantile(0.95, sum(rate(lat_bucket{{{M}}}[5m])) by (le))")
        );
        // A matcher on the scoped label is kept and ANDed: it cannot widen.
        assert_eq!(
            scoped(r#"up{namespace="identity"}"#),
            format!(r#"up{{{M},namespace="identity"}}"#)
        );
    }

    #[test]
    fn values_are_escaped() {
        let q = scope_query("up", &ns(&["a.b", "c\"d"])).unwrap_or_default();
        assert_eq!(q, r#"up{namespace=~"^(?:a\\.b|c\"d)$"}"#);
    }

    #[test]
    fn odd_input_is_refused() {
        for q in [
            "up{",
            r#"up{a="b"#,
            "rate(x[5m; drop])",
            "sum by (a{b}) (x)",
            "x ; y",
            "up{a=\"b\"} \\ 1",
        ] {
            assert!(scope_query(q, &ns(&["p"])).is_err(), "{q}");
        }
    }

    #[test]
    fn no_scope_leaves_the_query() {
        assert_eq!(
            scope_query("sum(rate(x[5m]))", &[]).unwrap_or_default(),
            "sum(rate(x[5m]))"
        );
    }
}
