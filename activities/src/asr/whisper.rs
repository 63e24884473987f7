//! Embedded Whisper on CPU: CTranslate2's low-level `sys::Whisper` (`encode`, `generate`,
//! `align`) with reflow's own front end.
//!
//! Audio arrives as 16 kHz mono samples and is transcribed one 30 s window at a time (a seek
//! loop, as OpenAI's `transcribe` does): each window is turned into log-mel features
//! ([`super::mel`]), encoded once, decoded with timestamp tokens (beam 5), and the decoder
//! resumes at the last complete segment's end timestamp, so a sentence cut by the window edge
//! is decoded whole in the next window. Word times come from `align` (cross-attention DTW over
//! 20 ms encoder frames), grouped into words at leading spaces. Stretches without speech — the
//! padded start before the speaker joined, the minutes they listen — are skipped without
//! running the model ([`super::vad`]: a window starts where speech starts), and windows the
//! model itself calls no-speech are dropped, which is where Whisper would otherwise
//! hallucinate.
//!
//! The prompt depends on the model: `<|startoftranscript|>` alone for English-only (`.en`)
//! models, `<|startoftranscript|><|{lang}|><|transcribe|>` for multilingual ones (language
//! detected by the model when none is given).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ct2rs::sys::{ComputeType, Config, StorageView, Whisper as Ct2Whisper, WhisperOptions};
use tokenizers::Tokenizer;

use super::mel::{FRAMES, HOP, LogMel, SAMPLE_RATE, WINDOW_SAMPLES};
use super::vad::Detector;

/// Seconds per timestamp token and per encoder frame.
const TIME_PRECISION: f64 = 0.02;
/// Mel frames per encoder frame.
const INPUT_STRIDE: usize = 2;
/// Leading silence longer than this is skipped before decoding a window (mel frames).
const SKIP_SILENCE_FRAMES: usize = 50;
/// Frames kept in front of speech after a skip, so the first word's onset is not cut.
const SPEECH_MARGIN_FRAMES: usize = 20;
/// Whisper's no-speech rule: drop a window when the no-speech probability is above this and
/// the mean token log-probability below [`LOGPROB_THRESHOLD`].
const NO_SPEECH_THRESHOLD: f32 = 0.6;
const LOGPROB_THRESHOLD: f32 = -1.0;

/// Why the embedded model could not run.
#[derive(Debug, thiserror::Error)]
pub enum WhisperError {
    /// The model directory is missing or incomplete.
    #[error("Whisper model at {path}: {cause}")]
    Model {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        cause: String,
    },
    /// CTranslate2 failed while running the model.
    #[error("Whisper inference failed: {0}")]
    Inference(String),
    /// The step was cancelled between windows.
    #[error("stopped: the step was cancelled")]
    Stopped,
}

/// A recognised word, times in seconds from the start of the audio given.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RawWord {
    /// The word as the model wrote it (trimmed).
    pub word: String,
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
}

/// A loaded model (thread-safe; CTranslate2 queues concurrent calls).
pub struct WhisperModel {
    model: Ct2Whisper,
    tokenizer: Tokenizer,
    mel: LogMel,
    english_only: bool,
    detector: Detector,
    sot: u32,
    eot: u32,
    timestamp_begin: u32,
    name: String,
}

/// What one transcription did, for accounting and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DecodeStats {
    /// Windows decoded by the model.
    pub windows: usize,
    /// Windows skipped as silence (never reached the model) or dropped as no-speech.
    pub skipped: usize,
    /// Seconds of audio the model decoded (what a resumed transcription does not pay again).
    pub decoded_s: f64,
}

impl WhisperModel {
    /// Load the CTranslate2 model in `dir` (`model.bin`, `config.json`, `tokenizer.json`) with
    /// `threads` intra-op threads (0 = CTranslate2's default).
    pub fn load(dir: &Path, threads: usize) -> Result<Self, WhisperError> {
        let model_err = |cause: String| WhisperError::Model {
            path: dir.to_owned(),
            cause,
        };
        for file in ["model.bin", "config.json", "tokenizer.json"] {
            if !dir.join(file).is_file() {
                return Err(model_err(format!(
                    "{file} is missing (run `just setup` to install the embedded models)"
                )));
            }
        }
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| model_err(e.to_string()))?;
        // int8 weights: the fastest on CPU, and what the accuracy figures were measured with.
        let config = Config {
            compute_type: ComputeType::INT8,
            num_threads_per_replica: threads,
            ..Config::default()
        };
        let model = Ct2Whisper::new(dir, config).map_err(|e| model_err(e.to_string()))?;
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| model_err(format!("the tokenizer has no {token}")))
        };
        let english_only = !model.is_multilingual();
        Ok(WhisperModel {
            mel: LogMel::new(model.n_mels()),
            sot: id("<|startoftranscript|>")?,
            eot: id("<|endoftext|>")?,
            // Timestamp tokens follow `<|notimestamps|>`; some tokenizer.json files omit them.
            timestamp_begin: match tokenizer.token_to_id("<|0.00|>") {
                Some(t) => t,
                None => id("<|notimestamps|>")? + 1,
            },
            english_only,
            detector: Detector::default(),
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            model,
            tokenizer,
        })
    }

    /// The model's directory name (`whisper-base`, `whisper-tiny.en`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This model finding speech with `detector` (the energy detector by default).
    pub fn with_detector(mut self, detector: Detector) -> Self {
        self.detector = detector;
        self
    }

    /// Transcribe the 16 kHz mono audio `source` yields, from `start_s` (a `done_s` an
    /// earlier call reported: windows depend only on the audio from their start, so the words
    /// from there on are those an uninterrupted run finds). `language` is an ISO code such as
    /// `en`; `None` lets a multilingual model detect it per window. `on_window(done_s, words)`
    /// is called after every window with the audio seconds covered so far and the window's
    /// words. Once `stop` is set the transcription ends at its next step (before a window,
    /// after its encoding, after its decoding) with [`WhisperError::Stopped`].
    pub fn transcribe(
        &self,
        source: &mut dyn Pcm16k,
        language: Option<&str>,
        start_s: f64,
        stop: &AtomicBool,
        mut on_window: impl FnMut(f64, &[RawWord]),
    ) -> Result<(Vec<RawWord>, DecodeStats), WhisperError> {
        let check = || {
            if stop.load(Ordering::Relaxed) {
                Err(WhisperError::Stopped)
            } else {
                Ok(())
            }
        };
        let mut stats = DecodeStats::default();
        let mut words = Vec::new();
        // Mel frames (10 ms); `done_s` values are whole frames, so this is exact.
        let mut seek = (start_s.max(0.0) * (SAMPLE_RATE / HOP) as f64).round() as usize;
        loop {
            check()?;
            let before = words.len();
            let window = source.window(seek * HOP, WINDOW_SAMPLES)?;
            let content = window.len() / HOP;
            if content == 0 {
                break;
            }
            let offset = seek as f64 * HOP as f64 / SAMPLE_RATE as f64;
            let advance = match self.detector.onset(window) {
                None => {
                    stats.skipped += 1;
                    content
                }
                Some(speech) if speech > SKIP_SILENCE_FRAMES => speech - SPEECH_MARGIN_FRAMES,
                Some(speech) => {
                    let (found, advance, spoke) = self.window(window, content, language, &check)?;
                    stats.decoded_s += advance as f64 * HOP as f64 / SAMPLE_RATE as f64;
                    if spoke {
                        stats.windows += 1;
                    } else {
                        stats.skipped += 1;
                    }
                    // DTW tends to pull the first word towards the window's start; nothing is
                    // said before speech starts.
                    let onset = speech as f64 * HOP as f64 / SAMPLE_RATE as f64;
                    words.extend(found.into_iter().map(|w| {
                        let start = w.start.max(onset);
                        RawWord {
                            start: start + offset,
                            end: w.end.max(start) + offset,
                            word: w.word,
                        }
                    }));
                    advance
                }
            };
            seek += advance.max(1);
            let done_s = seek as f64 * HOP as f64 / SAMPLE_RATE as f64;
            on_window(done_s, &words[before..]);
        }
        Ok((words, stats))
    }

    /// Decode one window; `content` = mel frames of real audio in it. Returns the words
    /// (window-relative), how many frames to advance, and whether the model heard speech.
    fn window(
        &self,
        window: &[f32],
        content: usize,
        language: Option<&str>,
        check: &dyn Fn() -> Result<(), WhisperError>,
    ) -> Result<(Vec<RawWord>, usize, bool), WhisperError> {
        let mut features = self.mel.window(window);
        let view = StorageView::new(
            &[1, self.mel.n_mels(), FRAMES],
            &mut features,
            Default::default(),
        )
        .map_err(infer)?;
        let encoded = self.model.encode(&view, false).map_err(infer)?;
        check()?;

        let prompt = self.prompt(&encoded, language)?;
        let options = WhisperOptions {
            return_scores: true,
            return_no_speech_prob: true,
            ..WhisperOptions::default()
        };
        let result = self
            .model
            .generate(&encoded, std::slice::from_ref(&prompt), &options)
            .map_err(infer)?
            .into_iter()
            .next()
            .ok_or_else(|| WhisperError::Inference("no result for the window".into()))?;
        check()?;
        let tokens: Vec<u32> = result
            .sequences_ids
            .first()
            .map(|s| {
                s.iter()
                    .map(|&t| t as u32)
                    .filter(|&t| t != self.eot)
                    .collect()
            })
            .unwrap_or_default();
        let score = result.scores.first().copied().unwrap_or(0.0);
        if result.no_speech_prob > NO_SPEECH_THRESHOLD && score < LOGPROB_THRESHOLD {
            return Ok((Vec::new(), content, false));
        }

        // Where to resume: after the last complete segment (two consecutive timestamps), unless
        // the window ends on a single timestamp (everything up to its end was transcribed).
        let is_ts = |t: u32| t >= self.timestamp_begin;
        let single_ending = tokens.len() >= 2
            && is_ts(tokens[tokens.len() - 1])
            && !is_ts(tokens[tokens.len() - 2]);
        let last_pair = (1..tokens.len())
            .rev()
            .find(|&i| is_ts(tokens[i]) && is_ts(tokens[i - 1]));
        let (kept, advance) = match last_pair {
            Some(i) if !single_ending => {
                let frames = (tokens[i - 1] - self.timestamp_begin) as usize * INPUT_STRIDE;
                (&tokens[..i], frames.min(content))
            }
            _ => (&tokens[..], content),
        };
        let text: Vec<u32> = kept.iter().copied().filter(|&t| !is_ts(t)).collect();
        if text.is_empty() {
            return Ok((Vec::new(), advance, true));
        }
        let words = self.align(&encoded, &prompt, &text, content, advance)?;
        Ok((words, advance, true))
    }

    /// Token ids of the decoder prompt for this model and language.
    fn prompt(
        &self,
        encoded: &StorageView,
        language: Option<&str>,
    ) -> Result<Vec<String>, WhisperError> {
        let mut prompt = vec!["<|startoftranscript|>".to_owned()];
        if self.english_only {
            return Ok(prompt);
        }
        let language = match language {
            Some(l) => format!("<|{l}|>"),
            None => self
                .model
                .detect_language(encoded)
                .map_err(infer)?
                .first()
                .and_then(|r| r.first())
                .map(|d| d.language.clone())
                .unwrap_or_else(|| "<|en|>".to_owned()),
        };
        if self.tokenizer.token_to_id(&language).is_none() {
            return Err(WhisperError::Inference(format!(
                "language {language} is not supported by {}",
                self.name
            )));
        }
        prompt.push(language);
        prompt.push("<|transcribe|>".to_owned());
        Ok(prompt)
    }

    /// Word times for `text` tokens by DTW over the decoder's alignment heads; words end at
    /// the window's `limit` frames at most.
    fn align(
        &self,
        encoded: &StorageView,
        prompt: &[String],
        text: &[u32],
        content: usize,
        limit: usize,
    ) -> Result<Vec<RawWord>, WhisperError> {
        let start: Vec<usize> = prompt
            .iter()
            .map(|t| self.tokenizer.token_to_id(t).unwrap_or(self.sot) as usize)
            .collect();
        let tokens: Vec<usize> = text.iter().map(|&t| t as usize).collect();
        let aligned = self
            .model
            .align(encoded, &start, &[tokens], &[content], 7)
            .map_err(infer)?;
        let Some(alignment) = aligned.into_iter().next() else {
            return Ok(Vec::new());
        };
        // The time of each text token: the encoder frame where the DTW path first reaches it.
        let mut token_time = vec![None::<f64>; text.len() + 1];
        for pair in &alignment.alignments {
            let i = pair.token_x as usize;
            if i < token_time.len() && token_time[i].is_none() {
                token_time[i] = Some(pair.frame_x as f64 * TIME_PRECISION);
            }
        }
        let limit_s = limit as f64 * HOP as f64 / SAMPLE_RATE as f64;
        let mut last = 0.0f64;
        let times: Vec<f64> = token_time
            .into_iter()
            .map(|t| {
                last = t.unwrap_or(last).max(last);
                last.min(limit_s)
            })
            .collect();

        let mut words = Vec::new();
        for (first, end) in self.word_spans(text) {
            let word = self
                .tokenizer
                .decode(&text[first..end], false)
                .map_err(infer)?;
            let word = word.trim().to_owned();
            if word.is_empty() {
                continue;
            }
            words.push(RawWord {
                word,
                start: times[first],
                end: times[end].max(times[first]),
            });
        }
        clamp_stretched_words(&mut words);
        Ok(words)
    }

    /// Token ranges of words: a word starts at a token with a leading space; punctuation-only
    /// tokens stay with the word before them.
    fn word_spans(&self, text: &[u32]) -> Vec<(usize, usize)> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for (i, &t) in text.iter().enumerate() {
            let piece = self.tokenizer.decode(&[t], false).unwrap_or_default();
            let punctuation =
                !piece.trim().is_empty() && piece.trim().chars().all(|c| c.is_ascii_punctuation());
            let starts_word = piece.starts_with(' ') && !punctuation;
            match spans.last_mut() {
                Some(span) if !starts_word => span.1 = i + 1,
                _ => spans.push((i, i + 1)),
            }
        }
        spans
    }
}

/// 16 kHz mono audio read window by window, front to back.
pub trait Pcm16k {
    /// Samples `[start, start + len)`, fewer at the end of the audio (none past it). `start`
    /// never decreases between calls, so a streaming source may drop what lies before it.
    fn window(&mut self, start: usize, len: usize) -> Result<&[f32], WhisperError>;
}

impl Pcm16k for &[f32] {
    fn window(&mut self, start: usize, len: usize) -> Result<&[f32], WhisperError> {
        let start = start.min(self.len());
        Ok(&self[start..(start + len).min(self.len())])
    }
}

/// Words the alignment stretched over silence, shortened (OpenAI Whisper's rule for word
/// timestamps): with `max` twice the median word length (the median at most 0.7 s), a word
/// longer than `max` that ends a sentence ends `max` after its start, and a word longer than
/// `max` after a sentence end starts `max` before its end. Without it, a pause after a
/// sentence counted as speech: the next sentence seemed to follow at once, and a speaker's
/// sentences said a minute apart were read as one utterance.
fn clamp_stretched_words(words: &mut [RawWord]) {
    let mut lengths: Vec<f64> = words
        .iter()
        .map(|w| w.end - w.start)
        .filter(|d| *d > 0.0)
        .collect();
    if lengths.is_empty() {
        return;
    }
    lengths.sort_by(f64::total_cmp);
    let median = lengths[lengths.len() / 2].min(0.7);
    let max = median * 2.0;
    let ends_sentence = |w: &str| w.ends_with(['.', '!', '?', '…']);
    for i in 0..words.len() {
        if words[i].end - words[i].start <= max {
            continue;
        }
        if ends_sentence(&words[i].word) {
            words[i].end = words[i].start + max;
        } else if i > 0 && ends_sentence(&words[i - 1].word) {
            words[i].start = words[i].end - max;
        }
    }
}

/// ct2rs reports errors as `anyhow::Error`; their text is kept.
fn infer(e: impl std::fmt::Display) -> WhisperError {
    WhisperError::Inference(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_stretched_over_a_pause_are_shortened_at_sentence_ends() {
        let w = |word: &str, start: f64, end: f64| RawWord {
            word: word.into(),
            start,
            end,
        };
        // As the alignment gave them for a speaker who paused 15 s after "complete.".
        let mut words = vec![
            w("quality", 16.71, 17.11),
            w("assurance", 17.11, 17.63),
            w("is", 17.63, 17.93),
            w("complete.", 17.93, 22.15),
            w("No", 22.15, 32.93),
            w("objection", 32.93, 33.45),
            w("from", 33.45, 33.83),
            w("me.", 33.83, 34.53),
        ];
        clamp_stretched_words(&mut words);
        // The median word lasts 0.52 s: at most 1.04 s a word.
        let max = 2.0 * 0.52;
        assert!(
            (words[3].end - (17.93 + max)).abs() < 1e-9,
            "{:?}",
            words[3]
        );
        assert!(
            (words[4].start - (32.93 - max)).abs() < 1e-9,
            "{:?}",
            words[4]
        );
        assert_eq!(
            (words[5].start, words[5].end),
            (32.93, 33.45),
            "others untouched"
        );
    }
}
