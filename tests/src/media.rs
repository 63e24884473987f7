//! Test recordings: real speech synthesized by espeak-ng, placed in time and encoded by ffmpeg
//! as pad_track would have stored it (Opus in WebM, 48 kHz mono).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Run ffmpeg quietly, overwriting outputs; panics with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is installed (just setup-test)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `text` spoken by espeak-ng's `voice` at 150 words per minute, as `dir/name.wav`.
pub fn espeak(dir: &Path, name: &str, voice: &str, text: &str) -> PathBuf {
    let wav = dir.join(format!("{name}.wav"));
    let status = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng is installed (just setup-test)");
    assert!(status.success());
    wav
}

/// `input` as 48 kHz mono Opus (64 kbps) in WebM at `out`, through the audio filter
/// `filter`, with `extra` output options (e.g. `-output_ts_offset`).
pub fn opus_webm(input: &Path, out: &Path, filter: &str, extra: &[&str]) {
    let mut args = vec![
        "-i",
        input.to_str().unwrap(),
        "-af",
        filter,
        "-ac",
        "1",
        "-c:a",
        "libopus",
        "-b:a",
        "64k",
    ];
    args.extend_from_slice(extra);
    args.push(out.to_str().unwrap());
    ffmpeg(&args);
}

/// `text` spoken by espeak-ng's `voice`, starting `delay_ms` into the track, as a padded
/// track (`dir/name.webm`). Returns the path and the spoken span (start, end) in seconds.
pub fn speech_track(
    dir: &Path,
    name: &str,
    voice: &str,
    text: &str,
    delay_ms: u64,
) -> (PathBuf, (f64, f64)) {
    let wav = espeak(dir, name, voice, text);
    let spoken = seconds(&wav);
    let out = dir.join(format!("{name}.webm"));
    let filter = format!("adelay={delay_ms}:all=1,aresample=48000");
    opus_webm(&wav, &out, &filter, &[]);
    let start = delay_ms as f64 / 1000.0;
    (out, (start, start + spoken))
}

/// A padded track of `seconds` of a quiet tone (for backends that never listen to it).
pub fn tone_track(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    let out = dir.join(format!("{name}.webm"));
    let spec = format!("sine=frequency=220:sample_rate=48000:duration={seconds}");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &spec,
        "-ac",
        "1",
        "-c:a",
        "libopus",
        "-b:a",
        "64k",
        out.to_str().unwrap(),
    ]);
    out
}

/// Duration of an audio file by ffprobe, seconds.
pub fn seconds(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed (just setup-test)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a duration")
}
