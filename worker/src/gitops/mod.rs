//! `reflow plan` / `reflow apply`: what the repository declares about the cluster, compared
//! with what the cluster has, and the changes that make them equal. Idempotent: a second
//! `apply` finds nothing to change and says so.
//!
//! Declared, one module per kind of object:
//! - `namespace`: the namespace (`TEMPORAL_NAMESPACE`, default `default`) and its retention
//!   (`REFLOW_NAMESPACE_RETENTION_DAYS`, default 30): registered when missing, updated when the
//!   retention differs;
//! - `search_attributes`: reflow's custom search attributes ([`workflow::search::ALL`]), added
//!   when missing (a registered one of another type is reported, never removed: that would lose
//!   data);
//! - `schedule`: the `daily-poll` schedule (docs/contracts/daily.md §4) — present exactly when
//!   `DAILY_API_KEY` is set, every `REFLOW_DAILY_POLL_INTERVAL` seconds, else 180 s with a
//!   webhook secret and 15 s without, overlap SKIP, starting `PollDailyRecordings` pinned to the
//!   repository's `pipelines/daily-poll.yaml` (its hash is compared);
//! - `deployment`: with `REFLOW_DEPLOYMENT_NAME`, the Worker Deployment's current version:
//!   this build (`REFLOW_BUILD_ID`, [`crate::deployment`]), made current once its workers poll;
//!   runs pinned to the previous version finish on it;
//! - `pipelines`: every definition of the pipeline directory (and the built-in ones intake
//!   and the poll start) registered as an immutable version in reflow's database, which runs
//!   name by hash; a changed definition must bump its `version:`, and a new version is
//!   planned step by step, with the steps a re-run could reuse;
//! - `rollout`: `pipelines/rollout.yaml`, which registered version of each pipeline new runs
//!   get (current, a candidate on a ramp, per-room overrides), applied to the database intake
//!   reads it from.
//!
//! This module holds the one concept they share: the reconciliation itself — what is
//! declared ([`Desired`]), the [`Change`]s (printed `+ ~ -`), and the order [`plan`] reads and
//! [`apply`] writes them in (the namespace first: everything else lives in it).
//!
//! A new kind of object (e.g. a `pipelines.rs` for pipeline versions) is a module of its own
//! with a `plan` and an `apply` like the others', a [`Kind`], a field of [`Desired`], and one
//! line each in [`plan`] and [`apply`] (marked there).

use std::path::Path;

use workflow::Catalog;

use crate::runs::RunError;

mod deployment;
mod namespace;
mod pipelines;
mod rollout;
mod schedule;
mod search_attributes;

pub use namespace::DesiredNamespace;
pub use pipelines::{DesiredPipelines, git_commit, register, register_declared, unregistered};
pub use rollout::{DesiredRollouts, describe as describe_rollout};
pub use schedule::{DAILY_POLL, DAILY_POLL_YAML, DesiredSchedule, poll_interval};
pub use search_attributes::{
    missing_search_attributes, reflow_search_attributes, search_attributes,
};

/// Errors of plan/apply.
#[derive(Debug, thiserror::Error)]
pub enum GitOpsError {
    /// A declared pipeline is invalid.
    #[error(transparent)]
    Pipeline(#[from] RunError),
    /// reflow's database (registered pipeline versions).
    #[error(transparent)]
    Db(#[from] activities::db::DbError),
    /// Temporal refused a call.
    #[error("{kind} {id}: {message}")]
    Temporal {
        /// What kind of object.
        kind: Kind,
        /// The object.
        id: String,
        /// Why.
        message: String,
    },
    /// The cluster has something the repository cannot reconcile automatically.
    #[error("{kind} {id}: {message}")]
    Conflict {
        /// What kind of object.
        kind: Kind,
        /// The object.
        id: String,
        /// What differs, and what to do.
        message: String,
    },
}

/// What a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Temporal namespace.
    Namespace,
    /// A custom search attribute of the namespace.
    SearchAttribute,
    /// A schedule.
    Schedule,
    /// A Worker Deployment (its current version).
    Deployment,
    /// A registered version of a pipeline definition.
    Pipeline,
    /// Which registered versions of a pipeline new runs get.
    Rollout,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Namespace => "namespace",
            Kind::SearchAttribute => "search attribute",
            Kind::Schedule => "schedule",
            Kind::Deployment => "worker deployment",
            Kind::Pipeline => "pipeline",
            Kind::Rollout => "rollout",
        })
    }
}

/// Everything the repository declares.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// The namespace, when declared (absent: the namespace is left alone).
    pub namespace: Option<DesiredNamespace>,
    /// Custom search attributes (name, `Keyword` | `Int` | …) the namespace must have.
    pub search_attributes: Vec<(String, String)>,
    /// Schedules by id; ids listed in `absent` must not exist.
    pub schedules: Vec<DesiredSchedule>,
    /// Schedule ids that must not exist (e.g. the poll without a Daily API key).
    pub absent: Vec<String>,
    /// The deployment whose current version must be this build.
    pub deployment: Option<crate::deployment::Deployment>,
    /// The pipeline definitions to register as versions (absent: versions are left alone).
    pub pipelines: Option<DesiredPipelines>,
    /// The rollouts to apply (absent: rollouts are left alone).
    pub rollouts: Option<DesiredRollouts>,
}

impl Desired {
    /// What the settings and the pipeline directory declare.
    pub fn from_settings(
        settings: &crate::settings::Settings,
        dir: Option<&Path>,
        catalog: &Catalog,
    ) -> Result<Desired, GitOpsError> {
        let var = |k: &str| settings.var(k).filter(|v| !v.trim().is_empty());
        let mut d = Desired {
            namespace: Some(DesiredNamespace::declared(&var)),
            search_attributes: reflow_search_attributes(),
            deployment: crate::deployment::Deployment::from_settings(settings),
            ..Desired::default()
        };
        match schedule::daily_poll(&var, dir, catalog)? {
            Some(s) => d.schedules.push(s),
            None => d.absent.push(DAILY_POLL.into()),
        }
        Ok(d)
    }

    /// The namespace the declared objects live in: the declared one, else the client's.
    fn namespace_name(&self, client: &temporalio_client::Client) -> String {
        self.namespace.as_ref().map_or_else(
            || temporalio_client::NamespacedClient::namespace(client),
            |n| n.name.clone(),
        )
    }
}

/// One difference between the repository and the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Create the object.
    Create {
        /// What kind.
        kind: Kind,
        /// Its id.
        id: String,
        /// What it will be.
        summary: String,
    },
    /// Update the object.
    Update {
        /// What kind.
        kind: Kind,
        /// Its id.
        id: String,
        /// Each difference, `field: old → new`.
        diffs: Vec<String>,
    },
    /// Delete the object.
    Delete {
        /// What kind.
        kind: Kind,
        /// Its id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Nothing to do.
    Unchanged {
        /// What kind.
        kind: Kind,
        /// Its id.
        id: String,
    },
}

impl Change {
    /// Whether applying it changes the cluster.
    pub fn is_change(&self) -> bool {
        !matches!(self, Change::Unchanged { .. })
    }

    /// What it is about.
    pub fn kind(&self) -> Kind {
        match self {
            Change::Create { kind, .. }
            | Change::Update { kind, .. }
            | Change::Delete { kind, .. }
            | Change::Unchanged { kind, .. } => *kind,
        }
    }

    /// The object's id.
    pub fn id(&self) -> &str {
        match self {
            Change::Create { id, .. }
            | Change::Update { id, .. }
            | Change::Delete { id, .. }
            | Change::Unchanged { id, .. } => id,
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Create { kind, id, summary } => write!(f, "+ {kind} {id}: create ({summary})"),
            // A new pipeline version: what it is, then one line per change under it.
            Change::Update {
                kind: Kind::Pipeline,
                id,
                diffs,
            } => {
                write!(f, "~ {} {id}:", Kind::Pipeline)?;
                for (i, d) in diffs.iter().enumerate() {
                    write!(f, "{}{d}", if i == 0 { " " } else { "\n    " })?;
                }
                Ok(())
            }
            Change::Update { kind, id, diffs } => {
                write!(f, "~ {kind} {id}: update ({})", diffs.join("; "))
            }
            Change::Delete { kind, id, reason } => write!(f, "- {kind} {id}: delete ({reason})"),
            Change::Unchanged { kind, id } => write!(f, "  {kind} {id}: unchanged"),
        }
    }
}

/// The changes that make the cluster match `desired`.
pub async fn plan(
    client: &temporalio_client::Client,
    desired: &Desired,
) -> Result<Vec<Change>, GitOpsError> {
    let mut out = Vec::new();
    let mut namespace_exists = true;
    if let Some(ns) = &desired.namespace {
        let change = namespace::plan(client, ns).await?;
        namespace_exists = !matches!(change, Change::Create { .. });
        out.push(change);
    }
    out.extend(
        search_attributes::plan(
            client,
            &desired.namespace_name(client),
            &desired.search_attributes,
            namespace_exists,
        )
        .await?,
    );
    // Versions before schedules: a schedule's runs name a registered version.
    if let Some(p) = &desired.pipelines {
        out.extend(pipelines::plan(p).await?);
    }
    // Rollouts after versions: they name registered versions.
    if let Some(r) = &desired.rollouts {
        let declared = desired
            .pipelines
            .as_ref()
            .map_or(&[][..], |p| &p.declared[..]);
        out.extend(rollout::plan(r, declared).await?);
    }
    out.extend(schedule::plan(client, &desired.schedules, &desired.absent).await?);
    // A new kind of object plans here.
    if let Some(d) = &desired.deployment {
        out.push(deployment::plan(client, d).await?);
    }
    Ok(out)
}

/// Make the changes of `plan(client, desired)`; returns them.
pub async fn apply(
    client: &temporalio_client::Client,
    desired: &Desired,
) -> Result<Vec<Change>, GitOpsError> {
    let changes = plan(client, desired).await?;
    // The namespace first (attributes and schedules live in it), then the attributes in one
    // call.
    if let Some(ns) = &desired.namespace {
        namespace::apply(client, ns, &changes).await?;
    }
    search_attributes::apply(
        client,
        &desired.namespace_name(client),
        &desired.search_attributes,
        &changes,
    )
    .await?;
    if let Some(p) = &desired.pipelines {
        pipelines::apply(p, &changes).await?;
    }
    if let Some(r) = &desired.rollouts {
        rollout::apply(r, &changes).await?;
    }
    for c in &changes {
        match c.kind() {
            Kind::Schedule => schedule::apply(client, &desired.schedules, c).await?,
            Kind::Deployment => {
                if let Some(d) = &desired.deployment {
                    deployment::apply(client, d, c).await?;
                }
            }
            // A new kind of object applies here.
            Kind::Namespace | Kind::SearchAttribute | Kind::Pipeline | Kind::Rollout => {}
        }
    }
    Ok(changes)
}

/// A refused call about `id`, as a [`GitOpsError`].
fn rpc_error(kind: Kind, id: &str) -> impl Fn(tonic::Status) -> GitOpsError + '_ {
    move |e| GitOpsError::Temporal {
        kind,
        id: id.to_owned(),
        message: format!("{:?}: {}", e.code(), e.message()),
    }
}
