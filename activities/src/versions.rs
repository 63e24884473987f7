//! Registered pipeline versions as a worker sees them: a process-wide, content-addressed cache
//! over `pipeline_version` ([`crate::db::pipelines`]) and the `resolve_pipeline` local
//! activity that hands a run its definition (`workflow::interpreter::resolve` says why a local
//! activity: its result is recorded in history, so the workflow stays deterministic and a
//! replay needs no database).
//!
//! The cache maps a hash to its definition. Every definition is hash-checked when it is loaded
//! ([`crate::db::pipelines::VersionRow::decode`]), and a hash's content can never change, so
//! an entry is never invalidated; a miss reads the database again (a version registered after
//! the worker started). One cache per database, shared by every worker of the process.

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use workflow::Pipeline;
use workflow::interpreter::resolve::{PIPELINE_NOT_REGISTERED, ResolveRequest};

use crate::db::{Db, DbError};
use crate::error::ActivityFailure;

type Cache = Arc<RwLock<HashMap<String, Arc<Pipeline>>>>;

/// The registered versions of one database, cached by hash.
#[derive(Clone, Debug)]
pub struct Versions {
    db: Db,
    cache: Cache,
}

impl Versions {
    /// The database the versions are registered in.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The process-wide cache of `db`'s registered versions.
    pub fn of(db: &Db) -> Versions {
        static CACHES: OnceLock<Mutex<HashMap<String, Cache>>> = OnceLock::new();
        let cache = CACHES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(db.url().to_owned())
            .or_default()
            .clone();
        Versions {
            db: db.clone(),
            cache,
        }
    }

    /// Load every registered version (a worker does this before it polls); how many there are.
    /// A row that fails its hash check is an error: the database was tampered with.
    pub async fn preload(&self) -> Result<usize, DbError> {
        let rows = self.db.pipeline_versions(None).await?;
        let mut loaded = Vec::with_capacity(rows.len());
        for row in &rows {
            loaded.push(row.decode()?.pipeline);
        }
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for p in loaded {
            let p = cache.entry(p.hash.clone()).or_insert_with(|| Arc::new(p));
            workflow::pipeline::store::insert(p);
        }
        Ok(cache.len())
    }

    /// The definition registered under `hash`: from the cache, else from the database
    /// (hash-checked, then cached); `None` when it is not registered.
    pub async fn get(&self, hash: &str) -> Result<Option<Arc<Pipeline>>, DbError> {
        if let Some(p) = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(hash)
        {
            return Ok(Some(p.clone()));
        }
        let Some(row) = self.db.pipeline_version(hash).await? else {
            return Ok(None);
        };
        let p = Arc::new(row.decode()?.pipeline);
        workflow::pipeline::store::insert(&p);
        self.cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(hash.to_owned(), p.clone());
        Ok(Some(p))
    }

    /// Have the children of lean-history runs read their graphs from this database's
    /// registered versions: a hash the process does not hold yet is loaded in the background
    /// (`workflow::pipeline::store`; the child's workflow task is retried meanwhile).
    pub fn serve_store(&self) {
        let versions = self.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        workflow::pipeline::store::set_loader(move |hash| {
            let (versions, hash) = (versions.clone(), hash.to_owned());
            runtime.spawn(async move {
                if let Err(e) = versions.get(&hash).await {
                    tracing::warn!(%hash, error = %e, "registered version not loaded");
                }
            });
        });
    }

    /// Whether `hash` is registered.
    pub async fn contains(&self, hash: &str) -> Result<bool, DbError> {
        Ok(self.get(hash).await?.is_some())
    }
}

/// The resolver of run definitions.
pub struct VersionActivities {
    versions: Versions,
}

impl VersionActivities {
    /// Resolve from `versions` (and load from them what a lean-history child misses,
    /// [`Versions::serve_store`]).
    pub fn new(versions: Versions) -> Self {
        versions.serve_store();
        VersionActivities { versions }
    }

    async fn resolve(&self, r: &ResolveRequest) -> Result<Pipeline, ActivityError> {
        let found = self
            .versions
            .get(&r.reference.hash)
            .await
            .map_err(|e| ActivityFailure::from(e).into_activity_error())?;
        match found {
            Some(p) if r.reference.names(&p) => Ok(r.answer(&p)),
            Some(p) => Err(not_registered(format!(
                "pipeline {} is not registered: hash {} is {}",
                r.reference,
                r.reference.hash,
                p.reference()
            ))),
            None => Err(not_registered(format!(
                "pipeline {} is not registered (hash {}): register it with `reflow apply`",
                r.reference, r.reference.hash
            ))),
        }
    }
}

fn not_registered(message: String) -> ActivityError {
    tracing::warn!(%message, "run refused");
    ActivityError::application(
        ApplicationFailure::builder(message)
            .type_name(PIPELINE_NOT_REGISTERED.to_owned())
            .non_retryable(true)
            .build(),
    )
}

#[activities]
impl VersionActivities {
    /// The definition of a run's registered version (the graph it runs of it).
    #[activity(name = "resolve_pipeline")]
    pub async fn resolve_pipeline(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: ResolveRequest,
    ) -> Result<Pipeline, ActivityError> {
        self.resolve(&input).await
    }
}
