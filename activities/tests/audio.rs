//! Decoding and the waveform on real files in every container/codec the pipeline reads,
//! made in the test by ffmpeg (the Debian package) from the same 3 s signal: 2 s of a 440 Hz
//! tone at half scale, then 1 s of silence.

use std::path::{Path, PathBuf};
use std::process::Command;

use activities::ActivityFailure;
use activities::audio::AudioError;
use activities::audio::decode::decode_file;
use activities::audio::waveform::waveform_of_file;

fn ffmpeg(args: &[&str]) {
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

/// The reference signal encoded as `name` (extension picks the container).
fn encoded(dir: &Path, name: &str, codec: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=2,volume=4",
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=48000:cl=mono:d=1",
        "-filter_complex",
        "[0][1]concat=n=2:v=0:a=1",
    ];
    args.extend_from_slice(codec);
    args.push(path.to_str().unwrap());
    ffmpeg(&args);
    path
}

#[test]
fn every_supported_format_decodes_to_the_same_signal() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 6] = [
        ("tone.wav", &["-c:a", "pcm_s16le"]),
        ("tone.flac", &["-c:a", "flac"]),
        ("tone.mp3", &["-c:a", "libmp3lame", "-b:a", "128k"]),
        ("tone.ogg", &["-c:a", "libvorbis"]),
        ("tone.webm", &["-c:a", "libvorbis"]),
        ("tone.mka", &["-c:a", "flac"]),
    ];
    for (name, codec) in cases {
        let path = encoded(dir.path(), name, codec);
        let mut peak = 0f32;
        let mut tail_peak = 0f32;
        let mut seen = 0u64;
        let stats = decode_file(&path, name, |s, ch, rate| {
            for frame in s.chunks(ch) {
                let v = frame[0].abs();
                peak = peak.max(v);
                // Skip the codec's ramp around the tone/silence edge.
                if seen > u64::from(rate) * 2 + u64::from(rate) / 10 {
                    tail_peak = tail_peak.max(v);
                }
                seen += 1;
            }
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((stats.sample_rate, stats.channels), (48_000, 1), "{name}");
        let secs = stats.frames as f64 / 48_000.0;
        assert!((secs - 3.0).abs() < 0.1, "{name}: {secs} s decoded");
        assert!((peak - 0.5).abs() < 0.05, "{name}: tone peak {peak}");
        assert!(
            tail_peak < 0.01,
            "{name}: the last second is silent ({tail_peak})"
        );

        let w = waveform_of_file(&path, name).unwrap();
        assert_eq!(w.len(), 255, "{name}");
        assert!(
            w[..160].iter().all(|p| *p >= 120),
            "{name}: tone segments near full scale: {:?}",
            &w[..160]
        );
        assert!(
            w[180..].iter().all(|p| *p <= 2),
            "{name}: silent segments near zero: {:?}",
            &w[180..]
        );
    }
}

#[test]
fn bad_input_fails_naming_the_track_and_the_cause_without_retry() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.webm");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.webm");
    std::fs::write(&text, "this is not audio at all, just words").unwrap();
    let noise = dir.path().join("noise.mp3");
    std::fs::write(
        &noise,
        (0..50_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for (path, key) in [
        (&empty, "acme/track-0"),
        (&text, "acme/track-1"),
        (&noise, "acme/track-2"),
    ] {
        let e = decode_file(path, key, |_, _, _| {}).unwrap_err();
        assert!(
            matches!(
                e,
                AudioError::Unsupported { .. } | AudioError::Corrupt { .. }
            ),
            "{key}: {e}"
        );
        assert!(
            e.to_string().starts_with(key),
            "the message names the track: {e}"
        );
        let f = ActivityFailure::from(e);
        assert!(f.is_non_retryable() && f.type_name() == "AudioDecodeError");
    }
    let missing = decode_file(&dir.path().join("gone.wav"), "acme/gone", |_, _, _| {}).unwrap_err();
    assert!(matches!(missing, AudioError::Read { .. }));
}

#[test]
fn truncated_files_keep_what_decodes_and_empty_streams_are_silence() {
    let dir = tempfile::tempdir().unwrap();
    let full = encoded(dir.path(), "tone.mp3", &["-c:a", "libmp3lame"]);
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.path().join("cut.mp3");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let stats = decode_file(&cut, "cut", |_, _, _| {}).unwrap();
    let secs = stats.frames as f64 / 48_000.0;
    assert!(secs > 1.0 && secs < 2.0, "about half decodes: {secs}");

    // A valid file with zero audio frames: silence, not a crash.
    let silent = dir.path().join("zero.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=48000:cl=mono",
        "-t",
        "0",
        "-c:a",
        "pcm_s16le",
        silent.to_str().unwrap(),
    ]);
    let stats = decode_file(&silent, "zero", |_, _, _| {}).unwrap();
    assert_eq!(stats.frames, 0);
    assert_eq!(waveform_of_file(&silent, "zero").unwrap(), vec![0; 255]);
}
