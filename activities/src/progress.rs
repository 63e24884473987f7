//! `report_progress`: the local activity through which a pipeline run tells the frontend how
//! its steps are doing (`PIPELINE_PROGRESS`, events-and-api.md §4).
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

use crate::db::{Db, DbError, now};
use crate::error::ActivityFailure;
use crate::events::Events;

/// Events `report_progress` publishes.
pub const EMITS: &[&str] = &["PIPELINE_PROGRESS"];

/// The `PIPELINE_PROGRESS` data of a state (§4 base shape plus reflow's extension fields).
pub fn event_data(workflow_id: &str, total_steps: u32, s: &StepState) -> serde_json::Value {
    json!({
        "workflow_id": workflow_id, "current_step": s.current_step, "step_index": s.step_index,
        "total_steps": total_steps, "step_status": s.step_status, "attempt": s.attempt,
        "max_attempts": s.max_attempts, "started_at": s.started_at, "message": s.message,
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
            db.save_progress(&r.workflow_id, &r.transcript_id, r.total_steps, s)
                .await?;
            if s.step_status != "pending" {
                self.events
                    .publish(
                        "report_progress",
                        &r.transcript_id,
                        "PIPELINE_PROGRESS",
                        event_data(&r.workflow_id, r.total_steps, s),
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

impl Db {
    /// Keep `state` as the latest of its `step_index` for `workflow_id`.
    pub async fn save_progress(
        &self,
        workflow_id: &str,
        transcript_id: &str,
        total_steps: u32,
        s: &StepState,
    ) -> Result<(), DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "INSERT INTO pipeline_progress (workflow_id, step_index, transcript_id, current_step, \
             step_status, attempt, max_attempts, started_at, message, updated_at, total_steps) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (workflow_id, step_index) DO UPDATE SET transcript_id = $3, \
             current_step = $4, step_status = $5, attempt = $6, max_attempts = $7, \
             started_at = $8, message = $9, updated_at = $10, total_steps = $11"
        )
        .bind(workflow_id)
        .bind(i64::from(s.step_index))
        .bind(transcript_id)
        .bind(&s.current_step)
        .bind(&s.step_status)
        .bind(i64::from(s.attempt))
        .bind(i64::from(s.max_attempts))
        .bind(&s.started_at)
        .bind(&s.message)
        .bind(now())
        .bind(i64::from(total_steps))
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("save progress"))
    }

    /// The latest `PIPELINE_PROGRESS` data per `step_index` of a transcript's runs, by index.
    pub async fn progress_events(
        &self,
        transcript_id: &str,
    ) -> Result<Vec<serde_json::Value>, DbError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            workflow_id: String,
            step_index: i64,
            current_step: String,
            step_status: String,
            total_steps: i64,
            attempt: i64,
            max_attempts: i64,
            started_at: Option<String>,
            message: Option<String>,
        }
        let rows = crate::on_pool!(self, |pool| sqlx::query_as::<_, Row>(
            "SELECT workflow_id, step_index, current_step, step_status, attempt, max_attempts, \
             started_at, message, total_steps FROM pipeline_progress WHERE transcript_id = $1 \
             ORDER BY step_index"
        )
        .bind(transcript_id)
        .fetch_all(pool)
        .await)
        .map_err(DbError::query("read progress"))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                json!({
                    "workflow_id": r.workflow_id, "current_step": r.current_step,
                    "step_index": r.step_index, "total_steps": r.total_steps,
                    "step_status": r.step_status, "attempt": r.attempt,
                    "max_attempts": r.max_attempts, "started_at": r.started_at,
                    "message": r.message,
                })
            })
            .collect())
    }
}
