//! `asr-bench`: the embedded Whisper backend on one audio file, per model — wall time, the
//! realtime factor (processing time ÷ audio duration) and the word error rate against the
//! known text. Prints one JSON line per model; `bench/asr.sh` makes the speech and the report.
//!
//! Usage: `asr-bench AUDIO REFERENCE_TEXT_FILE MODEL...` (models: `tiny.en`, `base`, or a
//! directory).

use std::time::Instant;

use activities::asr::embedded::transcribe_file;
use activities::asr::whisper::WhisperModel;
use activities::asr::{embedded_model_dir, word_error_rate};
use anyhow::{Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [audio, reference, models @ ..] = args.as_slice() else {
        anyhow::bail!("usage: asr-bench AUDIO REFERENCE_TEXT_FILE MODEL...");
    };
    let reference = std::fs::read_to_string(reference).context("reading the reference text")?;
    let threads = std::env::var("WHISPER_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    for name in models {
        let loading = Instant::now();
        let model = WhisperModel::load(&embedded_model_dir(name), threads)?;
        let load_s = loading.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut duration = 0.0;
        let (words, stats) =
            transcribe_file(&model, audio.as_ref(), audio, Some("en"), 0.0, |s, _| {
                duration = s;
                std::ops::ControlFlow::Continue(())
            })?;
        let wall = started.elapsed().as_secs_f64();
        let text = words
            .iter()
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{}",
            serde_json::json!({
                "model": name, "audio_s": duration, "wall_s": wall, "load_s": load_s,
                "rtf": wall / duration, "wer": word_error_rate(&reference, &text),
                "words": words.len(), "windows": stats.windows, "text": text,
            })
        );
    }
    Ok(())
}
