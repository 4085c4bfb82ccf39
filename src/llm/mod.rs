//! Models: the `Model` trait, the Anthropic Messages client, the offline planner.

pub mod anthropic;
pub mod offline;
pub mod types;

use async_trait::async_trait;

pub use types::*;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API said the request is wrong (400, 404, 422): retrying will not help.
    #[error("model request rejected ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// 401/403: the key is missing, wrong or lacks permission.
    #[error("model authentication failed ({status})")]
    Auth { status: u16 },
    /// Overloaded, rate limited or server errors after every retry.
    #[error("model unavailable after {attempts} attempt(s): {message}")]
    Unavailable { attempts: u32, message: String },
    #[error("model request timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("unexpected model response: {0}")]
    Protocol(String),
}

pub type Result<T> = std::result::Result<T, Error>;

#[async_trait]
pub trait Model: Send + Sync {
    /// Short name for reports and usage records (`claude-sonnet-4-5`, `offline-runbooks`).
    fn name(&self) -> &str;
    fn pricing(&self) -> Pricing;
    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse>;
}
