//! Helpers shared by the sources that speak HTTP.

use super::{Error, Result};

/// Most bytes of one response body any HTTP source keeps.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Reads a response body, refusing it past [`MAX_RESPONSE_BYTES`] while it
/// streams in (never buffering more). `hint` tells the model how to ask for less.
pub async fn read_capped(mut response: reqwest::Response, hint: &str) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::Unavailable(format!("reading the response: {e}")))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(Error::Query(format!(
                "the response is larger than {} MiB; {hint}",
                MAX_RESPONSE_BYTES / (1024 * 1024)
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
