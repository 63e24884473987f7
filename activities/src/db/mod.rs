//! The database: sqlx over SQLite (the embedded default, a file under the data dir) or
//! PostgreSQL (production), chosen by URL, with one set of migrations for both.
//!
//! Both backends go through sqlx's `Any` driver, so every query is written once: `$n`
//! placeholders, and only types both engines share (text, 64-bit integers, doubles, booleans).
//! Times are RFC 3339 UTC text ([`now`]); JSON documents are text. Tables follow Reflector's
//! (events-and-api.md §6) plus reflow's additions: the event log ([`events`]), the latest
//! progress per step, and one row per activity attempt.

pub mod events;
pub mod transcripts;

use std::time::SystemTime;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use crate::error::ActivityFailure;

/// The migrations under `activities/migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Errors of the persistence layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is unusable.
    #[error("database configuration: {0}")]
    Config(String),
    /// The database cannot be reached, or the connection broke: retried.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A row that must exist does not.
    #[error("{what} {id:?} not found")]
    NotFound {
        /// What was looked up.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// A stored value cannot be read (bad JSON in a column, an unknown enum value).
    #[error("{what}: stored value is unreadable: {message}")]
    Corrupt {
        /// Where.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A query failed.
    #[error("{what}: {source}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// sqlx's error.
        #[source]
        source: sqlx::Error,
    },
}

impl DbError {
    /// Wrap a sqlx error from `what`, telling lost connections apart.
    pub fn query(what: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
        move |source| match source {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => DbError::Unavailable(format!("{what}: {source}")),
            source => DbError::Query { what, source },
        }
    }

    /// Whether this is a unique-constraint violation (a concurrent insert won).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Query { source: sqlx::Error::Database(e), .. }
            if e.kind() == sqlx::error::ErrorKind::UniqueViolation)
    }
}

impl From<DbError> for ActivityFailure {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Config(_) => ActivityFailure::Config(e.to_string()),
            DbError::NotFound { .. } => ActivityFailure::NotFound(e.to_string()),
            DbError::Corrupt { .. } => ActivityFailure::InvalidInput(e.to_string()),
            DbError::Unavailable(_) | DbError::Query { .. } => {
                ActivityFailure::Transient(e.to_string())
            }
        }
    }
}

/// Which engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite: one process; events are broadcast in process.
    Sqlite,
    /// PostgreSQL: events cross processes with `LISTEN/NOTIFY`.
    Postgres,
}

/// A connection pool to reflow's database.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    url: String,
}

impl Db {
    /// Connect to `url` (`sqlite:///path/reflow.db`, `sqlite::memory:`,
    /// `postgres://user@host:port/db`) and bring the schema up to date. A SQLite file and its
    /// directory are created when missing.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(DbError::Config(format!(
                "{} is not a database URL; use sqlite:///path/reflow.db or postgres://user@host/db",
                redact(url)
            )));
        };
        let mut full = url.to_owned();
        if backend == Backend::Sqlite && !url.contains(":memory:") {
            if let Some(path) = url
                .strip_prefix("sqlite://")
                .map(|p| p.split('?').next().unwrap_or(p))
                .filter(|p| !p.is_empty())
                && let Some(dir) = std::path::Path::new(path).parent()
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    DbError::Config(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            if !url.contains("mode=") {
                full.push_str(if url.contains('?') {
                    "&mode=rwc"
                } else {
                    "?mode=rwc"
                });
            }
        }
        let pool = AnyPoolOptions::new()
            // One writer at a time is all SQLite allows anyway.
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(&full)
            .await
            .map_err(|e| DbError::Unavailable(format!("{}: {e}", redact(url))))?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(DbError::query("enable WAL"))?;
        }
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| DbError::Unavailable(format!("migrations on {}: {e}", redact(url))))?;
        Ok(Db {
            pool,
            backend,
            url: redact(url),
        })
    }

    /// The pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL without its password, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `url` with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Now, as the RFC 3339 UTC text the tables store.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
