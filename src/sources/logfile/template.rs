//! Message templates: the variable parts of a log message masked as `<*>`, so lines
//! that differ only in ids, numbers and durations group together. Kept behind one
//! function so a Drain parser can replace it.

use std::sync::OnceLock;

use regex::{Captures, Regex};

/// Longest part of a message that is templated; the rest is dropped so a huge line
/// cannot make a huge group key.
pub const MAX_TEMPLATE_INPUT: usize = 1024;

pub const WILDCARD: &str = "<*>";

struct Masks {
    double_quoted: Regex,
    single_quoted: Regex,
    key_value: Regex,
    uuid: Regex,
    ipv4: Regex,
    duration: Regex,
    hex: Regex,
    number: Regex,
    repeated: Regex,
}

fn masks() -> Option<&'static Masks> {
    static MASKS: OnceLock<Option<Masks>> = OnceLock::new();
    MASKS
        .get_or_init(|| {
            // The patterns are constants; `ok()` only guards against a typo here
            // turning into a panic at run time (templating then degrades to identity).
            Some(Masks {
                double_quoted: Regex::new(r#""[^"]*""#).ok()?,
                // Only quotes that open after a separator, so "can't" stays intact.
                single_quoted: Regex::new(r#"(^|[\s=(:,\[])'[^']*'"#).ok()?,
                key_value: Regex::new(r#"\b([A-Za-z_][\w.\-]*)=("[^"]*"|[^\s,;)\]}]+)"#).ok()?,
                uuid: Regex::new(
                    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
                )
                .ok()?,
                ipv4: Regex::new(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b").ok()?,
                duration: Regex::new(r"\b\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h)\b").ok()?,
                hex: Regex::new(r"\b(?:0x)?[0-9a-fA-F]{6,}\b").ok()?,
                number: Regex::new(r"(^|[^A-Za-z0-9_])[-+]?\d+(?:[.,]\d+)*").ok()?,
                repeated: Regex::new(r"<\*>(?:[\s,]*<\*>)+").ok()?,
            })
        })
        .as_ref()
}

/// The template of `message`: numbers, hex ids (6+ characters with a digit), UUIDs,
/// IPv4 addresses, durations (`250ms`, `1.5s`), quoted strings and the values of
/// `key=value` pairs become `<*>`.
pub fn template(message: &str) -> String {
    let mut end = message.len().min(MAX_TEMPLATE_INPUT);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let text = message[..end].trim();
    let Some(m) = masks() else {
        return text.to_string();
    };
    let text = m.double_quoted.replace_all(text, WILDCARD);
    let text = m.single_quoted.replace_all(&text, "${1}<*>");
    let text = m.key_value.replace_all(&text, "${1}=<*>");
    let text = m.uuid.replace_all(&text, WILDCARD);
    let text = m.ipv4.replace_all(&text, WILDCARD);
    let text = m.duration.replace_all(&text, WILDCARD);
    let text = m.hex.replace_all(&text, |caps: &Captures| {
        let token = &caps[0];
        // Words made of a–f letters ("facade", "decade") are not ids.
        if token.bytes().any(|b| b.is_ascii_digit()) {
            WILDCARD.to_string()
        } else {
            token.to_string()
        }
    });
    let text = m.number.replace_all(&text, "${1}<*>");
    let text = m.repeated.replace_all(&text, WILDCARD);
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::template;

    #[test]
    fn variable_parts_are_masked() {
        assert_eq!(
            template(
                "HikariPool-1 - Connection is not available, request timed out after 30000ms."
            ),
            "HikariPool-<*> - Connection is not available, request timed out after <*>."
        );
        assert_eq!(
            template("could not obtain connection from pool (active=5, idle=0, waiting=37)"),
            "could not obtain connection from pool (active=<*>, idle=<*>, waiting=<*>)"
        );
        assert_eq!(
            template("order 123 took 1.5s from 10.0.0.12:8080 trace 4bf92f3577b34da6"),
            "order <*> took <*> from <*> trace <*>"
        );
        assert_eq!(
            template("user 3f2a1c9e-1b2c-4d5e-8f90-123456789abc said \"hello there\" and 'x y'"),
            "user <*> said <*> and <*>"
        );
        assert_eq!(template("can't reach the facade"), "can't reach the facade");
        assert_eq!(
            template("upstream payment-service returned 503"),
            "upstream payment-service returned <*>"
        );
        let long = "é".repeat(5000);
        assert!(template(&long).len() <= super::MAX_TEMPLATE_INPUT);
    }
}
