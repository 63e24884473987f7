//! The run's failure ([`GraphRun::fail_run`]): a required step failed or the run was cancelled,
//! so the table says so, the main graph's `on_failure` hook runs (on a token of its own when the
//! run was cancelled, [`CANCELLED_HOOK_PATCH`]) and the run ends Failed or Canceled.

use serde_json::{Value, json};
use temporalio_workflow::{
    WorkflowContext, WorkflowTermination, common::error::ApplicationFailure,
};

use super::failure::{self, StepFailure};
use super::step::run_step;
use super::{
    CANCELLED_HOOK_PATCH, GraphRun, INVALID_INPUT, Interpreted, STEP_FAILED, options, visibility,
};
use crate::expr::{self, Scope};
use crate::progress::{RunStatus, StepStatus};

impl<'a, W: Interpreted> GraphRun<'a, W> {
    /// Required step `i` failed (or the run was cancelled): the table says so, the main
    /// graph's `on_failure` step runs, and the run ends Failed (Canceled when cancelled).
    pub(super) async fn fail_run(
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
                    (self.reference.clone(), self.rules()),
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
