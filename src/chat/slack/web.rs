//! The Slack Web API client: the handful of methods the bot uses, each behind a
//! governor limiter sized to its Slack rate-limit tier, with HTTP 429 waited out
//! for `Retry-After` seconds. The base URL is configurable (`SLACK_API_URL`).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::Secret;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SLACK_API_URL `{0}` is not an http(s) URL")]
    BadBaseUrl(String),
    #[error("{method}: {error}")]
    Api { method: String, error: String },
    #[error("{method}: rate limited {attempts} times in a row")]
    RateLimited { method: String, attempts: u32 },
    // reqwest errors name the URL, never the Authorization header.
    #[error("{method}: {source}")]
    Http {
        method: String,
        source: reqwest::Error,
    },
    #[error("{method}: unexpected response: {detail}")]
    Response { method: String, detail: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Slack's published tiers (requests per minute), plus the special
/// chat.postMessage limit of about one per second with short bursts.
#[derive(Debug, Clone, Copy)]
enum Tier {
    One,
    Two,
    Three,
    Four,
    PostMessage,
}

impl Tier {
    fn of(method: &str) -> Tier {
        match method {
            "apps.connections.open" => Tier::One,
            "usergroups.users.list" => Tier::Two,
            "chat.update" | "reactions.add" => Tier::Three,
            "chat.postMessage" => Tier::PostMessage,
            // auth.test, files.getUploadURLExternal, files.completeUploadExternal.
            _ => Tier::Four,
        }
    }

    fn quota(self) -> Quota {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        match self {
            Tier::One => per_minute(1).allow_burst(NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN)),
            Tier::Two => per_minute(20),
            Tier::Three => per_minute(50),
            Tier::Four => per_minute(100),
            Tier::PostMessage => Quota::per_second(NonZeroU32::MIN)
                .allow_burst(NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN)),
        }
    }
}

/// How many 429s in a row one call waits out before giving up.
const MAX_RATE_LIMITED: u32 = 5;
/// Cap on one Retry-After wait, so a bad header cannot stall a thread for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct WebClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    bot_token: Secret,
    limiters: HashMap<&'static str, DefaultDirectRateLimiter>,
}

const METHODS: &[&str] = &[
    "auth.test",
    "apps.connections.open",
    "chat.postMessage",
    "chat.update",
    "reactions.add",
    "files.getUploadURLExternal",
    "files.completeUploadExternal",
    "usergroups.users.list",
];

/// A message posted: where it is, to edit or thread under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
}

/// One file to upload into a thread.
#[derive(Debug, Clone)]
pub struct Upload {
    pub filename: String,
    pub title: String,
    pub bytes: Vec<u8>,
}

impl WebClient {
    pub fn new(base: &str, bot_token: Secret) -> Result<WebClient> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::BadBaseUrl(base.to_string()));
        }
        let base = if base.ends_with('/') {
            base.to_string()
        } else {
            format!("{base}/")
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| Error::Http {
                method: "client".into(),
                source,
            })?;
        let limiters = METHODS
            .iter()
            .map(|m| (*m, RateLimiter::direct(Tier::of(m).quota())))
            .collect();
        Ok(WebClient {
            inner: Arc::new(Inner {
                http,
                base,
                bot_token,
                limiters,
            }),
        })
    }

    /// Sends one request: waits for the method's limiter, retries on 429 after
    /// Retry-After, and turns `{"ok": false}` into [`Error::Api`].
    async fn call(&self, method: &str, token: &Secret, body: Body<'_>) -> Result<Value> {
        let url = format!("{}{method}", self.inner.base);
        let mut attempts = 0;
        loop {
            if let Some(limiter) = self.inner.limiters.get(method) {
                limiter.until_ready().await;
            }
            let request = self.inner.http.post(&url).bearer_auth(token.expose());
            let request = match &body {
                Body::Json(value) => request.json(value),
                Body::Form(fields) => request.form(fields),
            };
            let response = request.send().await.map_err(|source| Error::Http {
                method: method.to_string(),
                source,
            })?;
            if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                attempts += 1;
                if attempts >= MAX_RATE_LIMITED {
                    return Err(Error::RateLimited {
                        method: method.to_string(),
                        attempts,
                    });
                }
                let wait = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .unwrap_or(Duration::from_secs(1))
                    .min(MAX_RETRY_AFTER);
                tracing::warn!(
                    method,
                    wait_s = wait.as_secs(),
                    "Slack rate limited; waiting"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            let status = response.status();
            let value: Value = response.json().await.map_err(|source| Error::Http {
                method: method.to_string(),
                source,
            })?;
            if value.get("ok").and_then(Value::as_bool) == Some(true) {
                return Ok(value);
            }
            let error = value
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status} without ok"));
            return Err(Error::Api {
                method: method.to_string(),
                error,
            });
        }
    }

    async fn bot(&self, method: &str, body: Body<'_>) -> Result<Value> {
        let token = self.inner.bot_token.clone();
        self.call(method, &token, body).await
    }

    fn field<'v>(method: &str, value: &'v Value, name: &str) -> Result<&'v str> {
        value
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Response {
                method: method.to_string(),
                detail: format!("no `{name}`"),
            })
    }

    /// The bot's own user id, to ignore its own messages.
    pub async fn auth_test(&self) -> Result<String> {
        let value = self.bot("auth.test", Body::Json(json!({}))).await?;
        Ok(Self::field("auth.test", &value, "user_id")?.to_string())
    }

    /// A Socket Mode websocket URL (needs the app-level token).
    pub async fn apps_connections_open(&self, app_token: &Secret) -> Result<String> {
        let value = self
            .call("apps.connections.open", app_token, Body::Form(vec![]))
            .await?;
        Ok(Self::field("apps.connections.open", &value, "url")?.to_string())
    }

    pub async fn post_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        blocks: Option<Value>,
    ) -> Result<Posted> {
        let mut body = json!({"channel": channel, "text": text, "unfurl_links": false});
        if let Some(ts) = thread_ts {
            body["thread_ts"] = json!(ts);
        }
        if let Some(blocks) = blocks {
            body["blocks"] = blocks;
        }
        let value = self.bot("chat.postMessage", Body::Json(body)).await?;
        Ok(Posted {
            channel: Self::field("chat.postMessage", &value, "channel")?.to_string(),
            ts: Self::field("chat.postMessage", &value, "ts")?.to_string(),
        })
    }

    pub async fn update(&self, posted: &Posted, text: &str) -> Result<()> {
        self.bot(
            "chat.update",
            Body::Json(json!({"channel": posted.channel, "ts": posted.ts, "text": text})),
        )
        .await
        .map(drop)
    }

    /// Adds a reaction; `already_reacted` counts as done (a retried event).
    pub async fn react(&self, channel: &str, ts: &str, name: &str) -> Result<()> {
        match self
            .bot(
                "reactions.add",
                Body::Json(json!({"channel": channel, "timestamp": ts, "name": name})),
            )
            .await
        {
            Err(Error::Api { error, .. }) if error == "already_reacted" => Ok(()),
            other => other.map(drop),
        }
    }

    /// Uploads files into a thread: files.getUploadURLExternal per file, the bytes
    /// POSTed to the returned URL, then one files.completeUploadExternal.
    pub async fn upload(&self, channel: &str, thread_ts: &str, files: &[Upload]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let mut done = Vec::new();
        for file in files {
            let value = self
                .bot(
                    "files.getUploadURLExternal",
                    Body::Form(vec![
                        ("filename", file.filename.clone()),
                        ("length", file.bytes.len().to_string()),
                    ]),
                )
                .await?;
            let url = Self::field("files.getUploadURLExternal", &value, "upload_url")?;
            let id = Self::field("files.getUploadURLExternal", &value, "file_id")?;
            let response = self
                .inner
                .http
                .post(url)
                .body(file.bytes.clone())
                .send()
                .await
                .map_err(|source| Error::Http {
                    method: "file upload".into(),
                    // The upload URL is a short-lived capability: keep it out of logs.
                    source: source.without_url(),
                })?;
            if !response.status().is_success() {
                return Err(Error::Response {
                    method: "file upload".into(),
                    detail: format!("HTTP {}", response.status()),
                });
            }
            done.push(json!({"id": id, "title": file.title}));
        }
        self.bot(
            "files.completeUploadExternal",
            Body::Form(vec![
                ("files", Value::Array(done).to_string()),
                ("channel_id", channel.to_string()),
                ("thread_ts", thread_ts.to_string()),
            ]),
        )
        .await
        .map(drop)
    }

    /// Members of a user group (user ids).
    pub async fn usergroup_members(&self, usergroup: &str) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Users {
            #[serde(default)]
            users: Vec<String>,
        }
        let value = self
            .bot(
                "usergroups.users.list",
                Body::Form(vec![("usergroup", usergroup.to_string())]),
            )
            .await?;
        let users: Users = serde_json::from_value(value).map_err(|e| Error::Response {
            method: "usergroups.users.list".into(),
            detail: e.to_string(),
        })?;
        Ok(users.users)
    }
}

/// JSON for the chat methods; form fields for the methods that only accept forms.
enum Body<'a> {
    Json(Value),
    Form(Vec<(&'a str, String)>),
}
