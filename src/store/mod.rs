//! Persistent state: the hash-chained audit log, sessions (messages, evidence,
//! reports), usage per squad and day, processed chat events and feedback.
//!
//! Two backends with one schema: SQLite (a file, zero setup) and PostgreSQL
//! (a `postgres://` URL, shared by several replicas). Statements are written
//! once in the common subset (`$n` placeholders, which SQLite accepts too;
//! TEXT RFC 3339 timestamps; 64-bit integers) and run on either pool through
//! [`on_pool!`]; only what truly differs (opening, migrations, the audit
//! append lock) is spelled per dialect.

/// Runs `$body` with `$pool` bound to the store's concrete pool. The body is
/// compiled once per driver, so each uses sqlx's native types and options
/// (no `Any` driver: it would lose SQLite's pragmas and typed decoding).
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}

pub mod audit;
pub mod sessions;

pub use audit::{audit_line, AuditEntry, AuditFilter, AuditRecord, AuditVerification, Verdict};
pub use sessions::{
    FeedbackRow, LeaseOutcome, NewReport, Pruned, SessionRow, SessionStatus, StoredReport, UsageRow,
};

use std::borrow::Cow;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Errors name the store's file so an operator knows which one is at fault.
/// The underlying error's text is part of the message (not a `source()`), so
/// `{}` and `{:#}` both print it exactly once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid store location {location:?}: {error}")]
    InvalidLocation {
        location: String,
        error: sqlx::Error,
    },

    #[error("cannot create directory {} for store {}: {error}", dir.display(), location)]
    CreateDir {
        location: String,
        dir: PathBuf,
        error: std::io::Error,
    },

    #[error("cannot open store {location}: {error}")]
    Open {
        location: String,
        error: sqlx::Error,
    },

    #[error("cannot migrate store {location}: {error}")]
    Migrate {
        location: String,
        error: MigrateError,
    },

    #[error("store {location}: query failed: {error}")]
    Query {
        location: String,
        error: sqlx::Error,
    },

    /// Another holder took the session's lease (ours expired): what we were
    /// about to write is dropped rather than overwrite theirs.
    #[error("store {location}: the lease on session {session} was lost")]
    LeaseLost { location: String, session: String },

    /// A row that cannot be decoded (bad timestamp, unknown verdict, ...):
    /// someone wrote to the file behind our back.
    #[error("store {location}: invalid data: {detail}")]
    Corrupt { location: String, detail: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Handle to the database; cheap to clone (shares the pool).
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// File path (or ":memory:"), or a PostgreSQL URL without its password
    /// and parameters, for error messages.
    location: Arc<str>,
}

#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Which SQL dialect a store speaks, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const MEMORY: &str = ":memory:";
/// Connections per replica to a shared PostgreSQL: enough for concurrent
/// investigations (each holds one only per statement or short transaction)
/// without exhausting the server's `max_connections` across replicas.
const PG_MAX_CONNECTIONS: u32 = 10;
/// How long a statement waits for a pooled connection before failing, so an
/// unreachable database surfaces as an error instead of a hang.
const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a location may be shown in messages and logs: a PostgreSQL URL loses
/// its password and parameters; a path is shown as given.
pub fn redacted_location(location: &str) -> String {
    if !is_postgres_location(location) {
        return location.to_owned();
    }
    match PgConnectOptions::from_str(location) {
        Ok(options) => pg_display(&options),
        // Unparsable: the password could sit anywhere in it.
        Err(_) => "postgres://…".to_owned(),
    }
}

fn pg_display(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    )
}

/// True for locations that name a PostgreSQL store.
pub fn is_postgres_location(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

impl Store {
    /// Opens and migrates the store. `location` is a file path, a `sqlite:`
    /// URL or ":memory:" (SQLite, created if missing with its parent
    /// directories), or a `postgres://` / `postgresql://` URL (the database
    /// must exist; the tables are created in the first schema of its
    /// `search_path`).
    pub async fn open(location: &str) -> Result<Store> {
        if is_postgres_location(location) {
            return Store::open_postgres(location).await;
        }
        if is_memory_location(location) {
            return Store::open_in_memory().await;
        }
        let options = if location.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(location).map_err(|error| Error::InvalidLocation {
                location: location.to_owned(),
                error,
            })?
        } else {
            // A plain path goes in verbatim: no URL decoding of '%' or '?'.
            SqliteConnectOptions::new().filename(location)
        };
        let path = options.get_filename().to_path_buf();
        let display = path.display().to_string();

        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Blocking, but a one-off at startup and tokio's fs feature is not
            // enabled here.
            std::fs::create_dir_all(dir).map_err(|error| Error::CreateDir {
                location: display.clone(),
                dir: dir.to_path_buf(),
                error,
            })?;
        }

        let options = options
            .create_if_missing(true)
            // WAL: readers (audit tail, verify) never block the appenders.
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable in WAL mode except for the last commits on
            // power loss; an OS or process crash loses nothing.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .map_err(|error| Error::Open {
                location: display.clone(),
                error,
            })?;
        Store::finish_open(Backend::Sqlite(pool), display).await
    }

    async fn open_postgres(location: &str) -> Result<Store> {
        let options =
            PgConnectOptions::from_str(location).map_err(|error| Error::InvalidLocation {
                location: redacted_location(location),
                error,
            })?;
        let display = pg_display(&options);
        let pool = PgPoolOptions::new()
            .max_connections(PG_MAX_CONNECTIONS)
            .acquire_timeout(PG_ACQUIRE_TIMEOUT)
            // Eager, like SQLite: a wrong URL fails at start, not mid-question.
            .connect_with(options)
            .await
            .map_err(|error| Error::Open {
                location: display.clone(),
                error,
            })?;
        Store::finish_open(Backend::Postgres(pool), display).await
    }

    /// A private in-memory database, for tests. The pool holds exactly one
    /// connection that is never recycled: closing it would drop the data.
    pub async fn open_in_memory() -> Result<Store> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|error| Error::Open {
                location: MEMORY.to_owned(),
                error,
            })?;
        Store::finish_open(Backend::Sqlite(pool), MEMORY.to_owned()).await
    }

    async fn finish_open(backend: Backend, location: String) -> Result<Store> {
        let migrate = |error| Error::Migrate {
            location: location.clone(),
            error,
        };
        // On PostgreSQL sqlx's migrator holds an advisory lock while it runs,
        // so replicas starting together migrate once.
        match &backend {
            Backend::Sqlite(pool) => {
                let migrator = migrator(Dialect::Sqlite).await.map_err(migrate)?;
                migrator.run(pool).await.map_err(migrate)?;
            }
            Backend::Postgres(pool) => {
                let migrator = migrator(Dialect::Postgres).await.map_err(migrate)?;
                migrator.run(pool).await.map_err(migrate)?;
            }
        }
        tracing::debug!(store = %location, "store opened");
        Ok(Store {
            backend,
            location: location.into(),
        })
    }

    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
            .map_err(|e| self.query_error(e))?;
        Ok(())
    }

    pub fn dialect(&self) -> Dialect {
        match &self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The SQLite pool, for the unit tests that inspect pragmas or play an
    /// attacker with raw file access.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SqlitePool {
        match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(_) => panic!("a SQLite-only test helper used on PostgreSQL"),
        }
    }

    /// The file path (or ":memory:"), or the password-free PostgreSQL URL,
    /// this store was opened on.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Waits for in-flight queries and closes every connection (which also
    /// checkpoints a SQLite WAL). Clones of this store become unusable.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }

    pub(crate) fn query_error(&self, error: sqlx::Error) -> Error {
        Error::Query {
            location: self.location.to_string(),
            error,
        }
    }

    pub(crate) fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt {
            location: self.location.to_string(),
            detail,
        }
    }
}

fn is_memory_location(location: &str) -> bool {
    let rest = location
        .strip_prefix("sqlite://")
        .or_else(|| location.strip_prefix("sqlite:"))
        .unwrap_or(location);
    let (db, params) = rest.split_once('?').unwrap_or((rest, ""));
    db == MEMORY || (location.starts_with("sqlite:") && params.contains("mode=memory"))
}

/// Migrations are compiled in so the binary never depends on files next to
/// it. Append new ones here; never edit an applied one (sqlx checks its
/// checksum and refuses to start).
fn migrations(dialect: Dialect) -> Vec<Migration> {
    let sql = |version: i64, name: &'static str, text: &'static str| {
        Migration::new(
            version,
            Cow::Borrowed(name),
            MigrationType::Simple,
            Cow::Borrowed(text),
            false,
        )
    };
    // Same versions and names per dialect, so both stores say the same thing
    // about which schema they are at.
    match dialect {
        Dialect::Sqlite => vec![
            sql(
                1,
                "audit",
                include_str!("../../migrations/sqlite/0001_audit.sql"),
            ),
            sql(
                2,
                "sessions",
                include_str!("../../migrations/sqlite/0002_sessions.sql"),
            ),
        ],
        Dialect::Postgres => vec![
            sql(
                1,
                "audit",
                include_str!("../../migrations/postgres/0001_audit.sql"),
            ),
            sql(
                2,
                "sessions",
                include_str!("../../migrations/postgres/0002_sessions.sql"),
            ),
        ],
    }
}

/// `MigrationSource` is sqlx's public way to build a `Migrator` at runtime;
/// the struct-literal route uses `#[doc(hidden)]` fields that sqlx may change.
#[derive(Debug)]
struct Embedded(Dialect);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<Vec<Migration>, BoxDynError>> + Send + 's>>
    {
        Box::pin(async move { Ok(migrations(self.0)) })
    }
}

async fn migrator(dialect: Dialect) -> std::result::Result<Migrator, MigrateError> {
    Migrator::new(Embedded(dialect)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_locations_are_recognised() {
        for l in [
            ":memory:",
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://?mode=memory",
        ] {
            assert!(is_memory_location(l), "{l}");
        }
        for l in [
            "audit.db",
            "sqlite://data/audit.db",
            "/tmp/mode=memory/x.db",
        ] {
            assert!(!is_memory_location(l), "{l}");
        }
    }

    #[test]
    fn migrations_are_ordered_unique_and_alike_per_dialect() {
        let names = |d| -> Vec<(i64, String)> {
            migrations(d)
                .iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect()
        };
        let versions: Vec<i64> = names(Dialect::Sqlite).iter().map(|m| m.0).collect();
        let mut sorted = versions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(versions, sorted);
        assert_eq!(names(Dialect::Sqlite), names(Dialect::Postgres));
    }

    #[test]
    fn postgres_passwords_are_never_shown() {
        let shown = redacted_location("postgresql://inv:s3cret@db:6432/app?sslmode=require");
        assert_eq!(shown, "postgres://inv@db:6432/app");
        assert_eq!(
            redacted_location("postgres://inv:s3cret@db:x/"),
            "postgres://…"
        );
        assert_eq!(redacted_location("data/store.db"), "data/store.db");
    }

    #[test]
    fn postgres_locations_are_recognised() {
        assert!(is_postgres_location("postgres://u@h/db"));
        assert!(is_postgres_location(
            "postgresql://u:p@h:5432/db?sslmode=disable"
        ));
        assert!(!is_postgres_location("store.db"));
        assert!(!is_postgres_location("sqlite://postgres://x"));
    }

    #[tokio::test]
    async fn in_memory_store_persists_across_queries() {
        let store = Store::open_in_memory().await.unwrap();
        store.ping().await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(store.pool())
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(n, 1);
        // ":memory:" via open() takes the same route.
        Store::open(":memory:").await.unwrap().ping().await.unwrap();
    }

    #[tokio::test]
    async fn open_sets_pragmas_and_creates_missing_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c/store.db");
        let store = Store::open(path.to_str().unwrap()).await.unwrap();
        assert!(path.exists());
        assert_eq!(store.location(), path.display().to_string());

        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(fk, 1);
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(busy, 5000);
        store.close().await;

        // Reopening runs the migrator again: already applied, checksums match.
        let again = Store::open(path.to_str().unwrap()).await.unwrap();
        again.ping().await.unwrap();
    }

    #[tokio::test]
    async fn open_accepts_sqlite_urls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/url.db");
        let url = format!("sqlite://{}", path.display());
        let store = Store::open(&url).await.unwrap();
        store.ping().await.unwrap();
        assert!(path.exists());
        // Messages name the file, not the URL.
        assert_eq!(store.location(), path.display().to_string());
    }

    #[tokio::test]
    async fn open_under_a_regular_file_names_the_location() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let path = blocker.join("sub/store.db");
        let err = Store::open(path.to_str().unwrap()).await.unwrap_err();
        assert!(matches!(err, Error::CreateDir { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains(&blocker.join("sub").display().to_string()),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn open_on_a_directory_names_the_location() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open(dir.path().to_str().unwrap()).await.unwrap_err();
        assert!(matches!(err, Error::Open { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn open_in_read_only_directory_names_the_location() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        // Root ignores permission bits; nothing to test then.
        if std::fs::write(ro.join("probe"), b"").is_ok() {
            return;
        }
        let path = ro.join("store.db");
        let err = Store::open(path.to_str().unwrap()).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[tokio::test]
    async fn plain_path_is_taken_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        // '%20' and '?' would be decoded / split if treated as a URL.
        let path = dir.path().join("odd%20name?x=1.db");
        Store::open(path.to_str().unwrap()).await.unwrap();
        assert!(path.exists());
    }
}
