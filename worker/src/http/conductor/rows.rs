//! Task rows of one run's steps, one per attempt (docs/contracts/conductor-status.md §3.3, §5.2,
//! §5.3).
//!
//! Temporal writes an activity's start only when it closes, and keeps only its last failure;
//! the earlier attempts come from the `step_attempt` table. Gaps are filled as the spec says:
//! a started attempt followed by another is `TIMED_OUT` (worker lost), a missing one `FAILED`
//! ("attempt details not recorded"). The pending activity (describe-workflow) drives the
//! current row while it runs or waits in backoff.

use activities::db::attempts::AttemptRow;
use serde_json::{Map, Value, json};
use temporalio_common::protos::temporal::api::enums::v1::{PendingActivityState, RetryState};
use workflow::pipeline::Step as StepDef;

use super::model::{Task, TaskStatus, WorkflowTask};
use crate::history::{Close, Pending, Run, Step};

/// Epoch ms of an RFC 3339 time (0 when absent or unreadable).
pub(super) fn ms(t: Option<&str>) -> i64 {
    t.and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

/// The task id of `reference`'s `attempt` in run `run_id` after `generation` activity resets
/// of that step (§3): a UUIDv5, hyphenated.
pub fn task_id(run_id: &str, reference: &str, attempt: i64, generation: i64) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{run_id}/{reference}/{attempt}/{generation}").as_bytes(),
    )
    .hyphenated()
    .to_string()
}

/// What every row of a run shares.
pub struct Owner<'a> {
    /// The run.
    pub run: &'a Run,
    /// Its transcript.
    pub correlation_id: Option<String>,
    /// Now, epoch ms (for backoff delays).
    pub now_ms: i64,
}

impl Owner<'_> {
    /// A row with the constants and the owner's fields set; the rest zero.
    pub fn row(&self, kind: &str, reference: &str, attempt: i64, status: TaskStatus) -> Task {
        Task {
            task_type: kind.to_owned(),
            task_def_name: kind.to_owned(),
            reference_task_name: reference.to_owned(),
            task_id: task_id(&self.run.run_id, reference, attempt, 0),
            status,
            seq: 0,
            retry_count: attempt - 1,
            retried_task_id: None,
            retried: false,
            executed: status.is_terminal(),
            scheduled_time: 0,
            start_time: 0,
            end_time: 0,
            update_time: 0,
            first_start_time: 0,
            queue_wait_time: 0,
            start_delay_in_seconds: 0,
            callback_after_seconds: 0,
            poll_count: 0,
            response_timeout_seconds: 0,
            worker_id: None,
            input_data: json!({}),
            output_data: json!({}),
            reason_for_incompletion: None,
            workflow_instance_id: self.run.workflow_id.clone(),
            workflow_type: self.run.workflow_type.clone(),
            correlation_id: self.correlation_id.clone(),
            workflow_task: WorkflowTask {
                name: kind.to_owned(),
                task_reference_name: reference.to_owned(),
                kind: kind.to_owned(),
                input_parameters: Map::new(),
                optional: false,
                retry_count: 0,
                dynamic_fork_tasks_param: None,
                dynamic_fork_tasks_input_param_name: None,
            },
            callback_from_worker: true,
            loop_over_task: false,
            workflow_priority: 0,
            iteration: 0,
            rate_limit_per_frequency: 0,
            rate_limit_frequency_in_seconds: 0,
        }
    }
}

/// The rows of one step, one per attempt, oldest first.
pub fn step_rows(
    owner: &Owner<'_>,
    step: &Step,
    def: Option<&StepDef>,
    attempts: &[AttemptRow],
) -> Vec<Task> {
    let run = owner.run;
    let pending = run.pending_of(&step.activity_id);
    // Attempts of earlier runs of this workflow's reset chain (a retry resets the run, §4)
    // come first; this run's rows continue their chain.
    let (earlier, this_run): (Vec<&AttemptRow>, Vec<&AttemptRow>) = attempts
        .iter()
        .filter(|a| a.activity_id == step.activity_id)
        .partition(|a| !a.run_id.is_empty() && a.run_id != run.run_id);
    // Then this run's attempts before its activity resets (a retry of a step waiting in
    // backoff counts from attempt 1 again), then the current generation's.
    let generation = current_generation(step, pending, &this_run);
    let (before_reset, recorded): (Vec<&AttemptRow>, Vec<&AttemptRow>) = this_run
        .into_iter()
        .partition(|a| a.generation < generation);
    let last = step
        .started
        .as_ref()
        .map(|s| i64::from(s.attempt))
        .or_else(|| pending.map(|p| i64::from(p.attempt)))
        .unwrap_or(1)
        .max(recorded.iter().map(|a| a.attempt).max().unwrap_or(1));
    let optional = def.is_some_and(|d| d.optional);
    let max_attempts = match (step.max_attempts, def) {
        (0, Some(d)) if step.local => i64::from(d.options.retry.maximum_attempts),
        (n, _) => i64::from(n),
    };
    let response_timeout = match (step.heartbeat_s, step.start_to_close_s, def) {
        (h, _, _) if h > 0 => h,
        (_, s, _) if s > 0 => s,
        (_, _, Some(d)) => d
            .options
            .heartbeat_ms
            .or(d.options.start_to_close_ms)
            .map_or(0, |t| (t / 1000) as i64),
        _ => 0,
    };
    let mut rows: Vec<Task> = Vec::new();
    earlier_rows(owner, step, &mut rows, &earlier, true);
    earlier_rows(owner, step, &mut rows, &before_reset, false);
    let offset = rows.len() as i64;
    for attempt in 1..=last {
        let db = recorded.iter().find(|a| a.attempt == attempt);
        let reference = &step.activity_id;
        let mut row = owner.row(
            &step.activity_type,
            reference,
            attempt,
            TaskStatus::Scheduled,
        );
        row.task_id = task_id(&run.run_id, reference, attempt, generation);
        let mut start = db.map_or(0, |a| ms(Some(&a.started_at)));
        let mut end = db
            .and_then(|a| a.ended_at.as_deref())
            .map_or(0, |t| ms(Some(t)));
        let mut worker = db.and_then(|a| a.worker_identity.clone());
        let recorded_failure = db.and_then(|a| {
            let message = a.failure_message.as_deref()?;
            Some(reason_text(
                a.failure_type.as_deref().unwrap_or_default(),
                message,
            ))
        });
        let previous_failure = step
            .started
            .as_ref()
            .and_then(|s| s.last_failure.clone())
            .or_else(|| pending.and_then(|p| p.last_failure.clone()));
        let (mut status, mut reason, mut output) = match db.map(|a| a.status.as_str()) {
            Some("completed") => (TaskStatus::Completed, None, json!({})),
            Some("non_retryable") => (
                TaskStatus::FailedWithTerminalError,
                recorded_failure,
                json!({}),
            ),
            Some("failed") => (TaskStatus::Failed, recorded_failure, json!({})),
            Some("cancelled") => (TaskStatus::Canceled, None, json!({})),
            Some("skipped") => (TaskStatus::Skipped, None, json!({})),
            // The attempt just before the last one: Temporal kept its failure.
            _ if attempt + 1 == last && previous_failure.is_some() => {
                let f = previous_failure.clone().unwrap_or_default();
                let status = if f.timeout.is_some() {
                    TaskStatus::TimedOut
                } else {
                    TaskStatus::Failed
                };
                (status, Some(f.reason()), json!({}))
            }
            Some(_) if attempt < last => (
                TaskStatus::TimedOut,
                Some("timeout: worker lost or timed out".to_owned()),
                json!({}),
            ),
            Some(_) => (TaskStatus::InProgress, None, json!({})),
            None if attempt < last => (
                TaskStatus::Failed,
                Some("attempt details not recorded".to_owned()),
                json!({}),
            ),
            None => (TaskStatus::Scheduled, None, json!({})),
        };
        let mut delay = 0;
        if attempt == last {
            match (&step.close, pending) {
                (Some(Close::Completed { at_ms, result }), _) => {
                    (status, reason) = skipped(result)
                        .map_or((TaskStatus::Completed, None), |why| {
                            (TaskStatus::Skipped, Some(why))
                        });
                    output = if result.is_object() {
                        result.clone()
                    } else {
                        json!({ "result": result })
                    };
                    end = *at_ms;
                }
                (
                    Some(Close::Failed {
                        at_ms,
                        failure,
                        retry_state,
                    }),
                    _,
                ) => {
                    status = if optional {
                        TaskStatus::CompletedWithErrors
                    } else if *retry_state == RetryState::NonRetryableFailure
                        || failure.non_retryable
                    {
                        TaskStatus::FailedWithTerminalError
                    } else {
                        TaskStatus::Failed
                    };
                    reason = Some(failure.reason());
                    end = *at_ms;
                }
                (Some(Close::TimedOut { at_ms, failure }), _) => {
                    status = if optional {
                        TaskStatus::CompletedWithErrors
                    } else {
                        TaskStatus::TimedOut
                    };
                    reason = Some(failure.reason());
                    end = *at_ms;
                }
                (Some(Close::Canceled { at_ms }), _) => {
                    status = TaskStatus::Canceled;
                    end = *at_ms;
                }
                // Pending when the run closed: it never finished.
                (None, _) if !run.is_running() => {
                    status = TaskStatus::Canceled;
                    end = run.close_ms;
                }
                (None, Some(p)) => {
                    if p.is_running() {
                        status = TaskStatus::InProgress;
                        start = p.last_started_ms.max(start);
                        // Only a heartbeat that was sent (a client reads into it).
                        if !p.heartbeat.is_null() {
                            output = json!({ "heartbeat": p.heartbeat });
                        }
                    } else {
                        status = TaskStatus::Scheduled;
                        if p.next_attempt_ms > 0 {
                            delay = ((p.next_attempt_ms - owner.now_ms) / 1000).max(0);
                        }
                    }
                    if p.paused
                        || matches!(
                            p.state,
                            PendingActivityState::Paused | PendingActivityState::PauseRequested
                        )
                    {
                        reason = Some(format!(
                            "paused: {}",
                            p.pause_reason.as_deref().unwrap_or("activity paused")
                        ));
                    }
                    if !p.worker.is_empty() {
                        worker = Some(p.worker.clone());
                    }
                }
                (None, None) => {}
            }
            if let Some(s) = &step.started {
                if start == 0 {
                    start = s.at_ms;
                }
                if worker.is_none() && !s.identity.is_empty() {
                    worker = Some(s.identity.clone());
                }
            }
        }
        let scheduled = if rows.is_empty() {
            step.scheduled_ms
        } else {
            rows.last()
                .map_or(step.scheduled_ms, |r: &Task| r.end_time)
                .max(step.scheduled_ms)
        };
        let terminal = status.is_terminal();
        row.status = status;
        row.executed = terminal;
        row.retried = attempt < last;
        row.retry_count = offset + attempt - 1;
        row.retried_task_id = rows.last().map(|r| r.task_id.clone());
        row.scheduled_time = scheduled;
        row.start_time = start;
        row.end_time = if terminal { end } else { 0 };
        row.update_time = end.max(start).max(scheduled);
        if attempt == last
            && let Some(p) = pending
        {
            row.update_time = row.update_time.max(p.last_heartbeat_ms);
        }
        row.first_start_time = rows.first().map_or(start, |r| r.start_time);
        row.queue_wait_time = if start > 0 {
            (start - scheduled).max(0)
        } else {
            0
        };
        row.start_delay_in_seconds = delay;
        row.callback_after_seconds = delay;
        row.poll_count = i64::from(start > 0);
        row.response_timeout_seconds = response_timeout;
        row.worker_id = worker;
        row.input_data = if step.input.is_object() {
            step.input.clone()
        } else {
            json!({ "input": step.input })
        };
        row.output_data = output;
        row.reason_for_incompletion = reason;
        row.workflow_task.kind = "SIMPLE".into();
        row.workflow_task.optional = optional;
        row.workflow_task.retry_count = (max_attempts - 1).max(0);
        rows.push(row);
    }
    // A local step between attempts (its marker comes when it finishes): the next attempt is
    // scheduled, as Conductor shows a retry.
    if step.local
        && step.close.is_none()
        && run.is_running()
        && (max_attempts == 0 || last < max_attempts)
        && let Some(failed) = rows.last_mut()
        && failed.status == TaskStatus::Failed
    {
        failed.retried = true;
        let mut next = failed.clone();
        next.task_id = task_id(&run.run_id, &step.activity_id, last + 1, generation);
        next.retried_task_id = Some(failed.task_id.clone());
        next.retried = false;
        next.status = TaskStatus::Scheduled;
        next.executed = false;
        next.retry_count = failed.retry_count + 1;
        next.scheduled_time = failed.end_time.max(failed.scheduled_time);
        next.start_time = 0;
        next.end_time = 0;
        next.update_time = next.scheduled_time;
        next.queue_wait_time = 0;
        next.poll_count = 0;
        next.reason_for_incompletion = None;
        next.output_data = json!({});
        rows.push(next);
    }
    rows
}

/// The reset generation the step's current attempts belong to: the latest one recorded in this
/// run, or the one after it when Temporal's attempt count shows a reset whose first attempt
/// has no row yet (the count went below what that generation reached, or the attempt waiting
/// to start already ended in it).
fn current_generation(step: &Step, pending: Option<&Pending>, recorded: &[&AttemptRow]) -> i64 {
    let latest = recorded.iter().map(|a| a.generation).max().unwrap_or(0);
    let in_latest = || recorded.iter().filter(|a| a.generation == latest);
    let Some(temporal) = step
        .started
        .as_ref()
        .map(|s| i64::from(s.attempt))
        .or_else(|| pending.map(|p| i64::from(p.attempt)))
    else {
        return latest;
    };
    if in_latest().any(|a| a.attempt > temporal) {
        return latest + 1;
    }
    // The attempt Temporal has pending already ended in that generation: waiting to start
    // again, or started after that end (its start not recorded yet).
    if step.close.is_none()
        && let Some(p) = pending
        && p.state != PendingActivityState::PauseRequested
        && in_latest().any(|a| {
            a.attempt == temporal
                && a.status != "started"
                && (!p.is_running()
                    || a.ended_at
                        .as_deref()
                        .is_some_and(|end| p.last_started_ms > ms(Some(end))))
        })
    {
        return latest + 1;
    }
    latest
}

/// Rows of a step's attempts recorded before its current ones, appended to `rows` and chained
/// to them, oldest first, each replaced by the next: those of earlier runs of the reset chain
/// that did not complete (`skip_completed`: the failure a retry reset the run for, an attempt
/// cut off by the reset; completed ones are not repeated, the step's row in this run stands
/// for them), or this run's before an activity reset. A retried step reads as Conductor shows
/// a retry.
fn earlier_rows(
    owner: &Owner<'_>,
    step: &Step,
    rows: &mut Vec<Task>,
    earlier: &[&AttemptRow],
    skip_completed: bool,
) {
    for a in earlier
        .iter()
        .filter(|a| !(skip_completed && a.status == "completed"))
    {
        let (status, reason) = match a.status.as_str() {
            "completed" => (TaskStatus::Completed, None),
            "non_retryable" => (TaskStatus::FailedWithTerminalError, None),
            "failed" => (TaskStatus::Failed, None),
            "cancelled" => (TaskStatus::Canceled, None),
            "skipped" => (TaskStatus::Skipped, None),
            _ => (
                TaskStatus::TimedOut,
                Some("timeout: worker lost or timed out".to_owned()),
            ),
        };
        let mut row = owner.row(&step.activity_type, &step.activity_id, 1, status);
        row.task_id = task_id(&a.run_id, &step.activity_id, a.attempt, a.generation);
        row.retry_count = rows.len() as i64;
        row.retried = true;
        row.retried_task_id = rows.last().map(|r| r.task_id.clone());
        row.start_time = ms(Some(&a.started_at));
        row.scheduled_time = rows
            .last()
            .map_or(row.start_time, |r| r.end_time.min(row.start_time));
        row.end_time = a
            .ended_at
            .as_deref()
            .map_or(row.start_time, |t| ms(Some(t)));
        row.update_time = row.end_time;
        row.first_start_time = rows.first().map_or(row.start_time, |r| r.start_time);
        row.queue_wait_time = row.start_time - row.scheduled_time;
        row.poll_count = 1;
        row.worker_id = a.worker_identity.clone();
        row.input_data = if step.input.is_object() {
            step.input.clone()
        } else {
            json!({ "input": step.input })
        };
        row.reason_for_incompletion = reason.or_else(|| {
            let message = a.failure_message.as_deref()?;
            Some(reason_text(
                a.failure_type.as_deref().unwrap_or_default(),
                message,
            ))
        });
        row.workflow_task.kind = "SIMPLE".into();
        rows.push(row);
    }
}

/// A completed step that did nothing ([`workflow::progress::skipped_reason`]): its reason.
fn skipped(result: &Value) -> Option<String> {
    workflow::progress::skipped_reason(result).map(|why| format!("skipped: {why}"))
}

/// `reasonForIncompletion` of a recorded failure: `{type}: {message}`, the bare message when
/// the failure has no type.
fn reason_text(kind: &str, message: &str) -> String {
    if kind.is_empty() {
        message.to_owned()
    } else {
        format!("{kind}: {message}")
    }
}
