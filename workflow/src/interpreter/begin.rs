//! The first and last phases of a graph's run ([`GraphRun`]): `begin` (the graph and its checked
//! input, a fresh progress table, the scope, the run's search attributes and memo) and `finish`
//! (the graph's output once every step settled).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use temporalio_workflow::{WorkflowContext, WorkflowResult};

use super::inputs::resolve_inputs;
use super::step::{initial_row, now};
use super::tags::{render_search_attributes, tag_run};
use super::{
    GraphRun, Interpreted, RunInput, SA_SCOPE, SEARCH_ATTRIBUTES_PATCH, State, invalid_input,
    visibility,
};
use crate::expr::{self, Scope};
use crate::pipeline::{Graph, Pipeline, PipelineRef};
use crate::progress::{Progress, RunStatus};
use crate::search;

impl<'a, W: Interpreted> GraphRun<'a, W> {
    /// The graph to run and its checked input, a fresh progress table, the scope, and the
    /// run's search attributes and memo.
    pub(super) fn begin(
        ctx: &'a WorkflowContext<W>,
        pipeline: Pipeline,
        reference: Option<PipelineRef>,
        input: RunInput,
        rules: visibility::Lean,
    ) -> WorkflowResult<Self> {
        let lean = rules.actions;
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
            rules,
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

    /// Every step settled: the graph's output, `CurrentStep` cleared (a lean run leaves it:
    /// [`visibility`]), the run completed.
    pub(super) fn finish(self) -> WorkflowResult<Value> {
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
