//! Prompts: files under `prompts/` when present, with built-in copies compiled in
//! so the binary runs on its own.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::access::Access;

const SYSTEM: &str = include_str!("../../prompts/system.md");

/// The system prompt template: `dir/system.md` if it exists, else the built-in.
pub fn system_template(dir: Option<&Path>) -> String {
    dir.map(|d| d.join("system.md"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|| SYSTEM.to_string())
}

/// Fills the template for one principal. `sources` lines come from the sources'
/// own descriptions (what the grant reaches), never from other squads.
pub fn system_prompt(
    template: &str,
    access: &Access,
    source_lines: &[String],
    now: DateTime<Utc>,
) -> String {
    let sources = if source_lines.is_empty() {
        "(none: you cannot query anything; say so)".to_string()
    } else {
        source_lines.join("\n")
    };
    template
        .replace("{{squads}}", &access.squads.join(", "))
        .replace(
            "{{now}}",
            &now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
        .replace("{{sources}}", &sources)
}

/// One line per granted source: name, kind, scope.
pub fn source_lines(access: &Access) -> Vec<String> {
    access
        .grants
        .values()
        .map(|g| format!("- `{}` ({}): {}", g.source, g.kind, g.scope_summary()))
        .collect()
}
