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

/// Input of `mixdown_tracks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MixdownInput {
    /// The transcript.
    pub transcript_id: String,
    /// The padded tracks, in track order.
    pub padded_keys: Vec<String>,
}

/// Output of `mixdown_tracks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MixdownOutput {
    /// `{transcript_id}/audio.mp3`.
    pub audio_key: String,
    /// Length of the mix.
    pub duration_ms: u64,
    /// Size of the MP3.
    pub size_bytes: u64,
}

/// Heartbeat details of `mixdown_tracks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MixProgress {
    /// Milliseconds mixed so far.
    pub mixed_ms: u64,
    /// Length of the longest track, as its container announces it (0 if unknown).
    pub total_ms: u64,
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

impl AudioActivities {
    async fn mixdown(
        &self,
        ctx: &ActivityContext,
        input: &MixdownInput,
    ) -> Result<MixdownOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        if input.padded_keys.is_empty() {
            return Err(ActivityFailure::InvalidInput(format!(
                "mixdown_tracks {tid}: no tracks to mix"
            )));
        }
        let objects = |o: &MixdownOutput| vec![o.audio_key.clone()];
        let config =
            serde_json::json!({"encoder": "lame-128k-cbr-48k-stereo", "limiter": "soft-0.891"});
        let work = || async {
            tokio::fs::create_dir_all(&self.scratch)
                .await
                .map_err(|e| ActivityFailure::io(self.scratch.display().to_string(), e))?;
            let dir = tempfile::Builder::new()
                .prefix("mixdown-")
                .tempdir_in(&self.scratch)
                .map_err(|e| ActivityFailure::io(self.scratch.display().to_string(), e))?;
            let mut tracks = Vec::new();
            for (i, key) in input.padded_keys.iter().enumerate() {
                let ext = std::path::Path::new(key)
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("bin");
                let local = dir.path().join(format!("track_{i}.{ext}"));
                self.storage.download(key, &local).await?;
                tracks.push((local, key.clone()));
            }
            let total_ms = tracks
                .iter()
                .filter_map(|(p, _)| super::decode::announced_ms(p))
                .max()
                .unwrap_or(0);
            let out = dir.path().join("audio.mp3");
            let mixed = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (progress, path) = (mixed.clone(), out.clone());
            let stats = with_heartbeats_from(
                ctx,
                move || {
                    super::mix::mix_to_mp3(&tracks, &path, |ms| {
                        progress.store(ms, std::sync::atomic::Ordering::Relaxed)
                    })
                },
                move || MixProgress {
                    mixed_ms: mixed.load(std::sync::atomic::Ordering::Relaxed),
                    total_ms,
                },
            )
            .await??;
            let key = keys::audio_mp3(tid);
            let size = self.storage.put_file(&key, &out).await?;
            Ok(MixdownOutput {
                audio_key: key,
                duration_ms: stats.duration_ms(),
                size_bytes: size,
            })
        };
        let (out, _) = self
            .checkpoints
            .checkpointed(tid, "mixdown_tracks", input, &config, objects, work)
            .await?;
        Ok(out)
    }
}

#[activities]
impl AudioActivities {
    /// Mix the padded tracks into `{transcript_id}/audio.mp3` (pipeline.md §4.5).
    #[activity(name = "mixdown_tracks")]
    pub async fn mixdown_tracks(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: MixdownInput,
    ) -> Result<MixdownOutput, ActivityError> {
        self.mixdown(&ctx, &input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

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
                return done.map_err(|e| ActivityFailure::Transient(format!("audio work stopped: {e}")));
            }
            _ = ticker.tick() => {
                if let Err(e) = ctx.record_heartbeat(details()).await {
                    tracing::debug!(error = %e, "heartbeat not recorded");
                }
            }
        }
    }
}
