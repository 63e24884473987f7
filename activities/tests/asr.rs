//! The embedded Whisper backend on real speech synthesized by espeak-ng: a known sentence is
//! recognised (WER under 25 %) with word times inside the span where it was spoken, also when
//! the speech starts late in the track (a padded track) and across a 30 s window boundary.

mod media;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use activities::asr::embedded::transcribe_file;
use activities::asr::embedded_model_dir;
use activities::asr::wer::word_error_rate;
use activities::asr::whisper::{RawWord, WhisperModel};

/// Speak `text` with espeak-ng's `voice` into `dir/name.wav`; returns the path and duration.
fn speak(dir: &Path, name: &str, voice: &str, text: &str) -> (PathBuf, f64) {
    let path = dir.join(format!("{name}.wav"));
    let status = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .expect("espeak-ng is installed (just setup-test)");
    assert!(status.success());
    let seconds = media::decoded_seconds(&path);
    (path, seconds)
}

fn model(name: &str) -> WhisperModel {
    WhisperModel::load(&embedded_model_dir(name), 2)
        .expect("the embedded models are installed (just setup)")
}

fn text(words: &[RawWord]) -> String {
    words
        .iter()
        .map(|w| w.word.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

const SENTENCE: &str = "The quarterly budget review is scheduled for next Tuesday morning, \
                        and every team lead should bring their hiring plan.";

#[test]
fn base_recognises_a_sentence_spoken_late_in_the_track() {
    let dir = tempfile::tempdir().unwrap();
    let (speech, spoken) = speak(dir.path(), "s", "en-us", SENTENCE);
    // A padded track: 7.5 s of silence, then the sentence (as pad_track writes it).
    let padded = dir.path().join("padded.webm");
    media::ffmpeg(&[
        "-i",
        speech.to_str().unwrap(),
        "-af",
        "adelay=7500:all=1,aresample=48000",
        "-ac",
        "1",
        "-c:a",
        "libopus",
        "-b:a",
        "64k",
        padded.to_str().unwrap(),
    ]);
    let model = model("base");
    let (words, stats) = transcribe_file(
        &model,
        &padded,
        "padded",
        Some("en"),
        0.0,
        &AtomicBool::new(false),
        |_, _| {},
    )
    .unwrap();
    let wer = word_error_rate(SENTENCE, &text(&words));
    assert!(wer < 0.25, "WER {wer:.2}: {:?}", text(&words));
    assert!(stats.windows >= 1);
    for w in &words {
        assert!(
            w.start >= 7.5 - 0.3 && w.end <= 7.5 + spoken + 0.3 && w.start <= w.end,
            "{w:?} outside the spoken span 7.5..{:.2}",
            7.5 + spoken
        );
    }
    // Words are in order and the first one starts near the onset.
    assert!(words.windows(2).all(|p| p[0].start <= p[1].start));
    assert!(
        (words[0].start - 7.5).abs() < 1.0,
        "first word at {}",
        words[0].start
    );
}

/// About 34 s of speech in four sentences, so at least one sentence straddles the 30 s edge.
const LONG: [&str; 4] = [
    "Good morning everyone, thank you for joining the weekly planning meeting.",
    "First we will look at the support queue, which grew by forty tickets since last week, \
     mostly about password resets and slow page loads on the mobile application.",
    "Then Maria will present the new onboarding flow, which shortens the signup form from \
     nine fields to four and adds a short product tour for first time visitors.",
    "Finally we need a volunteer to organise the team lunch on Friday, \
     and somebody should update the holiday calendar before the end of the month.",
];

#[test]
fn tiny_en_transcribes_across_the_window_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    for (i, s) in LONG.iter().enumerate() {
        let (p, _) = speak(dir.path(), &format!("p{i}"), "en-us+m3", s);
        inputs.push(p);
    }
    let list = dir.path().join("list.txt");
    std::fs::write(
        &list,
        inputs
            .iter()
            .map(|p| format!("file '{}'\n", p.display()))
            .collect::<String>(),
    )
    .unwrap();
    let long = dir.path().join("long.wav");
    media::ffmpeg(&[
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        list.to_str().unwrap(),
        long.to_str().unwrap(),
    ]);
    let total = media::decoded_seconds(&long);
    assert!(
        total > 33.0,
        "the test audio must cross 30 s (it is {total:.1} s)"
    );

    let model = model("tiny.en");
    let mut progress = Vec::new();
    let never = AtomicBool::new(false);
    let (words, stats) = transcribe_file(&model, &long, "long", Some("en"), 0.0, &never, |s, _| {
        progress.push(s)
    })
    .unwrap();
    let reference = LONG.join(" ");
    let wer = word_error_rate(&reference, &text(&words));
    assert!(wer < 0.25, "WER {wer:.2}: {}", text(&words));
    assert!(
        stats.windows >= 2,
        "more than one window decoded: {stats:?}"
    );
    // Words on both sides of the boundary, in order, inside the audio.
    assert!(words.iter().any(|w| w.start < 28.0) && words.iter().any(|w| w.start > 31.0));
    assert!(
        words.windows(2).all(|p| p[0].start <= p[1].start),
        "ordered"
    );
    assert!(words.iter().all(|w| w.end <= total + 0.3));
    // No word is lost or doubled at the seam: the words around 30 s read as the reference.
    let seam: Vec<&str> = words
        .iter()
        .filter(|w| (22.0..34.0).contains(&w.start))
        .map(|w| w.word.as_str())
        .collect();
    assert!(seam.len() >= 15, "words around the boundary: {seam:?}");
    // Progress reached the end.
    assert!(
        (progress.last().copied().unwrap_or(0.0) - total).abs() < 1.0,
        "{progress:?}"
    );

    // Stopped after the first window and resumed from where it reported: the words are the
    // uninterrupted run's, and the resumed call decoded only the audio after that point.
    let mut first: Vec<RawWord> = Vec::new();
    let mut stopped_at = 0.0;
    let stop = AtomicBool::new(false);
    let err = transcribe_file(&model, &long, "long", Some("en"), 0.0, &stop, |s, found| {
        first.extend_from_slice(found);
        stopped_at = s;
        stop.store(true, Ordering::Relaxed);
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            activities::asr::embedded::TranscribeFileError::Whisper(
                activities::asr::whisper::WhisperError::Stopped
            )
        ),
        "{err:?}"
    );
    assert!(stopped_at > 0.0 && stopped_at < total - 1.0, "{stopped_at}");
    let (rest, resumed) = transcribe_file(
        &model,
        &long,
        "long",
        Some("en"),
        stopped_at,
        &never,
        |_, _| {},
    )
    .unwrap();
    first.extend(rest);
    assert_eq!(first, words, "a resumed transcription finds the same words");
    assert!(
        resumed.decoded_s <= total - stopped_at + 0.5 && resumed.decoded_s < stats.decoded_s,
        "the resumed call decoded {resumed:?}; the whole track {stats:?}"
    );
}
