//! `report_progress`: the local activity through which a pipeline run tells the frontend how
//! its steps are doing (`PIPELINE_PROGRESS`, docs/contracts/events-and-api.md §4).
//!
//! The workflow computes each `step_index`'s aggregate state and sends the ones that changed,
//! in order; this activity keeps the latest state per index in `pipeline_progress` (for the
//! WebSocket's on-connect catch-up) and broadcasts every state except `pending`, which only
//! the catch-up shows.

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

use std::sync::Arc;

use serde_json::json;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use workflow::interpreter::ProgressReport;
use workflow::progress::StepState;

use crate::error::ActivityFailure;
use crate::events::Events;

/// Events `report_progress` publishes.
pub const EMITS: &[crate::events::Event] = &[crate::events::Event::PipelineProgress];

/// The `PIPELINE_PROGRESS` data of a state of a run on `pipeline_version` (§4 base shape
/// plus reflow's extension fields).
pub fn event_data(
    workflow_id: &str,
    total_steps: u32,
    pipeline_version: Option<u32>,
    s: &StepState,
) -> serde_json::Value {
    json!({
        "workflow_id": workflow_id, "current_step": s.current_step, "step_index": s.step_index,
        "total_steps": total_steps, "step_status": s.step_status, "attempt": s.attempt,
        "max_attempts": s.max_attempts, "started_at": s.started_at, "message": s.message,
        "pipeline_version": pipeline_version,
    })
}

/// The progress reporter.
pub struct ProgressActivities {
    events: Events,
}

impl ProgressActivities {
    /// Report through `events`.
    pub fn new(events: Events) -> Self {
        ProgressActivities { events }
    }

    async fn report(&self, r: &ProgressReport) -> Result<(), ActivityFailure> {
        let db = self.events.db();
        for s in &r.states {
            db.save_progress(
                &r.workflow_id,
                &r.transcript_id,
                r.total_steps,
                r.pipeline_version,
                s,
            )
            .await?;
            if s.step_status != "pending" {
                self.events
                    .publish(
                        workflow::interpreter::REPORT_PROGRESS,
                        &r.transcript_id,
                        crate::events::Event::PipelineProgress,
                        event_data(&r.workflow_id, r.total_steps, r.pipeline_version, s),
                    )
                    .await?;
            }
        }
        Ok(())
    }
}

#[activities]
impl ProgressActivities {
    /// Store and broadcast the changed `PIPELINE_PROGRESS` states of a run.
    #[activity(name = "report_progress")]
    pub async fn report_progress(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: ProgressReport,
    ) -> Result<(), ActivityError> {
        self.report(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }
}

/// Where a running attempt reports how far it is: the worker's activity interceptor puts one
/// in the attempt's context ([`crate::attempt::AttemptContext::progress`]) and
/// [`crate::heartbeat::run`] reports its heartbeat details' fraction through it.
#[derive(Clone, Debug)]
pub struct FractionSink {
    /// Where the fraction is kept and the step's state published.
    pub events: Events,
    /// The attempt.
    pub attempt: crate::db::attempts::Attempt,
}

impl crate::attempt::ProgressSink for FractionSink {
    fn report(
        &self,
        fraction: f64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ActivityFailure>> + Send + '_>>
    {
        Box::pin(self.report_fraction(fraction))
    }
}

impl FractionSink {
    /// Keep `fraction` on the attempt's row and publish its step's `PIPELINE_PROGRESS` with
    /// the step's `progress` (percent over its members).
    pub async fn report_fraction(&self, fraction: f64) -> Result<(), ActivityFailure> {
        let db = self.events.db();
        db.attempt_progress(&self.attempt, fraction).await?;
        let Some(row) = db
            .running_state_of(&self.attempt.workflow_id, &self.attempt.activity_type)
            .await?
        else {
            return Ok(());
        };
        let percent = db.percent_of_row(&row).await?;
        self.events
            .publish(
                workflow::interpreter::REPORT_PROGRESS,
                &row.transcript_id,
                crate::events::Event::PipelineProgress,
                row.data(percent),
            )
            .await
    }
}
