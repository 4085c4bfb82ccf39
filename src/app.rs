//! The composition root: configuration → sources → store → model → engine. The
//! CLI, the API and the chat transports all start from here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::access::{self, Access, Denial, Principal};
use crate::config::{self, interpolate::Env, Config, MasterKey};
use crate::engine::prompt;
use crate::engine::stored;
use crate::engine::{
    Clock, Conversation, Engine, EngineSettings, EventSink, Gate, Outcome, SessionRepo, SystemClock,
};
use crate::guard::Redactor;
use crate::llm::anthropic::{AnthropicConfig, AnthropicModel};
use crate::llm::offline::OfflinePlanner;
use crate::llm::Model;
use crate::sources::{BuildContext, CallContext, Registry, Sources};
use crate::store::{SessionRow, Store};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error("master key: {0}")]
    MasterKey(#[from] config::secret::Error),
    #[error("store: {0}")]
    Store(#[from] crate::store::Error),
    #[error("{0}")]
    Model(String),
    #[error(transparent)]
    Redaction(#[from] crate::guard::redact::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Why a question in a stored session was not answered.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("refused: {0}")]
    Denied(Denial),
    /// Unknown, or not visible to this principal (the two look the same so
    /// ids of other squads' sessions do not leak).
    #[error("no such investigation")]
    NotFound,
    #[error("the investigation is busy answering another question")]
    Busy,
    #[error("store: {0}")]
    Store(crate::store::Error),
}

impl From<stored::Error> for AskError {
    fn from(err: stored::Error) -> Self {
        match err {
            stored::Error::Unknown(_) => AskError::NotFound,
            stored::Error::Busy(_) => AskError::Busy,
            stored::Error::Store(e) => AskError::Store(e),
        }
    }
}

/// Why the query agent produced no rows.
#[derive(Debug, thiserror::Error)]
pub enum QueryAgentError {
    #[error("not a SQL source")]
    NotSql,
    #[error("{0}")]
    NoSql(String),
    #[error("model: {0}")]
    Model(String),
}

/// A reader may see a session only if it holds every squad that owns it: the
/// evidence was gathered with the owners' grants.
pub fn visible_to(row: &SessionRow, access: &Access) -> bool {
    row.squads.iter().all(|s| access.squads.contains(s))
}

/// Which model plans investigations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelChoice {
    /// Claude when `ANTHROPIC_API_KEY` is set, else the offline planner.
    Auto,
    Offline,
}

pub struct App {
    pub config: Config,
    pub engine: Engine,
    pub sessions: SessionRepo,
    system_template: String,
}

impl App {
    pub async fn build(
        config_dir: &Path,
        store: &str,
        model: ModelChoice,
        env: &dyn Env,
    ) -> Result<App> {
        let config = config::load(config_dir, env)?;
        let ctx = BuildContext {
            master_key: MasterKey::from_env()?.map(Arc::new),
            config_dir: config.dir.clone(),
        };
        let sources = Sources::build(&config, &Registry::builtin(), &ctx);
        let store = Store::open(store).await?;
        let model: Arc<dyn Model> = match (model, AnthropicConfig::from_env(None)) {
            (ModelChoice::Auto, Some(settings)) => {
                Arc::new(AnthropicModel::new(settings).map_err(|e| Error::Model(e.to_string()))?)
            }
            (ModelChoice::Auto, None) | (ModelChoice::Offline, _) => {
                let runbooks = runbook_dir(config_dir);
                Arc::new(
                    OfflinePlanner::load(runbooks.as_deref())
                        .map_err(|e| Error::Model(e.to_string()))?,
                )
            }
        };
        // Validated when the configuration loaded; a failure here is a bug, not input.
        let redactor = Arc::new(Redactor::new(&config.redaction)?);
        let settings = EngineSettings {
            redactor,
            ..EngineSettings::default()
        };
        Ok(Self::from_parts(
            config,
            Gate::new(sources, store),
            model,
            Arc::new(SystemClock),
            settings,
        ))
    }

    pub fn from_parts(
        config: Config,
        gate: Gate,
        model: Arc<dyn Model>,
        clock: Arc<dyn Clock>,
        settings: EngineSettings,
    ) -> App {
        let prompts = config.dir.join("../prompts");
        let system_template =
            prompt::system_template(Some(prompts.as_path()).filter(|p| p.is_dir()));
        // A lease outlives any question's wall-time budget, so only a dead
        // holder's lease ever expires; a follow-up waits as long.
        let ttl = settings.budgets.max_wall * 2 + Duration::from_secs(60);
        let sessions = SessionRepo::new(gate.store().clone(), ttl, ttl);
        App {
            config,
            engine: Engine::new(gate, model, clock, settings),
            sessions,
            system_template,
        }
    }

    pub fn resolve(&self, principal: &Principal) -> std::result::Result<Access, Denial> {
        access::resolve(&self.config, principal)
    }

    /// [`App::resolve`] plus squads a transport learned elsewhere (Slack user groups).
    pub fn resolve_with(
        &self,
        principal: &Principal,
        extra_squads: &BTreeSet<String>,
    ) -> std::result::Result<Access, Denial> {
        access::resolve_with(&self.config, principal, extra_squads.clone())
    }

    /// Answers a question for `principal` in `conversation` (a new or continued thread).
    pub async fn ask(
        &self,
        principal: &Principal,
        conversation: &mut Conversation,
        question: &str,
        events: &dyn EventSink,
    ) -> std::result::Result<Outcome, Denial> {
        self.ask_with(principal, &BTreeSet::new(), conversation, question, events)
            .await
    }

    /// [`App::ask`] with extra squads from the transport (see [`App::resolve_with`]).
    pub async fn ask_with(
        &self,
        principal: &Principal,
        extra_squads: &BTreeSet<String>,
        conversation: &mut Conversation,
        question: &str,
        events: &dyn EventSink,
    ) -> std::result::Result<Outcome, Denial> {
        let access = match self.resolve_with(principal, extra_squads) {
            Ok(access) => access,
            Err(denial) => {
                let args = serde_json::json!({ "question": question });
                let reason = format!("refused: {denial}");
                if let Err(err) = self
                    .engine
                    .gate()
                    .record_denied(principal, "*", "investigate", &args, &reason)
                    .await
                {
                    tracing::error!(error = %err, "could not audit a refused question");
                }
                return Err(denial);
            }
        };
        let system = self.system_prompt(&access).await;
        Ok(self
            .engine
            .ask(&access, conversation, system, question, events)
            .await)
    }

    /// Opens a new stored session owned by `principal`'s squads.
    pub async fn start_session(
        &self,
        principal: &Principal,
    ) -> std::result::Result<(String, Access), AskError> {
        let access = self.resolve(principal).map_err(AskError::Denied)?;
        loop {
            let id = uuid::Uuid::new_v4().simple().to_string();
            if self
                .sessions
                .create(&id, &access.principal, &access.squads)
                .await?
            {
                return Ok((id, access));
            }
        }
    }

    /// The session's header, if `principal` may see it.
    pub async fn session_for(
        &self,
        principal: &Principal,
        id: &str,
    ) -> std::result::Result<(SessionRow, Access), AskError> {
        let access = self.resolve(principal).map_err(AskError::Denied)?;
        match self.sessions.header(id).await? {
            Some(row) if visible_to(&row, &access) => Ok((row, access)),
            Some(_) | None => Err(AskError::NotFound),
        }
    }

    /// Answers a question in a stored session (new or follow-up): waits for the
    /// session's lease, asks, and writes the answer before giving it back.
    pub async fn ask_in_session(
        &self,
        principal: &Principal,
        id: &str,
        question: &str,
        events: &dyn EventSink,
    ) -> std::result::Result<Outcome, AskError> {
        let (row, access) = self.session_for(principal, id).await?;
        let mut lease = self.sessions.lease(id).await?;
        lease.begin(question).await?;
        let before = lease.conversation.evidence.len();
        let outcome = self
            .ask(principal, &mut lease.conversation, question, events)
            .await
            .map_err(AskError::Denied)?;
        // Usage is charged to the squads that own the session.
        let squads = if row.squads.is_empty() {
            access.squads.clone()
        } else {
            row.squads.clone()
        };
        lease.finish(question, &outcome, before, &squads).await?;
        Ok(outcome)
    }

    /// Text-to-SQL over one granted SQL source: Claude writes a statement from
    /// the source's schema as the grant shows it, and the statement runs
    /// through the gate like any tool call (guarded, limited, audited).
    pub async fn query_agent(
        &self,
        access: &Access,
        dataset: &str,
        prompt: &str,
    ) -> std::result::Result<serde_json::Value, QueryAgentError> {
        use crate::llm::{ContentBlock, Message, ModelRequest, ToolChoice, ToolDef};
        let gate = self.engine.gate();
        let offered = gate
            .tools_for(access)
            .into_iter()
            .find(|t| t.source == dataset && t.spec.name == "run_query")
            .ok_or(QueryAgentError::NotSql)?;
        let (Some(grant), Some(source)) = (access.grant(dataset), gate.sources().get(dataset))
        else {
            return Err(QueryAgentError::NotSql);
        };
        let ctx = CallContext {
            session_id: None,
            timeout: Duration::from_secs(10),
        };
        let schema =
            match tokio::time::timeout(Duration::from_secs(10), source.describe(grant, &ctx)).await
            {
                Ok(Ok(text)) => text.chars().take(12_000).collect::<String>(),
                Ok(Err(_)) | Err(_) => String::from("(the schema could not be read)"),
            };
        let tool = ToolDef {
            name: "run_sql".into(),
            description: "The one read-only SELECT statement that answers the request, and a short explanation of what it computes.".into(),
            input_schema: serde_json::json!({
                "type": "object",
                "properties": {
                    "sql": {"type": "string"},
                    "explanation": {"type": "string"}
                },
                "required": ["sql", "explanation"],
                "additionalProperties": false
            }),
        };
        let request = ModelRequest {
            system: format!(
                "You write one read-only SQL statement for a {} database. Use only these tables and columns:\n{schema}\nAnswer by calling run_sql. Limit results to at most 100 rows unless asked otherwise.",
                offered.kind
            ),
            messages: vec![Message::user_text(prompt.to_string())],
            tools: vec![tool],
            tool_choice: Some(ToolChoice::Tool { name: "run_sql".into() }),
            max_tokens: 1_024,
        };
        let response = self
            .engine
            .model()
            .complete(&request)
            .await
            .map_err(|e| QueryAgentError::Model(e.to_string()))?;
        let input = response
            .content
            .iter()
            .find_map(|block| match block {
                ContentBlock::ToolUse { input, .. } => Some(input.clone()),
                ContentBlock::Text { .. } | ContentBlock::ToolResult { .. } => None,
            })
            .ok_or_else(|| QueryAgentError::NoSql("the model did not write a statement".into()))?;
        let sql = input
            .get("sql")
            .and_then(|v| v.as_str())
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| QueryAgentError::NoSql("the model wrote an empty statement".into()))?
            .to_string();
        let explanation = input
            .get("explanation")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let outcome = gate
            .call(
                access,
                dataset,
                "run_query",
                &serde_json::json!({ "sql": sql }),
                &ctx,
            )
            .await;
        let cost = self.engine.model().pricing().cost(&response.usage);
        let usage = serde_json::json!({
            "input_tokens": response.usage.input_tokens,
            "output_tokens": response.usage.output_tokens,
            "cost_usd": cost,
        });
        Ok(match outcome.result {
            Ok(output) => {
                let (columns, rows, truncated) = match &output.content {
                    crate::evidence::Content::Table(t) => (
                        t.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
                        serde_json::to_value(t.to_objects()).unwrap_or_default(),
                        t.truncated,
                    ),
                    crate::evidence::Content::Json(v) => (Vec::new(), v.clone(), false),
                    crate::evidence::Content::Text(t) => (Vec::new(), serde_json::json!(t), false),
                };
                serde_json::json!({
                    "dataset_id": dataset,
                    "sql": output.statement,
                    "explanation": explanation,
                    "columns": columns,
                    "rows": rows,
                    "truncated": truncated,
                    "usage": usage,
                })
            }
            // Refused by the guard or failed in the database: said as the
            // model would be told, with the statement that was tried.
            Err(err) => serde_json::json!({
                "dataset_id": dataset,
                "sql": sql,
                "explanation": explanation,
                "error": err.to_string(),
                "rows": [],
                "usage": usage,
            }),
        })
    }

    /// The system prompt with each granted source summarised (its tables, files…),
    /// each description bounded in time and size.
    async fn system_prompt(&self, access: &Access) -> String {
        let mut lines = prompt::source_lines(access);
        let ctx = CallContext {
            session_id: None,
            timeout: Duration::from_secs(5),
        };
        for grant in access.grants.values() {
            let Some(source) = self.engine.gate().sources().get(&grant.source) else {
                continue;
            };
            if let Ok(Ok(description)) =
                tokio::time::timeout(Duration::from_secs(5), source.describe(grant, &ctx)).await
            {
                if !description.is_empty() {
                    let clipped: String = description.chars().take(2_000).collect();
                    lines.push(format!("`{}` contains:\n{clipped}", grant.source));
                }
            }
        }
        prompt::system_prompt(&self.system_template, access, &lines, chrono::Utc::now())
    }
}

/// `runbooks/` beside the config directory's files, or the project's `config/runbooks`.
fn runbook_dir(config_dir: &Path) -> Option<PathBuf> {
    [config_dir.join("runbooks"), config_dir.join("../runbooks")]
        .into_iter()
        .find(|p| p.is_dir())
}
