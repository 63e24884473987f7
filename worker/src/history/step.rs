//! What a [`super::Run`] holds of each thing it started: an activity (or `local: true`) [`Step`]
//! and how it closed, a [`Child`] workflow and how it ended, a [`Pending`] activity in flight;
//! and which declared step of the pipeline a scheduled activity ran for ([`declared_as`]).

use serde_json::Value;
use temporalio_common::protos::temporal::api::enums::v1::{PendingActivityState, RetryState};

use super::Failure;

/// The start of an activity's last attempt (written to history when the activity closes).
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    /// When the last attempt started.
    pub at_ms: i64,
    /// Its attempt number.
    pub attempt: i32,
    /// The worker that ran it.
    pub identity: String,
    /// The previous attempt's failure.
    pub last_failure: Option<Failure>,
}

/// How a step closed.
#[derive(Debug, Clone, PartialEq)]
pub enum Close {
    /// It returned `result`.
    Completed {
        /// When.
        at_ms: i64,
        /// What it returned.
        result: Value,
    },
    /// Its last attempt failed.
    Failed {
        /// When.
        at_ms: i64,
        /// Why.
        failure: Failure,
        /// Why it was not retried.
        retry_state: RetryState,
    },
    /// Its last attempt timed out.
    TimedOut {
        /// When.
        at_ms: i64,
        /// Which timeout.
        failure: Failure,
    },
    /// It was cancelled.
    Canceled {
        /// When.
        at_ms: i64,
    },
}

impl Close {
    /// When it closed.
    pub fn at_ms(&self) -> i64 {
        match self {
            Close::Completed { at_ms, .. }
            | Close::Failed { at_ms, .. }
            | Close::TimedOut { at_ms, .. }
            | Close::Canceled { at_ms } => *at_ms,
        }
    }

    /// It failed or timed out.
    pub fn is_failure(&self) -> bool {
        matches!(self, Close::Failed { .. } | Close::TimedOut { .. })
    }
}

/// One activity the run scheduled (or a `local: true` step, from its marker).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The activity id (`pad_track_2`).
    pub activity_id: String,
    /// The activity type (`pad_track`).
    pub activity_type: String,
    /// Its task queue (empty for a local step).
    pub task_queue: String,
    /// When it was scheduled.
    pub scheduled_ms: i64,
    /// Its input.
    pub input: Value,
    /// Start-to-close timeout, seconds (0 when none).
    pub start_to_close_s: i64,
    /// Heartbeat timeout, seconds (0 when none).
    pub heartbeat_s: i64,
    /// The retry policy's maximum attempts (0: unlimited).
    pub max_attempts: i32,
    /// Its last attempt's start, once it closed.
    pub started: Option<Started>,
    /// How it closed.
    pub close: Option<Close>,
    /// The `WorkflowTaskCompleted` event that scheduled it: the point a reset re-runs it from.
    pub scheduled_by: i64,
    /// A local activity (its attempts' times are only in `step_attempt`).
    pub local: bool,
}

/// How a child workflow ended, as its parent saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum ChildOutcome {
    /// It completed.
    Completed,
    /// It failed.
    Failed(Failure),
    /// It timed out.
    TimedOut,
    /// It was cancelled or terminated.
    Canceled,
    /// It could not be started (the cause's name).
    StartFailed(String),
}

/// A child workflow the run started.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    /// Its workflow id.
    pub workflow_id: String,
    /// Its workflow type.
    pub workflow_type: String,
    /// The input it was started with.
    pub input: Value,
    /// When the parent initiated it.
    pub initiated_ms: i64,
    /// The `WorkflowTaskCompleted` event that started it (its reset point).
    pub scheduled_by: i64,
    /// How it ended, once it did.
    pub outcome: Option<ChildOutcome>,
}

/// An activity in flight, from describe-workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Its activity id.
    pub activity_id: String,
    /// Temporal's state.
    pub state: PendingActivityState,
    /// The current attempt.
    pub attempt: i32,
    /// The latest heartbeat details.
    pub heartbeat: Value,
    /// When it last heartbeated.
    pub last_heartbeat_ms: i64,
    /// When the current attempt started.
    pub last_started_ms: i64,
    /// When the next attempt is due (in retry backoff).
    pub next_attempt_ms: i64,
    /// The previous attempt's failure.
    pub last_failure: Option<Failure>,
    /// The worker running (or that last ran) it.
    pub worker: String,
    /// Paused by an operator.
    pub paused: bool,
    /// Why, as the operator (or the pausing rule) said.
    pub pause_reason: Option<String>,
}

impl Pending {
    /// Waiting out a retry backoff, or paused: what a retry request resets.
    pub fn is_waiting(&self) -> bool {
        (self.state == PendingActivityState::Scheduled && self.attempt > 1) || self.paused
    }

    /// An attempt is running (or being cancelled).
    pub fn is_running(&self) -> bool {
        matches!(
            self.state,
            PendingActivityState::Started | PendingActivityState::CancelRequested
        )
    }
}

/// The declared step of `pipeline`'s graph `graph` that `step` ran for: see [`declared_as`].
pub fn declared<'p>(
    pipeline: &'p workflow::Pipeline,
    graph: &str,
    step: &Step,
) -> Option<&'p workflow::pipeline::Step> {
    declared_as(pipeline, graph, &step.activity_id, &step.activity_type)
}

/// The declared step of `pipeline`'s graph `graph` that activity `activity_id` of type
/// `activity_type` ran for: the step with that id, else the fan-out it is a member of
/// (`{id}_{i}`), else the only step of that activity type (an `activity_id` template).
pub fn declared_as<'p>(
    pipeline: &'p workflow::Pipeline,
    graph: &str,
    activity_id: &str,
    activity_type: &str,
) -> Option<&'p workflow::pipeline::Step> {
    let steps = &pipeline.graph(graph).unwrap_or(&pipeline.main).steps;
    steps
        .iter()
        .find(|s| s.id == activity_id)
        .or_else(|| {
            steps.iter().find(|s| {
                s.for_each.is_some()
                    && activity_id
                        .strip_prefix(&s.id)
                        .and_then(|r| r.strip_prefix('_'))
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .or_else(|| {
            let mut of_type = steps.iter().filter(
                |s| matches!(&s.run, workflow::pipeline::Run::Activity(a) if *a == activity_type),
            );
            match (of_type.next(), of_type.next()) {
                (Some(s), None) => Some(s),
                _ => None,
            }
        })
}
