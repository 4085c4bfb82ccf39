//! The `investigator` command line.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use investigator::access::{self, Principal};
use investigator::app::{App, ModelChoice};
use investigator::chat::render;
use investigator::chat::terminal::ProgressPrinter;
use investigator::config::{self, interpolate::ProcessEnv, Config, MasterKey};
use investigator::demo;
use investigator::engine::Conversation;
use investigator::engine::Gate;
use investigator::evidence::Content;
use investigator::sources::{BuildContext, CallContext, Registry, Sources};
use investigator::store::{audit, Store};

mod bench;

#[derive(Parser)]
#[command(
    name = "investigator",
    version,
    about = "Investigates production problems for squads, read-only and audited"
)]
struct Cli {
    /// Configuration directory (sources.yaml, squads.yaml).
    #[arg(
        long,
        global = true,
        env = "INVESTIGATOR_CONFIG",
        default_value = "config"
    )]
    config: PathBuf,
    /// Store location: a SQLite file path (created if missing), or a
    /// postgres:// URL shared by replicas.
    #[arg(
        long,
        global = true,
        env = "INVESTIGATOR_STORE",
        default_value = "data/investigator.db"
    )]
    store: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration, then test each source's connection.
    Check {
        /// Only validate the configuration; no network.
        #[arg(long)]
        no_connect: bool,
    },
    /// What a principal may use, and why.
    Sources {
        /// Who is asking: transport:user, e.g. slack:U123.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        principal: String,
        /// Where: transport:channel, e.g. slack:C123.
        #[arg(long)]
        channel: Option<String>,
    },
    /// Run one read-only statement through the same access and guard path as the bot.
    Query {
        source: String,
        sql: String,
        #[arg(long = "as", value_name = "PRINCIPAL")]
        principal: String,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Rows to return (capped by the source's max_rows).
        #[arg(long)]
        max_rows: Option<u64>,
    },
    /// Answer one question, showing progress, then the report; evidence goes to a directory.
    Ask {
        question: String,
        #[arg(long = "as", value_name = "PRINCIPAL")]
        principal: String,
        #[arg(long)]
        channel: Option<String>,
        /// Use the offline runbook planner even when ANTHROPIC_API_KEY is set.
        #[arg(long)]
        offline: bool,
        /// Where to write the evidence (default: evidence-out/<session id>).
        #[arg(long)]
        evidence_dir: Option<PathBuf>,
    },
    /// An interactive thread in the terminal: each line is a question; follow-ups continue it.
    Chat {
        #[arg(long = "as", value_name = "PRINCIPAL")]
        principal: String,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        offline: bool,
    },
    /// Run the Slack bot (Socket Mode or the HTTP Events API; see README, "Slack").
    Slack {
        /// Use the offline runbook planner even when ANTHROPIC_API_KEY is set.
        #[arg(long)]
        offline: bool,
    },
    /// Encrypted secrets for the configuration.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Run the HTTP API (and, as they land, the chat transports enabled in config).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "INVESTIGATOR_LISTEN", default_value = "127.0.0.1:8001")]
        listen: String,
        /// Use the offline runbook planner even when ANTHROPIC_API_KEY is set.
        #[arg(long)]
        offline: bool,
        /// Requests per minute per API key.
        #[arg(long, default_value_t = 120)]
        rate_per_minute: u32,
        /// Seconds shutdown waits for running investigations before marking them interrupted.
        #[arg(long, default_value_t = 30)]
        shutdown_grace: u64,
    },
    /// The store: retention.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Log tools.
    Logs {
        #[command(subcommand)]
        command: LogsCommand,
    },
    /// Benchmarks that print numbers.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Run the demo investigation offline (no network, no API key), or regenerate its data.
    Demo {
        #[command(subcommand)]
        command: Option<DemoCommand>,
        /// The demo's configuration directory.
        #[arg(long, default_value = "config/demo")]
        dir: PathBuf,
        /// The question to ask.
        #[arg(long, default_value = "why is checkout erroring?")]
        question: String,
        /// Where to write the evidence (default: evidence-out/<session id>).
        #[arg(long)]
        evidence_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DemoCommand {
    /// Write the demo's logs, SQLite database and configuration (deterministic per seed).
    Generate {
        #[arg(long, default_value = "config/demo")]
        dir: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Delete sessions (messages, evidence, reports, feedback) not updated for
    /// the retention period, and old processed chat event ids. The audit log is kept.
    Prune {
        /// Retention in days.
        #[arg(long, env = "INVESTIGATOR_RETENTION_DAYS", default_value_t = 30)]
        retention_days: u32,
    },
}

#[derive(Subcommand)]
enum LogsCommand {
    /// One `<pattern id>\t<pattern>` line per input line (each line a message),
    /// `<*>` for each parameter; the parse time goes to stderr.
    Templates {
        file: PathBuf,
        /// Tokenise on this thread only (by default a helper thread tokenises ahead).
        #[arg(long)]
        single_thread: bool,
        /// Mine the file this many times in this process, each time with a fresh miner
        /// (as a benchmark times a library), and report the fastest parse time beside the
        /// first run's; the output is the first run's.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
        repeat: u32,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Print a new master key for INVESTIGATOR_MASTER_KEY.
    Keygen,
    /// Encrypt a value (read from stdin, or --value) with INVESTIGATOR_MASTER_KEY.
    Encrypt {
        #[arg(long)]
        value: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of the whole log.
    Verify,
    /// Show the last entries.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Logs {
        command:
            LogsCommand::Templates {
                file,
                single_thread,
                repeat,
            },
    } = &cli.command
    {
        // Synchronous and alone: no runtime threads or tracing to start for a file filter.
        return log_templates(file, *single_thread, *repeat).unwrap_or_else(|err| {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        });
    }
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    eprintln!("shutting down: finishing running investigations");
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("INVESTIGATOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { no_connect } => check(&cli.config, no_connect).await,
        Command::Sources { principal, channel } => {
            let config = load_config(&cli.config)?;
            show_sources(&config, &principal, channel.as_deref())
        }
        Command::Query {
            source,
            sql,
            principal,
            channel,
            format,
            max_rows,
        } => {
            let config = load_config(&cli.config)?;
            let store = Store::open(&cli.store).await.with_context(|| {
                format!(
                    "opening the store {}",
                    investigator::store::redacted_location(&cli.store)
                )
            })?;
            query(
                &config,
                store,
                &source,
                &sql,
                &principal,
                channel.as_deref(),
                format,
                max_rows,
            )
            .await
        }
        Command::Ask {
            question,
            principal,
            channel,
            offline,
            evidence_dir,
        } => {
            let app = build_app(&cli.config, &cli.store, offline).await?;
            let principal = principal_of(&principal, channel.as_deref())?;
            ask(&app, &principal, &question, evidence_dir).await
        }
        Command::Chat {
            principal,
            channel,
            offline,
        } => {
            let app = build_app(&cli.config, &cli.store, offline).await?;
            let principal = principal_of(&principal, channel.as_deref())?;
            chat(&app, &principal).await
        }
        Command::Secrets { command } => secrets(command),
        Command::Audit { command } => {
            let store = Store::open(&cli.store).await.with_context(|| {
                format!(
                    "opening the store {}",
                    investigator::store::redacted_location(&cli.store)
                )
            })?;
            audit_command(&store, command).await
        }
        Command::Serve {
            listen,
            offline,
            rate_per_minute,
            shutdown_grace,
        } => {
            let app = Arc::new(build_app(&cli.config, &cli.store, offline).await?);
            let recovered = app
                .sessions
                .store()
                .recover_interrupted(chrono::Utc::now())
                .await?;
            if recovered > 0 {
                eprintln!("{recovered} investigation(s) left running by a previous process are marked interrupted (resume with POST /api/v1/investigations/{{id}}/resume)");
            }
            let settings = investigator::api::ApiSettings {
                per_key_per_minute: rate_per_minute,
                shutdown_grace: std::time::Duration::from_secs(shutdown_grace),
                ..investigator::api::ApiSettings::default()
            };
            let master = MasterKey::from_env()?;
            // Every enabled chat transport runs beside the API on the same App and
            // store, so a thread and the API read one investigation.
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let slack = if std::env::var_os("SLACK_BOT_TOKEN").is_some() {
                let settings = investigator::chat::slack::SlackSettings::from_env(&ProcessEnv)?;
                eprintln!("slack: {:?} mode", settings.mode);
                let mut stop = stop_rx.clone();
                let slack_app = app.clone();
                Some(tokio::spawn(async move {
                    let shutdown = async move {
                        let _ = stop.changed().await;
                    };
                    investigator::chat::slack::run(slack_app, settings, shutdown).await
                }))
            } else {
                None
            };
            let state = investigator::api::ApiState::new(app, settings, master.as_ref())?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            eprintln!("API listening on http://{}", listener.local_addr()?);
            investigator::api::serve(listener, state, async move {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            })
            .await?;
            if let Some(slack) = slack {
                match slack.await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => eprintln!("slack stopped with an error: {err}"),
                    Err(err) => eprintln!("slack task failed: {err}"),
                }
            }
            drop(stop_rx);
            eprintln!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Store {
            command: StoreCommand::Prune { retention_days },
        } => {
            let store = Store::open(&cli.store).await.with_context(|| {
                format!(
                    "opening the store {}",
                    investigator::store::redacted_location(&cli.store)
                )
            })?;
            let before = chrono::Utc::now() - chrono::Duration::days(i64::from(retention_days));
            let pruned = store.prune(before).await?;
            println!(
                "pruned {} session(s) and {} processed event id(s) older than {} day(s)",
                pruned.sessions, pruned.events, retention_days
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs {
            command:
                LogsCommand::Templates {
                    file,
                    single_thread,
                    repeat,
                },
        } => log_templates(&file, single_thread, repeat),
        Command::Slack { offline } => {
            let app = build_app(&cli.config, &cli.store, offline).await?;
            let settings = investigator::chat::slack::SlackSettings::from_env(&ProcessEnv)?;
            eprintln!("slack: {:?} mode", settings.mode);
            investigator::chat::slack::run(Arc::new(app), settings, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { command } => bench::run(command, &cli.config).await,
        Command::Demo {
            command: Some(command),
            ..
        } => demo_command(command).await,
        Command::Demo {
            command: None,
            dir,
            question,
            evidence_dir,
        } => {
            // The demo answers as a member of the demo squad, in its channel.
            let app = build_app(&dir, &cli.store, false).await?;
            let principal = Principal::parse("slack:U0DEMO")?.with_channel_text("slack:C0DEMO")?;
            eprintln!("demo: asking {question:?} as {principal} in slack:C0DEMO");
            ask(&app, &principal, &question, evidence_dir).await
        }
    }
}

async fn demo_command(command: DemoCommand) -> anyhow::Result<ExitCode> {
    match command {
        DemoCommand::Generate { dir, seed } => {
            let target = dir.clone();
            // Writing some megabytes and a database blocks; keep it off the async workers.
            let summary = tokio::task::spawn_blocking(move || demo::generate(&target, seed))
                .await
                .context("the demo generator stopped")?
                .with_context(|| format!("writing the demo dataset to {}", dir.display()))?;
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn log_templates(
    file: &std::path::Path,
    single_thread: bool,
    repeat: u32,
) -> anyhow::Result<ExitCode> {
    use investigator::evidence::patterns::{write_templates, DrainConfig};
    let config = DrainConfig::default();
    let mut first = None;
    let mut fastest = f64::INFINITY;
    for run in 0..repeat {
        let input =
            std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
        let result = if run == 0 {
            write_templates(
                input,
                &config,
                !single_thread,
                &mut std::io::stdout().lock(),
            )
        } else {
            write_templates(input, &config, !single_thread, &mut std::io::sink())
        }
        .with_context(|| format!("mining {}", file.display()))?;
        fastest = fastest.min(result.parse_seconds);
        first.get_or_insert(result);
    }
    let Some(first) = first else {
        anyhow::bail!("--repeat must be at least 1");
    };
    if repeat == 1 {
        eprintln!(
            "templates: lines={} groups={} parse_seconds={:.6}",
            first.lines, first.groups, first.parse_seconds
        );
    } else {
        eprintln!(
            "templates: lines={} groups={} parse_seconds={:.6} (fastest of {repeat} runs) \
             first_run_seconds={:.6}",
            first.lines, first.groups, fastest, first.parse_seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn load_config(dir: &std::path::Path) -> anyhow::Result<Config> {
    let config = config::load(dir, &ProcessEnv)?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(config)
}

fn build_context(config: &Config) -> anyhow::Result<BuildContext> {
    Ok(BuildContext {
        master_key: MasterKey::from_env()?.map(Arc::new),
        config_dir: config.dir.clone(),
    })
}

async fn check(dir: &std::path::Path, no_connect: bool) -> anyhow::Result<ExitCode> {
    let config = match config::load(dir, &ProcessEnv) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "configuration {} is valid: {} source(s), {} squad(s)",
        dir.display(),
        config.sources.len(),
        config.squads.len()
    );
    let registry = Registry::builtin();
    let mut rows = Vec::new();
    let mut failed = false;
    let sources = if no_connect {
        None
    } else {
        let ctx = build_context(&config)?;
        Some(Sources::build(&config, &registry, &ctx))
    };
    for entry in &config.sources {
        let kind = entry.spec.kind();
        let owner = entry.owner.clone().unwrap_or_else(|| "-".into());
        let status = if !entry.enabled {
            "disabled".to_string()
        } else if !registry.known_kinds().contains(&kind) {
            match registry.build(entry, &BuildContext::default()) {
                Err(why) => format!("not yet available ({why})"),
                Ok(_) => "ok".into(),
            }
        } else if let Some(sources) = &sources {
            match sources.get(&entry.name) {
                Some(source) => {
                    let health = source.health().await;
                    if health.ok {
                        format!(
                            "ok ({} ms) {}",
                            health.latency_ms,
                            first_line(&health.detail)
                        )
                    } else {
                        failed = true;
                        format!("FAILED: {}", first_line(&health.detail))
                    }
                }
                None => {
                    failed = true;
                    format!(
                        "FAILED: {}",
                        sources
                            .unavailable(&entry.name)
                            .map(|u| u.to_string())
                            .unwrap_or_default()
                    )
                }
            }
        } else {
            "valid (not connected)".into()
        };
        rows.push(vec![entry.name.clone(), kind.to_string(), owner, status]);
    }
    print_grid(&["source", "kind", "owner", "status"], &rows);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn build_app(config: &std::path::Path, store: &str, offline: bool) -> anyhow::Result<App> {
    let choice = if offline {
        ModelChoice::Offline
    } else {
        ModelChoice::Auto
    };
    let app = App::build(config, store, choice, &ProcessEnv).await?;
    for warning in &app.config.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!("model: {}", app.engine.model_name());
    Ok(app)
}

fn new_conversation() -> Conversation {
    Conversation {
        id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        ..Conversation::default()
    }
}

/// Runs one question, prints the report, writes the evidence; returns the exit code.
async fn answer(
    app: &App,
    principal: &Principal,
    conversation: &mut Conversation,
    question: &str,
    evidence_dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let progress = ProgressPrinter::new(std::io::stderr());
    let outcome = match app.ask(principal, conversation, question, &progress).await {
        Ok(outcome) => outcome,
        Err(denial) => {
            eprintln!("refused: {denial}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let markdown = render::report_markdown(
        question,
        &outcome.report,
        &conversation.evidence,
        Some(&outcome),
    );
    println!("{markdown}");
    let dir = evidence_dir.unwrap_or_else(|| PathBuf::from("evidence-out").join(&conversation.id));
    let report_json = serde_json::to_value(&outcome.report)?;
    let files = investigator::evidence::export::write_dir(
        &dir,
        &conversation.evidence,
        &report_json,
        &markdown,
    )
    .with_context(|| format!("writing evidence to {}", dir.display()))?;
    println!("evidence: {} file(s) in {}", files.len(), dir.display());
    Ok(ExitCode::SUCCESS)
}

async fn ask(
    app: &App,
    principal: &Principal,
    question: &str,
    evidence_dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let mut conversation = new_conversation();
    answer(app, principal, &mut conversation, question, evidence_dir).await
}

async fn chat(app: &App, principal: &Principal) -> anyhow::Result<ExitCode> {
    if let Err(denial) = app.resolve(principal) {
        eprintln!("refused: {denial}");
        return Ok(ExitCode::FAILURE);
    }
    let mut conversation = new_conversation();
    eprintln!("thread {}: ask a question; follow-ups continue the thread. /evidence E3 shows an item, /quit ends.", conversation.id);
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        if stdin.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/quit" || line == "/exit" {
            break;
        }
        if let Some(id) = line.strip_prefix("/evidence ") {
            match conversation.evidence.get(id) {
                Some(item) => println!("{}", serde_json::to_string_pretty(item)?),
                None => eprintln!("no evidence {id} in this thread"),
            }
            continue;
        }
        let dir = PathBuf::from("evidence-out").join(&conversation.id);
        answer(app, principal, &mut conversation, line, Some(dir)).await?;
    }
    Ok(ExitCode::SUCCESS)
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(100).collect()
}

fn print_grid(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for row in rows {
        line(row.clone());
    }
}

fn principal_of(principal: &str, channel: Option<&str>) -> anyhow::Result<Principal> {
    let mut p = Principal::parse(principal)?;
    if let Some(channel) = channel {
        p = p.with_channel_text(channel)?;
    }
    Ok(p)
}

fn show_sources(
    config: &Config,
    principal: &str,
    channel: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let principal = principal_of(principal, channel)?;
    let access = match access::resolve(config, &principal) {
        Ok(access) => access,
        Err(denial) => {
            eprintln!("denied: {denial}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!(
        "{} is in squad(s): {}",
        access.principal,
        access.squads.join(", ")
    );
    if let (Some(channel), Some(squad)) = (&access.channel, &access.channel_squad) {
        println!("channel {channel} is bound to squad {squad}: only its sources apply here");
    }
    if access.grants.is_empty() {
        println!("no sources are available");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = access
        .grants
        .values()
        .map(|g| {
            vec![
                g.source.clone(),
                g.kind.to_string(),
                g.scope_summary(),
                g.reasons.join("; "),
            ]
        })
        .collect();
    print_grid(&["source", "kind", "scope", "why"], &rows);
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
async fn query(
    config: &Config,
    store: Store,
    source: &str,
    sql: &str,
    principal: &str,
    channel: Option<&str>,
    format: Format,
    max_rows: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let principal = principal_of(principal, channel)?;
    let sources = Sources::build(config, &Registry::builtin(), &build_context(config)?);
    let gate = Gate::new(sources, store);
    let mut args = json!({ "sql": sql });
    if let Some(n) = max_rows {
        args["max_rows"] = json!(n);
    }
    let access = match access::resolve(config, &principal) {
        Ok(access) => access,
        Err(denial) => {
            let line = format!("refused: {denial}");
            gate.record_denied(&principal, source, "run_query", &args, &line)
                .await?;
            eprintln!("{line}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let outcome = gate
        .call(&access, source, "run_query", &args, &CallContext::default())
        .await;
    let output = match outcome.result {
        Ok(output) => output,
        Err(err) => {
            let line = err.to_string().replace('\n', " ");
            eprintln!("{line}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let Content::Table(table) = &output.content else {
        bail!("unexpected non-tabular result");
    };
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => {
            write!(out, "{}", table.to_text(60))?;
            let total = table
                .total_rows
                .map(|t| t.to_string())
                .unwrap_or_else(|| "unknown".into());
            writeln!(
                out,
                "({} row(s) shown, {total} total, {} ms)",
                table.rows.len(),
                outcome.duration_ms
            )?;
        }
        Format::Json => {
            let body = json!({
                "columns": table.columns,
                "rows": table.to_objects(),
                "total_rows": table.total_rows,
                "truncated": table.truncated,
                "note": output.note,
                "duration_ms": outcome.duration_ms,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
        }
        Format::Csv => write!(out, "{}", table.to_csv()?)?,
    }
    if let Some(note) = &output.note {
        eprintln!("note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

fn secrets(command: SecretsCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretsCommand::Keygen => {
            let key = MasterKey::generate();
            println!("{}", key.to_base64());
            eprintln!("set it as INVESTIGATOR_MASTER_KEY (fingerprint {}); keep it out of the config directory", key.fingerprint());
        }
        SecretsCommand::Encrypt { value } => {
            let Some(key) = MasterKey::from_env()? else {
                bail!("INVESTIGATOR_MASTER_KEY is not set (create one with `investigator secrets keygen`)");
            };
            let value = match value {
                Some(v) => v,
                None => {
                    if std::io::stdin().is_terminal() {
                        eprintln!("type the secret, then end with Ctrl-D:");
                    }
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text)?;
                    text.strip_suffix('\n')
                        .map(|s| s.strip_suffix('\r').unwrap_or(s))
                        .unwrap_or(&text)
                        .to_string()
                }
            };
            if value.is_empty() {
                bail!("refusing to encrypt an empty value");
            }
            println!("{}", config::secret::encrypt(&key, &value)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit_command(store: &Store, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify => {
            let report = store.verify_audit().await?;
            if report.ok {
                println!(
                    "audit log ok: {} entries, head {}",
                    report.entries,
                    report.head_hash.as_deref().unwrap_or("(empty)")
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "audit log FAILED verification ({} entries):",
                    report.entries
                );
                for problem in &report.problems {
                    println!("  {problem}");
                }
                Ok(ExitCode::FAILURE)
            }
        }
        AuditCommand::Tail { lines, json } => {
            let entries = store.tail_audit(lines).await?;
            for entry in &entries {
                if json {
                    println!("{}", serde_json::to_string(entry)?);
                } else {
                    println!("{}", audit::audit_line(entry));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
