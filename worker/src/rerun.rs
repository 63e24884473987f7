//! Processing a transcript again (docs/contracts/events-and-api.md §5.5): what `reflow rerun`
//! and `POST /v1/transcripts/{id}/process` do.
//!
//! - A run in progress: 409, unless `force`, which terminates it ("reprocess requested") and
//!   starts a new one.
//! - A last run that failed, timed out, was cancelled or terminated: resumed
//!   ([`crate::retry::retry_run`]: a reset to before the failed step), unless `force`, a
//!   version, `--from` or `--fresh` asks for a new run.
//! - Otherwise a new run with the same workflow id, on the version named, else the one the
//!   rollout picks for the recording, else the last run's. Its input is rebuilt from the
//!   `recording` row for a Daily recording, else taken from the last run (a transcript made by
//!   `reflow process`: its tracks are in the recordings store under the same keys). The new
//!   run is memoized (`workflow::interpreter::memo`): it reuses every step whose memo key is
//!   unchanged; `--from STEP` recomputes that step and everything downstream of it, `--fresh`
//!   everything. It sends no notification (Zulip, the customer webhook) again unless asked
//!   (`--notify`, `?notify=true`): those steps are skipped ([`notification_steps`]).

use activities::db::Db;
use activities::db::transcripts::Transcript;
use serde::Serialize;
use serde_json::Value;
use temporalio_client::Client;
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
use workflow::Pipeline;
use workflow::interpreter::memo::{RERUN_INPUT, Rerun};

mod summary;

pub use summary::{Summary, summarize};

/// What is asked.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Terminate a run in progress; start a new run even after a failure.
    pub force: bool,
    /// The version to run (else the rollout's choice).
    pub version: Option<u32>,
    /// `--from` / `--fresh`.
    pub rerun: Rerun,
    /// A new run posts to Zulip and calls the customer webhook again (`--notify`).
    pub notify: bool,
}

impl Request {
    /// Whether the request asks for a new run rather than a resume.
    fn wants_new_run(&self) -> bool {
        self.force || self.version.is_some() || self.rerun != Rerun::default()
    }
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// A failed or cancelled run was resumed.
    Retrying {
        /// The workflow.
        workflow_id: String,
        /// The run that continues.
        run_id: String,
    },
    /// A new run started.
    Ok {
        /// The workflow.
        workflow_id: String,
        /// The new run.
        run_id: String,
        /// Its version (`Name vN`).
        pipeline: String,
    },
}

impl Outcome {
    /// The workflow.
    pub fn workflow_id(&self) -> &str {
        match self {
            Outcome::Retrying { workflow_id, .. } | Outcome::Ok { workflow_id, .. } => workflow_id,
        }
    }
}

/// Why not.
#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    /// The transcript is locked.
    #[error("Transcript is locked")]
    Locked,
    /// No run, no recording: nothing to rebuild an input from.
    #[error("Transcript has no recording to process")]
    NothingToProcess,
    /// A run is in progress and `force` was not given.
    #[error("Processing already in progress")]
    InProgress,
    /// `--from` names no step of the version.
    #[error("{pipeline} has no step {step:?}")]
    UnknownStep {
        /// The version.
        pipeline: String,
        /// The step asked for.
        step: String,
    },
    /// The version is not registered.
    #[error("pipeline {0} is not registered: run `reflow apply`")]
    NotRegistered(String),
    /// The resume failed.
    #[error(transparent)]
    Retry(#[from] crate::retry::RetryError),
    /// Temporal.
    #[error("{0}")]
    Temporal(String),
    /// The database.
    #[error(transparent)]
    Db(#[from] activities::db::DbError),
    /// A shadow transcript's version cannot run as a shadow.
    #[error(transparent)]
    Shadow(#[from] workflow::pipeline::effects::ShadowError),
}

/// The workflow id of a transcript's runs, if it has any (or a recording that names one).
pub fn workflow_of(t: &Transcript) -> Option<String> {
    t.workflow_id
        .clone()
        .or_else(|| t.recording_id.as_deref().map(crate::intake::workflow_id))
}

/// Process `t` again as `req` asks.
pub async fn rerun(
    client: &Client,
    events: &activities::events::Events,
    intake: Option<&crate::intake::Intake>,
    t: &Transcript,
    req: &Request,
) -> Result<Outcome, RerunError> {
    let db = events.db();
    let NewRun {
        workflow_id,
        pipeline,
        input,
    } = match prepare(client, db, intake, t, req).await? {
        Prepared::Resume { workflow_id } => {
            let run_id = crate::retry::retry_run(client, events, &workflow_id).await?;
            return Ok(Outcome::Retrying {
                workflow_id,
                run_id,
            });
        }
        Prepared::New(new) => *new,
    };
    let run = crate::runs::start_with(
        client,
        &pipeline,
        input,
        &workflow_id,
        temporalio_client::WorkflowIdReusePolicy::AllowDuplicate,
    )
    .await
    .map_err(|e| match e {
        crate::runs::RunError::AlreadyStarted { .. } => RerunError::InProgress,
        e => RerunError::Temporal(e.to_string()),
    })?;
    let run_id = run.run_id.unwrap_or_default();
    db.set_workflow(&t.id, &workflow_id, &run_id).await?;
    tracing::info!(transcript_id = %t.id, %workflow_id, %run_id, pipeline = %pipeline.reference(), from = ?req.rerun.from, fresh = req.rerun.fresh, notify = req.notify, "new run (memoized)");
    Ok(Outcome::Ok {
        workflow_id,
        run_id,
        pipeline: pipeline.reference().short(),
    })
}

/// A new run, ready to start.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The transcript's workflow id.
    pub workflow_id: String,
    /// The version it runs.
    pub pipeline: Pipeline,
    /// Its input (the rerun options included).
    pub input: Value,
}

/// What processing a transcript again comes to ([`prepare`]).
#[derive(Debug, Clone)]
pub enum Prepared {
    /// Resume the failed or cancelled run of this workflow.
    Resume {
        /// The workflow.
        workflow_id: String,
    },
    /// Start this run.
    New(Box<NewRun>),
}

/// What processing `t` again as `req` asks for, started by nobody yet: a resume, or the new
/// run's workflow id, version and input (a running run is terminated first when `force`).
/// [`rerun`] starts it; a backfill starts it as its child (`crate::backfill`).
pub async fn prepare(
    client: &Client,
    db: &Db,
    intake: Option<&crate::intake::Intake>,
    t: &Transcript,
    req: &Request,
) -> Result<Prepared, RerunError> {
    if t.locked {
        return Err(RerunError::Locked);
    }
    let workflow_id = workflow_of(t).ok_or(RerunError::NothingToProcess)?;
    let handle = client.get_workflow_handle::<temporalio_client::UntypedWorkflow>(&workflow_id);
    let status = match handle
        .describe(temporalio_client::WorkflowDescribeOptions::default())
        .await
    {
        Ok(d) => d
            .raw_description
            .workflow_execution_info
            .and_then(|i| WorkflowExecutionStatus::try_from(i.status).ok()),
        Err(temporalio_client::errors::WorkflowInteractionError::NotFound(_)) => None,
        Err(e) => return Err(RerunError::Temporal(e.to_string())),
    };
    match status {
        Some(WorkflowExecutionStatus::Running) if !req.force => return Err(RerunError::InProgress),
        Some(WorkflowExecutionStatus::Running) => {
            handle
                .terminate(
                    temporalio_client::WorkflowTerminateOptions::builder()
                        .reason("reprocess requested")
                        .build(),
                )
                .await
                .map_err(|e| RerunError::Temporal(e.to_string()))?;
        }
        Some(
            WorkflowExecutionStatus::Failed
            | WorkflowExecutionStatus::Canceled
            | WorkflowExecutionStatus::Terminated
            | WorkflowExecutionStatus::TimedOut,
        ) if !req.wants_new_run() => {
            return Ok(Prepared::Resume { workflow_id });
        }
        _ => {}
    }
    let last = match status {
        Some(_) => crate::history::load(client, &workflow_id).await.ok(),
        None => None,
    };
    let (mut input, room) = match rebuilt_input(db, t).await? {
        Some(found) => found,
        None => {
            let Some(last) = &last else {
                return Err(RerunError::NothingToProcess);
            };
            let input = last.pipeline_input().clone();
            if !input.is_object() {
                return Err(RerunError::NothingToProcess);
            }
            let room = input["room_name"].as_str().map(str::to_owned);
            (input, room)
        }
    };
    let last_ref = last.as_ref().and_then(|r| {
        serde_json::from_value::<workflow::pipeline::PipelineRef>(r.input.clone()).ok()
    });
    let pipeline = version(db, intake, t, req, room.as_deref(), last_ref.as_ref()).await?;
    if let Some(from) = &req.rerun.from
        && pipeline.main.step(from).is_none()
    {
        return Err(RerunError::UnknownStep {
            pipeline: pipeline.reference().short(),
            step: from.clone(),
        });
    }
    let mut options = req.rerun.clone();
    if !req.notify && last.is_some() {
        options.skip = notification_steps(&pipeline);
    }
    // A shadow transcript's new run is a shadow run too (crate::shadow).
    if let Some(live) = &t.shadow_of {
        let shadow = crate::shadow::options(&pipeline, live)?;
        options.skip = shadow.skip;
        options.shadow = shadow.shadow;
    }
    if let Some(m) = input.as_object_mut() {
        m.remove(RERUN_INPUT);
        if options != Rerun::default() {
            m.insert(
                RERUN_INPUT.into(),
                serde_json::to_value(&options).expect("serializes"),
            );
        }
    }
    Ok(Prepared::New(Box::new(NewRun {
        workflow_id,
        pipeline,
        input,
    })))
}

/// The main-graph steps of `pipeline` that only notify: every activity they run is declared
/// [`workflow::catalog::Step::notifying`] in the production catalog (a Zulip post, the
/// customer's webhook: docs/contracts/pipeline.md §4.15, §4.16). What a re-run skips unless
/// asked to notify again.
pub fn notification_steps(pipeline: &Pipeline) -> Vec<String> {
    let catalog = crate::registry::Registry::production();
    let catalog = catalog.catalog();
    pipeline
        .main
        .steps
        .iter()
        .filter(|s| {
            let run = workflow::interpreter::memo::activities_of(s, &pipeline.children);
            !run.is_empty() && run.iter().all(|a| catalog.notifies(a))
        })
        .map(|s| s.id.clone())
        .collect()
}

/// The input of a Daily recording's transcript, from its `recording` row, and its room name;
/// `None` for a transcript without one.
async fn rebuilt_input(
    db: &Db,
    t: &Transcript,
) -> Result<Option<(Value, Option<String>)>, RerunError> {
    let Some(recording_id) = &t.recording_id else {
        return Ok(None);
    };
    let Some(row) = db.recording(recording_id).await? else {
        return Ok(None);
    };
    let room_name = match &t.room_id {
        Some(r) => db.room_name(r).await?,
        None => None,
    };
    let input = crate::intake::pipeline_input(
        t,
        recording_id,
        (
            t.room_id.as_deref().unwrap_or_default(),
            room_name.as_deref(),
        ),
        &row.bucket_name,
        &row.keys(),
    );
    Ok(Some((input, room_name)))
}

/// The version a new run gets: the one named, else the rollout's choice for the recording
/// (intake's when there is one), else the last run's.
async fn version(
    db: &Db,
    intake: Option<&crate::intake::Intake>,
    t: &Transcript,
    req: &Request,
    room: Option<&str>,
    last: Option<&workflow::pipeline::PipelineRef>,
) -> Result<Pipeline, RerunError> {
    let name = last
        .map(|r| r.pipeline.clone())
        .or_else(|| intake.map(|i| i.pipeline.name.clone()))
        .unwrap_or_else(|| "DiarizationPipeline".to_owned());
    if let Some(v) = req.version {
        let row = db
            .pipeline_version_of(&name, v)
            .await?
            .ok_or_else(|| RerunError::NotRegistered(format!("{name} v{v}")))?;
        return Ok(row.decode()?.pipeline);
    }
    let recording = t
        .recording_id
        .clone()
        .or_else(|| last.is_some().then(|| t.id.clone()))
        .unwrap_or_default();
    if let Some(intake) = intake
        && t.recording_id.is_some()
        && intake.pipeline.name == name
    {
        return intake
            .pipeline_for(&recording, room.unwrap_or_default())
            .await
            .map_err(|e| RerunError::NotRegistered(e.to_string()));
    }
    if let Some(rollout) = db.pipeline_rollout(&name).await? {
        let (v, _) = rollout.version_for(&recording, room);
        let row = db
            .pipeline_version_of(&name, v)
            .await?
            .ok_or_else(|| RerunError::NotRegistered(format!("{name} v{v}")))?;
        return Ok(row.decode()?.pipeline);
    }
    let Some(last) = last else {
        return Err(RerunError::NothingToProcess);
    };
    activities::versions::Versions::of(db)
        .get(&last.hash)
        .await?
        .map(|p| (*p).clone())
        .ok_or_else(|| RerunError::NotRegistered(last.short()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The steps a re-run skips come from the catalog's declarations: the Zulip post and the
    /// customer webhook tell people; `cleanup_consent` acts outside reflow (a shadow skips it)
    /// but tells nobody, so a re-run still runs it.
    #[test]
    fn a_rerun_skips_the_steps_the_catalog_declares_notifying() {
        let registry = crate::registry::Registry::production();
        let pipeline = crate::intake::load_pipeline(None, registry.catalog()).unwrap();
        assert_eq!(
            notification_steps(&pipeline),
            ["post_zulip", "send_webhook"]
        );
        assert!(registry.catalog().is_external("cleanup_consent"));
        assert!(!registry.catalog().notifies("cleanup_consent"));
    }
}
