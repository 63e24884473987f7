//! The worker-wide activity interceptor: tracing span per attempt, attempt reports to the
//! workflow.
//!
//! Temporal writes an activity's retries to history only when the activity closes, so a
//! workflow cannot know that its step is on attempt 3. This interceptor tells it: when an
//! attempt after the first starts, and when an attempt fails, it signals the owning workflow
//! (`step_attempt`, an [`AttemptReport`]); the interpreter's progress table shows it. A
//! signal that cannot be delivered is logged and never fails the activity. Attempt 1 starts
//! are not reported (the workflow already shows attempt 1 when it schedules), so a run
//! without failures costs no extra history events.

use futures::FutureExt;
use temporalio_client::{Client, UntypedSignal, UntypedWorkflow, WorkflowSignalOptions};
use temporalio_sdk::activities::ActivityError;
use temporalio_sdk::interceptors::{
    ActivityInboundInterceptor, ExecuteActivityInput, ExecuteActivityOutput, Next,
};
use tracing::Instrument;
use workflow::progress::AttemptReport;
use workflow::workflows::STEP_ATTEMPT_SIGNAL;

/// Reports attempts to the workflow that scheduled them.
#[derive(Clone)]
pub struct AttemptReporter {
    client: Client,
}

impl AttemptReporter {
    /// Report through `client` (the worker's own connection).
    pub fn new(client: Client) -> Self {
        AttemptReporter { client }
    }

    async fn report(&self, workflow_id: &str, report: AttemptReport) {
        let handle = self
            .client
            .get_workflow_handle::<UntypedWorkflow>(workflow_id);
        let sent = handle
            .signal(
                UntypedSignal::new(STEP_ATTEMPT_SIGNAL),
                workflow::payload::to_raw(&report),
                WorkflowSignalOptions::default(),
            )
            .await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "could not report the attempt to the workflow");
        }
    }
}

impl ActivityInboundInterceptor for AttemptReporter {
    fn execute_activity<'a>(
        &'a self,
        input: ExecuteActivityInput,
        next: Next<'a, ExecuteActivityInput, ExecuteActivityOutput<'a>>,
    ) -> ExecuteActivityOutput<'a> {
        let info = input.activity_info();
        let workflow_id = info.workflow_id.clone().unwrap_or_default();
        let activity_id = info.activity_id.clone();
        let attempt = info.attempt;
        let span = tracing::info_span!(
            "activity",
            workflow_id = %workflow_id,
            run_id = %info.workflow_run_id.as_deref().unwrap_or(""),
            step = %info.activity_type,
            activity_id = %activity_id,
            attempt,
        );
        async move {
            if attempt > 1 && !workflow_id.is_empty() {
                self.report(
                    &workflow_id,
                    AttemptReport {
                        activity_id: activity_id.clone(),
                        attempt,
                        error: None,
                    },
                )
                .await;
            }
            tracing::debug!("attempt started");
            let result = next.run(input).await;
            match &result {
                Ok(_) => tracing::debug!("attempt completed"),
                Err(ActivityError::Cancelled { .. }) => tracing::info!("attempt cancelled"),
                Err(e) => {
                    let message = failure_message(e);
                    tracing::warn!(error = %message, "attempt failed");
                    if !workflow_id.is_empty() {
                        self.report(
                            &workflow_id,
                            AttemptReport {
                                activity_id,
                                attempt,
                                error: Some(message),
                            },
                        )
                        .await;
                    }
                }
            }
            result
        }
        .instrument(span)
        .boxed()
    }
}

fn failure_message(e: &ActivityError) -> String {
    match e {
        ActivityError::Application(f) => match f.type_name() {
            Some(t) if !t.is_empty() => format!("{t}: {}", f.source_error()),
            _ => f.source_error().to_string(),
        },
        other => format!("{other:?}"),
    }
}
