//! Audio steps run by the worker, end to end on Temporal, over the shared object store.

use std::process::Command;

use bytes::Bytes;
use reflow::runs;
use reflow_tests::{started, storage};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_waveform_stores_255_peaks_and_a_second_run_does_no_decoding() {
    let (_, tp, _worker, c) = started("waveform", "waveform.yaml").await;
    let store = storage();

    // 2 s of tone then 1 s of silence, as the mixdown would have stored it.
    let dir = tempfile::tempdir().unwrap();
    let mp3 = dir.path().join("audio.mp3");
    let made = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:sample_rate=48000:duration=2,volume=4",
        ])
        .args(["-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo:d=1"])
        .args([
            "-filter_complex",
            "[0]aformat=channel_layouts=stereo[a];[a][1]concat=n=2:v=0:a=1",
        ])
        .args(["-c:a", "libmp3lame", "-b:a", "128k"])
        .arg(&mp3)
        .status()
        .unwrap();
    assert!(made.success());
    store.put_file("t-wave/audio.mp3", &mp3).await.unwrap();
    reflow_tests::transcript("t-wave").await;
    reflow_tests::transcript("t-bad").await;

    runs::start(
        &c,
        &tp.pipeline,
        json!({"transcript_id": "t-wave"}),
        "waveform-1",
    )
    .await
    .unwrap();
    let out = runs::wait(&c, "waveform-1").await.unwrap();
    assert_eq!(
        out,
        json!({"waveform_key": "t-wave/audio.json", "peaks": 255})
    );
    let peaks: Vec<u8> =
        serde_json::from_slice(&store.get("t-wave/audio.json").await.unwrap()).unwrap();
    assert_eq!(peaks.len(), 255);
    assert_eq!(peaks.iter().max(), Some(&128));
    assert!(peaks[..160].iter().all(|p| *p >= 120), "{peaks:?}");
    assert!(peaks[180..].iter().all(|p| *p <= 2), "{peaks:?}");
    // The frontend got the same peaks as a WAVEFORM event, stored for replay.
    let events = reflow_tests::db().events("t-wave", 0).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].envelope(),
        json!({"event": "WAVEFORM", "data": {"waveform": peaks}})
    );

    // The source is gone, yet a re-run succeeds: the result came from the checkpoint, so
    // nothing was downloaded or decoded.
    store.delete("t-wave/audio.mp3").await.unwrap();
    runs::start(
        &c,
        &tp.pipeline,
        json!({"transcript_id": "t-wave"}),
        "waveform-2",
    )
    .await
    .unwrap();
    assert_eq!(runs::wait(&c, "waveform-2").await.unwrap(), out);
    let events = reflow_tests::db().events("t-wave", 0).await.unwrap();
    assert_eq!(
        events.len(),
        2,
        "a checkpointed re-run still tells the frontend"
    );

    // Without the object the checkpoint names, the step must recompute, and now fails on its
    // first attempt, naming the missing source.
    store.delete("t-wave/audio.json").await.unwrap();
    runs::start(
        &c,
        &tp.pipeline,
        json!({"transcript_id": "t-wave"}),
        "waveform-3",
    )
    .await
    .unwrap();
    let err = runs::wait(&c, "waveform-3").await.unwrap_err().to_string();
    assert!(
        err.contains(r#"step "waveform" failed: NotFound"#) && err.contains("t-wave/audio.mp3"),
        "{err}"
    );
    let p = runs::query_progress(&c, "waveform-3").await.unwrap();
    assert_eq!(p.steps[0].attempt, 1, "a missing source is not retried");

    // Corrupt audio fails non-retryably, naming the object.
    store
        .put(
            "t-bad/audio.mp3",
            Bytes::from_static(b"definitely not an mp3 file"),
        )
        .await
        .unwrap();
    runs::start(
        &c,
        &tp.pipeline,
        json!({"transcript_id": "t-bad"}),
        "waveform-4",
    )
    .await
    .unwrap();
    let err = runs::wait(&c, "waveform-4").await.unwrap_err().to_string();
    assert!(
        err.contains("AudioDecodeError") && err.contains("t-bad/audio.mp3"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixdown_then_waveform_on_stored_tracks_and_a_rerun_pays_nothing() {
    let (_, tp, _worker, c) = started("mixdown", "mix.yaml").await;
    let store = storage();

    // Track 0: 1 s of tone; track 1: 0.5 s of silence, then 1.5 s of another tone (44.1 kHz).
    let dir = tempfile::tempdir().unwrap();
    let specs = [
        (
            "sine=frequency=300:sample_rate=48000:duration=1,volume=2",
            "t0.wav",
        ),
        (
            "sine=frequency=500:sample_rate=44100:duration=1.5,volume=2,adelay=500:all=1,apad=pad_dur=0",
            "t1.flac",
        ),
    ];
    let mut keys = Vec::new();
    for (i, (spec, name)) in specs.iter().enumerate() {
        let path = lavfi_file(dir.path(), name, spec, &[]);
        let ext = path.extension().unwrap().to_str().unwrap().to_owned();
        let key = format!("t-mix/pipeline/padded_{i}.{ext}");
        store.put_file(&key, &path).await.unwrap();
        keys.push(key);
    }

    reflow_tests::transcript("t-mix").await;
    let input = json!({"transcript_id": "t-mix", "padded_keys": keys});
    runs::start(&c, &tp.pipeline, input.clone(), "mix-1")
        .await
        .unwrap();
    let out = runs::wait(&c, "mix-1").await.unwrap();
    assert_eq!(out["mix"]["audio_key"], "t-mix/audio.mp3");
    let ms = out["mix"]["duration_ms"].as_u64().unwrap();
    assert!(
        (1990..=2010).contains(&ms),
        "the mix is as long as the longest track: {ms}"
    );
    // Without a duration from Daily, the mix length is the transcript's duration.
    let t = reflow_tests::db().transcript("t-mix").await.unwrap();
    assert_eq!(t.duration, Some(ms as f64));
    let events = reflow_tests::db().events("t-mix", 0).await.unwrap();
    assert_eq!(
        events[0].envelope(),
        json!({"event": "DURATION", "data": {"duration": ms as f64}})
    );
    assert_eq!(events[1].event, "WAVEFORM");
    let mp3 = store.get("t-mix/audio.mp3").await.unwrap();
    assert_eq!(out["mix"]["size_bytes"].as_u64(), Some(mp3.len() as u64));
    assert!(
        mp3[0] == 0xFF && mp3[1] & 0xE0 == 0xE0,
        "an MPEG audio frame starts the file"
    );
    let peaks: Vec<u8> =
        serde_json::from_slice(&store.get("t-mix/audio.json").await.unwrap()).unwrap();
    assert_eq!(peaks.len(), 255);
    assert!(
        peaks.iter().all(|p| *p > 50),
        "sound everywhere: one track or the other plays: {peaks:?}"
    );

    // The tracks are gone (finalize deletes them), yet a re-run with the same input succeeds:
    // both steps come from their checkpoints.
    for k in &keys {
        store.delete(k).await.unwrap();
    }
    runs::start(&c, &tp.pipeline, input, "mix-2").await.unwrap();
    assert_eq!(runs::wait(&c, "mix-2").await.unwrap(), out);
}

/// The lavfi source `spec` encoded by ffmpeg (with `extra` options) as `dir/name`.
fn lavfi_file(dir: &std::path::Path, name: &str, spec: &str, extra: &[&str]) -> std::path::PathBuf {
    let path = dir.join(name);
    let ok = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            spec,
        ])
        .args(extra)
        .arg(&path)
        .status()
        .unwrap();
    assert!(ok.success());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_tracks_are_padded_mixed_and_drawn_with_a_per_run_mixdown_timeout() {
    let (_, tp, _worker, c) = started("tracks", "tracks.yaml").await;
    let store = storage();
    let dir = tempfile::tempdir().unwrap();
    let room = "acme/standup-20260110042117";
    let rec = 1_768_018_896_877u64;
    let opus = ["-c:a", "libopus", "-b:a", "64k"];
    // Track 0 starts with the recording; track 1's WebM starts at 1.5 s (its filename says
    // 1.7 s: metadata wins); track 2 is Ogg/Opus, so only its filename (2.25 s) places it.
    let t0 = lavfi_file(
        dir.path(),
        "t0.webm",
        "sine=frequency=300:sample_rate=48000:duration=1,volume=2",
        &opus,
    );
    let mut late = opus.to_vec();
    late.extend(["-output_ts_offset", "1.5"]);
    let t1 = lavfi_file(
        dir.path(),
        "t1.webm",
        "sine=frequency=500:sample_rate=48000:duration=1,volume=2",
        &late,
    );
    let t2 = lavfi_file(
        dir.path(),
        "t2.ogg",
        "sine=frequency=700:sample_rate=48000:duration=1,volume=2",
        &opus,
    );
    let participants = [
        "890c0eae-1d2f-4c3b-9a8e-0f1e2d3c4b5a",
        "11111111-2222-4333-8444-555555555555",
        "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
    ];
    let mut tracks = Vec::new();
    for (i, (path, start)) in [(t0, 0u64), (t1, 1_700), (t2, 2_250)].iter().enumerate() {
        let key = format!("{room}/{rec}-{}-cam-audio-{}", participants[i], rec + start);
        store.put_file(&key, path).await.unwrap();
        tracks.push(json!({"s3_key": key}));
    }
    let db = reflow_tests::db();
    reflow_tests::transcript("t-daily").await;
    db.set_duration("t-daily", 7_200_000.0).await.unwrap(); // Daily's duration: the master
    let input = json!({"transcript_id": "t-daily", "tracks": tracks, "duration_s": 7200});
    runs::start(&c, &tp.pipeline, input.clone(), "tracks-1")
        .await
        .unwrap();
    let out = runs::wait(&c, "tracks-1").await.unwrap();

    let pads = out["pad"].as_array().unwrap();
    let offsets: Vec<(u64, &str)> = pads
        .iter()
        .map(|p| {
            (
                p["offset_ms"].as_u64().unwrap(),
                p["offset_source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(offsets[0].1, "container");
    assert!(offsets[0].0 < 20, "{offsets:?}");
    assert_eq!(
        offsets[1].1, "container",
        "WebM metadata wins over the filename"
    );
    assert!((offsets[1].0 as i64 - 1500).abs() < 20, "{offsets:?}");
    assert_eq!(offsets[2], (2250, "filename"));
    for (i, p) in pads.iter().enumerate() {
        let key = format!("t-daily/pipeline/padded_{i}.webm");
        assert_eq!(p["padded_key"], key.as_str());
        let bytes = store.get(&key).await.unwrap();
        assert_eq!(p["size_bytes"].as_u64(), Some(bytes.len() as u64));
        assert_eq!(&bytes[..4], &[0x1A, 0x45, 0xDF, 0xA3], "a WebM file");
    }
    // The mix runs until the last track ends: 2.25 s + 1 s.
    let ms = out["mix"]["duration_ms"].as_u64().unwrap();
    assert!((3200..=3300).contains(&ms), "mix length {ms} ms");
    let peaks: Vec<u8> =
        serde_json::from_slice(&store.get("t-daily/audio.json").await.unwrap()).unwrap();
    assert_eq!(peaks.len(), 255);
    // 0–1 s track 0, 1.5–2.5 s track 1, 2.25–3.25 s track 2: a pause from 1.0 to 1.5 s.
    let at = |s: f64| peaks[(s / (ms as f64 / 1000.0) * 255.0) as usize];
    assert!(at(0.5) > 40 && at(2.0) > 40 && at(3.0) > 40, "{peaks:?}");
    assert!(at(1.25) < 5, "the pause stays silent: {peaks:?}");

    let t = db.transcript("t-daily").await.unwrap();
    assert_eq!(
        (t.duration, t.audio_location.as_str()),
        (Some(7_200_000.0), "storage")
    );
    let names: Vec<String> = db
        .events("t-daily", 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        names,
        ["WAVEFORM"],
        "Daily's duration stands: no DURATION from the mix"
    );

    // Mixdown's budget came from the formula: max(720, 300 + 60·3 + 7200/10) = 1200 s.
    let scheduled = reflow_tests::scheduled_activities(&c, "tracks-1").await;
    assert!(
        scheduled.contains(&("mixdown_tracks".into(), 1200)),
        "{scheduled:?}"
    );
    assert!(
        scheduled.contains(&("pad_track".into(), 720)),
        "{scheduled:?}"
    );

    // The raw tracks are gone (consent cleanup, say), yet a re-run returns the same result:
    // every step answers from its checkpoint without decoding anything.
    for t in &tracks {
        store.delete(t["s3_key"].as_str().unwrap()).await.unwrap();
    }
    runs::start(&c, &tp.pipeline, input, "tracks-2")
        .await
        .unwrap();
    assert_eq!(runs::wait(&c, "tracks-2").await.unwrap(), out);
}
