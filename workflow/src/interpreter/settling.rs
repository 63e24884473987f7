//! The settling phase of a graph's run: wait for a step in flight to finish
//! ([`GraphRun::next_finished`], [`GraphRun::finished_now`]) and record its result
//! ([`GraphRun::settle`]); a required step's failure hands over to [`super::failing`].

use futures::future::select_all;
use serde_json::Value;
use temporalio_workflow::WorkflowResult;

use super::failure::StepFailure;
use super::step::now;
use super::{GraphRun, Interpreted, State};
use crate::progress::StepStatus;

impl<'a, W: Interpreted> GraphRun<'a, W> {
    /// A step that finished in this activation, if any (a lean run settles them all before
    /// it shows what runs); the steps still in flight stay in flight.
    pub(super) async fn finished_now(&mut self) -> Option<(usize, Result<Value, StepFailure>)> {
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
    pub(super) async fn next_finished(&mut self) -> (usize, Result<Value, StepFailure>) {
        let ((i, result), _, rest) = select_all(std::mem::take(&mut self.running)).await;
        self.running = rest;
        (i, result)
    }

    /// Record step `i`'s result; a required step's failure ends the run (the error).
    pub(super) async fn settle(
        &mut self,
        i: usize,
        result: Result<Value, StepFailure>,
    ) -> WorkflowResult<()> {
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
    pub(super) fn succeeded(&mut self, i: usize, value: Value, now: Option<String>) {
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
}
