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
        let path = dir.path().join(name);
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
            .arg(&path)
            .status()
            .unwrap();
        assert!(ok.success());
        let ext = path.extension().unwrap().to_str().unwrap().to_owned();
        let key = format!("t-mix/pipeline/padded_{i}.{ext}");
        store.put_file(&key, &path).await.unwrap();
        keys.push(key);
    }

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
