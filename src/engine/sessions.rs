//! Conversations by thread key, in memory (a later store persists them).
//!
//! A conversation is leased to one question at a time, so two follow-ups in one
//! thread run one after the other and neither loses the other's messages. No
//! lock is held while a question runs: the lease owns the conversation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Conversation;

enum Slot {
    Idle(Box<Conversation>, u64),
    Busy(Arc<Notify>),
}

/// Bounded: past `capacity` idle conversations, the least recently used is dropped.
pub struct Sessions {
    slots: Mutex<HashMap<String, Slot>>,
    capacity: usize,
    clock: std::sync::atomic::AtomicU64,
}

pub struct Lease<'a> {
    sessions: &'a Sessions,
    key: String,
    notify: Arc<Notify>,
    pub conversation: Conversation,
}

impl Sessions {
    pub fn new(capacity: usize) -> Self {
        Sessions {
            slots: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            clock: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding this short lock cannot leave the map half-updated.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the thread's conversation is free, then takes it (a new one if
    /// the thread is unknown).
    pub async fn lease(&self, key: &str) -> Lease<'_> {
        loop {
            let holder: Arc<Notify>;
            let notified;
            {
                let mut slots = self.lock();
                match slots.remove(key) {
                    Some(Slot::Busy(notify)) => {
                        holder = notify.clone();
                        slots.insert(key.to_string(), Slot::Busy(notify));
                        // Created under the lock: `notify_waiters` after this point
                        // wakes it even before it is first polled.
                        notified = holder.notified();
                    }
                    Some(Slot::Idle(conversation, _)) => {
                        let notify = Arc::new(Notify::new());
                        slots.insert(key.to_string(), Slot::Busy(notify.clone()));
                        return Lease {
                            sessions: self,
                            key: key.to_string(),
                            notify,
                            conversation: *conversation,
                        };
                    }
                    None => {
                        let notify = Arc::new(Notify::new());
                        slots.insert(key.to_string(), Slot::Busy(notify.clone()));
                        let conversation = Conversation {
                            id: key.to_string(),
                            ..Conversation::default()
                        };
                        return Lease {
                            sessions: self,
                            key: key.to_string(),
                            notify,
                            conversation,
                        };
                    }
                }
            }
            notified.await;
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn put_back(&self, key: &str, conversation: Conversation) {
        let tick = self
            .clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut slots = self.lock();
        slots.insert(key.to_string(), Slot::Idle(Box::new(conversation), tick));
        let idle = slots
            .values()
            .filter(|s| matches!(s, Slot::Idle(..)))
            .count();
        if idle > self.capacity {
            let oldest = slots
                .iter()
                .filter_map(|(k, s)| match s {
                    Slot::Idle(_, t) => Some((*t, k.clone())),
                    Slot::Busy(_) => None,
                })
                .min();
            if let Some((_, k)) = oldest {
                slots.remove(&k);
            }
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.sessions
            .put_back(&self.key, std::mem::take(&mut self.conversation));
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Message;

    #[tokio::test]
    async fn follow_ups_in_one_thread_are_serialised_and_keep_everything() {
        let sessions = Arc::new(Sessions::new(10));
        let mut handles = Vec::new();
        for i in 0..8 {
            let sessions = sessions.clone();
            handles.push(tokio::spawn(async move {
                let mut lease = sessions.lease("thread-1").await;
                let before = lease.conversation.messages.len();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                lease
                    .conversation
                    .messages
                    .push(Message::user_text(format!("q{i}")));
                assert_eq!(lease.conversation.messages.len(), before + 1);
            }));
        }
        for h in handles {
            assert!(h.await.is_ok());
        }
        let lease = sessions.lease("thread-1").await;
        assert_eq!(
            lease.conversation.messages.len(),
            8,
            "a concurrent follow-up lost messages"
        );
        assert_eq!(lease.conversation.id, "thread-1");
    }

    #[tokio::test]
    async fn idle_conversations_are_bounded() {
        let sessions = Sessions::new(3);
        for i in 0..10 {
            let _lease = sessions.lease(&format!("t{i}")).await;
        }
        assert_eq!(sessions.len(), 3);
    }
}
