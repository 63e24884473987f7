//! The interpreter's side of memoized runs ([`super::memo`]): the plan asked once at the start
//! of a main run of a pipeline that writes a transcript, the reused steps settled from it, and
//! what the run computed stored at its end.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use temporalio_workflow::common::{RetryPolicy, UntypedActivity};
use temporalio_workflow::{LocalActivityOptions, WorkflowContext};

use super::failure::{decode, failed};
use super::memo::{
    MEMO_PATCH, MEMO_PLAN, MEMO_STORE, Plan, PlanRequest, RERUN_INPUT, Rerun, StoreEntry,
    StoreRequest,
};
use super::{Interpreted, State};
use crate::expr::{self, Scope};
use crate::payload;
use crate::pipeline::{Graph, Pipeline, PipelineRef};
use crate::progress::StepRow;

/// A run that plans and stores memos.
pub(super) struct Memoized {
    reference: PipelineRef,
    transcript_id: String,
    plan: Plan,
}

/// Take the rerun options out of a run's input.
pub(super) fn take_rerun(input: &mut Value) -> Rerun {
    input
        .as_object_mut()
        .and_then(|m| m.remove(RERUN_INPUT))
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

fn options() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(120))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(30))
                .build(),
        )
        .build()
}

/// The memo plan of a main run whose pipeline reports a transcript's progress (so its steps
/// have a transcript to write), on a registered version, in a run started since memos
/// ([`MEMO_PATCH`], implied in a `lean` run); `None` otherwise: everything runs, as before.
pub(super) async fn plan<W: Interpreted>(
    ctx: &WorkflowContext<W>,
    pipeline: &Pipeline,
    reference: Option<&PipelineRef>,
    graph: &Graph,
    args: &Value,
    rerun: Rerun,
    lean: bool,
) -> Option<Memoized> {
    let reference = reference?;
    if graph.name != pipeline.main.name {
        return None;
    }
    let spec = pipeline.progress.as_ref()?;
    let mut scope = Scope::new();
    scope.insert("input".into(), args.clone());
    let Ok(Value::String(transcript_id)) =
        expr::render(&Value::String(spec.transcript_id.clone()), &scope)
    else {
        return None;
    };
    if transcript_id.is_empty() || !super::visibility::patched(ctx, lean, MEMO_PATCH) {
        return None;
    }
    let request = PlanRequest {
        reference: reference.clone(),
        transcript_id: transcript_id.clone(),
        input: args.clone(),
        rerun,
    };
    let planned = if request.rerun.shadow.is_some() {
        super::shadow::plan(ctx, request).await
    } else {
        ask(ctx, &request).await
    };
    match planned {
        Ok(plan) => Some(Memoized {
            reference: reference.clone(),
            transcript_id,
            plan,
        }),
        Err(f) => {
            if !ctx.is_replaying() {
                tracing::error!(workflow_id = ctx.workflow_id(), error = %f.text(), "memo plan failed; every step runs");
            }
            None
        }
    }
}

/// Ask [`MEMO_PLAN`] for the plan of `request`.
pub(super) async fn ask<W: Interpreted>(
    ctx: &WorkflowContext<W>,
    request: &PlanRequest,
) -> Result<Plan, super::StepFailure> {
    ctx.execute_local_activity(
        UntypedActivity::new(MEMO_PLAN.to_owned()),
        payload::to_raw(request),
        options(),
    )
    .await
    .map_err(|e| failed(e.failure(), "PayloadError", &e))
    .and_then(decode)
    .and_then(|v| {
        serde_json::from_value::<Plan>(v)
            .map_err(|e| super::StepFailure::new("PayloadError", e.to_string()))
    })
}

impl Memoized {
    /// The stored result of `step`, when the plan reuses it.
    pub(super) fn reused(&self, step: &str) -> Option<&Value> {
        self.plan.reused.get(step)
    }

    /// Store what this run computed (every step settled and not reused).
    pub(super) async fn store<W: Interpreted>(
        &self,
        ctx: &WorkflowContext<W>,
        graph: &Graph,
        states: &[State],
    ) {
        let rows: BTreeMap<String, StepRow> = ctx.state(|w| {
            w.progress()
                .steps
                .iter()
                .map(|r| (r.id.clone(), r.clone()))
                .collect()
        });
        let mut entries = Vec::new();
        for (step, state) in graph.steps.iter().zip(states) {
            if self.plan.reused.contains_key(&step.id) {
                continue;
            }
            let Some(key) = self.plan.keys.get(&step.id) else {
                continue;
            };
            let (output, skipped) = match state {
                State::Done(v) => (v.clone(), false),
                State::Skipped => (Value::Null, true),
                _ => continue,
            };
            let children = rows
                .get(&step.id)
                .map(|r| {
                    r.child_workflow_id
                        .iter()
                        .chain(
                            r.members
                                .iter()
                                .filter_map(|m| m.child_workflow_id.as_ref()),
                        )
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            entries.push(StoreEntry {
                step: step.id.clone(),
                key: key.clone(),
                output,
                skipped,
                children,
            });
        }
        if entries.is_empty() {
            return;
        }
        let request = StoreRequest {
            reference: self.reference.clone(),
            transcript_id: self.transcript_id.clone(),
            workflow_id: ctx.workflow_id().to_owned(),
            entries,
        };
        let stored = ctx
            .execute_local_activity(
                UntypedActivity::new(MEMO_STORE.to_owned()),
                payload::to_raw(&request),
                options(),
            )
            .await;
        if let Err(e) = stored
            && !ctx.is_replaying()
        {
            tracing::warn!(workflow_id = ctx.workflow_id(), error = %e, "memos not stored; a re-run computes these steps again");
        }
    }
}

/// The table a reused child step shows in place of the child workflow it did not start: the
/// child graph's steps, each completed and reused, so that the progress page and `reflow
/// status` show them reused rather than pending.
pub(super) fn reused_child(
    pipeline: &Pipeline,
    child: &str,
    now: &Option<String>,
) -> Option<crate::progress::Progress> {
    use crate::progress::{Progress, RunStatus, StepStatus};
    let g = pipeline.graph(child)?;
    Some(Progress {
        pipeline: g.name.clone(),
        version: pipeline.version,
        pipeline_hash: pipeline.hash.clone(),
        status: RunStatus::Completed,
        steps: g
            .steps
            .iter()
            .map(|s| StepRow {
                status: StepStatus::Completed,
                reused: true,
                started_at: now.clone(),
                finished_at: now.clone(),
                ..super::step::initial_row(s)
            })
            .collect(),
        revision: 0,
        finished: true,
    })
}
