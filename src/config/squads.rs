//! `squads.yaml`: who belongs to which squad, which channels speak for a squad, and
//! what each squad may use beyond the sources it owns.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::secret::SecretRef;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SquadsFile {
    pub squads: BTreeMap<String, SquadConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SquadConfig {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub members: Members,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    #[serde(default)]
    pub channels: Channels,
    #[serde(default)]
    pub grants: Vec<GrantConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Members {
    #[serde(default)]
    pub slack: Vec<String>,
    #[serde(default)]
    pub discord: Vec<String>,
    /// Slack user group ids (`S0123…`) whose members belong to the squad.
    #[serde(default)]
    pub slack_usergroups: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channels {
    #[serde(default)]
    pub slack: Vec<String>,
    #[serde(default)]
    pub discord: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Shown in the audit log instead of the key.
    pub name: String,
    pub key: SecretRef,
}

/// Access to a source beyond the ones a squad owns, optionally narrowed to parts of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    pub source: String,
    #[serde(default)]
    pub schemas: Option<Vec<String>>,
    #[serde(default)]
    pub datasets: Option<Vec<String>>,
    #[serde(default)]
    pub indices: Option<Vec<String>>,
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub contexts: Option<Vec<String>>,
    #[serde(default)]
    pub services: Option<Vec<String>>,
}
