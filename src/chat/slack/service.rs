//! The conversation logic, independent of how events arrive (Socket Mode or
//! HTTP): who is asking, which session, the investigation, and what is posted.
//!
//! Storage is behind small traits ([`ProcessedEvents`], [`ThreadOwners`],
//! [`FeedbackSink`]) with bounded in-memory implementations here, so the
//! persistent store can implement them and survive restarts.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info_span, Instrument};

use super::blocks::{self, ACTION_DIG_DEEPER, ACTION_MARK_WRONG, ACTION_RETRY};
use super::events::{Callback, Interaction, MessageEvent, SlashCommand};
use super::web::{self, Posted, Upload, WebClient};
use crate::access::{Principal, Transport};
use crate::app::App;
use crate::chat::render;
use crate::engine::{Conversation, Event, EventSink, NoEvents};
use crate::evidence::Content;

/// Event ids already handled, so a retried delivery never answers twice.
#[async_trait]
pub trait ProcessedEvents: Send + Sync {
    /// Records `event_id`; true only the first time it is seen.
    async fn first_time(&self, event_id: &str) -> bool;
}

/// Threads the bot has answered, and for which squads, so follow-ups without a
/// mention continue them and nobody continues another squad scope's thread.
#[async_trait]
pub trait ThreadOwners: Send + Sync {
    async fn owner(&self, session: &str) -> Option<Vec<String>>;
    async fn set_owner(&self, session: &str, squads: Vec<String>);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    /// "Mark answer wrong".
    Wrong,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feedback {
    pub session: String,
    pub user: String,
    pub kind: FeedbackKind,
    pub at: DateTime<Utc>,
}

#[async_trait]
pub trait FeedbackSink: Send + Sync {
    async fn record(&self, feedback: Feedback);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Short critical sections that cannot leave the data half-updated.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A bounded set: past `capacity`, the oldest ids are forgotten (Slack retries
/// within minutes, so a large window is plenty).
pub struct MemoryProcessedEvents {
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
    capacity: usize,
}

impl MemoryProcessedEvents {
    pub fn new(capacity: usize) -> Self {
        MemoryProcessedEvents {
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
            capacity: capacity.max(1),
        }
    }
}

#[async_trait]
impl ProcessedEvents for MemoryProcessedEvents {
    async fn first_time(&self, event_id: &str) -> bool {
        let mut guard = lock(&self.inner);
        let (seen, order) = &mut *guard;
        if !seen.insert(event_id.to_string()) {
            return false;
        }
        order.push_back(event_id.to_string());
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                seen.remove(&old);
            }
        }
        true
    }
}

/// Owners by session key, and the keys in insertion order (for the bound).
type OwnerMap = (HashMap<String, Vec<String>>, VecDeque<String>);

/// Bounded like [`MemoryProcessedEvents`].
pub struct MemoryThreads {
    inner: Mutex<OwnerMap>,
    capacity: usize,
}

impl MemoryThreads {
    pub fn new(capacity: usize) -> Self {
        MemoryThreads {
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
            capacity: capacity.max(1),
        }
    }
}

#[async_trait]
impl ThreadOwners for MemoryThreads {
    async fn owner(&self, session: &str) -> Option<Vec<String>> {
        lock(&self.inner).0.get(session).cloned()
    }

    async fn set_owner(&self, session: &str, squads: Vec<String>) {
        let mut guard = lock(&self.inner);
        let (owners, order) = &mut *guard;
        if owners.insert(session.to_string(), squads).is_none() {
            order.push_back(session.to_string());
        }
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                owners.remove(&old);
            }
        }
    }
}

/// Keeps feedback in memory (and logs it) until the store takes it.
#[derive(Default)]
pub struct MemoryFeedback {
    items: Mutex<Vec<Feedback>>,
}

impl MemoryFeedback {
    pub fn items(&self) -> Vec<Feedback> {
        lock(&self.items).clone()
    }
}

#[async_trait]
impl FeedbackSink for MemoryFeedback {
    async fn record(&self, feedback: Feedback) {
        tracing::info!(session_id = %feedback.session, user = %feedback.user, kind = ?feedback.kind, "feedback");
        lock(&self.items).push(feedback);
    }
}

/// When a group's members were read, and who they were.
type CachedGroup = (Instant, Arc<Vec<String>>);

/// User group membership, cached: usergroups.users.list is a tier-2 method.
struct UserGroups {
    ttl: Duration,
    cache: Mutex<HashMap<String, CachedGroup>>,
}

impl UserGroups {
    async fn members(&self, web: &WebClient, group: &str) -> Arc<Vec<String>> {
        if let Some((at, members)) = lock(&self.cache).get(group) {
            if at.elapsed() < self.ttl {
                return members.clone();
            }
        }
        let members = match web.usergroup_members(group).await {
            Ok(members) => Arc::new(members),
            Err(err) => {
                // Fail closed: an unreadable group grants nothing.
                tracing::warn!(usergroup = group, error = %err, "could not list user group members");
                Arc::new(Vec::new())
            }
        };
        lock(&self.cache).insert(group.to_string(), (Instant::now(), members.clone()));
        members
    }
}

/// One question to answer in a thread.
#[derive(Debug, Clone)]
struct Question {
    user: String,
    channel: String,
    direct: bool,
    thread_ts: String,
    /// The message to react to with :eyes:.
    message_ts: Option<String>,
    text: String,
}

pub struct SlackService {
    app: Arc<App>,
    web: WebClient,
    bot_user: String,
    processed: Arc<dyn ProcessedEvents>,
    threads: Arc<dyn ThreadOwners>,
    feedback: Arc<dyn FeedbackSink>,
    groups: UserGroups,
    /// Minimum time between two edits of the progress message.
    edit_interval: Duration,
}

/// The session key of a thread; the API reads the same sessions by this key.
pub fn session_key(channel: &str, thread_ts: &str) -> String {
    format!("slack:{channel}:{thread_ts}")
}

/// The channel and thread of a session key made by [`session_key`].
fn thread_of(session: &str) -> Option<(&str, &str)> {
    let rest = session.strip_prefix("slack:")?;
    let (channel, thread_ts) = rest.split_once(':')?;
    (!channel.is_empty() && !thread_ts.is_empty()).then_some((channel, thread_ts))
}

const HINT: &str =
    "Ask me a question about a production problem, e.g. `@investigator why is checkout erroring?`";

impl SlackService {
    /// Learns the bot's own user id (auth.test) so its own messages are ignored.
    /// Conversations live in the app's session store, shared with the HTTP API.
    pub async fn start(
        app: Arc<App>,
        web: WebClient,
        processed: Arc<dyn ProcessedEvents>,
        threads: Arc<dyn ThreadOwners>,
        feedback: Arc<dyn FeedbackSink>,
    ) -> Result<Arc<SlackService>, web::Error> {
        let bot_user = web.auth_test().await?;
        Ok(Arc::new(SlackService {
            app,
            web,
            bot_user,
            processed,
            threads,
            feedback,
            groups: UserGroups {
                ttl: Duration::from_secs(300),
                cache: Mutex::new(HashMap::new()),
            },
            edit_interval: Duration::from_millis(700),
        }))
    }

    /// After a restart: every thread whose question was cut off (the session left
    /// running by a process that stopped) is told so, with a button to ask again.
    /// Each thread is told once, also across replicas sharing the store. Returns how
    /// many threads were told.
    pub async fn notify_interrupted(&self) -> usize {
        // Bounded: a store full of cut-off threads is told over several starts.
        const MAX_NOTICES: u32 = 200;
        let store = self.app.sessions.store();
        if let Err(err) = store.recover_interrupted(Utc::now()).await {
            tracing::warn!(error = %err, "could not recover sessions left running");
        }
        let rows = match store.interrupted_sessions("slack:", MAX_NOTICES).await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(error = %err, "could not list interrupted Slack sessions");
                return 0;
            }
        };
        let mut told = 0;
        for row in rows {
            let Some((channel, thread_ts)) = thread_of(&row.id) else {
                continue;
            };
            match store.settle_interrupted(&row.id, Utc::now()).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    tracing::warn!(session_id = %row.id, error = %err, "could not settle an interrupted session");
                    continue;
                }
            }
            let question = row.pending_question.as_deref().unwrap_or("your question");
            let message = blocks::interrupted_message(question, &row.id);
            match self
                .web
                .post_message(
                    channel,
                    Some(thread_ts),
                    &message.text,
                    Some(serde_json::Value::Array(message.blocks)),
                )
                .await
            {
                Ok(_) => told += 1,
                Err(err) => {
                    tracing::warn!(session_id = %row.id, error = %err, "could not tell a thread its question was interrupted")
                }
            }
        }
        told
    }

    /// An Events API callback (HTTP or Socket Mode). Run after the ack.
    pub async fn handle_callback(&self, callback: Callback) {
        let Callback::EventCallback {
            event_id, event, ..
        } = callback
        else {
            return;
        };
        if !self.processed.first_time(&event_id).await {
            tracing::info!(event_id, "retried event already handled; ignored");
            return;
        }
        let event: MessageEvent = match serde_json::from_value(event) {
            Ok(event) => event,
            Err(err) => {
                tracing::debug!(event_id, error = %err, "event of no interest");
                return;
            }
        };
        if let Some(question) = self.question_from(event).await {
            self.ask(question).await;
        }
    }

    /// Decides whether a message or mention is a question for the bot.
    async fn question_from(&self, event: MessageEvent) -> Option<Question> {
        let mention = match event.kind.as_str() {
            "app_mention" => true,
            "message" => false,
            _ => return None,
        };
        // Loop prevention: never answer bots, including itself.
        let user = event.user?;
        if event.bot_id.is_some() || user == self.bot_user {
            return None;
        }
        match event.subtype.as_deref() {
            None | Some("thread_broadcast") | Some("file_share") => {}
            Some(_) => return None,
        }
        let channel = event.channel?;
        let ts = event.ts?;
        let raw = event.text.unwrap_or_default();
        let tag = format!("<@{}>", self.bot_user);
        let direct = event.channel_type.as_deref() == Some("im") || channel.starts_with('D');
        let thread_ts = if mention || direct {
            event.thread_ts.unwrap_or_else(|| ts.clone())
        } else {
            // A plain channel message counts only inside a thread the bot answered;
            // one that mentions the bot arrives again as app_mention.
            let thread = event.thread_ts?;
            if raw.contains(&tag) {
                return None;
            }
            // "<@U123> can you check the pool?" in the bot's thread is for a person.
            if raw.trim_start().starts_with("<@") {
                return None;
            }
            self.threads.owner(&session_key(&channel, &thread)).await?;
            thread
        };
        Some(Question {
            user,
            direct,
            text: raw.replace(&tag, " ").trim().to_string(),
            channel,
            thread_ts,
            message_ts: Some(ts),
        })
    }

    /// `/investigate <question>`: a visible root message, answered in its thread.
    pub async fn handle_slash(&self, command: SlashCommand) {
        let text = command.text.trim().to_string();
        let direct = command.is_direct();
        let root = if text.is_empty() {
            format!("<@{}> {HINT}", command.user_id)
        } else {
            format!("<@{}> asked: {}", command.user_id, blocks::escape(&text))
        };
        let posted = match self
            .web
            .post_message(&command.channel_id, None, &root, None)
            .await
        {
            Ok(posted) => posted,
            Err(err) => {
                tracing::warn!(error = %err, "could not post the slash command's root message");
                return;
            }
        };
        if text.is_empty() {
            return;
        }
        self.ask(Question {
            user: command.user_id,
            channel: posted.channel,
            direct,
            thread_ts: posted.ts,
            message_ts: None,
            text,
        })
        .await;
    }

    /// Button presses: dig deeper (a follow-up by whoever pressed) or mark wrong.
    pub async fn handle_interaction(&self, interaction: Interaction) {
        if interaction.kind != "block_actions" {
            return;
        }
        let (Some(channel), Some(message)) = (interaction.channel, interaction.message) else {
            return;
        };
        // The thread comes from where the button is, not from the button's value,
        // which a client could forge.
        let thread_ts = message.thread_ts.unwrap_or(message.ts);
        let session = session_key(&channel.id, &thread_ts);
        for action in interaction.actions {
            match action.action_id.as_str() {
                ACTION_DIG_DEEPER => {
                    self.ask(Question {
                        user: interaction.user.id.clone(),
                        direct: channel.id.starts_with('D'),
                        channel: channel.id.clone(),
                        thread_ts: thread_ts.clone(),
                        message_ts: None,
                        text: "Dig deeper: check what is still uncertain in the last report and look for more evidence.".into(),
                    })
                    .await;
                }
                ACTION_MARK_WRONG => {
                    self.feedback
                        .record(Feedback {
                            session: session.clone(),
                            user: interaction.user.id.clone(),
                            kind: FeedbackKind::Wrong,
                            at: Utc::now(),
                        })
                        .await;
                    self.post(
                        &channel.id,
                        &thread_ts,
                        &format!(
                            "Thanks <@{}>: this answer is recorded as wrong, to improve later investigations.",
                            interaction.user.id
                        ),
                    )
                    .await;
                }
                ACTION_RETRY => {
                    // The question comes from the stored session, not the button.
                    let pending = match self.app.sessions.store().session(&session).await {
                        Ok(row) => row.and_then(|row| row.pending_question),
                        Err(err) => {
                            tracing::warn!(error = %err, "could not read the thread's session");
                            None
                        }
                    };
                    match pending {
                        Some(text) => {
                            self.ask(Question {
                                user: interaction.user.id.clone(),
                                direct: channel.id.starts_with('D'),
                                channel: channel.id.clone(),
                                thread_ts: thread_ts.clone(),
                                message_ts: None,
                                text,
                            })
                            .await;
                        }
                        None => {
                            self.post(
                                &channel.id,
                                &thread_ts,
                                "There is no unfinished question in this thread to ask again.",
                            )
                            .await;
                        }
                    }
                }
                other => tracing::debug!(action = other, "unknown action"),
            }
        }
    }

    async fn post(&self, channel: &str, thread_ts: &str, text: &str) -> Option<Posted> {
        match self
            .web
            .post_message(channel, Some(thread_ts), text, None)
            .await
        {
            Ok(posted) => Some(posted),
            Err(err) => {
                tracing::warn!(error = %err, "could not post to Slack");
                None
            }
        }
    }

    async fn ask(&self, question: Question) {
        let session = session_key(&question.channel, &question.thread_ts);
        let span = info_span!("slack_question", session_id = %session, user = %question.user);
        self.ask_in(question, session).instrument(span).await
    }

    async fn ask_in(&self, q: Question, session: String) {
        if let Some(ts) = &q.message_ts {
            if let Err(err) = self.web.react(&q.channel, ts, "eyes").await {
                tracing::warn!(error = %err, "could not add the :eyes: reaction");
            }
        }
        if q.text.is_empty() {
            self.post(&q.channel, &q.thread_ts, HINT).await;
            return;
        }
        let mut principal = Principal::new(Transport::Slack, &q.user);
        if !q.direct {
            principal = principal.in_channel(&q.channel);
        }
        let extra = self.usergroup_squads(&q.user).await;
        let access = match self.app.resolve_with(&principal, &extra) {
            Ok(access) => access,
            Err(_) => {
                // Through ask_with so the refusal is audited; the Denial's text is
                // written to be shown where the question was asked.
                let mut scratch = Conversation::default();
                if let Err(denial) = self
                    .app
                    .ask_with(&principal, &extra, &mut scratch, &q.text, &NoEvents)
                    .await
                {
                    self.post(&q.channel, &q.thread_ts, &denial.to_string())
                        .await;
                }
                return;
            }
        };
        // Claimed before the investigation, so replies sent while it runs queue on
        // the session's lease instead of being ignored.
        let owner = match self.threads.owner(&session).await {
            Some(owner) => owner,
            None => {
                self.threads
                    .set_owner(&session, access.squads.clone())
                    .await;
                access.squads.clone()
            }
        };
        if owner != access.squads {
            self.post(
                &q.channel,
                &q.thread_ts,
                "This thread's investigation was run with a different squad scope than yours, so I can't continue it for you. Start a new thread and I'll investigate with your access.",
            )
            .await;
            return;
        }
        // The thread's conversation lives in the store, so a restart loses nothing
        // and the API reads the same investigation by this id.
        let mut lease = match self.app.sessions.lease(&session).await {
            Ok(lease) => lease,
            Err(err) => {
                tracing::warn!(error = %err, "could not take the thread's session");
                self.post(
                    &q.channel,
                    &q.thread_ts,
                    "I'm still working on an earlier question in this thread; ask again when it is answered.",
                )
                .await;
                return;
            }
        };
        if let Err(err) = lease.begin(&q.text).await {
            tracing::warn!(error = %err, "could not record the question");
        }
        let evidence_before = lease.conversation.evidence.len();
        let progress = self
            .post(
                &q.channel,
                &q.thread_ts,
                ":hourglass_flowing_sand: Investigating…",
            )
            .await;
        let (sink, updater) = match &progress {
            Some(posted) => {
                let (sink, rx) = ProgressSink::new();
                let handle = tokio::spawn(run_updates(
                    self.web.clone(),
                    posted.clone(),
                    rx,
                    self.edit_interval,
                ));
                (Some(sink), Some(handle))
            }
            None => (None, None),
        };
        let events: &dyn EventSink = match &sink {
            Some(sink) => sink,
            None => &NoEvents,
        };
        let result = self
            .app
            .ask_with(&principal, &extra, &mut lease.conversation, &q.text, events)
            .await;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(denial) => {
                drop(sink);
                if let Err(err) = lease.release().await {
                    tracing::warn!(error = %err, "could not release the thread's session");
                }
                self.post(&q.channel, &q.thread_ts, &denial.to_string())
                    .await;
                return;
            }
        };
        if let Some(sink) = sink {
            sink.finish(&format!(
                ":white_check_mark: Done: {}",
                blocks::footer(&outcome)
            ));
        }
        if let Some(handle) = updater {
            if let Err(err) = handle.await {
                tracing::warn!(error = %err, "progress updater failed");
            }
        }
        let evidence = lease.conversation.evidence.clone();
        if let Err(err) = lease
            .finish(&q.text, &outcome, evidence_before, &owner)
            .await
        {
            tracing::error!(error = %err, "could not save the answer");
        }
        let evidence = &evidence;
        for message in blocks::report_messages(
            &outcome.report,
            evidence,
            &outcome.new_evidence,
            &outcome,
            &session,
        ) {
            if let Err(err) = self
                .web
                .post_message(
                    &q.channel,
                    Some(&q.thread_ts),
                    &message.text,
                    Some(serde_json::Value::Array(message.blocks)),
                )
                .await
            {
                tracing::warn!(error = %err, "could not post the report");
            }
        }
        let mut files = Vec::new();
        for item in evidence
            .items()
            .iter()
            .filter(|i| outcome.new_evidence.contains(&i.id))
        {
            match &item.content {
                Some(Content::Table(table)) => match table.to_csv() {
                    Ok(csv) => files.push(Upload {
                        filename: format!("{}.csv", item.id),
                        title: format!("{} {}.{}", item.id, item.source, item.tool),
                        bytes: csv.into_bytes(),
                    }),
                    Err(err) => tracing::warn!(error = %err, "evidence as CSV"),
                },
                Some(Content::Json(_)) | Some(Content::Text(_)) | None => {
                    if let Ok(bytes) = serde_json::to_vec_pretty(item) {
                        files.push(Upload {
                            filename: format!("{}.json", item.id),
                            title: format!("{} {}.{}", item.id, item.source, item.tool),
                            bytes,
                        });
                    }
                }
            }
        }
        files.push(Upload {
            filename: "report.md".into(),
            title: "Report (Markdown)".into(),
            bytes: render::report_markdown(&q.text, &outcome.report, evidence, Some(&outcome))
                .into_bytes(),
        });
        if let Err(err) = self.web.upload(&q.channel, &q.thread_ts, &files).await {
            tracing::warn!(error = %err, "could not upload evidence files");
            self.post(
                &q.channel,
                &q.thread_ts,
                ":warning: I could not attach the evidence files to this thread.",
            )
            .await;
        }
    }

    /// Squads whose Slack user groups (squads.yaml `slack_usergroups`) include `user`.
    async fn usergroup_squads(&self, user: &str) -> BTreeSet<String> {
        let mut squads = BTreeSet::new();
        for (name, squad) in &self.app.config.squads {
            for group in &squad.members.slack_usergroups {
                if self
                    .groups
                    .members(&self.web, group)
                    .await
                    .iter()
                    .any(|u| u == user)
                {
                    squads.insert(name.clone());
                }
            }
        }
        squads
    }
}

/// Collects progress lines; the latest rendering goes through a watch channel to
/// one task that edits the progress message, so edits are throttled and the
/// engine never waits on Slack.
struct ProgressSink {
    lines: Mutex<Vec<(String, String)>>,
    tx: watch::Sender<String>,
}

/// Progress shown at most this many tool lines (the oldest are dropped).
const MAX_PROGRESS_LINES: usize = 30;

impl ProgressSink {
    fn new() -> (ProgressSink, watch::Receiver<String>) {
        let (tx, rx) = watch::channel(String::new());
        (
            ProgressSink {
                lines: Mutex::new(Vec::new()),
                tx,
            },
            rx,
        )
    }

    fn render(&self, head: &str) -> String {
        let lines = lock(&self.lines);
        let skip = lines.len().saturating_sub(MAX_PROGRESS_LINES);
        let body: Vec<&str> = lines.iter().skip(skip).map(|(_, l)| l.as_str()).collect();
        let text = format!("{head}\n{}", body.join("\n"));
        blocks::split_text(&text, blocks::MAX_SECTION_CHARS)
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    fn finish(self, head: &str) {
        let text = self.render(head);
        self.tx.send_replace(text);
    }
}

impl EventSink for ProgressSink {
    fn emit(&self, event: Event) {
        match event {
            Event::ModelCalled { .. } | Event::Finished { .. } => return,
            Event::ToolStarted {
                call_id,
                source,
                tool,
                ..
            } => lock(&self.lines).push((call_id, format!(":hourglass: `{source}.{tool}`"))),
            Event::ToolFinished {
                call_id,
                evidence_id,
                source,
                tool,
                ok,
                rows,
                duration_ms,
                error,
            } => {
                let line = if ok {
                    let rows = rows.map(|r| format!("{r} row(s), ")).unwrap_or_default();
                    format!(":white_check_mark: {evidence_id} `{source}.{tool}`: {rows}{duration_ms} ms")
                } else {
                    let error: String = error.unwrap_or_default().chars().take(200).collect();
                    format!(
                        ":x: {evidence_id} `{source}.{tool}`: {}",
                        blocks::escape(&error)
                    )
                };
                let mut lines = lock(&self.lines);
                match lines.iter_mut().find(|(id, _)| *id == call_id) {
                    Some(entry) => entry.1 = line,
                    None => lines.push((call_id, line)),
                }
            }
        }
        let text = self.render(":hourglass_flowing_sand: Investigating…");
        self.tx.send_replace(text);
    }
}

async fn run_updates(
    web: WebClient,
    posted: Posted,
    mut rx: watch::Receiver<String>,
    interval: Duration,
) {
    let mut last = String::new();
    loop {
        let closed = rx.changed().await.is_err();
        let text = rx.borrow_and_update().clone();
        if !text.is_empty() && text != last {
            if let Err(err) = web.update(&posted, &text).await {
                tracing::warn!(error = %err, "could not update the progress message");
            }
            last = text;
        }
        if closed {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}
