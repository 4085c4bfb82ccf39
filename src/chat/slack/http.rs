//! The HTTP side: `/slack/events` (Events API and url_verification),
//! `/slack/commands` (slash commands) and `/slack/interactions` (buttons). Every
//! request's signature is verified before anything is parsed; the answer is sent
//! at once and the work runs after, so Slack always gets its ack within 3 s.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::events::{self, Callback, Interaction, SlashCommand};
use super::service::SlackService;
use crate::config::Secret;

#[derive(Clone)]
pub struct HttpState {
    service: Arc<SlackService>,
    secret: Arc<Secret>,
}

impl HttpState {
    pub fn new(service: Arc<SlackService>, signing_secret: Secret) -> HttpState {
        HttpState {
            service,
            secret: Arc::new(signing_secret),
        }
    }
}

/// Mountable in the API server's router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/slack/events", post(events_endpoint))
        .route("/slack/commands", post(commands_endpoint))
        .route("/slack/interactions", post(interactions_endpoint))
        .with_state(state)
}

fn verified(state: &HttpState, headers: &HeaderMap, body: &[u8]) -> Result<(), StatusCode> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    events::verify(
        &state.secret,
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        body,
        chrono::Utc::now().timestamp(),
    )
    .map_err(|err| {
        tracing::warn!(error = %err, "refused a Slack request");
        StatusCode::UNAUTHORIZED
    })
}

async fn events_endpoint(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = verified(&state, &headers, &body) {
        return (refused, "invalid request signature").into_response();
    }
    let callback: Callback = match serde_json::from_slice(&body) {
        Ok(callback) => callback,
        Err(err) => {
            tracing::warn!(error = %err, "unreadable Events API body");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    if let Some(retry) = headers
        .get("x-slack-retry-num")
        .and_then(|v| v.to_str().ok())
    {
        // Deduplication is by event id in the service; this is for the logs.
        tracing::info!(retry, "Slack retried an event");
    }
    match callback {
        Callback::UrlVerification { challenge } => {
            Json(json!({ "challenge": challenge })).into_response()
        }
        Callback::EventCallback { .. } => {
            let service = state.service.clone();
            tokio::spawn(async move { service.handle_callback(callback).await });
            StatusCode::OK.into_response()
        }
        Callback::Other => StatusCode::OK.into_response(),
    }
}

async fn commands_endpoint(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = verified(&state, &headers, &body) {
        return (refused, "invalid request signature").into_response();
    }
    let command = match SlashCommand::from_form(&body) {
        Ok(command) => command,
        Err(err) => {
            tracing::warn!(error = %err, "unreadable slash command");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let service = state.service.clone();
    tokio::spawn(async move { service.handle_slash(command).await });
    Json(json!({"response_type": "ephemeral", "text": "On it: I'll answer in a thread."}))
        .into_response()
}

async fn interactions_endpoint(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = verified(&state, &headers, &body) {
        return (refused, "invalid request signature").into_response();
    }
    let interaction = match Interaction::from_form(&body) {
        Ok(interaction) => interaction,
        Err(err) => {
            tracing::warn!(error = %err, "unreadable interaction");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let service = state.service.clone();
    tokio::spawn(async move { service.handle_interaction(interaction).await });
    StatusCode::OK.into_response()
}
