//! Sessions kept in the store: a question leases its session's row, loads the
//! conversation, and writes everything back in one transaction when answered.
//! Unlike the in-memory [`super::Sessions`], this survives restarts and is
//! shared by every replica on one database.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Conversation, Outcome};
use crate::evidence::EvidenceLog;
use crate::store::{self, LeaseOutcome, NewReport, SessionRow, Store};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no session {0}")]
    Unknown(String),
    #[error("session {0} is busy answering another question")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] store::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionRepo {
    store: Store,
    /// A lease outlives a crashed holder by at most this long.
    ttl: Duration,
    /// How long a follow-up waits for the one before it.
    wait: Duration,
}

impl SessionRepo {
    pub fn new(store: Store, ttl: Duration, wait: Duration) -> Self {
        SessionRepo { store, ttl, wait }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates a session owned by `squads`; false when the id is taken.
    pub async fn create(&self, id: &str, principal: &str, squads: &[String]) -> Result<bool> {
        Ok(self
            .store
            .create_session(id, principal, squads, Utc::now())
            .await?)
    }

    pub async fn header(&self, id: &str) -> Result<Option<SessionRow>> {
        Ok(self.store.session(id).await?)
    }

    /// Waits for the session to be free, then takes it with its conversation.
    pub async fn lease(&self, id: &str) -> Result<StoredLease> {
        let holder = uuid::Uuid::new_v4().simple().to_string();
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut pause = Duration::from_millis(10);
        loop {
            let now = Utc::now();
            let until = now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
            match self.store.try_lease(id, &holder, now, until).await? {
                LeaseOutcome::Taken => break,
                LeaseOutcome::Unknown => return Err(Error::Unknown(id.to_string())),
                LeaseOutcome::Busy => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::Busy(id.to_string()));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
            }
        }
        let mut lease = StoredLease {
            repo: self.clone(),
            holder: holder.into(),
            conversation: Conversation {
                id: id.to_string(),
                ..Conversation::default()
            },
            released: false,
        };
        // Loaded only after the lease is ours, so it includes the previous answer.
        let messages = self.store.session_messages(id).await?;
        let evidence = self.store.session_evidence(id).await?;
        lease.conversation.messages = messages;
        lease.conversation.evidence = EvidenceLog::from_items(evidence);
        Ok(lease)
    }
}

/// The right to answer one question in a session. Dropped without
/// [`StoredLease::finish`], it is given back in the background.
pub struct StoredLease {
    repo: SessionRepo,
    holder: Arc<str>,
    pub conversation: Conversation,
    released: bool,
}

impl StoredLease {
    pub fn id(&self) -> &str {
        &self.conversation.id
    }

    /// Records the question as in progress (it becomes `interrupted` if the
    /// process stops before [`StoredLease::finish`]).
    pub async fn begin(&self, question: &str) -> Result<()> {
        Ok(self
            .repo
            .store
            .mark_running(self.id(), &self.holder, question, Utc::now())
            .await?)
    }

    /// Writes the answer and gives the lease back. `evidence_before` is the
    /// number of evidence items the conversation had when the lease was taken.
    pub async fn finish(
        mut self,
        question: &str,
        outcome: &Outcome,
        evidence_before: usize,
        squads: &[String],
    ) -> Result<()> {
        let report = NewReport {
            question,
            report: serde_json::to_value(&outcome.report).map_err(|e| store::Error::Corrupt {
                location: self.repo.store.location().to_string(),
                detail: e.to_string(),
            })?,
            usage: outcome.usage,
            cost_usd: outcome.cost_usd,
            turns: outcome.turns,
            tool_calls: outcome.tool_calls,
            duration_ms: outcome.duration_ms,
            new_evidence: &outcome.new_evidence,
        };
        let items = self.conversation.evidence.items();
        let new_items = &items[evidence_before.min(items.len())..];
        let saved = self
            .repo
            .store
            .save_answer(
                &self.conversation.id,
                &self.holder,
                &self.conversation.messages,
                new_items,
                evidence_before + 1,
                &report,
                squads,
                Utc::now(),
            )
            .await;
        let released = self
            .repo
            .store
            .release_lease(&self.conversation.id, &self.holder)
            .await;
        self.released = true;
        saved?;
        Ok(released?)
    }

    /// Gives the lease back without writing (nothing was asked).
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        Ok(self
            .repo
            .store
            .release_lease(&self.conversation.id, &self.holder)
            .await?)
    }
}

impl Drop for StoredLease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // A dropped lease (a cancelled request, a panic) must not block the
        // session until it expires; a running question is marked interrupted.
        let store = self.repo.store.clone();
        let id = self.conversation.id.clone();
        let holder = self.holder.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(err) = store.mark_interrupted(&id, &holder, Utc::now()).await {
                    tracing::warn!(session_id = %id, error = %err, "could not mark a session interrupted");
                }
                if let Err(err) = store.release_lease(&id, &holder).await {
                    tracing::warn!(session_id = %id, error = %err, "could not release a session lease");
                }
            });
        }
    }
}
