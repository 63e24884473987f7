//! Heartbeating long CPU work: run it on a blocking thread and record a heartbeat every
//! [`HEARTBEAT_EVERY`] until it ends (audio decoding and encoding, embedded transcription).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_sdk::activities::ActivityContext;

use crate::error::ActivityFailure;

/// How often a long CPU step heartbeats while it works.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// Heartbeat details of a CPU step.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Working {
    /// What it is doing.
    pub phase: &'static str,
    /// Seconds since the step started.
    pub elapsed_s: u64,
}

/// Run CPU work on a blocking thread, heartbeating `{phase, elapsed_s}` every
/// [`HEARTBEAT_EVERY`] until it ends.
pub async fn with_heartbeats<T: Send + 'static>(
    ctx: &ActivityContext,
    phase: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ActivityFailure> {
    let started = std::time::Instant::now();
    with_heartbeats_from(ctx, work, move || Working {
        phase,
        elapsed_s: started.elapsed().as_secs(),
    })
    .await
}

/// Run CPU work on a blocking thread, heartbeating what `details` reports every
/// [`HEARTBEAT_EVERY`] until it ends.
pub async fn with_heartbeats_from<T: Send + 'static, D: Serialize + Send + 'static>(
    ctx: &ActivityContext,
    work: impl FnOnce() -> T + Send + 'static,
    details: impl Fn() -> D,
) -> Result<T, ActivityFailure> {
    let mut handle = tokio::task::spawn_blocking(work);
    let mut ticker = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            done = &mut handle => {
                return done.map_err(|e| ActivityFailure::Transient(format!("the step's work stopped: {e}")));
            }
            _ = ticker.tick() => {
                if let Err(e) = ctx.record_heartbeat(details()).await {
                    tracing::debug!(error = %e, "heartbeat not recorded");
                }
            }
        }
    }
}
