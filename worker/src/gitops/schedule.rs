//! The `daily-poll` schedule (docs/contracts/daily.md §4): present exactly when `DAILY_API_KEY`
//! is set, every `REFLOW_DAILY_POLL_INTERVAL` seconds, else 180 s with a webhook secret and
//! 15 s without, overlap SKIP, starting `PollDailyRecordings` pinned to the repository's
//! `pipelines/daily-poll.yaml` (its interval and pipeline hash are compared, and its input's
//! binding to the action's workflow id, `workflow::interpreter::binding`); deleted when the
//! key is unset.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use temporalio_client::schedules::{
    CreateScheduleOptions, DeleteScheduleOptions, ScheduleAction, ScheduleOverlapPolicy,
    ScheduleSpec,
};
use temporalio_client::{Client, NamespacedClient as _, UntypedWorkflow};
use temporalio_common::data_converters::SerializationContextData;
use workflow::interpreter::resolve::Pinned;
use workflow::{Catalog, Pipeline, RunInput, payload};

use super::{Change, GitOpsError, Kind};
use crate::runs::{self, RunError};

/// The poll schedule's id.
pub const DAILY_POLL: &str = "daily-poll";
/// The pipeline shipped with the binary (`pipelines/daily-poll.yaml` at build time).
pub const DAILY_POLL_YAML: &str = include_str!("../../../pipelines/daily-poll.yaml");

/// How [`current`] marks the hash of an action that carries its definition inline.
const INLINE: &str = " (inline)";

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

/// The Daily poll interval (docs/contracts/daily.md §4).
pub fn poll_interval(override_s: Option<u64>, webhook_secret: bool) -> Duration {
    match override_s.filter(|s| *s > 0) {
        Some(s) => Duration::from_secs(s),
        None if webhook_secret => Duration::from_secs(180),
        None => Duration::from_secs(15),
    }
}

/// The `daily-poll` schedule the settings declare (`var`: a setting, `None` when unset or
/// blank), starting `dir`'s `daily-poll.yaml` (else the built-in one); `None` without
/// `DAILY_API_KEY`.
pub(super) fn daily_poll(
    var: &dyn Fn(&str) -> Option<String>,
    dir: Option<&Path>,
    catalog: &Catalog,
) -> Result<Option<DesiredSchedule>, GitOpsError> {
    if var("DAILY_API_KEY").is_none() {
        return Ok(None);
    }
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
    Ok(Some(DesiredSchedule {
        id: DAILY_POLL.into(),
        every: poll_interval(
            var("REFLOW_DAILY_POLL_INTERVAL").and_then(|s| s.parse().ok()),
            var("DAILY_WEBHOOK_SECRET").is_some(),
        ),
        pipeline,
    }))
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

/// The current interval and pipeline hash of a schedule, and whether its action's input is
/// bound to the action's workflow id ([`action`]); `None` if it does not exist.
async fn current(client: &Client, id: &str) -> Result<Option<(u64, String, bool)>, GitOpsError> {
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
    let (args, action_id) = match described.action() {
        temporalio_client::schedules::ScheduleDescriptionAction::StartWorkflow(a) => (
            a.raw_args().map(<[_]>::to_vec),
            Some(a.workflow_id().to_owned()),
        ),
        _ => (None, None),
    };
    // The action's input as the client's codec wrote it (sealed when keys are configured):
    // opened the way history readers open payloads.
    let args = match args {
        Some(payloads) => client
            .data_converter()
            .codec()
            .decode(&SerializationContextData::None, payloads)
            .await
            .ok(),
        None => None,
    };
    let input = args
        .as_deref()
        .and_then(|p| p.first())
        .and_then(|p| serde_json::from_slice::<Value>(&p.data).ok());
    let bound = input.as_ref().is_some_and(|v| {
        v["scheduled"] == true && v["workflow_id"].as_str() == action_id.as_deref()
    });
    let hash = input
        .and_then(
            |v| match (v["hash"].as_str(), v["pipeline"]["hash"].as_str()) {
                (Some(hash), _) => Some(hash.to_owned()),
                // A definition inline, from before references: workers refuse to start such runs,
                // so it never matches and apply rewrites the action to a reference.
                (None, Some(hash)) => Some(format!("{hash}{INLINE}")),
                (None, None) => None,
            },
        )
        .unwrap_or_default();
    Ok(Some((every, hash, bound)))
}

/// `reflow plan`'s lines for the declared schedules, then a deletion for each schedule of
/// `absent` that exists.
pub(super) async fn plan(
    client: &Client,
    schedules: &[DesiredSchedule],
    absent: &[String],
) -> Result<Vec<Change>, GitOpsError> {
    let mut out = Vec::new();
    for s in schedules {
        out.push(match current(client, &s.id).await? {
            None => Change::Create {
                kind: Kind::Schedule,
                id: s.id.clone(),
                summary: summary(s),
            },
            Some((every, hash, bound)) => {
                let mut diffs = Vec::new();
                if every != s.every.as_secs() {
                    diffs.push(format!("interval: {every}s → {}s", s.every.as_secs()));
                }
                if hash != s.pipeline.hash {
                    let was = match hash.strip_suffix(INLINE) {
                        Some(h) => format!("{} inline", h.get(..12).unwrap_or(h)),
                        None => hash.get(..12).unwrap_or(&hash).to_owned(),
                    };
                    diffs.push(format!("pipeline: {was} → {}", &s.pipeline.hash[..12]));
                } else if !bound {
                    // An action written before inputs named their run: workers refuse the runs
                    // it starts (`workflow::interpreter::binding`) until it is rewritten.
                    diffs.push("input: not bound to its workflow id → bound".to_owned());
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
    for id in absent {
        if current(client, id).await?.is_some() {
            out.push(Change::Delete {
                kind: Kind::Schedule,
                id: id.clone(),
                reason: "not declared (DAILY_API_KEY unset)".into(),
            });
        }
    }
    Ok(out)
}

fn action(s: &DesiredSchedule) -> ScheduleAction {
    // Bound to the action's workflow id, which the schedule suffixes with each run's nominal
    // time (`workflow::interpreter::binding`).
    let input = RunInput {
        pinned: Pinned::Reference(s.pipeline.reference()),
        graph: None,
        input: serde_json::json!({}),
        parent: None,
        search_attributes: Default::default(),
        workflow_id: Some(s.id.clone()),
        scheduled: true,
        lean: 0,
    };
    ScheduleAction::start_workflow(
        UntypedWorkflow::new(s.pipeline.name.clone()),
        payload::to_raw(&input),
        s.pipeline.main.task_queue.clone(),
        s.id.clone(),
    )
}

/// Make one planned schedule change: create, update or delete the schedule.
pub(super) async fn apply(
    client: &Client,
    schedules: &[DesiredSchedule],
    change: &Change,
) -> Result<(), GitOpsError> {
    let err = |id: &str| {
        let id = id.to_owned();
        move |e: temporalio_client::schedules::ScheduleError| GitOpsError::Temporal {
            kind: Kind::Schedule,
            id,
            message: e.to_string(),
        }
    };
    let declared = |id: &str| schedules.iter().find(|s| s.id == id).expect("planned");
    match change {
        Change::Create { id, .. } => {
            let s = declared(id);
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
        Change::Update { id, .. } => {
            let s = declared(id).clone();
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
        Change::Delete { id, .. } => {
            client
                .get_schedule_handle(id.clone())
                .delete(DeleteScheduleOptions::default())
                .await
                .map_err(err(id))?;
        }
        Change::Unchanged { .. } => {}
    }
    Ok(())
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
