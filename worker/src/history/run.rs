//! [`Run`]: a Temporal run built from its protobuf history events and its description, in
//! Temporal's own enums (`WorkflowExecutionStatus`, `RetryState`, `TimeoutType`,
//! `PendingActivityState`). Times are epoch milliseconds, `0` when absent; payloads are JSON.
//! This file is the event-by-event reading of a run; what it fills per activity, child and
//! pending activity is [`super::step`], a failure's root cause [`super::failure`].

use serde_json::Value;
use temporalio_common::protos::temporal::api::common::v1::{
    Payloads, SearchAttributes, WorkflowType,
};
use temporalio_common::protos::temporal::api::enums::v1::{
    PendingActivityState, RetryState, WorkflowExecutionStatus, WorkflowTaskFailedCause,
};
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_common::protos::temporal::api::workflow::v1::pending_activity_info::pause_info::PausedBy;
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeWorkflowExecutionResponse;
use workflow::interpreter::REPORT_PROGRESS;
use workflow::interpreter::child_start;
use workflow::interpreter::resolve::RESOLVE_PIPELINE;
use workflow::search;

use super::{Child, ChildOutcome, Close, Failure, Pending, Started, Step};

/// The marker Temporal's Core SDK records for a finished local activity.
const LOCAL_ACTIVITY_MARKER: &str = "core_local_activity";

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

/// A child's recorded input that leaves its version, graph and parent to its start event
/// (`reflow-lean-history-3`), completed from that event as the child itself does
/// ([`workflow::interpreter::child_start`]), or from the parent's command that wrote it (its
/// initiated event: the same workflow type and search attributes); any other input is left as
/// it is.
fn complete_child_input(
    input: &mut Value,
    workflow_type: Option<&WorkflowType>,
    parent: Option<&str>,
    attributes: Option<&SearchAttributes>,
) {
    let attribute = |name: &str| -> Option<Value> {
        let p = attributes?.indexed_fields.get(name)?;
        serde_json::from_slice(&p.data).ok()
    };
    let start = child_start::StartEvent {
        workflow_type: workflow_type.map_or("", |t| t.name.as_str()),
        parent,
        pipeline: attribute(search::PIPELINE_NAME.name())
            .and_then(|v| v.as_str().map(str::to_owned)),
        version: attribute(search::PIPELINE_VERSION.name()).and_then(|v| v.as_i64()),
        hash: attribute(search::PIPELINE_HASH.name()).and_then(|v| v.as_str().map(str::to_owned)),
    };
    let declared = search::DECLARABLE
        .iter()
        .filter_map(|k| {
            let v = attribute(k.name())?;
            Some((k.name().to_owned(), v.as_str()?.to_owned()))
        })
        .collect();
    child_start::complete_recorded(input, start, &declared);
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
                    complete_child_input(
                        &mut self.input,
                        a.workflow_type.as_ref(),
                        a.parent_workflow_execution
                            .as_ref()
                            .map(|p| p.workflow_id.as_str()),
                        a.search_attributes.as_ref(),
                    );
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
                    let mut input = value(a.input.as_ref());
                    complete_child_input(
                        &mut input,
                        a.workflow_type.as_ref(),
                        Some(&self.workflow_id),
                        a.search_attributes.as_ref(),
                    );
                    self.children.push(Child {
                        workflow_id: a.workflow_id.clone(),
                        workflow_type: a
                            .workflow_type
                            .as_ref()
                            .map(|t| t.name.clone())
                            .unwrap_or_default(),
                        input,
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
    /// input's inline `pipeline`. A child of a lean-history run resolved nothing in its own
    /// history: its graph of the version its input names, from the registered definitions
    /// this process holds (`workflow::pipeline::store`), when it holds it.
    pub fn pipeline(&self) -> Option<workflow::Pipeline> {
        if !self.resolved.is_null() {
            return serde_json::from_value(self.resolved.clone()).ok();
        }
        if let (Some(hash), Some(graph)) =
            (self.input["hash"].as_str(), self.input["graph"].as_str())
        {
            return workflow::pipeline::store::get(hash).map(|p| p.for_child(graph));
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
