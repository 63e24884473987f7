//! A stand-in for the next release's interpreter, for the rolling-upgrade test only
//! (`tests/tests/suite/upgrade.rs`).
//!
//! A real release that changes the interpreter's commands cannot be built twice inside one
//! test run, so the upgrade test's second worker (`reflow-test-worker` with
//! `REFLOW_TEST_NEXT_INTERPRETER` set) runs [`registry`]: reflow's registry plus a workflow
//! interceptor under which every run begins with a one-millisecond timer, a command no
//! earlier history has at that point — exactly the kind of change that fails a replay of an
//! older history with a nondeterminism error. [`replay`] replays a history as that build
//! does. The interceptor is installed once, when the worker starts, so runs stay
//! deterministic; nothing of it is in the production crates.

use std::time::Duration;

use reflow::registry::Registry;
use temporalio_workflow::WorkflowContextView;
use temporalio_workflow::workflow_interceptors::{
    ExecuteWorkflowInput, ExecuteWorkflowResult, WorkflowInterceptor,
    WorkflowInterceptorConstructor, WorkflowInterceptorContext, WorkflowInterceptorFuture,
    WorkflowNext,
};
use workflow::Catalog;

/// Begins every run with a one-millisecond timer, then runs the workflow.
struct TimerFirst;

impl WorkflowInterceptor for TimerFirst {
    fn execute<'a>(
        &'a self,
        ctx: WorkflowInterceptorContext,
        input: ExecuteWorkflowInput,
        next: WorkflowNext<
            'a,
            ExecuteWorkflowInput,
            WorkflowInterceptorFuture<'a, ExecuteWorkflowResult>,
        >,
    ) -> WorkflowInterceptorFuture<'a, ExecuteWorkflowResult> {
        WorkflowInterceptorFuture::new(async move {
            ctx.timer(Duration::from_millis(1)).await;
            next.run(input).await
        })
    }
}

/// The next release's difference, for a worker's or a replayer's options.
pub fn interceptor() -> WorkflowInterceptorConstructor {
    WorkflowInterceptorConstructor::new(|_: &WorkflowContextView| TimerFirst)
}

/// The test registry ([`crate::registry`]) as the next release: its workers run every
/// workflow under [`interceptor`].
pub fn registry() -> Registry {
    crate::registry().with(
        Catalog::new(),
        std::sync::Arc::new(
            |o: &mut temporalio_sdk::WorkerOptions, _: &reflow::registry::Services| {
                o.workflow_interceptor(interceptor());
                Ok(())
            },
        ),
    )
}

/// Replay one history as the next release does ([`crate::replay`] under [`interceptor`]).
pub async fn replay(history: temporalio_client::WorkflowHistory) -> Result<(), String> {
    crate::replay_with(history, Some(interceptor())).await
}
