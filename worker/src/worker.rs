//! Running Temporal workers: one per task queue, all in this process, stopped together.
//!
//! Every worker registers the whole [`Registry`]; the task queue decides which work reaches
//! it. The activity interceptor ([`activities::attempts::AttemptReporter`]) is installed on
//! each, so attempts reach the progress table and every activity logs inside a span carrying
//! `workflow_id`, `run_id`, `step` and `attempt`.

use std::time::Duration;

use activities::attempts::AttemptReporter;
use temporalio_client::Client;
use temporalio_sdk::{Runtime, Worker, WorkerOptions, runtime::RuntimeOptions};

use crate::registry::{Registry, Services};
use crate::shutdown::Shutdown;

/// Errors running workers.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The SDK runtime could not start.
    #[error("Temporal runtime: {0}")]
    Runtime(String),
    /// A worker could not be built.
    #[error("worker for task queue {queue:?}: {message}")]
    Build {
        /// The queue.
        queue: String,
        /// Why.
        message: String,
    },
    /// A worker stopped with an error.
    #[error("worker for task queue {queue:?} failed: {message}")]
    Run {
        /// The queue.
        queue: String,
        /// Why.
        message: String,
    },
}

/// How long in-flight activities get to finish after a stop request before they are cancelled.
pub const GRACE: Duration = Duration::from_secs(10);
/// How long after the grace period the process waits for activities that ignore cancellation.
pub const DRAIN_MARGIN: Duration = Duration::from_secs(5);

/// The task queue of the LLM steps (pipeline.md §1).
pub const LLM_QUEUE: &str = "reflow-llm";

/// Run one worker per queue until `shutdown` fires; returns when all have drained.
///
/// `Worker::run` is not `Send`, so this future must be awaited on the caller's task (not
/// spawned); the SDK runtime is created from the current tokio runtime.
pub async fn run_workers(
    client: Client,
    registry: &Registry,
    services: &Services,
    queues: &[String],
    shutdown: Shutdown,
) -> Result<(), WorkerError> {
    let runtime = Runtime::from_current_tokio(
        RuntimeOptions::builder()
            .build()
            .map_err(|e| WorkerError::Runtime(e.to_string()))?,
    )
    .map_err(|e| WorkerError::Runtime(e.to_string()))?;
    let mut workers = Vec::new();
    for queue in queues {
        let build = |message: String| WorkerError::Build {
            queue: queue.clone(),
            message,
        };
        // The LLM queue carries the deployment's LLM rate limit server-side too (§6.4); the
        // client's token bucket covers activities that make several calls.
        let llm_rate =
            (queue == LLM_QUEUE).then(|| f64::from(services.llm.config().rate_limit_per_second));
        let mut options = WorkerOptions::new(queue.clone())
            .maybe_max_task_queue_activities_per_second(llm_rate)
            .activity_inbound_interceptor(
                AttemptReporter::new(client.clone()).recording(services.db().clone(), identity()),
            )
            .graceful_shutdown_period(GRACE)
            .build();
        registry.register(&mut options, services).map_err(build)?;
        let worker =
            Worker::new(&runtime, client.clone(), options).map_err(|e| build(e.to_string()))?;
        workers.push((queue.clone(), worker));
    }
    let handles: Vec<_> = workers.iter().map(|(_, w)| w.shutdown_handle()).collect();
    let stopper = async move {
        shutdown.wait().await;
        tracing::info!("shutting down workers");
        for h in &handles {
            h();
        }
    };
    let runs = futures::future::join_all(workers.iter_mut().map(|(queue, w)| async move {
        tracing::info!(task_queue = %queue, "worker started");
        w.run().await.map_err(|e| WorkerError::Run {
            queue: queue.clone(),
            message: e.to_string(),
        })
    }));
    let (runs, stopper) = (std::pin::pin!(runs), std::pin::pin!(stopper));
    let results = match futures::future::select(runs, stopper).await {
        futures::future::Either::Left((results, _)) => results,
        // Draining waits for in-flight activities; the SDK cancels them after the grace
        // period, but an activity stuck in a call that never checks for cancellation would
        // hold the process forever. Give up on those after a margin: Temporal retries them
        // elsewhere once their heartbeat or start-to-close timeout passes.
        futures::future::Either::Right(((), runs)) => {
            match tokio::time::timeout(GRACE + DRAIN_MARGIN, runs).await {
                Ok(results) => results,
                Err(_) => {
                    tracing::warn!(
                        "activities still running after the grace period; exiting without them"
                    );
                    return Ok(());
                }
            }
        }
    };
    results.into_iter().collect()
}

/// This worker's identity as the status API shows it: `pid@host`.
fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{}@{host}", std::process::id())
}
