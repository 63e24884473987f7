//! Retrying a run without re-spending completed work (docs/contracts/conductor-status.md §4): what
//! `POST /api/workflow/{id}/retry` and the REST `process` route of a failed transcript do.
//!
//! - A closed run that failed (or timed out, was cancelled or terminated) is reset with
//!   Temporal to the workflow task before its earliest failed step (a failed track: the task
//!   that started its child), reason `conductor-retry`. Steps scheduled again answer from their
//!   checkpoints; the failed step runs for real.
//! - A completed run whose optional steps failed is reset to before the first of them.
//! - A running run with steps waiting out a retry backoff (or paused) has those activities
//!   reset (`temporal activity reset`: attempt 1, now, unpaused), in its children too.
//!
//! Then a transcript in `error` is `processing` again, with a STATUS event.

use activities::events::Events;
use temporalio_client::{Client, NamespacedClient};
use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
use temporalio_common::protos::temporal::api::workflowservice::v1::{
    ResetActivityRequest, ResetWorkflowExecutionRequest, reset_activity_request,
};

use crate::history::{HistoryError, Run};

/// Why a retry was not done.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// No such workflow.
    #[error("No such workflow found by id: {0}")]
    NotFound(String),
    /// It runs and nothing waits for a retry.
    #[error("Workflow is still running. status=RUNNING")]
    StillRunning,
    /// Nothing failed.
    #[error("There are no retryable tasks")]
    NothingToRetry,
    /// Temporal could not be read or refused the reset.
    #[error("{0}")]
    Temporal(String),
}

impl From<HistoryError> for RetryError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::NotFound(id) => RetryError::NotFound(id),
            other => RetryError::Temporal(other.to_string()),
        }
    }
}

/// The reason recorded on resets made by a retry.
pub const RESET_REASON: &str = "conductor-retry";

/// Retry the latest run of `workflow_id`; the id of the run that continues (the new run after a
/// reset, the same run after an activity reset).
pub async fn retry_run(
    client: &Client,
    events: &Events,
    workflow_id: &str,
) -> Result<String, RetryError> {
    let run = crate::history::load(client, workflow_id).await?;
    let pipeline = run.pipeline();
    let optional = |s: &crate::history::Step| {
        pipeline.as_ref().is_some_and(|p| {
            crate::history::declared(p, &run.workflow_type, s).is_some_and(|d| d.optional)
        })
    };
    let target = match run.status {
        WorkflowExecutionStatus::Running => {
            if reset_waiting_activities(client, &run).await? == 0 {
                return Err(RetryError::StillRunning);
            }
            // History records when (the Conductor view's lastRetriedTime); a run that cannot
            // take the signal still had its activities reset.
            let signal = client
                .get_workflow_handle::<temporalio_client::UntypedWorkflow>(workflow_id)
                .signal(
                    temporalio_client::UntypedSignal::new(workflow::workflows::RETRIED_SIGNAL),
                    workflow::payload::to_raw(&RESET_REASON),
                    temporalio_client::WorkflowSignalOptions::default(),
                )
                .await;
            if let Err(e) = signal {
                tracing::warn!(workflow_id, error = %e, "retry not recorded in history");
            }
            resume_transcript(events, workflow_id).await;
            return Ok(run.run_id.clone());
        }
        WorkflowExecutionStatus::Completed => run
            .earliest_failure_point(&optional, true)
            .ok_or(RetryError::NothingToRetry)?,
        _ => run
            .earliest_failure_point(&optional, false)
            .unwrap_or(run.first_task_completed),
    };
    if target <= 0 {
        return Err(RetryError::NothingToRetry);
    }
    let request = ResetWorkflowExecutionRequest {
        namespace: client.namespace(),
        workflow_execution: Some(WorkflowExecution {
            workflow_id: workflow_id.to_owned(),
            run_id: run.run_id.clone(),
        }),
        reason: RESET_REASON.into(),
        workflow_task_finish_event_id: target,
        request_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    };
    let reset = client
        .connection()
        .workflow_service()
        .reset_workflow_execution(tonic::Request::new(request))
        .await
        .map_err(|e| RetryError::Temporal(format!("reset refused: {}", e.message())))?;
    let run_id = reset.into_inner().run_id;
    tracing::info!(workflow_id, event = target, run_id = %run_id, "run reset for a retry");
    resume_transcript(events, workflow_id).await;
    Ok(run_id)
}

/// Reset every activity of the run (and of its running children) that waits in retry backoff
/// or is paused. Returns how many.
async fn reset_waiting_activities(client: &Client, run: &Run) -> Result<usize, RetryError> {
    let mut targets: Vec<(String, String, String)> = run
        .pending
        .iter()
        .filter(|p| p.is_waiting())
        .map(|p| {
            (
                run.workflow_id.clone(),
                run.run_id.clone(),
                p.activity_id.clone(),
            )
        })
        .collect();
    let children = futures::future::join_all(
        run.children
            .iter()
            .map(|c| crate::history::load(client, &c.workflow_id)),
    )
    .await;
    for child in children.into_iter().flatten().filter(Run::is_running) {
        targets.extend(child.pending.iter().filter(|p| p.is_waiting()).map(|p| {
            (
                child.workflow_id.clone(),
                child.run_id.clone(),
                p.activity_id.clone(),
            )
        }));
    }
    for (workflow_id, run_id, activity_id) in &targets {
        let request = ResetActivityRequest {
            namespace: client.namespace(),
            execution: Some(WorkflowExecution {
                workflow_id: workflow_id.clone(),
                run_id: run_id.clone(),
            }),
            identity: "reflow-conductor-retry".into(),
            reset_heartbeat: true,
            activity: Some(reset_activity_request::Activity::Id(activity_id.clone())),
            ..Default::default()
        };
        client
            .connection()
            .workflow_service()
            .reset_activity(tonic::Request::new(request))
            .await
            .map_err(|e| {
                RetryError::Temporal(format!("activity reset refused: {}", e.message()))
            })?;
        tracing::info!(workflow_id = %workflow_id, activity_id = %activity_id, "activity reset for a retry");
    }
    Ok(targets.len())
}

/// After a retry, a transcript in `error` is `processing` again (docs/contracts/pipeline.md §5),
/// with STATUS.
async fn resume_transcript(events: &Events, workflow_id: &str) {
    let db = events.db();
    let Ok(Some(tid)) = db.transcript_of_workflow(workflow_id).await else {
        return;
    };
    match db.resume_from_error(&tid).await {
        Ok(true) => {
            if let Err(e) = events
                .announce(
                    &tid,
                    activities::events::Event::Status,
                    serde_json::json!({"value": "processing"}),
                )
                .await
            {
                tracing::warn!(transcript_id = %tid, error = %e, "STATUS not published");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(transcript_id = %tid, error = %e, "status not resumed"),
    }
}
