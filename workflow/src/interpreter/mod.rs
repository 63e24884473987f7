//! The generic DAG interpreter every pipeline workflow type delegates to.
//!
//! [`run`] walks a validated [`Graph`]: it starts every ready step in declared order, waits
//! for whichever finishes first, and repeats until all steps are terminal or a required one
//! failed. Activities are scheduled by name ([`UntypedActivity`]) with the step's options;
//! `child:` steps start one child workflow per item ([`UntypedWorkflow`]) that runs the named
//! sub-pipeline of the same pinned definition. Determinism: only SDK futures, scheduled in
//! declared (then item) order, and `select_all`, which polls in a fixed order; no clocks but
//! `ctx.workflow_time()`, no maps but `BTreeMap`.
//!
//! This file is the loop (a graph, a step's members, one member); its parts are modules:
//! `failure` (why a step failed), `options` (what Temporal is told about a step),
//! `inputs` (input resolution and readiness), `report` (progress to the frontend or the
//! parent) and `tags` (search attributes and memo), each unit-tested without a server.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use futures::future::select_all;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use temporalio_workflow::common::{UntypedActivity, UntypedWorkflow};
use temporalio_workflow::{
    ChildWorkflowOptions, ParentClosePolicy, WorkflowContext, WorkflowIdReusePolicy,
    WorkflowResult, WorkflowTermination, common::error::ApplicationFailure,
};

mod failure;
mod inputs;
pub mod next_release;
mod options;
mod report;
mod tags;

pub use failure::{INVALID_INPUT, STEP_FAILED};
pub use options::{activity_options, local_activity_options};
pub use report::{ProgressReport, REPORT_PROGRESS};

use failure::{StepFailure, decode, failed};
use inputs::{needs_met, resolve_inputs};
use options::{computed_timeout, summary_of};
use report::{report_to_frontend, report_to_parent};
use tags::{render_search_attributes, tag_run};

use crate::expr::{self, Scope};
use crate::payload;
use crate::pipeline::{Pipeline, Run, Step};
use crate::progress::{Progress, RunStatus, StepRow, StepStatus};
use crate::search;

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
        if next_release::enabled() {
            ctx.timer(std::time::Duration::from_millis(1)).await;
        }
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

    // Search attributes and memo, so the run can be found (docs/contracts/observability.md §6).
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
                    // Logged once, when it happens: not again when a worker replays the history.
                    if !ctx.is_replaying() {
                        tracing::warn!(workflow_id = ctx.workflow_id(), step = %step.id, error = %failure.text(), "optional step failed; the run goes on");
                    }
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
                        if let Err(e) = hooked
                            && !ctx.is_replaying()
                        {
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
