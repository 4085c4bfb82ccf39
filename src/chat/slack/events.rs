//! What Slack sends: Events API callbacks, slash commands, interactions, and the
//! request signature that proves a request came from Slack.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::config::Secret;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("missing X-Slack-Request-Timestamp or X-Slack-Signature")]
    MissingHeaders,
    #[error("request timestamp is not a number")]
    BadTimestamp,
    #[error("request timestamp is more than 5 minutes from now")]
    Stale,
    #[error("signature does not match")]
    BadSignature,
    #[error("payload: {0}")]
    Payload(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Slack's replay window.
pub const MAX_SKEW_SECS: i64 = 5 * 60;

/// Checks `v0=hex(hmac_sha256(secret, "v0:{ts}:{body}"))` in constant time and
/// refuses timestamps more than five minutes off (replays).
pub fn verify(
    secret: &Secret,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<()> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(Error::MissingHeaders);
    };
    let ts: i64 = timestamp.trim().parse().map_err(|_| Error::BadTimestamp)?;
    if (now_unix - ts).abs() > MAX_SKEW_SECS {
        return Err(Error::Stale);
    }
    let hex_sig = signature.strip_prefix("v0=").ok_or(Error::BadSignature)?;
    let expected = hex::decode(hex_sig).map_err(|_| Error::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| Error::BadSignature)?;
    mac.update(b"v0:");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&expected).map_err(|_| Error::BadSignature)
}

/// The signature Slack would send; for tests, the benchmark and fakes.
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// An Events API request body (also a Socket Mode `events_api` payload).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Callback {
    UrlVerification {
        challenge: String,
    },
    EventCallback {
        event_id: String,
        #[serde(default)]
        team_id: Option<String>,
        event: serde_json::Value,
    },
    #[serde(other)]
    Other,
}

/// `app_mention` and `message` share these fields.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageEvent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub subtype: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub bot_id: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub channel_type: Option<String>,
    #[serde(default)]
    pub ts: Option<String>,
    #[serde(default)]
    pub thread_ts: Option<String>,
}

/// A slash command (form fields; in Socket Mode the same fields as JSON).
#[derive(Debug, Clone, Deserialize)]
pub struct SlashCommand {
    pub command: String,
    #[serde(default)]
    pub text: String,
    pub user_id: String,
    pub channel_id: String,
    #[serde(default)]
    pub channel_name: Option<String>,
}

impl SlashCommand {
    pub fn from_form(body: &[u8]) -> Result<SlashCommand> {
        serde_urlencoded::from_bytes(body).map_err(|e| Error::Payload(e.to_string()))
    }

    /// Direct messages have `D…` ids (Slack also names them `directmessage`).
    pub fn is_direct(&self) -> bool {
        self.channel_id.starts_with('D') || self.channel_name.as_deref() == Some("directmessage")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdRef {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActionMessage {
    pub ts: String,
    #[serde(default)]
    pub thread_ts: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BlockAction {
    pub action_id: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// A `block_actions` interaction (a button press).
#[derive(Debug, Clone, Deserialize)]
pub struct Interaction {
    #[serde(rename = "type")]
    pub kind: String,
    pub user: IdRef,
    #[serde(default)]
    pub channel: Option<IdRef>,
    #[serde(default)]
    pub message: Option<ActionMessage>,
    #[serde(default)]
    pub actions: Vec<BlockAction>,
}

#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

impl Interaction {
    /// The form body `payload=<json>` Slack posts to the interactivity URL.
    pub fn from_form(body: &[u8]) -> Result<Interaction> {
        let form: InteractionForm =
            serde_urlencoded::from_bytes(body).map_err(|e| Error::Payload(e.to_string()))?;
        serde_json::from_str(&form.payload).map_err(|e| Error::Payload(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_refusals() {
        let secret = Secret::new("8f742231b10e8888abcd99yyyzzz85a5");
        let body = br#"{"type":"event_callback"}"#;
        let now = 1_700_000_000;
        let sig = sign(&secret, now, body);
        assert_eq!(
            verify(&secret, Some(&now.to_string()), Some(&sig), body, now),
            Ok(())
        );
        assert_eq!(
            verify(&secret, Some(&now.to_string()), Some(&sig), b"{}", now),
            Err(Error::BadSignature)
        );
        let old = now - MAX_SKEW_SECS - 1;
        let old_sig = sign(&secret, old, body);
        assert_eq!(
            verify(&secret, Some(&old.to_string()), Some(&old_sig), body, now),
            Err(Error::Stale)
        );
        assert_eq!(
            verify(&secret, None, Some(&sig), body, now),
            Err(Error::MissingHeaders)
        );
        assert_eq!(
            verify(&secret, Some(&now.to_string()), Some("v0=zz"), body, now),
            Err(Error::BadSignature)
        );
    }

    #[test]
    fn slack_documented_example_verifies() {
        // The example from Slack's "Verifying requests from Slack" page.
        let secret = Secret::new("8f742231b10e8888abcd99yyyzzz85a5");
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let ts = 1_531_420_618;
        assert_eq!(
            sign(&secret, ts, body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
        let slash = SlashCommand::from_form(body).expect("form");
        assert_eq!(slash.command, "/webhook-collect");
        assert_eq!(slash.user_id, "U2CERLKJA");
    }
}
