//! Guards between a model's request and a data source: read-only SQL validation.
//! (Result limits live with each source; redaction arrives with evidence compaction.)

pub mod sql;
