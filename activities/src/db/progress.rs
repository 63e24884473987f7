//! The `pipeline_progress` table: the latest `PIPELINE_PROGRESS` state of each step of a run
//! (docs/contracts/events-and-api.md §4), which the WebSocket's on-connect catch-up replays and a
//! running step's reported fraction updates.

use serde_json::json;
use workflow::progress::StepState;

use super::{Db, DbError, now};

impl Db {
    /// Keep `state` as the latest of its `step_index` for `workflow_id`, a run on
    /// `pipeline_version` (when known).
    pub async fn save_progress(
        &self,
        workflow_id: &str,
        transcript_id: &str,
        total_steps: u32,
        pipeline_version: Option<u32>,
        s: &StepState,
    ) -> Result<(), DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "INSERT INTO pipeline_progress (workflow_id, step_index, transcript_id, current_step, \
             step_status, attempt, max_attempts, started_at, message, updated_at, total_steps, \
             pipeline_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (workflow_id, step_index) DO UPDATE SET transcript_id = $3, \
             current_step = $4, step_status = $5, attempt = $6, max_attempts = $7, \
             started_at = $8, message = $9, updated_at = $10, total_steps = $11, \
             pipeline_version = $12"
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
        .bind(pipeline_version.map(i64::from))
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("save progress"))
    }

    /// The latest `PIPELINE_PROGRESS` data per `step_index` of a transcript's runs, by index;
    /// a running step with a reported fraction carries its `progress` (percent).
    pub async fn progress_events(
        &self,
        transcript_id: &str,
    ) -> Result<Vec<serde_json::Value>, DbError> {
        let rows = crate::on_pool!(self, |pool| {
            sqlx::query_as::<_, ProgressRow>(
            "SELECT workflow_id, transcript_id, step_index, current_step, step_status, attempt, \
             max_attempts, started_at, message, total_steps, pipeline_version FROM pipeline_progress \
             WHERE transcript_id = $1 ORDER BY step_index"
        )
        .bind(transcript_id)
        .fetch_all(pool)
        .await
        })
        .map_err(DbError::query("read progress"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let percent = self.percent_of_row(&r).await?;
            out.push(r.data(percent));
        }
        Ok(out)
    }

    /// The running state of step `activity_type` that an attempt in `workflow_id` (the run or
    /// one of its children, `{run}-…`) belongs to.
    pub(crate) async fn running_state_of(
        &self,
        workflow_id: &str,
        activity_type: &str,
    ) -> Result<Option<ProgressRow>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, ProgressRow>(
            "SELECT workflow_id, transcript_id, step_index, current_step, step_status, attempt, \
             max_attempts, started_at, message, total_steps, pipeline_version FROM pipeline_progress \
             WHERE current_step = $1 AND step_status = 'in_progress' \
             AND ($2 = workflow_id OR substr($2, 1, length(workflow_id) + 1) = workflow_id || '-') \
             ORDER BY updated_at DESC LIMIT 1"
        )
        .bind(activity_type)
        .bind(workflow_id)
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read progress"))
    }

    pub(crate) async fn percent_of_row(&self, r: &ProgressRow) -> Result<Option<u8>, DbError> {
        if r.step_status != "in_progress" {
            return Ok(None);
        }
        self.step_percent(
            &r.workflow_id,
            &r.current_step,
            members_of(r.message.as_deref()),
        )
        .await
    }
}

/// One stored `PIPELINE_PROGRESS` state.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ProgressRow {
    /// The run (or its parent run) the state belongs to.
    workflow_id: String,
    /// The transcript it reports on.
    pub(crate) transcript_id: String,
    step_index: i64,
    current_step: String,
    step_status: String,
    total_steps: i64,
    attempt: i64,
    max_attempts: i64,
    started_at: Option<String>,
    message: Option<String>,
    pipeline_version: Option<i64>,
}

impl ProgressRow {
    /// Its `PIPELINE_PROGRESS` data, with `progress` (percent) when known.
    pub(crate) fn data(&self, percent: Option<u8>) -> serde_json::Value {
        let mut data = json!({
            "workflow_id": self.workflow_id, "current_step": self.current_step,
            "step_index": self.step_index, "total_steps": self.total_steps,
            "step_status": self.step_status, "attempt": self.attempt,
            "max_attempts": self.max_attempts, "started_at": self.started_at,
            "message": self.message, "pipeline_version": self.pipeline_version,
        });
        if let Some(p) = percent {
            data["progress"] = json!(p);
        }
        data
    }
}

/// The member count a fan-out's message states (`"2/4 done"`, `"…; retrying; 2/4 done"`); 1
/// for a plain step.
fn members_of(message: Option<&str>) -> usize {
    message
        .and_then(|m| m.rsplit("; ").next())
        .and_then(|m| m.strip_suffix(" done"))
        .and_then(|m| m.split_once('/'))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::members_of;

    #[test]
    fn a_fan_out_s_member_count_is_read_from_its_message() {
        assert_eq!(members_of(Some("2/4 done")), 4);
        assert_eq!(
            members_of(Some("503 Service Unavailable; retrying; 1/3 done")),
            3
        );
        assert_eq!(members_of(Some("503 Service Unavailable; retrying")), 1);
        assert_eq!(members_of(None), 1);
    }
}
