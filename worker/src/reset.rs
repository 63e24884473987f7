//! `reflow reset-point <workflow-id> [--step S]`: the event id to give
//! `temporal workflow reset --event-id` to re-run a run from a step.
//!
//! Temporal resets only to a `WorkflowTaskCompleted` event; the one to pick is the workflow task
//! that scheduled the step (its `ActivityTaskScheduled` or `StartChildWorkflowExecutionInitiated`
//! names it), so the reset run schedules the step again and everything before it is kept.
//! Without `--step`, the step is the earliest one that failed or timed out. Steps re-run after a
//! reset hit reflow's checkpoints, so completed paid work is never paid twice.

use serde_json::Value;
use temporalio_client::Client;

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
    let history = crate::history::fetch(client, workflow_id)
        .await
        .map_err(|message| ResetPointError::History {
            workflow_id: workflow_id.to_owned(),
            message,
        })?;
    find(&history, step).ok_or_else(|| ResetPointError::NotFound {
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

/// [`reset_point`] on a history in Temporal's JSON form.
pub fn find(history: &Value, step: Option<&str>) -> Option<ResetPoint> {
    // scheduled event id → (step id, its workflow task)
    let mut scheduled: Vec<(i64, String, i64)> = Vec::new();
    for e in crate::history::events(history) {
        let (id, kind, a) = (e.id, e.kind, e.attrs);
        let task = a["workflow_task_completed_event_id"].as_i64().unwrap_or(0);
        match kind {
            "ActivityTaskScheduledEventAttributes" => {
                let act = a["activity_id"].as_str().unwrap_or_default().to_owned();
                if step.is_some_and(|s| is_step(&act, s)) {
                    return Some(ResetPoint {
                        event_id: task,
                        step: act,
                    });
                }
                scheduled.push((id, act, task));
            }
            "StartChildWorkflowExecutionInitiatedEventAttributes" => {
                let child = a["workflow_id"].as_str().unwrap_or_default().to_owned();
                if step == Some(child.as_str()) {
                    return Some(ResetPoint {
                        event_id: task,
                        step: child,
                    });
                }
                scheduled.push((id, child, task));
            }
            "ActivityTaskFailedEventAttributes"
            | "ActivityTaskTimedOutEventAttributes"
            | "ChildWorkflowExecutionFailedEventAttributes"
            | "ChildWorkflowExecutionTimedOutEventAttributes"
                if step.is_none() =>
            {
                let key = if kind.starts_with("Activity") {
                    a["scheduled_event_id"].as_i64()
                } else {
                    a["initiated_event_id"].as_i64()
                };
                if let Some((_, s, task)) = scheduled.iter().find(|(e, _, _)| Some(*e) == key) {
                    return Some(ResetPoint {
                        event_id: *task,
                        step: s.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    None
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

    #[test]
    fn the_point_is_the_task_that_scheduled_the_step_or_the_first_failure() {
        let h = serde_json::json!({"events": [
            {"event_id": 4, "attributes": {"WorkflowTaskCompletedEventAttributes": {}}},
            {"event_id": 5, "attributes": {"ActivityTaskScheduledEventAttributes": {"activity_id": "a", "workflow_task_completed_event_id": 4}}},
            {"event_id": 9, "attributes": {"WorkflowTaskCompletedEventAttributes": {}}},
            {"event_id": 10, "attributes": {"ActivityTaskScheduledEventAttributes": {"activity_id": "b_0", "workflow_task_completed_event_id": 9}}},
            {"event_id": 12, "attributes": {"ActivityTaskFailedEventAttributes": {"scheduled_event_id": 10}}},
        ]});
        assert_eq!(find(&h, Some("a")).unwrap().event_id, 4);
        assert_eq!(
            find(&h, None).unwrap(),
            ResetPoint {
                event_id: 9,
                step: "b_0".into()
            }
        );
        assert!(find(&h, Some("c")).is_none());
    }
}
