//! `sources.yaml`: the brief's `data_sources:` shape, plus what a real deployment needs.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::duration::HumanDuration;
use super::secret::SecretRef;

/// Sections are decoded one by one (see `config::load`), so this struct is only the
/// list of accepted top-level keys under `data_sources:`.
pub const DATA_SOURCES_KEYS: &[&str] = &[
    "bigquery",
    "databases",
    "elasticsearch",
    "opensearch",
    "apm",
    "kubernetes",
    "prometheus",
    "logfiles",
];

#[derive(Debug, Clone, Default)]
pub struct DataSources {
    pub bigquery: Option<BigQueryConfig>,
    pub databases: Vec<DatabaseConfig>,
    pub elasticsearch: Option<ElasticsearchConfig>,
    pub opensearch: Option<ElasticsearchConfig>,
    pub apm: Option<ApmConfig>,
    pub kubernetes: Option<KubernetesConfig>,
    pub prometheus: Option<PrometheusConfig>,
    pub logfiles: Vec<LogfileConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    Postgresql,
    Mysql,
    /// MariaDB speaks the MySQL protocol; the name is accepted for clarity.
    Mariadb,
    Sqlite,
}

impl DatabaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseKind::Postgresql => "postgresql",
            DatabaseKind::Mysql => "mysql",
            DatabaseKind::Mariadb => "mariadb",
            DatabaseKind::Sqlite => "sqlite",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: DatabaseKind,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub database: Option<String>,
    /// SQLite file path.
    #[serde(default)]
    pub path: Option<String>,
    /// Owning squad: it may use this database without a grant.
    #[serde(default)]
    pub squad: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretRef>,
    #[serde(default)]
    pub sslmode: Option<SslMode>,
    /// CA bundle for `verify-ca` / `verify-full`.
    #[serde(default)]
    pub ssl_root_cert: Option<String>,
    /// Schemas (PostgreSQL) or databases (MySQL) anyone may ever read here. Defaults
    /// to `public` on PostgreSQL, the configured `database` on MySQL, `main` on SQLite.
    #[serde(default)]
    pub schemas: Option<Vec<String>>,
    #[serde(default)]
    pub max_rows: Option<u32>,
    #[serde(default)]
    pub max_bytes: Option<u64>,
    #[serde(default)]
    pub statement_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub connect_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub max_connections: Option<u32>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BigQueryConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub project_id: String,
    #[serde(default)]
    pub credentials_path: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub datasets: Option<Vec<String>>,
    #[serde(default)]
    pub max_bytes_billed: Option<u64>,
    #[serde(default)]
    pub job_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub squad: Option<String>,
}

/// Index patterns by purpose (`logs: "logs-*"`), or a plain list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum IndexPatterns {
    Named(BTreeMap<String, String>),
    List(Vec<String>),
}

impl IndexPatterns {
    pub fn patterns(&self) -> Vec<String> {
        match self {
            IndexPatterns::Named(map) => map.values().cloned().collect(),
            IndexPatterns::List(list) => list.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub hosts: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretRef>,
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    #[serde(default)]
    pub bearer_token: Option<SecretRef>,
    #[serde(default)]
    pub ca_cert: Option<String>,
    #[serde(default)]
    pub indices: Option<IndexPatterns>,
    #[serde(default)]
    pub service_field: Option<String>,
    /// Field that a `namespaces` grant narrows by (default `kubernetes.namespace`).
    #[serde(default)]
    pub namespace_field: Option<String>,
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// Default `log.level` (ECS).
    #[serde(default)]
    pub level_field: Option<String>,
    /// Default `message`.
    #[serde(default)]
    pub message_field: Option<String>,
    #[serde(default)]
    pub max_hits: Option<u32>,
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    #[serde(default)]
    pub squad: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApmConfig {
    #[serde(default)]
    pub datadog: Option<DatadogConfig>,
    #[serde(default)]
    pub newrelic: Option<NewRelicConfig>,
}

/// The brief writes `app_id: payment-service,checkout-api`; a YAML list works too.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CommaList {
    Text(String),
    List(Vec<String>),
}

impl CommaList {
    pub fn items(&self) -> Vec<String> {
        match self {
            CommaList::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            CommaList::List(list) => list.clone(),
        }
    }
}

/// Sites Datadog runs; the API host is `api.<site>`.
pub const DATADOG_SITES: [&str; 6] = [
    "datadoghq.com",
    "datadoghq.eu",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "ap1.datadoghq.com",
    "ddog-gov.com",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatadogConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub api_key: SecretRef,
    #[serde(default)]
    pub app_key: Option<SecretRef>,
    /// Services this instance covers.
    #[serde(default)]
    pub app_id: Option<CommaList>,
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub squad: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRelicConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub api_key: SecretRef,
    pub account_id: u64,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub app_id: Option<CommaList>,
    #[serde(default)]
    pub squad: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub kubeconfig_path: Option<String>,
    #[serde(default)]
    pub in_cluster: bool,
    #[serde(default)]
    pub contexts: Vec<String>,
    #[serde(default)]
    pub squad: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub url: String,
    #[serde(default)]
    pub bearer_token: Option<SecretRef>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretRef>,
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    #[serde(default)]
    pub squad: Option<String>,
    /// Label that a `namespaces` grant narrows by (default `namespace`).
    #[serde(default)]
    pub namespace_label: Option<String>,
    /// Label that a `services` grant narrows by (default `service`).
    #[serde(default)]
    pub service_label: Option<String>,
}

/// Values of a logfile source's `format`.
pub const LOGFILE_FORMATS: &[&str] = &["auto", "ndjson", "text"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogfileConfig {
    pub name: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Files, or patterns with `*` in the file name part; relative to the
    /// configuration directory.
    pub paths: Vec<String>,
    /// `auto` (default: a line starting with `{` is NDJSON, else text), `ndjson`, `text`.
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub squad: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// NDJSON field names; by default the usual ones are tried in order.
    #[serde(default)]
    pub timestamp_field: Option<String>,
    #[serde(default)]
    pub message_field: Option<String>,
    #[serde(default)]
    pub level_field: Option<String>,
    #[serde(default)]
    pub service_field: Option<String>,
    /// Most bytes one tool call reads (default 512 MiB).
    #[serde(default)]
    pub max_bytes_scanned: Option<u64>,
}

/// The top-level `redaction:` section: what is masked in evidence before it reaches
/// the model, a chat or an exported file (see `guard::redact`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionConfig {
    /// More regexes to mask. A named group `secret` limits the mask to that group.
    #[serde(default)]
    pub extra_patterns: Vec<String>,
    /// Use only `extra_patterns`.
    #[serde(default)]
    pub disable_defaults: bool,
}
