//! Shared fixtures: real databases on 127.0.0.1, unique names, gates over them.

use std::collections::HashMap;
use std::sync::Arc;

use investigator::access::{self, Access, Principal, Transport};
use investigator::config::{self, Config};
use investigator::engine::{CallError, Gate};
use investigator::evidence::{Content, Table};
use investigator::sources::{BuildContext, CallContext, Registry, Source, Sources};
use investigator::store::Store;
use serde_json::json;

pub fn pg_url() -> String {
    std::env::var("INVESTIGATOR_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn mysql_url() -> String {
    std::env::var("INVESTIGATOR_TEST_MYSQL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A short unique prefix for schemas and databases this test creates.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("inv_{prefix}_{}", &id[..10])
}

pub fn parse_config(sources: &str, squads: &str) -> Config {
    let env: HashMap<String, String> = HashMap::new();
    match config::parse("sources.yaml", sources, "squads.yaml", Some(squads), &env) {
        Ok(config) => config,
        Err(err) => panic!("test configuration rejected: {err}"),
    }
}

pub struct Harness {
    pub config: Config,
    pub gate: Gate,
}

impl Harness {
    pub async fn new(config: Config) -> Harness {
        Harness::with_context(config, BuildContext::default()).await
    }

    /// With a build context, e.g. a `config_dir` that relative paths resolve against.
    pub async fn with_context(config: Config, ctx: BuildContext) -> Harness {
        let store = Store::open_in_memory().await.expect("in-memory store");
        let sources = Sources::build(&config, &Registry::builtin(), &ctx);
        Harness {
            gate: Gate::new(sources, store),
            config,
        }
    }

    pub fn access(&self, user: &str) -> Access {
        access::resolve(&self.config, &Principal::new(Transport::Slack, user))
            .expect("principal resolves")
    }

    pub async fn query(&self, user: &str, source: &str, sql: &str) -> Result<Table, CallError> {
        let outcome = self
            .gate
            .call(
                &self.access(user),
                source,
                "run_query",
                &json!({ "sql": sql }),
                &CallContext::default(),
            )
            .await;
        outcome.result.map(|output| match output.content {
            Content::Table(table) => table,
            other => panic!("expected a table, got {other:?}"),
        })
    }

    pub fn source(&self, name: &str) -> Arc<dyn Source> {
        self.gate
            .sources()
            .get(name)
            .cloned()
            .expect("source built")
    }
}

/// Expands `{app}` / `{secret}` placeholders.
pub fn fill(sql: &str, app: &str, secret: &str) -> String {
    sql.replace("{app}", app).replace("{secret}", secret)
}

/// Which store backend a parametrised test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// A store location of its own: a file in a temporary directory, or a fresh
/// schema on the test PostgreSQL reached through `search_path`. Call
/// [`TestStore::cleanup`] at the end; a failed test leaves its `inv_store_*`
/// schema behind for inspection.
pub struct TestStore {
    pub location: String,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

impl TestStore {
    pub async fn new(kind: StoreKind) -> TestStore {
        match kind {
            StoreKind::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                TestStore {
                    location: dir.path().join("store.db").display().to_string(),
                    _dir: Some(dir),
                    schema: None,
                }
            }
            StoreKind::Postgres => {
                let schema = unique("store");
                let admin = pg_admin().await;
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&admin)
                    .await
                    .expect("create schema");
                admin.close().await;
                let url = pg_url();
                let sep = if url.contains('?') { '&' } else { '?' };
                TestStore {
                    // `-c search_path=<schema>`, URL-encoded: every connection
                    // of the store's pool lands in this test's schema.
                    location: format!("{url}{sep}options=-csearch_path%3D{schema}"),
                    _dir: None,
                    schema: Some(schema),
                }
            }
        }
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.location).await.expect("open store")
    }

    pub async fn cleanup(self) {
        if let Some(schema) = &self.schema {
            let admin = pg_admin().await;
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&admin)
                .await
                .expect("drop schema");
            admin.close().await;
        }
    }
}

async fn pg_admin() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg_url())
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (see README: tests need it)")
}

/// Declares `mod $name { sqlite, postgres }` test pairs running the async
/// `fn $name(StoreKind)` once per backend.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::suite::common::StoreKind::Sqlite).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::suite::common::StoreKind::Postgres).await
                }
            }
        )*
    };
}

/// The test-only TLS material in tests/fixtures/tls.
pub fn tls_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls")).join(name)
}

/// HTTPS in front of a plain fake: a certificate for localhost from the private CA
/// in tests/fixtures/tls; with `client_certs`, a client certificate from that CA is
/// required too. The TLS is terminated here and the bytes relayed to `plain_url`.
pub async fn tls_front(plain_url: &str, client_certs: bool) -> String {
    use std::sync::Arc as StdArc;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::server::WebPkiClientVerifier;
    use tokio_rustls::rustls::{crypto::ring, RootCertStore, ServerConfig};

    let provider = StdArc::new(ring::default_provider());
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(tls_fixture("server.pem"))
            .expect("server.pem")
            .collect::<Result<_, _>>()
            .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(tls_fixture("server.key")).expect("server.key");
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocols");
    let builder = if client_certs {
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(tls_fixture("ca.pem")).expect("ca.pem") {
            roots.add(ca.expect("ca")).expect("root");
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(StdArc::new(roots), provider)
            .build()
            .expect("client verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder.with_single_cert(certs, key).expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(StdArc::new(config));
    let backend = plain_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let backend = backend.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate (or has none) ends the handshake.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                if let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    format!("https://localhost:{port}")
}

/// The evidence item the gate would record for `output` (id E1), to look at what the
/// model is sent (`compact_for_model`).
pub fn evidence_of(
    source: &str,
    kind: &str,
    tool: &str,
    arguments: serde_json::Value,
    output: &investigator::sources::ToolOutput,
) -> investigator::evidence::log::EvidenceItem {
    investigator::evidence::log::EvidenceItem {
        id: "E1".into(),
        source: source.into(),
        kind: kind.into(),
        tool: tool.into(),
        arguments,
        statement: output.statement.clone(),
        at: chrono::Utc::now(),
        duration_ms: 1,
        content: Some(output.content.clone()),
        error: None,
        note: output.note.clone(),
        attachments: output.attachments.clone(),
    }
}
