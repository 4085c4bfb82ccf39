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

/// A request that got no response, said in a way a person (or the model) can act
/// on: reqwest's own message ("error sending request for url …") plus the root
/// cause, and for a certificate that is not trusted, how to trust it.
pub fn send_failure(err: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut next = std::error::Error::source(err);
    while let Some(cause) = next {
        causes.push(cause.to_string());
        next = cause.source();
    }
    let certificate = causes
        .iter()
        .any(|c| c.contains("certificate") || c.contains("UnknownIssuer"));
    match causes.last() {
        _ if certificate => format!(
            "{err}: the server's TLS certificate is not trusted ({}); configure the CA that signed it (`ca_cert`, or the kubeconfig's certificate-authority)",
            causes.last().map(String::as_str).unwrap_or("unknown issuer")
        ),
        Some(root) => format!("{err}: {root}"),
        None => err.to_string(),
    }
}

/// A link into a vendor's UI: `base` + `path` with `params` form-encoded, so a
/// person can open the evidence where it came from. Credentials written into
/// `base` (`https://user:pass@host`) are left out: links are shown in chat.
pub fn ui_link(base: &str, path: &str, params: &[(&str, String)]) -> String {
    match reqwest::Url::parse_with_params(&format!("{base}{path}"), params) {
        Ok(mut url) => {
            // Only fails for URLs that cannot have credentials at all.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_encode_parameters_and_drop_credentials() {
        assert_eq!(
            ui_link(
                "https://admin:s3cret@prom.internal:9090",
                "/graph",
                &[("g0.expr", "rate(errors{service=\"checkout\"}[5m])".into())]
            ),
            "https://prom.internal:9090/graph?g0.expr=rate%28errors%7Bservice%3D%22checkout%22%7D%5B5m%5D%29"
        );
        assert_eq!(ui_link("not a url", "/x", &[]), "/x");
    }
}
