//! Real media for the audio tests, made by ffmpeg (the Debian package) inside the test, and
//! measurements on decoded files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use activities::audio::decode::decode_file;

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

/// Encode the lavfi source `spec`, through `codec` options, to `dir/name`.
pub fn tone(dir: &Path, name: &str, spec: &str, codec: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec!["-f", "lavfi", "-i", spec];
    args.extend_from_slice(codec);
    args.push(path.to_str().unwrap());
    ffmpeg(&args);
    path
}

/// What ffprobe reports as the first audio stream's `start_time`, in seconds.
pub fn ffprobe_start_time(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=start_time",
        ])
        .args(["-of", "default=noprint_wrappers=1:nokey=1"])
        .arg(path)
        .output()
        .expect("ffprobe is installed with ffmpeg");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe start_time of {}: {out:?}", path.display()))
}

/// Peak of the first channel over [from_s, to_s) of a decoded file.
pub fn peak_between(path: &Path, from_s: f64, to_s: f64) -> f32 {
    let mut frame = 0u64;
    let mut peak = 0f32;
    decode_file(path, "measured", |s, ch, rate| {
        for f in s.chunks(ch) {
            let t = frame as f64 / f64::from(rate);
            if t >= from_s && t < to_s {
                peak = peak.max(f[0].abs());
            }
            frame += 1;
        }
    })
    .unwrap();
    peak
}

/// Decoded length in seconds.
pub fn decoded_seconds(path: &Path) -> f64 {
    let stats = decode_file(path, "measured", |_, _, _| {}).unwrap();
    stats.frames as f64 / f64::from(stats.sample_rate)
}

/// Time of the first sample louder than `level` (seconds), if any.
pub fn onset(path: &Path, level: f32) -> Option<f64> {
    let mut frame = 0u64;
    let mut found = None;
    decode_file(path, "measured", |s, ch, rate| {
        for f in s.chunks(ch) {
            if found.is_none() && f[0].abs() > level {
                found = Some(frame as f64 / f64::from(rate));
            }
            frame += 1;
        }
    })
    .unwrap();
    found
}
