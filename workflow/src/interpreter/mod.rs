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
//! This file is the graph's loop ([`run_graph`]) and what its phases share (`GraphRun`); each
//! phase is a module of its own: `begin` (the graph, its input, the table, the scope, the
//! run's tags; and `finish`, the output), then until nothing runs `scheduling`
//! (`start_ready`), `current_step` (`show_current_step`), `settling` (`next_finished`,
//! `settle`: a step's result) and `failing` (the run's failure and its `on_failure` hook).
//! Its other parts are modules too: `step` (one step: its fan-out members,
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

use serde::{Deserialize, Serialize};
use serde_json::Value;
use temporalio_workflow::{
    WorkflowContext, WorkflowResult, WorkflowTermination, common::error::ApplicationFailure,
};

mod begin;
pub mod binding;
pub mod child_start;
mod current_step;
mod failing;
mod failure;
mod inputs;
pub mod memo;
mod memoized;
mod options;
pub mod preview;
mod report;
pub mod resolve;
mod scheduling;
mod settling;
pub mod shadow;
mod step;
mod tags;
mod visibility;

pub use failure::{INVALID_INPUT, STEP_FAILED};
pub use options::{activity_options, local_activity_options};
pub use report::{ProgressReport, REPORT_PROGRESS};
pub use visibility::{LEAN_PATCH, finish_inferred, inferable};

use failure::StepFailure;
use report::{report_to_frontend, report_to_parent};

use crate::expr::{self, Scope};
use crate::pipeline::{Graph, Pipeline, PipelineRef};
use crate::progress::Progress;

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
    /// The graph to run; `None` means the main one (or, in a child's input that leaves it to
    /// its start event, its workflow type: [`child_start`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<String>,
    /// The graph's input (declared inputs by name).
    pub input: Value,
    /// Workflow id of the parent, for a child: it reports its table there (read from the start
    /// event when the input leaves it there, [`child_start`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    /// For a child: 2 when its parent took `reflow-lean-history-2` (the child reads its graph
    /// and its declared search attributes as [`visibility::Lean::history`] says), 3 when it
    /// took `reflow-lean-history-3` (its version, graph and parent too: [`child_start`]); 0
    /// otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lean: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
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
    let mut input = input;
    child_start::complete_in_run(ctx, &mut input)?;
    let parent = input.parent.clone();
    let rules = visibility::rules(ctx, &input);
    let lean = rules.actions;
    let (pipeline, reference) = resolve::definition(
        ctx,
        &input.pinned,
        input.graph.as_deref(),
        // A lean-history child takes its graph from the store; a main run records its own.
        (parent.is_some(), rules.history && parent.is_some()),
    )
    .await?;
    if rules.history && parent.is_some() {
        input.search_attributes = visibility::inherited(ctx, &pipeline);
    }
    if input.lean >= child_start::START_EVENT_INPUT
        && let Some(graph) = input.graph.as_deref().and_then(|g| pipeline.graph(g))
    {
        child_start::restore_carried(&mut input.input, &pipeline, graph, &input.search_attributes);
    }
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
        let result = run_graph(ctx, pipeline, reference, input, rules).await;
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
            futures::future::join(
                main,
                report_to_frontend(ctx, spec, transcript, rules.start_event),
            )
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
    rules: visibility::Lean,
) -> WorkflowResult<Value> {
    let mut input = input;
    let lean = rules.actions;
    let rerun = memoized::take_rerun(&mut input.input);
    let mut run = GraphRun::begin(ctx, pipeline, reference, input, rules)?;
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
    /// The rules it follows ([`visibility::Lean`]; `lean` is their `actions`).
    rules: visibility::Lean,
    /// Search attributes not set yet: a lean run sets them with its first `CurrentStep`.
    pending_tags: Vec<temporalio_workflow::common::search_attributes::SearchAttributeUpdate>,
    /// The memo plan, in a memoized run ([`memo`]).
    memo: Option<memoized::Memoized>,
    /// Steps the run was started to skip ([`memo::Rerun::skip`]).
    skipped: Vec<String>,
}

impl<W: Interpreted> GraphRun<'_, W> {
    /// The rules the run follows, as its steps are given them.
    fn rules(&self) -> visibility::Lean {
        self.rules
    }
}

/// A non-retryable `InvalidInput` failure of the run.
fn invalid_input(message: String) -> WorkflowTermination {
    ApplicationFailure::builder(message)
        .type_name(INVALID_INPUT.to_owned())
        .non_retryable(true)
        .build()
        .into()
}
