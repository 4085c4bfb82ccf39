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
