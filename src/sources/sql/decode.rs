//! Turning driver rows into JSON values, and collecting them under the caps.

use base64::Engine as _;
use futures::{Stream, StreamExt};
use serde_json::{Number, Value};
use sqlx::{Column as _, Row, TypeInfo, ValueRef};

use super::{map_sqlx, Limits, Result};
use crate::evidence::{Column, Table};

/// Bytes shown of a binary value; the rest is summarised.
const BINARY_PREVIEW: usize = 64;

/// Reads rows until the row or byte cap, marking truncation. Stops pulling from
/// the stream at the cap so a huge result is never materialised.
pub(crate) async fn collect_rows<R, S>(
    mut stream: S,
    limits: &Limits,
    decode: impl Fn(&R) -> Vec<Value>,
) -> Result<(Option<Vec<Column>>, Table)>
where
    R: Row,
    S: Stream<Item = std::result::Result<R, sqlx::Error>> + Unpin,
{
    let mut table = Table::new(Vec::new());
    let mut columns = None;
    let mut bytes: u64 = 0;
    while let Some(row) = stream.next().await {
        let row = row.map_err(map_sqlx)?;
        if columns.is_none() {
            columns = Some(columns_of(&row));
        }
        if table.rows.len() as u64 >= limits.max_rows as u64 {
            table.truncated = true;
            table.truncated_by = Some(format!("row cap {}", limits.max_rows));
            break;
        }
        let values = decode(&row);
        bytes += values.iter().map(approx_size).sum::<u64>();
        if bytes > limits.max_bytes {
            table.truncated = true;
            table.truncated_by = Some(format!("byte cap {} KiB", limits.max_bytes / 1024));
            break;
        }
        table.rows.push(values);
    }
    if !table.truncated {
        table.total_rows = Some(table.rows.len() as u64);
    }
    Ok((columns, table))
}

pub(crate) fn columns_of<R: Row>(row: &R) -> Vec<Column> {
    row.columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_string(),
            type_name: c.type_info().name().to_string(),
        })
        .collect()
}

fn approx_size(value: &Value) -> u64 {
    match value {
        Value::Null | Value::Bool(_) => 4,
        Value::Number(_) => 8,
        Value::String(s) => s.len() as u64 + 2,
        Value::Array(items) => items.iter().map(approx_size).sum::<u64>() + 2,
        Value::Object(map) => {
            map.iter()
                .map(|(k, v)| k.len() as u64 + approx_size(v))
                .sum::<u64>()
                + 2
        }
    }
}

fn float(v: f64) -> Value {
    Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(v.to_string()))
}

fn binary(bytes: &[u8]) -> Value {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Value::String(text.to_string());
    }
    let shown = &bytes[..bytes.len().min(BINARY_PREVIEW)];
    let mut text = format!(
        "base64:{}",
        base64::engine::general_purpose::STANDARD.encode(shown)
    );
    if bytes.len() > BINARY_PREVIEW {
        text.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    Value::String(text)
}

/// Tries decoders in order until one accepts the column's type.
macro_rules! first_that_decodes {
    ($row:expr, $i:expr; $($ty:ty => $conv:expr),+ $(,)?) => {{
        let mut out: Option<Value> = None;
        $(
            if out.is_none() {
                if let Ok(v) = $row.try_get::<$ty, _>($i) {
                    let conv: fn($ty) -> Value = $conv;
                    out = Some(conv(v));
                }
            }
        )+
        out
    }};
}

fn unrendered(type_name: &str) -> Value {
    Value::String(format!("<{type_name} value not shown: cast it to text>"))
}

pub(crate) fn pg_row(row: &sqlx::postgres::PgRow) -> Vec<Value> {
    (0..row.len()).map(|i| pg_cell(row, i)).collect()
}

fn pg_cell(row: &sqlx::postgres::PgRow, i: usize) -> Value {
    use sqlx::postgres::types::{Oid, PgInterval};
    use sqlx::postgres::PgTypeKind;
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    let type_info = raw.type_info().into_owned();
    let name = type_info.name().to_string();
    let decoded = first_that_decodes!(row, i;
        bool => Value::Bool,
        i16 => Value::from,
        i32 => Value::from,
        i64 => Value::from,
        f32 => |v| float(v as f64),
        f64 => float,
        rust_decimal::Decimal => |v| Value::String(v.to_string()),
        String => Value::String,
        chrono::DateTime<chrono::Utc> => |v| Value::String(v.to_rfc3339()),
        chrono::NaiveDateTime => |v| Value::String(v.to_string()),
        chrono::NaiveDate => |v| Value::String(v.to_string()),
        chrono::NaiveTime => |v| Value::String(v.to_string()),
        uuid::Uuid => |v| Value::String(v.to_string()),
        Value => |v| v,
        Oid => |v| Value::from(v.0),
        i8 => |v| Value::String(((v as u8) as char).to_string()),
        PgInterval => |v| Value::String(format!("{} months {} days {} us", v.months, v.days, v.microseconds)),
        Vec<u8> => |v| binary(&v),
        Vec<String> => |v| Value::from(v),
        Vec<i64> => |v| Value::from(v),
        Vec<i32> => |v| Value::from(v),
        Vec<i16> => |v| Value::from(v),
        Vec<f64> => |v| Value::from(v.into_iter().map(float).collect::<Vec<_>>()),
        Vec<bool> => |v| Value::from(v),
    );
    if let Some(value) = decoded {
        return value;
    }
    // Enum labels travel as their text in the binary protocol too.
    if matches!(type_info.kind(), PgTypeKind::Enum(_)) {
        if let Ok(v) = row.try_get_unchecked::<String, _>(i) {
            return Value::String(v);
        }
    }
    unrendered(&name)
}

pub(crate) fn mysql_row(row: &sqlx::mysql::MySqlRow) -> Vec<Value> {
    (0..row.len()).map(|i| mysql_cell(row, i)).collect()
}

fn mysql_cell(row: &sqlx::mysql::MySqlRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    let name = raw.type_info().name().to_string();
    let decoded = first_that_decodes!(row, i;
        i64 => Value::from,
        u64 => Value::from,
        f64 => float,
        f32 => |v| float(v as f64),
        rust_decimal::Decimal => |v| Value::String(v.to_string()),
        bool => Value::Bool,
        String => Value::String,
        chrono::NaiveDateTime => |v| Value::String(v.to_string()),
        chrono::DateTime<chrono::Utc> => |v| Value::String(v.to_rfc3339()),
        chrono::NaiveDate => |v| Value::String(v.to_string()),
        chrono::NaiveTime => |v| Value::String(v.to_string()),
        Value => |v| v,
        Vec<u8> => |v| binary(&v),
    );
    if let Some(value) = decoded {
        return value;
    }
    match row.try_get_unchecked::<Vec<u8>, _>(i) {
        Ok(bytes) => binary(&bytes),
        Err(_) => unrendered(&name),
    }
}

pub(crate) fn sqlite_row(row: &sqlx::sqlite::SqliteRow) -> Vec<Value> {
    (0..row.len()).map(|i| sqlite_cell(row, i)).collect()
}

fn sqlite_cell(row: &sqlx::sqlite::SqliteRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    // SQLite types values, not columns: decode by the storage class of this value.
    let class = raw.type_info().name().to_ascii_uppercase();
    let decoded = match class.as_str() {
        "INTEGER" | "INT" | "BIGINT" | "BOOLEAN" => {
            row.try_get_unchecked::<i64, _>(i).ok().map(Value::from)
        }
        "REAL" | "FLOAT" | "DOUBLE" | "NUMERIC" => {
            row.try_get_unchecked::<f64, _>(i).ok().map(float)
        }
        "BLOB" => row
            .try_get_unchecked::<Vec<u8>, _>(i)
            .ok()
            .map(|v| binary(&v)),
        _ => row
            .try_get_unchecked::<String, _>(i)
            .ok()
            .map(Value::String),
    };
    decoded.unwrap_or_else(|| unrendered(&class))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_are_previewed_not_dumped() {
        let bytes: Vec<u8> = (0..200u8).map(|b| b.wrapping_mul(7) | 0x80).collect();
        let Value::String(text) = binary(&bytes) else {
            panic!("expected a string")
        };
        assert!(text.starts_with("base64:"));
        assert!(text.ends_with("(200 bytes)"), "{text}");
        assert_eq!(binary(b"plain"), Value::String("plain".into()));
    }

    #[test]
    fn non_finite_floats_become_text() {
        assert_eq!(float(f64::NAN), Value::String("NaN".into()));
        assert_eq!(float(1.5), serde_json::json!(1.5));
    }
}
