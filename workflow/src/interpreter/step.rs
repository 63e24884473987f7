//! One step of a graph: its fan-out members (`for_each`, at most `concurrency` at a time, in
//! item order) and each member's activity or child workflow, with the member's row of the
//! progress table.

use futures::future::select_all;
use serde_json::{Value, json};
use temporalio_workflow::common::{UntypedActivity, UntypedWorkflow};
use temporalio_workflow::{
    ChildWorkflowOptions, ParentClosePolicy, WorkflowContext, WorkflowIdReusePolicy,
};

use super::failure::{StepFailure, decode, failed};
use super::options::{computed_timeout, summary_of};
use super::resolve::Pinned;
use super::visibility::Lean;
use super::{
    CHILD_GRAPH_PATCH, COUNT_SCOPE, INVALID_INPUT, Interpreted, LocalFuture, RunInput, SA_SCOPE,
    activity_options, local_activity_options,
};
use crate::expr::{self, Scope};
use crate::payload;
use crate::pipeline::{Pipeline, PipelineRef, Run, Step};
use crate::progress::{StepRow, StepStatus};

pub(super) fn initial_row(step: &Step) -> StepRow {
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
        reused: false,
    }
}

/// The workflow time of the current task (RFC 3339, milliseconds).
pub(super) fn now<W>(ctx: &WorkflowContext<W>) -> Option<String> {
    ctx.workflow_time()
        .map(|t| humantime::format_rfc3339_millis(t).to_string())
}

/// Run one step (all of its fan-out members) and return its output. `reference` is the
/// registered version the run resolved (its children are started with it), `None` in a run
/// from before references; `lean`: the [`super::visibility`] rules the run follows.
pub(super) async fn run_step<W: Interpreted>(
    ctx: WorkflowContext<W>,
    pipeline: Pipeline,
    (reference, lean): (Option<PipelineRef>, Lean),
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
        return run_member(
            &ctx,
            (&pipeline, reference.as_ref(), lean),
            &graph,
            &step,
            member,
        )
        .await;
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
            let (ctx, pinned, graph, step) =
                (&ctx, (&pipeline, reference.as_ref(), lean), &graph, &step);
            in_flight.push(Box::pin(async move {
                (i, run_member(ctx, pinned, graph, step, member).await)
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
    (pipeline, reference, rules): (&Pipeline, Option<&PipelineRef>, Lean),
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
    let lean = rules.actions;
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
            // A child names the same registered version (it resolves its own graph of it); a
            // child of a run from before references gets the definition inline, as then.
            let pinned = match reference {
                Some(r) => Pinned::Reference(r.clone()),
                None if ctx.patched(CHILD_GRAPH_PATCH) => Pinned::Inline {
                    pipeline: Box::new(pipeline.for_child(child)),
                },
                None => Pinned::Inline {
                    pipeline: Box::new(pipeline.clone()),
                },
            };
            let declared: std::collections::BTreeMap<String, String> = member
                .scope
                .get(SA_SCOPE)
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            // A lean run sets its child's search attributes in the start command.
            let attributes =
                lean.then(|| super::visibility::child_attributes(pipeline, &declared, child_graph));
            // Bound to the child's id and this run's ([`super::binding`]).
            let child_input_value = input.clone();
            // A lean-history child reads its declared attributes from its start event, and
            // under `reflow-lean-history-3` its version, graph and parent too.
            let child_input = if rules.start_event && reference.is_some() {
                let mut input = input;
                super::child_start::leave_out_carried(&mut input, pipeline, child_graph, &declared);
                RunInput {
                    pinned: Pinned::StartEvent {},
                    graph: None,
                    input,
                    workflow_id: Some(child_id.clone()),
                    scheduled: false,
                    parent: None,
                    search_attributes: Default::default(),
                    lean: super::child_start::START_EVENT_INPUT,
                }
            } else {
                RunInput {
                    pinned,
                    graph: Some(child.clone()),
                    input,
                    workflow_id: Some(child_id.clone()),
                    scheduled: false,
                    parent: Some(ctx.workflow_id().to_owned()),
                    search_attributes: if rules.history {
                        Default::default()
                    } else {
                        declared
                    },
                    lean: if rules.history { 2 } else { 0 },
                }
            };
            let opts = ChildWorkflowOptions::builder()
                .workflow_id(child_id.clone())
                .task_queue(child_graph.task_queue.clone())
                .parent_close_policy(ParentClosePolicy::Terminate)
                .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicate)
                .static_summary(summary_of(step, &member.scope, index))
                .maybe_search_attributes(attributes)
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
                Ok(started) => {
                    if lean
                        && let Some(table) = super::visibility::start_inferred(
                            pipeline,
                            child_graph,
                            &child_input_value,
                            now(ctx).as_ref(),
                        )
                    {
                        // The child's first table, which it does not signal.
                        update(&|r| {
                            if r.child.is_none() {
                                r.child = Some(Box::new(table.clone()));
                            }
                        });
                    }
                    let done = started.result().await;
                    if lean && done.is_ok() {
                        // The child's final table, unless it signalled one
                        // ([`super::visibility::inferable`]).
                        let at = now(ctx);
                        update(&|r| {
                            if let Some(c) = r.child.as_mut() {
                                super::visibility::finish_inferred(c, at.as_ref());
                            }
                        });
                    }
                    done.map_err(|e| failed(e.failure(), "PayloadError", &e))
                        .and_then(decode)
                }
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
