//! `reflow plan` / `reflow apply`: what the repository declares about the cluster, compared
//! with what the cluster has, and the changes that make them equal. Idempotent: a second
//! `apply` finds nothing to change and says so.
//!
//! Declared:
//! - the namespace (`TEMPORAL_NAMESPACE`, default `default`) and its retention
//!   (`REFLOW_NAMESPACE_RETENTION_DAYS`, default 30): registered when missing, updated when the
//!   retention differs;
//! - reflow's custom search attributes ([`workflow::search::ALL`]), added when missing (a
//!   registered one of another type is reported, never removed: that would lose data);
//! - the `daily-poll` schedule (docs/contracts/daily.md §4) — present exactly when `DAILY_API_KEY`
//!   is set, every `REFLOW_DAILY_POLL_INTERVAL` seconds, else 180 s with a webhook secret and 15 s
//!   without, overlap SKIP, starting `PollDailyRecordings` pinned to the repository's
//!   `pipelines/daily-poll.yaml` (its hash is compared);
//! - with `REFLOW_DEPLOYMENT_NAME`, the Worker Deployment's current version: this build
//!   (`REFLOW_BUILD_ID`, [`crate::deployment`]), made current once its workers poll; runs
//!   pinned to the previous version finish on it.
//!
//! One concept, one file: the reconciliation of what is declared with what the cluster has.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use temporalio_client::schedules::{
    CreateScheduleOptions, DeleteScheduleOptions, ScheduleAction, ScheduleOverlapPolicy,
    ScheduleSpec,
};
use temporalio_client::{Client, UntypedWorkflow};
use workflow::{Catalog, Pipeline, RunInput, payload};

use temporalio_common::protos::temporal::api::enums::v1::IndexedValueType;
use temporalio_common::protos::temporal::api::namespace::v1::NamespaceConfig;
use temporalio_common::protos::temporal::api::operatorservice::v1::{
    AddSearchAttributesRequest, ListSearchAttributesRequest,
};
use temporalio_common::protos::temporal::api::workflowservice::v1::{
    DescribeNamespaceRequest, RegisterNamespaceRequest, UpdateNamespaceRequest,
};

use crate::runs::{self, RunError};

/// The poll schedule's id.
pub const DAILY_POLL: &str = "daily-poll";
/// The pipeline shipped with the binary (`pipelines/daily-poll.yaml` at build time).
pub const DAILY_POLL_YAML: &str = include_str!("../../pipelines/daily-poll.yaml");

/// Errors of plan/apply.
#[derive(Debug, thiserror::Error)]
pub enum GitOpsError {
    /// A declared pipeline is invalid.
    #[error(transparent)]
    Pipeline(#[from] RunError),
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
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Namespace => "namespace",
            Kind::SearchAttribute => "search attribute",
            Kind::Schedule => "schedule",
            Kind::Deployment => "worker deployment",
        })
    }
}

/// The namespace the repository declares.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredNamespace {
    /// Its name.
    pub name: String,
    /// How long closed runs' histories are kept.
    pub retention: Duration,
}

/// A schedule the repository declares.
#[derive(Debug, Clone)]
pub struct DesiredSchedule {
    /// Schedule id.
    pub id: String,
    /// Trigger interval.
    pub every: Duration,
    /// The pipeline each trigger starts.
    pub pipeline: Pipeline,
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
}

/// The Daily poll interval (docs/contracts/daily.md §4).
pub fn poll_interval(override_s: Option<u64>, webhook_secret: bool) -> Duration {
    match override_s.filter(|s| *s > 0) {
        Some(s) => Duration::from_secs(s),
        None if webhook_secret => Duration::from_secs(180),
        None => Duration::from_secs(15),
    }
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
            namespace: Some(DesiredNamespace {
                name: var("TEMPORAL_NAMESPACE").unwrap_or_else(|| "default".into()),
                retention: Duration::from_secs(
                    86_400
                        * var("REFLOW_NAMESPACE_RETENTION_DAYS")
                            .and_then(|s| s.parse::<u64>().ok())
                            .filter(|d| *d > 0)
                            .unwrap_or(30),
                ),
            }),
            search_attributes: reflow_search_attributes(),
            deployment: crate::deployment::Deployment::from_settings(settings),
            ..Desired::default()
        };
        if var("DAILY_API_KEY").is_some() {
            let pipeline = match dir
                .map(|d| d.join("daily-poll.yaml"))
                .filter(|p| p.exists())
            {
                Some(path) => runs::load_pipeline(&path, catalog)?,
                None => workflow::parse_and_validate(
                    "pipelines/daily-poll.yaml (built in)",
                    DAILY_POLL_YAML,
                    catalog,
                )
                .map_err(RunError::from)?,
            };
            d.schedules.push(DesiredSchedule {
                id: DAILY_POLL.into(),
                every: poll_interval(
                    var("REFLOW_DAILY_POLL_INTERVAL").and_then(|s| s.parse().ok()),
                    var("DAILY_WEBHOOK_SECRET").is_some(),
                ),
                pipeline,
            });
        } else {
            d.absent.push(DAILY_POLL.into());
        }
        Ok(d)
    }
}

/// reflow's search attributes, as `Desired::search_attributes` takes them.
pub fn reflow_search_attributes() -> Vec<(String, String)> {
    workflow::search::ALL
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect()
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
            Change::Update { kind, id, diffs } => {
                write!(f, "~ {kind} {id}: update ({})", diffs.join("; "))
            }
            Change::Delete { kind, id, reason } => write!(f, "- {kind} {id}: delete ({reason})"),
            Change::Unchanged { kind, id } => write!(f, "  {kind} {id}: unchanged"),
        }
    }
}

fn summary(s: &DesiredSchedule) -> String {
    format!(
        "every {}s, {} v{} {}, overlap skip",
        s.every.as_secs(),
        s.pipeline.name,
        s.pipeline.version,
        &s.pipeline.hash[..12]
    )
}

/// The current interval and pipeline hash of a schedule, `None` if it does not exist.
async fn current(client: &Client, id: &str) -> Result<Option<(u64, String)>, GitOpsError> {
    let handle = client.get_schedule_handle(id);
    let described = match handle.describe(Default::default()).await {
        Ok(d) => d,
        Err(temporalio_client::schedules::ScheduleError::Rpc(s))
            if s.code() == tonic::Code::NotFound =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(GitOpsError::Temporal {
                kind: Kind::Schedule,
                id: id.into(),
                message: e.to_string(),
            });
        }
    };
    let every = described
        .raw()
        .schedule
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.interval.first())
        .and_then(|i| i.interval.as_ref())
        .map_or(0, |d| d.seconds as u64);
    #[allow(unreachable_patterns)] // the enum is non-exhaustive
    let args = match described.action() {
        temporalio_client::schedules::ScheduleDescriptionAction::StartWorkflow(a) => {
            a.raw_args().map(<[_]>::to_vec)
        }
        _ => None,
    };
    let hash = args
        .as_deref()
        .and_then(|p| p.first())
        .and_then(|p| serde_json::from_slice::<Value>(&p.data).ok())
        .and_then(|v| v["pipeline"]["hash"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok(Some((every, hash)))
}

/// The changes that make the cluster match `desired`.
pub async fn plan(client: &Client, desired: &Desired) -> Result<Vec<Change>, GitOpsError> {
    let mut out = Vec::new();
    let mut namespace_exists = true;
    if let Some(ns) = &desired.namespace {
        let change = plan_namespace(client, ns).await?;
        namespace_exists = !matches!(change, Change::Create { .. });
        out.push(change);
    }
    out.extend(plan_search_attributes(client, desired, namespace_exists).await?);
    for s in &desired.schedules {
        out.push(match current(client, &s.id).await? {
            None => Change::Create {
                kind: Kind::Schedule,
                id: s.id.clone(),
                summary: summary(s),
            },
            Some((every, hash)) => {
                let mut diffs = Vec::new();
                if every != s.every.as_secs() {
                    diffs.push(format!("interval: {every}s → {}s", s.every.as_secs()));
                }
                if hash != s.pipeline.hash {
                    diffs.push(format!(
                        "pipeline: {} → {}",
                        hash.get(..12).unwrap_or(&hash),
                        &s.pipeline.hash[..12]
                    ));
                }
                if diffs.is_empty() {
                    Change::Unchanged {
                        kind: Kind::Schedule,
                        id: s.id.clone(),
                    }
                } else {
                    Change::Update {
                        kind: Kind::Schedule,
                        id: s.id.clone(),
                        diffs,
                    }
                }
            }
        });
    }
    for id in &desired.absent {
        if current(client, id).await?.is_some() {
            out.push(Change::Delete {
                kind: Kind::Schedule,
                id: id.clone(),
                reason: "not declared (DAILY_API_KEY unset)".into(),
            });
        }
    }
    if let Some(d) = &desired.deployment {
        out.push(crate::deployment::plan(client, d).await?);
    }
    Ok(out)
}

fn action(s: &DesiredSchedule) -> ScheduleAction {
    let input = RunInput {
        pipeline: s.pipeline.clone(),
        graph: None,
        input: serde_json::json!({}),
        parent: None,
        search_attributes: Default::default(),
    };
    ScheduleAction::start_workflow(
        UntypedWorkflow::new(s.pipeline.name.clone()),
        payload::to_raw(&input),
        s.pipeline.main.task_queue.clone(),
        s.id.clone(),
    )
}

/// Make the changes of `plan(client, desired)`; returns them.
pub async fn apply(client: &Client, desired: &Desired) -> Result<Vec<Change>, GitOpsError> {
    let changes = plan(client, desired).await?;
    let err = |id: &str| {
        let id = id.to_owned();
        move |e: temporalio_client::schedules::ScheduleError| GitOpsError::Temporal {
            kind: Kind::Schedule,
            id,
            message: e.to_string(),
        }
    };
    // The namespace first (attributes and schedules live in it), then the attributes in one
    // call.
    if let Some(ns) = &desired.namespace {
        match changes.iter().find(|c| c.kind() == Kind::Namespace) {
            Some(Change::Create { .. }) => register_namespace(client, ns).await?,
            Some(Change::Update { .. }) => update_namespace(client, ns).await?,
            _ => {}
        }
    }
    let new_attributes: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Create {
                kind: Kind::SearchAttribute,
                id,
                ..
            } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    if !new_attributes.is_empty() {
        add_search_attributes(client, desired, &new_attributes).await?;
    }
    for c in &changes {
        match c {
            Change::Create {
                kind: Kind::Schedule,
                id,
                ..
            } => {
                let s = desired
                    .schedules
                    .iter()
                    .find(|s| &s.id == id)
                    .expect("planned");
                client
                    .create_schedule(
                        id.clone(),
                        CreateScheduleOptions::builder()
                            .action(action(s))
                            .spec(ScheduleSpec::from_interval(s.every))
                            .overlap_policy(ScheduleOverlapPolicy::Skip)
                            .build(),
                    )
                    .await
                    .map_err(err(id))?;
            }
            Change::Update {
                kind: Kind::Schedule,
                id,
                ..
            } => {
                let s = desired
                    .schedules
                    .iter()
                    .find(|s| &s.id == id)
                    .expect("planned")
                    .clone();
                let (every, act) = (s.every, action(&s));
                client
                    .get_schedule_handle(id.clone())
                    .update(
                        move |u| {
                            u.set_spec(ScheduleSpec::from_interval(every))
                                .set_action(act)
                                .set_overlap_policy(ScheduleOverlapPolicy::Skip);
                        },
                        Default::default(),
                    )
                    .await
                    .map_err(err(id))?;
            }
            Change::Delete {
                kind: Kind::Schedule,
                id,
                ..
            } => {
                client
                    .get_schedule_handle(id.clone())
                    .delete(DeleteScheduleOptions::default())
                    .await
                    .map_err(err(id))?;
            }
            Change::Create {
                kind: Kind::Deployment,
                ..
            }
            | Change::Update {
                kind: Kind::Deployment,
                ..
            } => {
                let d = desired.deployment.as_ref().expect("planned");
                crate::deployment::set_current(client, &d.name, &d.build_id)
                    .await
                    .map_err(|e| GitOpsError::Conflict {
                        kind: Kind::Deployment,
                        id: d.name.clone(),
                        message: e.to_string(),
                    })?;
            }
            _ => {}
        }
    }
    Ok(changes)
}

fn days(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else {
        format!("{s}s")
    }
}

fn rpc_error(kind: Kind, id: &str) -> impl Fn(tonic::Status) -> GitOpsError + '_ {
    move |e| GitOpsError::Temporal {
        kind,
        id: id.to_owned(),
        message: format!("{:?}: {}", e.code(), e.message()),
    }
}

/// The namespace's retention, `None` when it does not exist.
async fn namespace_retention(client: &Client, name: &str) -> Result<Option<Duration>, GitOpsError> {
    let request = DescribeNamespaceRequest {
        namespace: name.to_owned(),
        ..Default::default()
    };
    match client
        .connection()
        .workflow_service()
        .describe_namespace(tonic::Request::new(request))
        .await
    {
        Ok(r) => Ok(Some(
            r.into_inner()
                .config
                .and_then(|c| c.workflow_execution_retention_ttl)
                .map_or(Duration::ZERO, |d| {
                    Duration::from_secs(d.seconds.max(0) as u64)
                }),
        )),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(rpc_error(Kind::Namespace, name)(s)),
    }
}

async fn plan_namespace(client: &Client, ns: &DesiredNamespace) -> Result<Change, GitOpsError> {
    Ok(match namespace_retention(client, &ns.name).await? {
        None => Change::Create {
            kind: Kind::Namespace,
            id: ns.name.clone(),
            summary: format!("retention {}", days(ns.retention)),
        },
        Some(r) if r.as_secs() != ns.retention.as_secs() => Change::Update {
            kind: Kind::Namespace,
            id: ns.name.clone(),
            diffs: vec![format!("retention: {} → {}", days(r), days(ns.retention))],
        },
        Some(_) => Change::Unchanged {
            kind: Kind::Namespace,
            id: ns.name.clone(),
        },
    })
}

async fn register_namespace(client: &Client, ns: &DesiredNamespace) -> Result<(), GitOpsError> {
    let request = RegisterNamespaceRequest {
        namespace: ns.name.clone(),
        description: "reflow".into(),
        workflow_execution_retention_period: ns.retention.try_into().ok(),
        ..Default::default()
    };
    client
        .connection()
        .workflow_service()
        .register_namespace(tonic::Request::new(request))
        .await
        .map_err(rpc_error(Kind::Namespace, &ns.name))?;
    // A new namespace takes a moment to reach every frontend's cache.
    for _ in 0..50 {
        if namespace_retention(client, &ns.name).await?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn update_namespace(client: &Client, ns: &DesiredNamespace) -> Result<(), GitOpsError> {
    let request = UpdateNamespaceRequest {
        namespace: ns.name.clone(),
        config: Some(NamespaceConfig {
            workflow_execution_retention_ttl: ns.retention.try_into().ok(),
            ..Default::default()
        }),
        ..Default::default()
    };
    client
        .connection()
        .workflow_service()
        .update_namespace(tonic::Request::new(request))
        .await
        .map_err(rpc_error(Kind::Namespace, &ns.name))?;
    Ok(())
}

/// The namespace's custom search attributes by name, with their type names.
pub async fn search_attributes(
    client: &Client,
    namespace: &str,
) -> Result<std::collections::BTreeMap<String, String>, GitOpsError> {
    let request = ListSearchAttributesRequest {
        namespace: namespace.to_owned(),
    };
    let listed = client
        .connection()
        .operator_service()
        .list_search_attributes(tonic::Request::new(request))
        .await
        .map_err(rpc_error(Kind::SearchAttribute, namespace))?
        .into_inner();
    Ok(listed
        .custom_attributes
        .into_iter()
        .map(|(name, t)| {
            let t = IndexedValueType::try_from(t).map_or_else(
                |_| format!("type {t}"),
                |t| {
                    t.as_str_name()
                        .trim_start_matches("INDEXED_VALUE_TYPE_")
                        .to_owned()
                },
            );
            (name, t)
        })
        .collect())
}

fn indexed_type(name: &str) -> Option<IndexedValueType> {
    IndexedValueType::from_str_name(&format!(
        "INDEXED_VALUE_TYPE_{}",
        name.to_ascii_uppercase()
            .replace("KEYWORDLIST", "KEYWORD_LIST")
    ))
}

async fn plan_search_attributes(
    client: &Client,
    desired: &Desired,
    namespace_exists: bool,
) -> Result<Vec<Change>, GitOpsError> {
    let namespace = namespace_of(client, desired);
    let have = if namespace_exists && !desired.search_attributes.is_empty() {
        search_attributes(client, &namespace).await?
    } else {
        Default::default()
    };
    let mut out = Vec::new();
    for (name, kind) in &desired.search_attributes {
        match have.get(name) {
            None => out.push(Change::Create {
                kind: Kind::SearchAttribute,
                id: name.clone(),
                summary: kind.clone(),
            }),
            // The server says `KEYWORD_LIST` where the declaration says `KeywordList`.
            Some(t) if !t.replace('_', "").eq_ignore_ascii_case(kind) => {
                return Err(GitOpsError::Conflict {
                    kind: Kind::SearchAttribute,
                    id: name.clone(),
                    message: format!(
                        "registered as {t}, declared {kind}; a registered attribute's type cannot change (remove it with `temporal operator search-attribute remove --name {name}` if no run needs it)"
                    ),
                });
            }
            Some(_) => out.push(Change::Unchanged {
                kind: Kind::SearchAttribute,
                id: name.clone(),
            }),
        }
    }
    Ok(out)
}

fn namespace_of(client: &Client, desired: &Desired) -> String {
    desired.namespace.as_ref().map_or_else(
        || temporalio_client::NamespacedClient::namespace(client),
        |n| n.name.clone(),
    )
}

async fn add_search_attributes(
    client: &Client,
    desired: &Desired,
    names: &[&str],
) -> Result<(), GitOpsError> {
    let namespace = namespace_of(client, desired);
    let mut map = std::collections::HashMap::new();
    for (name, kind) in &desired.search_attributes {
        if names.contains(&name.as_str()) {
            let t = indexed_type(kind).ok_or_else(|| GitOpsError::Conflict {
                kind: Kind::SearchAttribute,
                id: name.clone(),
                message: format!("unknown type {kind:?} (Keyword, Text, Int, Double, Bool, Datetime, KeywordList)"),
            })?;
            map.insert(name.clone(), t as i32);
        }
    }
    // A namespace registered a moment ago reaches the operator service's cache later (the
    // server refreshes it every few seconds): wait for it, up to a minute.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let request = AddSearchAttributesRequest {
            search_attributes: map.clone(),
            namespace: namespace.clone(),
        };
        match client
            .connection()
            .operator_service()
            .add_search_attributes(tonic::Request::new(request))
            .await
        {
            Ok(_) => return Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(s) => return Err(rpc_error(Kind::SearchAttribute, &namespace)(s)),
        }
    }
}

/// Whether every reflow search attribute is registered in the client's namespace; the missing
/// ones otherwise. A worker checks this at start: a run's first workflow task would fail
/// without them.
pub async fn missing_search_attributes(client: &Client) -> Result<Vec<String>, GitOpsError> {
    let namespace = temporalio_client::NamespacedClient::namespace(client);
    let have = search_attributes(client, &namespace).await?;
    Ok(workflow::search::ALL
        .iter()
        .filter(|(n, _)| !have.contains_key(*n))
        .map(|(n, _)| (*n).to_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_interval_follows_the_spec() {
        assert_eq!(poll_interval(None, true), Duration::from_secs(180));
        assert_eq!(poll_interval(None, false), Duration::from_secs(15));
        assert_eq!(poll_interval(Some(42), true), Duration::from_secs(42));
        assert_eq!(poll_interval(Some(0), false), Duration::from_secs(15));
    }
}
