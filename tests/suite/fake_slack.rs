//! A fake Slack on 127.0.0.1:0: the Web API methods the bot uses (checking the
//! bearer token each one needs), the upload URL files.getUploadURLExternal hands
//! out, and a Socket Mode websocket that apps.connections.open points at. It
//! records every call so tests can check what was posted where.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

pub const BOT_TOKEN: &str = "xoxb-fake-bot-token";
pub const APP_TOKEN: &str = "xapp-fake-app-token";
pub const BOT_USER: &str = "UBOTFAKE";

/// One Web API call as received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    pub at: Instant,
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    uploads: Vec<(String, Vec<u8>)>,
    violations: Vec<String>,
    next_ts: u64,
    next_file: u64,
    /// chat.postMessage calls still to answer with 429 + Retry-After: 1.
    rate_limit_posts: u32,
    envelopes: VecDeque<Value>,
    acks: Vec<String>,
    connections: u32,
    /// Close the first websocket after its first acked envelope.
    drop_first_socket: bool,
    /// User group id → its members, for usergroups.users.list; others are unknown.
    usergroups: std::collections::HashMap<String, Vec<String>>,
}

struct Shared {
    inner: Mutex<Inner>,
    base: String,
    ws: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct FakeSlack {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let http_addr: SocketAddr = http.local_addr().expect("addr");
        let ws_addr: SocketAddr = ws.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                next_ts: 1,
                ..Inner::default()
            }),
            base: format!("http://{http_addr}"),
            ws: format!("ws://{ws_addr}/link"),
        });
        let app = Router::new()
            .route("/api/{method}", post(api))
            .route("/upload/{file}", post(upload))
            .with_state(shared.clone());
        let web = tokio::spawn(async move {
            let _ = axum::serve(http, app).await;
        });
        let socket_shared = shared.clone();
        let sockets = tokio::spawn(async move {
            while let Ok((stream, _)) = ws.accept().await {
                tokio::spawn(serve_socket(socket_shared.clone(), stream));
            }
        });
        FakeSlack {
            shared,
            tasks: vec![web, sockets],
        }
    }

    /// Members of a user group as usergroups.users.list answers them.
    pub fn set_usergroup(&self, id: &str, users: &[&str]) {
        self.shared.lock().usergroups.insert(
            id.to_string(),
            users.iter().map(|u| u.to_string()).collect(),
        );
    }

    /// For `SLACK_API_URL`.
    pub fn api_url(&self) -> String {
        format!("{}/api/", self.shared.base)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.status == 200)
            .collect()
    }

    pub fn uploads(&self) -> Vec<(String, Vec<u8>)> {
        self.shared.lock().uploads.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    pub fn rate_limit_next_posts(&self, n: u32) {
        self.shared.lock().rate_limit_posts = n;
    }

    pub fn queue_envelope(&self, envelope: Value) {
        self.shared.lock().envelopes.push_back(envelope);
    }

    pub fn drop_first_socket(&self) {
        self.shared.lock().drop_first_socket = true;
    }

    pub fn acks(&self) -> Vec<String> {
        self.shared.lock().acks.clone()
    }

    pub fn connections(&self) -> u32 {
        self.shared.lock().connections
    }

    /// Every text the bot posted or edited, blocks included, as one string each.
    pub fn posted_texts(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == "chat.postMessage" || c.method == "chat.update")
            .map(|c| c.body.to_string())
            .collect()
    }

    /// Waits until `check` holds, up to `limit`.
    pub async fn wait_for(&self, limit: Duration, check: impl Fn(&FakeSlack) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        check(self)
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn form_to_json(body: &[u8]) -> Value {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

async fn api(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json_body = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let parsed = if json_body {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    } else {
        form_to_json(&body)
    };
    let want = if method == "apps.connections.open" {
        APP_TOKEN
    } else {
        BOT_TOKEN
    };
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut inner = shared.lock();
    if auth != format!("Bearer {want}") {
        inner.violations.push(format!("{method}: wrong token"));
        return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    let mut call = Call {
        method: method.clone(),
        body: parsed.clone(),
        at: Instant::now(),
        status: 200,
    };
    if method == "chat.postMessage" && inner.rate_limit_posts > 0 {
        inner.rate_limit_posts -= 1;
        call.status = 429;
        inner.calls.push(call);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response();
    }
    inner.calls.push(call);
    let reply = match method.as_str() {
        "auth.test" => json!({"ok": true, "user_id": BOT_USER, "team_id": "TFAKE"}),
        "apps.connections.open" => json!({"ok": true, "url": shared.ws}),
        "chat.postMessage" => {
            let Some(channel) = parsed.get("channel").and_then(Value::as_str) else {
                return Json(json!({"ok": false, "error": "channel_not_found"})).into_response();
            };
            if parsed.get("text").and_then(Value::as_str).is_none() {
                inner
                    .violations
                    .push("chat.postMessage without text".into());
            }
            if let Some(blocks) = parsed.get("blocks").and_then(Value::as_array) {
                if blocks.len() > 50 {
                    inner.violations.push("more than 50 blocks".into());
                }
                for block in blocks {
                    let text = block
                        .pointer("/text/text")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if text.chars().count() > 3000 {
                        inner.violations.push("section text over 3000".into());
                    }
                }
            }
            inner.next_ts += 1;
            json!({"ok": true, "channel": channel, "ts": format!("1700000000.{:06}", inner.next_ts)})
        }
        "chat.update" | "reactions.add" | "files.completeUploadExternal" => json!({"ok": true}),
        "files.getUploadURLExternal" => {
            let length = parsed
                .get("length")
                .and_then(Value::as_str)
                .and_then(|l| l.parse::<u64>().ok());
            if parsed.get("filename").is_none() || length.is_none() {
                inner
                    .violations
                    .push("getUploadURLExternal without filename/length".into());
            }
            inner.next_file += 1;
            let id = format!("F{}", inner.next_file);
            json!({"ok": true, "upload_url": format!("{}/upload/{id}", shared.base), "file_id": id})
        }
        "usergroups.users.list" => {
            let group = parsed
                .get("usergroup")
                .and_then(Value::as_str)
                .unwrap_or("");
            match inner.usergroups.get(group) {
                Some(users) => json!({"ok": true, "users": users}),
                None => json!({"ok": false, "error": "no_such_subteam"}),
            }
        }
        other => {
            inner.violations.push(format!("unknown method {other}"));
            json!({"ok": false, "error": "unknown_method"})
        }
    };
    Json(reply).into_response()
}

async fn upload(
    State(shared): State<Arc<Shared>>,
    Path(file): Path<String>,
    body: Bytes,
) -> Response {
    shared.lock().uploads.push((file, body.to_vec()));
    (StatusCode::OK, "OK - uploaded").into_response()
}

async fn serve_socket(shared: Arc<Shared>, stream: tokio::net::TcpStream) {
    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let number = {
        let mut inner = shared.lock();
        inner.connections += 1;
        inner.connections
    };
    let hello = json!({"type": "hello", "num_connections": 1});
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let next = shared.lock().envelopes.pop_front();
        let Some(envelope) = next else {
            tokio::time::sleep(Duration::from_millis(25)).await;
            continue;
        };
        let id = envelope
            .get("envelope_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if socket
            .send(Message::Text(envelope.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
        // Slack expects the ack within 3 seconds.
        let acked = tokio::time::timeout(Duration::from_secs(3), async {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    if value.get("envelope_id").and_then(Value::as_str) == Some(id.as_str()) {
                        return true;
                    }
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        let drop_now = {
            let mut inner = shared.lock();
            if acked {
                inner.acks.push(id.clone());
            } else {
                inner
                    .violations
                    .push(format!("envelope {id} not acked within 3 s"));
            }
            inner.drop_first_socket && number == 1
        };
        if drop_now {
            // An abrupt drop (no close frame), like a network failure.
            drop(socket);
            return;
        }
    }
}
