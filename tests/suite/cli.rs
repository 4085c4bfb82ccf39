//! The `investigator` binary: exit codes, one-line refusals, output formats.

use std::path::Path;
use std::process::{Command, Output};

use sqlx::Executor;

use super::common::{pg_url, unique};

fn investigator(config: &Path, store: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_investigator"));
    cmd.arg("--config")
        .arg(config)
        .arg("--store")
        .arg(store)
        .args(args);
    cmd.env_remove("INVESTIGATOR_MASTER_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run investigator")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).expect("write config");
}

#[test]
fn brief_example_passes_check_no_connect_and_reports_later_kinds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/brief-sources.yaml"
    ))
    .expect("example");
    write(dir.path(), "sources.yaml", &example);
    let store = dir.path().join("s.db");
    let out = investigator(
        dir.path(),
        &store,
        &["check", "--no-connect"],
        &[("ES_PASSWORD", "x"), ("DATADOG_API_KEY", "y")],
    );
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    for name in [
        "squad_payment_prod",
        "squad_user_prod",
        "bigquery",
        "elasticsearch",
        "datadog",
        "kubernetes",
    ] {
        assert!(stdout.contains(name), "{name} missing from:\n{stdout}");
    }
    // Every kind the brief names has a source now.
    assert!(!stdout.contains("not yet available"), "{stdout}");
    // Without the variables: non-zero, each named with file and line.
    let out = investigator(dir.path(), &store, &["check", "--no-connect"], &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("ES_PASSWORD")
            && stderr.contains("DATADOG_API_KEY")
            && stderr.contains("sources.yaml:"),
        "{stderr}"
    );
}

#[test]
fn broken_config_reports_all_problems_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "sources.yaml", "data_sources:\n  databases:\n    - {name: a, type: postgres, host: h, database: d}\n    - {name: b, type: mysql, hots: h, database: d, port: x}\n");
    let out = investigator(
        dir.path(),
        &dir.path().join("s.db"),
        &["check", "--no-connect"],
        &[],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("databases[0].type: unknown value `postgres`, did you mean `postgresql`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("databases[1].hots: unknown key `hots`, did you mean `host`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("databases[1].port: expected an integer"),
        "{stderr}"
    );
    let missing = investigator(
        &dir.path().join("nope"),
        &dir.path().join("s.db"),
        &["check"],
        &[],
    );
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("sources.yaml"),
        "{}",
        text(&missing.stderr)
    );
}

#[tokio::test]
async fn query_runs_through_the_guard_with_formats_and_one_line_refusals() {
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg_url())
        .await
        .expect("postgres");
    let schema = unique("cli");
    admin
        .execute(format!("CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int, name text); INSERT INTO {schema}.t VALUES (1, 'a,b'), (2, NULL);").as_str())
        .await
        .expect("setup");
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "sources.yaml",
        &format!("data_sources:\n  databases:\n    - {{name: db, type: postgresql, host: 127.0.0.1, port: 5432, database: test, username: postgres, squad: pay, schemas: [{schema}]}}\n    - {{name: down, type: postgresql, host: 127.0.0.1, port: 1, database: test, squad: pay, connect_timeout: 1s}}\n"),
    );
    write(dir.path(), "squads.yaml", "squads:\n  pay:\n    members: {slack: [U1]}\n    channels: {slack: [C1]}\n  ops:\n    members: {slack: [U2]}\n    channels: {slack: [C2]}\n");
    let store = dir.path().join("audit.db");
    let cfg = dir.path();

    let out = investigator(
        cfg,
        &store,
        &[
            "query",
            "db",
            "SELECT id, name FROM t ORDER BY id",
            "--as",
            "slack:U1",
            "--format",
            "csv",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "id,name\n1,\"a,b\"\n2,\n");

    let out = investigator(
        cfg,
        &store,
        &[
            "query",
            "db",
            "SELECT count(*) AS n FROM t",
            "--as",
            "slack:U1",
            "--format",
            "json",
        ],
        &[],
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(body["rows"][0]["n"], serde_json::json!(2));

    let out = investigator(
        cfg,
        &store,
        &[
            "query",
            "db",
            "SELECT * FROM t",
            "--as",
            "slack:U1",
            "--channel",
            "slack:C1",
        ],
        &[],
    );
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("2 row(s) shown"),
        "{}",
        text(&out.stdout)
    );

    for (sql, who) in [
        ("DELETE FROM t", "slack:U1"),
        ("SELECT * FROM t; DROP TABLE t", "slack:U1"),
        ("SELECT * FROM pg_shadow", "slack:U1"),
        ("SELECT 1", "slack:U2"),
        ("SELECT 1", "slack:NOBODY"),
    ] {
        let out = investigator(cfg, &store, &["query", "db", sql, "--as", who], &[]);
        assert!(!out.status.success(), "{sql} as {who} succeeded");
        let stderr = text(&out.stderr);
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "one line expected: {stderr:?}"
        );
        assert!(out.stdout.is_empty());
    }
    // A member in another squad's channel is refused.
    let out = investigator(
        cfg,
        &store,
        &[
            "query",
            "db",
            "SELECT 1",
            "--as",
            "slack:U1",
            "--channel",
            "slack:C2",
        ],
        &[],
    );
    assert!(!out.status.success());

    let out = investigator(cfg, &store, &["sources", "--as", "slack:U1"], &[]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("owned by squad pay") && stdout.contains(&schema),
        "{stdout}"
    );

    // check connects: one source is down, so it fails and says which.
    let out = investigator(cfg, &store, &["check"], &[]);
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("db ") && l.contains("ok")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("down") && l.contains("FAILED")),
        "{stdout}"
    );

    let out = investigator(cfg, &store, &["audit", "verify"], &[]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("9 entries"),
        "{}",
        text(&out.stdout)
    );
    let out = investigator(cfg, &store, &["audit", "tail", "-n", "3"], &[]);
    assert_eq!(text(&out.stdout).lines().count(), 3);

    let _ = admin
        .execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
        .await;
}

#[test]
fn secrets_encrypt_round_trips_through_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s.db");
    let key = investigator(dir.path(), &store, &["secrets", "keygen"], &[]);
    assert!(key.status.success());
    let key = text(&key.stdout).trim().to_string();
    let enc = investigator(
        dir.path(),
        &store,
        &["secrets", "encrypt", "--value", "pg-password-123"],
        &[("INVESTIGATOR_MASTER_KEY", &key)],
    );
    assert!(enc.status.success(), "{}", text(&enc.stderr));
    let enc = text(&enc.stdout).trim().to_string();
    assert!(enc.starts_with("enc:") && !enc.contains("pg-password-123"));
    write(
        dir.path(),
        "sources.yaml",
        &format!("data_sources:\n  databases:\n    - {{name: db, type: postgresql, host: 127.0.0.1, database: test, password: \"{enc}\", squad: x}}\n"),
    );
    let out = investigator(dir.path(), &store, &["check", "--no-connect"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let no_key = investigator(
        dir.path(),
        &store,
        &["secrets", "encrypt", "--value", "x"],
        &[],
    );
    assert!(!no_key.status.success());
}

/// `investigator logs templates <file>`: one `<id>\t<template>` line per input
/// line, the same id for lines of one event; a missing file is one error line.
#[test]
fn logs_templates_writes_one_line_per_input_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating\r\n\
081109 203807 222 INFO dfs.DataNode$PacketResponder: PacketResponder 0 for block blk_-6952295868487656571 terminating\n\
081109 204005 35 INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.251.73.220:50010 is added to blk_7128370237687728475 size 67108864\n\
\n\
081109 204015 308 INFO dfs.DataNode$PacketResponder: PacketResponder 2 for block blk_8229193803249955061 terminating";
    write(dir.path(), "hdfs.log", log);
    let out = investigator(
        dir.path(),
        &dir.path().join("s.db"),
        &[
            "logs",
            "templates",
            &dir.path().join("hdfs.log").display().to_string(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<(&str, &str)> = stdout
        .lines()
        .map(|l| l.split_once('\t').expect("id\ttemplate"))
        .collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert_eq!(lines[0], lines[1]);
    assert_eq!(lines[0], lines[4]);
    assert_ne!(lines[0].0, lines[2].0);
    assert!(
        lines[0]
            .1
            .contains("PacketResponder <*> for block blk_<*> terminating"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("templates: lines=5"),
        "{}",
        text(&out.stderr)
    );

    let single = investigator(
        dir.path(),
        &dir.path().join("s.db"),
        &[
            "logs",
            "templates",
            "--single-thread",
            &dir.path().join("hdfs.log").display().to_string(),
        ],
        &[],
    );
    assert_eq!(text(&single.stdout), stdout);

    // Mined three times in one process (a benchmark's protocol): the output once, the
    // fastest parse time first on stderr and the first run's beside it.
    let repeated = investigator(
        dir.path(),
        &dir.path().join("s.db"),
        &[
            "logs",
            "templates",
            "--repeat",
            "3",
            &dir.path().join("hdfs.log").display().to_string(),
        ],
        &[],
    );
    assert!(repeated.status.success(), "{}", text(&repeated.stderr));
    assert_eq!(text(&repeated.stdout), stdout);
    let err = text(&repeated.stderr);
    let seconds = |key: &str| -> f64 {
        let at = err.find(key).unwrap_or_else(|| panic!("{key} in {err}"));
        err[at + key.len()..]
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} value in {err}"))
    };
    assert!(err.contains("(fastest of 3 runs)"), "{err}");
    assert!(
        seconds(" parse_seconds=") <= seconds("first_run_seconds="),
        "{err}"
    );
    let zero = investigator(
        dir.path(),
        &dir.path().join("s.db"),
        &[
            "logs",
            "templates",
            "--repeat",
            "0",
            &dir.path().join("hdfs.log").display().to_string(),
        ],
        &[],
    );
    assert!(!zero.status.success());

    let missing = investigator(
        dir.path(),
        &dir.path().join("s.db"),
        &[
            "logs",
            "templates",
            &dir.path().join("nope.log").display().to_string(),
        ],
        &[],
    );
    assert!(!missing.status.success());
    let err = text(&missing.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nope.log"), "{err}");
}
