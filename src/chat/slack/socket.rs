//! Socket Mode: apps.connections.open gives a wss URL; each envelope is acked by
//! its envelope_id at once and handled after. On close, error or a `disconnect`
//! message the client opens a new connection, with backoff when that fails.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::events::{Callback, Interaction, SlashCommand};
use super::service::SlackService;
use super::web::WebClient;
use crate::config::Secret;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening a connection: {0}")]
    Open(#[from] super::web::Error),
    #[error("websocket: {0}")]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    envelope_id: Option<String>,
    #[serde(default)]
    payload: Value,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs until `shutdown` completes, reconnecting for ever.
pub async fn run(
    web: WebClient,
    app_token: Secret,
    service: Arc<SlackService>,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    let mut backoff = MIN_BACKOFF;
    loop {
        let session = connect_once(&web, &app_token, &service);
        tokio::select! {
            _ = &mut shutdown => return,
            result = session => match result {
                // A clean end (close or `disconnect`): reconnect at once.
                Ok(()) => backoff = MIN_BACKOFF,
                Err(err) => {
                    tracing::warn!(error = %err, wait_ms = backoff.as_millis() as u64, "Socket Mode connection failed; reconnecting");
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// One connection, until it closes.
async fn connect_once(
    web: &WebClient,
    app_token: &Secret,
    service: &Arc<SlackService>,
) -> Result<()> {
    let url = web.apps_connections_open(app_token).await?;
    // The URL carries a ticket; it is not logged.
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    tracing::info!("Socket Mode connected");
    while let Some(message) = socket.next().await {
        let text = match message? {
            Message::Text(text) => text,
            Message::Ping(data) => {
                socket.send(Message::Pong(data)).await?;
                continue;
            }
            Message::Close(_) => return Ok(()),
            Message::Binary(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        let envelope: Envelope = match serde_json::from_str(text.as_str()) {
            Ok(envelope) => envelope,
            Err(err) => {
                tracing::warn!(error = %err, "unreadable Socket Mode message");
                continue;
            }
        };
        if let Some(id) = &envelope.envelope_id {
            // Ack first: Slack redelivers an envelope not acked within 3 s.
            socket
                .send(Message::Text(
                    json!({ "envelope_id": id }).to_string().into(),
                ))
                .await?;
        }
        match envelope.kind.as_str() {
            "hello" => {}
            "disconnect" => return Ok(()),
            "events_api" => match serde_json::from_value::<Callback>(envelope.payload) {
                Ok(callback) => {
                    let service = service.clone();
                    tokio::spawn(async move { service.handle_callback(callback).await });
                }
                Err(err) => tracing::warn!(error = %err, "unreadable events_api payload"),
            },
            "slash_commands" => match serde_json::from_value::<SlashCommand>(envelope.payload) {
                Ok(command) => {
                    let service = service.clone();
                    tokio::spawn(async move { service.handle_slash(command).await });
                }
                Err(err) => tracing::warn!(error = %err, "unreadable slash command"),
            },
            "interactive" => match serde_json::from_value::<Interaction>(envelope.payload) {
                Ok(interaction) => {
                    let service = service.clone();
                    tokio::spawn(async move { service.handle_interaction(interaction).await });
                }
                Err(err) => tracing::warn!(error = %err, "unreadable interaction"),
            },
            other => tracing::debug!(kind = other, "Socket Mode message ignored"),
        }
    }
    Ok(())
}
