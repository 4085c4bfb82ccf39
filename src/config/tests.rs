use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn errors(sources: &str, squads: Option<&str>, vars: &[(&str, &str)]) -> Vec<String> {
    match parse("sources.yaml", sources, "squads.yaml", squads, &env(vars)) {
        Ok(_) => Vec::new(),
        Err(Error::Invalid(errors)) => errors.iter().map(|e| e.to_string()).collect(),
        Err(other) => vec![other.to_string()],
    }
}

/// The brief's example, as it stands.
pub const BRIEF_SOURCES: &str = include_str!("../../config/examples/brief-sources.yaml");

#[test]
fn brief_example_passes_with_its_variables_set() {
    let vars = [("ES_PASSWORD", "pw"), ("DATADOG_API_KEY", "dd")];
    let config = parse(
        "sources.yaml",
        BRIEF_SOURCES,
        "squads.yaml",
        None,
        &env(&vars),
    );
    let config = match config {
        Ok(c) => c,
        Err(e) => panic!("brief example rejected: {e}"),
    };
    let kinds: Vec<&str> = config.sources.iter().map(|s| s.spec.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            "postgresql",
            "mysql",
            "bigquery",
            "elasticsearch",
            "datadog",
            "kubernetes"
        ]
    );
    // Squads named only in sources.yaml exist, with a warning that they have no members.
    assert!(config.squads.contains_key("payment") && config.squads.contains_key("user"));
    assert!(config.warnings.iter().any(|w| w.contains("payment")));
    let Some(SourceSpec::Datadog(dd)) = config.source("datadog").map(|s| &s.spec) else {
        panic!("datadog")
    };
    assert_eq!(
        dd.app_id.as_ref().map(|a| a.items()),
        Some(vec![
            "payment-service".to_string(),
            "checkout-api".to_string()
        ])
    );
}

#[test]
fn brief_example_without_variables_names_each_missing_one_with_line() {
    let errs = errors(BRIEF_SOURCES, None, &[]);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs.iter()
            .any(|e| e.contains("ES_PASSWORD") && e.contains("line ")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("DATADOG_API_KEY")),
        "{errs:?}"
    );
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let sources = r#"
data_sources:
  databases:
    - name: a
      type: postgresql
      host: h
      database: d
      port: 5432
    - name: b
      type: postgresql
      hots: h
      database: d
      port: "not a port"
    - name: a
      type: oracle
      host: h
  elasticsearch:
    hosts: [es:9200]
  kubernetes:
    contexts: [production]
"#;
    let errs = errors(sources, None, &[]);
    let has = |needle: &str| errs.iter().any(|e| e.contains(needle));
    assert!(
        has("data_sources.databases[1].port: expected an integer"),
        "{errs:#?}"
    );
    assert!(
        has("data_sources.databases[1].hots: unknown key `hots`, did you mean `host`?"),
        "{errs:#?}"
    );
    assert!(
        has("data_sources.databases[2].type: unknown value `oracle`"),
        "{errs:#?}"
    );
    assert!(has("data_sources.elasticsearch.hosts[0]"), "{errs:#?}");
    assert!(has("data_sources.kubernetes.kubeconfig_path"), "{errs:#?}");
    assert!(
        has("data_sources.databases[1].host: a postgresql database needs `host`"),
        "{errs:#?}"
    );
}

#[test]
fn unknown_top_level_keys_get_did_you_mean() {
    let errs = errors("data_source:\n  databases: []\n", None, &[]);
    assert!(
        errs.iter()
            .any(|e| e.contains("unknown key `data_source`, did you mean `data_sources`?")),
        "{errs:?}"
    );
    let errs = errors("data_sources:\n  elasticsearh: {}\n", None, &[]);
    assert!(
        errs.iter()
            .any(|e| e.contains("did you mean `elasticsearch`?")),
        "{errs:?}"
    );
}

#[test]
fn broken_yaml_is_a_clear_error() {
    let errs = errors("data_sources:\n  databases: [\n", None, &[]);
    assert!(errs.iter().any(|e| e.contains("invalid YAML")), "{errs:?}");
}

#[test]
fn squads_are_cross_checked() {
    let sources = "data_sources:\n  databases:\n    - {name: db1, type: postgresql, host: h, database: d, squad: pay, schemas: [app]}\n";
    let squads = r#"
squads:
  pay:
    members: {slack: [U1]}
    channels: {slack: [C1]}
    grants:
      - source: db2
      - source: db1
        schemas: [other]
      - source: db1
        indices: [x]
  ops:
    members: {slak: [U2]}
    channels: {slack: [C1]}
"#;
    let errs = errors(sources, Some(squads), &[]);
    let has = |needle: &str| errs.iter().any(|e| e.contains(needle));
    assert!(
        has("squads.pay.grants[0].source: unknown source `db2`, did you mean `db1`?"),
        "{errs:#?}"
    );
    assert!(
        has("squads.pay.grants[1].schemas[0]: schema `other` is not in the `schemas` allowlist"),
        "{errs:#?}"
    );
    assert!(
        has("squads.pay.grants[2].indices: `indices` does not apply to postgresql"),
        "{errs:#?}"
    );
    assert!(
        has("squads.ops.members.slak: unknown key `slak`, did you mean `slack`?"),
        "{errs:#?}"
    );
    assert!(has("already bound to squad"), "{errs:#?}");
}

/// Elasticsearch/OpenSearch grants take `namespaces` (beside `indices` and
/// `services`); other kinds that have no namespaces refuse them, and empty names
/// are errors, each with its path.
#[test]
fn namespace_grants_are_checked_per_kind() {
    let sources = r#"
data_sources:
  elasticsearch:
    name: logs
    hosts: ["http://127.0.0.1:9200"]
    namespace_field: ""
  opensearch:
    name: os
    hosts: ["http://127.0.0.1:9201"]
    namespace_field: k8s.ns
  databases:
    - {name: db1, type: postgresql, host: h, database: d}
  apm:
    datadog:
      api_key: k
"#;
    let squads = r#"
squads:
  pay:
    members: {slack: [U1]}
    grants:
      - source: logs
        namespaces: [payment, ""]
      - source: os
        namespaces: []
      - source: db1
        namespaces: [payment]
      - source: datadog
        namespaces: [payment]
"#;
    let errs = errors(sources, Some(squads), &[]);
    let has = |needle: &str| errs.iter().any(|e| e.contains(needle));
    assert!(
        has("data_sources.elasticsearch.namespace_field: must not be empty"),
        "{errs:#?}"
    );
    assert!(
        has("squads.pay.grants[0].namespaces[1]: must not be empty"),
        "{errs:#?}"
    );
    assert!(
        !errs.iter().any(|e| e.contains("grants[0].namespaces:")),
        "{errs:#?}"
    );
    assert!(
        has("squads.pay.grants[1].namespaces: an empty list grants nothing"),
        "{errs:#?}"
    );
    assert!(
        has("squads.pay.grants[2].namespaces: `namespaces` does not apply to postgresql source `db1`"),
        "{errs:#?}"
    );
    assert!(
        has("squads.pay.grants[3].namespaces: `namespaces` does not apply to datadog source `datadog`"),
        "{errs:#?}"
    );
    assert_eq!(errs.len(), 5, "{errs:#?}");

    let fine = "  pay:\n    members: {slack: [U1]}\n    grants:\n      - {source: logs, namespaces: [payment], services: [checkout]}\n      - {source: os, namespaces: [payment]}\n";
    let errs = errors(
        &sources.replace("namespace_field: \"\"", "namespace_field: ns"),
        Some(&format!("squads:\n{fine}")),
        &[],
    );
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn sqlite_needs_a_path_and_no_host() {
    let errs = errors(
        "data_sources:\n  databases:\n    - {name: l, type: sqlite, host: h}\n",
        None,
        &[],
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("databases[0].path: a sqlite database needs `path`")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("databases[0].host: `host` does not apply")),
        "{errs:?}"
    );
}

#[test]
fn limits_are_range_checked() {
    let errs = errors(
        "data_sources:\n  databases:\n    - {name: l, type: sqlite, path: x.db, max_rows: 0, statement_timeout: 2h}\n",
        None,
        &[],
    );
    assert!(errs.iter().any(|e| e.contains("max_rows")), "{errs:?}");
    assert!(
        errs.iter().any(|e| e.contains("statement_timeout")),
        "{errs:?}"
    );
}

#[test]
fn duplicate_source_names_are_refused() {
    let errs = errors(
        "data_sources:\n  databases:\n    - {name: x, type: sqlite, path: a.db}\n    - {name: x, type: sqlite, path: b.db}\n",
        None,
        &[],
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("source name `x` is already used")),
        "{errs:?}"
    );
}

#[test]
fn secrets_in_config_never_show_in_debug() {
    let sources = "data_sources:\n  databases:\n    - {name: p, type: postgresql, host: h, database: d, password: \"${PG_PW}\"}\n";
    let config = parse(
        "s",
        sources,
        "q",
        None,
        &env(&[("PG_PW", "hunter2-very-secret")]),
    );
    let text = format!("{config:?}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn empty_files_are_handled() {
    let errs = errors("", None, &[]);
    assert!(errs.iter().any(|e| e.contains("data_sources")), "{errs:?}");
    assert!(parse("s", "data_sources: {}\n", "q", Some(""), &env(&[])).is_ok());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The loader never panics, whatever the bytes.
    #[test]
    fn loader_never_panics(text in ".{0,400}") {
        let _ = parse("s", &text, "q", Some(&text), &env(&[]));
    }

    /// Nor on YAML-shaped noise around real keys.
    #[test]
    fn loader_never_panics_on_yamlish(parts in proptest::collection::vec(proptest::prop_oneof![
        proptest::strategy::Just("data_sources:\n".to_string()),
        proptest::strategy::Just("  databases:\n".to_string()),
        proptest::strategy::Just("    - name: x\n".to_string()),
        proptest::strategy::Just("      type: postgresql\n".to_string()),
        proptest::strategy::Just("      port: ".to_string()),
        proptest::strategy::Just("${X:-1}\n".to_string()),
        proptest::strategy::Just("  squads:\n".to_string()),
        proptest::strategy::Just("[".to_string()),
        proptest::strategy::Just("&a ".to_string()),
        proptest::strategy::Just("*a\n".to_string()),
        proptest::strategy::Just("<<: *a\n".to_string()),
        "[a-z_]{1,8}: [a-z0-9]{0,5}\n",
    ], 0..30)) {
        let text: String = parts.concat();
        let _ = parse("s", &text, "q", Some(&text), &env(&[]));
    }
}

#[test]
fn redaction_section_is_typed_and_its_patterns_compiled() {
    let text = "redaction:\n  extra_patterns: ['ACME-\\d+', '(unclosed']\n  disable_default: true\ndata_sources: {}\n";
    let found = errors(text, None, &[]);
    assert!(
        found
            .iter()
            .any(|e| e.contains("redaction.extra_patterns[1]: not a valid regex (syntax error)")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|e| e.contains("disable_default")),
        "{found:?}"
    );
    // The pattern text is never echoed (it may quote what it masks).
    assert!(!found.iter().any(|e| e.contains("unclosed")), "{found:?}");
    let ok = "redaction:\n  extra_patterns: ['ACME-\\d+']\ndata_sources: {}\n";
    let config = parse("sources.yaml", ok, "squads.yaml", None, &env(&[]));
    match config {
        Ok(c) => assert_eq!(c.redaction.extra_patterns, vec!["ACME-\\d+".to_string()]),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn credentials_in_source_urls_are_refused_without_being_echoed() {
    let sources = r#"
data_sources:
  prometheus:
    name: prom
    url: "https://admin:hunter2@prom.internal:9090"
  elasticsearch:
    name: logs
    hosts: ["https://es.internal:9200", "http://elastic:hunter2@es2.internal:9200"]
  apm:
    datadog:
      api_key: k
      base_url: "ftp://dd.internal"
"#;
    let errs = errors(sources, None, &[]);
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs.iter()
            .any(|e| e.contains("url") && e.contains("credentials in the URL")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("hosts[1]") && e.contains("credentials in the URL")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("base_url") && e.contains("must start with http")),
        "{errs:?}"
    );
    assert!(errs.iter().all(|e| !e.contains("hunter2")), "{errs:?}");
}
