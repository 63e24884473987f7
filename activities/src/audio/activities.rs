//! The audio activities registered on the worker (`generate_waveform`; padding and mixdown
//! follow), over the shared storage and checkpoint store.

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use super::waveform::waveform_of_file;
use crate::checkpoint::Checkpoints;
use crate::error::ActivityFailure;
use crate::storage::{Storage, keys};

/// How often a long CPU step heartbeats while it works.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// Input of `generate_waveform`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WaveformInput {
    /// The transcript whose `audio.mp3` to read.
    pub transcript_id: String,
}

/// Output of `generate_waveform`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WaveformOutput {
    /// `{transcript_id}/audio.json`.
    pub waveform_key: String,
    /// Number of peaks stored (always 255).
    pub peaks: usize,
}

/// Heartbeat details of a CPU step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Working {
    /// What it is doing.
    pub phase: &'static str,
    /// Seconds since the step started.
    pub elapsed_s: u64,
}

/// Audio activities.
pub struct AudioActivities {
    storage: Storage,
    checkpoints: Checkpoints,
    scratch: PathBuf,
}

impl AudioActivities {
    /// Activities over `storage`, with local scratch files under `scratch`.
    pub fn new(storage: Storage, scratch: PathBuf) -> Self {
        AudioActivities {
            checkpoints: Checkpoints::new(storage.clone()),
            storage,
            scratch,
        }
    }

    async fn waveform(
        &self,
        ctx: &ActivityContext,
        input: &WaveformInput,
    ) -> Result<WaveformOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let objects = |o: &WaveformOutput| vec![o.waveform_key.clone()];
        let config = serde_json::json!({"algorithm": "peaks-255-v1"});
        let work = || async {
            let mp3 = keys::audio_mp3(tid);
            tokio::fs::create_dir_all(&self.scratch)
                .await
                .map_err(|e| ActivityFailure::io(self.scratch.display().to_string(), e))?;
            let local = tempfile::Builder::new()
                .suffix(".mp3")
                .tempfile_in(&self.scratch)
                .map_err(|e| ActivityFailure::io(self.scratch.display().to_string(), e))?;
            self.storage.download(&mp3, local.path()).await?;
            let path = local.path().to_owned();
            let peaks =
                with_heartbeats(ctx, "decoding", move || waveform_of_file(&path, &mp3)).await??;
            let key = keys::waveform(tid);
            let body = serde_json::to_vec(&peaks).expect("a list of integers serializes");
            self.storage.put(&key, Bytes::from(body)).await?;
            Ok(WaveformOutput {
                waveform_key: key,
                peaks: peaks.len(),
            })
        };
        let (out, _) = self
            .checkpoints
            .checkpointed(tid, "generate_waveform", input, &config, objects, work)
            .await?;
        Ok(out)
    }
}

#[activities]
impl AudioActivities {
    /// The 255-peak waveform of `{transcript_id}/audio.mp3`, stored as `{transcript_id}/audio.json`.
    #[activity(name = "generate_waveform")]
    pub async fn generate_waveform(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: WaveformInput,
    ) -> Result<WaveformOutput, ActivityError> {
        self.waveform(&ctx, &input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }
}

/// Run CPU work on a blocking thread, heartbeating every [`HEARTBEAT_EVERY`] until it ends.
pub async fn with_heartbeats<T: Send + 'static>(
    ctx: &ActivityContext,
    phase: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ActivityFailure> {
    let started = std::time::Instant::now();
    let mut handle = tokio::task::spawn_blocking(work);
    let mut ticker = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            done = &mut handle => {
                return done.map_err(|e| ActivityFailure::Transient(format!("{phase} stopped: {e}")));
            }
            _ = ticker.tick() => {
                let beat = Working { phase, elapsed_s: started.elapsed().as_secs() };
                if let Err(e) = ctx.record_heartbeat(beat).await {
                    tracing::debug!(error = %e, "heartbeat not recorded");
                }
            }
        }
    }
}
