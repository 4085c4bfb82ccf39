//! The Slack transport: Socket Mode or the HTTP Events API in, the Web API out.
//!
//! The wire protocol is spoken directly with reqwest and tokio-tungstenite (see
//! README, "Dependencies", for why not slack-morphism): the same paths, headers
//! and bodies as the real Slack, with the Web API base URL overridable so tests
//! point it at a fake.
//!
//! - [`events`]: payload types and request signature verification.
//! - [`web`]: the Web API client (rate limits per method tier, 429 waited out).
//! - [`blocks`]: Block Kit rendering of reports, within Slack's limits.
//! - [`service`]: the transport-independent conversation logic.
//! - [`http`]: the axum router for the Events API, slash commands and buttons.
//! - [`socket`]: the Socket Mode client.

pub mod blocks;
pub mod events;
pub mod http;
pub mod service;
pub mod socket;
pub mod stored;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::config::interpolate::Env;
use crate::config::Secret;

pub use service::{
    Feedback, FeedbackKind, FeedbackSink, MemoryFeedback, MemoryProcessedEvents, MemoryThreads,
    ProcessedEvents, SlackService, ThreadOwners,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("INVESTIGATOR_SLACK_MODE must be `socket` or `http`, not `{0}`")]
    BadMode(String),
    #[error("INVESTIGATOR_SLACK_LISTEN `{0}` is not an address like 0.0.0.0:3000")]
    BadListen(String),
    #[error("Slack Web API: {0}")]
    Web(#[from] web::Error),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("http server: {0}")]
    Serve(std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// How events reach the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A websocket the bot opens (`SLACK_APP_TOKEN`): no public URL needed.
    Socket,
    /// Slack POSTs signed requests to `/slack/events` (`SLACK_SIGNING_SECRET`).
    Http,
}

/// Everything the transport needs; tokens are [`Secret`]s so Debug never shows them.
#[derive(Debug, Clone)]
pub struct SlackSettings {
    pub mode: Mode,
    pub bot_token: Secret,
    pub app_token: Option<Secret>,
    pub signing_secret: Option<Secret>,
    /// Web API base, ending in `/api/` (`SLACK_API_URL`).
    pub api_url: String,
    /// Where the HTTP mode listens.
    pub listen: SocketAddr,
}

pub const DEFAULT_API_URL: &str = "https://slack.com/api/";

impl SlackSettings {
    /// From `SLACK_BOT_TOKEN`, `SLACK_APP_TOKEN`, `SLACK_SIGNING_SECRET`,
    /// `SLACK_API_URL`, `INVESTIGATOR_SLACK_MODE` (`socket` when an app token is
    /// set, else `http`) and `INVESTIGATOR_SLACK_LISTEN` (default 0.0.0.0:3000).
    pub fn from_env(env: &dyn Env) -> Result<SlackSettings> {
        let get = |name: &str| env.get(name).filter(|v| !v.trim().is_empty());
        let bot_token = get("SLACK_BOT_TOKEN")
            .map(Secret::new)
            .ok_or(Error::Missing("SLACK_BOT_TOKEN"))?;
        let app_token = get("SLACK_APP_TOKEN").map(Secret::new);
        let signing_secret = get("SLACK_SIGNING_SECRET").map(Secret::new);
        let mode = match get("INVESTIGATOR_SLACK_MODE").as_deref() {
            Some("socket") => Mode::Socket,
            Some("http") => Mode::Http,
            Some(other) => return Err(Error::BadMode(other.to_string())),
            None if app_token.is_some() => Mode::Socket,
            None => Mode::Http,
        };
        match mode {
            Mode::Socket if app_token.is_none() => return Err(Error::Missing("SLACK_APP_TOKEN")),
            Mode::Http if signing_secret.is_none() => {
                return Err(Error::Missing("SLACK_SIGNING_SECRET"))
            }
            Mode::Socket | Mode::Http => {}
        }
        let listen_text =
            get("INVESTIGATOR_SLACK_LISTEN").unwrap_or_else(|| "0.0.0.0:3000".to_string());
        let listen = listen_text
            .parse()
            .map_err(|_| Error::BadListen(listen_text.clone()))?;
        Ok(SlackSettings {
            mode,
            bot_token,
            app_token,
            signing_secret,
            api_url: get("SLACK_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_string()),
            listen,
        })
    }
}

/// Runs the bot until `shutdown` completes. The API server can call this next to
/// its own listener, or merge [`http::router`] into its router instead.
pub async fn run(
    app: Arc<App>,
    settings: SlackSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let web = web::WebClient::new(&settings.api_url, settings.bot_token.clone())?;
    let store = app.sessions.store().clone();
    let service = SlackService::start(
        app,
        web.clone(),
        Arc::new(stored::StoreEvents(store.clone())),
        Arc::new(stored::StoreThreads(store.clone())),
        Arc::new(stored::StoreFeedback(store)),
    )
    .await?;
    // Threads a stopped process left unanswered are told so, beside serving events:
    // at start, and then every minute (a quick restart finds the old process's
    // session leases unexpired; they count as stopped once they expire).
    let notifier = service.clone();
    let notices = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            let told = notifier.notify_interrupted().await;
            if told > 0 {
                tracing::info!(
                    threads = told,
                    "told threads their question was interrupted"
                );
            }
        }
    });
    let served = match (settings.mode, settings.app_token, settings.signing_secret) {
        (Mode::Socket, Some(app_token), _) => {
            socket::run(web, app_token, service, shutdown).await;
            Ok(())
        }
        (Mode::Http, _, Some(secret)) => {
            let router = http::router(http::HttpState::new(service, secret));
            match tokio::net::TcpListener::bind(settings.listen).await {
                Ok(listener) => {
                    tracing::info!(addr = %settings.listen, "Slack Events API listening on /slack/events");
                    axum::serve(listener, router)
                        .with_graceful_shutdown(shutdown)
                        .await
                        .map_err(Error::Serve)
                }
                Err(source) => Err(Error::Listen {
                    addr: settings.listen,
                    source,
                }),
            }
        }
        (Mode::Socket, None, _) => Err(Error::Missing("SLACK_APP_TOKEN")),
        (Mode::Http, _, None) => Err(Error::Missing("SLACK_SIGNING_SECRET")),
    };
    notices.abort();
    served
}
