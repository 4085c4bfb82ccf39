//! `investigator bench …`: benchmarks that print numbers (never timed tests).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use sqlx::Executor;

use investigator::access::{self, Principal, Transport};
use investigator::config::{self, interpolate::ProcessEnv};
use investigator::engine::Gate;
use investigator::guard::sql::{check, Dialect, SqlScope};
use investigator::sources::{BuildContext, CallContext, Registry, Sources};
use investigator::store::Store;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Guard verdict time per statement (parse + policy), legitimate and hostile.
    Guard {
        #[arg(long, default_value_t = 2000)]
        iterations: usize,
    },
    /// Engine overhead per tool call (zero-latency model and sources), and a turn of
    /// 8 parallel calls of 200 ms each against the slowest.
    Engine {
        #[arg(long, default_value_t = 200)]
        investigations: usize,
    },
    /// Compaction ratio: bytes of raw evidence over bytes sent to the model, on the
    /// demo incident (offline planner) and on a generated log of `lines` lines with
    /// one rare causal error pattern.
    Compaction {
        #[arg(long, default_value = "config/demo")]
        demo_dir: std::path::PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        lines: u64,
    },
    /// HTTP API: requests per second under concurrent clients on loopback for
    /// `/healthz` and `GET /api/v1/investigations/{id}`, and the latency
    /// `POST /api/v1/investigate` adds over the engine alone (zero-latency
    /// fake model and sources).
    Api {
        /// Concurrent clients.
        #[arg(long, default_value_t = 50)]
        clients: usize,
        /// Requests per read route (each phase also stops after --max-seconds).
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Investigations per side (engine alone, through HTTP).
        #[arg(long, default_value_t = 500)]
        investigations: usize,
        #[arg(long, default_value_t = 20)]
        max_seconds: u64,
    },
    /// Time `query` adds over the same statement through raw sqlx (PostgreSQL).
    Query {
        #[arg(
            long,
            env = "INVESTIGATOR_TEST_PG",
            default_value = "postgres://postgres@127.0.0.1:5432/test"
        )]
        url: String,
        #[arg(long, default_value_t = 500)]
        iterations: usize,
    },
    /// Ack latency of signed Events API requests sent at a steady rate from
    /// loopback to the Slack router (each event then posts to a loopback fake Web API).
    SlackAck {
        /// Events per second.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Configuration directory for the App (the demo's by default).
        #[arg(long, default_value = "config/demo")]
        dir: std::path::PathBuf,
    },
}

const GUARD_CORPUS: &[&str] = &[
    "SELECT count(*) FROM orders WHERE status = 'failed'",
    "SELECT date_trunc('minute', created_at) AS m, count(*) FROM orders WHERE created_at > now() - interval '1 hour' GROUP BY 1 ORDER BY 1",
    "WITH failed AS (SELECT * FROM payments WHERE state = 'failed') SELECT f.order_id, o.amount FROM failed f JOIN orders o ON o.id = f.order_id LIMIT 50",
    "SELECT id, amount, rank() OVER (PARTITION BY status ORDER BY amount DESC) FROM app.orders",
    "SELECT meta->>'region' AS region, percentile_cont(0.95) WITHIN GROUP (ORDER BY amount) FROM orders GROUP BY 1",
    "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'app' AND table_name = 'orders'",
    "EXPLAIN (FORMAT JSON) SELECT * FROM orders WHERE id = 1",
    "DELETE FROM orders",
    "WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d",
    "SELECT pg_sleep(10)",
    "SELECT * FROM billing.invoices",
    "SELECT 1; DROP TABLE orders",
];

pub async fn run(command: BenchCommand, config_dir: &Path) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Guard { iterations } => bench_guard(iterations),
        BenchCommand::Query { url, iterations } => bench_query(&url, iterations, config_dir).await,
        BenchCommand::Engine { investigations } => engine_bench::run(investigations).await,
        BenchCommand::Compaction { demo_dir, lines } => compaction::run(&demo_dir, lines).await,
        BenchCommand::SlackAck { rate, seconds, dir } => {
            slack_bench::run(rate, seconds, &dir).await
        }
        BenchCommand::Api {
            clients,
            requests,
            investigations,
            max_seconds,
        } => {
            engine_bench::run_api(engine_bench::ApiBench {
                clients: clients.max(1),
                requests,
                investigations,
                max: Duration::from_secs(max_seconds),
            })
            .await
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn bench_guard(iterations: usize) -> anyhow::Result<ExitCode> {
    let scope = SqlScope {
        default_schema: "app".into(),
        schemas: vec!["app".into()],
    };
    let mut all = Vec::with_capacity(iterations * GUARD_CORPUS.len());
    println!("guard verdict time, {iterations} iterations per statement (PostgreSQL dialect)");
    println!(
        "{:>9} {:>9} {:>9}  statement",
        "p50 µs", "p99 µs", "verdict"
    );
    for sql in GUARD_CORPUS {
        let mut times = Vec::with_capacity(iterations);
        let mut approved = false;
        for _ in 0..iterations {
            let started = Instant::now();
            let verdict = check(Dialect::Postgres, std::hint::black_box(sql), &scope);
            times.push(started.elapsed());
            approved = verdict.is_ok();
        }
        times.sort();
        let shown: String = sql.chars().take(70).collect();
        println!(
            "{:>9.1} {:>9.1} {:>9}  {shown}",
            micros(percentile(&times, 0.5)),
            micros(percentile(&times, 0.99)),
            if approved { "allowed" } else { "refused" }
        );
        all.extend(times);
    }
    all.sort();
    println!(
        "all statements: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs over {} verdicts",
        micros(percentile(&all, 0.5)),
        micros(percentile(&all, 0.99)),
        micros(all.last().copied().unwrap_or_default()),
        all.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn bench_query(url: &str, iterations: usize, _config_dir: &Path) -> anyhow::Result<ExitCode> {
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .context("connecting")?;
    let schema = format!(
        "inv_bench_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    admin
        .execute(
            format!(
                "CREATE SCHEMA {schema}; CREATE TABLE {schema}.orders (id int PRIMARY KEY, status text, amount numeric);
                 INSERT INTO {schema}.orders SELECT g, CASE WHEN g % 5 = 0 THEN 'failed' ELSE 'ok' END, g FROM generate_series(1, 10000) g;
                 ANALYZE {schema}.orders;"
            )
            .as_str(),
        )
        .await?;
    let result = bench_query_inner(url, &schema, iterations, &admin).await;
    let _ = admin
        .execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
        .await;
    result
}

async fn bench_query_inner(
    url: &str,
    schema: &str,
    iterations: usize,
    admin: &sqlx::PgPool,
) -> anyhow::Result<ExitCode> {
    let parsed: url_parts::Parts = url_parts::parse(url)?;
    let sources_yaml = format!(
        "data_sources:\n  databases:\n    - {{name: bench, type: postgresql, host: {}, port: {}, database: {}, username: {}, squad: bench, schemas: [{schema}]}}\n",
        parsed.host, parsed.port, parsed.database, parsed.user
    );
    let squads_yaml = "squads:\n  bench:\n    members: {slack: [UBENCH]}\n";
    let config = config::parse(
        "bench-sources.yaml",
        &sources_yaml,
        "bench-squads.yaml",
        Some(squads_yaml),
        &ProcessEnv,
    )?;
    let dir = tempfile_dir()?;
    let store = Store::open(&dir.join("bench.db").display().to_string()).await?;
    let gate = Gate::new(
        Sources::build(&config, &Registry::builtin(), &BuildContext::default()),
        store,
    );
    let access = access::resolve(&config, &Principal::new(Transport::Slack, "UBENCH"))
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let sql = "SELECT status, count(*), sum(amount) FROM orders WHERE id <= 500 GROUP BY status";
    let qualified = format!(
        "SELECT status, count(*), sum(amount) FROM {schema}.orders WHERE id <= 500 GROUP BY status"
    );
    let ctx = CallContext::default();
    // Warm both paths (connections, plans).
    for _ in 0..20 {
        sqlx::query(&qualified).fetch_all(admin).await?;
        let _ = gate
            .call(&access, "bench", "run_query", &json!({ "sql": sql }), &ctx)
            .await
            .result?;
    }
    let mut raw = Vec::with_capacity(iterations);
    let mut ours = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        sqlx::query(&qualified).fetch_all(admin).await?;
        raw.push(started.elapsed());
        let started = Instant::now();
        let _ = gate
            .call(&access, "bench", "run_query", &json!({ "sql": sql }), &ctx)
            .await
            .result?;
        ours.push(started.elapsed());
    }
    raw.sort();
    ours.sort();
    println!(
        "query overhead, {iterations} iterations, same statement, PostgreSQL at {}:{}",
        parsed.host, parsed.port
    );
    println!("{:<34} {:>9} {:>9}", "path", "p50 µs", "p99 µs");
    println!(
        "{:<34} {:>9.0} {:>9.0}",
        "raw sqlx (pool, fetch_all)",
        micros(percentile(&raw, 0.5)),
        micros(percentile(&raw, 0.99))
    );
    println!(
        "{:<34} {:>9.0} {:>9.0}",
        "investigator (access+guard+tx+audit)",
        micros(percentile(&ours, 0.5)),
        micros(percentile(&ours, 0.99))
    );
    println!(
        "added: p50 {:.0} µs, p99 {:.0} µs",
        micros(percentile(&ours, 0.5)) - micros(percentile(&raw, 0.5)),
        micros(percentile(&ours, 0.99)) - micros(percentile(&raw, 0.99))
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "investigator-bench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Minimal postgres URL parsing for the benchmark's own connection string.
mod url_parts {
    pub struct Parts {
        pub user: String,
        pub host: String,
        pub port: u16,
        pub database: String,
    }

    pub fn parse(url: &str) -> anyhow::Result<Parts> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| anyhow::anyhow!("expected a postgres:// URL"))?;
        let (auth, rest) = rest.split_once('@').unwrap_or(("postgres", rest));
        let user = auth.split(':').next().unwrap_or("postgres").to_string();
        let (hostport, database) = rest.split_once('/').unwrap_or((rest, "postgres"));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse()?),
            None => (hostport.to_string(), 5432),
        };
        Ok(Parts {
            user,
            host,
            port,
            database: database.split('?').next().unwrap_or("postgres").to_string(),
        })
    }
}

/// In-process stand-ins for the engine benchmark only: a model that asks for a
/// fixed plan and sources that answer after a fixed delay.
mod engine_bench {
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use async_trait::async_trait;
    use serde_json::{json, Value};

    use investigator::access::{self, Principal, SourceGrant, Transport};
    use investigator::config;
    use investigator::engine::{
        Budgets, Conversation, Engine, EngineSettings, Gate, NoEvents, SystemClock,
    };
    use investigator::evidence::{Column, Content, Table};
    use investigator::llm::{
        self, ContentBlock, Model, ModelRequest, ModelResponse, Pricing, Role, StopReason, Usage,
    };
    use investigator::sources::{self, CallContext, Health, Source, Sources, ToolOutput, ToolSpec};
    use investigator::store::Store;

    use investigator::api::{self, ApiSettings, ApiState};
    use investigator::app::App;
    use investigator::config::squads::ApiKeyConfig;
    use investigator::config::SecretRef;

    struct PlanModel {
        calls_per_turn: usize,
        turns: usize,
    }

    #[async_trait]
    impl Model for PlanModel {
        fn name(&self) -> &str {
            "bench-plan"
        }
        fn pricing(&self) -> Pricing {
            Pricing::FREE
        }
        async fn complete(&self, request: &ModelRequest) -> llm::Result<ModelResponse> {
            let done = request
                .messages
                .iter()
                .filter(|m| m.role == Role::Assistant)
                .count();
            let content = if done < self.turns {
                (0..self.calls_per_turn)
                    .map(|i| ContentBlock::ToolUse {
                        id: format!("t{done}_{i}"),
                        name: format!("src{i}__search"),
                        input: json!({}),
                    })
                    .collect()
            } else {
                let ids: Vec<String> = (1..=done * self.calls_per_turn)
                    .map(|n| format!("E{n}"))
                    .collect();
                vec![ContentBlock::ToolUse {
                    id: "report".into(),
                    name: "submit_report".into(),
                    input: json!({
                        "root_cause": {"summary": "bench", "evidence": [ids.first().cloned().unwrap_or_default()]},
                        "timeline": [], "affected_components": [], "recommended_actions": [], "confidence": "low"
                    }),
                }]
            };
            Ok(ModelResponse {
                content,
                stop_reason: StopReason::ToolUse,
                usage: Usage::default(),
            })
        }
    }

    struct DelaySource {
        name: String,
        delay: Duration,
    }

    #[async_trait]
    impl Source for DelaySource {
        fn name(&self) -> &str {
            &self.name
        }
        fn kind(&self) -> &'static str {
            "logfile"
        }
        fn tools(&self, _grant: &SourceGrant) -> Vec<ToolSpec> {
            vec![ToolSpec {
                name: "search".into(),
                description: "bench".into(),
                input_schema: json!({"type": "object"}),
            }]
        }
        async fn health(&self) -> Health {
            Health {
                ok: true,
                detail: String::new(),
                latency_ms: 0,
            }
        }
        async fn call(
            &self,
            _tool: &str,
            _args: &Value,
            _grant: &SourceGrant,
            _ctx: &CallContext,
        ) -> sources::Result<ToolOutput> {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let mut table = Table::new(vec![Column {
                name: "line".into(),
                type_name: "TEXT".into(),
            }]);
            table.rows = (0..20).map(|i| vec![json!(format!("line {i}"))]).collect();
            table.total_rows = Some(20);
            Ok(ToolOutput {
                statement: "search".into(),
                content: Content::Table(table),
                note: None,
                attachments: Vec::new(),
            })
        }
        async fn describe(
            &self,
            _grant: &SourceGrant,
            _ctx: &CallContext,
        ) -> sources::Result<String> {
            Ok(String::new())
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    fn bench_config(calls_per_turn: usize) -> anyhow::Result<config::Config> {
        let mut yaml = String::from("data_sources:\n  logfiles:\n");
        for i in 0..calls_per_turn {
            yaml.push_str(&format!(
                "    - {{name: src{i}, paths: [x.log], squad: bench}}\n"
            ));
        }
        let env: std::collections::HashMap<String, String> = Default::default();
        Ok(config::parse(
            "bench",
            &yaml,
            "bench",
            Some("squads:\n  bench:\n    members: {slack: [U1]}\n"),
            &env,
        )?)
    }

    fn delay_sources(calls_per_turn: usize, delay: Duration) -> Sources {
        let mut sources = Sources::default();
        for i in 0..calls_per_turn {
            sources.insert(Arc::new(DelaySource {
                name: format!("src{i}"),
                delay,
            }));
        }
        sources
    }

    async fn build_engine(
        calls_per_turn: usize,
        turns: usize,
        delay: Duration,
    ) -> anyhow::Result<(Engine, investigator::access::Access)> {
        let config = bench_config(calls_per_turn)?;
        let sources = delay_sources(calls_per_turn, delay);
        let gate = Gate::new(sources, Store::open_in_memory().await?);
        let settings = EngineSettings {
            budgets: Budgets {
                max_turns: (turns + 2) as u32,
                max_tool_calls: 10_000,
                ..Budgets::default()
            },
            per_source_concurrency: 4,
            tool_timeout: Duration::from_secs(30),
            ..EngineSettings::default()
        };
        let access = access::resolve(&config, &Principal::new(Transport::Slack, "U1"))
            .map_err(|d| anyhow::anyhow!("{d}"))?;
        Ok((
            Engine::new(
                gate,
                Arc::new(PlanModel {
                    calls_per_turn,
                    turns,
                }),
                Arc::new(SystemClock),
                settings,
            ),
            access,
        ))
    }

    pub async fn run(investigations: usize) -> anyhow::Result<ExitCode> {
        // 1. Overhead: zero-latency model and sources; 4 turns of 4 calls each.
        let (calls_per_turn, turns) = (4, 4);
        let (engine, access) = build_engine(calls_per_turn, turns, Duration::ZERO).await?;
        let mut per_call = Vec::with_capacity(investigations);
        for i in 0..investigations {
            let mut conversation = Conversation {
                id: format!("b{i}"),
                ..Conversation::default()
            };
            let started = Instant::now();
            let outcome = engine
                .ask(
                    &access,
                    &mut conversation,
                    "bench".into(),
                    "why?",
                    &NoEvents,
                )
                .await;
            let elapsed = started.elapsed();
            anyhow::ensure!(
                outcome.tool_calls as usize == calls_per_turn * turns,
                "unexpected plan: {} calls",
                outcome.tool_calls
            );
            per_call.push(elapsed / outcome.tool_calls.max(1));
        }
        per_call.sort();
        println!("engine overhead per tool call ({investigations} investigations x {} calls; zero-latency fake model and sources; includes audit append to an in-memory SQLite store)", calls_per_turn * turns);
        println!(
            "  p50 {:.0} µs, p99 {:.0} µs",
            super::micros(super::percentile(&per_call, 0.5)),
            super::micros(super::percentile(&per_call, 0.99))
        );

        // 2. One turn of 8 parallel calls of 200 ms each.
        let (engine, access) = build_engine(8, 1, Duration::from_millis(200)).await?;
        let mut ratios = Vec::new();
        for i in 0..10 {
            let mut conversation = Conversation {
                id: format!("p{i}"),
                ..Conversation::default()
            };
            let started = Instant::now();
            let outcome = engine
                .ask(
                    &access,
                    &mut conversation,
                    "bench".into(),
                    "why?",
                    &NoEvents,
                )
                .await;
            let elapsed = started.elapsed();
            anyhow::ensure!(outcome.tool_calls == 8, "unexpected plan");
            ratios.push(elapsed.as_secs_f64() / 0.2);
        }
        ratios.sort_by(|a, b| a.total_cmp(b));
        println!("8 parallel calls of 200 ms in one turn (10 runs): whole investigation / slowest call = median {:.3}x, worst {:.3}x", ratios[ratios.len() / 2], ratios[ratios.len() - 1]);
        Ok(ExitCode::SUCCESS)
    }

    pub struct ApiBench {
        pub clients: usize,
        pub requests: usize,
        pub investigations: usize,
        pub max: Duration,
    }

    const KEY: &str = "bench-key-0123456789abcdef";
    /// Tool calls per fake investigation: one turn of this many, then the report.
    const API_CALLS: usize = 4;

    /// One bounded phase: `clients` tasks share a countdown of `requests`;
    /// each stops when it runs out or `max` has passed. Returns every
    /// request's latency and the wall time.
    async fn load<F, Fut>(
        clients: usize,
        requests: usize,
        max: Duration,
        one: F,
    ) -> anyhow::Result<(Vec<Duration>, Duration)>
    where
        F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
    {
        let left = Arc::new(std::sync::atomic::AtomicUsize::new(requests));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for client in 0..clients {
            let left = left.clone();
            let one = one.clone();
            tasks.spawn(async move {
                let mut times = Vec::new();
                let mut n = 0usize;
                loop {
                    let taken = left.fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |n| n.checked_sub(1),
                    );
                    if taken.is_err() || started.elapsed() >= max {
                        break;
                    }
                    let t = Instant::now();
                    one(client * 1_000_000 + n).await?;
                    times.push(t.elapsed());
                    n += 1;
                }
                anyhow::Ok(times)
            });
        }
        let mut all = Vec::with_capacity(requests);
        while let Some(joined) = tasks.join_next().await {
            all.extend(joined??);
        }
        let wall = started.elapsed();
        all.sort();
        Ok((all, wall))
    }

    fn report(label: &str, times: &[Duration], wall: Duration) {
        println!(
            "  {label:<44} {:>7} req in {:>6.2} s = {:>8.0} req/s; p50 {:>8.0} µs, p99 {:>8.0} µs",
            times.len(),
            wall.as_secs_f64(),
            times.len() as f64 / wall.as_secs_f64().max(1e-9),
            super::micros(super::percentile(times, 0.5)),
            super::micros(super::percentile(times, 0.99)),
        );
    }

    pub async fn run_api(bench: ApiBench) -> anyhow::Result<ExitCode> {
        let dir = super::tempfile_dir()?;
        let result = run_api_in(&bench, &dir).await;
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            eprintln!("warning: could not remove {}: {err}", dir.display());
        }
        result
    }

    async fn run_api_in(bench: &ApiBench, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
        let mut config = bench_config(API_CALLS)?;
        config
            .squads
            .get_mut("bench")
            .ok_or_else(|| anyhow::anyhow!("bench squad missing"))?
            .api_keys
            .push(ApiKeyConfig {
                name: "bench".into(),
                key: SecretRef::from(KEY),
            });
        // A file store, as served in production: the in-memory one has a
        // single connection and would measure that instead.
        let store = Store::open(&dir.join("api.db").display().to_string()).await?;
        let settings = EngineSettings {
            budgets: Budgets {
                max_tool_calls: 10_000,
                ..Budgets::default()
            },
            per_source_concurrency: 4,
            tool_timeout: Duration::from_secs(30),
            ..EngineSettings::default()
        };
        let app = Arc::new(App::from_parts(
            config,
            Gate::new(delay_sources(API_CALLS, Duration::ZERO), store),
            Arc::new(PlanModel {
                calls_per_turn: API_CALLS,
                turns: 1,
            }),
            Arc::new(SystemClock),
            settings,
        ));
        let access = app
            .resolve(&Principal::new(Transport::Slack, "U1"))
            .map_err(|d| anyhow::anyhow!("{d}"))?;
        let state = ApiState::new(
            app.clone(),
            ApiSettings {
                // The limiter is not what is measured.
                per_key_per_minute: u32::MAX,
                burst: u32::MAX,
                ..ApiSettings::default()
            },
            None,
        )?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(api::serve(listener, state, async move {
            // A dropped sender also stops the server.
            stopped.await.ok();
        }));
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(bench.clients)
            .timeout(Duration::from_secs(60))
            .build()?;
        let auth = format!("Bearer {KEY}");

        let created: Value = client
            .post(format!("{base}/api/v1/investigate"))
            .header("authorization", &auth)
            .json(&json!({"query": "why?"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = created["investigation_id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no investigation_id in {created}"))?
            .to_owned();

        println!(
            "HTTP API on loopback, {} concurrent clients (reqwest, keep-alive), server in the same process; \
             fake model and sources answer at once; {API_CALLS} tool calls per investigation; SQLite file store",
            bench.clients
        );
        let get = |url: String, auth: Option<String>| {
            let client = client.clone();
            move |_n: usize| {
                let client = client.clone();
                let url = url.clone();
                let auth = auth.clone();
                async move {
                    let mut request = client.get(&url);
                    if let Some(auth) = auth {
                        request = request.header("authorization", auth);
                    }
                    let response = request.send().await?.error_for_status()?;
                    response.bytes().await?;
                    anyhow::Ok(())
                }
            }
        };
        let (times, wall) = load(
            bench.clients,
            bench.requests,
            bench.max,
            get(format!("{base}/healthz"), None),
        )
        .await?;
        report("GET /healthz", &times, wall);
        let (times, wall) = load(
            bench.clients,
            bench.requests,
            bench.max,
            get(
                format!("{base}/api/v1/investigations/{id}"),
                Some(auth.clone()),
            ),
        )
        .await?;
        report("GET /api/v1/investigations/{id}", &times, wall);

        // The engine alone versus the whole HTTP path (auth, session row,
        // lease, stored answer, JSON) for the same fake investigation.
        for clients in [1, bench.clients] {
            let engine_side = {
                let app = app.clone();
                let access = access.clone();
                move |n: usize| {
                    let app = app.clone();
                    let access = access.clone();
                    async move {
                        let mut conversation = Conversation {
                            id: format!("e{n}"),
                            ..Conversation::default()
                        };
                        let outcome = app
                            .engine
                            .ask(
                                &access,
                                &mut conversation,
                                "bench".into(),
                                "why?",
                                &NoEvents,
                            )
                            .await;
                        anyhow::ensure!(
                            outcome.tool_calls as usize == API_CALLS,
                            "unexpected plan: {} calls",
                            outcome.tool_calls
                        );
                        Ok(())
                    }
                }
            };
            let (engine_times, wall) =
                load(clients, bench.investigations, bench.max, engine_side).await?;
            report(
                &format!("engine.ask alone, {clients} client(s)"),
                &engine_times,
                wall,
            );
            let http_side = {
                let client = client.clone();
                let url = format!("{base}/api/v1/investigate");
                let auth = auth.clone();
                move |_n: usize| {
                    let client = client.clone();
                    let url = url.clone();
                    let auth = auth.clone();
                    async move {
                        let response = client
                            .post(&url)
                            .header("authorization", auth)
                            .json(&json!({"query": "why?"}))
                            .send()
                            .await?
                            .error_for_status()?;
                        response.bytes().await?;
                        anyhow::Ok(())
                    }
                }
            };
            let (http_times, wall) =
                load(clients, bench.investigations, bench.max, http_side).await?;
            report(
                &format!("POST /api/v1/investigate, {clients} client(s)"),
                &http_times,
                wall,
            );
            let p = |t: &[Duration], q| super::micros(super::percentile(t, q));
            println!(
                "  => the API adds p50 {:.0} µs, p99 {:.0} µs per investigation at {clients} client(s)",
                p(&http_times, 0.5) - p(&engine_times, 0.5),
                p(&http_times, 0.99) - p(&engine_times, 0.99),
            );
        }

        stop.send(()).ok();
        server.await??;
        Ok(ExitCode::SUCCESS)
    }
}

mod compaction {
    //! Raw evidence bytes (each item's content as JSON, plus its attachments) over the
    //! bytes of the compact views the model is sent.

    use std::io::Write;
    use std::path::Path;
    use std::process::ExitCode;
    use std::time::Instant;

    use investigator::access::Principal;
    use investigator::app::{App, ModelChoice};
    use investigator::config::interpolate::ProcessEnv;
    use investigator::engine::{Budgets, Conversation, NoEvents};
    use investigator::evidence::{compact_for_model, EvidenceItem};
    use investigator::sources::{BuildContext, CallContext, Registry, Sources};
    use serde_json::json;

    /// The causal line of the generated log: rare, and only after the onset.
    const CAUSE: &str = "payment gateway rejected connection: TLS certificate expired";

    fn raw_bytes(item: &EvidenceItem) -> usize {
        let content = item
            .content
            .as_ref()
            .and_then(|c| serde_json::to_vec(c).ok())
            .map_or(0, |v| v.len());
        content + item.attachments.iter().map(|a| a.size).sum::<usize>()
    }

    pub async fn run(demo_dir: &Path, lines: u64) -> anyhow::Result<ExitCode> {
        let budget = Budgets::default().result_chars;
        // 1. The demo incident, through the engine with the offline planner.
        let app = App::build(demo_dir, ":memory:", ModelChoice::Offline, &ProcessEnv).await?;
        let principal = Principal::parse("slack:U0DEMO")?.with_channel_text("slack:C0DEMO")?;
        let mut conversation = Conversation {
            id: "bench".into(),
            ..Conversation::default()
        };
        app.ask(
            &principal,
            &mut conversation,
            "why is checkout erroring?",
            &NoEvents,
        )
        .await
        .map_err(|d| anyhow::anyhow!("{d}"))?;
        let (mut raw, mut sent) = (0usize, 0usize);
        println!("demo incident ({}):", demo_dir.display());
        for item in conversation.evidence.items() {
            let r = raw_bytes(item);
            let s = compact_for_model(item, budget).len();
            println!(
                "  {} {}.{}: raw {r} B, sent {s} B",
                item.id, item.source, item.tool
            );
            raw += r;
            sent += s;
        }
        println!(
            "  total: raw results {raw} B, sent {sent} B, ratio {:.1}x",
            raw as f64 / sent.max(1) as f64
        );
        // The demo's log tools aggregate at the source, so their raw results are
        // already small; what they read is the log files, once per call.
        let mut read = 0u64;
        for item in conversation.evidence.items() {
            if let Some(investigator::config::SourceSpec::Logfile(c)) =
                app.config.source(&item.source).map(|e| &e.spec)
            {
                for p in &c.paths {
                    let full = app.config.dir.join(p);
                    let (dir, name) = (
                        full.parent().map(Path::to_path_buf).unwrap_or_default(),
                        full.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    );
                    for entry in std::fs::read_dir(&dir)?.flatten() {
                        let file = entry.file_name().to_string_lossy().into_owned();
                        if investigator::sources::logfile::wildcard_match(&name, &file) {
                            read += entry.metadata().map(|m| m.len()).unwrap_or(0);
                        }
                    }
                }
            }
        }
        read += conversation
            .evidence
            .items()
            .iter()
            .filter(|i| i.kind != "logfile")
            .map(|i| raw_bytes(i) as u64)
            .sum::<u64>();
        println!(
            "  input the tools read (log bytes scanned + query results): {read} B, ratio {:.0}x",
            read as f64 / sent.max(1) as f64
        );

        // 2. A generated log: normal traffic with a rare causal error after the onset.
        let dir = super::tempfile_dir()?;
        let path = dir.join("big.log");
        let started = Instant::now();
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut causes = 0u64;
        for i in 0..lines {
            let ts = 1_714_557_600 + (i as i64) / 500;
            let at = chrono::DateTime::from_timestamp(ts, (i % 500) as u32 * 2_000_000)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let line = match i % 10 {
                _ if i > lines / 2 && i % 9_973 == 0 => {
                    causes += 1;
                    json!({"ts": at, "level": "ERROR", "service": "checkout", "msg": format!("{CAUSE} (order {i})")})
                }
                0..=5 => {
                    json!({"ts": at, "level": "INFO", "service": "checkout", "msg": format!("GET /cart/{} 200 in {}ms", i % 1000, i % 90)})
                }
                6 | 7 => {
                    json!({"ts": at, "level": "INFO", "service": "checkout", "msg": format!("order {} created for user {} amount {}.{:02}", i, i % 5000, i % 300, i % 100)})
                }
                8 => {
                    json!({"ts": at, "level": "DEBUG", "service": "cart", "msg": format!("cache hit key=cart:{} ttl={}s", i % 7000, i % 60)})
                }
                _ => {
                    json!({"ts": at, "level": "WARN", "service": "checkout", "msg": format!("slow query on orders took {}ms", 200 + i % 800)})
                }
            };
            writeln!(file, "{line}")?;
        }
        file.flush()?;
        drop(file);
        let size = std::fs::metadata(&path)?.len() as usize;
        println!(
            "\ngenerated log: {lines} lines, {size} B, {causes} causal lines ({:.1}s to write)",
            started.elapsed().as_secs_f64()
        );
        let sources_yaml = format!(
            "data_sources:\n  logfiles:\n    - name: big\n      paths: [\"{}\"]\n      format: ndjson\n      max_bytes_scanned: 4294967296\n",
            path.display()
        );
        let squads_yaml =
            "squads:\n  s:\n    members:\n      slack: [U1]\n    grants:\n      - source: big\n";
        let env = std::collections::HashMap::<String, String>::new();
        let config = investigator::config::parse(
            "sources.yaml",
            &sources_yaml,
            "squads.yaml",
            Some(squads_yaml),
            &env,
        )?;
        let sources = Sources::build(&config, &Registry::builtin(), &BuildContext::default());
        let source = sources
            .get("big")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("logfile source not built"))?;
        let access = investigator::access::resolve(&config, &Principal::parse("slack:U1")?)
            .map_err(|d| anyhow::anyhow!("{d}"))?;
        let grant = access
            .grant("big")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no grant"))?;
        let ctx = CallContext {
            timeout: std::time::Duration::from_secs(600),
            ..CallContext::default()
        };
        let started = Instant::now();
        let args = json!({"top": 20});
        let output = source.call("count_by_pattern", &args, &grant, &ctx).await?;
        let scan = started.elapsed();
        let item = EvidenceItem {
            id: "E1".into(),
            source: "big".into(),
            kind: "logfile".into(),
            tool: "count_by_pattern".into(),
            arguments: args,
            statement: output.statement,
            at: chrono::Utc::now(),
            duration_ms: scan.as_millis() as u64,
            content: Some(output.content),
            error: None,
            note: output.note,
            attachments: output.attachments,
        };
        let compact = compact_for_model(&item, budget);
        let kept = compact.contains(CAUSE);
        println!(
            "count_by_pattern (top 20) in {:.1}s: raw log {size} B, sent {} B, ratio {:.0}x, causal pattern kept: {kept}",
            scan.as_secs_f64(),
            compact.len(),
            size as f64 / compact.len().max(1) as f64
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(if kept {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

mod slack_bench {
    use std::path::Path;
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use axum::routing::post;
    use axum::{Json, Router};
    use serde_json::json;

    use investigator::app::{App, ModelChoice};
    use investigator::chat::slack::events::sign;
    use investigator::chat::slack::http::{router, HttpState};
    use investigator::chat::slack::web::WebClient;
    use investigator::chat::slack::{
        MemoryFeedback, MemoryProcessedEvents, MemoryThreads, SlackService,
    };
    use investigator::config::{interpolate::ProcessEnv, Secret};

    use super::percentile;

    async fn listen(app: Router) -> anyhow::Result<std::net::SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(addr)
    }

    pub async fn run(rate: u32, seconds: u64, dir: &Path) -> anyhow::Result<ExitCode> {
        // A Web API that answers everything at once, so only our side is measured.
        let fake = Router::new().route(
            "/api/{method}",
            post(|| async {
                Json(json!({"ok": true, "user_id": "UBENCHBOT", "channel": "C0BENCH", "ts": "1.000001"}))
            }),
        );
        let fake_addr = listen(fake).await?;
        let store =
            std::env::temp_dir().join(format!("investigator-bench-{}.db", uuid::Uuid::new_v4()));
        let app = App::build(
            dir,
            &store.display().to_string(),
            ModelChoice::Offline,
            &ProcessEnv,
        )
        .await
        .context("building the app")?;
        let web = WebClient::new(
            &format!("http://{fake_addr}/api/"),
            Secret::new("xoxb-bench"),
        )?;
        let service = SlackService::start(
            Arc::new(app),
            web,
            Arc::new(MemoryProcessedEvents::new(100_000)),
            Arc::new(MemoryThreads::new(100_000)),
            Arc::new(MemoryFeedback::default()),
        )
        .await?;
        let secret = Secret::new("bench-signing-secret");
        let addr = listen(router(HttpState::new(service, secret.clone()))).await?;
        let url = format!("http://{addr}/slack/events");
        let client = reqwest::Client::new();
        let total = (rate as u64 * seconds) as usize;
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut handles = Vec::with_capacity(total);
        println!("slack ack latency: {total} signed app_mention events at {rate}/s from loopback");
        for i in 0..total {
            ticker.tick().await;
            // An unknown user in an unbound channel: each event reacts, audits the
            // refusal and posts it, after the ack.
            let body = json!({"type": "event_callback", "team_id": "TBENCH", "event_id": format!("EvB{i}"),
                "event": {"type": "app_mention", "user": "U0BENCHUSER", "channel": "C0BENCH",
                          "ts": format!("1700000000.{i:06}"), "text": "<@UBENCHBOT> why?"}})
            .to_string();
            let client = client.clone();
            let url = url.clone();
            let secret = secret.clone();
            handles.push(tokio::spawn(async move {
                let now = chrono::Utc::now().timestamp();
                let signature = sign(&secret, now, body.as_bytes());
                let started = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-slack-request-timestamp", now.to_string())
                    .header("x-slack-signature", signature)
                    .body(body)
                    .send()
                    .await;
                let elapsed = started.elapsed();
                match response {
                    Ok(r) if r.status().is_success() => Some(elapsed),
                    Ok(_) | Err(_) => None,
                }
            }));
        }
        let mut latencies = Vec::with_capacity(total);
        let mut failed = 0;
        for handle in handles {
            match handle.await {
                Ok(Some(d)) => latencies.push(d),
                Ok(None) | Err(_) => failed += 1,
            }
        }
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "acked {} (failed {failed}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            latencies.len(),
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies.last().copied().unwrap_or_default())
        );
        let _ = std::fs::remove_file(&store);
        Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
