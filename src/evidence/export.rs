//! Writing a session's evidence to a directory a reader can open: each item whole
//! as JSON, tables also as CSV, its attachments (charts, NDJSON hits) as files, and
//! the report as JSON and Markdown.

use std::io;
use std::path::{Path, PathBuf};

use super::{Content, EvidenceLog};

/// Writes every item of `evidence` and the given report files into `dir`
/// (created if missing). Returns the files written.
pub fn write_dir(
    dir: &Path,
    evidence: &EvidenceLog,
    report_json: &serde_json::Value,
    report_markdown: &str,
) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for item in evidence.items() {
        let json_path = dir.join(format!("{}.json", item.id));
        let body = serde_json::to_vec_pretty(item).map_err(io::Error::other)?;
        std::fs::write(&json_path, body)?;
        written.push(json_path);
        if let Some(Content::Table(table)) = &item.content {
            let csv_path = dir.join(format!("{}.csv", item.id));
            let csv = table.to_csv().map_err(io::Error::other)?;
            std::fs::write(&csv_path, csv)?;
            written.push(csv_path);
        }
        for attachment in &item.attachments {
            let path = dir.join(attachment.file_name(&item.id));
            std::fs::write(&path, &attachment.bytes)?;
            written.push(path);
        }
    }
    let report_path = dir.join("report.json");
    std::fs::write(
        &report_path,
        serde_json::to_vec_pretty(report_json).map_err(io::Error::other)?,
    )?;
    written.push(report_path);
    let md_path = dir.join("report.md");
    std::fs::write(&md_path, report_markdown)?;
    written.push(md_path);
    Ok(written)
}
