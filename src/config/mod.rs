//! Configuration: a directory with `sources.yaml` and `squads.yaml`.
//!
//! Loading runs in stages that each report every problem they find: `${VAR}`
//! interpolation on the raw text, YAML parsing, typed decoding section by section,
//! then cross-checks (names, squads, grants). None of it does network IO; secrets
//! stay unresolved references until a source is built.

pub mod decode;
pub mod duration;
pub mod interpolate;
pub mod secret;
pub mod sources;
pub mod squads;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use duration::HumanDuration;
pub use secret::{MasterKey, Secret, SecretRef};
pub use sources::*;
pub use squads::*;

use decode::{decode_all, did_you_mean};
use interpolate::Env;

pub const SOURCES_FILE: &str = "sources.yaml";
pub const SQUADS_FILE: &str = "squads.yaml";

/// One problem in the configuration, located by file and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration has {} problem(s):\n{}", .0.len(), join_lines(.0))]
    Invalid(Vec<ConfigError>),
}

pub type Result<T> = std::result::Result<T, Error>;

fn join_lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A configured source instance, whatever its kind.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    pub name: String,
    /// Owning squad, which may use it without a grant.
    pub owner: Option<String>,
    pub enabled: bool,
    /// Where it was declared, for messages (`data_sources.databases[1]`).
    pub path: String,
    pub spec: SourceSpec,
}

#[derive(Debug, Clone)]
pub enum SourceSpec {
    Database(DatabaseConfig),
    BigQuery(BigQueryConfig),
    Elasticsearch(ElasticsearchConfig),
    OpenSearch(ElasticsearchConfig),
    Datadog(DatadogConfig),
    NewRelic(NewRelicConfig),
    Kubernetes(KubernetesConfig),
    Prometheus(PrometheusConfig),
    Logfile(LogfileConfig),
}

impl SourceSpec {
    /// The registry's kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Database(db) => match db.kind {
                DatabaseKind::Postgresql => "postgresql",
                DatabaseKind::Mysql | DatabaseKind::Mariadb => "mysql",
                DatabaseKind::Sqlite => "sqlite",
            },
            SourceSpec::BigQuery(_) => "bigquery",
            SourceSpec::Elasticsearch(_) => "elasticsearch",
            SourceSpec::OpenSearch(_) => "opensearch",
            SourceSpec::Datadog(_) => "datadog",
            SourceSpec::NewRelic(_) => "newrelic",
            SourceSpec::Kubernetes(_) => "kubernetes",
            SourceSpec::Prometheus(_) => "prometheus",
            SourceSpec::Logfile(_) => "logfile",
        }
    }

    /// Which grant scope keys mean something for this kind.
    pub fn scope_keys(&self) -> &'static [&'static str] {
        match self {
            SourceSpec::Database(_) => &["schemas"],
            SourceSpec::BigQuery(_) => &["datasets"],
            SourceSpec::Elasticsearch(_) | SourceSpec::OpenSearch(_) => {
                &["indices", "namespaces", "services"]
            }
            SourceSpec::Datadog(_) | SourceSpec::NewRelic(_) => &["services"],
            SourceSpec::Kubernetes(_) => &["namespaces", "contexts"],
            SourceSpec::Prometheus(_) => &["namespaces", "services"],
            SourceSpec::Logfile(_) => &["services"],
        }
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub sources: Vec<SourceEntry>,
    pub squads: BTreeMap<String, SquadConfig>,
    /// Masking of secrets in evidence (top-level `redaction:` in sources.yaml).
    pub redaction: RedactionConfig,
    /// Things that are allowed but probably not intended.
    pub warnings: Vec<String>,
}

impl Config {
    pub fn source(&self, name: &str) -> Option<&SourceEntry> {
        self.sources.iter().find(|s| s.name == name)
    }

    pub fn source_names(&self) -> Vec<String> {
        self.sources.iter().map(|s| s.name.clone()).collect()
    }
}

/// Reads, interpolates, parses and validates the configuration directory.
pub fn load(dir: &Path, env: &dyn Env) -> Result<Config> {
    let sources_path = dir.join(SOURCES_FILE);
    let squads_path = dir.join(SQUADS_FILE);
    let sources_text = std::fs::read_to_string(&sources_path).map_err(|source| Error::Read {
        path: sources_path.display().to_string(),
        source,
    })?;
    let squads_text = match std::fs::read_to_string(&squads_path) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(Error::Read {
                path: squads_path.display().to_string(),
                source,
            })
        }
    };
    let mut config = parse(
        &sources_path.display().to_string(),
        &sources_text,
        &squads_path.display().to_string(),
        squads_text.as_deref(),
        env,
    )?;
    config.dir = dir.to_path_buf();
    if squads_text.is_none() {
        config.warnings.push(format!(
            "{} not found: no one is a member of any squad, so no one can use any source",
            squads_path.display()
        ));
    }
    Ok(config)
}

/// Validates configuration text (no file system or network access).
pub fn parse(
    sources_file: &str,
    sources_text: &str,
    squads_file: &str,
    squads_text: Option<&str>,
    env: &dyn Env,
) -> Result<Config> {
    let mut errors = Vec::new();
    let sources_value = stage_text(sources_file, sources_text, env, &mut errors);
    let squads_value = squads_text.and_then(|text| stage_text(squads_file, text, env, &mut errors));

    let (data_sources, redaction) = sources_value
        .map(|value| decode_sources(sources_file, value, &mut errors))
        .unwrap_or_default();
    let squads = squads_value
        .map(|value| decode_squads(squads_file, value, &mut errors))
        .unwrap_or_default();

    let mut config = Config {
        dir: PathBuf::new(),
        sources: flatten_sources(data_sources),
        squads,
        redaction,
        warnings: Vec::new(),
    };
    let decoded = errors.len();
    cross_check(sources_file, squads_file, &mut config, &mut errors);
    // A wrong-typed value was dropped while decoding; do not also report it missing.
    let reported: BTreeSet<(String, String)> = errors[..decoded]
        .iter()
        .map(|e| (e.file.clone(), e.path.clone()))
        .collect();
    let mut index = 0;
    errors.retain(|e| {
        index += 1;
        index <= decoded || !reported.contains(&(e.file.clone(), e.path.clone()))
    });
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(Error::Invalid(errors))
    }
}

fn stage_text(
    file: &str,
    text: &str,
    env: &dyn Env,
    errors: &mut Vec<ConfigError>,
) -> Option<Value> {
    let text = match interpolate::interpolate(text, file, env) {
        Ok(text) => text,
        Err(problems) => {
            errors.extend(problems.into_iter().map(|p| {
                ConfigError::new(&p.file, format!("line {}:{}", p.line, p.column), p.message)
            }));
            return None;
        }
    };
    // YAML 1.2 booleans only: `on`, `off`, `y`, `no` stay strings, so a database
    // called `off` or a secret `y` is not silently turned into a boolean.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    match serde_saphyr::from_str_with_options::<Value>(&text, options) {
        Ok(Value::Null) => Some(Value::Object(Default::default())),
        Ok(value) => Some(value),
        Err(err) => {
            errors.push(ConfigError::new(file, "", format!("invalid YAML: {err}")));
            None
        }
    }
}

fn expect_mapping(
    file: &str,
    path: &str,
    value: Value,
    known: &[&str],
    errors: &mut Vec<ConfigError>,
) -> serde_json::Map<String, Value> {
    let map = match value {
        Value::Object(map) => map,
        Value::Null => return Default::default(),
        other => {
            errors.push(ConfigError::new(
                file,
                path,
                format!("expected a mapping, found {}", type_name(&other)),
            ));
            return Default::default();
        }
    };
    let known_owned: Vec<String> = known.iter().map(|s| s.to_string()).collect();
    let mut kept = serde_json::Map::new();
    for (key, value) in map {
        if known.contains(&key.as_str()) {
            kept.insert(key, value);
        } else {
            let mut message = format!("unknown key `{key}`");
            if let Some(best) = did_you_mean(&key, &known_owned) {
                message.push_str(&format!(", did you mean `{best}`?"));
            }
            message.push_str(&format!(" (expected one of: {})", known.join(", ")));
            errors.push(ConfigError::new(
                file,
                decode::join_path(path, &key),
                message,
            ));
        }
    }
    kept
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn decode_sources(
    file: &str,
    value: Value,
    errors: &mut Vec<ConfigError>,
) -> (DataSources, RedactionConfig) {
    let mut top = expect_mapping(file, "", value, &["data_sources", "redaction"], errors);
    let redaction = top
        .remove("redaction")
        .filter(|v| !v.is_null())
        .and_then(|v| decode_all::<RedactionConfig>(file, "redaction", v, errors))
        .map(|r| check_redaction(file, r, errors))
        .unwrap_or_default();
    (decode_data_sources(file, top, errors), redaction)
}

/// Compiles each extra pattern (no IO); a bad one is reported by index, without its
/// text, since a pattern may quote what it masks.
fn check_redaction(
    file: &str,
    config: RedactionConfig,
    errors: &mut Vec<ConfigError>,
) -> RedactionConfig {
    for (i, pattern) in config.extra_patterns.iter().enumerate() {
        if let Err(err) = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
        {
            let why = match err {
                regex::Error::CompiledTooBig(_) => "too large",
                regex::Error::Syntax(_) => "syntax error",
                _ => "invalid",
            };
            errors.push(ConfigError::new(
                file,
                format!("redaction.extra_patterns[{i}]"),
                format!("not a valid regex ({why})"),
            ));
        }
    }
    config
}

fn decode_data_sources(
    file: &str,
    mut top: serde_json::Map<String, Value>,
    errors: &mut Vec<ConfigError>,
) -> DataSources {
    let Some(ds) = top.remove("data_sources") else {
        if errors.iter().all(|e| e.file != file) {
            errors.push(ConfigError::new(
                file,
                "",
                "missing required key `data_sources`",
            ));
        }
        return DataSources::default();
    };
    let base = "data_sources";
    let mut map = expect_mapping(file, base, ds, DATA_SOURCES_KEYS, errors);
    let mut out = DataSources::default();
    let one = |key: &str, map: &mut serde_json::Map<String, Value>| -> Option<Value> {
        map.remove(key).filter(|v| !v.is_null())
    };
    if let Some(v) = one("bigquery", &mut map) {
        out.bigquery = decode_all(file, "data_sources.bigquery", v, errors);
    }
    if let Some(v) = one("elasticsearch", &mut map) {
        out.elasticsearch = decode_all(file, "data_sources.elasticsearch", v, errors);
    }
    if let Some(v) = one("opensearch", &mut map) {
        out.opensearch = decode_all(file, "data_sources.opensearch", v, errors);
    }
    if let Some(v) = one("apm", &mut map) {
        let mut apm = expect_mapping(
            file,
            "data_sources.apm",
            v,
            &["datadog", "newrelic"],
            errors,
        );
        let datadog = one("datadog", &mut apm)
            .and_then(|v| decode_all(file, "data_sources.apm.datadog", v, errors));
        let newrelic = one("newrelic", &mut apm)
            .and_then(|v| decode_all(file, "data_sources.apm.newrelic", v, errors));
        out.apm = Some(ApmConfig { datadog, newrelic });
    }
    if let Some(v) = one("kubernetes", &mut map) {
        out.kubernetes = decode_all(file, "data_sources.kubernetes", v, errors);
    }
    if let Some(v) = one("prometheus", &mut map) {
        out.prometheus = decode_all(file, "data_sources.prometheus", v, errors);
    }
    if let Some(v) = one("databases", &mut map) {
        out.databases = decode_list(file, "data_sources.databases", v, errors);
    }
    if let Some(v) = one("logfiles", &mut map) {
        out.logfiles = decode_list(file, "data_sources.logfiles", v, errors);
    }
    out
}

fn decode_list<T: serde::de::DeserializeOwned>(
    file: &str,
    path: &str,
    value: Value,
    errors: &mut Vec<ConfigError>,
) -> Vec<T> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| decode_all(file, &format!("{path}[{i}]"), item, errors))
            .collect(),
        other => {
            errors.push(ConfigError::new(
                file,
                path,
                format!("expected a list, found {}", type_name(&other)),
            ));
            Vec::new()
        }
    }
}

fn decode_squads(
    file: &str,
    value: Value,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, SquadConfig> {
    let mut top = expect_mapping(file, "", value, &["squads"], errors);
    let Some(squads) = top.remove("squads") else {
        return BTreeMap::new();
    };
    let map = match squads {
        Value::Object(map) => map,
        Value::Null => return BTreeMap::new(),
        other => {
            errors.push(ConfigError::new(
                file,
                "squads",
                format!(
                    "expected a mapping of squad name to squad, found {}",
                    type_name(&other)
                ),
            ));
            return BTreeMap::new();
        }
    };
    map.into_iter()
        .filter_map(|(name, value)| {
            let value = if value.is_null() {
                Value::Object(Default::default())
            } else {
                value
            };
            decode_all::<SquadConfig>(file, &format!("squads.{name}"), value, errors)
                .map(|squad| (name, squad))
        })
        .collect()
}

fn flatten_sources(ds: DataSources) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    let mut push = |name: String, owner: Option<String>, enabled: bool, path: String, spec| {
        out.push(SourceEntry {
            name,
            owner,
            enabled,
            path,
            spec,
        });
    };
    for (i, db) in ds.databases.into_iter().enumerate() {
        push(
            db.name.clone(),
            db.squad.clone(),
            db.enabled,
            format!("data_sources.databases[{i}]"),
            SourceSpec::Database(db),
        );
    }
    if let Some(c) = ds.bigquery {
        let name = c.name.clone().unwrap_or_else(|| "bigquery".into());
        push(
            name,
            c.squad.clone(),
            c.enabled,
            "data_sources.bigquery".into(),
            SourceSpec::BigQuery(c),
        );
    }
    if let Some(c) = ds.elasticsearch {
        let name = c.name.clone().unwrap_or_else(|| "elasticsearch".into());
        push(
            name,
            c.squad.clone(),
            c.enabled,
            "data_sources.elasticsearch".into(),
            SourceSpec::Elasticsearch(c),
        );
    }
    if let Some(c) = ds.opensearch {
        let name = c.name.clone().unwrap_or_else(|| "opensearch".into());
        push(
            name,
            c.squad.clone(),
            c.enabled,
            "data_sources.opensearch".into(),
            SourceSpec::OpenSearch(c),
        );
    }
    if let Some(apm) = ds.apm {
        if let Some(c) = apm.datadog {
            let name = c.name.clone().unwrap_or_else(|| "datadog".into());
            push(
                name,
                c.squad.clone(),
                c.enabled,
                "data_sources.apm.datadog".into(),
                SourceSpec::Datadog(c),
            );
        }
        if let Some(c) = apm.newrelic {
            let name = c.name.clone().unwrap_or_else(|| "newrelic".into());
            push(
                name,
                c.squad.clone(),
                c.enabled,
                "data_sources.apm.newrelic".into(),
                SourceSpec::NewRelic(c),
            );
        }
    }
    if let Some(c) = ds.kubernetes {
        let name = c.name.clone().unwrap_or_else(|| "kubernetes".into());
        push(
            name,
            c.squad.clone(),
            c.enabled,
            "data_sources.kubernetes".into(),
            SourceSpec::Kubernetes(c),
        );
    }
    if let Some(c) = ds.prometheus {
        let name = c.name.clone().unwrap_or_else(|| "prometheus".into());
        push(
            name,
            c.squad.clone(),
            c.enabled,
            "data_sources.prometheus".into(),
            SourceSpec::Prometheus(c),
        );
    }
    for (i, c) in ds.logfiles.into_iter().enumerate() {
        push(
            c.name.clone(),
            c.squad.clone(),
            c.enabled,
            format!("data_sources.logfiles[{i}]"),
            SourceSpec::Logfile(c),
        );
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Cross-field rules that typed decoding cannot express.
fn cross_check(
    sources_file: &str,
    squads_file: &str,
    config: &mut Config,
    errors: &mut Vec<ConfigError>,
) {
    let sf = sources_file;
    let qf = squads_file;

    // Squads named only by `squad:` in sources.yaml still exist (with no members):
    // the brief's example names squads without a squads.yaml.
    let mut implicit = BTreeSet::new();
    for source in &config.sources {
        if let Some(owner) = &source.owner {
            if !config.squads.contains_key(owner) {
                implicit.insert(owner.clone());
            }
        }
    }
    for owner in implicit {
        config.warnings.push(format!(
            "squad `{owner}` owns sources but is not defined in {qf}, so no one can use them"
        ));
        config.squads.insert(owner, SquadConfig::default());
    }

    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for source in &config.sources {
        let path = &source.path;
        if !valid_name(&source.name) {
            errors.push(ConfigError::new(
                sf,
                format!("{path}.name"),
                format!(
                    "`{}` is not a valid source name (letters, digits, `_` and `-`, at most 48)",
                    source.name
                ),
            ));
        }
        if let Some(first) = seen.insert(&source.name, path) {
            errors.push(ConfigError::new(
                sf,
                format!("{path}.name"),
                format!("source name `{}` is already used by {first}", source.name),
            ));
        }
        if let Some(owner) = &source.owner {
            if !valid_name(owner) {
                errors.push(ConfigError::new(
                    sf,
                    format!("{path}.squad"),
                    format!("`{owner}` is not a valid squad name"),
                ));
            }
        }
        check_spec(sf, path, &source.spec, errors);
    }

    let mut channel_owner: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut key_names: BTreeMap<String, String> = BTreeMap::new();
    let source_names = config.source_names();
    for (squad_name, squad) in &config.squads {
        let base = format!("squads.{squad_name}");
        if !valid_name(squad_name) {
            errors.push(ConfigError::new(
                qf,
                &base,
                format!("`{squad_name}` is not a valid squad name (letters, digits, `_` and `-`)"),
            ));
        }
        for (transport, ids) in [
            ("slack", &squad.members.slack),
            ("discord", &squad.members.discord),
        ] {
            for (i, id) in ids.iter().enumerate() {
                if !valid_id(id) {
                    errors.push(ConfigError::new(
                        qf,
                        format!("{base}.members.{transport}[{i}]"),
                        "user id must be non-empty and without spaces",
                    ));
                }
            }
        }
        for (transport, ids) in [
            ("slack", &squad.channels.slack),
            ("discord", &squad.channels.discord),
        ] {
            for (i, id) in ids.iter().enumerate() {
                let path = format!("{base}.channels.{transport}[{i}]");
                if !valid_id(id) {
                    errors.push(ConfigError::new(
                        qf,
                        &path,
                        "channel id must be non-empty and without spaces",
                    ));
                    continue;
                }
                // A channel speaks for exactly one squad, or isolation would be ambiguous.
                if let Some(other) =
                    channel_owner.insert((transport.to_string(), id.clone()), squad_name.clone())
                {
                    if &other != squad_name {
                        errors.push(ConfigError::new(qf, &path, format!("{transport} channel {id} is already bound to squad `{other}`; a channel belongs to one squad")));
                    }
                }
            }
        }
        for (i, key) in squad.api_keys.iter().enumerate() {
            let path = format!("{base}.api_keys[{i}]");
            if !valid_name(&key.name) {
                errors.push(ConfigError::new(
                    qf,
                    format!("{path}.name"),
                    "api key name must be letters, digits, `_` or `-`",
                ));
            }
            if let Some(other) = key_names.insert(key.name.clone(), squad_name.clone()) {
                errors.push(ConfigError::new(
                    qf,
                    format!("{path}.name"),
                    format!(
                        "api key name `{}` is already used in squad `{other}`",
                        key.name
                    ),
                ));
            }
            if let Err(message) = key.key.validate() {
                errors.push(ConfigError::new(qf, format!("{path}.key"), message));
            }
        }
        for (i, grant) in squad.grants.iter().enumerate() {
            let path = format!("{base}.grants[{i}]");
            let Some(source) = config.source(&grant.source) else {
                let mut message = format!("unknown source `{}`", grant.source);
                if let Some(best) = did_you_mean(&grant.source, &source_names) {
                    message.push_str(&format!(", did you mean `{best}`?"));
                }
                if source_names.is_empty() {
                    message.push_str(" (no sources are configured)");
                } else {
                    message.push_str(&format!(" (configured: {})", source_names.join(", ")));
                }
                errors.push(ConfigError::new(qf, format!("{path}.source"), message));
                continue;
            };
            let allowed = source.spec.scope_keys();
            for (key, present) in [
                ("schemas", &grant.schemas),
                ("datasets", &grant.datasets),
                ("indices", &grant.indices),
                ("namespaces", &grant.namespaces),
                ("contexts", &grant.contexts),
                ("services", &grant.services),
            ] {
                let Some(values) = present else { continue };
                if !allowed.contains(&key) {
                    errors.push(ConfigError::new(
                        qf,
                        format!("{path}.{key}"),
                        format!(
                            "`{key}` does not apply to {} source `{}` (it takes: {})",
                            source.spec.kind(),
                            source.name,
                            allowed.join(", ")
                        ),
                    ));
                    continue;
                }
                if values.is_empty() {
                    errors.push(ConfigError::new(
                        qf,
                        format!("{path}.{key}"),
                        "an empty list grants nothing; remove the grant instead",
                    ));
                }
                for (j, v) in values.iter().enumerate() {
                    if v.trim().is_empty() {
                        errors.push(ConfigError::new(
                            qf,
                            format!("{path}.{key}[{j}]"),
                            "must not be empty",
                        ));
                    }
                }
            }
            if let (SourceSpec::Database(db), Some(schemas)) = (&source.spec, &grant.schemas) {
                let allowlist = database_schemas(db);
                for (j, schema) in schemas.iter().enumerate() {
                    if !allowlist.iter().any(|a| a.eq_ignore_ascii_case(schema)) {
                        errors.push(ConfigError::new(qf, format!("{path}.schemas[{j}]"), format!("schema `{schema}` is not in the `schemas` allowlist of database `{}` ({})", source.name, allowlist.join(", "))));
                    }
                }
            }
        }
        if squad.members.slack.is_empty()
            && squad.members.discord.is_empty()
            && squad.api_keys.is_empty()
            && squad.members.slack_usergroups.is_empty()
        {
            config.warnings.push(format!(
                "squad `{squad_name}` has no members and no API keys"
            ));
        }
    }
}

/// Schemas a database entry exposes at most (its allowlist or the kind's default).
pub fn database_schemas(db: &DatabaseConfig) -> Vec<String> {
    if let Some(list) = &db.schemas {
        return list.clone();
    }
    match db.kind {
        DatabaseKind::Postgresql => vec!["public".to_string()],
        DatabaseKind::Mysql | DatabaseKind::Mariadb => db.database.clone().into_iter().collect(),
        DatabaseKind::Sqlite => vec!["main".to_string()],
    }
}

fn check_spec(file: &str, path: &str, spec: &SourceSpec, errors: &mut Vec<ConfigError>) {
    let mut err = |key: &str, message: String| {
        errors.push(ConfigError::new(
            file,
            decode::join_path(path, key),
            message,
        ));
    };
    let secret = |key: &str, value: &Option<SecretRef>, err: &mut dyn FnMut(&str, String)| {
        if let Some(value) = value {
            if let Err(message) = value.validate() {
                err(key, message);
            }
        }
    };
    // Field-name settings: absent means the default, empty is a mistake.
    let field_names = |fields: &[(&str, &Option<String>)], err: &mut dyn FnMut(&str, String)| {
        for (key, value) in fields {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                err(
                    key,
                    "must not be empty; remove it to use the default".into(),
                );
            }
        }
    };
    let http_url = |key: &str, url: &str, err: &mut dyn FnMut(&str, String)| {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            err(key, format!("`{url}` must start with http:// or https://"));
        } else if url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
            .is_some_and(|authority| authority.contains('@'))
        {
            // Not echoed: it holds a password. URLs appear in errors and links.
            err(
                key,
                "credentials in the URL would be shown in errors and links; use the source's username/password or token settings".into(),
            );
        }
    };
    match spec {
        SourceSpec::Database(db) => {
            match db.kind {
                DatabaseKind::Sqlite => {
                    if db.path.as_deref().is_none_or(|p| p.trim().is_empty()) {
                        err("path", "a sqlite database needs `path`".into());
                    }
                    for key in ["host", "port", "username", "password", "sslmode"] {
                        let present = match key {
                            "host" => db.host.is_some(),
                            "port" => db.port.is_some(),
                            "username" => db.username.is_some(),
                            "password" => db.password.is_some(),
                            _ => db.sslmode.is_some(),
                        };
                        if present {
                            err(key, format!("`{key}` does not apply to a sqlite database"));
                        }
                    }
                }
                DatabaseKind::Postgresql | DatabaseKind::Mysql | DatabaseKind::Mariadb => {
                    if db.host.as_deref().is_none_or(|h| h.trim().is_empty()) {
                        err(
                            "host",
                            format!("a {} database needs `host`", db.kind.as_str()),
                        );
                    }
                    if db.database.as_deref().is_none_or(|d| d.trim().is_empty()) {
                        err(
                            "database",
                            format!("a {} database needs `database`", db.kind.as_str()),
                        );
                    }
                    if db.path.is_some() {
                        err(
                            "path",
                            format!(
                                "`path` applies to sqlite only; use host/port/database for {}",
                                db.kind.as_str()
                            ),
                        );
                    }
                    if db.port == Some(0) {
                        err("port", "port must be between 1 and 65535".into());
                    }
                }
            }
            if let Some(schemas) = &db.schemas {
                if schemas.is_empty() {
                    err("schemas", "an empty allowlist makes the database unusable; remove `schemas` to use the default".into());
                }
                for (i, s) in schemas.iter().enumerate() {
                    if s.trim().is_empty() {
                        err(&format!("schemas[{i}]"), "must not be empty".into());
                    }
                }
                if db.kind == DatabaseKind::Sqlite && schemas.iter().any(|s| s != "main") {
                    err(
                        "schemas",
                        "a sqlite database has only the `main` schema".into(),
                    );
                }
            }
            if let Some(rows) = db.max_rows {
                if !(1..=1_000_000).contains(&rows) {
                    err(
                        "max_rows",
                        format!("expected between 1 and 1000000, found {rows}"),
                    );
                }
            }
            if let Some(t) = db.statement_timeout {
                if t.0.as_millis() < 10 || t.0.as_secs() > 600 {
                    err(
                        "statement_timeout",
                        format!("expected between 10ms and 10m, found {t}"),
                    );
                }
            }
            if let Some(n) = db.max_connections {
                if !(1..=64).contains(&n) {
                    err(
                        "max_connections",
                        format!("expected between 1 and 64, found {n}"),
                    );
                }
            }
            secret("password", &db.password, &mut err);
        }
        SourceSpec::BigQuery(c) => {
            if c.project_id.trim().is_empty() {
                err("project_id", "must not be empty".into());
            }
            if c.max_bytes_billed == Some(0) {
                err("max_bytes_billed", "must be above 0".into());
            }
            if let Some(url) = &c.base_url {
                http_url("base_url", url, &mut err);
            }
            for (i, d) in c.datasets.iter().flatten().enumerate() {
                if d.is_empty() || !d.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
                    err(
                        &format!("datasets[{i}]"),
                        format!("`{d}` is not a dataset id (letters, digits, _)"),
                    );
                }
            }
        }
        SourceSpec::Elasticsearch(c) | SourceSpec::OpenSearch(c) => {
            if c.hosts.is_empty() {
                err("hosts", "at least one host is needed".into());
            }
            for (i, h) in c.hosts.iter().enumerate() {
                http_url(&format!("hosts[{i}]"), h, &mut err);
            }
            secret("password", &c.password, &mut err);
            secret("api_key", &c.api_key, &mut err);
            secret("bearer_token", &c.bearer_token, &mut err);
            field_names(
                &[
                    ("timestamp_field", &c.timestamp_field),
                    ("message_field", &c.message_field),
                    ("level_field", &c.level_field),
                    ("service_field", &c.service_field),
                    ("namespace_field", &c.namespace_field),
                ],
                &mut err,
            );
        }
        SourceSpec::Datadog(c) => {
            secret("api_key", &Some(c.api_key.clone()), &mut err);
            secret("app_key", &c.app_key, &mut err);
            if let Some(site) = &c.site {
                if !DATADOG_SITES.contains(&site.as_str()) {
                    err(
                        "site",
                        format!(
                            "unknown site `{site}` (known: {})",
                            DATADOG_SITES.join(", ")
                        ),
                    );
                }
            }
            if let Some(url) = &c.base_url {
                http_url("base_url", url, &mut err);
            }
            if let Some(list) = &c.app_id {
                if list.items().iter().any(|s| {
                    !s.chars().all(|ch| {
                        ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | '/' | ':')
                    })
                }) {
                    err(
                        "app_id",
                        "service names are tag values: letters, digits, - _ . / :".into(),
                    );
                }
            }
        }
        SourceSpec::NewRelic(c) => {
            secret("api_key", &Some(c.api_key.clone()), &mut err);
            if let Some(region) = &c.region {
                if !matches!(region.to_ascii_lowercase().as_str(), "us" | "eu") {
                    err("region", format!("`{region}`: expected us or eu"));
                }
            }
            if let Some(url) = &c.base_url {
                http_url("base_url", url, &mut err);
            }
            if c.account_id == 0 {
                err("account_id", "must be a New Relic account id".into());
            }
            if let Some(list) = &c.app_id {
                // Names go into NRQL string literals, so only plain characters.
                let plain = |s: &String| {
                    s.chars().all(|ch| {
                        ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | ' ' | '/')
                    })
                };
                if !list.items().iter().all(plain) {
                    err(
                        "app_id",
                        "application names: letters, digits, spaces and - _ . /".into(),
                    );
                }
            }
        }
        SourceSpec::Kubernetes(c) => {
            if c.kubeconfig_path.is_none() && !c.in_cluster {
                err(
                    "kubeconfig_path",
                    "set `kubeconfig_path` or `in_cluster: true`".into(),
                );
            }
        }
        SourceSpec::Prometheus(c) => {
            http_url("url", &c.url, &mut err);
            secret("bearer_token", &c.bearer_token, &mut err);
            secret("password", &c.password, &mut err);
            if c.bearer_token.is_some() && (c.username.is_some() || c.password.is_some()) {
                err(
                    "bearer_token",
                    "set `bearer_token` or `username`/`password`, not both".into(),
                );
            }
            if c.password.is_some() && c.username.is_none() {
                err("password", "`password` needs `username`".into());
            }
            for (key, label) in [
                ("namespace_label", &c.namespace_label),
                ("service_label", &c.service_label),
            ] {
                if let Some(label) = label {
                    let valid = label.chars().enumerate().all(|(i, ch)| {
                        ch == '_' || ch.is_ascii_alphabetic() || (i > 0 && ch.is_ascii_digit())
                    });
                    if label.is_empty() || !valid {
                        err(key, format!("`{label}` is not a Prometheus label name"));
                    }
                }
            }
        }
        SourceSpec::Logfile(c) => {
            if c.paths.is_empty() {
                err("paths", "at least one path is needed".into());
            }
            for (i, p) in c.paths.iter().enumerate() {
                let key = format!("paths[{i}]");
                if p.trim().is_empty() {
                    err(&key, "must not be empty".into());
                    continue;
                }
                // Patterns are matched against one directory listing, so `*` can only
                // stand in the file name part.
                let (dir, name) = p.rsplit_once(['/', '\\']).unwrap_or(("", p.as_str()));
                if dir.contains('*') {
                    err(
                        &key,
                        format!(
                            "`{p}`: `*` is supported in the file name only, not in directories"
                        ),
                    );
                } else if name.is_empty() {
                    err(
                        &key,
                        format!(
                            "`{p}` names a directory; add a file name or pattern such as `*.log`"
                        ),
                    );
                }
            }
            if let Some(format) = &c.format {
                if !LOGFILE_FORMATS.contains(&format.trim().to_ascii_lowercase().as_str()) {
                    err(
                        "format",
                        format!(
                            "unknown format `{format}` (expected: {})",
                            LOGFILE_FORMATS.join(", ")
                        ),
                    );
                }
            }
            field_names(
                &[
                    ("timestamp_field", &c.timestamp_field),
                    ("message_field", &c.message_field),
                    ("level_field", &c.level_field),
                    ("service_field", &c.service_field),
                ],
                &mut err,
            );
            if c.max_bytes_scanned == Some(0) {
                err("max_bytes_scanned", "must be at least 1".into());
            }
        }
    }
}

#[cfg(test)]
mod tests;
