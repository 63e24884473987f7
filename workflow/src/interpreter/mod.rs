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
//! This file is the graph's loop, in named phases (`GraphRun`): `begin` (the graph, its
//! input, the table, the scope, the run's tags), then until nothing runs `start_ready`,
//! `show_current_step`, `next_finished` and `settle` (a step's result, or the run's failure),
//! then `finish` (the output). Its parts are modules: `step` (one step: its fan-out members,
//! each an activity or a child), `failure` (why a step failed), `options` (what Temporal is
//! told about a step), `inputs` (input resolution and readiness), `report` (progress to the
//! frontend or the parent) and `tags` (search attributes and memo), each unit-tested without
//! a server.
//!
//! [`UntypedActivity`]: temporalio_workflow::common::UntypedActivity
//! [`UntypedWorkflow`]: temporalio_workflow::common::UntypedWorkflow

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use futures::future::select_all;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use temporalio_workflow::{
    WorkflowContext, WorkflowResult, WorkflowTermination, common::error::ApplicationFailure,
};

pub mod binding;
mod failure;
mod inputs;
pub mod memo;
mod memoized;
mod options;
pub mod preview;
mod report;
pub mod resolve;
pub mod shadow;
mod step;
mod tags;
mod visibility;

pub use failure::{INVALID_INPUT, STEP_FAILED};
pub use options::{activity_options, local_activity_options};
pub use report::{ProgressReport, REPORT_PROGRESS};
pub use visibility::{LEAN_PATCH, finish_inferred, inferable};

use failure::StepFailure;
use inputs::{needs_met, resolve_inputs};
use report::{report_to_frontend, report_to_parent};
use step::{initial_row, now, run_step};
use tags::{render_search_attributes, tag_run};

use crate::expr::{self, Scope};
use crate::pipeline::{Graph, Pipeline, PipelineRef};
use crate::progress::{Progress, RunStatus, StepStatus};
use crate::search;

/// Input of every pipeline workflow: the registered version it is pinned to, which graph of
/// it to run, the graph's input, and the run it was written for: `{"pipeline": "Name",
/// "version": 2, "hash": "…", "graph": …, "input": {…}, "workflow_id": "…"}` ([`resolve`]
/// says how the definition reaches the run, [`binding`] why it names its workflow id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInput {
    /// The version the run is pinned to (in histories from before references, the
    /// definition itself).
    #[serde(flatten)]
    pub pinned: resolve::Pinned,
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
    /// The workflow id the input was written for (sealed with it): the run refuses an input
    /// of another run ([`binding`]). `None` in histories from before the binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// Written for a schedule: `workflow_id` is the action's, which the schedule suffixes with
    /// each run's nominal time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scheduled: bool,
}

/// Patch marking runs that set search attributes, a memo and `CurrentStep` (histories from
/// before it replay without them).
pub const SEARCH_ATTRIBUTES_PATCH: &str = "reflow-search-attributes-1";

/// Patch marking runs whose children get only their own graph ([`Pipeline::for_child`]);
/// histories from before it replay with the whole definition in each child's input.
pub const CHILD_GRAPH_PATCH: &str = "reflow-child-graph-1";

/// Patch marking runs whose failure hook, when the run was cancelled, runs on a cancellation
/// token of its own: the run's cancel cancelled it before it started in histories from before
/// it, which left a cancelled transcript `processing` instead of `idle`.
pub const CANCELLED_HOOK_PATCH: &str = "reflow-cancelled-run-hook-1";

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

/// Run the graph `input.graph` of the registered version `input` names (checked to be this
/// run's input, [`binding`], then resolved, in the first workflow task: [`resolve`]) and
/// return its output. A child also reports its
/// progress table to its parent whenever it changes (one signal per change, sent one at a
/// time, the latest state winning), so the parent's `progress` query includes it.
pub async fn run<W: Interpreted>(
    ctx: &WorkflowContext<W>,
    input: RunInput,
) -> WorkflowResult<Value> {
    binding::check(ctx, &input)?;
    let parent = input.parent.clone();
    let lean = visibility::is_lean(ctx, parent.is_some());
    let (pipeline, reference) =
        resolve::definition(ctx, &input.pinned, input.graph.as_deref(), parent.is_some()).await?;
    // The main graph of a pipeline with a `progress:` section tells the frontend.
    let frontend = match (&parent, &pipeline.progress) {
        (None, Some(spec)) if input.graph.as_deref().is_none_or(|g| g == pipeline.name) => {
            let mut scope = Scope::new();
            scope.insert("input".into(), input.input.clone());
            match expr::render(&Value::String(spec.transcript_id.clone()), &scope) {
                Ok(Value::String(t)) if !t.is_empty() => Some((spec.clone(), t)),
                _ => None, // the input check below reports a missing input
            }
        }
        _ => None,
    };
    // What a lean parent holds for this child once it started ([`visibility`]).
    let started = match (&input.graph, lean && parent.is_some()) {
        (Some(g), true) => pipeline
            .graph(g)
            .and_then(|graph| visibility::start_inferred(&pipeline, graph, &input.input, None)),
        _ => None,
    };
    let main = async {
        let result = run_graph(ctx, pipeline, reference, input, lean).await;
        ctx.state_mut(|w| w.progress_mut().finished = true);
        result
    };
    match (parent, frontend) {
        (Some(parent), _) => {
            futures::future::join(main, report_to_parent(ctx, parent, started))
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

/// Run one graph: begin, then start what is ready and settle what finishes until nothing
/// runs, then finish.
async fn run_graph<W: Interpreted>(
    ctx: &WorkflowContext<W>,
    pipeline: Pipeline,
    reference: Option<PipelineRef>,
    input: RunInput,
    lean: bool,
) -> WorkflowResult<Value> {
    let mut input = input;
    let rerun = memoized::take_rerun(&mut input.input);
    let mut run = GraphRun::begin(ctx, pipeline, reference, input, lean)?;
    run.skipped.clone_from(&rerun.skip);
    run.memo = memoized::plan(
        ctx,
        &run.pipeline,
        run.reference.as_ref(),
        &run.graph,
        &run.scope["input"],
        rerun,
        lean,
    )
    .await;
    loop {
        run.start_ready();
        if run.running.is_empty() {
            break;
        }
        if run.lean
            && let Some((i, result)) = run.finished_now().await
        {
            // Settle everything this activation finished before showing what runs.
            run.settle(i, result).await?;
            continue;
        }
        run.show_current_step();
        let (i, result) = run.next_finished().await;
        run.settle(i, result).await?;
    }
    if let Some(memo) = &run.memo {
        memo.store(ctx, &run.graph, &run.states).await;
    }
    run.finish()
}

/// A step's future: its index in the graph and its result.
type StepFuture = LocalFuture<'static, (usize, Result<Value, StepFailure>)>;

/// One graph being run: what the phases of [`run_graph`] share.
struct GraphRun<'a, W: Interpreted> {
    ctx: &'a WorkflowContext<W>,
    pipeline: Pipeline,
    /// The registered version the run resolved (children are started with it); `None` for a
    /// run from before references, whose children get the definition inline.
    reference: Option<PipelineRef>,
    graph: Graph,
    /// What expressions see: `input`, `workflow`, each settled step's output, the tags.
    scope: Scope,
    /// Each step's state, in declared order.
    states: Vec<State>,
    /// The steps in flight (dropping one cancels it).
    running: Vec<StepFuture>,
    /// Whether the run carries search attributes ([`SEARCH_ATTRIBUTES_PATCH`]).
    tagged: bool,
    /// The `CurrentStep` search attribute last set.
    current_step: String,
    /// Whether the run follows the lean rules ([`visibility`]).
    lean: bool,
    /// Search attributes not set yet: a lean run sets them with its first `CurrentStep`.
    pending_tags: Vec<temporalio_workflow::common::search_attributes::SearchAttributeUpdate>,
    /// The memo plan, in a memoized run ([`memo`]).
    memo: Option<memoized::Memoized>,
    /// Steps the run was started to skip ([`memo::Rerun::skip`]).
    skipped: Vec<String>,
}

/// A non-retryable `InvalidInput` failure of the run.
fn invalid_input(message: String) -> WorkflowTermination {
    ApplicationFailure::builder(message)
        .type_name(INVALID_INPUT.to_owned())
        .non_retryable(true)
        .build()
        .into()
}

impl<'a, W: Interpreted> GraphRun<'a, W> {
    /// The graph to run and its checked input, a fresh progress table, the scope, and the
    /// run's search attributes and memo.
    fn begin(
        ctx: &'a WorkflowContext<W>,
        pipeline: Pipeline,
        reference: Option<PipelineRef>,
        input: RunInput,
        lean: bool,
    ) -> WorkflowResult<Self> {
        let graph_name = input
            .graph
            .clone()
            .unwrap_or_else(|| pipeline.main.name.clone());
        let Some(graph) = pipeline.graph(&graph_name).cloned() else {
            return Err(invalid_input(format!(
                "pipeline {:?} has no graph {graph_name:?}",
                pipeline.name
            )));
        };
        let is_child = input.parent.is_some();
        let args = resolve_inputs(&graph, input.input)
            .map_err(|msg| invalid_input(format!("{graph_name}: invalid input: {msg}")))?;
        Self::reset_table(ctx, &pipeline, &graph);
        let mut scope = Self::initial_scope(ctx, &pipeline, &graph, args);
        let (tagged, pending_tags) = Self::tag(
            ctx,
            &pipeline,
            (is_child, lean),
            input.search_attributes,
            &mut scope,
        );
        // A lean child starts with the `CurrentStep` its parent set.
        let current_step = if is_child && lean {
            visibility::first_steps(&graph)
        } else {
            String::new()
        };
        Ok(GraphRun {
            ctx,
            states: vec![State::Pending; graph.steps.len()],
            pipeline,
            reference,
            graph,
            scope,
            running: Vec::new(),
            tagged,
            current_step,
            lean,
            pending_tags,
            memo: None,
            skipped: Vec::new(),
        })
    }

    /// The progress table of this graph: every step pending.
    fn reset_table(ctx: &WorkflowContext<W>, pipeline: &Pipeline, graph: &Graph) {
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
    }

    /// The scope before any step: the input and the run's identity.
    fn initial_scope(
        ctx: &WorkflowContext<W>,
        pipeline: &Pipeline,
        graph: &Graph,
        args: Value,
    ) -> Scope {
        let mut scope = Scope::new();
        scope.insert("input".into(), args);
        scope.insert(
            "workflow".into(),
            json!({"id": ctx.workflow_id(), "pipeline": pipeline.name, "graph": graph.name,
                   "version": pipeline.version, "hash": pipeline.hash,
                   // The first workflow task's time: the run's start, within a task's latency.
                   "started_at": now(ctx)}),
        );
        scope
    }

    /// Search attributes and memo, so the run can be found (docs/contracts/observability.md
    /// §6): the declared ones rendered (a child's inherited from its parent), set when the
    /// run is [`SEARCH_ATTRIBUTES_PATCH`]ed, and kept in the scope for children. Returns
    /// whether the run is tagged, and the attributes a lean run sets with its first
    /// `CurrentStep` (a lean child's were set by its parent, [`visibility`]).
    fn tag(
        ctx: &WorkflowContext<W>,
        pipeline: &Pipeline,
        (is_child, lean): (bool, bool),
        inherited: BTreeMap<String, String>,
        scope: &mut Scope,
    ) -> (
        bool,
        Vec<temporalio_workflow::common::search_attributes::SearchAttributeUpdate>,
    ) {
        let tagged = visibility::patched(ctx, lean, SEARCH_ATTRIBUTES_PATCH);
        let declared = if is_child {
            inherited
        } else {
            render_search_attributes(pipeline, scope)
        };
        let mut pending = Vec::new();
        if tagged && !lean {
            tag_run(ctx, pipeline, &declared);
        } else if lean && !is_child {
            pending = visibility::run_attributes(pipeline, &declared);
            visibility::set_memo(ctx, pipeline, true);
        }
        scope.insert(SA_SCOPE.into(), json!(declared));
        (tagged, pending)
    }

    /// Start (or skip) everything that is ready, in declared order, until nothing changes.
    fn start_ready(&mut self) {
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..self.graph.steps.len() {
                let step = &self.graph.steps[i];
                if self.states[i] != State::Pending || !needs_met(&self.graph, &self.states, step) {
                    continue;
                }
                changed = true;
                match self.condition(i) {
                    Ok(true) if self.skipped.contains(&step.id) => self.skip(i),
                    Ok(true) => match self.memo.as_ref().and_then(|m| m.reused(&step.id)) {
                        Some(v) => {
                            let v = v.clone();
                            self.reuse(i, v);
                        }
                        None => self.start(i),
                    },
                    Ok(false) => self.skip(i),
                    Err(f) => {
                        self.states[i] = State::Running;
                        self.running.push(Box::pin(async move { (i, Err(f)) }));
                    }
                }
            }
        }
    }

    /// Whether step `i` runs: its `when:` (none: it does).
    fn condition(&self, i: usize) -> Result<bool, StepFailure> {
        match &self.graph.steps[i].when {
            None => Ok(true),
            Some(cond) => expr::render_condition(cond, &self.scope)
                .map_err(|e| StepFailure::new(INVALID_INPUT, format!("when: {e}"))),
        }
    }

    /// Step `i`'s `when:` is false (or the run skips it): skipped, its output null.
    fn skip(&mut self, i: usize) {
        let step = &self.graph.steps[i];
        self.states[i] = State::Skipped;
        self.scope.insert(step.id.clone(), Value::Null);
        let now = now(self.ctx);
        self.ctx.state_mut(|w| {
            if let Some(r) = w.progress_mut().row_mut(&step.id, None) {
                r.status = StepStatus::Skipped;
                r.finished_at = now;
            }
        });
    }

    /// Start step `i` with the scope as it is now.
    fn start(&mut self, i: usize) {
        self.states[i] = State::Running;
        let fut = run_step(
            self.ctx.clone(),
            self.pipeline.clone(),
            (self.reference.clone(), self.lean),
            self.graph.name.clone(),
            self.graph.steps[i].clone(),
            self.scope.clone(),
        );
        self.running.push(Box::pin(async move { (i, fut.await) }));
    }

    /// Step `i` is taken from its memo (the plan reuses it): completed now, marked reused.
    fn reuse(&mut self, i: usize, value: Value) {
        let id = self.graph.steps[i].id.clone();
        let now = now(self.ctx);
        let child = match &self.graph.steps[i].run {
            crate::pipeline::Run::Child(c) => memoized::reused_child(&self.pipeline, c, &now),
            crate::pipeline::Run::Activity(_) => None,
        };
        self.ctx.state_mut(|w| {
            if let Some(r) = w.progress_mut().row_mut(&id, None) {
                r.started_at.clone_from(&now);
                r.reused = true;
                r.child = child.map(Box::new);
            }
        });
        self.succeeded(i, value, now);
    }

    /// The `CurrentStep` search attribute: the steps in flight, set when it changed (a lean
    /// run: not while a local step runs, and with its pending attributes; [`visibility`]).
    fn show_current_step(&mut self) {
        if !self.tagged {
            return;
        }
        let running = || {
            self.graph
                .steps
                .iter()
                .zip(&self.states)
                .filter(|(_, s)| **s == State::Running)
                .map(|(s, _)| s)
        };
        if self.lean && running().any(|s| s.local) {
            return;
        }
        let now_running = visibility::label(running(), self.lean);
        if now_running != self.current_step {
            self.show(now_running);
        }
    }

    /// Set `CurrentStep` to `value`, with the attributes not set yet.
    fn show(&mut self, value: String) {
        let mut updates = std::mem::take(&mut self.pending_tags);
        updates.push(search::CURRENT_STEP.value_set(value.clone()));
        self.ctx.upsert_search_attributes(updates);
        self.current_step = value;
    }

    /// A step that finished in this activation, if any (a lean run settles them all before
    /// it shows what runs); the steps still in flight stay in flight.
    async fn finished_now(&mut self) -> Option<(usize, Result<Value, StepFailure>)> {
        let running = &mut self.running;
        futures::future::poll_fn(|cx| {
            for k in 0..running.len() {
                if let std::task::Poll::Ready(done) = running[k].as_mut().poll(cx) {
                    drop(running.remove(k));
                    return std::task::Poll::Ready(Some(done));
                }
            }
            std::task::Poll::Ready(None)
        })
        .await
    }

    /// Whichever step in flight finishes first (ties: the first started).
    async fn next_finished(&mut self) -> (usize, Result<Value, StepFailure>) {
        let ((i, result), _, rest) = select_all(std::mem::take(&mut self.running)).await;
        self.running = rest;
        (i, result)
    }

    /// Record step `i`'s result; a required step's failure ends the run (the error).
    async fn settle(&mut self, i: usize, result: Result<Value, StepFailure>) -> WorkflowResult<()> {
        let now = now(self.ctx);
        match result {
            Ok(value) => {
                self.succeeded(i, value, now);
                Ok(())
            }
            Err(failure) => self.failed(i, failure, now).await,
        }
    }

    /// Step `i` completed with `value`: its row, its output in the scope.
    fn succeeded(&mut self, i: usize, value: Value, now: Option<String>) {
        let step = &self.graph.steps[i];
        let status = crate::progress::completed(&value);
        self.ctx.state_mut(|w| {
            if let Some(r) = w.progress_mut().row_mut(&step.id, None) {
                r.status = status;
                r.finished_at = now;
            }
        });
        self.scope.insert(step.id.clone(), value.clone());
        self.states[i] = State::Done(value);
    }

    /// Step `i` failed for good: its row; an optional one's output is null and the run goes
    /// on, else (or when the run is cancelled) the run fails.
    async fn failed(
        &mut self,
        i: usize,
        failure: StepFailure,
        now: Option<String>,
    ) -> WorkflowResult<()> {
        let ctx = self.ctx;
        let step = &self.graph.steps[i];
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
            self.scope.insert(step.id.clone(), Value::Null);
            self.states[i] = State::FailedOptional;
            return Ok(());
        }
        Err(self.fail_run(i, failure, cancelled).await)
    }

    /// Required step `i` failed (or the run was cancelled): the table says so, the main
    /// graph's `on_failure` step runs, and the run ends Failed (Canceled when cancelled).
    async fn fail_run(
        &mut self,
        i: usize,
        failure: StepFailure,
        cancelled: bool,
    ) -> WorkflowTermination {
        let ctx = self.ctx;
        if !cancelled && let Some(memo) = &self.memo {
            // What completed before the failure is reused by a new run.
            memo.store(ctx, &self.graph, &self.states).await;
        }
        let step_id = self.graph.steps[i].id.clone();
        if self.tagged {
            self.show(step_id);
        }
        let step = &self.graph.steps[i];
        ctx.state_mut(|w| {
            let p = w.progress_mut();
            p.status = RunStatus::Failed;
            for r in p.steps.iter_mut() {
                if r.status == StepStatus::Pending {
                    r.status = StepStatus::Skipped;
                }
            }
        });
        if self.graph.name == self.pipeline.main.name
            && let Some(hook) = &self.pipeline.on_failure
        {
            // Every other step in flight is abandoned (dropping its future cancels it); the
            // hook records the failure where users look (`mark_failed`).
            drop(std::mem::take(&mut self.running));
            let mut scope = self.scope.clone();
            scope.insert(
                "failure".into(),
                json!({"step": step.id, "type": failure.kind, "message": failure.message}),
            );
            let hooked = if cancelled && visibility::patched(ctx, self.lean, CANCELLED_HOOK_PATCH) {
                run_detached_hook(ctx, hook, &scope).await
            } else {
                run_step(
                    ctx.clone(),
                    self.pipeline.clone(),
                    (self.reference.clone(), self.lean),
                    self.graph.name.clone(),
                    hook.clone(),
                    scope,
                )
                .await
            };
            if let Err(e) = hooked
                && !ctx.is_replaying()
            {
                tracing::error!(workflow_id = ctx.workflow_id(), step = %hook.id, error = %e.text(), "on_failure step failed");
            }
        }
        if cancelled {
            // `temporal workflow cancel`: the run ends Canceled, not Failed.
            return WorkflowTermination::cancelled();
        }
        ApplicationFailure::builder(format!("step {:?} failed: {}", step.id, failure.text()))
            .type_name(STEP_FAILED.to_owned())
            .non_retryable(true)
            .build()
            .into()
    }

    /// Every step settled: the graph's output, `CurrentStep` cleared (a lean run leaves it:
    /// [`visibility`]), the run completed.
    fn finish(self) -> WorkflowResult<Value> {
        let output = expr::render(&self.graph.output, &self.scope)
            .map_err(|e| invalid_input(format!("{}: output: {e}", self.graph.name)))?;
        if self.lean {
            if !self.pending_tags.is_empty() {
                self.ctx.upsert_search_attributes(self.pending_tags);
            }
        } else if self.tagged {
            // The SDK encodes an unset as an empty payload, which the server refuses: set "".
            self.ctx
                .upsert_search_attributes([search::CURRENT_STEP.value_set(String::new())]);
        }
        self.ctx
            .state_mut(|w| w.progress_mut().status = RunStatus::Completed);
        Ok(output)
    }
}

/// The failure hook of a cancelled run ([`CANCELLED_HOOK_PATCH`]), on a cancellation token of
/// its own so that the run's cancel does not cancel it too: it records that the run stopped
/// (`mark_failed` puts a cancelled transcript back to `idle`).
async fn run_detached_hook<W: Interpreted>(
    ctx: &WorkflowContext<W>,
    hook: &crate::pipeline::Step,
    scope: &Scope,
) -> Result<Value, StepFailure> {
    let crate::pipeline::Run::Activity(name) = &hook.run else {
        return Err(StepFailure::new(
            INVALID_INPUT,
            "on_failure: the hook must run an activity",
        ));
    };
    let input = expr::render(&hook.with, scope)
        .map_err(|e| StepFailure::new(INVALID_INPUT, format!("with: {e}")))?;
    let mut opts = options::activity_options(hook, hook.id.clone(), None, hook.id.clone());
    opts.cancellation_token = Some(temporalio_workflow::WorkflowCancellationToken::new());
    ctx.execute_activity(
        temporalio_workflow::common::UntypedActivity::new(name.clone()),
        crate::payload::to_raw(&input),
        opts,
    )
    .await
    .map_err(|e| failure::failed(e.failure(), "PayloadError", &e))
    .and_then(failure::decode)
}
