//! Sessions: the model conversation, the evidence, the reports and the usage of
//! each investigation, so a follow-up after a restart continues the thread.
//!
//! Questions in one session are serialised by a row lease (`lease_holder`,
//! `lease_until`) taken with one conditional UPDATE: atomic on SQLite and on
//! PostgreSQL alike, so it also holds across replicas sharing a database, and
//! it expires when its holder dies instead of blocking the thread forever.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Error, Result, Store};
use crate::evidence::EvidenceItem;
use crate::llm::{Message, Usage};

/// Fixed-width UTC text, so timestamps compare correctly as strings.
pub(crate) fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Idle,
    Running,
    /// The process stopped while a question was being answered; the question
    /// is kept in `pending_question` and can be asked again.
    Interrupted,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Idle => "idle",
            SessionStatus::Running => "running",
            SessionStatus::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "idle" => Some(SessionStatus::Idle),
            "running" => Some(SessionStatus::Running),
            "interrupted" => Some(SessionStatus::Interrupted),
            _ => None,
        }
    }
}

/// A session's header (no messages or evidence).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionRow {
    pub id: String,
    pub principal: String,
    pub squads: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub status: SessionStatus,
    pub pending_question: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOutcome {
    Taken,
    /// Someone else holds an unexpired lease.
    Busy,
    Unknown,
}

/// One answered question, as written.
#[derive(Debug, Clone)]
pub struct NewReport<'a> {
    pub question: &'a str,
    pub report: serde_json::Value,
    pub usage: Usage,
    pub cost_usd: f64,
    pub turns: u32,
    pub tool_calls: u32,
    pub duration_ms: u64,
    pub new_evidence: &'a [String],
}

/// One answered question, as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredReport {
    pub seq: i64,
    pub question: String,
    pub report: serde_json::Value,
    pub usage: Usage,
    pub cost_usd: f64,
    pub turns: i64,
    pub tool_calls: i64,
    pub duration_ms: i64,
    pub new_evidence: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    pub squad: String,
    pub day: String,
    pub investigations: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
}

/// Feedback on a session's answers, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackRow {
    pub principal: String,
    pub rating: i64,
    pub comment: Option<String>,
    pub created_at: String,
}

/// What `prune` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub sessions: u64,
    pub events: u64,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Creates a session; false when the id exists already.
    pub async fn create_session(
        &self,
        id: &str,
        principal: &str,
        squads: &[String],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        on_pool!(self, pool => {
            let squads = serde_json::to_string(squads).map_err(|e| self.corrupt(e.to_string()))?;
            let now = ts(now);
            let done = sqlx::query(
                "INSERT INTO sessions (id, principal, squads, created_at, updated_at, status, messages) \
                 VALUES ($1, $2, $3, $4, $5, 'idle', '[]') ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(principal)
            .bind(squads)
            .bind(&now)
            .bind(&now)
            .execute(pool)
            .await
            .map_err(|e| self.query_error(e))?;
            Ok(done.rows_affected() == 1)
        })
    }

    pub async fn session(&self, id: &str) -> Result<Option<SessionRow>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT id, principal, squads, created_at, updated_at, status, pending_question \
                 FROM sessions WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(|e| self.query_error(e))?;
            let Some(row) = row else { return Ok(None) };
            let get = |name: &str| -> Result<String> {
                row.try_get::<String, _>(name)
                    .map_err(|e| self.corrupt(format!("sessions.{name}: {e}")))
            };
            let squads: Vec<String> = serde_json::from_str(&get("squads")?)
                .map_err(|e| self.corrupt(format!("sessions.squads of {id}: {e}")))?;
            let status_text = get("status")?;
            let status = SessionStatus::parse(&status_text)
                .ok_or_else(|| self.corrupt(format!("unknown session status {status_text:?}")))?;
            Ok(Some(SessionRow {
                id: get("id")?,
                principal: get("principal")?,
                squads,
                created_at: get("created_at")?,
                updated_at: get("updated_at")?,
                status,
                pending_question: row
                    .try_get::<Option<String>, _>("pending_question")
                    .map_err(|e| self.corrupt(format!("sessions.pending_question: {e}")))?,
            }))
        })
    }

    /// Takes the session's lease until `until` unless someone else holds an
    /// unexpired one.
    pub async fn try_lease(
        &self,
        id: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<LeaseOutcome> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE sessions SET lease_holder = $1, lease_until = $2 \
                 WHERE id = $3 AND (lease_holder IS NULL OR lease_until < $4)",
            )
            .bind(holder)
            .bind(ts(until))
            .bind(id)
            .bind(ts(now))
            .execute(pool)
            .await
            .map_err(|e| self.query_error(e))?;
            if done.rows_affected() == 1 {
                return Ok(LeaseOutcome::Taken);
            }
            // The id, not `SELECT 1`: PostgreSQL types that literal INT4.
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM sessions WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(|e| self.query_error(e))?;
            Ok(match exists {
                Some(_) => LeaseOutcome::Busy,
                None => LeaseOutcome::Unknown,
            })
        })
    }

    /// Gives the lease back (a no-op if it was lost to someone else).
    pub async fn release_lease(&self, id: &str, holder: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE sessions SET lease_holder = NULL, lease_until = NULL \
                 WHERE id = $1 AND lease_holder = $2",
            )
            .bind(id)
            .bind(holder)
            .execute(pool)
            .await
            .map_err(|e| self.query_error(e))?;
            Ok(())
        })
    }

    /// The conversation so far.
    pub async fn session_messages(&self, id: &str) -> Result<Vec<Message>> {
        on_pool!(self, pool => {
            let text: Option<String> = sqlx::query_scalar("SELECT messages FROM sessions WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(|e| self.query_error(e))?;
            match text {
                None => Ok(Vec::new()),
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| self.corrupt(format!("sessions.messages of {id}: {e}"))),
            }
        })
    }

    /// Every evidence item of a session, in order.
    pub async fn session_evidence(&self, id: &str) -> Result<Vec<EvidenceItem>> {
        on_pool!(self, pool => {
            let rows: Vec<String> =
                sqlx::query_scalar("SELECT item FROM evidence WHERE session_id = $1 ORDER BY seq")
                    .bind(id)
                    .fetch_all(pool)
                    .await
                    .map_err(|e| self.query_error(e))?;
            rows.iter()
                .map(|text| {
                    serde_json::from_str(text)
                        .map_err(|e| self.corrupt(format!("evidence of {id}: {e}")))
                })
                .collect()
        })
    }

    /// One evidence item of a session.
    pub async fn evidence_item(&self, session: &str, id: &str) -> Result<Option<EvidenceItem>> {
        on_pool!(self, pool => {
            let text: Option<String> =
                sqlx::query_scalar("SELECT item FROM evidence WHERE session_id = $1 AND id = $2")
                    .bind(session)
                    .bind(id)
                    .fetch_optional(pool)
                    .await
                    .map_err(|e| self.query_error(e))?;
            text.map(|t| {
                serde_json::from_str(&t).map_err(|e| self.corrupt(format!("evidence {id}: {e}")))
            })
            .transpose()
        })
    }

    pub async fn session_reports(&self, id: &str) -> Result<Vec<StoredReport>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT seq, question, report, usage, cost_usd, turns, tool_calls, duration_ms, \
                 new_evidence, created_at FROM reports WHERE session_id = $1 ORDER BY seq",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(|e| self.query_error(e))?;
            rows.iter()
                .map(|row| {
                    let bad = |e: &dyn std::fmt::Display| self.corrupt(format!("reports of {id}: {e}"));
                    let json = |name: &str| -> Result<serde_json::Value> {
                        let text: String = row.try_get(name).map_err(|e| bad(&e))?;
                        serde_json::from_str(&text).map_err(|e| bad(&e))
                    };
                    Ok(StoredReport {
                        seq: row.try_get("seq").map_err(|e| bad(&e))?,
                        question: row.try_get("question").map_err(|e| bad(&e))?,
                        report: json("report")?,
                        usage: serde_json::from_value(json("usage")?).map_err(|e| bad(&e))?,
                        cost_usd: row.try_get("cost_usd").map_err(|e| bad(&e))?,
                        turns: row.try_get("turns").map_err(|e| bad(&e))?,
                        tool_calls: row.try_get("tool_calls").map_err(|e| bad(&e))?,
                        duration_ms: row.try_get("duration_ms").map_err(|e| bad(&e))?,
                        new_evidence: serde_json::from_value(json("new_evidence")?)
                            .map_err(|e| bad(&e))?,
                        created_at: row.try_get("created_at").map_err(|e| bad(&e))?,
                    })
                })
                .collect()
        })
    }

    /// Marks a question as being answered, so a crash leaves a trace that can
    /// be resumed. Only the lease holder may do it.
    pub async fn mark_running(
        &self,
        id: &str,
        holder: &str,
        question: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE sessions SET status = 'running', pending_question = $1, updated_at = $2 \
                 WHERE id = $3 AND lease_holder = $4",
            )
            .bind(question)
            .bind(ts(now))
            .bind(id)
            .bind(holder)
            .execute(pool)
            .await
            .map_err(|e| self.query_error(e))?;
            self.lease_held(id, done.rows_affected())
        })
    }

    fn lease_held(&self, id: &str, rows: u64) -> Result<()> {
        if rows == 1 {
            Ok(())
        } else {
            Err(Error::LeaseLost {
                location: self.location.to_string(),
                session: id.to_string(),
            })
        }
    }

    /// Writes one answered question in one transaction: the whole conversation,
    /// the new evidence, the report and the usage of each squad. Fails, writing
    /// nothing, when `holder` no longer holds the lease.
    #[allow(clippy::too_many_arguments)]
    pub async fn save_answer(
        &self,
        id: &str,
        holder: &str,
        messages: &[Message],
        new_evidence: &[EvidenceItem],
        first_seq: usize,
        report: &NewReport<'_>,
        squads: &[String],
        now: DateTime<Utc>,
    ) -> Result<()> {
        on_pool!(self, pool => {
            let messages = serde_json::to_string(messages).map_err(|e| self.corrupt(e.to_string()))?;
            let at = ts(now);
            let mut tx = pool.begin().await.map_err(|e| self.query_error(e))?;
            let done = sqlx::query(
                "UPDATE sessions SET messages = $1, status = 'idle', pending_question = NULL, \
                 updated_at = $2 WHERE id = $3 AND lease_holder = $4",
            )
            .bind(&messages)
            .bind(&at)
            .bind(id)
            .bind(holder)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.query_error(e))?;
            self.lease_held(id, done.rows_affected())?;
            for (offset, item) in new_evidence.iter().enumerate() {
                let body = serde_json::to_string(item).map_err(|e| self.corrupt(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO evidence (session_id, id, seq, source, kind, created_at, item) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (session_id, id) DO NOTHING",
                )
                .bind(id)
                .bind(&item.id)
                .bind(to_i64((first_seq + offset) as u64))
                .bind(&item.source)
                .bind(&item.kind)
                .bind(&at)
                .bind(body)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.query_error(e))?;
            }
            let seq: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM reports WHERE session_id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.query_error(e))?;
            let json = |v: &dyn erased::ToJson| v.to_json().map_err(|e| self.corrupt(e.to_string()));
            sqlx::query(
                "INSERT INTO reports (session_id, seq, question, report, usage, cost_usd, turns, \
                 tool_calls, duration_ms, new_evidence, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(id)
            .bind(seq)
            .bind(report.question)
            .bind(json(&report.report)?)
            .bind(json(&report.usage)?)
            .bind(report.cost_usd)
            .bind(i64::from(report.turns))
            .bind(i64::from(report.tool_calls))
            .bind(to_i64(report.duration_ms))
            .bind(json(&report.new_evidence)?)
            .bind(&at)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.query_error(e))?;
            let day = now.date_naive().to_string();
            // Cost is split evenly between the squads that asked, so the per-squad
            // totals add up to what was spent.
            let share = report.cost_usd / squads.len().max(1) as f64;
            for squad in squads {
                sqlx::query(
                    "INSERT INTO usage_daily (squad, day, investigations, input_tokens, output_tokens, cost_usd) \
                     VALUES ($1, $2, 1, $3, $4, $5) ON CONFLICT (squad, day) DO UPDATE SET \
                     investigations = usage_daily.investigations + 1, \
                     input_tokens = usage_daily.input_tokens + excluded.input_tokens, \
                     output_tokens = usage_daily.output_tokens + excluded.output_tokens, \
                     cost_usd = usage_daily.cost_usd + excluded.cost_usd",
                )
                .bind(squad)
                .bind(&day)
                .bind(to_i64(
                    report.usage.input_tokens
                        + report.usage.cache_creation_input_tokens
                        + report.usage.cache_read_input_tokens,
                ))
                .bind(to_i64(report.usage.output_tokens))
                .bind(share)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.query_error(e))?;
            }
            tx.commit().await.map_err(|e| self.query_error(e))?;
            Ok(())
        })
    }

    /// Marks a running session interrupted and frees it (its question was
    /// cancelled or the process is stopping). Only the lease holder may.
    pub async fn mark_interrupted(&self, id: &str, holder: &str, now: DateTime<Utc>) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE sessions SET status = 'interrupted', updated_at = $1, lease_holder = NULL, \
                 lease_until = NULL WHERE id = $2 AND status = 'running' AND lease_holder = $3",
            )
            .bind(ts(now))
            .bind(id)
            .bind(holder)
            .execute(pool)
            .await
            .map_err(|e| self.query_error(e))?;
            Ok(())
        })
    }

    /// At start: sessions left running by a process that died (lease expired)
    /// become interrupted. Returns how many.
    pub async fn recover_interrupted(&self, now: DateTime<Utc>) -> Result<u64> {
        on_pool!(self, pool => {
            let now = ts(now);
            let done = sqlx::query(
                "UPDATE sessions SET status = 'interrupted', updated_at = $1, lease_holder = NULL, \
                 lease_until = NULL WHERE status = 'running' AND (lease_until IS NULL OR lease_until < $2)",
            )
            .bind(&now)
            .bind(&now)
            .execute(pool)
            .await
            .map_err(|e| self.query_error(e))?;
            Ok(done.rows_affected())
        })
    }

    /// Interrupted sessions whose id starts with `prefix` (a transport's, e.g.
    /// `slack:`), least recently updated first, at most `limit`.
    pub async fn interrupted_sessions(&self, prefix: &str, limit: u32) -> Result<Vec<SessionRow>> {
        let pattern = format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let ids: Vec<String> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT id FROM sessions WHERE status = 'interrupted' AND id LIKE $1 ESCAPE '\\' \
                 ORDER BY updated_at, id LIMIT $2",
            )
            .bind(pattern)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(|e| self.query_error(e))?
        });
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = self.session(&id).await? {
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// An interrupted session back to idle once its people were told; its pending
    /// question stays (to be asked again). True only for the one caller that
    /// changed it, so replicas sharing the store tell a thread once.
    pub async fn settle_interrupted(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE sessions SET status = 'idle', updated_at = $1 \
                 WHERE id = $2 AND status = 'interrupted'",
            )
            .bind(ts(now))
            .bind(id)
            .execute(pool)
            .await
            .map_err(|e| self.query_error(e))?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Usage per squad and day, newest first.
    pub async fn usage(&self, since: NaiveDate) -> Result<Vec<UsageRow>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT squad, day, investigations, input_tokens, output_tokens, cost_usd \
                 FROM usage_daily WHERE day >= $1 ORDER BY day DESC, squad",
            )
            .bind(since.to_string())
            .fetch_all(pool)
            .await
            .map_err(|e| self.query_error(e))?;
            rows.iter()
                .map(|row| {
                    let bad = |e: sqlx::Error| self.corrupt(format!("usage_daily: {e}"));
                    Ok(UsageRow {
                        squad: row.try_get("squad").map_err(bad)?,
                        day: row.try_get("day").map_err(bad)?,
                        investigations: row.try_get("investigations").map_err(bad)?,
                        input_tokens: row.try_get("input_tokens").map_err(bad)?,
                        output_tokens: row.try_get("output_tokens").map_err(bad)?,
                        cost_usd: row.try_get("cost_usd").map_err(bad)?,
                    })
                })
                .collect()
        })
    }

    /// Records a chat event id; false when it was seen before (a retry).
    pub async fn mark_event_processed(&self, event_id: &str, now: DateTime<Utc>) -> Result<bool> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "INSERT INTO processed_events (event_id, received_at) VALUES ($1, $2) \
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(event_id)
            .bind(ts(now))
            .execute(pool)
            .await
            .map_err(|e| self.query_error(e))?;
            Ok(done.rows_affected() == 1)
        })
    }

    pub async fn add_feedback(
        &self,
        session: &str,
        principal: &str,
        rating: i64,
        comment: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO feedback (session_id, principal, rating, comment, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(session)
            .bind(principal)
            .bind(rating)
            .bind(comment)
            .bind(ts(now))
            .execute(pool)
            .await
            .map_err(|e| self.query_error(e))?;
            Ok(())
        })
    }

    /// A session's feedback, oldest first.
    pub async fn feedback(&self, session: &str) -> Result<Vec<FeedbackRow>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT principal, rating, comment, created_at FROM feedback \
                 WHERE session_id = $1 ORDER BY created_at",
            )
            .bind(session)
            .fetch_all(pool)
            .await
            .map_err(|e| self.query_error(e))?;
            rows.iter()
                .map(|row| {
                    let bad = |e: sqlx::Error| self.corrupt(format!("feedback: {e}"));
                    Ok(FeedbackRow {
                        principal: row.try_get("principal").map_err(bad)?,
                        rating: row.try_get("rating").map_err(bad)?,
                        comment: row.try_get("comment").map_err(bad)?,
                        created_at: row.try_get("created_at").map_err(bad)?,
                    })
                })
                .collect()
        })
    }

    /// Deletes sessions (with their evidence, reports and feedback) not updated
    /// since `before`, and processed event ids older than it. Running sessions
    /// are kept. The audit log is never pruned: it is append-only by design.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<Pruned> {
        on_pool!(self, pool => {
            let cutoff = ts(before);
            let mut tx = pool.begin().await.map_err(|e| self.query_error(e))?;
            // Children first, so this works without relying on cascades.
            for table in ["evidence", "reports", "feedback"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE session_id IN \
                     (SELECT id FROM sessions WHERE updated_at < $1 AND status <> 'running')"
                ))
                .bind(&cutoff)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.query_error(e))?;
            }
            let sessions =
                sqlx::query("DELETE FROM sessions WHERE updated_at < $1 AND status <> 'running'")
                    .bind(&cutoff)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.query_error(e))?
                    .rows_affected();
            let events = sqlx::query("DELETE FROM processed_events WHERE received_at < $1")
                .bind(&cutoff)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.query_error(e))?
                .rows_affected();
            tx.commit().await.map_err(|e| self.query_error(e))?;
            Ok(Pruned { sessions, events })
        })
    }
}

/// `serde_json::to_string` behind a trait object, so one closure serves
/// several value types.
mod erased {
    pub trait ToJson {
        fn to_json(&self) -> serde_json::Result<String>;
    }

    impl<T: serde::Serialize> ToJson for T {
        fn to_json(&self) -> serde_json::Result<String> {
            serde_json::to_string(self)
        }
    }
}
