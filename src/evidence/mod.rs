//! Evidence: what a tool call returned, kept whole, plus the shapes sources return.
//!
//! A later issue adds evidence ids, compaction for the model and attachments; the
//! shapes here are what every source produces.

pub mod export;
pub mod log;
pub mod metrics;
pub mod patterns;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use log::{compact_for_model, EvidenceItem, EvidenceLog};

/// A column of a tabular result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// The database's own type name (`INT8`, `VARCHAR`, `TIMESTAMPTZ`).
    pub type_name: String,
}

/// Rows as returned by a source, bounded by the source's caps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
    /// Rows the statement would return in total, when known (counted separately when
    /// the result was truncated).
    pub total_rows: Option<u64>,
    /// True when `rows` is not the whole result (row or byte cap).
    pub truncated: bool,
    /// Why it was truncated, for the reader: "row cap 1000", "byte cap 4 MiB".
    pub truncated_by: Option<String>,
}

impl Table {
    pub fn new(columns: Vec<Column>) -> Self {
        Table {
            columns,
            rows: Vec::new(),
            total_rows: None,
            truncated: false,
            truncated_by: None,
        }
    }

    /// Rows as JSON objects keyed by column name.
    pub fn to_objects(&self) -> Vec<serde_json::Map<String, Value>> {
        self.rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.name.clone(), v.clone()))
                    .collect()
            })
            .collect()
    }

    /// CSV with a header row; values that are not strings are written as JSON.
    pub fn to_csv(&self) -> Result<String, csv::Error> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(self.columns.iter().map(|c| c.name.as_str()))?;
        for row in &self.rows {
            writer.write_record(row.iter().map(cell_text))?;
        }
        let bytes = writer
            .into_inner()
            .map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A plain-text grid for terminals, cells cut at `max_cell` characters.
    pub fn to_text(&self, max_cell: usize) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| row.iter().map(|v| clip(&cell_text(v), max_cell)).collect())
            .collect();
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .map(|c| c.name.chars().count())
            .collect();
        for row in &cells {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let line = |values: Vec<&str>, out: &mut String| {
            let padded: Vec<String> = values
                .iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:<w$}", w = *w))
                .collect();
            out.push_str(padded.join(" | ").trim_end());
            out.push('\n');
        };
        line(
            self.columns.iter().map(|c| c.name.as_str()).collect(),
            &mut out,
        );
        out.push_str(
            &widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("-+-"),
        );
        out.push('\n');
        for row in &cells {
            line(row.iter().map(String::as_str).collect(), &mut out);
        }
        out
    }
}

pub fn cell_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn clip(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Most bytes one attachment may hold; a source drops (and says so) anything larger.
pub const MAX_ATTACHMENT_BYTES: usize = 4 * 1024 * 1024;
/// Most attachments one tool call may return.
pub const MAX_ATTACHMENTS: usize = 8;

/// A file that goes with an evidence item: a chart, the hits as NDJSON. Written next
/// to the item on export and listed with the report; never sent to the model.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name without the item id (`errors.png`); export prefixes it (`E3-errors.png`).
    pub name: String,
    pub media_type: String,
    /// What it shows, for the report's list.
    pub description: String,
    pub size: usize,
    /// Kept with the evidence (base64 in JSON) so a restart or the API can still
    /// serve the file.
    #[serde(rename = "data_base64", with = "base64_bytes")]
    pub bytes: Vec<u8>,
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|_| serde::de::Error::custom("attachment data is not valid base64"))
    }
}

impl Attachment {
    /// None when `bytes` is over [`MAX_ATTACHMENT_BYTES`].
    pub fn new(name: &str, media_type: &str, description: String, bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() <= MAX_ATTACHMENT_BYTES).then(|| Attachment {
            name: name.to_string(),
            media_type: media_type.to_string(),
            description,
            size: bytes.len(),
            bytes,
        })
    }
}

impl Attachment {
    /// The file name on export: the item id, then the name with anything but
    /// `[A-Za-z0-9._-]` replaced (the name comes from a source).
    pub fn file_name(&self, item_id: &str) -> String {
        let safe: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{item_id}-{}", safe.trim_start_matches('.'))
    }
}

impl std::fmt::Debug for Attachment {
    // The bytes would flood logs and test output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("name", &self.name)
            .field("media_type", &self.media_type)
            .field("size", &self.size)
            .finish()
    }
}

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Content {
    Table(Table),
    Json(Value),
    Text(String),
}

impl Content {
    /// Rows or items, for the audit log.
    pub fn count(&self) -> Option<u64> {
        match self {
            Content::Table(t) => Some(t.rows.len() as u64),
            Content::Json(Value::Array(items)) => Some(items.len() as u64),
            Content::Json(_) | Content::Text(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> Table {
        let mut t = Table::new(vec![
            Column {
                name: "id".into(),
                type_name: "INT8".into(),
            },
            Column {
                name: "note".into(),
                type_name: "TEXT".into(),
            },
        ]);
        t.rows.push(vec![json!(1), json!("a,\"b\"\nc")]);
        t.rows.push(vec![json!(2), Value::Null]);
        t
    }

    #[test]
    fn csv_quotes_and_nulls() {
        let csv = table().to_csv().unwrap_or_default();
        assert_eq!(csv, "id,note\n1,\"a,\"\"b\"\"\nc\"\n2,\n");
    }

    #[test]
    fn text_grid_is_one_line_per_row() {
        let text = table().to_text(5);
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.contains("a,\"b…"), "{text}");
    }

    #[test]
    fn objects_keep_column_names() {
        let objects = table().to_objects();
        assert_eq!(objects[0].get("id"), Some(&json!(1)));
    }
}
