//! [`Run`]: a Temporal run built from its protobuf history events and its description, in
//! Temporal's own enums (`WorkflowExecutionStatus`, `RetryState`, `TimeoutType`,
//! `PendingActivityState`). Times are epoch milliseconds, `0` when absent; payloads are JSON.
//! One concept, one file: the event-by-event reading of a run and the types it fills.

use serde_json::Value;
use temporalio_common::protos::temporal::api::common::v1::Payloads;
use temporalio_common::protos::temporal::api::enums::v1::{
    PendingActivityState, RetryState, TimeoutType, WorkflowExecutionStatus, WorkflowTaskFailedCause,
};
use temporalio_common::protos::temporal::api::failure::v1::{
    Failure as ProtoFailure, failure::FailureInfo,
};
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_common::protos::temporal::api::workflow::v1::pending_activity_info::pause_info::PausedBy;
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeWorkflowExecutionResponse;
use workflow::interpreter::REPORT_PROGRESS;
use workflow::interpreter::resolve::RESOLVE_PIPELINE;

/// The marker Temporal's Core SDK records for a finished local activity.
const LOCAL_ACTIVITY_MARKER: &str = "core_local_activity";

/// The root cause of a Temporal failure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failure {
    /// The application failure's type (`HttpError`), empty for other failures.
    pub kind: String,
    /// Its message.
    pub message: String,
    /// For a timeout, which one.
    pub timeout: Option<TimeoutType>,
    /// The activity said not to retry.
    pub non_retryable: bool,
}

impl Failure {
    /// The root cause of `f`.
    pub fn of(f: &ProtoFailure) -> Failure {
        let mut root = f;
        while let Some(cause) = root.cause.as_deref() {
            root = cause;
        }
        // With the payload codec on, the message travels in `encoded_attributes` (sealed in
        // history, opened by the codec when the history is loaded) and `message` says
        // "Encoded failure".
        let message = root
            .encoded_attributes
            .as_ref()
            .and_then(|p| serde_json::from_slice::<Value>(&p.data).ok())
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| root.message.clone());
        let mut out = Failure {
            message,
            ..Failure::default()
        };
        match &root.failure_info {
            Some(FailureInfo::ApplicationFailureInfo(a)) => {
                out.kind = a.r#type.clone();
                out.non_retryable = a.non_retryable;
            }
            Some(FailureInfo::TimeoutFailureInfo(t)) => {
                out.timeout = TimeoutType::try_from(t.timeout_type).ok();
            }
            _ => {}
        }
        out
    }

    /// `{type}: {message}`; a timeout reads `timeout: HEARTBEAT`; without a type, the message.
    pub fn reason(&self) -> String {
        if let Some(t) = self.timeout {
            return format!("timeout: {}", timeout_name(t));
        }
        if self.kind.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.kind, self.message)
        }
    }
}

/// `START_TO_CLOSE`, `HEARTBEAT`, … (the enum's name without its prefix).
pub fn timeout_name(t: TimeoutType) -> &'static str {
    t.as_str_name().trim_start_matches("TIMEOUT_TYPE_")
}

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

/// One Temporal run.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The workflow id.
    pub workflow_id: String,
    /// The run id.
    pub run_id: String,
    /// The workflow type (`DiarizationPipeline`).
    pub workflow_type: String,
    /// Temporal's status.
    pub status: WorkflowExecutionStatus,
    /// Start, close and newest-event times.
    pub start_ms: i64,
    /// `0` while running.
    pub close_ms: i64,
    /// The newest event or heartbeat.
    pub update_ms: i64,
    /// The workflow input.
    pub input: Value,
    /// The result, when completed.
    pub result: Value,
    /// Why it did not complete: the failure's root cause, the termination reason.
    pub reason: Option<String>,
    /// The parent workflow, for a child.
    pub parent_id: Option<String>,
    /// Every step scheduled, in order.
    pub steps: Vec<Step>,
    /// Child workflows started, in order.
    pub children: Vec<Child>,
    /// Activities in flight.
    pub pending: Vec<Pending>,
    /// The first `WorkflowTaskCompleted` event (the reset point of a run that failed before
    /// any step).
    pub first_task_completed: i64,
    /// When a retry last reset this run, or reset its activities waiting in backoff (0:
    /// never).
    pub retried_ms: i64,
    /// The definition its first workflow task resolved (`resolve_pipeline`'s recorded result;
    /// `null` for a run that carries its definition inline).
    pub resolved: Value,
    /// Its memo plan (`memo_plan`'s recorded result: keys, the steps it reused and what they
    /// had cost; `null` in a run that is not memoized).
    pub memo_plan: Value,
    /// The first run of its chain (Temporal keeps it across resets; a new start of the
    /// workflow id begins a chain of its own).
    pub first_run_id: String,
    /// The parent's run that started it, for a child.
    pub parent_run_id: Option<String>,
}

/// Epoch ms of a protobuf timestamp.
pub fn ms(t: Option<&prost_wkt_types::Timestamp>) -> i64 {
    t.map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

fn secs(d: Option<&prost_wkt_types::Duration>) -> i64 {
    d.map_or(0, |d| d.seconds + i64::from(d.nanos >= 500_000_000))
}

/// The JSON value of a payload list's first payload (`null` when empty or not JSON).
pub fn value(p: Option<&Payloads>) -> Value {
    p.and_then(|p| p.payloads.first())
        .and_then(|p| serde_json::from_slice(&p.data).ok())
        .unwrap_or(Value::Null)
}

impl Run {
    /// The run of `workflow_id` from its history `events` and its description.
    pub fn new(
        workflow_id: &str,
        events: &[HistoryEvent],
        described: &DescribeWorkflowExecutionResponse,
    ) -> Run {
        let info = described.workflow_execution_info.as_ref();
        let mut run = Run {
            workflow_id: workflow_id.to_owned(),
            run_id: info
                .and_then(|i| i.execution.as_ref())
                .map(|e| e.run_id.clone())
                .unwrap_or_default(),
            workflow_type: info
                .and_then(|i| i.r#type.as_ref())
                .map(|t| t.name.clone())
                .unwrap_or_default(),
            status: info
                .and_then(|i| WorkflowExecutionStatus::try_from(i.status).ok())
                .unwrap_or(WorkflowExecutionStatus::Unspecified),
            start_ms: ms(info.and_then(|i| i.start_time.as_ref())),
            close_ms: ms(info.and_then(|i| i.close_time.as_ref())),
            update_ms: 0,
            input: Value::Null,
            result: Value::Null,
            reason: None,
            parent_id: info
                .and_then(|i| i.parent_execution.as_ref())
                .map(|p| p.workflow_id.clone())
                .filter(|p| !p.is_empty()),
            steps: Vec::new(),
            children: Vec::new(),
            pending: described.pending_activities.iter().map(pending).collect(),
            first_task_completed: 0,
            retried_ms: 0,
            resolved: Value::Null,
            memo_plan: Value::Null,
            first_run_id: info.map(|i| i.first_run_id.clone()).unwrap_or_default(),
            parent_run_id: info
                .and_then(|i| i.parent_execution.as_ref())
                .map(|p| p.run_id.clone())
                .filter(|p| !p.is_empty()),
        };
        run.read(events);
        for p in &run.pending {
            run.update_ms = run.update_ms.max(p.last_heartbeat_ms);
        }
        run
    }

    fn read(&mut self, events: &[HistoryEvent]) {
        // Scheduled / initiated event id → index in `steps` / `children`.
        let mut steps = std::collections::BTreeMap::new();
        let mut children = std::collections::BTreeMap::new();
        for e in events {
            let at = ms(e.event_time.as_ref());
            self.update_ms = self.update_ms.max(at);
            let Some(a) = &e.attributes else { continue };
            match a {
                Attributes::WorkflowExecutionStartedEventAttributes(a) => {
                    // A reset run keeps its first event (and its time) from the run it
                    // replaced, while its description gives the time of the reset: the
                    // workflow started when that event says.
                    if at > 0 {
                        self.start_ms = at;
                    }
                    self.input = value(a.input.as_ref());
                    if let Some(p) = &a.parent_workflow_execution {
                        self.parent_id = Some(p.workflow_id.clone());
                        if self.parent_run_id.is_none() && !p.run_id.is_empty() {
                            self.parent_run_id = Some(p.run_id.clone());
                        }
                    }
                    if self.first_run_id.is_empty() {
                        self.first_run_id = a.first_execution_run_id.clone();
                    }
                    if self.workflow_type.is_empty()
                        && let Some(t) = &a.workflow_type
                    {
                        self.workflow_type = t.name.clone();
                    }
                }
                Attributes::WorkflowExecutionCompletedEventAttributes(a) => {
                    self.result = value(a.result.as_ref());
                }
                Attributes::WorkflowExecutionFailedEventAttributes(a) => {
                    self.reason = a.failure.as_ref().map(|f| Failure::of(f).message);
                }
                Attributes::WorkflowExecutionTerminatedEventAttributes(a) => {
                    self.reason = Some(a.reason.clone());
                }
                Attributes::WorkflowExecutionCanceledEventAttributes(_) => {
                    self.reason = Some("canceled: the run was canceled".into());
                }
                Attributes::WorkflowExecutionTimedOutEventAttributes(_) => {
                    self.reason = Some("timeout: the run timed out".into());
                }
                Attributes::WorkflowTaskCompletedEventAttributes(_)
                    if self.first_task_completed == 0 =>
                {
                    self.first_task_completed = e.event_id;
                }
                Attributes::WorkflowTaskFailedEventAttributes(a)
                    if a.cause == WorkflowTaskFailedCause::ResetWorkflow as i32 =>
                {
                    self.retried_ms = at;
                }
                Attributes::WorkflowExecutionSignaledEventAttributes(a)
                    if a.signal_name == workflow::workflows::RETRIED_SIGNAL =>
                {
                    self.retried_ms = at;
                }
                Attributes::ActivityTaskScheduledEventAttributes(a) => {
                    let activity_type = a
                        .activity_type
                        .as_ref()
                        .map(|t| t.name.clone())
                        .unwrap_or_default();
                    if activity_type == REPORT_PROGRESS {
                        continue;
                    }
                    steps.insert(e.event_id, self.steps.len());
                    self.steps.push(Step {
                        activity_id: a.activity_id.clone(),
                        activity_type,
                        task_queue: a
                            .task_queue
                            .as_ref()
                            .map(|q| q.name.clone())
                            .unwrap_or_default(),
                        scheduled_ms: at,
                        input: value(a.input.as_ref()),
                        start_to_close_s: secs(a.start_to_close_timeout.as_ref()),
                        heartbeat_s: secs(a.heartbeat_timeout.as_ref()),
                        max_attempts: a.retry_policy.as_ref().map_or(0, |r| r.maximum_attempts),
                        started: None,
                        close: None,
                        scheduled_by: a.workflow_task_completed_event_id,
                        local: false,
                    });
                }
                Attributes::ActivityTaskStartedEventAttributes(a) => {
                    if let Some(&i) = steps.get(&a.scheduled_event_id) {
                        self.steps[i].started = Some(Started {
                            at_ms: at,
                            attempt: a.attempt,
                            identity: a.identity.clone(),
                            last_failure: a.last_failure.as_ref().map(Failure::of),
                        });
                    }
                }
                Attributes::ActivityTaskCompletedEventAttributes(a) => {
                    if let Some(&i) = steps.get(&a.scheduled_event_id) {
                        self.steps[i].close = Some(Close::Completed {
                            at_ms: at,
                            result: value(a.result.as_ref()),
                        });
                    }
                }
                Attributes::ActivityTaskFailedEventAttributes(a) => {
                    if let Some(&i) = steps.get(&a.scheduled_event_id) {
                        self.steps[i].close = Some(Close::Failed {
                            at_ms: at,
                            failure: a.failure.as_ref().map(Failure::of).unwrap_or_default(),
                            retry_state: RetryState::try_from(a.retry_state)
                                .unwrap_or(RetryState::Unspecified),
                        });
                    }
                }
                Attributes::ActivityTaskTimedOutEventAttributes(a) => {
                    if let Some(&i) = steps.get(&a.scheduled_event_id) {
                        self.steps[i].close = Some(Close::TimedOut {
                            at_ms: at,
                            failure: a.failure.as_ref().map(Failure::of).unwrap_or_default(),
                        });
                    }
                }
                Attributes::ActivityTaskCanceledEventAttributes(a) => {
                    if let Some(&i) = steps.get(&a.scheduled_event_id) {
                        self.steps[i].close = Some(Close::Canceled { at_ms: at });
                    }
                }
                Attributes::MarkerRecordedEventAttributes(a) => {
                    if a.marker_name != LOCAL_ACTIVITY_MARKER {
                        continue;
                    }
                    if value(a.details.get("data"))["activity_type"] == RESOLVE_PIPELINE {
                        self.resolved = value(a.details.get("result"));
                    } else if value(a.details.get("data"))["activity_type"]
                        == workflow::interpreter::memo::MEMO_PLAN
                    {
                        self.memo_plan = value(a.details.get("result"));
                    } else if let Some(step) = local_step(a, at) {
                        self.steps.push(step);
                    }
                }
                Attributes::StartChildWorkflowExecutionInitiatedEventAttributes(a) => {
                    children.insert(e.event_id, self.children.len());
                    self.children.push(Child {
                        workflow_id: a.workflow_id.clone(),
                        workflow_type: a
                            .workflow_type
                            .as_ref()
                            .map(|t| t.name.clone())
                            .unwrap_or_default(),
                        input: value(a.input.as_ref()),
                        initiated_ms: at,
                        scheduled_by: a.workflow_task_completed_event_id,
                        outcome: None,
                    });
                }
                Attributes::StartChildWorkflowExecutionFailedEventAttributes(a) => {
                    let cause = temporalio_common::protos::temporal::api::enums::v1::StartChildWorkflowExecutionFailedCause::try_from(a.cause)
                        .map_or("unknown", |c| c.as_str_name());
                    self.child_outcome(
                        &children,
                        a.initiated_event_id,
                        ChildOutcome::StartFailed(cause.to_owned()),
                    );
                }
                Attributes::ChildWorkflowExecutionCompletedEventAttributes(a) => {
                    self.child_outcome(&children, a.initiated_event_id, ChildOutcome::Completed);
                }
                Attributes::ChildWorkflowExecutionFailedEventAttributes(a) => {
                    let failure = a.failure.as_ref().map(Failure::of).unwrap_or_default();
                    self.child_outcome(
                        &children,
                        a.initiated_event_id,
                        ChildOutcome::Failed(failure),
                    );
                }
                Attributes::ChildWorkflowExecutionTimedOutEventAttributes(a) => {
                    self.child_outcome(&children, a.initiated_event_id, ChildOutcome::TimedOut);
                }
                Attributes::ChildWorkflowExecutionCanceledEventAttributes(a) => {
                    self.child_outcome(&children, a.initiated_event_id, ChildOutcome::Canceled);
                }
                Attributes::ChildWorkflowExecutionTerminatedEventAttributes(a) => {
                    self.child_outcome(&children, a.initiated_event_id, ChildOutcome::Canceled);
                }
                _ => {}
            }
        }
    }

    fn child_outcome(
        &mut self,
        children: &std::collections::BTreeMap<i64, usize>,
        initiated: i64,
        outcome: ChildOutcome,
    ) {
        if let Some(&i) = children.get(&initiated) {
            self.children[i].outcome = Some(outcome);
        }
    }

    /// Still running.
    pub fn is_running(&self) -> bool {
        self.status == WorkflowExecutionStatus::Running
    }

    /// The pipeline definition the run is pinned to: the one its first workflow task resolved
    /// from the registered version its input names, or (a run from before references) its
    /// input's inline `pipeline`.
    pub fn pipeline(&self) -> Option<workflow::Pipeline> {
        if !self.resolved.is_null() {
            return serde_json::from_value(self.resolved.clone()).ok();
        }
        serde_json::from_value(self.input["pipeline"].clone()).ok()
    }

    /// The pipeline input (the workflow input less the definition).
    pub fn pipeline_input(&self) -> &Value {
        &self.input["input"]
    }

    /// The pending activity with `activity_id`.
    pub fn pending_of(&self, activity_id: &str) -> Option<&Pending> {
        self.pending.iter().find(|p| p.activity_id == activity_id)
    }

    /// The reset point before the earliest-scheduled step (activity or child) that failed,
    /// timed out or could not start, among steps that are `optional` or not as `of_optional`
    /// says (children count as required).
    pub fn earliest_failure_point(
        &self,
        optional: &dyn Fn(&Step) -> bool,
        of_optional: bool,
    ) -> Option<i64> {
        let steps = self
            .steps
            .iter()
            .filter(|s| s.close.as_ref().is_some_and(Close::is_failure))
            .filter(|s| optional(s) == of_optional)
            .map(|s| s.scheduled_by);
        let children = self
            .children
            .iter()
            .filter(|_| !of_optional)
            .filter(|c| {
                matches!(
                    c.outcome,
                    Some(
                        ChildOutcome::Failed(_)
                            | ChildOutcome::TimedOut
                            | ChildOutcome::StartFailed(_)
                    )
                )
            })
            .map(|c| c.scheduled_by);
        steps.chain(children).filter(|p| *p > 0).min()
    }
}

fn pending(
    p: &temporalio_common::protos::temporal::api::workflow::v1::PendingActivityInfo,
) -> Pending {
    Pending {
        activity_id: p.activity_id.clone(),
        state: PendingActivityState::try_from(p.state).unwrap_or(PendingActivityState::Unspecified),
        attempt: p.attempt,
        heartbeat: value(p.heartbeat_details.as_ref()),
        last_heartbeat_ms: ms(p.last_heartbeat_time.as_ref()),
        last_started_ms: ms(p.last_started_time.as_ref()),
        next_attempt_ms: ms(p.next_attempt_schedule_time.as_ref()),
        last_failure: p.last_failure.as_ref().map(Failure::of),
        worker: p.last_worker_identity.clone(),
        paused: p.paused,
        pause_reason: p
            .pause_info
            .as_ref()
            .and_then(|i| i.paused_by.as_ref())
            .map(|by| match by {
                PausedBy::Manual(m) => m.reason.clone(),
                PausedBy::Rule(r) => r.reason.clone(),
            })
            .filter(|r| !r.is_empty()),
    }
}

/// A `local: true` step from its marker, recorded at `at` when the activity finished (the last
/// attempt, the input and the result or failure are in the marker; the attempts' times are in
/// `step_attempt`). `None` for the progress reporter.
fn local_step(
    a: &temporalio_common::protos::temporal::api::history::v1::MarkerRecordedEventAttributes,
    at: i64,
) -> Option<Step> {
    let data = value(a.details.get("data"));
    let activity_type = data["activity_type"].as_str()?.to_owned();
    if activity_type == REPORT_PROGRESS
        || activity_type == workflow::interpreter::memo::MEMO_PLAN
        || activity_type == workflow::interpreter::memo::MEMO_STORE
    {
        return None;
    }
    let stamp = &data["original_schedule_time"];
    let scheduled = match stamp["seconds"].as_i64() {
        Some(s) => (s * 1000 + stamp["nanos"].as_i64().unwrap_or(0) / 1_000_000).min(at),
        None => at,
    };
    let close = match &a.failure {
        Some(f) => {
            let failure = Failure::of(f);
            if failure.timeout.is_some() {
                Close::TimedOut { at_ms: at, failure }
            } else {
                let retry_state = if failure.non_retryable {
                    RetryState::NonRetryableFailure
                } else {
                    RetryState::MaximumAttemptsReached
                };
                Close::Failed {
                    at_ms: at,
                    failure,
                    retry_state,
                }
            }
        }
        None => Close::Completed {
            at_ms: at,
            result: value(a.details.get("result")),
        },
    };
    Some(Step {
        activity_id: data["activity_id"].as_str().unwrap_or_default().to_owned(),
        activity_type,
        task_queue: String::new(),
        scheduled_ms: scheduled,
        input: value(a.details.get("input")),
        start_to_close_s: 0,
        heartbeat_s: 0,
        max_attempts: 0,
        started: Some(Started {
            at_ms: scheduled,
            attempt: data["attempt"].as_i64().unwrap_or(1) as i32,
            identity: String::new(),
            last_failure: None,
        }),
        close: Some(close),
        scheduled_by: a.workflow_task_completed_event_id,
        local: true,
    })
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
