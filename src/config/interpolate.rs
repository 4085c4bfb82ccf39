//! `${VAR}` interpolation on raw config text, before YAML parsing.
//!
//! Supported forms (as in docker compose):
//!
//! | form              | VAR unset        | VAR set but empty | VAR non-empty |
//! |-------------------|------------------|-------------------|---------------|
//! | `${VAR}`          | error            | empty             | value         |
//! | `${VAR:-default}` | default          | default           | value         |
//! | `${VAR-default}`  | default          | empty             | value         |
//! | `${VAR:?message}` | error `VAR: message` | error         | value         |
//! | `${VAR?message}`  | error `VAR: message` | empty         | value         |
//!
//! `$$` is a literal `$`; a `$` followed by anything else stays as it is. Defaults
//! may contain further references (`${A:-${B:-x}}`); they are only looked up when
//! the default is used. A reference must end on the line it starts on, and inside
//! a default only `${` nests, so a default cannot contain a lone `}`.
//!
//! References inside YAML comments are left untouched so that a commented-out
//! `# password: ${OLD}` is not an error. A `#` starts a comment when it is at the
//! start of a line or preceded by a space or tab, outside quoted scalars and
//! outside block scalars (`|`, `>`). When unsure the scanner prefers "not a
//! comment": a spurious error is better than a silently unreplaced `${VAR}`.
//!
//! Values are inserted verbatim, never quoted or escaped: a value containing
//! YAML-special characters (`: `, ` #`, a leading `*`, `&`, `!`, quotes, ...)
//! would change the document's structure. Write such references inside a
//! quoted scalar in the file, e.g. `password: "${PG_PASSWORD}"`.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;

/// Looks variables up; the real one reads the process environment, tests pass a map.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment. Non-UTF-8 values count as unset.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        // Names std may reject (or that older std panics on) cannot be set anyway.
        if name.is_empty() || name.contains(['=', '\0']) {
            return None;
        }
        std::env::var(name).ok()
    }
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// One problem at one place in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct InterpolationError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, counted in chars, of the `$` that starts the reference.
    pub column: usize,
    pub message: String,
}

/// For callers that want a single error value (e.g. to use `?` with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Every problem found in one file, in file order.
    #[error("{}", ErrorList(.0))]
    Invalid(Vec<InterpolationError>),
}

impl From<Vec<InterpolationError>> for Error {
    fn from(errors: Vec<InterpolationError>) -> Self {
        Error::Invalid(errors)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

struct ErrorList<'a>(&'a [InterpolationError]);

impl fmt::Display for ErrorList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Replaces every `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`
/// and `${VAR?message}` in `text` (see the module docs). `file` is only used in
/// error messages. All errors (every missing variable, every syntax error) are
/// returned together, sorted by position.
pub fn interpolate(
    text: &str,
    file: &str,
    env: &dyn Env,
) -> std::result::Result<String, Vec<InterpolationError>> {
    // Fast path, and guarantees text without `$` comes back byte-identical.
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut scanner = Scanner {
        chars: text.chars().collect(),
        pos: 0,
        env,
        errors: Vec::new(),
    };
    let out = scanner.document();
    if scanner.errors.is_empty() {
        return Ok(out);
    }
    let lines = LineIndex::new(&scanner.chars);
    let mut errors: Vec<InterpolationError> = scanner
        .errors
        .into_iter()
        .map(|(at, message)| {
            let (line, column) = lines.position(at);
            InterpolationError {
                file: file.to_owned(),
                line,
                column,
                message,
            }
        })
        .collect();
    // Nested references report before their parent; callers expect file order.
    errors.sort_by_key(|e| (e.line, e.column));
    Err(errors)
}

/// Deeper nesting is certainly a mistake, and recursion must stay bounded.
const MAX_DEPTH: usize = 8;

/// How much of an invalid name is quoted back in an error.
const MAX_SHOWN_NAME: usize = 40;

const UNTERMINATED: &str = "unterminated ${ (missing `}`)";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// A reference ran into the end of its line; the error is already recorded and
/// the scanner stands at that line end.
struct Unterminated;

/// A default ran into the end of its line; `reported` says whether a nested
/// reference already recorded the error.
struct Open {
    reported: bool,
}

struct Scanner<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Env,
    /// (char index of the offending `$`, message)
    errors: Vec<(usize, String)>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn error(&mut self, at: usize, message: String) {
        self.errors.push((at, message));
    }

    /// The whole text, line by line, tracking just enough YAML to find comments.
    fn document(&mut self) -> String {
        let mut out = String::with_capacity(self.chars.len());
        // Carried across lines: quoted scalars may span lines.
        let mut quote = Quote::None;
        // While inside a block scalar: the indentation its content lines have at least.
        let mut block: Option<usize> = None;
        loop {
            let line_start = self.pos;
            let starts_in_quote = quote != Quote::None;
            let in_block = match block {
                Some(min_indent) => {
                    let (indent, blank) = self.indentation(line_start);
                    let inside = blank || indent >= min_indent;
                    if !inside {
                        block = None;
                    }
                    inside
                }
                None => false,
            };
            let mut comment_start = None;
            // Previous char on this line outside references; None at line start.
            let mut prev: Option<char> = None;
            while let Some(c) = self.peek() {
                if c == '\n' {
                    break;
                }
                if c == '$' {
                    // An unterminated reference is already reported and has
                    // consumed the rest of the line, so there is nothing to do.
                    let _ = self.dollar(&mut out, true, 0);
                    prev = Some('$');
                    continue;
                }
                if !in_block {
                    match quote {
                        Quote::Double => {
                            if c == '\\' && matches!(self.peek_at(1), Some('"' | '\\')) {
                                // An escaped quote or backslash does not end the scalar.
                                out.push(c);
                                self.pos += 1;
                                prev = Some(c);
                                if let Some(escaped) = self.peek() {
                                    out.push(escaped);
                                    self.pos += 1;
                                    prev = Some(escaped);
                                }
                                continue;
                            }
                            if c == '"' {
                                quote = Quote::None;
                            }
                        }
                        Quote::Single => {
                            if c == '\'' {
                                if self.peek_at(1) == Some('\'') {
                                    // `''` is an escaped quote; the scalar goes on.
                                    out.push_str("''");
                                    self.pos += 2;
                                    prev = Some('\'');
                                    continue;
                                }
                                quote = Quote::None;
                            }
                        }
                        Quote::None => {
                            let after_space = prev.is_none_or(is_yaml_space);
                            if c == '#' && after_space {
                                comment_start = Some(self.pos);
                                while let Some(c) = self.peek().filter(|&c| c != '\n') {
                                    out.push(c);
                                    self.pos += 1;
                                }
                                break;
                            }
                            // A quote opens a quoted scalar only where a node can
                            // start, so the apostrophe in `it's` does not hide a
                            // later comment. Being generous here errs towards
                            // interpolating, which fails loudly rather than silently.
                            let node_start =
                                after_space || prev.is_some_and(|p| "[{,:".contains(p));
                            if c == '"' && node_start {
                                quote = Quote::Double;
                            } else if c == '\'' && node_start {
                                quote = Quote::Single;
                            }
                        }
                    }
                }
                out.push(c);
                self.pos += 1;
                prev = Some(c);
            }
            if !in_block && !starts_in_quote && quote == Quote::None {
                let end = comment_start.unwrap_or(self.pos);
                if let Some(min_indent) =
                    block_scalar_content_indent(self.chars.get(line_start..end).unwrap_or(&[]))
                {
                    block = Some(min_indent);
                }
            }
            if self.peek() == Some('\n') {
                out.push('\n');
                self.pos += 1;
            } else {
                return out;
            }
        }
    }

    /// Leading spaces of the line at `start`, and whether the line is blank.
    fn indentation(&self, start: usize) -> (usize, bool) {
        let line = self.chars.get(start..).unwrap_or(&[]);
        let indent = line.iter().take_while(|&&c| c == ' ').count();
        let blank = line
            .iter()
            .take_while(|&&c| c != '\n')
            .all(|&c| c == ' ' || c == '\t' || c == '\r');
        (indent, blank)
    }

    /// At a `$`: the `$$` escape, a reference, or a plain `$`.
    fn dollar(
        &mut self,
        out: &mut String,
        eval: bool,
        depth: usize,
    ) -> std::result::Result<(), Unterminated> {
        match self.peek_at(1) {
            Some('$') => {
                out.push('$');
                self.pos += 2;
                Ok(())
            }
            Some('{') => self.reference(out, eval, depth),
            _ => {
                out.push('$');
                self.pos += 1;
                Ok(())
            }
        }
    }

    /// At `${`. Appends the value to `out` when `eval`; without `eval` (an unused
    /// default) only syntax is checked, so unset variables there are no error.
    fn reference(
        &mut self,
        out: &mut String,
        eval: bool,
        depth: usize,
    ) -> std::result::Result<(), Unterminated> {
        let start = self.pos;
        self.pos += 2;
        if depth >= MAX_DEPTH {
            return self.give_up(
                start,
                format!("variable references nested more than {MAX_DEPTH} deep"),
            );
        }
        let name_start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        let name: String = self.chars[name_start..self.pos].iter().collect();
        let valid = name.chars().next().is_some_and(|c| !c.is_ascii_digit());
        match (self.peek(), valid) {
            (None | Some('\n'), _) => {
                self.error(start, UNTERMINATED.to_owned());
                Err(Unterminated)
            }
            (Some('}'), true) => {
                self.pos += 1;
                if eval {
                    match self.env.get(&name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            self.error(start, format!("environment variable {name} is not set"))
                        }
                    }
                }
                Ok(())
            }
            (Some(':'), true) => match self.peek_at(1) {
                Some('-') => {
                    self.pos += 2;
                    self.default(start, &name, true, out, eval, depth)
                }
                Some('?') => {
                    self.pos += 2;
                    self.required(start, &name, true, out, eval)
                }
                _ => self.give_up(start, unsupported(&name)),
            },
            (Some('-'), true) => {
                self.pos += 1;
                self.default(start, &name, false, out, eval, depth)
            }
            (Some('?'), true) => {
                self.pos += 1;
                self.required(start, &name, false, out, eval)
            }
            (Some(_), _) => {
                let shown = self.shown_name(name_start);
                let message = if shown.is_empty() {
                    "missing variable name after `${`".to_owned()
                } else {
                    format!("invalid variable name `{shown}`")
                };
                self.give_up(start, message)
            }
        }
    }

    /// After `${NAME-` or `${NAME:-`.
    fn default(
        &mut self,
        start: usize,
        name: &str,
        empty_too: bool,
        out: &mut String,
        eval: bool,
        depth: usize,
    ) -> std::result::Result<(), Unterminated> {
        // Look the variable up first so the default is only evaluated when used.
        let value = if eval { self.env.get(name) } else { None };
        let use_default = eval
            && match &value {
                None => true,
                Some(value) => empty_too && value.is_empty(),
            };
        let mut default = String::new();
        if let Err(Open { reported }) = self.pieces(&mut default, use_default, depth + 1) {
            if !reported {
                self.error(start, UNTERMINATED.to_owned());
            }
            return Err(Unterminated);
        }
        if use_default {
            out.push_str(&default);
        } else if let Some(value) = value {
            out.push_str(&value);
        }
        Ok(())
    }

    /// After `${NAME?` or `${NAME:?`. The message is kept as written.
    fn required(
        &mut self,
        start: usize,
        name: &str,
        empty_too: bool,
        out: &mut String,
        eval: bool,
    ) -> std::result::Result<(), Unterminated> {
        let Some(message) = self.raw_until_close() else {
            self.error(start, UNTERMINATED.to_owned());
            return Err(Unterminated);
        };
        if !eval {
            return Ok(());
        }
        match self.env.get(name) {
            Some(value) if !(empty_too && value.is_empty()) => out.push_str(&value),
            _ => {
                let message = message.trim();
                let message = if message.is_empty() {
                    format!("{name} is required")
                } else {
                    format!("{name}: {message}")
                };
                self.error(start, message);
            }
        }
        Ok(())
    }

    /// A default's text up to its closing `}`, with escapes and nested references.
    fn pieces(
        &mut self,
        out: &mut String,
        eval: bool,
        depth: usize,
    ) -> std::result::Result<(), Open> {
        loop {
            match self.peek() {
                None | Some('\n') => return Err(Open { reported: false }),
                Some('}') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some('$') => {
                    if self.dollar(out, eval, depth).is_err() {
                        return Err(Open { reported: true });
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// Text up to the `}` closing the current reference (nested `${` counted),
    /// consumed; None when the line ends first.
    fn raw_until_close(&mut self) -> Option<String> {
        let mut text = String::new();
        let mut depth = 0usize;
        loop {
            match self.peek() {
                None | Some('\n') => return None,
                Some('$') if self.peek_at(1) == Some('$') => {
                    text.push('$');
                    self.pos += 2;
                }
                Some('$') if self.peek_at(1) == Some('{') => {
                    text.push_str("${");
                    self.pos += 2;
                    depth += 1;
                }
                Some('}') => {
                    self.pos += 1;
                    match depth.checked_sub(1) {
                        None => return Some(text),
                        Some(outer) => depth = outer,
                    }
                    text.push('}');
                }
                Some(c) => {
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// Records `message` for a reference that cannot be evaluated and skips past
    /// its `}`, so scanning can go on and find further errors.
    fn give_up(&mut self, start: usize, message: String) -> std::result::Result<(), Unterminated> {
        if self.raw_until_close().is_some() {
            self.error(start, message);
            Ok(())
        } else {
            // The missing `}` is the more useful thing to hear about.
            self.error(start, UNTERMINATED.to_owned());
            Err(Unterminated)
        }
    }

    /// What the user wrote where a name was expected, shortened for the message.
    fn shown_name(&self, from: usize) -> String {
        let mut shown: String = self
            .chars
            .get(from..)
            .unwrap_or(&[])
            .iter()
            .take_while(|&&c| !matches!(c, '}' | ':' | '-' | '?' | '\n'))
            .take(MAX_SHOWN_NAME + 1)
            .collect();
        if shown.chars().count() > MAX_SHOWN_NAME {
            shown = shown.chars().take(MAX_SHOWN_NAME).collect();
            shown.push('…');
        }
        shown
    }
}

fn unsupported(name: &str) -> String {
    format!("unsupported syntax after `${{{name}`: expected `}}`, `:-`, `-`, `:?` or `?`")
}

fn is_yaml_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// When `line` (without its comment) opens a block scalar (`key: |`, `- >-`,
/// `key: !tag |2`), the indentation its content lines have at least.
fn block_scalar_content_indent(line: &[char]) -> Option<usize> {
    let indent = line.iter().take_while(|&&c| c == ' ').count();
    let mut i = indent;
    let mut last_dash = None;
    // Compact sequence entries: `- - key: |`.
    while line.get(i) == Some(&'-') && line.get(i + 1).is_none_or(|&c| is_yaml_space(c)) {
        last_dash = Some(i);
        i += 1;
        while line.get(i).is_some_and(|&c| is_yaml_space(c)) {
            i += 1;
        }
    }
    let rest: String = line.get(i..).unwrap_or(&[]).iter().collect();
    let tokens: Vec<&str> = rest
        .split([' ', '\t', '\r'])
        .filter(|t| !t.is_empty())
        .collect();
    let (last, before) = tokens.split_last()?;
    if !is_block_indicator(last) {
        return None;
    }
    let is_property = |t: &&str| t.starts_with('!') || t.starts_with('&');
    match before.iter().rposition(|t| !is_property(t)) {
        // The scalar is the node itself: content is deeper than its `-`, or,
        // alone on its line, at least as deep as the indicator (its parent is
        // shallower).
        None => Some(last_dash.map_or(indent, |dash| dash + 1)),
        // A mapping value: content is deeper than the key.
        Some(key_end) if before[key_end].ends_with(':') => Some(i + 1),
        Some(_) => None,
    }
}

/// `|` or `>` with optional indentation (1-9) and chomping (`+`/`-`) indicators.
fn is_block_indicator(token: &str) -> bool {
    let mut chars = token.chars();
    if !matches!(chars.next(), Some('|' | '>')) {
        return false;
    }
    let rest: Vec<char> = chars.collect();
    let digits = rest.iter().filter(|c| c.is_ascii_digit()).count();
    let chomps = rest.iter().filter(|c| matches!(c, '+' | '-')).count();
    rest.len() <= 2
        && digits <= 1
        && chomps <= 1
        && rest.iter().all(|c| matches!(c, '1'..='9' | '+' | '-'))
}

/// Maps char indices to 1-based (line, column).
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(chars: &[char]) -> Self {
        let starts = std::iter::once(0)
            .chain(
                chars
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| c == '\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        LineIndex { starts }
    }

    fn position(&self, at: usize) -> (usize, usize) {
        // starts[0] == 0 <= at, so line >= 1.
        let line = self.starts.partition_point(|&start| start <= at);
        let start = line
            .checked_sub(1)
            .and_then(|i| self.starts.get(i))
            .copied()
            .unwrap_or(0);
        (line, at - start + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FILE: &str = "config/sources.yaml";

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The rendered errors, or the output prefixed with "ok: ".
    fn run(text: &str, vars: &[(&str, &str)]) -> std::result::Result<String, Vec<String>> {
        interpolate(text, FILE, &env(vars))
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn substitutes_every_form() {
        let vars = [("A", "alpha"), ("EMPTY", ""), ("B", "beta")];
        let cases: &[(&str, &str)] = &[
            ("x: ${A}", "x: alpha"),
            ("x: ${EMPTY}", "x: "),
            ("${A}${B}", "alphabeta"),
            ("x: \"${A}\"", "x: \"alpha\""),
            ("${A:-dflt}", "alpha"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${UNSET:-dflt}", "dflt"),
            ("${UNSET:-}", ""),
            ("${A-dflt}", "alpha"),
            ("${EMPTY-dflt}", ""),
            ("${UNSET-dflt}", "dflt"),
            ("${A:?needed}", "alpha"),
            ("${EMPTY?needed}", ""),
            ("${A?needed}", "alpha"),
            (
                "${UNSET:-http://localhost:9200/x?y=1}",
                "http://localhost:9200/x?y=1",
            ),
            ("${UNSET:-a - b :- c}", "a - b :- c"),
            ("${UNSET:-${A}}", "alpha"),
            ("${UNSET:-pre-${B}-post}", "pre-beta-post"),
            ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
            ("${UNSET:-${EMPTY-}}", ""),
            // An unused default is not evaluated, so its unset variable is no error.
            ("${A:-${MISSING}}", "alpha"),
            ("${A-${MISSING:?boom}}", "alpha"),
            ("${_under_score9}", "u"),
        ];
        let mut vars = vars.to_vec();
        vars.push(("_under_score9", "u"));
        for (input, expected) in cases {
            assert_eq!(
                run(input, &vars),
                Ok((*expected).to_owned()),
                "input: {input:?}"
            );
        }
    }

    #[test]
    fn dollar_escapes_and_plain_dollars() {
        let vars = [("A", "alpha")];
        let cases: &[(&str, &str)] = &[
            ("$$", "$"),
            ("$${A}", "${A}"),
            ("$$$${A}", "$${A}"),
            ("$$${A}", "$alpha"),
            ("$A", "$A"),
            ("price: 5$", "price: 5$"),
            ("a$b $ c", "a$b $ c"),
            ("$", "$"),
            ("${UNSET:-$$}", "$"),
            ("${UNSET:-$${A}}", "${A}"),
            ("${UNSET:-5$}", "5$"),
            ("regex: ^a$", "regex: ^a$"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                run(input, &vars),
                Ok((*expected).to_owned()),
                "input: {input:?}"
            );
        }
    }

    #[test]
    fn reports_errors_with_positions() {
        let vars = [("EMPTY", ""), ("A", "alpha")];
        let cases: &[(&str, &[&str])] = &[
            (
                "x: ${ES_PASSWORD}",
                &["config/sources.yaml:1:4: environment variable ES_PASSWORD is not set"],
            ),
            (
                "a: 1\nb: 2\nhost:   ${DB_HOST:?database host is required}",
                &["config/sources.yaml:3:9: DB_HOST: database host is required"],
            ),
            (
                "${EMPTY:?must not be empty}",
                &["config/sources.yaml:1:1: EMPTY: must not be empty"],
            ),
            ("${UNSET?gone}", &["config/sources.yaml:1:1: UNSET: gone"]),
            ("${UNSET:?}", &["config/sources.yaml:1:1: UNSET is required"]),
            ("${EMPTY:?  }", &["config/sources.yaml:1:1: EMPTY is required"]),
            (
                "${UNSET:?see ${DOCS} for help}",
                &["config/sources.yaml:1:1: UNSET: see ${DOCS} for help"],
            ),
            (
                "a\nb\nc\nx:  ${A",
                &["config/sources.yaml:4:5: unterminated ${ (missing `}`)"],
            ),
            (
                "x: ${A:-fallback\ny: 1",
                &["config/sources.yaml:1:4: unterminated ${ (missing `}`)"],
            ),
            // Only the innermost unterminated reference is reported.
            (
                "${A:-${B:-x",
                &["config/sources.yaml:1:6: unterminated ${ (missing `}`)"],
            ),
            (
                "${A:-${B}",
                &["config/sources.yaml:1:1: unterminated ${ (missing `}`)"],
            ),
            ("${1X}", &["config/sources.yaml:1:1: invalid variable name `1X`"]),
            (
                "${MY VAR}",
                &["config/sources.yaml:1:1: invalid variable name `MY VAR`"],
            ),
            (
                "${ÄBC}",
                &["config/sources.yaml:1:1: invalid variable name `ÄBC`"],
            ),
            (
                "${}",
                &["config/sources.yaml:1:1: missing variable name after `${`"],
            ),
            (
                "${:-x}",
                &["config/sources.yaml:1:1: missing variable name after `${`"],
            ),
            (
                "${A:=x}",
                &["config/sources.yaml:1:1: unsupported syntax after `${A`: expected `}`, `:-`, `-`, `:?` or `?`"],
            ),
            (
                "${A+x}",
                &["config/sources.yaml:1:1: invalid variable name `A+x`"],
            ),
            // A syntax error in an unused default is still reported.
            (
                "${A:-${1X}}",
                &["config/sources.yaml:1:6: invalid variable name `1X`"],
            ),
            // A used default reports its own missing variable, at its own position.
            (
                "${UNSET:-${MISSING}}",
                &["config/sources.yaml:1:10: environment variable MISSING is not set"],
            ),
        ];
        for (input, expected) in cases {
            let expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
            assert_eq!(run(input, &vars), Err(expected), "input: {input:?}");
        }
    }

    #[test]
    fn collects_all_errors_in_file_order() {
        let text = "\
es:
  password: ${ES_PASSWORD}
  user: ${ES_USER:-elastic}
db:
  host: ${DB_HOST:?database host is required} ${1X}
  port: ${DB_PORT
  name: ${DB_NAME} and ${ES_PASSWORD}
";
        let errors =
            interpolate(text, FILE, &env(&[("DB_PORT", "5432")])).expect_err("several problems");
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "config/sources.yaml:2:13: environment variable ES_PASSWORD is not set",
                "config/sources.yaml:5:9: DB_HOST: database host is required",
                "config/sources.yaml:5:47: invalid variable name `1X`",
                "config/sources.yaml:6:9: unterminated ${ (missing `}`)",
                "config/sources.yaml:7:9: environment variable DB_NAME is not set",
                "config/sources.yaml:7:24: environment variable ES_PASSWORD is not set",
            ]
        );
        assert_eq!(
            errors[0],
            InterpolationError {
                file: FILE.to_owned(),
                line: 2,
                column: 13,
                message: "environment variable ES_PASSWORD is not set".to_owned(),
            }
        );
        let joined = Error::from(errors).to_string();
        assert_eq!(joined.lines().count(), 6);
        assert!(joined.starts_with("config/sources.yaml:2:13: "));
    }

    #[test]
    fn columns_count_chars_not_bytes() {
        assert_eq!(
            run("naïve: 日本 ${MISSING}", &[]),
            Err(vec![
                "config/sources.yaml:1:11: environment variable MISSING is not set".to_owned()
            ])
        );
        assert_eq!(
            run("ü: x\n🎉: ${A}", &[("A", "ß")]),
            Ok("ü: x\n🎉: ß".to_owned())
        );
        assert_eq!(
            run("a: ${A:-é${MISSING}}", &[]),
            Err(vec![
                "config/sources.yaml:1:10: environment variable MISSING is not set".to_owned()
            ])
        );
    }

    #[test]
    fn crlf_lines_count_like_lf() {
        assert_eq!(
            run("a: 1\r\nb: ${MISSING}\r\n", &[]),
            Err(vec![
                "config/sources.yaml:2:4: environment variable MISSING is not set".to_owned()
            ])
        );
        assert_eq!(
            run("a: ${A}\r\n# ${OLD}\r\n", &[("A", "x")]),
            Ok("a: x\r\n# ${OLD}\r\n".to_owned())
        );
    }

    #[test]
    fn leaves_comments_alone() {
        let vars = [("X", "ex")];
        let cases: &[(&str, &str)] = &[
            ("# password: ${OLD}", "# password: ${OLD}"),
            ("  # password: ${OLD}", "  # password: ${OLD}"),
            ("a: 1 # was ${OLD}", "a: 1 # was ${OLD}"),
            ("a: ${X}\t# was ${OLD} $$", "a: ex\t# was ${OLD} $$"),
            ("a: ${X} # ${OLD", "a: ex # ${OLD"),
            ("a: it's # ${OLD}", "a: it's # ${OLD}"),
            ("- ${X} # ${OLD}", "- ex # ${OLD}"),
            // Not comments: no space before `#`.
            ("url: http://h/p#${X}", "url: http://h/p#ex"),
            ("a: ${X}#${X}", "a: ex#ex"),
            ("a: b#c ${X}", "a: b#c ex"),
            // Not comments: inside quoted scalars.
            ("a: 'x # ${X}'", "a: 'x # ex'"),
            ("a: \"x # ${X}\"", "a: \"x # ex\""),
            ("a: 'it''s # ${X}' # ${OLD}", "a: 'it''s # ex' # ${OLD}"),
            ("a: \"q\\\" # ${X}\" # ${OLD}", "a: \"q\\\" # ex\" # ${OLD}"),
            ("a: \"bs\\\\\" # ${OLD}", "a: \"bs\\\\\" # ${OLD}"),
            (
                "a: [\"# ${X}\", '# ${X}'] # ${OLD}",
                "a: [\"# ex\", '# ex'] # ${OLD}",
            ),
            ("{a: \"# ${X}\",b:'# ${X}'}", "{a: \"# ex\",b:'# ex'}"),
            // A `#` inside a default belongs to the reference.
            ("a: ${UNSET:-x # y}", "a: x # y"),
            // Quoted scalars span lines.
            (
                "a: \"one\n  # ${X}\"\nb: 1 # ${OLD}",
                "a: \"one\n  # ex\"\nb: 1 # ${OLD}",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                run(input, &vars),
                Ok((*expected).to_owned()),
                "input: {input:?}"
            );
        }
    }

    #[test]
    fn block_scalars_have_no_comments() {
        let vars = [("X", "ex")];
        let cases: &[(&str, &str)] = &[
            (
                "script: |\n  echo hi # ${X}\n\n  # ${X}\nnext: 1 # ${OLD}\n",
                "script: |\n  echo hi # ex\n\n  # ex\nnext: 1 # ${OLD}\n",
            ),
            (
                "a:\n  run: >-\n    # ${X}\n  # ${OLD}\n",
                "a:\n  run: >-\n    # ex\n  # ${OLD}\n",
            ),
            ("- |\n  # ${X}\n- # ${OLD}\n", "- |\n  # ex\n- # ${OLD}\n"),
            (
                "- name: n\n  run: |2+ # ${OLD}\n    # ${X}\n  # ${OLD}\n",
                "- name: n\n  run: |2+ # ${OLD}\n    # ex\n  # ${OLD}\n",
            ),
            (
                "- run: |\n    # ${X}\n  # ${OLD}\n",
                "- run: |\n    # ex\n  # ${OLD}\n",
            ),
            (
                "k: !!str &anchor |\n  # ${X}\n# ${OLD}",
                "k: !!str &anchor |\n  # ex\n# ${OLD}",
            ),
            ("k:\n  |\n  # ${X}\n# ${OLD}", "k:\n  |\n  # ex\n# ${OLD}"),
            // Not block scalars: the indicator is inside a plain scalar or comment.
            ("k: a |\n  # ${OLD}", "k: a |\n  # ${OLD}"),
            ("k: 1 # |\n  # ${OLD}", "k: 1 # |\n  # ${OLD}"),
            ("k: '|'\n  # ${OLD}", "k: '|'\n  # ${OLD}"),
            ("k: |x\n  # ${OLD}", "k: |x\n  # ${OLD}"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                run(input, &vars),
                Ok((*expected).to_owned()),
                "input: {input:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let depth = 10_000;
        let text = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
        let errors = interpolate(&text, FILE, &env(&[])).expect_err("too deep");
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].message,
            format!("variable references nested more than {MAX_DEPTH} deep")
        );
        let ok = format!("{}x{}", "${A:-".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert_eq!(run(&ok, &[]), Ok("x".to_owned()));
    }

    #[test]
    fn long_invalid_names_are_shortened() {
        let name = "9".repeat(100);
        let errors = run(&format!("${{{name}}}"), &[]).expect_err("invalid");
        assert_eq!(
            errors,
            [format!(
                "config/sources.yaml:1:1: invalid variable name `{}…`",
                "9".repeat(MAX_SHOWN_NAME)
            )]
        );
    }

    #[test]
    fn process_env_reads_the_environment() {
        // PATH is set in any sane test environment; no mutation, tests run in parallel.
        assert_eq!(ProcessEnv.get("PATH"), std::env::var("PATH").ok());
        assert_eq!(
            ProcessEnv.get("INVESTIGATOR_SURELY_UNSET_VARIABLE_42"),
            None
        );
        assert_eq!(ProcessEnv.get(""), None);
        assert_eq!(ProcessEnv.get("A=B"), None);
        assert_eq!(ProcessEnv.get("A\0B"), None);
    }

    proptest! {
        #[test]
        fn never_panics(text in any::<String>()) {
            let _ = interpolate(&text, FILE, &env(&[("A", "x"), ("E", "")]));
        }

        #[test]
        fn never_panics_on_reference_soup(
            text in "[${}:?#'\"\\\\ \t\nAE1_|>!&-]{0,80}"
        ) {
            let _ = interpolate(&text, FILE, &env(&[("A", "x"), ("E", "")]));
        }

        #[test]
        fn errors_point_into_the_text(text in "[${}:?#'\" \nAB1_-]{0,60}") {
            if let Err(errors) = interpolate(&text, FILE, &env(&[("A", "x")])) {
                prop_assert!(!errors.is_empty());
                let lines: Vec<&str> = text.split('\n').collect();
                for error in errors {
                    let line = lines.get(error.line - 1).copied().unwrap_or_default();
                    let at: String = line.chars().skip(error.column - 1).take(2).collect();
                    prop_assert_eq!(at, "${", "{} in {:?}", error, text);
                }
            }
        }

        #[test]
        fn text_without_dollar_is_unchanged(text in any::<String>().prop_filter("no $", |t| !t.contains('$'))) {
            prop_assert_eq!(interpolate(&text, FILE, &env(&[])), Ok(text.clone()));
        }

        #[test]
        fn yamlish_text_without_dollar_is_unchanged(text in "[a-z#:'\"|> \n\t-]{0,80}") {
            prop_assert_eq!(interpolate(&text, FILE, &env(&[])), Ok(text.clone()));
        }

        #[test]
        // No `#`: comments are copied verbatim, escapes included.
        fn escaped_dollars_round_trip(text in "[a-z${}:?' \n-]{0,60}") {
            let escaped = text.replace('$', "$$");
            prop_assert_eq!(interpolate(&escaped, FILE, &env(&[])), Ok(text.clone()));
        }
    }
}
