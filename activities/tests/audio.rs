//! Decoding and the waveform on real files in every container/codec the pipeline reads,
//! made in the test by ffmpeg (the Debian package) from the same 3 s signal: 2 s of a 440 Hz
//! tone at half scale, then 1 s of silence.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

mod media;

use activities::ActivityFailure;
use activities::audio::AudioError;
use activities::audio::decode::decode_file;
use activities::audio::waveform::waveform_of_file;
use media::{ffmpeg, peak_between, tone};

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
    let cases: [(&str, &[&str]); 8] = [
        ("tone.wav", &["-c:a", "pcm_s16le"]),
        ("tone.flac", &["-c:a", "flac"]),
        ("tone.mp3", &["-c:a", "libmp3lame", "-b:a", "128k"]),
        ("tone.ogg", &["-c:a", "libvorbis"]),
        ("tone.webm", &["-c:a", "libvorbis"]),
        ("tone.mka", &["-c:a", "flac"]),
        // What Daily delivers: Opus in WebM (decoded by libopus).
        ("tone-opus.webm", &["-c:a", "libopus", "-b:a", "64k"]),
        ("tone.opus", &["-c:a", "libopus"]),
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

        let w = waveform_of_file(&path, name, || ControlFlow::Continue(())).unwrap();
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
    // Its tag still announces the full length: the waveform must notice and use the real count.
    let mut total = 0u64;
    decode_file(&cut, "cut", |s, _, _| total += s.len() as u64).unwrap();
    let mut reference = activities::audio::waveform::PeakMeter::new(total);
    decode_file(&cut, "cut", |s, _, _| reference.feed(s)).unwrap();
    assert_eq!(
        waveform_of_file(&cut, "cut", || ControlFlow::Continue(())).unwrap(),
        reference.finish()
    );

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
    assert_eq!(
        waveform_of_file(&silent, "zero", || ControlFlow::Continue(())).unwrap(),
        vec![0; 255]
    );
}

#[test]
fn the_mix_sums_tracks_of_any_rate_and_lasts_as_long_as_the_longest() {
    use activities::audio::mix::mix_to_mp3;
    let dir = tempfile::tempdir().unwrap();
    // 2 s at 48 kHz mono WAV, and 3 s at 44.1 kHz stereo FLAC (resampled and downmixed), the
    // same tone in phase: their sum peaks at 0.5 only if resampling kept them aligned.
    let a = tone(
        dir.path(),
        "a.wav",
        "sine=frequency=440:sample_rate=48000:duration=2,volume=2",
        &["-c:a", "pcm_s16le"],
    );
    let b = tone(
        dir.path(),
        "b.flac",
        "sine=frequency=440:sample_rate=44100:duration=3,volume=2",
        &["-ac", "2", "-c:a", "flac"],
    );
    // Each input's own peak, mono (ffmpeg's mono→stereo upmix lowers b by 3 dB).
    let mono_peak = |p: &Path| {
        let mut peak = 0f32;
        decode_file(p, "in", |s, ch, _| {
            for f in s.chunks(ch) {
                peak = peak.max((f.iter().sum::<f32>() / ch as f32).abs());
            }
        })
        .unwrap();
        peak
    };
    let (pa, pb) = (mono_peak(&a), mono_peak(&b));
    let out = dir.path().join("audio.mp3");
    let mut last_progress = 0;
    let stats = mix_to_mp3(&[(a, "t/a".into()), (b, "t/b".into())], &out, |ms| {
        last_progress = ms;
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!((stats.duration_ms() as i64 - 3000).abs() <= 25, "{stats:?}");
    assert_eq!(last_progress, stats.duration_ms());
    assert!(
        (stats.peak_in - (pa + pb)).abs() < 0.005,
        "in-phase tones add up exactly: {stats:?} vs {pa} + {pb}"
    );
    assert_eq!(
        stats.peak_in, stats.peak_out,
        "no limiting at speech levels"
    );

    let decoded = decode_file(&out, "mix", |_, _, _| {}).unwrap();
    assert_eq!((decoded.sample_rate, decoded.channels), (48_000, 2));
    assert!(
        (decoded.frames as f64 / 48_000.0 - 3.0).abs() < 0.06,
        "{decoded:?}"
    );
    assert!(
        (peak_between(&out, 0.2, 1.8) - (pa + pb)).abs() < 0.05,
        "both tracks sum while both play"
    );
    assert!(
        (peak_between(&out, 2.2, 2.9) - pb).abs() < 0.03,
        "the longer track alone at the end"
    );
}

#[test]
fn the_limiter_keeps_a_loud_sum_from_clipping() {
    use activities::audio::mix::mix_to_mp3;
    let dir = tempfile::tempdir().unwrap();
    let loud = tone(
        dir.path(),
        "loud.wav",
        "sine=frequency=440:sample_rate=48000:duration=1,volume=6.4",
        &["-c:a", "pcm_f32le"],
    );
    let tracks: Vec<(PathBuf, String)> = (0..4).map(|i| (loud.clone(), format!("t/{i}"))).collect();
    let out = dir.path().join("audio.mp3");
    let stats = mix_to_mp3(&tracks, &out, |_| ControlFlow::Continue(())).unwrap();
    assert!(
        stats.peak_in > 3.0,
        "four loud speakers exceed full scale: {stats:?}"
    );
    assert!(
        stats.peak_out < 1.0,
        "the encoder never sees a clipped sample: {stats:?}"
    );
    assert!(peak_between(&out, 0.1, 0.9) < 1.02, "the MP3 does not clip");
}
