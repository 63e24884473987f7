//! The generic DAG interpreter every pipeline workflow type delegates to.
//!
//! [`run`] walks a validated [`Graph`]: it starts every ready step in declared order, waits
//! for whichever finishes first, and repeats until all steps are terminal or a required one
//! failed. Activities are scheduled by name ([`UntypedActivity`]) with the step's options;
//! `child:` steps start one child workflow per item ([`UntypedWorkflow`]) that runs the named
//! sub-pipeline of the same pinned definition. Determinism: only SDK futures, scheduled in
//! declared (then item) order, and `select_all`, which polls in a fixed order; no clocks but
//! `ctx.workflow_time()`, no maps but `BTreeMap`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::future::select_all;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use temporalio_workflow::common::protos::temporal::api::failure::v1::{
    Failure, failure::FailureInfo,
};
use temporalio_workflow::common::{
    ActivityCloseTimeouts, RetryPolicy, UntypedActivity, UntypedWorkflow,
};
use temporalio_workflow::{
    ActivityOptions, ChildWorkflowOptions, LocalActivityOptions, ParentClosePolicy,
    SignalWorkflowOptions, WorkflowContext, WorkflowIdReusePolicy, WorkflowResult,
    WorkflowTermination, common::error::ApplicationFailure,
};

use crate::expr::{self, Scope};
use crate::payload;
use crate::pipeline::{Graph, Pipeline, Run, Step};
use crate::progress::{ChildProgress, Progress, RunStatus, StepRow, StepState, StepStatus};
use crate::search;
use crate::workflows::ChildProgressSignal;

/// Input of every pipeline workflow: the pinned definition, which graph of it to run, and
/// the graph's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInput {
    /// The whole validated definition the run is pinned to.
    pub pipeline: Pipeline,
    /// The graph to run; `None` means the main one.
    #[serde(default)]
    pub graph: Option<String>,
    /// The graph's input (declared inputs by name).
    pub input: Value,
    /// Workflow id of the parent, for a child: it reports its table there.
    #[serde(default)]
    pub parent: Option<String>,
    /// The declared search attributes' values, as the parent rendered them (a child carries
    /// its parent's `RecordingId`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub search_attributes: BTreeMap<String, String>,
}

/// Patch marking runs that set search attributes, a memo and `CurrentStep` (histories from
/// before it replay without them).
pub const SEARCH_ATTRIBUTES_PATCH: &str = "reflow-search-attributes-1";

/// Patch marking runs whose children get only their own graph ([`Pipeline::for_child`]);
/// histories from before it replay with the whole definition in each child's input.
pub const CHILD_GRAPH_PATCH: &str = "reflow-child-graph-1";

/// Scope key of the rendered search attributes (not an identifier, so no step can shadow it).
const SA_SCOPE: &str = "$search_attributes";
/// Scope key of a fan-out's member count.
const COUNT_SCOPE: &str = "$count";

/// Workflow state the interpreter needs: the progress table the `progress` query returns.
pub trait Interpreted: 'static {
    /// The table.
    fn progress(&self) -> &Progress;
    /// The table, to update.
    fn progress_mut(&mut self) -> &mut Progress;
}

/// Failure type set on a run that failed because a step failed.
pub const STEP_FAILED: &str = "StepFailed";
/// Failure type for input that does not match the declared inputs.
pub const INVALID_INPUT: &str = "InvalidInput";

/// Why a step failed, as the progress table and the run's failure report it.
#[derive(Debug, Clone)]
struct StepFailure {
    /// Failure type (`NotFound`, `timeout: HEARTBEAT`, …).
    kind: String,
    /// Root message.
    message: String,
}

impl StepFailure {
    fn new(kind: &str, message: impl Into<String>) -> Self {
        StepFailure {
            kind: kind.to_owned(),
            message: message.into(),
        }
    }
    fn text(&self) -> String {
        // A child's own step failure already names its step and cause.
        if self.kind.is_empty() || self.kind == STEP_FAILED {
            self.message.clone()
        } else {
            format!("{}: {}", self.kind, self.message)
        }
    }
}

type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

#[derive(Debug, Clone, PartialEq)]
enum State {
    Pending,
    Running,
    Done(Value),
    Skipped,
    /// An optional step that failed for good.
    FailedOptional,
}

/// Run the graph `input.graph` of `input.pipeline` and return its output. A child also
/// reports its progress table to its parent whenever it changes (one signal per change, sent
/// one at a time, the latest state winning), so the parent's `progress` query includes it.
pub async fn run<W: Interpreted>(
    ctx: &WorkflowContext<W>,
    input: RunInput,
) -> WorkflowResult<Value> {
    let parent = input.parent.clone();
    // The main graph of a pipeline with a `progress:` section tells the frontend.
    let frontend = match (&parent, &input.pipeline.progress) {
        (None, Some(spec))
            if input
                .graph
                .as_deref()
                .is_none_or(|g| g == input.pipeline.name) =>
        {
            let mut scope = Scope::new();
            scope.insert("input".into(), input.input.clone());
            match expr::render(&Value::String(spec.transcript_id.clone()), &scope) {
                Ok(Value::String(t)) if !t.is_empty() => Some((spec.clone(), t)),
                _ => None, // the input check below reports a missing input
            }
        }
        _ => None,
    };
    let main = async {
        let result = run_graph(ctx, input).await;
        ctx.state_mut(|w| w.progress_mut().finished = true);
        result
    };
    match (parent, frontend) {
        (Some(parent), _) => {
            futures::future::join(main, report_to_parent(ctx, parent))
                .await
                .0
        }
        (None, Some((spec, transcript))) => {
            futures::future::join(main, report_to_frontend(ctx, spec, transcript))
                .await
                .0
        }
        (None, None) => main.await,
    }
}

/// Activity type of the progress reporter (a local activity: no task queue round trip, and
/// the order of reports is the workflow's).
pub const REPORT_PROGRESS: &str = "report_progress";

/// What [`REPORT_PROGRESS`] receives: the states that changed since the last report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgressReport {
    /// The run's workflow id.
    pub workflow_id: String,
    /// The transcript whose channel gets the events.
    pub transcript_id: String,
    /// `total_steps`.
    pub total_steps: u32,
    /// Changed states, by `step_index`.
    pub states: Vec<StepState>,
}

/// Report `PIPELINE_PROGRESS` states whenever the table changes: each index's aggregate
/// (members and children included) is recomputed, and the ones that differ from the last
/// report are sent, in index order. A failed report is dropped: progress is advisory and the
/// next change re-sends the state.
async fn report_to_frontend<W: Interpreted>(
    ctx: &WorkflowContext<W>,
    spec: crate::pipeline::ProgressSpec,
    transcript_id: String,
) {
    let sent = std::cell::RefCell::new(Vec::<StepState>::new());
    on_each_revision(ctx, u64::MAX, |progress| {
        let states = crate::progress::step_states(&progress, &spec.steps);
        let changed: Vec<StepState> = states
            .iter()
            .filter(|s| !sent.borrow().contains(s))
            .cloned()
            .collect();
        *sent.borrow_mut() = states;
        let report = ProgressReport {
            workflow_id: ctx.workflow_id().to_owned(),
            transcript_id: transcript_id.clone(),
            total_steps: spec.total_steps,
            states: changed,
        };
        async move {
            if report.states.is_empty() {
                return;
            }
            let options = LocalActivityOptions::builder()
                .schedule_to_close_timeout(Duration::from_secs(30))
                .retry_policy(
                    RetryPolicy::builder()
                        .initial_interval(Duration::from_millis(200))
                        .maximum_attempts(3)
                        .build(),
                )
                .build();
            let _ = ctx
                .execute_local_activity(
                    UntypedActivity::new(REPORT_PROGRESS.to_owned()),
                    payload::to_raw(&serde_json::to_value(&report).unwrap_or(Value::Null)),
                    options,
                )
                .await;
        }
    })
    .await;
}

async fn report_to_parent<W: Interpreted>(ctx: &WorkflowContext<W>, parent: String) {
    let me = ctx.workflow_id().to_owned();
    on_each_revision(ctx, 0, |progress| {
        let report = ChildProgress {
            workflow_id: me.clone(),
            progress,
        };
        let parent = parent.clone();
        async move {
            let handle = ctx.external_workflow(parent, None);
            let signal = handle.signal(
                ChildProgressSignal,
                report,
                SignalWorkflowOptions::default(),
            );
            // A parent that is gone cannot be told; the child's own table stays queryable.
            let _ = signal.await;
        }
    })
    .await;
}

/// Call `act` with the table each time its revision moves past the last one acted on
/// (starting from `initial`), one call at a time, until the run finished and its final
/// revision was handled (or the workflow is cancelled).
async fn on_each_revision<W, F, Fut>(ctx: &WorkflowContext<W>, initial: u64, mut act: F)
where
    W: Interpreted,
    F: FnMut(Progress) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut seen = initial;
    loop {
        if ctx
            .wait_condition(|w| w.progress().revision != seen || w.progress().finished)
            .await
            .is_err()
        {
            return; // cancelled
        }
        let (progress, revision) = ctx.state(|w| (w.progress().clone(), w.progress().revision));
        if revision != seen {
            act(progress).await;
            seen = revision;
        }
        if ctx.state(|w| w.progress().finished && w.progress().revision == seen) {
            return;
        }
    }
}

async fn run_graph<W: Interpreted>(
    ctx: &WorkflowContext<W>,
    input: RunInput,
) -> WorkflowResult<Value> {
    let pipeline = input.pipeline;
    let graph_name = input
        .graph
        .clone()
        .unwrap_or_else(|| pipeline.main.name.clone());
    let Some(graph) = pipeline.graph(&graph_name).cloned() else {
        return Err(ApplicationFailure::builder(format!(
            "pipeline {:?} has no graph {graph_name:?}",
            pipeline.name
        ))
        .type_name(INVALID_INPUT.to_owned())
        .non_retryable(true)
        .build()
        .into());
    };
    let is_child = input.parent.is_some();
    let inherited = input.search_attributes;
    let args = match resolve_inputs(&graph, input.input) {
        Ok(a) => a,
        Err(msg) => {
            return Err(
                ApplicationFailure::builder(format!("{graph_name}: invalid input: {msg}"))
                    .type_name(INVALID_INPUT.to_owned())
                    .non_retryable(true)
                    .build()
                    .into(),
            );
        }
    };
    ctx.state_mut(|w| {
        let p = w.progress_mut();
        *p = Progress {
            pipeline: graph.name.clone(),
            version: pipeline.version,
            pipeline_hash: pipeline.hash.clone(),
            status: RunStatus::Running,
            steps: graph.steps.iter().map(initial_row).collect(),
            revision: p.revision,
            finished: false,
        }
    });

    let mut scope = Scope::new();
    scope.insert("input".into(), args);
    scope.insert(
        "workflow".into(),
        json!({"id": ctx.workflow_id(), "pipeline": pipeline.name, "graph": graph.name,
               "version": pipeline.version, "hash": pipeline.hash,
               // The first workflow task's time: the run's start, within a task's latency.
               "started_at": now(ctx)}),
    );

    // Search attributes and memo, so the run can be found (observability.md §6).
    let tagged = ctx.patched(SEARCH_ATTRIBUTES_PATCH);
    let declared = if is_child {
        inherited
    } else {
        render_search_attributes(&pipeline, &scope)
    };
    if tagged {
        tag_run(ctx, &pipeline, &declared);
    }
    scope.insert(SA_SCOPE.into(), json!(declared));
    let mut current_step = String::new();

    let mut states: Vec<State> = vec![State::Pending; graph.steps.len()];
    let mut running: Vec<LocalFuture<'static, (usize, Result<Value, StepFailure>)>> = Vec::new();
    loop {
        // Start (or skip) everything that is ready, in declared order, until nothing changes.
        let mut changed = true;
        while changed {
            changed = false;
            for (i, step) in graph.steps.iter().enumerate() {
                if states[i] != State::Pending || !needs_met(&graph, &states, step) {
                    continue;
                }
                changed = true;
                if let Some(cond) = &step.when {
                    match expr::render_condition(cond, &scope) {
                        Ok(false) => {
                            states[i] = State::Skipped;
                            scope.insert(step.id.clone(), Value::Null);
                            let now = now(ctx);
                            ctx.state_mut(|w| {
                                if let Some(r) = w.progress_mut().row_mut(&step.id, None) {
                                    r.status = StepStatus::Skipped;
                                    r.finished_at = now;
                                }
                            });
                            continue;
                        }
                        Ok(true) => {}
                        Err(e) => {
                            states[i] = State::Running;
                            let f = StepFailure::new(INVALID_INPUT, format!("when: {e}"));
                            running.push(Box::pin(async move { (i, Err(f)) }));
                            continue;
                        }
                    }
                }
                states[i] = State::Running;
                let fut = run_step(
                    ctx.clone(),
                    pipeline.clone(),
                    graph.name.clone(),
                    step.clone(),
                    scope.clone(),
                );
                running.push(Box::pin(async move { (i, fut.await) }));
            }
        }
        if running.is_empty() {
            break;
        }
        if tagged {
            let now_running: Vec<&str> = graph
                .steps
                .iter()
                .zip(&states)
                .filter(|(_, s)| **s == State::Running)
                .map(|(s, _)| s.id.as_str())
                .collect();
            let now_running = now_running.join(",");
            if now_running != current_step {
                ctx.upsert_search_attributes([search::CURRENT_STEP.value_set(now_running.clone())]);
                current_step = now_running;
            }
        }
        let ((i, result), _, rest) = select_all(running).await;
        running = rest;
        let step = &graph.steps[i];
        let now = now(ctx);
        match result {
            Ok(value) => {
                let status = crate::progress::completed(&value);
                ctx.state_mut(|w| {
                    if let Some(r) = w.progress_mut().row_mut(&step.id, None) {
                        r.status = status;
                        r.finished_at = now;
                    }
                });
                scope.insert(step.id.clone(), value.clone());
                states[i] = State::Done(value);
            }
            Err(failure) => {
                ctx.state_mut(|w| {
                    if let Some(r) = w.progress_mut().row_mut(&step.id, None) {
                        r.status = StepStatus::Failed;
                        r.finished_at = now.clone();
                        r.error = Some(failure.text());
                    }
                });
                let cancelled = ctx.cancellation_token().is_cancelled();
                if step.optional && !cancelled {
                    tracing::warn!(workflow_id = ctx.workflow_id(), step = %step.id, error = %failure.text(), "optional step failed; the run goes on");
                    scope.insert(step.id.clone(), Value::Null);
                    states[i] = State::FailedOptional;
                } else {
                    if tagged {
                        ctx.upsert_search_attributes([
                            search::CURRENT_STEP.value_set(step.id.clone())
                        ]);
                    }
                    ctx.state_mut(|w| {
                        let p = w.progress_mut();
                        p.status = RunStatus::Failed;
                        for r in p.steps.iter_mut() {
                            if r.status == StepStatus::Pending {
                                r.status = StepStatus::Skipped;
                            }
                        }
                    });
                    if graph.name == pipeline.main.name
                        && let Some(hook) = &pipeline.on_failure
                    {
                        // Every other step in flight is abandoned (dropping its future cancels
                        // it); the hook records the failure where users look (`mark_failed`).
                        drop(running);
                        let mut scope = scope.clone();
                        scope.insert(
                            "failure".into(),
                            json!({"step": step.id, "type": failure.kind, "message": failure.message}),
                        );
                        let hooked = run_step(
                            ctx.clone(),
                            pipeline.clone(),
                            graph.name.clone(),
                            hook.clone(),
                            scope,
                        )
                        .await;
                        if let Err(e) = hooked {
                            tracing::error!(workflow_id = ctx.workflow_id(), step = %hook.id, error = %e.text(), "on_failure step failed");
                        }
                    }
                    if cancelled {
                        // `temporal workflow cancel`: the run ends Canceled, not Failed.
                        return Err(WorkflowTermination::cancelled());
                    }
                    return Err(ApplicationFailure::builder(format!(
                        "step {:?} failed: {}",
                        step.id,
                        failure.text()
                    ))
                    .type_name(STEP_FAILED.to_owned())
                    .non_retryable(true)
                    .build()
                    .into());
                }
            }
        }
    }

    let output = expr::render(&graph.output, &scope).map_err(|e| {
        ApplicationFailure::builder(format!("{}: output: {e}", graph.name))
            .type_name(INVALID_INPUT.to_owned())
            .non_retryable(true)
            .build()
    })?;
    if tagged {
        // The SDK encodes an unset as an empty payload, which the server refuses: set "".
        ctx.upsert_search_attributes([search::CURRENT_STEP.value_set(String::new())]);
    }
    ctx.state_mut(|w| w.progress_mut().status = RunStatus::Completed);
    Ok(output)
}

/// The pipeline's declared search attributes rendered for this run; one that renders to
/// nothing (an absent optional input) or fails to render is left out.
fn render_search_attributes(pipeline: &Pipeline, scope: &Scope) -> BTreeMap<String, String> {
    pipeline
        .search_attributes
        .iter()
        .filter_map(|(name, template)| {
            match expr::render(&Value::String(template.clone()), scope) {
                Ok(Value::String(s)) if !s.is_empty() => Some((name.clone(), s)),
                Ok(Value::Null) | Ok(Value::String(_)) | Err(_) => None,
                Ok(other) => Some((name.clone(), other.to_string())),
            }
        })
        .collect()
}

/// Set the run's search attributes (declared ones, pipeline name, version, hash) and memo.
fn tag_run<W>(ctx: &WorkflowContext<W>, pipeline: &Pipeline, declared: &BTreeMap<String, String>) {
    let mut updates = vec![
        search::PIPELINE_NAME.value_set(pipeline.name.clone()),
        search::PIPELINE_VERSION.value_set(i64::from(pipeline.version)),
        search::PIPELINE_HASH.value_set(pipeline.hash.clone()),
    ];
    updates.extend(
        declared
            .iter()
            .filter_map(|(k, v)| search::declarable(k).map(|key| key.value_set(v.clone()))),
    );
    ctx.upsert_search_attributes(updates);
    let memo = [
        ("pipeline", json!(pipeline.name)),
        ("pipeline_version", json!(pipeline.version)),
        ("pipeline_hash", json!(pipeline.hash)),
    ];
    if let Err(e) = ctx
        .upsert_memo(memo.map(|(k, v)| (k, Some(temporalio_workflow::common::MemoValue::new(v)))))
    {
        tracing::warn!(workflow_id = ctx.workflow_id(), error = %e, "memo not set");
    }
}

/// The Web UI label of a step's activity or child: its `summary:` template rendered for this
/// member, else the step id (with `i/N` for a fan-out member).
fn summary_of(step: &Step, scope: &Scope, index: Option<usize>) -> String {
    let default = || match index {
        Some(i) => match scope.get(COUNT_SCOPE).and_then(Value::as_u64) {
            Some(n) => format!("{} {}/{n}", step.id, i + 1),
            None => format!("{} {}", step.id, i + 1),
        },
        None => step.id.clone(),
    };
    match &step.summary {
        None => default(),
        Some(t) => match expr::render(&Value::String(t.clone()), scope) {
            Ok(Value::String(s)) if !s.trim().is_empty() => s,
            Ok(Value::String(_)) | Ok(Value::Null) | Err(_) => default(),
            Ok(other) => other.to_string(),
        },
    }
}

fn needs_met(graph: &Graph, states: &[State], step: &Step) -> bool {
    step.needs.iter().all(|n| {
        graph
            .steps
            .iter()
            .position(|s| &s.id == n)
            .is_some_and(|j| {
                matches!(
                    states[j],
                    State::Done(_) | State::Skipped | State::FailedOptional
                )
            })
    })
}

fn initial_row(step: &Step) -> StepRow {
    StepRow {
        id: step.id.clone(),
        runs: match &step.run {
            Run::Activity(a) => a.clone(),
            Run::Child(c) => c.clone(),
        },
        activity_id: None,
        child_workflow_id: None,
        status: StepStatus::Pending,
        attempt: 0,
        // Children are not retried (their activities are); a fan-out parent has no attempts.
        max_attempts: match (&step.run, &step.for_each) {
            (Run::Activity(_), None) => step.options.retry.maximum_attempts,
            _ => 0,
        },
        optional: step.optional,
        started_at: None,
        finished_at: None,
        error: None,
        members: Vec::new(),
        child: None,
    }
}

fn now<W>(ctx: &WorkflowContext<W>) -> Option<String> {
    ctx.workflow_time()
        .map(|t| humantime::format_rfc3339_millis(t).to_string())
}

/// Check the input against the declared inputs and apply defaults.
fn resolve_inputs(graph: &Graph, input: Value) -> Result<Value, String> {
    let mut map = match input {
        Value::Object(m) => m,
        Value::Null => serde_json::Map::new(),
        other => {
            return Err(format!(
                "expected an object of named inputs, got a {}",
                expr::kind(&other)
            ));
        }
    };
    let mut problems = Vec::new();
    for (name, spec) in &graph.inputs {
        match map.get(name) {
            None | Some(Value::Null) => {
                if let Some(d) = &spec.default {
                    map.insert(name.clone(), d.clone());
                } else if spec.required {
                    problems.push(format!("{name:?} is required"));
                } else {
                    // Declared but optional: present as null, so `${input.x}` reads null.
                    map.insert(name.clone(), Value::Null);
                }
            }
            Some(v) if !spec.kind.accepts(v) => problems.push(format!(
                "{name:?} must be {:?}, got a {}",
                spec.kind,
                expr::kind(v)
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(Value::Object(map))
    } else {
        Err(problems.join("; "))
    }
}

/// Run one step (all of its fan-out members) and return its output.
async fn run_step<W: Interpreted>(
    ctx: WorkflowContext<W>,
    pipeline: Pipeline,
    graph: String,
    step: Step,
    scope: Scope,
) -> Result<Value, StepFailure> {
    let started = now(&ctx);
    let Some(for_each) = &step.for_each else {
        let member = Member { index: None, scope };
        ctx.state_mut(|w| {
            if let Some(r) = w.progress_mut().row_mut(&step.id, None) {
                r.status = StepStatus::Running;
                r.started_at = started;
            }
        });
        return run_member(&ctx, &pipeline, &graph, &step, member).await;
    };
    let items = expr::render_array(for_each, &scope)
        .map_err(|e| StepFailure::new(INVALID_INPUT, format!("for_each: {e}")))?;
    let count = items.len();
    ctx.state_mut(|w| {
        if let Some(r) = w.progress_mut().row_mut(&step.id, None) {
            r.status = StepStatus::Running;
            r.started_at = started;
            r.members = (0..count)
                .map(|i| {
                    let mut m = initial_row(&step);
                    m.id = format!("{}[{i}]", step.id);
                    if matches!(step.run, Run::Activity(_)) {
                        m.max_attempts = step.options.retry.maximum_attempts;
                    }
                    m
                })
                .collect();
        }
    });
    let cap = step.concurrency.map_or(count, |c| c as usize).max(1);
    let mut outputs: Vec<Option<Value>> = vec![None; count];
    let mut queue = items.into_iter().enumerate();
    let mut in_flight: Vec<LocalFuture<'_, (usize, Result<Value, StepFailure>)>> = Vec::new();
    loop {
        while in_flight.len() < cap {
            let Some((i, item)) = queue.next() else { break };
            let mut member_scope = scope.clone();
            member_scope.insert("item".into(), item);
            member_scope.insert("index".into(), json!(i));
            member_scope.insert(COUNT_SCOPE.into(), json!(count));
            let member = Member {
                index: Some(i),
                scope: member_scope,
            };
            let (ctx, pipeline, graph, step) = (&ctx, &pipeline, &graph, &step);
            in_flight.push(Box::pin(async move {
                (i, run_member(ctx, pipeline, graph, step, member).await)
            }));
        }
        if in_flight.is_empty() {
            break;
        }
        let ((i, result), _, rest) = select_all(in_flight).await;
        in_flight = rest;
        outputs[i] = Some(result.map_err(|f| StepFailure {
            message: format!("item {i}: {}", f.message),
            ..f
        })?);
    }
    Ok(Value::Array(
        outputs.into_iter().map(Option::unwrap_or_default).collect(),
    ))
}

struct Member {
    index: Option<usize>,
    scope: Scope,
}

/// Run one activity or child for one item (or for a step without fan-out).
async fn run_member<W: Interpreted>(
    ctx: &WorkflowContext<W>,
    pipeline: &Pipeline,
    graph: &str,
    step: &Step,
    member: Member,
) -> Result<Value, StepFailure> {
    let input = expr::render(&step.with, &member.scope)
        .map_err(|e| StepFailure::new(INVALID_INPUT, format!("with: {e}")))?;
    let index = member.index;
    let update = |f: &dyn Fn(&mut StepRow)| {
        ctx.state_mut(|w| {
            if let Some(r) = w.progress_mut().row_mut(&step.id, index) {
                f(r);
            }
        })
    };
    let started = now(ctx);
    let result = match &step.run {
        Run::Activity(name) => {
            let activity_id = match (&step.activity_id, index) {
                (Some(t), _) => match expr::render(&Value::String(t.clone()), &member.scope) {
                    Ok(Value::String(s)) => s,
                    Ok(other) => other.to_string(),
                    Err(e) => {
                        return Err(StepFailure::new(INVALID_INPUT, format!("activity_id: {e}")));
                    }
                },
                (None, Some(i)) => format!("{}_{i}", step.id),
                (None, None) => step.id.clone(),
            };
            update(&|r| {
                r.status = StepStatus::Running;
                r.attempt = 1;
                r.activity_id = Some(activity_id.clone());
                r.started_at = started.clone();
            });
            let start_to_close = match step.options.start_to_close_formula.as_deref() {
                None => None,
                Some(text) => Some(computed_timeout(text, &member.scope).map_err(|e| {
                    StepFailure::new(INVALID_INPUT, format!("start_to_close: {e}"))
                })?),
            };
            let summary = summary_of(step, &member.scope, index);
            let activity = UntypedActivity::new(name.clone());
            let raw = payload::to_raw(&input);
            let done = if step.local {
                let opts = local_activity_options(step, activity_id, start_to_close, summary);
                ctx.execute_local_activity(activity, raw, opts).await
            } else {
                let opts = activity_options(step, activity_id, start_to_close, summary);
                ctx.execute_activity(activity, raw, opts).await
            };
            done.map_err(|e| failed(e.failure(), "PayloadError", &e))
                .and_then(decode)
        }
        Run::Child(child) => {
            let pattern = step.child_id.clone().unwrap_or_else(|| match index {
                Some(_) => "{workflow_id}-{step}-{index}".into(),
                None => "{workflow_id}-{step}".into(),
            });
            let child_id = pattern
                .replace("{workflow_id}", ctx.workflow_id())
                .replace("{step}", &step.id)
                .replace("{index}", &index.unwrap_or(0).to_string());
            update(&|r| {
                r.status = StepStatus::Running;
                r.attempt = 1;
                r.child_workflow_id = Some(child_id.clone());
                r.started_at = started.clone();
            });
            let Some(child_graph) = pipeline.graph(child) else {
                return Err(StepFailure::new(
                    INVALID_INPUT,
                    format!("{graph}: no child pipeline {child:?}"),
                ));
            };
            let pinned = if ctx.patched(CHILD_GRAPH_PATCH) {
                pipeline.for_child(child)
            } else {
                pipeline.clone()
            };
            let child_input = RunInput {
                pipeline: pinned,
                graph: Some(child.clone()),
                input,
                parent: Some(ctx.workflow_id().to_owned()),
                search_attributes: member
                    .scope
                    .get(SA_SCOPE)
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default(),
            };
            let opts = ChildWorkflowOptions::builder()
                .workflow_id(child_id.clone())
                .task_queue(child_graph.task_queue.clone())
                .parent_close_policy(ParentClosePolicy::Terminate)
                .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicate)
                .static_summary(summary_of(step, &member.scope, index))
                .build();
            match ctx
                .start_child_workflow(
                    UntypedWorkflow::new(child.clone()),
                    payload::to_raw(&child_input),
                    opts,
                )
                .await
            {
                Err(e) => Err(failed(e.failure(), "ChildStartFailed", &e)),
                Ok(started) => started
                    .result()
                    .await
                    .map_err(|e| failed(e.failure(), "PayloadError", &e))
                    .and_then(decode),
            }
            .map_err(|f| StepFailure {
                message: format!("child {child_id}: {}", f.message),
                ..f
            })
        }
    };
    let finished = now(ctx);
    match &result {
        Ok(value) => update(&|r| {
            r.status = crate::progress::completed(value);
            r.finished_at = finished.clone();
        }),
        Err(f) => update(&|r| {
            r.status = StepStatus::Failed;
            r.finished_at = finished.clone();
            r.error = Some(f.text());
        }),
    }
    result
}

/// A formula's start-to-close for this member (at least one second).
fn computed_timeout(text: &str, scope: &Scope) -> Result<Duration, expr::ExprError> {
    let seconds = crate::formula::Formula::parse(text)?.seconds(scope)?;
    Ok(Duration::from_secs_f64(seconds.max(1.0)))
}

/// The activity options a step declares; `start_to_close` is the step's formula evaluated for
/// this run, when it has one; `summary` is the Web UI label.
pub fn activity_options(
    step: &Step,
    activity_id: String,
    start_to_close: Option<Duration>,
    summary: String,
) -> ActivityOptions {
    let o = &step.options;
    let close = match (o.schedule_to_close(), start_to_close.or(o.start_to_close())) {
        (Some(s), Some(t)) => ActivityCloseTimeouts::ScheduleAndStartToClose {
            schedule_to_close: s,
            start_to_close: t,
        },
        (Some(s), None) => ActivityCloseTimeouts::ScheduleToClose(s),
        (None, Some(t)) => ActivityCloseTimeouts::StartToClose(t),
        // Validation forbids this; a minute keeps a hand-written input from hanging forever.
        (None, None) => ActivityCloseTimeouts::StartToClose(Duration::from_secs(60)),
    };
    let retry = retry_policy(&o.retry);
    ActivityOptions::with_close_timeouts(close)
        .activity_id(activity_id)
        .task_queue(o.task_queue.clone())
        .maybe_heartbeat_timeout(o.heartbeat())
        .retry_policy(retry)
        .summary(summary)
        .build()
}

/// The local-activity options of a `local: true` step: the same timeouts and retry policy
/// as [`activity_options`] (no queue, no heartbeat: validation forbids both). The input is
/// kept in the marker, so history (and the Conductor shim) shows what the step received.
pub fn local_activity_options(
    step: &Step,
    activity_id: String,
    start_to_close: Option<Duration>,
    summary: String,
) -> LocalActivityOptions {
    let o = &step.options;
    let (schedule_to_close, start_to_close) =
        match (o.schedule_to_close(), start_to_close.or(o.start_to_close())) {
            // Validation forbids neither; a minute keeps a hand-written input from hanging.
            (None, None) => (None, Some(Duration::from_secs(60))),
            pair => pair,
        };
    LocalActivityOptions::builder()
        .activity_id(activity_id)
        .retry_policy(retry_policy(&o.retry))
        .maybe_schedule_to_close_timeout(schedule_to_close)
        .maybe_start_to_close_timeout(start_to_close)
        .include_arguments_in_marker(true)
        .summary(summary)
        .build()
}

/// A step's retry policy as Temporal's.
fn retry_policy(r: &crate::pipeline::Retry) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(r.initial_interval_ms))
        .backoff_coefficient(r.backoff_coefficient)
        .maybe_maximum_interval(r.maximum_interval_ms.map(Duration::from_millis))
        .maximum_attempts(r.maximum_attempts)
        .non_retryable_error_types(r.non_retryable_error_types.clone())
        .build()
}

/// A failed activity or child: its Temporal failure if there is one, else `fallback` and the
/// error's text (payload conversion, start refused).
fn failed(failure: Option<&Failure>, fallback: &str, e: &dyn std::fmt::Display) -> StepFailure {
    failure.map_or_else(|| StepFailure::new(fallback, e.to_string()), describe)
}

/// A step's JSON output from its raw payload.
fn decode(
    raw: temporalio_workflow::common::data_converters::RawValue,
) -> Result<Value, StepFailure> {
    payload::from_raw(&raw).map_err(|e| StepFailure::new("PayloadError", e))
}

/// The root cause of a Temporal failure, as a type and a message.
fn describe(f: &Failure) -> StepFailure {
    let mut root = f;
    while let Some(c) = &root.cause {
        root = c;
    }
    let kind = match &root.failure_info {
        Some(FailureInfo::ApplicationFailureInfo(a)) => a.r#type.clone(),
        Some(FailureInfo::TimeoutFailureInfo(t)) => {
            let name = temporalio_workflow::common::protos::temporal::api::enums::v1::TimeoutType::try_from(t.timeout_type)
                .map(|t| t.as_str_name().trim_start_matches("TIMEOUT_TYPE_").to_owned())
                .unwrap_or_default();
            format!("timeout: {name}")
        }
        Some(FailureInfo::CanceledFailureInfo(_)) => "Canceled".into(),
        Some(FailureInfo::TerminatedFailureInfo(_)) => "Terminated".into(),
        _ => String::new(),
    };
    StepFailure {
        kind,
        message: root.message.clone(),
    }
}
