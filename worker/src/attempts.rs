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
//!
//! With a database, every attempt of a pipeline activity also gets a `step_attempt` row
//! (docs/contracts/events-and-api.md §6): `started` when it begins, then `completed`, `failed`,
//! `non_retryable` or `cancelled` with its failure — the one record of attempts Temporal's
//! history does not keep, which the status API builds its task rows from. Steps declared
//! `local: true` run as local activities and are recorded like any other; the progress
//! reporter and the definition resolver (the interpreter's own local activities) are internal:
//! no row, no signal. A row that cannot be written is logged and never fails the activity.

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
    events: Option<activities::events::Events>,
    identity: String,
}

impl AttemptReporter {
    /// Report through `client` (the worker's own connection).
    pub fn new(client: Client) -> Self {
        AttemptReporter {
            client,
            events: None,
            identity: String::new(),
        }
    }

    /// Also record every attempt in the `step_attempt` table of `events`' database, as worker
    /// `identity`, and let long steps show how far they are through `events`.
    pub fn recording(
        mut self,
        events: activities::events::Events,
        identity: impl Into<String>,
    ) -> Self {
        self.events = Some(events);
        self.identity = identity.into();
        self
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
        // The interpreter's progress reports and definition lookups are bookkeeping, not steps.
        let internal = info.is_local
            && (info.activity_type == workflow::interpreter::REPORT_PROGRESS
                || info.activity_type == workflow::interpreter::resolve::RESOLVE_PIPELINE
                || info.activity_type == workflow::interpreter::memo::MEMO_PLAN
                || info.activity_type == workflow::interpreter::memo::MEMO_STORE);
        let mut labels = activities::attempt::AttemptContext {
            pipeline: info.workflow_type.clone().unwrap_or_default(),
            step: info.activity_type.clone(),
            queue: info.task_queue.clone(),
            version: workflow::version_header::version_of(input.headers()),
            written: Default::default(),
            origin: if workflow_id.is_empty() || internal {
                String::new()
            } else {
                format!(
                    "{workflow_id}/{}/{activity_id}",
                    info.workflow_run_id.as_deref().unwrap_or("")
                )
            },
            published: Default::default(),
            progress: None,
        };
        let record = (!internal && !workflow_id.is_empty())
            .then(|| self.events.as_ref().map(|e| e.db().clone()))
            .flatten()
            .map(|db| {
                (
                    db,
                    activities::db::attempts::Attempt {
                        workflow_id: workflow_id.clone(),
                        run_id: info.workflow_run_id.clone().unwrap_or_default(),
                        activity_id: activity_id.clone(),
                        attempt: i64::from(attempt),
                        activity_type: info.activity_type.clone(),
                        task_queue: info.task_queue.clone(),
                        worker_identity: self.identity.clone(),
                    },
                )
            });
        labels.progress = self.events.clone().zip(record.as_ref()).map(
            |(events, (_, attempt))| -> std::sync::Arc<dyn activities::attempt::ProgressSink> {
                std::sync::Arc::new(activities::progress::FractionSink {
                    events,
                    attempt: attempt.clone(),
                })
            },
        );
        let span = tracing::info_span!(
            "activity",
            workflow_id = %workflow_id,
            run_id = %info.workflow_run_id.as_deref().unwrap_or(""),
            step = %info.activity_type,
            activity_id = %activity_id,
            attempt,
        );
        async move {
            // Internal lookups are not steps: nothing to show in the table (and a signal racing
            // a run that fails at its first task would make that task fail, over and over).
            if attempt > 1 && !workflow_id.is_empty() && !internal {
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
            if let Some((db, a)) = &record
                && let Err(e) = db.attempt_started(a).await
            {
                tracing::warn!(error = %e, "step_attempt row not written");
            }
            let started = std::time::Instant::now();
            let result = activities::attempt::in_attempt(labels.clone(), next.run(input)).await;
            if !internal {
                activities::metrics::attempt(
                    &labels,
                    match &result {
                        Ok(_) => activities::metrics::Outcome::Success,
                        Err(ActivityError::Application(f)) if !f.is_non_retryable() => {
                            activities::metrics::Outcome::RetryableFailure
                        }
                        Err(_) => activities::metrics::Outcome::NonRetryableFailure,
                    },
                    started.elapsed(),
                );
            }
            if let Some((db, a)) = &record {
                let (status, failure) = match &result {
                    Ok(_) => ("completed", None),
                    Err(ActivityError::Cancelled { .. }) => ("cancelled", None),
                    Err(ActivityError::Application(f)) => (
                        if f.is_non_retryable() {
                            "non_retryable"
                        } else {
                            "failed"
                        },
                        Some((
                            f.type_name().unwrap_or("").to_owned(),
                            f.source_error().to_string(),
                        )),
                    ),
                    Err(other) => ("failed", Some((String::new(), format!("{other:?}")))),
                };
                if let Err(e) = db
                    .attempt_ended(a, status, failure, labels.bytes_written())
                    .await
                {
                    tracing::warn!(error = %e, "step_attempt row not updated");
                }
            }
            match &result {
                Ok(_) => tracing::debug!("attempt completed"),
                Err(ActivityError::Cancelled { .. }) => tracing::info!("attempt cancelled"),
                Err(e) => {
                    let message = failure_message(e);
                    tracing::warn!(error = %message, "attempt failed");
                    if !workflow_id.is_empty() && !internal {
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
