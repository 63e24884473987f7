//! Audio steps run by the worker, end to end on Temporal, over the shared object store.

use std::process::Command;

use bytes::Bytes;
use reflow::runs;
use reflow_tests::{InProcessWorker, TestPipeline, client, storage};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_waveform_stores_255_peaks_and_a_second_run_does_no_decoding() {
    let q = "waveform";
    let tp = TestPipeline::load("waveform.yaml", q);
    let _worker = InProcessWorker::start(&[q.to_owned()]);
    let c = client().await;
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
