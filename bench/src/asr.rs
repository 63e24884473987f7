//! `asr-bench`: the embedded Whisper backend on one audio file, per model — wall time, the
//! realtime factor (processing time ÷ audio duration) and the word error rate against the
//! known text. Prints one JSON line per model; `bench/asr.sh` makes the speech and the report.
//!
//! Usage: `asr-bench AUDIO REFERENCE_TEXT_FILE MODEL...` (models: `tiny.en`, `base`, or a
//! directory; `MODEL@off` finds speech by the digital-silence rule instead of the energy
//! detector, for comparing the two in one run).

use std::time::Instant;

use activities::asr::embedded::transcribe_file;
use activities::asr::embedded_model_dir;
use activities::asr::vad::Detector;
use activities::asr::wer::word_error_rate;
use activities::asr::whisper::WhisperModel;
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
    for spec in models {
        let (name, detector) = match spec.split_once('@') {
            Some((name, d)) => (
                name,
                Detector::parse(d).with_context(|| format!("{spec}: expected @energy or @off"))?,
            ),
            None => (spec.as_str(), Detector::default()),
        };
        let loading = Instant::now();
        let model = WhisperModel::load(&embedded_model_dir(name), threads)?.with_detector(detector);
        let load_s = loading.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut duration = 0.0;
        let (words, stats) = transcribe_file(
            &model,
            audio.as_ref(),
            audio,
            Some("en"),
            0.0,
            &Default::default(),
            |s, _| duration = s,
        )?;
        let wall = started.elapsed().as_secs_f64();
        let text = words
            .iter()
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{}",
            serde_json::json!({
                "model": name, "vad": detector.name(), "audio_s": duration, "wall_s": wall, "load_s": load_s,
                "rtf": wall / duration, "wer": word_error_rate(&reference, &text),
                "words": words.len(), "windows": stats.windows, "decoded_s": stats.decoded_s,
                "text": text,
            })
        );
    }
    Ok(())
}
