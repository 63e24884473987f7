//! Transcription: `transcribe_track` (docs/contracts/pipeline.md §4.3.2) and `merge_transcripts`
//! (§4.4).
//!
//! The backend is chosen by configuration ([`AsrConfig::from_vars`]): `embedded` (default; an
//! in-process Whisper model on CPU, [`whisper`]), `gpu-url` or `openai` (HTTP, [`remote`]).
//! Whatever the backend, a track's words are normalised the same way (text trimmed and
//! prefixed with one space, the track's speaker, sorted by start), written to
//! `{transcript_id}/pipeline/words_{i}.json`, and only the key and the count cross the
//! workflow boundary. Both activities are checkpointed: a retry, reset or re-run never pays
//! for the same transcription twice.

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

mod config;
pub mod embedded;
pub mod mel;
pub mod remote;
pub mod vad;
pub mod wer;
pub mod whisper;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::checkpoint::{Checkpoints, Origin};
use crate::error::ActivityFailure;
use crate::heartbeat;
use crate::storage::{Storage, keys};
use crate::transcript::Word;
use crate::usage::{Usage, ledger};
pub use config::{AsrConfig, embedded_model_dir};
use embedded::{EmbeddedAsr, TranscribeFileError};
use remote::{Api, RemoteAsr};

/// Margin between the HTTP timeout and `transcribe_track`'s start-to-close (§4.3.2).
pub const HTTP_MARGIN: Duration = Duration::from_secs(60);
/// Word lists `merge_transcripts` reads at once.
const PARALLEL_READS: usize = 8;

fn default_language() -> Option<String> {
    Some("en".into())
}

/// Input of `transcribe_track`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TranscribeInput {
    /// The transcript.
    pub transcript_id: String,
    /// The track's position `i`.
    pub track_index: usize,
    /// The speaker its words get (`get_participants`: the participant's first track);
    /// `track_index` when absent.
    #[serde(default)]
    pub speaker: Option<i64>,
    /// `{transcript_id}/pipeline/padded_{i}.webm`.
    pub padded_key: String,
    /// The padded track's length (`pad_track`'s `duration_ms`): the total of the step's
    /// progress. Not part of the checkpoint hash (it follows from the padded track).
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// The transcript's source language; `en` when absent, auto-detected when null.
    #[serde(default = "default_language")]
    pub language: Option<String>,
}

/// Output of `transcribe_track`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct TranscribeOutput {
    /// `{transcript_id}/pipeline/words_{i}.json`.
    pub words_key: String,
    /// Words recognised (0 for a silent track).
    pub word_count: usize,
    /// What the transcription cost.
    pub usage: Usage,
}

/// Input of `merge_transcripts`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeInput {
    /// The transcript.
    pub transcript_id: String,
    /// The per-track word files, in track order.
    pub words_keys: Vec<String>,
}

/// Output of `merge_transcripts`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct MergeOutput {
    /// `{transcript_id}/pipeline/words.json`.
    pub words_key: String,
    /// Words in the meeting.
    pub word_count: usize,
    /// End of the last word, seconds (0 without words).
    pub last_end_s: f64,
}

/// The words of a transcription up to `done_s` (audio seconds covered).
#[derive(Debug, Default)]
struct Partial {
    done_s: f64,
    words: Vec<whisper::RawWord>,
}

/// The embedded transcription's heartbeat: the words so far are saved (when they grew) before
/// the details naming them are recorded, so details never point past what is stored.
struct PartialSaver {
    storage: Storage,
    key: String,
    shared: Arc<std::sync::Mutex<Partial>>,
    saved_s: f64,
    total_s: f64,
}

impl heartbeat::Beat for PartialSaver {
    async fn details(&mut self) -> Option<heartbeat::Progress> {
        let snapshot = {
            let p = self.shared.lock().expect("partial words lock");
            (p.done_s > self.saved_s).then(|| {
                (
                    p.done_s,
                    serde_json::to_vec(&p.words).expect("words serialize"),
                )
            })
        };
        if let Some((done_s, body)) = snapshot {
            match self.storage.put(&self.key, Bytes::from(body)).await {
                Ok(()) => self.saved_s = done_s,
                Err(e) => tracing::warn!(error = %e, "partial words not saved"),
            }
        }
        Some(heartbeat::Progress {
            phase: "transcribing".to_owned(),
            done_s: self.saved_s,
            total_s: self.total_s,
            words_key: (self.saved_s > 0.0).then(|| self.key.clone()),
        })
    }
}

enum Backend {
    Embedded(EmbeddedAsr),
    Remote(RemoteAsr),
}

/// The configured backend, shared by every worker of the process (the embedded model is
/// loaded once).
pub struct Transcriber {
    config: AsrConfig,
    backend: Backend,
}

impl std::fmt::Debug for Transcriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcriber")
            .field("backend", &self.config.identity())
            .finish()
    }
}

impl Transcriber {
    /// The backend `config` describes (nothing is loaded yet).
    pub fn new(config: AsrConfig) -> Self {
        let backend = match &config {
            AsrConfig::Embedded(c) => Backend::Embedded(EmbeddedAsr::new(c.clone())),
            AsrConfig::Remote(r) => Backend::Remote(r.clone()),
        };
        Transcriber { config, backend }
    }

    /// Its configuration.
    pub fn config(&self) -> &AsrConfig {
        &self.config
    }
}

/// The transcription activities.
pub struct AsrActivities {
    storage: Storage,
    checkpoints: Checkpoints,
    scratch: PathBuf,
    transcriber: Arc<Transcriber>,
}

impl AsrActivities {
    /// Activities reading and writing `storage`, with scratch files under `scratch`.
    pub fn new(storage: Storage, scratch: PathBuf, transcriber: Arc<Transcriber>) -> Self {
        AsrActivities {
            checkpoints: Checkpoints::new(storage.clone()),
            storage,
            scratch,
            transcriber,
        }
    }

    async fn transcribe(
        &self,
        ctx: &ActivityContext,
        input: &TranscribeInput,
    ) -> Result<TranscribeOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let objects = |o: &TranscribeOutput| vec![o.words_key.clone()];
        let identity = self.transcriber.config.identity();
        // Hashed without the length, so runs that did not pass it find the same checkpoints.
        let hashed = TranscribeInput {
            duration_ms: None,
            ..input.clone()
        };
        let partial_key = self
            .checkpoints
            .current_slot(tid, "transcribe_track", &hashed, &identity)
            .await?
            .partial_key();
        let work = || async {
            let started = Instant::now();
            let language = input.language.as_deref();
            let (raw, mut usage) = match &self.transcriber.backend {
                Backend::Remote(remote) => {
                    let s2c = crate::http::start_to_close(ctx);
                    let timeout = crate::http::ceiling(s2c, HTTP_MARGIN, remote.timeout);
                    let words = remote
                        .transcribe(
                            ctx,
                            &self.storage,
                            &input.padded_key,
                            input.track_index,
                            language,
                            timeout,
                        )
                        .await?;
                    let backend = match remote.api {
                        Api::GpuUrl => "gpu-url",
                        Api::OpenAi => "openai",
                    };
                    let usage = Usage {
                        backend: format!(
                            "{backend}:{}",
                            remote.model.as_deref().unwrap_or("default")
                        ),
                        calls: 1,
                        ..Usage::default()
                    };
                    (words, usage)
                }
                Backend::Embedded(asr) => {
                    self.embedded(ctx, asr, input, language, &partial_key)
                        .await?
                }
            };
            usage.backend_ms = started.elapsed().as_millis() as u64;
            if usage.audio_s == 0.0 {
                usage.audio_s = raw.iter().map(|w| w.end).fold(0.0, f64::max);
            }
            let mut words: Vec<Word> = raw
                .into_iter()
                .filter(|w| !w.word.trim().is_empty())
                .map(|w| Word {
                    text: format!(" {}", w.word.trim()),
                    start: w.start,
                    end: w.end.max(w.start),
                    speaker: input.speaker.unwrap_or(input.track_index as i64),
                })
                .collect();
            words.sort_by(|a, b| a.start.total_cmp(&b.start));
            let key = keys::track_words(tid, input.track_index);
            let body = serde_json::to_vec(&words).expect("words serialize");
            self.storage.put(&key, Bytes::from(body)).await?;
            if matches!(self.transcriber.backend, Backend::Embedded(_))
                && let Err(e) = self.storage.delete(&partial_key).await
            {
                tracing::debug!(error = %e, "partial words not removed");
            }
            ledger().asr("transcribe_track", &usage);
            tracing::info!(
                track = input.track_index,
                words = words.len(),
                audio_s = usage.audio_s,
                backend_ms = usage.backend_ms,
                backend = %usage.backend,
                "transcribed"
            );
            Ok(TranscribeOutput {
                words_key: key,
                word_count: words.len(),
                usage,
            })
        };
        let (mut out, origin) = self
            .checkpoints
            .checkpointed(tid, "transcribe_track", &hashed, &identity, objects, work)
            .await?;
        if origin == Origin::Stored {
            ledger().checkpoint_hit();
            out.usage.from_checkpoint = true;
        }
        Ok(out)
    }

    /// Transcribe with the in-process model, heartbeating `{done_s, total_s, words_key}`
    /// after every window: the words so far are saved under `partial_key` (named by the
    /// attempt's input hash, so another input or a reprocess never takes them) and a retry
    /// whose heartbeat details name that key continues from `done_s`.
    async fn embedded(
        &self,
        ctx: &ActivityContext,
        asr: &EmbeddedAsr,
        input: &TranscribeInput,
        language: Option<&str>,
        partial_key: &str,
    ) -> Result<(Vec<whisper::RawWord>, Usage), ActivityFailure> {
        let model = asr.model().await.map_err(|e| match e {
            whisper::WhisperError::Model { .. } => ActivityFailure::Config(e.to_string()),
            other => ActivityFailure::Transient(other.to_string()),
        })?;
        tokio::fs::create_dir_all(&self.scratch)
            .await
            .map_err(|e| ActivityFailure::io(self.scratch.display().to_string(), e))?;
        let dir = tempfile::Builder::new()
            .prefix("asr-")
            .tempdir_in(&self.scratch)
            .map_err(|e| ActivityFailure::io(self.scratch.display().to_string(), e))?;
        let path = dir.path().join("track.webm");
        self.storage.download(&input.padded_key, &path).await?;
        let total_s = input
            .duration_ms
            .or_else(|| crate::audio::decode::announced_ms(&path))
            .unwrap_or(0) as f64
            / 1000.0;
        let partial = self.resume_point(ctx, partial_key).await;
        let start_s = partial.done_s;
        if start_s > 0.0 {
            tracing::info!(
                track = input.track_index,
                resumed_from_s = start_s,
                words = partial.words.len(),
                "resuming the transcription where the last attempt's heartbeat left it"
            );
        }
        let shared = Arc::new(std::sync::Mutex::new(partial));
        let (track, transcript) = (input.track_index, input.transcript_id.clone());
        let mut from_s = start_s;
        let (seen, name, language) = (
            shared.clone(),
            input.padded_key.clone(),
            language.map(str::to_owned),
        );
        let saver = PartialSaver {
            storage: self.storage.clone(),
            key: partial_key.to_owned(),
            shared: shared.clone(),
            saved_s: start_s,
            total_s,
        };
        let (_, stats) = heartbeat::run(
            ctx,
            move |work| {
                embedded::transcribe_file(
                    &model,
                    &path,
                    &name,
                    language.as_deref(),
                    start_s,
                    work.flag(),
                    |done_s, found| {
                        // One line per window: what `just chaos` counts as audio transcribed
                        // (twice when a window is done again).
                        tracing::debug!(
                            transcript = %transcript,
                            track,
                            from_s,
                            done_s,
                            words = found.len(),
                            "window transcribed"
                        );
                        from_s = done_s;
                        let mut p = seen.lock().expect("partial words lock");
                        p.done_s = done_s;
                        p.words.extend_from_slice(found);
                        drop(p);
                        work.progressed();
                    },
                )
            },
            saver,
        )
        .await?
        .map_err(|e| match e {
            TranscribeFileError::Audio(a) => ActivityFailure::from(a),
            TranscribeFileError::Whisper(whisper::WhisperError::Stopped) => {
                ActivityFailure::Cancelled
            }
            TranscribeFileError::Whisper(w) => ActivityFailure::Transient(w.to_string()),
        })?;
        let partial = std::mem::take(&mut *shared.lock().expect("partial words lock"));
        let usage = Usage {
            backend: format!("embedded:{}", asr.model_name()),
            calls: stats.windows as u64,
            audio_s: partial.done_s - start_s,
            ..Usage::default()
        };
        Ok((partial.words, usage))
    }

    /// Where this attempt starts: the words and `done_s` the last attempt's heartbeat named,
    /// when they are this input's (its `words_key` is `partial_key`) and still readable;
    /// otherwise the start of the track.
    async fn resume_point(&self, ctx: &ActivityContext, partial_key: &str) -> Partial {
        let details = match ctx.heartbeat_details().deserialize::<heartbeat::Progress>() {
            Ok(Some(d)) if d.words_key.as_deref() == Some(partial_key) && d.done_s > 0.0 => d,
            _ => return Partial::default(),
        };
        let words = match self.storage.get(partial_key).await {
            Ok(bytes) => serde_json::from_slice::<Vec<whisper::RawWord>>(&bytes).ok(),
            Err(_) => None,
        };
        match words {
            // Saved after `done_s` was reached and before it was heartbeated: the file may
            // hold later windows too (a save whose heartbeat never left); keep what `done_s`
            // covers.
            Some(mut words) => {
                words.retain(|w| w.start < details.done_s);
                Partial {
                    done_s: details.done_s,
                    words,
                }
            }
            None => Partial::default(),
        }
    }

    async fn merge(&self, input: &MergeInput) -> Result<MergeOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        // The inputs' contents are part of the key: a track transcribed again (another model)
        // under the same key must not be merged from a stale checkpoint.
        // Fetched side by side, kept in track order.
        let files: Vec<(String, Bytes)> = futures::stream::iter(input.words_keys.clone())
            .map(|key| async move {
                let bytes = self.storage.get(&key).await?;
                Ok::<_, ActivityFailure>((key, bytes))
            })
            .buffered(PARALLEL_READS)
            .try_collect()
            .await?;
        let mut digest = <sha2::Sha256 as sha2::Digest>::new();
        for (_, bytes) in &files {
            sha2::Digest::update(&mut digest, bytes);
        }
        let digest = hex::encode(sha2::Digest::finalize(digest));
        let objects = |o: &MergeOutput| vec![o.words_key.clone()];
        let work = || async {
            let mut all: Vec<Word> = Vec::new();
            for (key, bytes) in &files {
                let words: Vec<Word> = serde_json::from_slice(bytes).map_err(|e| {
                    ActivityFailure::InvalidInput(format!(
                        "merge_transcripts: {key} is not a word list: {e}"
                    ))
                })?;
                all.extend(words);
            }
            let words = merge_words(all).map_err(ActivityFailure::InvalidInput)?;
            let key = keys::merged_words(tid);
            let body = serde_json::to_vec(&words).expect("words serialize");
            self.storage.put(&key, Bytes::from(body)).await?;
            Ok(MergeOutput {
                words_key: key,
                word_count: words.len(),
                last_end_s: words.iter().map(|w| w.end).fold(0.0, f64::max),
            })
        };
        let (out, _) = self
            .checkpoints
            .checkpointed(
                tid,
                "merge_transcripts",
                &(input, &digest),
                &serde_json::json!({"sort": "stable-start-v1"}),
                objects,
                work,
            )
            .await?;
        Ok(out)
    }
}

/// Words of all tracks (concatenated in track order) sorted by start, stably: ties keep track
/// order, then within-track order. Fails if the result's starts ever decrease (a NaN start).
pub fn merge_words(mut words: Vec<Word>) -> Result<Vec<Word>, String> {
    words.sort_by(|a, b| a.start.total_cmp(&b.start));
    let ordered = |a: f64, b: f64| {
        a.partial_cmp(&b)
            .is_some_and(|o| o != std::cmp::Ordering::Greater)
    };
    if let Some(w) = words.windows(2).find(|w| !ordered(w[0].start, w[1].start)) {
        return Err(format!(
            "merge_transcripts: word starts decrease after sorting ({} then {}); a start is not a number",
            w[0].start, w[1].start
        ));
    }
    Ok(words)
}

/// The transcription steps, declared (`crate::step`); they publish nothing.
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    use crate::step::{Cost, Declare as _, Step};
    catalog
        .declare(
            AsrActivities::transcribe_track,
            Step::costing(Cost::Transcription),
        )
        .declare(
            AsrActivities::merge_transcripts,
            Step::costing(Cost::Computed),
        )
}

#[activities]
impl AsrActivities {
    /// Transcribe one padded track into `{transcript_id}/pipeline/words_{i}.json`.
    #[activity(name = "transcribe_track")]
    pub async fn transcribe_track(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: TranscribeInput,
    ) -> Result<TranscribeOutput, ActivityError> {
        self.transcribe(&ctx, &input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// Merge the tracks' words into `{transcript_id}/pipeline/words.json`.
    #[activity(name = "merge_transcripts")]
    pub async fn merge_transcripts(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: MergeInput,
    ) -> Result<MergeOutput, ActivityError> {
        self.merge(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str, start: f64, speaker: i64) -> Word {
        Word {
            text: format!(" {text}"),
            start,
            end: start + 0.2,
            speaker,
        }
    }

    #[test]
    fn merge_is_stable_on_ties() {
        let merged = merge_words(vec![
            w("a0", 1.0, 0),
            w("a1", 2.0, 0),
            w("a2", 2.0, 0),
            w("b0", 0.5, 1),
            w("b1", 2.0, 1),
        ])
        .unwrap();
        let order: Vec<&str> = merged.iter().map(|w| w.text.trim()).collect();
        assert_eq!(order, ["b0", "a0", "a1", "a2", "b1"]);
    }

    #[test]
    fn a_nan_start_is_refused() {
        let err =
            merge_words(vec![w("a", 1.0, 0), w("b", f64::NAN, 1), w("c", 0.5, 0)]).unwrap_err();
        assert!(err.contains("merge_transcripts"), "{err}");
    }
}
