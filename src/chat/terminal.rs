//! The terminal transport: progress lines as tools run, then the report.

use std::io::Write;
use std::sync::Mutex;

use crate::engine::{Event, EventSink};

/// Prints one line per event to the given writer (stderr for the CLI).
pub struct ProgressPrinter<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> ProgressPrinter<W> {
    pub fn new(out: W) -> Self {
        ProgressPrinter {
            out: Mutex::new(out),
        }
    }
}

impl<W: Write + Send> EventSink for ProgressPrinter<W> {
    fn emit(&self, event: Event) {
        let line = match event {
            Event::ModelCalled { turn } => format!("… thinking (turn {})", turn),
            Event::ToolStarted {
                source,
                tool,
                arguments,
                ..
            } => {
                let args = arguments.to_string();
                let args: String = args.chars().take(120).collect();
                format!("→ {source}.{tool} {args}")
            }
            Event::ToolFinished {
                evidence_id,
                source,
                tool,
                ok,
                rows,
                duration_ms,
                error,
                ..
            } => {
                if ok {
                    let rows = rows.map(|r| format!("{r} row(s), ")).unwrap_or_default();
                    format!("✓ {evidence_id} {source}.{tool}: {rows}{duration_ms} ms")
                } else {
                    format!(
                        "✗ {evidence_id} {source}.{tool}: {}",
                        error.unwrap_or_default()
                    )
                }
            }
            Event::Finished { partial } => {
                if partial {
                    "■ done (partial)".to_string()
                } else {
                    "■ done".to_string()
                }
            }
        };
        // A poisoned lock still holds a usable writer.
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{line}");
    }
}
