//! The `embedded` transcription backend: a padded track decoded and resampled to 16 kHz on
//! the fly ([`TrackPcm`]) and fed to the in-process Whisper model ([`super::whisper`]).
//!
//! Memory stays at about one 30 s window whatever the track's length. The model is loaded
//! once per worker process, on first use, and shared by every activity slot.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rubato::{FftFixedIn, Resampler};
use tokio::sync::OnceCell;

use super::mel::SAMPLE_RATE;
use super::whisper::{DecodeStats, Pcm16k, RawWord, WhisperError, WhisperModel};
use crate::audio::mono::{MonoStream, RATE};

/// Which model and how many threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// The CTranslate2 model directory.
    pub model_dir: PathBuf,
    /// CTranslate2 intra-op threads (0 = its default, one per core).
    pub threads: usize,
    /// How speech is found before the model runs.
    pub detector: super::vad::Detector,
}

/// The backend: configuration plus the lazily loaded model.
pub struct EmbeddedAsr {
    config: EmbeddedConfig,
    model: OnceCell<Arc<WhisperModel>>,
}

impl EmbeddedAsr {
    /// A backend that loads `config.model_dir` on first use.
    pub fn new(config: EmbeddedConfig) -> Self {
        EmbeddedAsr {
            config,
            model: OnceCell::new(),
        }
    }

    /// The model's name (its directory name).
    pub fn model_name(&self) -> String {
        self.config
            .model_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The loaded model (loading it now if this is the first call).
    pub async fn model(&self) -> Result<Arc<WhisperModel>, WhisperError> {
        self.model
            .get_or_try_init(|| async {
                let (dir, threads) = (self.config.model_dir.clone(), self.config.threads);
                let detector = self.config.detector;
                tokio::task::spawn_blocking(move || {
                    WhisperModel::load(&dir, threads).map(|m| Arc::new(m.with_detector(detector)))
                })
                .await
                .map_err(|e| WhisperError::Inference(format!("model loading stopped: {e}")))?
            })
            .await
            .cloned()
    }
}

/// Transcribe the audio file at `path` (named `name` in errors) with `model` from `start_s`
/// on; blocking. `on_window(done_s, words)` reports each window; setting `stop` ends the
/// work at its next step (see [`WhisperModel::transcribe`]).
pub fn transcribe_file(
    model: &WhisperModel,
    path: &Path,
    name: &str,
    language: Option<&str>,
    start_s: f64,
    stop: &AtomicBool,
    on_window: impl FnMut(f64, &[RawWord]),
) -> Result<(Vec<RawWord>, DecodeStats), TranscribeFileError> {
    let mut pcm = TrackPcm::open(path, name)?;
    model
        .transcribe(&mut pcm, language, start_s, stop, on_window)
        .map_err(|e| match pcm.take_error() {
            Some(audio) => audio.into(),
            None => e.into(),
        })
}

/// Why a file could not be transcribed.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeFileError {
    /// The audio did not decode.
    #[error(transparent)]
    Audio(#[from] crate::audio::AudioError),
    /// The model failed.
    #[error(transparent)]
    Whisper(#[from] WhisperError),
}

/// A file as a 16 kHz mono stream: decoded to 48 kHz mono by [`MonoStream`] (any format,
/// any rate), then downsampled 3:1 by rubato. Keeps only the samples at or after the last
/// window asked for.
pub struct TrackPcm {
    stream: MonoStream,
    resampler: FftFixedIn<f32>,
    /// 16 kHz samples; `buffer[0]` is sample `base`.
    buffer: Vec<f32>,
    base: usize,
    /// Samples before this are not wanted any more (dropped as they are decoded).
    keep_from: usize,
    /// Resampler delay still to drop, and the exact output length once the input ended.
    skip: usize,
    frames_in: u64,
    frames_out: u64,
    done: bool,
    error: Option<crate::audio::AudioError>,
}

impl TrackPcm {
    /// Open `path` (named `name` in errors).
    pub fn open(path: &Path, name: &str) -> Result<Self, crate::audio::AudioError> {
        let stream = MonoStream::open(path, name, false)?;
        let resampler = FftFixedIn::<f32>::new(RATE as usize, SAMPLE_RATE, 1024, 2, 1)
            .expect("48 kHz → 16 kHz is a valid resampling ratio");
        Ok(TrackPcm {
            skip: resampler.output_delay(),
            stream,
            resampler,
            buffer: Vec::new(),
            base: 0,
            keep_from: 0,
            frames_in: 0,
            frames_out: 0,
            done: false,
            error: None,
        })
    }

    /// Decode and resample until `end` (16 kHz samples) is buffered or the audio ends.
    fn fill_to(&mut self, end: usize) -> Result<(), crate::audio::AudioError> {
        while self.base + self.buffer.len() < end && !self.done {
            let need = self.resampler.input_frames_next();
            self.stream.fill(need)?;
            let take = need.min(self.stream.queue.len());
            let input: Vec<f32> = self.stream.queue.drain(..take).collect();
            self.frames_in += take as u64;
            let out = if take == need {
                self.resampler.process(&[&input], None)
            } else if take > 0 {
                self.done = true;
                self.resampler.process_partial(Some(&[&input]), None)
            } else {
                // The track ended on a chunk boundary: nothing is left to give but the flush
                // (rubato refuses an empty partial chunk).
                self.done = true;
                self.resampler.process_partial::<&[f32]>(None, None)
            }
            .map_err(|e| self.resample_err(e))?;
            self.push(&out[0]);
            if self.done {
                // Flush the resampler's delay so the tail is not lost, then cut to length.
                while self.frames_out < self.expected_out() {
                    let out = self
                        .resampler
                        .process_partial::<&[f32]>(None, None)
                        .map_err(|e| self.resample_err(e))?;
                    if out[0].is_empty() {
                        break;
                    }
                    self.push(&out[0]);
                }
            }
        }
        Ok(())
    }

    fn resample_err(&self, e: impl std::fmt::Display) -> crate::audio::AudioError {
        crate::audio::AudioError::Corrupt {
            source_name: self.stream.name().to_owned(),
            message: format!("resampling to {SAMPLE_RATE} Hz: {e}"),
        }
    }

    fn expected_out(&self) -> u64 {
        self.frames_in * SAMPLE_RATE as u64 / u64::from(RATE)
    }

    fn push(&mut self, samples: &[f32]) {
        let drop = self.skip.min(samples.len());
        self.skip -= drop;
        let mut samples = &samples[drop..];
        if self.done {
            let room = self.expected_out().saturating_sub(self.frames_out) as usize;
            samples = &samples[..samples.len().min(room)];
        }
        self.frames_out += samples.len() as u64;
        self.buffer.extend_from_slice(samples);
        // A resumed transcription starts far into the track: what lies before it is decoded
        // (the resampler's state needs it) but not kept.
        if self.keep_from > self.base {
            let drop = (self.keep_from - self.base).min(self.buffer.len());
            self.buffer.drain(..drop);
            self.base += drop;
        }
    }
}

impl Pcm16k for TrackPcm {
    fn window(&mut self, start: usize, len: usize) -> Result<&[f32], WhisperError> {
        self.keep_from = start;
        if start > self.base {
            let drop = (start - self.base).min(self.buffer.len());
            self.buffer.drain(..drop);
            self.base += drop;
        }
        if let Err(e) = self.fill_to(start + len) {
            // Kept for the caller: decoding errors are the input's fault, not the model's.
            let message = e.to_string();
            self.error = Some(e);
            return Err(WhisperError::Inference(message));
        }
        let from = start.saturating_sub(self.base).min(self.buffer.len());
        let to = (start + len)
            .saturating_sub(self.base)
            .min(self.buffer.len());
        Ok(&self.buffer[from..to])
    }
}

impl TrackPcm {
    /// The decoding error behind a failed [`Pcm16k::window`], if that is what failed.
    pub fn take_error(&mut self) -> Option<crate::audio::AudioError> {
        self.error.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mono 16-bit PCM WAV file of `frames` frames at `rate` Hz (a square wave).
    fn wav(path: &Path, rate: u32, frames: u32) {
        let data = frames * 2;
        let mut w = Vec::new();
        w.extend_from_slice(b"RIFF");
        w.extend_from_slice(&(36 + data).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes());
        w.extend_from_slice(&rate.to_le_bytes());
        w.extend_from_slice(&(rate * 2).to_le_bytes());
        w.extend_from_slice(&2u16.to_le_bytes());
        w.extend_from_slice(&16u16.to_le_bytes());
        w.extend_from_slice(b"data");
        w.extend_from_slice(&data.to_le_bytes());
        for i in 0..frames {
            let s: i16 = if i % 20 < 10 { 6_000 } else { -6_000 };
            w.extend_from_slice(&s.to_le_bytes());
        }
        std::fs::write(path, w).unwrap();
    }

    /// A track whose length is a whole number of the resampler's chunks ends on an empty
    /// chunk (found by the evaluation set's recorded speech: a 16 kHz clip of 1024·k samples
    /// panicked with "Insufficient buffer size 0"); every length gives exactly its samples.
    #[test]
    fn a_track_ending_on_a_chunk_boundary_is_read_to_its_end() {
        let dir = tempfile::tempdir().unwrap();
        for frames in [16 * 1024, 16 * 1024 + 1, 16 * 1024 - 1, 3 * 16_000] {
            let path = dir.path().join(format!("{frames}.wav"));
            wav(&path, SAMPLE_RATE as u32, frames);
            let mut pcm = TrackPcm::open(&path, "t.wav").unwrap();
            let got = pcm.window(0, 10 * SAMPLE_RATE).unwrap().len() as i64;
            assert!(
                (got - i64::from(frames)).abs() <= 1,
                "{frames} samples read as {got}"
            );
        }
    }
}
