//! The Slack transport end to end: the real offline investigation on the demo
//! configuration, the signed Events API router and the Socket Mode client,
//! against the in-process fake Slack.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use investigator::app::{App, ModelChoice};
use investigator::chat::slack::events::{sign, Callback};
use investigator::chat::slack::http::{router, HttpState};
use investigator::chat::slack::stored::{StoreEvents, StoreThreads};
use investigator::chat::slack::web::WebClient;
use investigator::chat::slack::{socket, MemoryFeedback, SlackService};
use investigator::config::{interpolate::ProcessEnv, Secret};
use serde_json::{json, Value};

use super::fake_slack::{FakeSlack, APP_TOKEN, BOT_TOKEN, BOT_USER};

const SIGNING_SECRET: &str = "fake-signing-secret-for-tests";
const WAIT: Duration = Duration::from_secs(90);

struct Harness {
    fake: FakeSlack,
    service: Arc<SlackService>,
    store: investigator::store::Store,
    feedback: Arc<MemoryFeedback>,
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

type Built = (
    Arc<SlackService>,
    Arc<MemoryFeedback>,
    investigator::store::Store,
    tempfile::TempDir,
);

async fn service(fake: &FakeSlack) -> Built {
    let dir = tempfile::tempdir().expect("tempdir");
    let (service, feedback, store) = service_at(fake, dir.path()).await;
    (service, feedback, store, dir)
}

/// A service over the store file in `dir`: building it twice on one directory is
/// a restart.
async fn service_at(
    fake: &FakeSlack,
    dir: &Path,
) -> (
    Arc<SlackService>,
    Arc<MemoryFeedback>,
    investigator::store::Store,
) {
    let demo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo"));
    service_with_config(fake, dir, demo).await
}

/// The same over another configuration directory.
async fn service_with_config(
    fake: &FakeSlack,
    dir: &Path,
    config: &Path,
) -> (
    Arc<SlackService>,
    Arc<MemoryFeedback>,
    investigator::store::Store,
) {
    let store = dir.join("store.db");
    let app = App::build(
        config,
        &store.display().to_string(),
        ModelChoice::Offline,
        &ProcessEnv,
    )
    .await
    .expect("app");
    let web = WebClient::new(&fake.api_url(), Secret::new(BOT_TOKEN)).expect("client");
    let feedback = Arc::new(MemoryFeedback::default());
    let store = app.sessions.store().clone();
    let service = SlackService::start(
        Arc::new(app),
        web,
        Arc::new(StoreEvents(store.clone())),
        Arc::new(StoreThreads(store.clone())),
        feedback.clone(),
    )
    .await
    .expect("service");
    (service, feedback, store)
}

/// Serves `service`'s Events API on a free port; returns its base URL.
async fn serve_events(service: Arc<SlackService>) -> String {
    let app = router(HttpState::new(service, Secret::new(SIGNING_SECRET)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn harness() -> Harness {
    let fake = FakeSlack::start().await;
    let (service, feedback, store, dir) = service(&fake).await;
    let app = router(HttpState::new(service.clone(), Secret::new(SIGNING_SECRET)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Harness {
        fake,
        service,
        store,
        feedback,
        url: format!("http://{addr}"),
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

fn event(event_id: &str, event: Value) -> Value {
    json!({"type": "event_callback", "team_id": "TFAKE", "event_id": event_id, "event": event})
}

fn mention(user: &str, channel: &str, ts: &str, text: &str) -> Value {
    json!({"type": "app_mention", "user": user, "channel": channel, "ts": ts,
           "text": format!("<@{BOT_USER}> {text}")})
}

impl Harness {
    /// Messages the stored session of `key` holds.
    async fn messages_in(&self, key: &str) -> usize {
        self.store
            .session_messages(key)
            .await
            .map(|m| m.len())
            .unwrap_or(0)
    }

    async fn send(&self, body: &Value, retry: Option<u32>, timestamp: i64, secret: &str) -> u16 {
        let bytes = body.to_string().into_bytes();
        let signature = sign(&Secret::new(secret), timestamp, &bytes);
        let mut request = self
            .http
            .post(format!("{}/slack/events", self.url))
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header("x-slack-signature", signature)
            .body(bytes);
        if let Some(n) = retry {
            request = request
                .header("x-slack-retry-num", n.to_string())
                .header("x-slack-retry-reason", "http_timeout");
        }
        request.send().await.expect("send").status().as_u16()
    }

    /// A signed interaction (a button press), as Slack posts it: form-encoded.
    async fn interact(&self, payload: &Value) -> u16 {
        let form = serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form");
        let now = chrono::Utc::now().timestamp();
        self.http
            .post(format!("{}/slack/interactions", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", now.to_string())
            .header(
                "x-slack-signature",
                sign(&Secret::new(SIGNING_SECRET), now, form.as_bytes()),
            )
            .body(form)
            .send()
            .await
            .expect("send")
            .status()
            .as_u16()
    }

    async fn send_ok(&self, body: &Value) -> u16 {
        self.send(body, None, chrono::Utc::now().timestamp(), SIGNING_SECRET)
            .await
    }

    /// Reports (messages with blocks) posted in the thread.
    fn reports_in(&self, thread: &str) -> Vec<Value> {
        reports_in(&self.fake, thread)
    }

    fn completed_uploads_in(&self, thread: &str) -> usize {
        self.fake
            .calls_to("files.completeUploadExternal")
            .iter()
            .filter(|c| c.body["thread_ts"] == thread)
            .count()
    }
}

fn reports_in(fake: &FakeSlack, thread: &str) -> Vec<Value> {
    fake.calls_to("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["thread_ts"] == thread && c.body.get("blocks").is_some())
        .map(|c| c.body)
        .collect()
}

#[tokio::test]
async fn url_verification_answers_the_challenge() {
    let h = harness().await;
    let body = json!({"type": "url_verification", "token": "x", "challenge": "c-123"});
    let bytes = body.to_string();
    let now = chrono::Utc::now().timestamp();
    let response = h
        .http
        .post(format!("{}/slack/events", h.url))
        .header("x-slack-request-timestamp", now.to_string())
        .header(
            "x-slack-signature",
            sign(&Secret::new(SIGNING_SECRET), now, bytes.as_bytes()),
        )
        .body(bytes)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    let value: Value = response.json().await.expect("json");
    assert_eq!(value["challenge"], "c-123");
    let _ = serde_json::from_value::<Callback>(body).expect("parses");
}

#[tokio::test]
async fn mention_gets_a_threaded_report_with_files_and_a_follow_up_continues() {
    let h = harness().await;
    let ts = "1700000100.000100";
    let status = h
        .send_ok(&event(
            "Ev1",
            mention("U0DEMO", "C0DEMO", ts, "why is checkout erroring?"),
        ))
        .await;
    assert_eq!(status, 200);
    assert!(
        h.fake
            .wait_for(WAIT, |_| h.completed_uploads_in(ts) == 1)
            .await,
        "no upload in the thread; calls: {:?}",
        h.fake.calls().iter().map(|c| &c.method).collect::<Vec<_>>()
    );
    let reactions = h.fake.calls_to("reactions.add");
    assert_eq!(reactions.len(), 1);
    assert_eq!(reactions[0].body["name"], "eyes");
    assert_eq!(reactions[0].body["timestamp"], ts);
    // One progress message, edited in place as tools ran.
    let progress: Vec<_> = h
        .fake
        .calls_to("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["thread_ts"] == ts && c.body.get("blocks").is_none())
        .collect();
    assert_eq!(progress.len(), 1, "{progress:?}");
    let updates = h.fake.calls_to("chat.update");
    assert!(!updates.is_empty());
    assert!(updates
        .iter()
        .any(|u| u.body["text"].as_str().unwrap_or("").contains("Done")));
    let reports = h.reports_in(ts);
    assert_eq!(reports.len(), 1);
    let blocks = reports[0]["blocks"].to_string();
    assert!(blocks.contains("Root cause"), "{blocks}");
    assert!(blocks.contains("`E1`") || blocks.contains("E1"), "{blocks}");
    assert!(blocks.contains("dig_deeper") && blocks.contains("mark_wrong"));
    assert!(blocks.contains("tool call(s)") && blocks.contains("tokens"));
    let uploads = h.fake.uploads();
    assert!(uploads.len() >= 2, "evidence files and the report");
    assert!(uploads.iter().all(|(_, bytes)| !bytes.is_empty()));
    let complete = &h.fake.calls_to("files.completeUploadExternal")[0].body;
    assert_eq!(complete["channel_id"], "C0DEMO");
    let files: Value =
        serde_json::from_str(complete["files"].as_str().unwrap_or("[]")).expect("files");
    assert_eq!(files.as_array().map(Vec::len), Some(uploads.len()));

    let key = format!("slack:C0DEMO:{ts}");
    let before = h.messages_in(&key).await;
    assert!(before > 0);
    // A thread reply without a mention continues the same session.
    let follow_up = json!({"type": "message", "user": "U0DEMO", "channel": "C0DEMO", "channel_type": "channel",
        "ts": "1700000100.000900", "thread_ts": ts, "text": "and what about inventory?"});
    assert_eq!(h.send_ok(&event("Ev2", follow_up)).await, 200);
    assert!(
        h.fake
            .wait_for(WAIT, |_| h.completed_uploads_in(ts) == 2)
            .await
    );
    let after = h.messages_in(&key).await;
    assert!(after > before, "the follow-up did not continue the session");
    // The bot's own messages in the thread never start anything.
    let own = json!({"type": "message", "user": BOT_USER, "bot_id": "B1", "channel": "C0DEMO",
        "ts": "1700000100.000950", "thread_ts": ts, "text": "report"});
    assert_eq!(h.send_ok(&event("Ev3", own)).await, 200);
    // A reply addressed to a person in the thread is theirs to answer.
    let to_person = json!({"type": "message", "user": "U0DEMO", "channel": "C0DEMO", "channel_type": "channel",
        "ts": "1700000100.000960", "thread_ts": ts, "text": "<@U0ALICE> can you roll it back?"});
    assert_eq!(h.send_ok(&event("Ev3b", to_person)).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.reports_in(ts).len(), 2);
    let messages_now = h.messages_in(&key).await;
    assert_eq!(messages_now, after, "a reply to a person became a question");
    assert!(
        !h.fake
            .calls_to("reactions.add")
            .iter()
            .any(|c| c.body["timestamp"] == "1700000100.000960"),
        "the bot took up a reply addressed to a person"
    );

    // "Mark answer wrong" is stored as feedback for this session.
    let payload = json!({"type": "block_actions", "user": {"id": "U0DEMO"}, "channel": {"id": "C0DEMO"},
        "message": {"ts": "1700000000.000009", "thread_ts": ts},
        "actions": [{"action_id": "mark_wrong", "value": "forged"}]});
    assert_eq!(h.interact(&payload).await, 200);
    assert!(
        h.fake
            .wait_for(WAIT, |_| !h.feedback.items().is_empty())
            .await
    );
    assert_eq!(h.feedback.items()[0].session, key);
    assert!(h.fake.violations().is_empty(), "{:?}", h.fake.violations());
}

#[tokio::test]
async fn a_squad_channel_never_shows_another_squads_data() {
    let h = harness().await;
    // identity's member asking in checkout's channel: refused, politely.
    let ts = "1700000200.000100";
    h.send_ok(&event(
        "Ev10",
        mention("U0IDENTITY", "C0DEMO", ts, "why is checkout erroring?"),
    ))
    .await;
    assert!(
        h.fake
            .wait_for(WAIT, |f| f.calls_to("chat.postMessage").len() == 1)
            .await
    );
    let refusal = &h.fake.calls_to("chat.postMessage")[0].body;
    assert_eq!(refusal["thread_ts"], ts);
    let text = refusal["text"].as_str().unwrap_or_default();
    assert!(text.contains("not a member"), "{text}");
    assert!(
        !text.contains("checkout_db") && !text.contains("payment"),
        "{text}"
    );

    // identity's member in its own channel gets an answer with nothing of checkout's.
    let ts2 = "1700000200.000500";
    h.send_ok(&event(
        "Ev11",
        mention("U0IDENTITY", "C0IDENTITY", ts2, "why is checkout erroring?"),
    ))
    .await;
    assert!(
        h.fake
            .wait_for(WAIT, |_| h.completed_uploads_in(ts2) == 1)
            .await
    );
    let mut everything = h.fake.posted_texts().join("\n");
    for (_, bytes) in h.fake.uploads() {
        everything.push_str(&String::from_utf8_lossy(&bytes));
    }
    for secret in ["checkout_db", "payment-service", "checkout-api"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked into the identity channel"
        );
    }
    // Nothing was ever uploaded in the refused thread.
    assert_eq!(h.completed_uploads_in(ts), 0);
    // An unknown user is told how to get access.
    let ts3 = "1700000200.000900";
    h.send_ok(&event(
        "Ev12",
        mention("U0NOBODY", "C0RANDOM", ts3, "hello?"),
    ))
    .await;
    assert!(
        h.fake
            .wait_for(WAIT, |f| f
                .calls_to("chat.postMessage")
                .iter()
                .any(|c| c.body["thread_ts"] == ts3))
            .await
    );
    let posted = h.fake.posted_texts().join("\n");
    assert!(posted.contains("squads.yaml"), "{posted}");

    // In an unbound channel, a thread answered for checkout is not continued by
    // identity's member (who would otherwise see checkout's session).
    let ts4 = "1700000200.001000";
    h.send_ok(&event(
        "Ev13",
        mention("U0DEMO", "C0OPEN", ts4, "why is checkout erroring?"),
    ))
    .await;
    assert!(
        h.fake
            .wait_for(WAIT, |_| h.completed_uploads_in(ts4) == 1)
            .await
    );
    let reply = json!({"type": "message", "user": "U0IDENTITY", "channel": "C0OPEN", "channel_type": "channel",
        "ts": "1700000200.001100", "thread_ts": ts4, "text": "show me the payment rows"});
    h.send_ok(&event("Ev14", reply)).await;
    assert!(
        h.fake
            .wait_for(WAIT, |f| f
                .posted_texts()
                .iter()
                .any(|t| t.contains("different squad scope")))
            .await
    );
    assert_eq!(h.reports_in(ts4).len(), 1);
}

#[tokio::test]
async fn a_retried_event_is_answered_once() {
    let h = harness().await;
    let ts = "1700000300.000100";
    let body = event(
        "Ev20",
        mention("U0DEMO", "C0DEMO", ts, "why is checkout erroring?"),
    );
    let now = chrono::Utc::now().timestamp();
    assert_eq!(h.send(&body, None, now, SIGNING_SECRET).await, 200);
    assert_eq!(h.send(&body, Some(1), now, SIGNING_SECRET).await, 200);
    assert!(
        h.fake
            .wait_for(WAIT, |_| h.completed_uploads_in(ts) == 1)
            .await
    );
    assert_eq!(h.send(&body, Some(2), now, SIGNING_SECRET).await, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.reports_in(ts).len(), 1);
    assert_eq!(h.fake.calls_to("reactions.add").len(), 1);
    assert_eq!(h.completed_uploads_in(ts), 1);
}

#[tokio::test]
async fn a_retry_after_a_restart_is_still_answered_once_and_the_thread_continues() {
    let mut h = harness().await;
    let ts = "1700000350.000100";
    let body = event(
        "Ev25",
        mention("U0DEMO", "C0DEMO", ts, "why is checkout erroring?"),
    );
    let now = chrono::Utc::now().timestamp();
    assert_eq!(h.send(&body, None, now, SIGNING_SECRET).await, 200);
    assert!(
        h.fake
            .wait_for(WAIT, |_| h.completed_uploads_in(ts) == 1)
            .await
    );
    let key = format!("slack:C0DEMO:{ts}");
    let before = h.messages_in(&key).await;
    assert!(before > 0, "the thread's session is stored");
    // Restart: a new process on the same store file.
    let (service, _feedback, store) = service_at(&h.fake, h._dir.path()).await;
    h.url = serve_events(service.clone()).await;
    h.service = service;
    h.store = store;
    assert_eq!(h.send(&body, Some(1), now, SIGNING_SECRET).await, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        h.reports_in(ts).len(),
        1,
        "the retry was answered again after the restart"
    );
    // The thread continues from the stored conversation.
    let follow_up = json!({"type": "message", "user": "U0DEMO", "channel": "C0DEMO", "channel_type": "channel",
        "ts": "1700000350.000900", "thread_ts": ts, "text": "show me E2 by hour"});
    assert_eq!(h.send_ok(&event("Ev26", follow_up)).await, 200);
    assert!(
        h.fake
            .wait_for(WAIT, |_| h.completed_uploads_in(ts) == 2)
            .await
    );
    assert!(
        h.messages_in(&key).await > before,
        "the follow-up did not continue the stored session"
    );
}

#[tokio::test]
async fn bad_signatures_and_old_timestamps_get_401_and_nothing_is_posted() {
    let h = harness().await;
    let body = event(
        "Ev30",
        mention("U0DEMO", "C0DEMO", "1700000400.000100", "why?"),
    );
    let now = chrono::Utc::now().timestamp();
    assert_eq!(h.send(&body, None, now, "not-the-secret").await, 401);
    assert_eq!(h.send(&body, None, now - 301, SIGNING_SECRET).await, 401);
    assert_eq!(h.send(&body, None, now + 301, SIGNING_SECRET).await, 401);
    let unsigned = h
        .http
        .post(format!("{}/slack/events", h.url))
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(unsigned.status().as_u16(), 401);
    let command = h
        .http
        .post(format!("{}/slack/commands", h.url))
        .header("x-slack-request-timestamp", now.to_string())
        .header("x-slack-signature", "v0=00")
        .body("command=%2Finvestigate&text=why&user_id=U0DEMO&channel_id=C0DEMO")
        .send()
        .await
        .expect("send");
    assert_eq!(command.status().as_u16(), 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posted: Vec<_> = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.method != "auth.test")
        .collect();
    assert!(posted.is_empty(), "{posted:?}");
}

#[tokio::test]
async fn a_slash_command_posts_a_root_message_and_answers_in_its_thread() {
    let h = harness().await;
    let body = "command=%2Finvestigate&text=why+is+checkout+erroring%3F&user_id=U0DEMO&channel_id=C0DEMO&channel_name=checkout";
    let now = chrono::Utc::now().timestamp();
    let response = h
        .http
        .post(format!("{}/slack/commands", h.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", now.to_string())
        .header(
            "x-slack-signature",
            sign(&Secret::new(SIGNING_SECRET), now, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        h.fake
            .wait_for(WAIT, |f| !f
                .calls_to("files.completeUploadExternal")
                .is_empty())
            .await
    );
    let root = &h.fake.calls_to("chat.postMessage")[0];
    assert!(root.body.get("thread_ts").is_none());
    let complete = &h.fake.calls_to("files.completeUploadExternal")[0];
    assert_eq!(
        complete.body["thread_ts"].as_str(),
        Some("1700000000.000002")
    );
}

#[tokio::test]
async fn a_429_from_post_message_is_waited_out() {
    let h = harness().await;
    h.fake.rate_limit_next_posts(1);
    let ts = "1700000500.000100";
    h.send_ok(&event(
        "Ev40",
        mention("U0DEMO", "C0DEMO", ts, "why is checkout erroring?"),
    ))
    .await;
    assert!(
        h.fake
            .wait_for(WAIT, |_| h.completed_uploads_in(ts) == 1)
            .await
    );
    let posts: Vec<_> = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "chat.postMessage")
        .collect();
    assert_eq!(posts[0].status, 429);
    assert_eq!(posts[1].status, 200);
    let waited = posts[1].at.duration_since(posts[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
    assert_eq!(h.reports_in(ts).len(), 1);
}

#[tokio::test]
async fn socket_mode_acks_envelopes_and_reconnects_after_a_drop() {
    let fake = FakeSlack::start().await;
    let (service, _feedback, _store, _dir) = service(&fake).await;
    fake.drop_first_socket();
    let envelope = |id: &str, event_id: &str, ts: &str| {
        json!({"envelope_id": id, "type": "events_api", "accepts_response_payload": false,
               "retry_attempt": 0,
               "payload": event(event_id, mention("U0DEMO", "C0DEMO", ts, "why is checkout erroring?"))})
    };
    fake.queue_envelope(envelope("env-1", "Ev50", "1700000600.000100"));
    fake.queue_envelope(envelope("env-2", "Ev51", "1700000600.000200"));
    let web = WebClient::new(&fake.api_url(), Secret::new(BOT_TOKEN)).expect("client");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(socket::run(web, Secret::new(APP_TOKEN), service, async {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    assert!(
        fake.wait_for(WAIT, |f| reports_in(f, "1700000600.000100").len() == 1
            && reports_in(f, "1700000600.000200").len() == 1)
            .await,
        "acks {:?}, connections {}",
        fake.acks(),
        fake.connections()
    );
    assert_eq!(fake.acks(), vec!["env-1".to_string(), "env-2".to_string()]);
    assert!(fake.connections() >= 2, "did not reconnect");
    assert!(fake.calls_to("apps.connections.open").len() >= 2);
    assert!(started.elapsed() < WAIT);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), runner).await;
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn a_direct_message_is_answered_in_its_thread() {
    let h = harness().await;
    let ts = "1700000700.000100";
    let dm = json!({"type": "message", "user": "U0DEMO", "channel": "D0DEMODM", "channel_type": "im",
        "ts": ts, "text": "why is checkout erroring?"});
    assert_eq!(h.send_ok(&event("Ev60", dm)).await, 200);
    assert!(
        h.fake
            .wait_for(WAIT, |_| h.completed_uploads_in(ts) == 1)
            .await
    );
    let reports = h.reports_in(ts);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["channel"], "D0DEMODM");
    assert!(reports[0]["blocks"].to_string().contains("Root cause"));
}

/// A restart cut a thread's question off: the thread is told once (also when
/// asked again, as a second replica would), with a button that asks the stored
/// question again, for whoever presses it, under the thread's squad scope.
#[tokio::test]
async fn a_thread_cut_off_by_a_restart_is_told_and_can_ask_again() {
    let h = harness().await;
    let ts = "1700000700.000100";
    let key = format!("slack:C0DEMO:{ts}");
    let question = "why is checkout erroring?";
    let body = event("Ev70", mention("U0DEMO", "C0DEMO", ts, question));
    assert_eq!(h.send_ok(&body).await, 200);
    assert!(
        h.fake
            .wait_for(WAIT, |_| h.completed_uploads_in(ts) == 1)
            .await
    );
    let before = h.messages_in(&key).await;
    // A process that died answering a follow-up: it held the lease (now expired)
    // and had marked the question running.
    let now = chrono::Utc::now();
    let long_ago = now - chrono::Duration::minutes(30);
    let taken = h
        .store
        .try_lease(
            &key,
            "dead-process",
            long_ago,
            long_ago + chrono::Duration::minutes(5),
        )
        .await
        .expect("lease");
    assert_eq!(taken, investigator::store::LeaseOutcome::Taken);
    h.store
        .mark_running(&key, "dead-process", "what changed at 10:12?", long_ago)
        .await
        .expect("running");
    let told = h.service.notify_interrupted().await;
    assert_eq!(told, 1);
    assert_eq!(h.service.notify_interrupted().await, 0, "told twice");
    let notices: Vec<Value> = h
        .fake
        .calls_to("chat.postMessage")
        .into_iter()
        .map(|c| c.body)
        .filter(|b| b["thread_ts"] == ts && b["text"].as_str().unwrap_or("").contains("restarted"))
        .collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    let notice = notices[0].to_string();
    assert!(notice.contains("what changed at 10:12?"), "{notice}");
    assert!(notice.contains("retry_question"), "{notice}");
    let row = h.store.session(&key).await.expect("row").expect("session");
    assert_eq!(row.status, investigator::store::SessionStatus::Idle);

    // "Ask again", with a forged value: the question comes from the store.
    let payload = json!({"type": "block_actions", "user": {"id": "U0DEMO"}, "channel": {"id": "C0DEMO"},
        "message": {"ts": "1700000700.000500", "thread_ts": ts},
        "actions": [{"action_id": "retry_question", "value": "slack:C0OTHER:1"}]});
    assert_eq!(h.interact(&payload).await, 200);
    assert!(
        h.fake
            .wait_for(WAIT, |_| h.completed_uploads_in(ts) == 2)
            .await,
        "the question was not asked again"
    );
    assert!(h.messages_in(&key).await > before);
    let reports = h.store.session_reports(&key).await.expect("reports");
    assert_eq!(
        reports.last().map(|r| r.question.as_str()),
        Some("what changed at 10:12?")
    );
}

/// Copies a directory tree (the demo configuration with its data).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Squad membership through Slack user groups (`members.slack_usergroups`): a
/// member of the on-call group is answered as the squad; someone in no group is
/// refused; a group Slack will not list grants nothing (fail closed).
#[tokio::test]
async fn user_groups_grant_their_squad_and_fail_closed() {
    let fake = FakeSlack::start().await;
    fake.set_usergroup("S0ONCALL", &["U0GROUPIE", "U0DEMO"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    copy_tree(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo")),
        &config,
    );
    let squads = std::fs::read_to_string(config.join("squads.yaml")).expect("squads");
    let squads = squads
        .replacen(
            "      slack: [U0DEMO]\n",
            "      slack: [U0DEMO]\n      slack_usergroups: [S0ONCALL]\n",
            1,
        )
        .replacen(
            "      slack: [U0IDENTITY]\n",
            "      slack: [U0IDENTITY]\n      slack_usergroups: [S0UNLISTABLE]\n",
            1,
        );
    assert!(squads.contains("S0ONCALL") && squads.contains("S0UNLISTABLE"));
    std::fs::write(config.join("squads.yaml"), squads).expect("write squads");
    let (service, _feedback, _store) = service_with_config(&fake, dir.path(), &config).await;
    let url = serve_events(service).await;
    let http = reqwest::Client::new();
    let send = |body: Value| {
        let bytes = body.to_string().into_bytes();
        let now = chrono::Utc::now().timestamp();
        http.post(format!("{url}/slack/events"))
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", now.to_string())
            .header(
                "x-slack-signature",
                sign(&Secret::new(SIGNING_SECRET), now, &bytes),
            )
            .body(bytes)
            .send()
    };

    let answered = "1700000800.000100";
    let status = send(event(
        "Ev80",
        mention("U0GROUPIE", "C0DEMO", answered, "why is checkout erroring?"),
    ))
    .await
    .expect("send")
    .status();
    assert_eq!(status.as_u16(), 200);
    assert!(
        fake.wait_for(WAIT, |_| !reports_in(&fake, answered).is_empty())
            .await,
        "a member of the on-call group was not answered"
    );

    for (id, user, channel, ts) in [
        ("Ev81", "U0NOBODY", "C0DEMO", "1700000800.000200"),
        ("Ev82", "U0ALSO", "C0IDENTITY", "1700000800.000300"),
    ] {
        let status = send(event(id, mention(user, channel, ts, "why is login slow?")))
            .await
            .expect("send")
            .status();
        assert_eq!(status.as_u16(), 200);
        assert!(
            fake.wait_for(WAIT, |f| f
                .calls_to("chat.postMessage")
                .iter()
                .any(|c| c.body["thread_ts"] == ts))
                .await,
            "{user} got no reply"
        );
        assert!(reports_in(&fake, ts).is_empty(), "{user} got a report");
    }
    let asked: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "usergroups.users.list")
        .map(|c| c.body["usergroup"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(asked.iter().any(|g| g == "S0UNLISTABLE"), "{asked:?}");
    assert_eq!(
        asked.iter().filter(|g| *g == "S0ONCALL").count(),
        1,
        "group members are cached: {asked:?}"
    );
}
