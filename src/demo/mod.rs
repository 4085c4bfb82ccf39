//! The demo dataset: a synthetic incident, generated deterministically.
//!
//! On 2026-01-15 at 10:12 UTC payment-service v2.14.0 rolls out and, through a
//! shared-config change, lowers its database pool `maxPoolSize` from 50 to 5. From
//! about 10:14 the pool is exhausted: payment-service times out waiting for
//! connections (`HikariPool-1 - Connection is not available …`) or rejects requests,
//! checkout-api fails checkouts (`upstream payment-service returned 503`, `payment
//! authorization timeout`), and latency climbs until the data ends at 11:00. Around
//! it: normal traffic from five services, a Redis failover with a cache miss burst at
//! 09:30 that resolves, slow inventory queries, a harmless user-service deploy at
//! 10:05, stray SMTP errors, so the cause is not the only anomaly.
//!
//! `generate` writes the log files, the SQLite database and the configuration into a
//! directory (`config/demo` in the repository, where the output is committed).

mod db;
mod sim;

use std::fmt;
use std::path::{Path, PathBuf};

pub use sim::{simulate, Dataset};

/// The demo's `sources.yaml`, `squads.yaml` and README, written with the data so the
/// directory is always consistent.
pub const SOURCES_YAML: &str = include_str!("sources.yaml");
pub const SQUADS_YAML: &str = include_str!("squads.yaml");
pub const README_MD: &str = include_str!("README.md");

pub const APP_LOG: &str = "logs/app.ndjson";
pub const GATEWAY_LOG: &str = "logs/gateway.log";
pub const IDENTITY_LOG: &str = "logs/identity/auth.log";
pub const DATABASE: &str = "demo.db";

/// What `generate` wrote.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub dir: PathBuf,
    pub seed: u64,
    /// Relative path and size in bytes of every file written.
    pub files: Vec<(String, u64)>,
    pub app_log_lines: usize,
    pub gateway_log_lines: usize,
    pub identity_log_lines: usize,
    pub orders: usize,
    pub payments: usize,
    pub deploys: usize,
    pub config_changes: usize,
    pub traffic_rows: usize,
}

impl fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "demo dataset written to {} (seed {})",
            self.dir.display(),
            self.seed
        )?;
        for (path, size) in &self.files {
            writeln!(f, "  {path:<24} {:>10} bytes", size)?;
        }
        writeln!(
            f,
            "  log lines: {} app, {} gateway, {} identity",
            self.app_log_lines, self.gateway_log_lines, self.identity_log_lines
        )?;
        write!(
            f,
            "  rows: {} orders, {} payments, {} deploys, {} config changes, {} traffic_minutely",
            self.orders, self.payments, self.deploys, self.config_changes, self.traffic_rows
        )
    }
}

/// Writes the demo dataset into `dir`. The log files are byte-identical for a given
/// seed; the SQLite file's bytes may differ between runs, its rows do not.
pub fn generate(dir: &Path, seed: u64) -> std::io::Result<DemoSummary> {
    let data = simulate(seed);
    std::fs::create_dir_all(dir.join("logs/identity"))?;
    let text_files: [(&str, &str); 6] = [
        (APP_LOG, &data.app_log),
        (GATEWAY_LOG, &data.gateway_log),
        (IDENTITY_LOG, &data.identity_log),
        ("sources.yaml", SOURCES_YAML),
        ("squads.yaml", SQUADS_YAML),
        ("README.md", README_MD),
    ];
    let mut files = Vec::new();
    for (path, body) in text_files {
        std::fs::write(dir.join(path), body)?;
        files.push((path.to_string(), body.len() as u64));
    }
    let db_path = dir.join(DATABASE);
    db::write(&db_path, &data)?;
    files.push((DATABASE.to_string(), std::fs::metadata(&db_path)?.len()));
    tracing::info!(dir = %dir.display(), seed, "demo dataset generated");
    Ok(DemoSummary {
        dir: dir.to_path_buf(),
        seed,
        files,
        app_log_lines: data.app_lines,
        gateway_log_lines: data.gateway_lines,
        identity_log_lines: data.identity_lines,
        orders: data.orders.len(),
        payments: data.payments.len(),
        deploys: data.deploys.len(),
        config_changes: data.config_changes.len(),
        traffic_rows: data.traffic.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_the_same_log_bytes() {
        let (Ok(a), Ok(b)) = (tempfile::tempdir(), tempfile::tempdir()) else {
            panic!("tempdir");
        };
        let first = generate(a.path(), 42).expect("generate a");
        let second = generate(b.path(), 42).expect("generate b");
        for path in [APP_LOG, GATEWAY_LOG, IDENTITY_LOG] {
            let x = std::fs::read(a.path().join(path)).expect("read a");
            let y = std::fs::read(b.path().join(path)).expect("read b");
            assert!(!x.is_empty(), "{path} is empty");
            assert!(x == y, "{path} differs between two runs with the same seed");
        }
        assert_eq!(first.orders, second.orders);
        let other = simulate(7);
        assert_ne!(
            other.app_log,
            simulate(42).app_log,
            "the seed should matter"
        );
    }

    #[test]
    fn same_seed_gives_the_same_rows() {
        let (x, y) = (simulate(42), simulate(42));
        assert_eq!(x.orders, y.orders);
        assert_eq!(x.payments, y.payments);
        assert_eq!(x.traffic, y.traffic);
    }

    #[test]
    fn committed_demo_matches_the_generator() {
        // The committed copies under config/demo must be what `generate` writes, so
        // the demo works offline and regenerating changes nothing.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo");
        for (path, body) in [
            ("sources.yaml", SOURCES_YAML),
            ("squads.yaml", SQUADS_YAML),
            ("README.md", README_MD),
        ] {
            let committed = std::fs::read_to_string(dir.join(path)).unwrap_or_default();
            assert!(
                committed == body,
                "config/demo/{path} differs from src/demo/{path}; run `investigator demo generate`"
            );
        }
        let data = simulate(42);
        let committed = std::fs::read(dir.join(APP_LOG)).unwrap_or_default();
        assert!(
            committed == data.app_log.as_bytes(),
            "config/demo/{APP_LOG} is not the seed-42 output; run `investigator demo generate`"
        );
    }
}
