//! Durations written the way people write them: `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration `{text}` (use e.g. 30s, 500ms, 2m)"))?;
        let seconds = match unit.trim() {
            "" | "s" | "sec" | "secs" => value,
            "ms" => value / 1000.0,
            "m" | "min" | "mins" => value * 60.0,
            "h" => value * 3600.0,
            other => {
                return Err(format!(
                    "unknown duration unit `{other}` (use ms, s, m or h)"
                ))
            }
        };
        if !seconds.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&seconds) {
            return Err(format!("duration `{text}` is out of range"));
        }
        Ok(HumanDuration(Duration::from_secs_f64(seconds)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0.as_millis())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom("expected a duration such as 30s or 500ms"))?
        {
            Raw::Seconds(s) => Ok(HumanDuration(Duration::from_secs(s))),
            Raw::Text(t) => HumanDuration::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(
            HumanDuration::parse("30s").map(|d| d.0),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(
            HumanDuration::parse("500ms").map(|d| d.0),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(
            HumanDuration::parse("2m").map(|d| d.0),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(
            HumanDuration::parse("15").map(|d| d.0),
            Ok(Duration::from_secs(15))
        );
        assert!(HumanDuration::parse("5 parsecs").is_err());
        assert!(HumanDuration::parse("").is_err());
        assert!(HumanDuration::parse("1e400s").is_err());
    }
}
