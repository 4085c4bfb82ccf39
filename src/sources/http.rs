//! Helpers shared by the sources that speak HTTP.

use super::{Error, Result};

/// The default most bytes of one response body an HTTP source keeps.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Reads a response body, refusing it past `max_bytes` while it streams in
/// (never buffering more). `hint` tells the model how to ask for less.
pub async fn read_capped(
    mut response: reqwest::Response,
    max_bytes: usize,
    hint: &str,
) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::Unavailable(format!("reading the response: {e}")))?
    {
        if body.len() + chunk.len() > max_bytes {
            return Err(Error::Query(format!(
                "the response is larger than {} MiB; {hint}",
                max_bytes / (1024 * 1024)
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
