//! Who may use what. Pure functions over the configuration: no IO, no model input.
//!
//! A principal (transport, user, optional channel) resolves to squads; squads own
//! sources and hold grants; the union of those is the principal's [`Access`]. A
//! channel bound to a squad narrows everything asked there to that squad, even for a
//! member of several. Anything not granted is denied.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::config::{database_schemas, Config, GrantConfig, SourceSpec};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid principal `{0}`: expected transport:user, e.g. slack:U123 (transports: slack, discord, api)")]
    BadPrincipal(String),
    #[error("invalid channel `{0}`: expected transport:channel, e.g. slack:C123")]
    BadChannel(String),
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Slack,
    Discord,
    /// An HTTP API key; the user id is the key's configured name.
    Api,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Slack => "slack",
            Transport::Discord => "discord",
            Transport::Api => "api",
        }
    }
}

impl FromStr for Transport {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "slack" => Ok(Transport::Slack),
            "discord" => Ok(Transport::Discord),
            "api" => Ok(Transport::Api),
            _ => Err(()),
        }
    }
}

/// Who is asking, and where.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub transport: Transport,
    pub user: String,
    /// Channel id on the same transport; None for direct messages, the CLI and the API.
    pub channel: Option<String>,
}

impl Principal {
    pub fn new(transport: Transport, user: impl Into<String>) -> Self {
        Principal {
            transport,
            user: user.into(),
            channel: None,
        }
    }

    pub fn in_channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// Parses `slack:U123`.
    pub fn parse(text: &str) -> Result<Self> {
        let (transport, user) =
            split_id(text).ok_or_else(|| Error::BadPrincipal(text.to_string()))?;
        Ok(Principal::new(transport, user))
    }

    /// Parses `slack:C123` as this principal's channel; the transport must match.
    pub fn with_channel_text(self, text: &str) -> Result<Self> {
        match split_id(text) {
            Some((transport, channel)) if transport == self.transport => {
                Ok(self.in_channel(channel))
            }
            _ => Err(Error::BadChannel(text.to_string())),
        }
    }

    pub fn channel_label(&self) -> Option<String> {
        self.channel
            .as_ref()
            .map(|c| format!("{}:{c}", self.transport.as_str()))
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.as_str(), self.user)
    }
}

fn split_id(text: &str) -> Option<(Transport, String)> {
    let (transport, id) = text.split_once(':')?;
    let transport = transport.trim().to_ascii_lowercase().parse().ok()?;
    let id = id.trim();
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some((transport, id.to_string()))
}

/// The parts of one source a principal may use. `None` in a list means "no
/// narrowing beyond the source's own configuration".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceGrant {
    pub source: String,
    pub kind: &'static str,
    /// Squads through which access comes.
    pub squads: Vec<String>,
    /// Why, one line per squad: "owned by squad payment", "granted to squad data".
    pub reasons: Vec<String>,
    /// Schemas (PostgreSQL) / databases (MySQL) / `main` (SQLite). Always concrete
    /// for databases.
    pub schemas: Option<Vec<String>>,
    pub datasets: Option<Vec<String>>,
    pub indices: Option<Vec<String>>,
    pub namespaces: Option<Vec<String>>,
    pub contexts: Option<Vec<String>>,
    pub services: Option<Vec<String>>,
}

impl SourceGrant {
    fn empty(source: &str, kind: &'static str) -> Self {
        SourceGrant {
            source: source.to_string(),
            kind,
            squads: Vec::new(),
            reasons: Vec::new(),
            schemas: None,
            datasets: None,
            indices: None,
            namespaces: None,
            contexts: None,
            services: None,
        }
    }

    /// One-line summary of the scope, for `investigator sources` and prompts.
    pub fn scope_summary(&self) -> String {
        let mut parts = Vec::new();
        for (label, list) in [
            ("schemas", &self.schemas),
            ("datasets", &self.datasets),
            ("indices", &self.indices),
            ("namespaces", &self.namespaces),
            ("contexts", &self.contexts),
            ("services", &self.services),
        ] {
            if let Some(list) = list {
                parts.push(format!("{label}: {}", list.join(", ")));
            }
        }
        if parts.is_empty() {
            "whole source".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// What a resolved principal may use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Access {
    pub principal: String,
    pub channel: Option<String>,
    pub squads: Vec<String>,
    /// Set when the channel restricted the principal to one squad.
    pub channel_squad: Option<String>,
    pub grants: BTreeMap<String, SourceGrant>,
}

impl Access {
    pub fn grant(&self, source: &str) -> Option<&SourceGrant> {
        self.grants.get(source)
    }

    pub fn squads_label(&self) -> String {
        self.squads.join(",")
    }
}

/// Why a principal gets nothing. Messages are safe to show in the chat where the
/// question was asked: they name no other squad's data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Denial {
    UnknownUser {
        principal: String,
    },
    NotInChannelSquad {
        principal: String,
        channel: String,
        squad: String,
    },
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::UnknownUser { principal } => write!(
                f,
                "{principal} is not a member of any squad, so I can't look at any data for you yet. \
                 Ask your squad lead to add your user id to the squad's `members` in squads.yaml."
            ),
            Denial::NotInChannelSquad { principal, channel, squad } => write!(
                f,
                "channel {channel} belongs to squad {squad}, and {principal} is not a member of it. \
                 Ask in your own squad's channel or a direct message, or ask squad {squad} to add you."
            ),
        }
    }
}

/// Resolves a principal against the configuration. Deny by default.
pub fn resolve(config: &Config, principal: &Principal) -> std::result::Result<Access, Denial> {
    resolve_with(config, principal, BTreeSet::new())
}

/// Like [`resolve`], adding squads the transport learned elsewhere (Slack user
/// groups): only squads that exist in the configuration count.
pub fn resolve_with(
    config: &Config,
    principal: &Principal,
    extra: BTreeSet<String>,
) -> std::result::Result<Access, Denial> {
    let mut member_of: BTreeSet<String> = config
        .squads
        .iter()
        .filter(|(_, squad)| {
            let ids = match principal.transport {
                Transport::Slack => &squad.members.slack,
                Transport::Discord => &squad.members.discord,
                Transport::Api => return squad.api_keys.iter().any(|k| k.name == principal.user),
            };
            ids.iter().any(|id| id == &principal.user)
        })
        .map(|(name, _)| name.clone())
        .collect();
    member_of.extend(extra.into_iter().filter(|s| config.squads.contains_key(s)));
    resolve_squads(config, principal, member_of)
}

/// Like [`resolve`] with extra squads learned elsewhere (e.g. Slack user groups).
pub fn resolve_squads(
    config: &Config,
    principal: &Principal,
    member_of: BTreeSet<String>,
) -> std::result::Result<Access, Denial> {
    if member_of.is_empty() {
        return Err(Denial::UnknownUser {
            principal: principal.to_string(),
        });
    }
    let channel_squad = principal.channel.as_ref().and_then(|channel| {
        config.squads.iter().find_map(|(name, squad)| {
            let bound = match principal.transport {
                Transport::Slack => &squad.channels.slack,
                Transport::Discord => &squad.channels.discord,
                Transport::Api => return None,
            };
            bound.iter().any(|c| c == channel).then(|| name.clone())
        })
    });
    let squads: Vec<String> = match &channel_squad {
        Some(bound) if member_of.contains(bound) => vec![bound.clone()],
        Some(bound) => {
            return Err(Denial::NotInChannelSquad {
                principal: principal.to_string(),
                channel: principal.channel_label().unwrap_or_default(),
                squad: bound.clone(),
            })
        }
        None => member_of.into_iter().collect(),
    };
    Ok(Access {
        principal: principal.to_string(),
        channel: principal.channel_label(),
        grants: grants_for(config, &squads),
        squads,
        channel_squad,
    })
}

/// The union of what the given squads own and were granted, for enabled sources.
pub fn grants_for(config: &Config, squads: &[String]) -> BTreeMap<String, SourceGrant> {
    // Per source: every contribution (squad, reason, scope) first, then one fold, so
    // "unrestricted" from one squad is never narrowed by another's list.
    let mut contributions: BTreeMap<String, Vec<(String, String, GrantConfig)>> = BTreeMap::new();
    for squad in squads {
        for source in config.sources.iter().filter(|s| s.enabled) {
            if source.owner.as_deref() == Some(squad.as_str()) {
                contributions.entry(source.name.clone()).or_default().push((
                    squad.clone(),
                    format!("owned by squad {squad}"),
                    GrantConfig {
                        source: source.name.clone(),
                        schemas: None,
                        datasets: None,
                        indices: None,
                        namespaces: None,
                        contexts: None,
                        services: None,
                    },
                ));
            }
        }
        let Some(squad_config) = config.squads.get(squad) else {
            continue;
        };
        for grant_config in &squad_config.grants {
            if config
                .source(&grant_config.source)
                .is_some_and(|s| s.enabled)
            {
                contributions
                    .entry(grant_config.source.clone())
                    .or_default()
                    .push((
                        squad.clone(),
                        format!("granted to squad {squad}"),
                        grant_config.clone(),
                    ));
            }
        }
    }
    contributions
        .into_iter()
        .filter_map(|(name, parts)| {
            let source = config.source(&name)?;
            let mut grant = SourceGrant::empty(&name, source.spec.kind());
            for (squad, reason, _) in &parts {
                if !grant.squads.contains(squad) {
                    grant.squads.push(squad.clone());
                }
                if !grant.reasons.contains(reason) {
                    grant.reasons.push(reason.clone());
                }
            }
            grant.schemas = match &source.spec {
                // Databases always get a concrete list, bounded by the entry's allowlist.
                SourceSpec::Database(db) => {
                    let allow = database_schemas(db);
                    let wanted = combine(parts.iter().map(|(_, _, g)| g.schemas.clone()));
                    Some(match wanted {
                        None => allow,
                        Some(list) => allow
                            .into_iter()
                            .filter(|a| list.iter().any(|s| s.eq_ignore_ascii_case(a)))
                            .collect(),
                    })
                }
                SourceSpec::BigQuery(_)
                | SourceSpec::Elasticsearch(_)
                | SourceSpec::OpenSearch(_)
                | SourceSpec::Datadog(_)
                | SourceSpec::NewRelic(_)
                | SourceSpec::Kubernetes(_)
                | SourceSpec::Prometheus(_)
                | SourceSpec::Logfile(_) => None,
            };
            grant.datasets = combine(parts.iter().map(|(_, _, g)| g.datasets.clone()));
            grant.indices = combine(parts.iter().map(|(_, _, g)| g.indices.clone()));
            grant.namespaces = combine(parts.iter().map(|(_, _, g)| g.namespaces.clone()));
            grant.contexts = combine(parts.iter().map(|(_, _, g)| g.contexts.clone()));
            grant.services = combine(parts.iter().map(|(_, _, g)| g.services.clone()));
            Some((name, grant))
        })
        .collect()
}

/// Union of scopes where None means unrestricted and so absorbs any list.
fn combine(lists: impl Iterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    let mut all = Vec::new();
    for list in lists {
        all.extend(list?);
    }
    let mut seen = BTreeSet::new();
    Some(
        all.into_iter()
            .filter(|s| seen.insert(s.to_ascii_lowercase()))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
