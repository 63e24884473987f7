//! The audio activities registered on the worker — `pad_track` (§4.3.1), `mixdown_tracks`
//! (§4.5), `generate_waveform` (§4.6) — over the shared storage and checkpoint store. Each
//! downloads its inputs to a scratch file, does the CPU work on a blocking thread while
//! heartbeating its progress, uploads the result, and checkpoints its output by input hash.

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use super::waveform::waveform_of_file;
use crate::checkpoint::Checkpoints;
use crate::error::ActivityFailure;
use crate::events::Events;
use crate::heartbeat;
use crate::storage::{Storage, keys};

/// Padded tracks a mixdown downloads at once.
const PARALLEL_DOWNLOADS: usize = 8;

/// Input of `generate_waveform`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaveformInput {
    /// The transcript whose `audio.mp3` to read.
    pub transcript_id: String,
}

/// Output of `generate_waveform`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct WaveformOutput {
    /// `{transcript_id}/audio.json`.
    pub waveform_key: String,
    /// Number of peaks stored (always 255).
    pub peaks: usize,
}

/// Input of `mixdown_tracks`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixdownInput {
    /// The transcript.
    pub transcript_id: String,
    /// The padded tracks, in track order.
    pub padded_keys: Vec<String>,
}

/// Output of `mixdown_tracks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct MixdownOutput {
    /// `{transcript_id}/audio.mp3`.
    pub audio_key: String,
    /// Length of the mix.
    pub duration_ms: u64,
    /// Size of the MP3.
    pub size_bytes: u64,
}

/// Input of `pad_track` (one Daily raw track).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PadInput {
    /// The transcript.
    pub transcript_id: String,
    /// The track's position `i` in the workflow input.
    pub track_index: usize,
    /// Daily's bucket (S3 recordings stores switch to it; directory stores ignore it).
    #[serde(default)]
    pub bucket_name: Option<String>,
    /// The raw track's key in the recordings bucket.
    pub s3_key: String,
    /// A local source's declared offset in seconds (`recording.json`); wins over the
    /// container's and the filename's.
    #[serde(default)]
    pub offset_s: Option<f64>,
}

/// Output of `pad_track`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct PadOutput {
    /// `{transcript_id}/pipeline/padded_{i}.webm`.
    pub padded_key: String,
    /// Silence prepended, ms.
    pub offset_ms: u64,
    /// Where the offset came from.
    pub offset_source: super::pad::OffsetSource,
    /// Length of the padded track, ms.
    pub duration_ms: u64,
    /// Size of the padded track.
    pub size_bytes: u64,
}

/// Audio activities.
pub struct AudioActivities {
    storage: Storage,
    recordings: Storage,
    checkpoints: Checkpoints,
    scratch: PathBuf,
    events: Events,
}

/// The audio steps, declared (`crate::step`): their results are checkpointed, no vendor is
/// paid.
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    use crate::step::{Cost, Declare as _, Event, Step};
    let computed = Step::costing(Cost::Computed);
    catalog
        .declare(AudioActivities::pad_track, computed)
        .declare(
            AudioActivities::mixdown_tracks,
            computed.emitting(&[Event::Duration]),
        )
        .declare(
            AudioActivities::generate_waveform,
            computed.emitting(&[Event::Waveform]),
        )
}

impl AudioActivities {
    /// Activities writing to `storage` (transcripts) and reading raw tracks from `recordings`
    /// (Daily's bucket), with local scratch files under `scratch`, updating transcripts and
    /// publishing through `events`.
    pub fn new(storage: Storage, recordings: Storage, scratch: PathBuf, events: Events) -> Self {
        AudioActivities {
            checkpoints: Checkpoints::new(storage.clone()),
            storage,
            recordings,
            scratch,
            events,
        }
    }

    /// A fresh scratch directory, removed when dropped.
    async fn scratch_dir(&self, prefix: &str) -> Result<tempfile::TempDir, ActivityFailure> {
        let io = |e| ActivityFailure::io(self.scratch.display().to_string(), e);
        tokio::fs::create_dir_all(&self.scratch).await.map_err(io)?;
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&self.scratch)
            .map_err(io)
    }

    async fn pad(
        &self,
        ctx: &ActivityContext,
        input: &PadInput,
    ) -> Result<PadOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let source = self.recordings.in_bucket(input.bucket_name.as_deref());
        let objects = |o: &PadOutput| vec![o.padded_key.clone()];
        let config = serde_json::json!({
            "encoder": "opus-64k-mono-48k-webm",
            "gap_tolerance_s": super::mono::GAP_TOLERANCE_S,
            "recordings": source.url(),
        });
        let work = || async {
            let dir = self.scratch_dir("pad-").await?;
            let raw = dir.path().join("raw");
            source.download(&input.s3_key, &raw).await?;
            let total_ms = super::decode::announced_ms(&raw).unwrap_or(0);
            let filename_offset =
                crate::daily::TrackKey::parse(&input.s3_key).map(|k| k.offset_s());
            let declared = input.offset_s;
            let out = dir.path().join("padded.webm");
            let decoded = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (progress, path, name) = (decoded.clone(), out.clone(), input.s3_key.clone());
            let stats = heartbeat::run(
                ctx,
                move |work| {
                    super::pad::pad_to_webm_at(
                        &raw,
                        &name,
                        declared,
                        filename_offset,
                        &path,
                        |ms| {
                            progress.store(ms, std::sync::atomic::Ordering::Relaxed);
                            work.proceed()
                        },
                    )
                },
                move || {
                    heartbeat::Progress::of(
                        "padding",
                        decoded.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0,
                        total_ms as f64 / 1000.0,
                    )
                },
            )
            .await??;
            tracing::info!(
                track = input.track_index,
                offset_ms = stats.offset_ms,
                offset_source = ?stats.offset_source,
                gaps = stats.gaps.gaps,
                filled_ms = stats.gaps.filled_frames * 1000 / u64::from(stats.source_rate.max(1)),
                "padded"
            );
            let key = keys::padded_track(tid, input.track_index);
            let size = self.storage.put_file(&key, &out).await?;
            Ok(PadOutput {
                padded_key: key,
                offset_ms: stats.offset_ms,
                offset_source: stats.offset_source,
                duration_ms: stats.duration_ms(),
                size_bytes: size,
            })
        };
        let (out, _) = self
            .checkpoints
            .checkpointed(tid, "pad_track", input, &config, objects, work)
            .await?;
        Ok(out)
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
            let dir = self.scratch_dir("waveform-").await?;
            let path = dir.path().join("audio.mp3");
            self.storage.download(&mp3, &path).await?;
            let peaks = heartbeat::with_heartbeats(ctx, "decoding", move |work| {
                waveform_of_file(&path, &mp3, || work.proceed())
            })
            .await??;
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
        // Published on every run, checkpointed or not: a re-run starts from an empty log.
        let peaks: serde_json::Value =
            serde_json::from_slice(&self.storage.get(&out.waveform_key).await?)
                .map_err(|e| ActivityFailure::InvalidInput(format!("{}: {e}", out.waveform_key)))?;
        self.events
            .publish(
                "generate_waveform",
                tid,
                crate::events::Event::Waveform,
                serde_json::json!({ "waveform": peaks }),
            )
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
            let dir = self.scratch_dir("mixdown-").await?;
            // Fetched side by side (in order): a meeting's tracks are independent objects.
            let tracks: Vec<(PathBuf, String)> =
                futures::stream::iter(input.padded_keys.iter().cloned().enumerate())
                    .map(|(i, key)| {
                        let ext = std::path::Path::new(&key)
                            .extension()
                            .and_then(|e| e.to_str())
                            .unwrap_or("bin");
                        let local = dir.path().join(format!("track_{i}.{ext}"));
                        async move {
                            self.storage.download(&key, &local).await?;
                            Ok::<_, ActivityFailure>((local, key))
                        }
                    })
                    .buffered(PARALLEL_DOWNLOADS)
                    .try_collect()
                    .await?;
            let total_ms = tracks
                .iter()
                .filter_map(|(p, _)| super::decode::announced_ms(p))
                .max()
                .unwrap_or(0);
            let out = dir.path().join("audio.mp3");
            let mixed = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (progress, path) = (mixed.clone(), out.clone());
            let stats = heartbeat::run(
                ctx,
                move |work| {
                    super::mix::mix_to_mp3(&tracks, &path, |ms| {
                        progress.store(ms, std::sync::atomic::Ordering::Relaxed);
                        work.proceed()
                    })
                },
                move || {
                    heartbeat::Progress::of(
                        "mixing",
                        mixed.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0,
                        total_ms as f64 / 1000.0,
                    )
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
        let db = self.events.db();
        db.set_audio_location(tid, "storage").await?;
        // Daily's duration is the master; the mix length only fills in when Daily had none.
        let ms = out.duration_ms as f64;
        if db.set_duration_if_unset(tid, ms).await? {
            self.events
                .publish(
                    "mixdown_tracks",
                    tid,
                    crate::events::Event::Duration,
                    serde_json::json!({ "duration": ms }),
                )
                .await?;
        }
        Ok(out)
    }
}

#[activities]
impl AudioActivities {
    /// Pad one raw track to recording t = 0 into `{transcript_id}/pipeline/padded_{i}.webm`
    /// (docs/contracts/pipeline.md §4.3.1).
    #[activity(name = "pad_track")]
    pub async fn pad_track(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: PadInput,
    ) -> Result<PadOutput, ActivityError> {
        self.pad(&ctx, &input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// Mix the padded tracks into `{transcript_id}/audio.mp3` (docs/contracts/pipeline.md §4.5).
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
