//! The bot's memory in the store: handled event ids (so a retry after a restart is
//! still answered once), thread owners (the squads a thread's session belongs to)
//! and feedback.

use async_trait::async_trait;
use chrono::Utc;

use super::service::{Feedback, FeedbackKind, FeedbackSink, ProcessedEvents, ThreadOwners};
use crate::store::Store;

pub struct StoreEvents(pub Store);

#[async_trait]
impl ProcessedEvents for StoreEvents {
    async fn first_time(&self, event_id: &str) -> bool {
        match self.0.mark_event_processed(event_id, Utc::now()).await {
            Ok(first) => first,
            Err(err) => {
                // Answering twice is better than never answering: an unreadable
                // store must not silence the bot.
                tracing::error!(error = %err, "could not record a processed event id");
                true
            }
        }
    }
}

pub struct StoreThreads(pub Store);

#[async_trait]
impl ThreadOwners for StoreThreads {
    async fn owner(&self, session: &str) -> Option<Vec<String>> {
        match self.0.session(session).await {
            Ok(row) => row.map(|r| r.squads),
            Err(err) => {
                tracing::error!(error = %err, "could not read a thread's session");
                None
            }
        }
    }

    async fn set_owner(&self, session: &str, squads: Vec<String>) {
        if let Err(err) = self
            .0
            .create_session(session, "slack", &squads, Utc::now())
            .await
        {
            tracing::error!(error = %err, "could not create a thread's session");
        }
    }
}

pub struct StoreFeedback(pub Store);

#[async_trait]
impl FeedbackSink for StoreFeedback {
    async fn record(&self, feedback: Feedback) {
        let (rating, comment) = match feedback.kind {
            FeedbackKind::Wrong => (-1, "marked wrong in Slack"),
        };
        let principal = format!("slack:{}", feedback.user);
        if let Err(err) = self
            .0
            .add_feedback(
                &feedback.session,
                &principal,
                rating,
                Some(comment),
                feedback.at,
            )
            .await
        {
            tracing::error!(error = %err, "could not store feedback");
        }
    }
}
