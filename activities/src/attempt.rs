//! The context of one activity attempt: which pipeline (and version), step and queue it
//! belongs to, the origin its events carry (so that a retry's events are recognised as the
//! same ones), the bytes it wrote, and where it reports how far it is.
//!
//! The worker's activity interceptor (`reflow::attempts`) runs every attempt inside
//! [`in_attempt`]; code deep in a step (checkpoints, the LLM client, event publishing,
//! heartbeats) reads it with [`current`] instead of having it passed around. This module
//! depends on none of the modules that read it: [`crate::metrics`], [`crate::events`] and
//! [`crate::heartbeat`] depend on it, and [`crate::progress`] implements its
//! [`ProgressSink`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::ActivityFailure;

/// Where a running attempt reports the fraction of its work done (a long step's heartbeats);
/// implemented by [`crate::progress`], which keeps it and shows it to users.
pub trait ProgressSink: Send + Sync + fmt::Debug {
    /// Report `fraction` (0–1) of the attempt's work as done.
    fn report(
        &self,
        fraction: f64,
    ) -> Pin<Box<dyn Future<Output = Result<(), ActivityFailure>> + Send + '_>>;
}

/// One attempt of one activity.
#[derive(Debug, Clone, Default)]
pub struct AttemptContext {
    /// The workflow type running the step (the pipeline or child pipeline name).
    pub pipeline: String,
    /// The activity type.
    pub step: String,
    /// Its task queue.
    pub queue: String,
    /// The pipeline version of the run that scheduled it (the workflow stamps it on its
    /// activities, `workflow::version_header`); `None` outside a run, or for a run recorded
    /// before versions were stamped.
    pub version: Option<u32>,
    /// Bytes this attempt wrote to object storage (read by the activity interceptor).
    pub written: Arc<AtomicU64>,
    /// `{workflow_id}/{run_id}/{activity_id}`: the same for every attempt of one activity, so
    /// the events a retry publishes again are recognised ([`crate::events`]); empty outside a
    /// workflow's activity.
    pub origin: String,
    /// Events this attempt has published so far.
    pub published: Arc<AtomicU64>,
    /// Where the attempt reports how far it is (a pipeline activity with a database).
    pub progress: Option<Arc<dyn ProgressSink>>,
}

impl AttemptContext {
    /// The origin of the next event this attempt publishes (`{origin}#{n}`, n = 0, 1, …), or
    /// `None` outside a workflow's activity.
    pub fn next_event_origin(&self) -> Option<String> {
        (!self.origin.is_empty()).then(|| {
            let n = self.published.fetch_add(1, Ordering::Relaxed);
            format!("{}#{n}", self.origin)
        })
    }

    /// Count `bytes` written to storage by this attempt.
    pub fn wrote(&self, bytes: u64) {
        self.written.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes written to storage so far in this attempt.
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

tokio::task_local! {
    static ATTEMPT: AttemptContext;
}

/// Run `fut` as the attempt `context`.
pub async fn in_attempt<F: Future>(context: AttemptContext, fut: F) -> F::Output {
    ATTEMPT.scope(context, fut).await
}

/// The current attempt's context (empty outside an attempt: unit tests, tools).
pub fn current() -> AttemptContext {
    ATTEMPT.try_with(Clone::clone).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_attempt_numbers_its_events_and_outside_one_there_is_no_origin() {
        assert_eq!(current().next_event_origin(), None);
        let ctx = AttemptContext {
            origin: "wf/run/act".into(),
            ..Default::default()
        };
        let origins = in_attempt(ctx, async {
            let a = current();
            [a.next_event_origin(), current().next_event_origin()]
        })
        .await;
        assert_eq!(
            origins,
            [Some("wf/run/act#0".into()), Some("wf/run/act#1".into())]
        );
    }
}
