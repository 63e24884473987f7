//! Padding (docs/contracts/pipeline.md §4.3.1) on real Opus tracks made by ffmpeg: the offset from
//! the WebM first block (as ffprobe reports `start_time`) or from the Daily filename, gaps where
//! frames were skipped, overlaps dropped, silent and broken tracks.

mod media;

use activities::audio::AudioError;
use activities::audio::pad::{OffsetSource, PadStats, pad_to_webm, pad_to_webm_at};
use media::{decoded_seconds, ffprobe_start_time, onset, peak_between, tone};
use std::ops::ControlFlow;

/// A 440 Hz tone at half scale, `secs` long, as Opus in WebM, its timestamps shifted by
/// `offset_s` (what a Daily track that started late looks like) and rewritten by `asetpts`.
fn opus_webm(
    dir: &std::path::Path,
    name: &str,
    secs: f64,
    offset_s: f64,
    pts: &str,
) -> std::path::PathBuf {
    let spec = format!("sine=frequency=440:sample_rate=48000:duration={secs},volume=4");
    let offset = offset_s.to_string();
    let filter = format!("asetpts='{pts}'");
    tone(
        dir,
        name,
        &spec,
        &[
            "-af",
            &filter,
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-output_ts_offset",
            &offset,
        ],
    )
}

fn pad(input: &std::path::Path, filename_offset: Option<f64>) -> (PadStats, std::path::PathBuf) {
    let out = input.with_file_name(format!(
        "padded-{}.webm",
        input.file_stem().unwrap().to_str().unwrap()
    ));
    let mut last = 0;
    let stats = pad_to_webm(input, "acme/room/track", filename_offset, &out, |ms| {
        last = ms;
        ControlFlow::Continue(())
    })
    .expect("padding succeeds");
    assert!(
        last > 0 || stats.frames == stats.offset_ms * 48,
        "progress was reported"
    );
    (stats, out)
}

#[test]
fn a_webm_track_is_padded_from_its_first_block_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let track = opus_webm(dir.path(), "late.webm", 1.0, 2.5, "PTS");
    let (stats, padded) = pad(&track, Some(9.0));

    assert_eq!(
        stats.offset_source,
        OffsetSource::Container,
        "metadata wins over the filename"
    );
    // What FFmpeg reports as the stream's start_time (it subtracts Opus' codec delay; the
    // spec allows that difference).
    let probed = ffprobe_start_time(&track);
    assert!(
        (stats.offset_ms as f64 / 1000.0 - probed).abs() < 0.03,
        "offset {} ms vs ffprobe start_time {probed}",
        stats.offset_ms
    );
    // The padded track: silence, then the tone from the offset on, at 48 kHz mono Opus.
    let start = onset(&padded, 0.1).expect("the tone is in the padded track");
    assert!(
        (start - 2.5).abs() < 0.03,
        "tone starts at {start} s, not 2.5 s"
    );
    assert!(
        peak_between(&padded, 0.0, 2.45) < 0.01,
        "leading silence is silent"
    );
    assert!(
        peak_between(&padded, 2.6, 3.4) > 0.4,
        "the tone survives re-encoding"
    );
    let secs = decoded_seconds(&padded);
    assert!((secs - 3.5).abs() < 0.05, "padded length {secs} s");
    assert!((stats.duration_ms() as f64 / 1000.0 - 3.5).abs() < 0.05);
    assert_eq!(
        ffprobe_start_time(&padded).max(0.0),
        0.0,
        "the padded track starts at 0"
    );
}

#[test]
fn skipped_frames_become_silence_at_their_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    // 3 s of tone; after the first second the timestamps jump by 2 s (a muted participant).
    let track = opus_webm(dir.path(), "muted.webm", 3.0, 0.5, "PTS+gte(T,1)*2/TB");
    let (stats, padded) = pad(&track, None);

    assert_eq!(stats.gaps.gaps, 1, "{stats:?}");
    let filled = stats.gaps.filled_frames as f64 / 48_000.0;
    assert!((filled - 2.0).abs() < 0.03, "filled {filled} s");
    // tone 0.5–1.5 s, silence 1.5–3.5 s, tone 3.5–5.5 s
    assert!(peak_between(&padded, 0.6, 1.4) > 0.4);
    assert!(
        peak_between(&padded, 1.56, 3.44) < 0.01,
        "the gap is silent"
    );
    assert!(
        peak_between(&padded, 3.6, 5.4) > 0.4,
        "speech after the gap stays at its time"
    );
    let secs = decoded_seconds(&padded);
    assert!((secs - 5.5).abs() < 0.05, "padded length {secs} s");
}

#[test]
fn overlapping_packets_lose_their_overlap() {
    let dir = tempfile::tempdir().unwrap();
    // 2 s of audio whose timestamps advance at half speed: every packet overlaps the last.
    let track = opus_webm(dir.path(), "overlap.webm", 2.0, 0.0, "PTS*0.5");
    let (stats, padded) = pad(&track, None);
    let dropped = stats.gaps.dropped_frames as f64 / 48_000.0;
    assert!((dropped - 1.0).abs() < 0.1, "dropped {dropped} s");
    let secs = decoded_seconds(&padded);
    assert!(
        (secs - 1.0).abs() < 0.1,
        "timestamps span 1 s; padded length {secs} s"
    );
}

#[test]
fn without_container_timestamps_the_filename_offset_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "sine=frequency=440:sample_rate=48000:duration=1,volume=4";
    // Ogg/Opus carries no recording-relative start; FLAC at 44.1 kHz stereo is resampled.
    let ogg = tone(dir.path(), "track.opus", spec, &["-c:a", "libopus"]);
    let flac = tone(
        dir.path(),
        "track.flac",
        spec,
        &["-ar", "44100", "-ac", "2", "-c:a", "flac"],
    );
    for track in [ogg, flac] {
        let (stats, padded) = pad(&track, Some(1.2345));
        assert_eq!(stats.offset_source, OffsetSource::Filename);
        assert_eq!(stats.offset_ms, 1234, "floor(offset × 1000)");
        let start = onset(&padded, 0.1).unwrap();
        assert!(
            (start - 1.234).abs() < 0.02,
            "{}: tone at {start}",
            track.display()
        );
        let secs = decoded_seconds(&padded);
        assert!(
            (secs - 2.234).abs() < 0.05,
            "{}: length {secs}",
            track.display()
        );

        let (stats, _) = pad(&track, None);
        assert_eq!(
            (stats.offset_source, stats.offset_ms),
            (OffsetSource::None, 0)
        );
    }
}

#[test]
fn a_silent_track_pads_to_silence_and_junk_fails_naming_the_track() {
    let dir = tempfile::tempdir().unwrap();
    // A WebM with an Opus track and no audio frames at all.
    let empty = tone(
        dir.path(),
        "empty.webm",
        "anullsrc=r=48000:cl=mono",
        &["-t", "0", "-c:a", "libopus"],
    );
    let (stats, padded) = pad(&empty, Some(1.0));
    assert_eq!(stats.offset_source, OffsetSource::Filename);
    assert!(
        peak_between(&padded, 0.0, 10.0) < 1e-3,
        "silence in, silence out"
    );
    assert!((decoded_seconds(&padded) - 1.0).abs() < 0.05);

    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"this is not a recording at all, only text").unwrap();
    let out = dir.path().join("out.webm");
    let err = pad_to_webm(
        &junk,
        "acme/room/1768018896877-x-cam-audio-1",
        None,
        &out,
        |_| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert!(matches!(err, AudioError::Unsupported { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("acme/room/1768018896877-x-cam-audio-1"),
        "{err}"
    );
}

#[test]
fn a_local_source_s_declared_offset_wins_over_the_container() {
    // An exported file starts at 0 whatever the meeting; recording.json says 2.5 s.
    let dir = tempfile::tempdir().unwrap();
    let track = opus_webm(dir.path(), "export.webm", 1.0, 0.0, "PTS");
    let out = dir.path().join("padded.webm");
    let stats = pad_to_webm_at(&track, "local/x/export.webm", Some(2.5), None, &out, |_| {
        ControlFlow::Continue(())
    })
    .expect("padding succeeds");
    assert_eq!(stats.offset_source, OffsetSource::Declared);
    assert_eq!(stats.offset_ms, 2500);
    let sound = onset(&out, 0.1).expect("the tone is there");
    assert!((sound - 2.5).abs() < 0.05, "tone starts at {sound} s");
}

#[test]
fn timestamps_that_carry_a_track_past_a_day_are_corrupt_not_hours_of_silence() {
    let dir = tempfile::tempdir().unwrap();
    // A track whose first block says it started 28 hours into the recording.
    let late = opus_webm(dir.path(), "late-by-a-day.webm", 1.0, 100_000.0, "PTS");
    let out = dir.path().join("late-padded.webm");
    let err = pad_to_webm(&late, "acme/room/late", None, &out, |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err();
    assert!(
        matches!(&err, AudioError::Corrupt { message, .. } if message.contains("corrupt timestamps")),
        "{err}"
    );
    // A track whose timestamps jump by 30 hours after its first second.
    let jump = opus_webm(dir.path(), "jump.webm", 3.0, 0.0, "PTS+gte(T,1)*108000/TB");
    let out = dir.path().join("jump-padded.webm");
    let err = pad_to_webm(&jump, "acme/room/jump", None, &out, |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err();
    assert!(
        matches!(&err, AudioError::Corrupt { message, .. } if message.contains("gap of")),
        "{err}"
    );
    assert!(err.to_string().contains("acme/room/jump"), "{err}");
}
