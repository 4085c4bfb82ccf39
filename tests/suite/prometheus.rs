//! The Prometheus source against a real Prometheus (Debian's package, installed by
//! `.ci/run`), loaded with two hours of history through `promtool tsdb
//! create-blocks-from openmetrics`: one series steps up halfway, another belongs to a
//! namespace the squad may not see.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use investigator::engine::CallError;
use investigator::evidence::{compact_for_model, metrics, Content};
use investigator::sources::{CallContext, ToolOutput};
use serde_json::{json, Value};

use super::common::{evidence_of, parse_config, Harness};

/// Stops the Prometheus this test started when the test ends, however it ends.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have(binary: &str) -> bool {
    Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// OpenMetrics text: `errors_per_second` for payments (0.5 then 8 from `step_at`)
/// and identity (a flat 100), one sample a minute.
fn history(from: i64, to: i64, step_at: i64) -> String {
    let mut text = String::from(
        "# HELP errors_per_second Errors per second.\n# TYPE errors_per_second gauge\n",
    );
    for (namespace, service) in [("payments", "checkout"), ("identity", "login")] {
        let mut t = from;
        let mut i = 0u64;
        while t <= to {
            // Deterministic jitter so the series has noise.
            let jitter = ((i * 37) % 11) as f64 / 100.0;
            let value = match namespace {
                "payments" if t >= step_at => 8.0 + jitter,
                "payments" => 0.5 + jitter,
                _ => 100.0,
            };
            let _ = writeln!(
                text,
                "errors_per_second{{namespace=\"{namespace}\",service=\"{service}\"}} {value} {t}"
            );
            t += 60;
            i += 1;
        }
    }
    text.push_str("# EOF\n");
    text
}

fn start_prometheus(from: i64, to: i64, step_at: i64) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("history.om");
    std::fs::write(&input, history(from, to, step_at)).expect("write history");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").expect("config");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let child = spawn(&config, &data, port);
    Server {
        child,
        port,
        _dir: dir,
    }
}

fn spawn(config: &Path, data: &Path, port: u16) -> Child {
    Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=100y")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts")
}

async fn wait_ready(port: u16) {
    let client = reqwest::Client::new();
    for _ in 0..120 {
        let ready = client
            .get(format!("http://127.0.0.1:{port}/-/ready"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("prometheus on port {port} did not become ready in 30s");
}

const SQUADS: &str = r#"
squads:
  payment:
    members:
      slack: [U_PAY]
    grants:
      - source: metrics
        namespaces: [payments]
  ops:
    members:
      slack: [U_OPS]
    grants:
      - source: metrics
"#;

async fn call(h: &Harness, user: &str, tool: &str, args: Value) -> Result<ToolOutput, CallError> {
    h.gate
        .call(
            &h.access(user),
            "metrics",
            tool,
            &args,
            &CallContext::default(),
        )
        .await
        .result
}

fn table_column(output: &ToolOutput) -> Vec<String> {
    match &output.content {
        Content::Table(t) => t
            .rows
            .iter()
            .map(|r| r[0].as_str().unwrap_or_default().to_string())
            .collect(),
        other => panic!("expected a table, got {other:?}"),
    }
}

#[tokio::test]
async fn real_prometheus_summaries_scoping_and_charts() {
    if !have("prometheus") || !have("promtool") {
        eprintln!(
            "\n\n*** SKIPPED real_prometheus_summaries_scoping_and_charts: `prometheus`/`promtool` not installed \
             (CI installs them: apt-get install -y prometheus) ***\n"
        );
        return;
    }
    // Recent data: Prometheus serves backfilled blocks within its retention.
    let now = Utc::now().timestamp() / 60 * 60;
    let (from, to, step_at) = (now - 3 * 3600, now - 3600, now - 2 * 3600);
    let server = start_prometheus(from, to, step_at);
    wait_ready(server.port).await;
    let sources = format!(
        "data_sources:\n  prometheus:\n    name: metrics\n    url: http://127.0.0.1:{}/\n    timeout: 20s\n",
        server.port
    );
    let h = Harness::new(parse_config(&sources, SQUADS)).await;

    let health = h.source("metrics").health().await;
    assert!(health.ok, "{health:?}");
    assert!(health.detail.starts_with("Prometheus 2."), "{health:?}");

    // Range query: the payments squad sees only its namespace, whatever it asks.
    let args =
        json!({"query": "errors_per_second", "start": from.to_string(), "end": to.to_string()});
    let output = call(&h, "U_PAY", "query_range", args.clone())
        .await
        .expect("query_range");
    assert!(
        output
            .statement
            .contains(r#"errors_per_second{namespace=~"^(?:payments)$"}"#),
        "{}",
        output.statement
    );
    let Content::Json(value) = &output.content else {
        panic!("expected series JSON");
    };
    let series = metrics::series_from_json(value).expect("series shape");
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(
        series[0].labels.get("namespace").map(String::as_str),
        Some("payments")
    );
    let summary = metrics::summarize(&series[0]);
    assert_eq!(summary.change_points.len(), 1, "{summary:?}");
    let change = &summary.change_points[0];
    assert!(
        (change.at - step_at).abs() <= 120,
        "change at {} vs {step_at}",
        change.at
    );
    assert!(
        change.before_mean < 1.0 && change.after_mean > 7.5,
        "{change:?}"
    );
    // A link to the same graph in Prometheus' own UI.
    let note = output.note.as_deref().unwrap_or("");
    assert!(
        note.contains("open in Prometheus: http://") && note.contains("/graph?g0.expr="),
        "{note}"
    );
    assert_eq!(output.attachments.len(), 1);
    let chart = &output.attachments[0];
    assert_eq!(chart.media_type, "image/png");
    assert_eq!(&chart.bytes[..4], b"\x89PNG");
    assert!(
        chart.description.contains("payments"),
        "{}",
        chart.description
    );

    // The model's view: the summary with the change, not the points.
    let item = evidence_of("metrics", "prometheus", "query_range", args, &output);
    let compact = compact_for_model(&item, 8_000);
    assert!(compact.contains("change at"), "{compact}");
    assert!(compact.contains("chart.png"), "{compact}");
    let raw = serde_json::to_string(&output.content).unwrap_or_default();
    assert!(
        compact.len() * 5 < raw.len(),
        "{} vs {}",
        compact.len(),
        raw.len()
    );

    // A matcher naming another namespace is ANDed with the grant's: nothing.
    let output = call(
        &h,
        "U_PAY",
        "query",
        json!({"query": r#"sum(errors_per_second{namespace="identity"})"#, "time": to.to_string()}),
    )
    .await
    .expect("instant query");
    let Content::Table(table) = &output.content else {
        panic!("table")
    };
    assert!(table.rows.is_empty(), "{:?}", table.rows);

    // An unscoped squad sees both namespaces.
    let output = call(
        &h,
        "U_OPS",
        "query",
        json!({"query": "count(errors_per_second)", "time": to.to_string()}),
    )
    .await
    .expect("instant query");
    let Content::Table(table) = &output.content else {
        panic!("table")
    };
    assert_eq!(table.rows[0][1], json!(2.0));

    // Discovery is scoped too.
    let window = json!({"start": from.to_string(), "end": to.to_string()});
    let mut args = window.clone();
    args["label"] = json!("namespace");
    let values = call(&h, "U_PAY", "label_values", args)
        .await
        .expect("label_values");
    assert_eq!(table_column(&values), vec!["payments".to_string()]);
    let mut args = window.clone();
    args["match"] = json!("{__name__=~\"errors.*\"}");
    let listed = call(&h, "U_PAY", "series", args).await.expect("series");
    let listed = table_column(&listed);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].contains("payments"), "{listed:?}");
    let labels = call(&h, "U_PAY", "labels", window).await.expect("labels");
    assert!(table_column(&labels).contains(&"service".to_string()));

    // Mistakes come back as errors the model can act on.
    let err = call(
        &h,
        "U_PAY",
        "query",
        json!({"query": "rate(errors_per_second)"}),
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("range vector"), "{err}");
    let err = call(&h, "U_PAY", "query", json!({"query": "up; drop"}))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("not understood"), "{err}");

    let described = h
        .source("metrics")
        .describe(
            &h.access("U_PAY").grants["metrics"],
            &CallContext::default(),
        )
        .await;
    // Nothing was scraped in the last hour: the backfilled history ends an hour ago.
    assert!(described.is_ok(), "{described:?}");
}
