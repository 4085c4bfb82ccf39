//! Guards between a model's request and a data source, and between a source's
//! result and the model: read-only SQL validation and redaction of secrets.
//! (Result limits live with each source.)

pub mod redact;
pub mod sql;

pub use redact::{RedactionConfig, Redactor};
