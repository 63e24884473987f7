//! `reflow reset-point <workflow-id> [--step S]`: the event id to give
//! `temporal workflow reset --event-id` to re-run a run from a step.
//!
//! Temporal resets only to a `WorkflowTaskCompleted` event; the one to pick is the workflow task
//! that scheduled the step (its `ActivityTaskScheduled` or `StartChildWorkflowExecutionInitiated`
//! names it), so the reset run schedules the step again and everything before it is kept.
//! Without `--step`, the step is the earliest one that failed or timed out. Steps re-run after a
//! reset hit reflow's checkpoints, so completed paid work is never paid twice.

use temporalio_client::Client;

use crate::history::ChildOutcome;
use crate::history::{Close, Run};

/// Why no reset point was found.
#[derive(Debug, thiserror::Error)]
pub enum ResetPointError {
    /// The history could not be read.
    #[error("history of {workflow_id}: {message}")]
    History {
        /// The workflow.
        workflow_id: String,
        /// Why.
        message: String,
    },
    /// No step matches.
    #[error("{workflow_id}: {message}")]
    NotFound {
        /// The workflow.
        workflow_id: String,
        /// What was looked for.
        message: String,
    },
}

/// A point to reset to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetPoint {
    /// The `WorkflowTaskCompleted` event id.
    pub event_id: i64,
    /// The activity (or child workflow) id of the step found.
    pub step: String,
}

/// The reset point of `step` (a step id, or an activity / child id) in the latest run of
/// `workflow_id`, or of its earliest failed step.
pub async fn reset_point(
    client: &Client,
    workflow_id: &str,
    step: Option<&str>,
) -> Result<ResetPoint, ResetPointError> {
    let run = crate::history::load(client, workflow_id)
        .await
        .map_err(|e| ResetPointError::History {
            workflow_id: workflow_id.to_owned(),
            message: e.to_string(),
        })?;
    find(&run, step).ok_or_else(|| ResetPointError::NotFound {
        workflow_id: workflow_id.to_owned(),
        message: match step {
            Some(s) => format!("no step {s:?} was scheduled"),
            None => "no step failed or timed out (name one with --step)".into(),
        },
    })
}

/// Whether the activity or child id `id` belongs to step `step` (`transcribe_track` matches
/// `transcribe_track`, fan-out members `transcribe_track_2`, and ids given whole).
fn is_step(id: &str, step: &str) -> bool {
    id == step
        || id
            .strip_prefix(step)
            .and_then(|rest| rest.strip_prefix('_').or_else(|| rest.strip_prefix('-')))
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty())
}

/// [`reset_point`] on a loaded run: the first step scheduled that matches `step`, or the
/// earliest-scheduled step or child that failed.
pub fn find(run: &Run, step: Option<&str>) -> Option<ResetPoint> {
    // (workflow task that scheduled it, its id), in history order.
    let mut scheduled: Vec<(i64, &str, bool)> = run
        .steps
        .iter()
        .map(|s| {
            let failed = s.close.as_ref().is_some_and(Close::is_failure);
            (s.scheduled_by, s.activity_id.as_str(), failed)
        })
        .chain(run.children.iter().map(|c| {
            let failed = matches!(
                c.outcome,
                Some(
                    ChildOutcome::Failed(_) | ChildOutcome::TimedOut | ChildOutcome::StartFailed(_)
                )
            );
            (c.scheduled_by, c.workflow_id.as_str(), failed)
        }))
        .collect();
    scheduled.sort_by_key(|s| s.0);
    let found = match step {
        Some(step) => scheduled.iter().find(|(_, id, _)| is_step(id, step)),
        None => scheduled.iter().find(|(_, _, failed)| *failed),
    }?;
    Some(ResetPoint {
        event_id: found.0,
        step: found.1.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_matches_its_fan_out_members_and_nothing_else() {
        assert!(is_step("transcribe_track", "transcribe_track"));
        assert!(is_step("transcribe_track_2", "transcribe_track"));
        assert!(!is_step("transcribe_track_x", "transcribe_track"));
        assert!(!is_step("transcribe", "transcribe_track"));
        assert!(!is_step("transcribe_track", "transcribe"));
    }

    fn run(steps: &[(&str, i64, bool)]) -> Run {
        let described = Default::default();
        let mut run = Run::new("w", &[], &described);
        for (id, task, failed) in steps {
            run.steps.push(crate::history::Step {
                activity_id: (*id).into(),
                activity_type: "t".into(),
                task_queue: String::new(),
                scheduled_ms: 0,
                input: serde_json::Value::Null,
                start_to_close_s: 0,
                heartbeat_s: 0,
                max_attempts: 0,
                started: None,
                close: failed.then(|| Close::TimedOut {
                    at_ms: 1,
                    failure: Default::default(),
                }),
                scheduled_by: *task,
                local: false,
            });
        }
        run
    }

    #[test]
    fn the_point_is_the_task_that_scheduled_the_step_or_the_first_failure() {
        let r = run(&[("a", 4, false), ("b_0", 9, true), ("c_1", 12, true)]);
        assert_eq!(find(&r, Some("a")).unwrap().event_id, 4);
        assert_eq!(
            find(&r, None).unwrap(),
            ResetPoint {
                event_id: 9,
                step: "b_0".into()
            }
        );
        assert_eq!(find(&r, Some("c")).unwrap().event_id, 12);
        assert!(find(&r, Some("d")).is_none());
    }
}
