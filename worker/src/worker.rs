//! Running Temporal workers: one per task queue, all in this process, stopped together.
//!
//! Every worker registers the whole [`Registry`]; the task queue decides which work reaches
//! it. The activity interceptor ([`crate::attempts::AttemptReporter`]) is installed on
//! each, so attempts reach the progress table and every activity logs inside a span carrying
//! `workflow_id`, `run_id`, `step` and `attempt`; so is the workflow interceptor
//! [`workflow::version_header`], which stamps a run's pipeline version on its activities.
//! While they run, [`watch_server`] says in one log line when the Temporal server stops
//! answering and in one more when it answers again; meanwhile the SDK client's retry warnings,
//! one per poller every few seconds, are left out of the log ([`QuietWhileUnreachable`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::attempts::AttemptReporter;
use temporalio_client::Client;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
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

/// How long in-flight activities get to finish after a stop request before they are cancelled
/// (the setting's default, [`crate::settings::DEFAULT_SHUTDOWN_GRACE`]).
pub const GRACE: Duration = crate::settings::DEFAULT_SHUTDOWN_GRACE;
/// How long after the grace period the process waits for activities that ignore cancellation.
pub const DRAIN_MARGIN: Duration = Duration::from_secs(5);
/// What a step needs to stop once cancelled (the Whisper window, audio block or LLM token in
/// flight; 2.6 s measured for a tiny.en window on 2 cores): in-flight activities are cancelled
/// this long before the grace ends, so that a worker exits within its grace and hands its
/// steps back with their heartbeat details.
pub const STOP_BUDGET: Duration = Duration::from_secs(4);
/// The grace of `reflow process`: Ctrl-C stops it within about two seconds; what was in
/// flight runs again when the same directory is processed again.
pub const LOCAL_GRACE: Duration = Duration::from_secs(1);

/// The task queue of the LLM steps (docs/contracts/pipeline.md §1).
pub const LLM_QUEUE: &str = "reflow-llm";

/// Activity slots per worker of each queue (docs/contracts/pipeline.md §1): light bookkeeping 50,
/// audio one per CPU core, mixdown 1 (one mix at a time per machine), transcription 8, LLM 10;
/// other queues 100. `REFLOW_ACTIVITY_SLOTS` overrides, e.g. `reflow-asr=2,reflow-audio=4`.
pub fn activity_slots(queue: &str, overrides: Option<&str>) -> usize {
    let declared = overrides.and_then(|o| {
        o.split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k.trim() == queue)
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
    });
    declared.unwrap_or(match queue {
        "reflow" => 50,
        "reflow-audio" => std::thread::available_parallelism().map_or(2, usize::from),
        "reflow-mixdown" => 1,
        "reflow-asr" => 8,
        LLM_QUEUE => 10,
        _ => 100,
    })
}

/// How the workers of a process run.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `REFLOW_ACTIVITY_SLOTS` (see [`activity_slots`]).
    pub slot_overrides: Option<String>,
    /// How long in-flight activities may finish after a stop request ([`GRACE`] for a
    /// worker, [`LOCAL_GRACE`] for `reflow process`).
    pub grace: Duration,
    /// The Worker Deployment version the workers register as (`None`: unversioned).
    pub deployment: Option<crate::deployment::Deployment>,
}

/// Run one worker per queue until `shutdown` fires; returns when all have drained.
///
/// `Worker::run` is not `Send`, so this future must be awaited on the caller's task (not
/// spawned); the SDK runtime is created from the current tokio runtime.
pub async fn run_workers(
    client: Client,
    registry: &Registry,
    services: &Services,
    queues: &[String],
    setup: &Setup,
    shutdown: Shutdown,
) -> Result<(), WorkerError> {
    let grace = setup.grace;
    // Make sure reflow's recorder exists before the first step records into it.
    crate::metrics::reflow_handle();
    let runtime = Runtime::from_current_tokio(
        RuntimeOptions::builder()
            .telemetry_options(crate::metrics::telemetry())
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
        let slots = activity_slots(queue, setup.slot_overrides.as_deref());
        let tuner = TunerHolder::builder()
            .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(100))
            .activity_task_slot_supplier(FixedSizeSlotSupplier::new(slots))
            .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(100))
            .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(100))
            .build();
        let mut options = WorkerOptions::new(queue.clone())
            .tuner(tuner)
            .maybe_max_task_queue_activities_per_second(llm_rate)
            .activity_inbound_interceptor(
                AttemptReporter::new(client.clone()).recording(services.events.clone(), identity()),
            )
            // Every activity a run schedules carries its pipeline version (metrics label).
            .workflow_interceptor(workflow::version_header::interceptor())
            .graceful_shutdown_period(grace.saturating_sub(STOP_BUDGET))
            // Heartbeats reach the server (and cancels reach the steps) about every 3 s.
            .max_heartbeat_throttle_interval(activities::heartbeat::THROTTLE)
            .maybe_deployment_options(setup.deployment.as_ref().map(|d| d.options()))
            .build();
        registry.register(&mut options, services).map_err(build)?;
        let worker =
            Worker::new(&runtime, client.clone(), options).map_err(|e| build(e.to_string()))?;
        workers.push((queue.clone(), worker));
    }
    let watcher = tokio::spawn(watch_server(client.clone()));
    let _stop_watching = AbortOnDrop(watcher);
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
            match tokio::time::timeout(grace + DRAIN_MARGIN, runs).await {
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

/// How often the workers' process asks the server whether it answers ([`watch_server`]).
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How long a probe waits for the answer before the server counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether [`watch_server`] last found the Temporal server unreachable.
static UNREACHABLE: AtomicBool = AtomicBool::new(false);

/// The target of the SDK client's retry warnings (`gRPC call poll_workflow_task_queue retried
/// 7 times`, for every poller of every queue while the server does not answer).
const RETRY_TARGET: &str = "temporalio_client::retry";

/// A log filter (`init_tracing`) that leaves out [`RETRY_TARGET`]'s events while
/// [`watch_server`] has said the server is unreachable; everything else passes.
pub struct QuietWhileUnreachable;

impl<S> tracing_subscriber::layer::Filter<S> for QuietWhileUnreachable {
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        !(meta.target().starts_with(RETRY_TARGET) && UNREACHABLE.load(Ordering::Relaxed))
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Decided at every event for the retry target, whose answer changes.
        if meta.target().starts_with(RETRY_TARGET) {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::always()
        }
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Ask the server for its system info every [`PROBE_EVERY`] (no Action, no history); log one
/// warning when it first does not answer within [`PROBE_TIMEOUT`] (a network partition, the
/// server down) and one line when it answers again, with how long it did not (counted from the
/// first probe that failed). Polls,
/// heartbeats and completions meanwhile fail and are retried by the SDK; an activity whose
/// heartbeat or start-to-close timeout passed in between runs again (resuming from its last
/// heartbeat or checkpoint).
async fn watch_server(client: Client) {
    use temporalio_common::protos::temporal::api::workflowservice::v1::GetSystemInfoRequest;
    let mut lost: Option<std::time::Instant> = None;
    let mut ticker = tokio::time::interval(PROBE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut service = client.connection().workflow_service();
    loop {
        ticker.tick().await;
        let probe = service.get_system_info(tonic::Request::new(GetSystemInfoRequest::default()));
        let error = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(_)) => None,
            Ok(Err(status)) => Some(status.message().to_owned()),
            Err(_) => Some(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
        };
        match (error, lost) {
            (Some(error), None) => {
                tracing::warn!(
                    %error,
                    "Temporal server unreachable: tasks, heartbeats and completions wait until \
                     it answers; steps whose timeout passes meanwhile run again"
                );
                lost = Some(std::time::Instant::now());
                UNREACHABLE.store(true, Ordering::Relaxed);
            }
            (None, Some(since)) => {
                tracing::info!(
                    unreachable_s = since.elapsed().as_secs(),
                    "Temporal server reachable again"
                );
                lost = None;
                UNREACHABLE.store(false, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// This worker's identity as the status API shows it: `pid@host`.
fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{}@{host}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::activity_slots;

    #[test]
    fn queues_get_the_spec_slots_unless_overridden() {
        assert_eq!(activity_slots("reflow", None), 50);
        assert_eq!(activity_slots("reflow-mixdown", None), 1);
        assert_eq!(activity_slots("reflow-asr", None), 8);
        assert_eq!(activity_slots("reflow-llm", None), 10);
        assert!(activity_slots("reflow-audio", None) >= 1);
        assert_eq!(
            activity_slots("reflow-asr", Some("reflow-asr=2, reflow-audio=4")),
            2
        );
        assert_eq!(activity_slots("reflow-mixdown", Some("reflow-asr=2")), 1);
        assert_eq!(
            activity_slots("reflow-asr", Some("reflow-asr=0")),
            8,
            "0 is ignored"
        );
    }
}
