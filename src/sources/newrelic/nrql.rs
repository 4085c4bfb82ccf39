//! Bounding and scoping NRQL text without a full parser.
//!
//! NRQL puts its clauses (WHERE, FACET, SINCE, LIMIT, …) in any order after FROM,
//! so a lexer that knows quotes and parentheses finds the top-level clause
//! keywords; anything nested (function arguments, `FACET CASES(WHERE …)`,
//! subqueries) is left alone. Only `SELECT … FROM …` is accepted; a scoped
//! principal may not use subqueries, since a nested FROM would escape the added
//! condition.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("only `SELECT … FROM …` NRQL is allowed")]
    NotSelect,
    #[error("one statement only (no `;`)")]
    Multiple,
    #[error("unbalanced quotes or parentheses")]
    Unbalanced,
    #[error("more than one top-level {0} clause")]
    Repeated(&'static str),
    #[error("subqueries cannot be narrowed to your services; query the event type directly")]
    Subquery,
    #[error("`LIMIT` takes a number or MAX")]
    BadLimit,
    #[error("`{0}` is not a plain application name")]
    BadService(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Clause keywords that end a WHERE condition at the top level.
const CLAUSES: [&str; 12] = [
    "WHERE",
    "FACET",
    "SINCE",
    "UNTIL",
    "LIMIT",
    "TIMESERIES",
    "COMPARE",
    "ORDER",
    "WITH",
    "OFFSET",
    "EXTRAPOLATE",
    "SLIDE",
];

/// A top-level word: byte range and upper-cased text.
struct Word {
    start: usize,
    end: usize,
    upper: String,
}

/// Top-level words (outside quotes and parentheses), and whether a nested SELECT
/// appears.
fn words(query: &str) -> Result<(Vec<Word>, bool)> {
    let bytes = query.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut nested_select = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' | b'"' | b'`' => {
                let quote = c;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(Error::Unbalanced),
                        Some(b'\\') => i += 2,
                        Some(q) if *q == quote => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
            }
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(Error::Unbalanced);
                }
                i += 1;
            }
            b';' => return Err(Error::Multiple),
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.')
                {
                    i += 1;
                }
                let upper = query[start..i].to_ascii_uppercase();
                if depth == 0 {
                    out.push(Word {
                        start,
                        end: i,
                        upper,
                    });
                } else if upper == "SELECT" {
                    nested_select = true;
                }
            }
            _ => i += 1,
        }
    }
    if depth != 0 {
        return Err(Error::Unbalanced);
    }
    Ok((out, nested_select))
}

/// Checks and bounds an NRQL query: SELECT…FROM only; `LIMIT` capped at
/// `max_limit` (added as `default_limit` when absent); `SINCE 1 hour ago` added
/// when there is no SINCE; with `services`, `appName IN (…)` ANDed into WHERE.
/// Returns the query to run and notes on what changed.
pub fn bound(
    query: &str,
    services: Option<&[String]>,
    default_limit: u64,
    max_limit: u64,
) -> Result<(String, Vec<String>)> {
    let query = query.trim();
    let (ws, nested_select) = words(query)?;
    if ws.first().map(|w| w.upper.as_str()) != Some("SELECT") {
        return Err(Error::NotSelect);
    }
    let Some(from) = ws.iter().position(|w| w.upper == "FROM") else {
        return Err(Error::NotSelect);
    };
    let mut notes = Vec::new();
    let clause_at = |name: &str| -> Vec<usize> {
        ws.iter()
            .enumerate()
            .skip(from + 1)
            .filter(|(_, w)| w.upper == name)
            .map(|(i, _)| i)
            .collect()
    };
    let wheres = clause_at("WHERE");
    if wheres.len() > 1 {
        return Err(Error::Repeated("WHERE"));
    }
    let limits = clause_at("LIMIT");
    if limits.len() > 1 {
        return Err(Error::Repeated("LIMIT"));
    }
    // Edits as (byte range, replacement), applied from the end.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    if let Some(services) = services {
        if nested_select {
            return Err(Error::Subquery);
        }
        for s in services {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ' | '/'));
            if !plain {
                return Err(Error::BadService(s.clone()));
            }
        }
        let list: Vec<String> = services.iter().map(|s| format!("'{s}'")).collect();
        let condition = if list.is_empty() {
            // No visible service: a condition nothing matches.
            "appName IN ('')".to_string()
        } else {
            format!("appName IN ({})", list.join(", "))
        };
        match wheres.first() {
            Some(&w) => {
                let body_start = ws[w].end;
                let body_end = ws
                    .iter()
                    .skip(w + 1)
                    .find(|x| CLAUSES.contains(&x.upper.as_str()))
                    .map(|x| x.start)
                    .unwrap_or(query.len());
                let body = query[body_start..body_end].trim();
                edits.push((body_start, body_end, format!(" {condition} AND ({body}) ")));
            }
            None => {
                let at = ws
                    .iter()
                    .skip(from + 1)
                    .find(|x| CLAUSES.contains(&x.upper.as_str()))
                    .map(|x| x.start)
                    .unwrap_or(query.len());
                edits.push((at, at, format!(" WHERE {condition} ")));
            }
        }
    }
    match limits.first() {
        Some(&l) => {
            let value = ws.get(l + 1).ok_or(Error::BadLimit)?;
            let asked = if value.upper == "MAX" {
                u64::MAX
            } else {
                value.upper.parse::<u64>().map_err(|_| Error::BadLimit)?
            };
            if asked > max_limit {
                notes.push(format!("LIMIT lowered to {max_limit}"));
                edits.push((value.start, value.end, max_limit.to_string()));
            }
        }
        None => edits.push((query.len(), query.len(), format!(" LIMIT {default_limit}"))),
    }
    if clause_at("SINCE").is_empty() {
        notes.push("no SINCE given: the last hour".into());
        edits.push((query.len(), query.len(), " SINCE 1 hour ago".into()));
    }
    // Applied from the end so earlier offsets stay valid; insertions at the same
    // offset are applied last-pushed first, so they read in the order pushed.
    let mut edits: Vec<(usize, (usize, usize, String))> = edits.into_iter().enumerate().collect();
    edits.sort_by(|(ia, a), (ib, b)| b.0.cmp(&a.0).then(ib.cmp(ia)));
    let mut out = query.to_string();
    for (_, (start, end, text)) in edits {
        out.replace_range(start..end, &text);
    }
    let normalised = out.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok((normalised, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Vec<String> {
        vec!["checkout".into(), "billing".into()]
    }

    #[test]
    fn adds_scope_limit_and_since() {
        let (q, _) =
            bound("SELECT count(*) FROM Transaction", Some(&svc()), 100, 2000).expect("ok");
        assert_eq!(
            q,
            "SELECT count(*) FROM Transaction WHERE appName IN ('checkout', 'billing') LIMIT 100 SINCE 1 hour ago"
        );
        let (q, notes) = bound(
            "select count(*) from Transaction where a = 1 or b = 'x where' facet name since 3 hours ago limit max",
            Some(&svc()),
            100,
            2000,
        )
        .expect("ok");
        assert_eq!(
            q,
            "select count(*) from Transaction where appName IN ('checkout', 'billing') AND (a = 1 or b = 'x where') facet name since 3 hours ago limit 2000"
        );
        assert_eq!(notes, vec!["LIMIT lowered to 2000".to_string()]);
        let (q, _) = bound(
            "SELECT filter(count(*), WHERE error IS true) FROM Transaction SINCE 1 day ago",
            None,
            100,
            2000,
        )
        .expect("ok");
        assert_eq!(
            q,
            "SELECT filter(count(*), WHERE error IS true) FROM Transaction SINCE 1 day ago LIMIT 100"
        );
    }

    #[test]
    fn refuses() {
        let b = |q: &str| bound(q, Some(&svc()), 100, 2000).map(|_| ());
        assert_eq!(b("SHOW EVENT TYPES"), Err(Error::NotSelect));
        assert_eq!(b("SELECT 1"), Err(Error::NotSelect));
        assert_eq!(b("SELECT * FROM A; SELECT * FROM B"), Err(Error::Multiple));
        assert_eq!(b("SELECT * FROM A WHERE x = 'a"), Err(Error::Unbalanced));
        assert_eq!(b("SELECT * FROM A WHERE (x"), Err(Error::Unbalanced));
        assert_eq!(
            b("SELECT count(*) FROM A WHERE x IN (SELECT y FROM B)"),
            Err(Error::Subquery)
        );
        assert_eq!(
            b("SELECT * FROM A WHERE a=1 WHERE b=2"),
            Err(Error::Repeated("WHERE"))
        );
    }
}
