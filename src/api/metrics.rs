//! Counters and histograms in Prometheus text format, written by hand: a
//! handful of series does not justify a metrics crate.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// By outcome: complete, partial, failed.
    investigations: BTreeMap<&'static str, u64>,
    /// By (source, outcome).
    tool_calls: BTreeMap<(String, &'static str), u64>,
    investigation_seconds: Histogram,
    tool_seconds: BTreeMap<String, Histogram>,
    /// By (route, status).
    requests: BTreeMap<(&'static str, u16), u64>,
    request_seconds: BTreeMap<&'static str, Histogram>,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: f64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Counters stay meaningful even if a panic interrupted an update.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn investigation(
        &self,
        outcome: &'static str,
        seconds: f64,
        input_tokens: u64,
        output_tokens: u64,
        cost_usd: f64,
    ) {
        let mut inner = self.lock();
        *inner.investigations.entry(outcome).or_default() += 1;
        inner.investigation_seconds.observe(seconds);
        inner.input_tokens += input_tokens;
        inner.output_tokens += output_tokens;
        inner.cost_usd += cost_usd;
    }

    pub fn tool_call(&self, source: &str, ok: bool, seconds: f64) {
        let mut inner = self.lock();
        let outcome = if ok { "ok" } else { "error" };
        *inner
            .tool_calls
            .entry((source.to_string(), outcome))
            .or_default() += 1;
        inner
            .tool_seconds
            .entry(source.to_string())
            .or_default()
            .observe(seconds);
    }

    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        let mut inner = self.lock();
        *inner.requests.entry((route, status)).or_default() += 1;
        inner
            .request_seconds
            .entry(route)
            .or_default()
            .observe(seconds);
    }

    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        out.push_str("# HELP investigator_investigations_total Questions answered, by outcome.\n# TYPE investigator_investigations_total counter\n");
        for (outcome, n) in &inner.investigations {
            let _ = writeln!(
                out,
                "investigator_investigations_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP investigator_investigation_duration_seconds Time to answer one question.\n# TYPE investigator_investigation_duration_seconds histogram\n");
        inner.investigation_seconds.render(
            &mut out,
            "investigator_investigation_duration_seconds",
            "",
        );
        out.push_str("# HELP investigator_tool_calls_total Tool calls, by source and outcome.\n# TYPE investigator_tool_calls_total counter\n");
        for ((source, outcome), n) in &inner.tool_calls {
            let _ = writeln!(
                out,
                "investigator_tool_calls_total{{source=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(source)
            );
        }
        out.push_str("# HELP investigator_tool_call_duration_seconds Tool call latency, by source.\n# TYPE investigator_tool_call_duration_seconds histogram\n");
        for (source, h) in &inner.tool_seconds {
            h.render(
                &mut out,
                "investigator_tool_call_duration_seconds",
                &format!("source=\"{}\"", escape(source)),
            );
        }
        out.push_str("# HELP investigator_http_requests_total API requests, by route and status.\n# TYPE investigator_http_requests_total counter\n");
        for ((route, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "investigator_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP investigator_http_request_duration_seconds API latency, by route.\n# TYPE investigator_http_request_duration_seconds histogram\n");
        for (route, h) in &inner.request_seconds {
            h.render(
                &mut out,
                "investigator_http_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        let _ = writeln!(out, "# HELP investigator_tokens_total Model tokens.\n# TYPE investigator_tokens_total counter\ninvestigator_tokens_total{{direction=\"input\"}} {}\ninvestigator_tokens_total{{direction=\"output\"}} {}", inner.input_tokens, inner.output_tokens);
        let _ = writeln!(out, "# HELP investigator_cost_usd_total Model cost in US dollars.\n# TYPE investigator_cost_usd_total counter\ninvestigator_cost_usd_total {}", inner.cost_usd);
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
