//! What a retry may do on top of [`crate::retry`] (docs/contracts/conductor-status.md §4): a retry
//! never acts on a locked transcript (403 `Transcript is locked`), and an owner's retry of a
//! running run
//!
//! - leaves an operator-paused activity paused: 409 `Step paused by an operator` (only the
//!   operator's retry unpauses);
//! - resets one step at most its `maximum_attempts` times per run (429 beyond; a step without
//!   a bound, at most [`UNBOUNDED_STEP_RESETS`] times), so an owner cannot keep a failing step
//!   retrying (and paying for each attempt) forever.
//!
//! Resets are counted from Temporal itself, so every API replica and restart sees the same
//! count: each retry of a running run leaves a `retried` signal in the history of the workflow
//! it was asked for, and resets the waiting activities of that workflow and of its children.
//! The resets a step went through are the `retried` signals its workflow, or its parent,
//! received since the step was scheduled (a count that can only err on the high side, when two
//! steps wait at once). A reset run (a retry of a closed run) is a new run: its steps start
//! with no resets. Owners' retries are taken one at a time per process, so two at once cannot
//! both pass the count.

use axum::http::StatusCode;
use temporalio_client::{Client, UntypedWorkflow, WorkflowFetchHistoryOptions};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

use super::ConductorError;
use crate::history::{HistoryError, Run};

/// How many times an owner may reset a step whose retry policy has no attempt bound.
pub const UNBOUNDED_STEP_RESETS: i32 = 3;

/// Owners' retries, one at a time in this process (the count and the reset go together).
pub(super) static OWNER_RETRIES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 403 when the transcript of run `workflow_id` is locked.
pub(super) async fn refuse_locked(
    db: &activities::db::Db,
    workflow_id: &str,
) -> Result<(), ConductorError> {
    let transcript = db.transcript_of_run(workflow_id).await.map_err(|e| {
        tracing::error!(error = %e, "database");
        ConductorError::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
    })?;
    if transcript.is_some_and(|t| t.locked) {
        return Err(ConductorError::new(
            StatusCode::FORBIDDEN,
            "Transcript is locked",
        ));
    }
    Ok(())
}

/// Whether an owner may retry run `workflow_id` now (see the module documentation); the run
/// is read afresh.
pub(super) async fn owner_may_retry(
    client: &Client,
    workflow_id: &str,
) -> Result<(), ConductorError> {
    let run = crate::history::load(client, workflow_id).await?;
    if run.status != WorkflowExecutionStatus::Running {
        return Ok(());
    }
    let children: Vec<Run> = futures::future::join_all(
        run.children
            .iter()
            .map(|c| crate::history::load(client, &c.workflow_id)),
    )
    .await
    .into_iter()
    .filter_map(Result::ok)
    .filter(Run::is_running)
    .collect();
    let runs = std::iter::once(&run).chain(&children);
    if let Some(p) = runs
        .clone()
        .flat_map(|r| r.pending.iter())
        .find(|p| p.paused)
    {
        tracing::info!(workflow_id, activity_id = %p.activity_id, "owner's retry refused: step paused by an operator");
        return Err(ConductorError::new(
            StatusCode::CONFLICT,
            "Step paused by an operator",
        ));
    }
    let mut signals = std::collections::BTreeMap::new();
    for r in runs {
        for p in r.pending.iter().filter(|p| p.is_waiting()) {
            let Some(step) = r
                .steps
                .iter()
                .rev()
                .find(|s| s.activity_id == p.activity_id && s.close.is_none())
            else {
                continue;
            };
            let bound = if step.max_attempts > 0 {
                step.max_attempts
            } else {
                UNBOUNDED_STEP_RESETS
            };
            // Retries asked of this workflow, and of its parent, reset this step.
            let mut resets = 0usize;
            for id in std::iter::once(&r.workflow_id).chain(r.parent_id.as_ref()) {
                if !signals.contains_key(id) {
                    signals.insert(id.clone(), retried_at(client, id).await?);
                }
                resets += signals[id]
                    .iter()
                    .filter(|at| **at >= step.scheduled_ms)
                    .count();
            }
            if resets >= usize::try_from(bound).unwrap_or(0) {
                tracing::info!(workflow_id, activity_id = %p.activity_id, resets, bound, "owner's retry refused: step reset budget spent");
                return Err(ConductorError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Step {} was already retried {resets} times in this run, its \
                         maximum_attempts; only an operator may retry it again",
                        p.activity_id
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// When the latest run of `workflow_id` received each `retried` signal (epoch ms).
async fn retried_at(client: &Client, workflow_id: &str) -> Result<Vec<i64>, ConductorError> {
    let events = client
        .get_workflow_handle::<UntypedWorkflow>(workflow_id)
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .map_err(|e| match e {
            temporalio_client::errors::WorkflowInteractionError::NotFound(_) => {
                HistoryError::NotFound(workflow_id.to_owned())
            }
            other => HistoryError::Temporal {
                workflow_id: workflow_id.to_owned(),
                source: other,
            },
        })?;
    Ok(events
        .iter()
        .filter(|e| {
            matches!(
                &e.attributes,
                Some(Attributes::WorkflowExecutionSignaledEventAttributes(a))
                    if a.signal_name == workflow::workflows::RETRIED_SIGNAL
            )
        })
        .map(|e| crate::history::run::ms(e.event_time.as_ref()))
        .collect())
}
