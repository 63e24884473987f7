//! The database: sqlx over SQLite (the embedded default, a file under the data dir) or
//! PostgreSQL (production), chosen by URL, with one set of migrations for both.
//!
//! Every query is written once (`$n` placeholders, which SQLite also reads; only types both
//! engines share: text, 64-bit integers, doubles, booleans) and run on whichever pool the URL
//! chose through [`on_pool!`], which type-checks the query against both drivers.
//! Times are RFC 3339 UTC text ([`now`]); JSON documents are text. Tables follow Reflector's
//! (docs/contracts/events-and-api.md §6) plus reflow's additions: the event log ([`events`]), the
//! latest progress per step, and one row per activity attempt.

pub mod attempts;
pub mod backfill;
pub mod backlog;
pub mod events;
pub mod meetings;
pub mod pipelines;
pub mod progress;
pub mod purges;
pub mod shadows;
pub mod transcripts;

use std::time::SystemTime;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

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

/// The pool of one engine.
#[derive(Clone, Debug)]
pub enum Pool {
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// Run `$body` with `$pool` bound to the concrete pool (the body is compiled once per engine).
#[macro_export]
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db.pool() {
            $crate::db::Pool::Sqlite($pool) => $body,
            $crate::db::Pool::Postgres($pool) => $body,
        }
    };
}

/// A connection pool to reflow's database.
#[derive(Clone, Debug)]
pub struct Db {
    pool: Pool,
    url: String,
}

impl Db {
    /// Connect to `url` (`sqlite:///path/reflow.db`, `sqlite::memory:`,
    /// `postgres://user@host:port/db`) and bring the schema up to date. A SQLite file and its
    /// directory are created when missing.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        let unavailable =
            |e: &dyn std::fmt::Display| DbError::Unavailable(format!("{}: {e}", redact(url)));
        let pool = if url.starts_with("sqlite:") {
            let options: SqliteConnectOptions = url
                .parse()
                .map_err(|e| DbError::Config(format!("{}: {e}", redact(url))))?;
            let path = options.get_filename().to_owned();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    DbError::Config(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL's own recommendation: synced at checkpoints, not at every commit (still
                // consistent after a crash; every attempt row is a commit).
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(std::time::Duration::from_secs(10));
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    // One writer at a time is all SQLite allows anyway.
                    .max_connections(4)
                    .acquire_timeout(std::time::Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .map_err(|e| unavailable(&e))?,
            )
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(std::time::Duration::from_secs(10))
                    .connect(url)
                    .await
                    .map_err(|e| unavailable(&e))?,
            )
        } else {
            return Err(DbError::Config(format!(
                "{} is not a database URL; use sqlite:///path/reflow.db or postgres://user@host/db",
                redact(url)
            )));
        };
        let migrated = match &pool {
            Pool::Sqlite(p) => MIGRATOR.run(p).await,
            Pool::Postgres(p) => MIGRATOR.run(p).await,
        };
        migrated
            .map_err(|e| DbError::Unavailable(format!("migrations on {}: {e}", redact(url))))?;
        Ok(Db {
            pool,
            url: redact(url),
        })
    }

    /// The pool, for queries (see [`on_pool!`]).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The engine.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
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
