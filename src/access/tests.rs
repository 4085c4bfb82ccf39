use std::collections::HashMap;

use super::*;
use crate::config;

const SOURCES: &str = r#"
data_sources:
  databases:
    - name: payments_db
      type: postgresql
      host: localhost
      database: payments
      squad: payment
      schemas: [app, reporting]
    - name: users_db
      type: mysql
      host: localhost
      database: users
      squad: user
    - name: shared_db
      type: postgresql
      host: localhost
      database: shared
      schemas: [public, finance, ops]
    - name: disabled_db
      type: postgresql
      host: localhost
      database: "off"
      squad: payment
      enabled: false
  elasticsearch:
    hosts: [https://es:9200]
    indices:
      logs: "logs-*"
      errors: "errors-*"
  kubernetes:
    kubeconfig_path: ~/.kube/config
    contexts: [production, staging]
"#;

const SQUADS: &str = r#"
squads:
  payment:
    members:
      slack: [U_PAY, U_BOTH]
      discord: ["1001"]
    api_keys:
      - name: payment-ci
        key: k-pay
    channels:
      slack: [C_PAY]
    grants:
      - source: elasticsearch
        indices: ["logs-payment-*"]
      - source: shared_db
        schemas: [finance]
      - source: kubernetes
        namespaces: [payment]
  user:
    members:
      slack: [U_USER, U_BOTH]
    channels:
      slack: [C_USER]
      discord: ["2002"]
    grants:
      - source: elasticsearch
        indices: ["logs-user-*"]
      - source: shared_db
  empty:
    channels:
      slack: [C_EMPTY]
"#;

fn config() -> Config {
    let env: HashMap<String, String> = HashMap::new();
    match config::parse("sources.yaml", SOURCES, "squads.yaml", Some(SQUADS), &env) {
        Ok(c) => c,
        Err(e) => panic!("test config invalid: {e}"),
    }
}

fn slack(user: &str) -> Principal {
    Principal::new(Transport::Slack, user)
}

fn names(access: &Access) -> Vec<&str> {
    access.grants.keys().map(String::as_str).collect()
}

#[test]
fn unknown_user_is_denied_with_how_to_get_access() {
    let denial = resolve(&config(), &slack("U_NOBODY")).err();
    let Some(denial) = denial else {
        panic!("expected denial")
    };
    assert!(matches!(denial, Denial::UnknownUser { .. }));
    assert!(denial.to_string().contains("squads.yaml"));
}

#[test]
fn member_gets_owned_and_granted_sources_only() {
    let access = resolve(&config(), &slack("U_PAY")).expect("allowed");
    assert_eq!(access.squads, vec!["payment"]);
    assert_eq!(
        names(&access),
        vec!["elasticsearch", "kubernetes", "payments_db", "shared_db"]
    );
    assert_eq!(
        access.grant("payments_db").and_then(|g| g.schemas.clone()),
        Some(vec!["app".into(), "reporting".into()])
    );
    assert_eq!(
        access.grant("shared_db").and_then(|g| g.schemas.clone()),
        Some(vec!["finance".into()])
    );
    assert_eq!(
        access
            .grant("elasticsearch")
            .and_then(|g| g.indices.clone()),
        Some(vec!["logs-payment-*".into()])
    );
    assert_eq!(
        access
            .grant("kubernetes")
            .and_then(|g| g.namespaces.clone()),
        Some(vec!["payment".into()])
    );
    assert!(access.grant("users_db").is_none());
}

#[test]
fn disabled_sources_are_never_granted() {
    let access = resolve(&config(), &slack("U_PAY")).expect("allowed");
    assert!(access.grant("disabled_db").is_none());
}

#[test]
fn member_of_two_squads_gets_the_union_outside_squad_channels() {
    let access = resolve(&config(), &slack("U_BOTH")).expect("allowed");
    assert_eq!(access.squads, vec!["payment", "user"]);
    assert!(access.grant("payments_db").is_some());
    assert!(access.grant("users_db").is_some());
    let es = access.grant("elasticsearch").expect("es");
    assert_eq!(
        es.indices,
        Some(vec![
            "logs-payment-*".to_string(),
            "logs-user-*".to_string()
        ])
    );
    // user's grant on shared_db is unnarrowed: the whole allowlist wins over payment's `finance`.
    assert_eq!(
        access.grant("shared_db").and_then(|g| g.schemas.clone()),
        Some(vec!["public".into(), "finance".into(), "ops".into()])
    );
    assert_eq!(es.squads, vec!["payment", "user"]);
}

#[test]
fn squad_channel_narrows_a_multi_squad_member_to_that_squad() {
    let access = resolve(&config(), &slack("U_BOTH").in_channel("C_USER")).expect("allowed");
    assert_eq!(access.squads, vec!["user"]);
    assert_eq!(access.channel_squad.as_deref(), Some("user"));
    assert!(
        access.grant("payments_db").is_none(),
        "payment's database leaked into user's channel"
    );
    assert_eq!(
        access
            .grant("elasticsearch")
            .and_then(|g| g.indices.clone()),
        Some(vec!["logs-user-*".into()])
    );

    let access = resolve(&config(), &slack("U_BOTH").in_channel("C_PAY")).expect("allowed");
    assert_eq!(access.squads, vec!["payment"]);
    assert!(access.grant("users_db").is_none());
    assert_eq!(
        access.grant("shared_db").and_then(|g| g.schemas.clone()),
        Some(vec!["finance".into()])
    );
}

#[test]
fn non_member_in_a_squad_channel_is_denied() {
    let denial = resolve(&config(), &slack("U_PAY").in_channel("C_USER")).err();
    assert!(
        matches!(denial, Some(Denial::NotInChannelSquad { ref squad, .. }) if squad == "user"),
        "{denial:?}"
    );
    // The refusal names the channel's squad only, nothing of what it holds.
    let text = denial.map(|d| d.to_string()).unwrap_or_default();
    assert!(
        !text.contains("users_db") && !text.contains("logs-"),
        "{text}"
    );
}

#[test]
fn unbound_channel_and_dm_keep_all_squads() {
    let access = resolve(&config(), &slack("U_BOTH").in_channel("C_RANDOM")).expect("allowed");
    assert_eq!(access.squads, vec!["payment", "user"]);
    assert_eq!(access.channel_squad, None);
}

#[test]
fn transports_do_not_mix() {
    // A Slack id listed under slack does not work on Discord, and channel ids are per transport.
    assert!(resolve(&config(), &Principal::new(Transport::Discord, "U_PAY")).is_err());
    let access =
        resolve(&config(), &Principal::new(Transport::Discord, "1001")).expect("discord member");
    assert_eq!(access.squads, vec!["payment"]);
    // Discord channel 2002 is user's; payment member there is refused.
    let denial = resolve(
        &config(),
        &Principal::new(Transport::Discord, "1001").in_channel("2002"),
    );
    assert!(denial.is_err());
    // Slack channel C_USER does not bind a Discord channel of the same id.
    let access = resolve(
        &config(),
        &Principal::new(Transport::Discord, "1001").in_channel("C_USER"),
    )
    .expect("allowed");
    assert_eq!(access.squads, vec!["payment"]);
}

#[test]
fn api_key_names_are_principals() {
    let access = resolve(&config(), &Principal::new(Transport::Api, "payment-ci")).expect("key");
    assert_eq!(access.squads, vec!["payment"]);
    assert!(
        resolve(&config(), &Principal::new(Transport::Api, "k-pay")).is_err(),
        "the key value is not its name"
    );
}

#[test]
fn squad_without_sources_gets_nothing() {
    // `empty` has no members; no one resolves to it, and its grants are empty.
    let grants = grants_for(&config(), &["empty".to_string()]);
    assert!(grants.is_empty());
}

#[test]
fn principal_parsing() {
    assert_eq!(
        Principal::parse("slack:U1").map(|p| p.to_string()),
        Ok("slack:U1".to_string())
    );
    assert_eq!(
        Principal::parse("SLACK:U1").map(|p| p.transport),
        Ok(Transport::Slack)
    );
    assert!(Principal::parse("U1").is_err());
    assert!(Principal::parse("irc:U1").is_err());
    assert!(Principal::parse("slack:").is_err());
    assert!(Principal::parse("slack:U 1").is_err());
    let p = Principal::parse("slack:U1").and_then(|p| p.with_channel_text("slack:C1"));
    assert_eq!(p.map(|p| p.channel), Ok(Some("C1".to_string())));
    assert!(Principal::parse("slack:U1")
        .and_then(|p| p.with_channel_text("discord:C1"))
        .is_err());
}

proptest::proptest! {
    /// Whatever the ids, nobody outside squads.yaml gets anything, and a bound
    /// channel never yields another squad's source.
    #[test]
    fn deny_by_default(user in "[A-Za-z0-9_]{1,12}", channel in proptest::option::of("[A-Z_]{1,8}")) {
        let config = config();
        let mut principal = slack(&user);
        if let Some(c) = &channel { principal = principal.in_channel(c.clone()); }
        match resolve(&config, &principal) {
            Err(_) => {}
            Ok(access) => {
                proptest::prop_assert!(["U_PAY", "U_BOTH", "U_USER"].contains(&user.as_str()));
                if let Some(bound) = &access.channel_squad {
                    for grant in access.grants.values() {
                        proptest::prop_assert!(grant.squads.iter().all(|s| s == bound));
                    }
                }
            }
        }
    }
}
