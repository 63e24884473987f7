//! Heartbeating long CPU work, and stopping it: the work runs on a blocking thread; the
//! activity records a heartbeat every [`HEARTBEAT_EVERY`] and whenever the work reports
//! progress, and when the activity is cancelled (a run cancel, a reset, the server's cancel,
//! a heartbeat timeout noticed by the next heartbeat, the worker's shutdown) it raises the
//! work's [`Work::proceed`] flag and waits for the thread to end before answering
//! `Cancelled`. Audio decoding and encoding, embedded transcription and the embedded LLM look
//! at the flag between blocks, so the thread ends within one block of the cancel.
//!
//! Cancellation reaches an activity only in a heartbeat's answer; the worker sends heartbeats
//! at most every [`THROTTLE`] (`max_heartbeat_throttle_interval`) and a step records one every
//! [`HEARTBEAT_EVERY`] (the same 3 s), so one reaches the server about every 3 s and a cancel
//! is noticed within that and the work stops one block later. Every heartbeat that reaches
//! the server is a Temporal action (issue 41): a step's first is recorded after
//! `HEARTBEAT_EVERY`, not at its start, so a step shorter than that sends none, and progress
//! reported faster than the throttle is sent as its latest details once per window.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use temporalio_sdk::activities::ActivityContext;
use tokio::sync::Notify;

use crate::error::ActivityFailure;

/// How often a long CPU step heartbeats while it works (also after each reported progress).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);

/// The worker's longest delay before sending a recorded heartbeat to the server
/// (`max_heartbeat_throttle_interval`): what bounds how stale the server's details are and
/// how late a cancel is noticed (≤ 5 s is what a cancel must take; resume saves words at each
/// heartbeat the step records).
pub const THROTTLE: Duration = Duration::from_secs(3);

/// Blocking threads of steps now running, in this process (`reflow_step_threads`).
static RUNNING: AtomicI64 = AtomicI64::new(0);

/// Blocking step threads running now in this process.
pub fn running_threads() -> i64 {
    RUNNING.load(Ordering::SeqCst)
}

/// The heartbeat details of every long step: small JSON, readable in the Web UI's pending
/// activity and by `temporal workflow describe`, the source of a running step's percentage
/// (PIPELINE_PROGRESS, `reflow status`), and for `transcribe_track` where a retry resumes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Progress {
    /// What the step is doing (`padding`, `mixing`, `transcribing`, `generating`, `waiting`…).
    pub phase: String,
    /// Seconds of the work done: audio seconds for audio steps, wall seconds otherwise.
    pub done_s: f64,
    /// Seconds of work in all, when known (0 = unknown).
    #[serde(default)]
    pub total_s: f64,
    /// `transcribe_track`: the words of `done_s`, saved under a key of the attempt's input
    /// hash, where a retry continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub words_key: Option<String>,
}

impl Progress {
    /// `done_s` of `total_s` in `phase`.
    pub fn of(phase: &str, done_s: f64, total_s: f64) -> Self {
        Progress {
            phase: phase.to_owned(),
            done_s,
            total_s,
            words_key: None,
        }
    }

    /// The fraction done, when the total is known.
    pub fn fraction(&self) -> Option<f64> {
        (self.total_s > 0.0).then(|| (self.done_s / self.total_s).clamp(0.0, 1.0))
    }
}

/// The blocking work's side: whether it should go on, and a way to say it made progress.
#[derive(Clone, Debug, Default)]
pub struct Work {
    stop: Arc<AtomicBool>,
    progressed: Arc<Notify>,
}

impl Work {
    /// A handle nobody stops (tools, benchmarks, tests).
    pub fn unstoppable() -> Self {
        Work::default()
    }

    /// `Continue` while the activity wants the work; `Break` once it was cancelled.
    pub fn proceed(&self) -> ControlFlow<()> {
        if self.stop.load(Ordering::Relaxed) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// The work got further: heartbeat now (the details say how far).
    pub fn progressed(&self) {
        self.progressed.notify_one();
    }

    /// The flag as a plain atomic, for code that polls one (the embedded LLM's generation).
    pub fn flag(&self) -> &AtomicBool {
        &self.stop
    }
}

/// Raises the stop flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Counts the thread in [`RUNNING`] while it lives.
struct Running;

impl Running {
    fn start() -> Self {
        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        metrics::gauge!("reflow_step_threads").set(now as f64);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let now = RUNNING.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::gauge!("reflow_step_threads").set(now as f64);
    }
}

/// What a step heartbeats: any `FnMut() -> Progress`, or a type that does asynchronous work
/// first (the transcription saves its words so far).
pub trait Beat: Send {
    /// The details to record now (`None`: nothing to record this time).
    fn details(&mut self) -> impl Future<Output = Option<Progress>> + Send;
}

impl<F: FnMut() -> Progress + Send> Beat for F {
    async fn details(&mut self) -> Option<Progress> {
        Some(self())
    }
}

/// Run CPU work on a blocking thread, heartbeating the seconds it has taken in `phase`; see
/// [`run`].
pub async fn with_heartbeats<T: Send + 'static>(
    ctx: &ActivityContext,
    phase: &'static str,
    work: impl FnOnce(Work) -> T + Send + 'static,
) -> Result<T, ActivityFailure> {
    let started = Instant::now();
    run(ctx, work, move || {
        Progress::of(phase, started.elapsed().as_secs_f64().floor(), 0.0)
    })
    .await
}

/// Run CPU work on a blocking thread; record the heartbeat `beat` gives every
/// [`HEARTBEAT_EVERY`] and after each [`Work::progressed`]. When the activity is cancelled
/// the work's [`Work::proceed`] turns to `Break`, the thread is awaited, and the answer is
/// [`ActivityFailure::Cancelled`] whatever the work returned. Dropping this future stops the
/// work too.
pub async fn run<T: Send + 'static>(
    ctx: &ActivityContext,
    work: impl FnOnce(Work) -> T + Send + 'static,
    mut beat: impl Beat,
) -> Result<T, ActivityFailure> {
    let handle_side = Work::default();
    let work_side = handle_side.clone();
    // This future dropped before the work ended (its caller gave up): stop the work too.
    let _stop_on_drop = StopOnDrop(handle_side.stop.clone());
    let mut handle = tokio::task::spawn_blocking(move || {
        let _running = Running::start();
        work(work_side)
    });
    // The first beat after `HEARTBEAT_EVERY`: a short step sends no heartbeat at all.
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + HEARTBEAT_EVERY,
        HEARTBEAT_EVERY,
    );
    let mut cancelled_at: Option<Instant> = None;
    let mut shown = Shown {
        sink: crate::attempt::current().progress,
        percent: None,
    };
    loop {
        tokio::select! {
            done = &mut handle => {
                let done = done.map_err(|e| ActivityFailure::Transient(format!("the step's work stopped: {e}")))?;
                return match cancelled_at {
                    None => Ok(done),
                    Some(at) => {
                        let latency = at.elapsed();
                        // The last details, with what the work finished before it stopped:
                        // the next attempt continues from there (a worker's shutdown reports
                        // them with the attempt's failure).
                        record(ctx, &mut beat, &mut shown).await;
                        metrics::histogram!("reflow_cancel_latency_seconds").record(latency.as_secs_f64());
                        tracing::info!(step = %ctx.info().activity_type, latency_ms = latency.as_millis() as u64, "the step's work stopped after its cancel");
                        Err(ActivityFailure::Cancelled)
                    }
                };
            }
            () = ctx.cancelled(), if cancelled_at.is_none() => {
                tracing::info!(step = %ctx.info().activity_type, "the step was cancelled; stopping its work");
                handle_side.stop.store(true, Ordering::Relaxed);
                cancelled_at = Some(Instant::now());
            }
            _ = ticker.tick(), if cancelled_at.is_none() => record(ctx, &mut beat, &mut shown).await,
            () = handle_side.progressed.notified(), if cancelled_at.is_none() => record(ctx, &mut beat, &mut shown).await,
        }
    }
}

/// The fraction done last shown to users (PIPELINE_PROGRESS), and where to show it.
struct Shown {
    sink: Option<std::sync::Arc<dyn crate::attempt::ProgressSink>>,
    percent: Option<u8>,
}

async fn record(ctx: &ActivityContext, beat: &mut impl Beat, shown: &mut Shown) {
    let Some(d) = beat.details().await else {
        return;
    };
    // Shown when the whole percentage changes; a failure to show it never fails the step.
    if let (Some(sink), Some(f)) = (&shown.sink, d.fraction()) {
        let percent = (f * 100.0).floor() as u8;
        if shown.percent != Some(percent) {
            match sink.report(f).await {
                Ok(()) => shown.percent = Some(percent),
                Err(e) => tracing::debug!(error = %e, "progress not shown"),
            }
        }
    }
    if let Err(e) = ctx.record_heartbeat(d).await {
        tracing::debug!(error = %e, "heartbeat not recorded");
    }
}
