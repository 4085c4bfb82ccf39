//! The composition root: configuration → sources → store → model → engine. The
//! CLI, the API and the chat transports all start from here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::access::{self, Access, Denial, Principal};
use crate::config::{self, interpolate::Env, Config, MasterKey};
use crate::engine::prompt;
use crate::engine::{
    Clock, Conversation, Engine, EngineSettings, EventSink, Gate, Outcome, SystemClock,
};
use crate::llm::anthropic::{AnthropicConfig, AnthropicModel};
use crate::llm::offline::OfflinePlanner;
use crate::llm::Model;
use crate::sources::{BuildContext, CallContext, Registry, Sources};
use crate::store::Store;

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
}

pub type Result<T> = std::result::Result<T, Error>;

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
        Ok(Self::from_parts(
            config,
            Gate::new(sources, store),
            model,
            Arc::new(SystemClock),
            EngineSettings::default(),
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
        App {
            config,
            engine: Engine::new(gate, model, clock, settings),
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
