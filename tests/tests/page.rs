//! The progress page in a real browser (Debian's Chromium through playwright-core): it shows
//! the replayed state on load and the live events after, from the WebSocket alone; the test
//! saves a screenshot (`$CARGO_TARGET_TMPDIR/progress-page.png`).

use std::process::Stdio;

use activities::db::transcripts::NewTranscript;
use activities::events::{Emits, EventHub, Events};
use reflow::http::ApiState;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use workflow::progress::StepState;

fn state(i: u32, name: &str, status: &str, attempt: u32, message: Option<&str>) -> StepState {
    StepState {
        step_index: i,
        current_step: name.into(),
        step_status: status.into(),
        attempt,
        max_attempts: 4,
        started_at: Some("2026-01-10T05:03:11Z".into()),
        message: message.map(Into::into),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_page_shows_replayed_and_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let db =
        reflow_tests::postgres::connect(&format!("sqlite://{}/reflow.db", dir.path().display()))
            .await;
    db.create_transcript(&NewTranscript {
        id: "t-page".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    // Stored before the page opens: events, and the latest progress of two steps.
    db.append_event("t-page", "STATUS", &json!({"value": "processing"}))
        .await
        .unwrap();
    db.append_event("t-page", "DURATION", &json!({"duration": 1834000.0}))
        .await
        .unwrap();
    let peaks: Vec<u32> = (0..255).map(|i| (i * 7) % 129).collect();
    db.append_event("t-page", "WAVEFORM", &json!({"waveform": peaks}))
        .await
        .unwrap();
    db.save_progress(
        "diarization-r1",
        "t-page",
        13,
        &state(1, "get_recording", "completed", 1, None),
    )
    .await
    .unwrap();
    db.save_progress(
        "diarization-r1",
        "t-page",
        13,
        &state(
            2,
            "get_participants",
            "in_progress",
            2,
            Some("attempt 1: 503 from Daily; retrying"),
        ),
    )
    .await
    .unwrap();

    let events = Events::new(
        db.clone(),
        EventHub::default(),
        Emits::new([(
            "test",
            &[
                "FINAL_TITLE",
                "TOPIC",
                "PIPELINE_PROGRESS",
                "FINAL_SHORT_SUMMARY",
            ][..],
        )]),
    );
    let storage = reflow_tests::storage();
    let api = ApiState::new(events.clone(), storage);
    let addr = reflow_tests::serve_api(api).await;
    let page = format!("http://{addr}/transcripts/t-page");
    assert_eq!(
        reqwest::get(format!("http://{addr}/transcripts/nope"))
            .await
            .unwrap()
            .status(),
        404
    );

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("progress-page.png");
    let _ = std::fs::remove_file(&shot);
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let mut node = tokio::process::Command::new("node")
        .arg("progress.mjs")
        .arg(&page)
        .arg(&shot)
        .current_dir(&browser_dir)
        // cargo points the library path at the build tree; Chromium must not load from it.
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node is installed; `just setup-test` installs tests/browser");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let ready = lines.next_line().await.unwrap().expect("the page loaded");
    let replayed: Value = serde_json::from_str(ready.strip_prefix("READY ").unwrap()).unwrap();
    assert_eq!(replayed, json!({"duration": "30:34", "steps": 2}));

    // Live, while the page is open.
    events
        .publish(
            "test",
            "t-page",
            "FINAL_TITLE",
            json!({"title": "Release planning"}),
        )
        .await
        .unwrap();
    events
        .publish(
            "test",
            "t-page",
            "TOPIC",
            json!({"id": "tp1", "title": "Scope", "summary": "What ships", "timestamp": 62.0}),
        )
        .await
        .unwrap();
    events
        .publish(
            "test",
            "t-page",
            "FINAL_SHORT_SUMMARY",
            json!({"short_summary": "We ship Monday."}),
        )
        .await
        .unwrap();
    let done = reflow_activities_progress(&state(2, "get_participants", "completed", 2, None));
    events
        .publish("test", "t-page", "PIPELINE_PROGRESS", done)
        .await
        .unwrap();
    let mut stdin = node.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    drop(stdin);
    let seen: Value =
        serde_json::from_str(&lines.next_line().await.unwrap().expect("the page result")).unwrap();
    assert!(node.wait().await.unwrap().success());

    assert_eq!(seen["title"], "Release planning");
    assert_eq!(seen["status"], "processing");
    assert_eq!(seen["duration"], "30:34");
    assert_eq!(seen["overall"], "2 / 13 steps");
    assert_eq!(seen["waveform"], 255);
    assert_eq!(seen["topics"], json!(["[1:02] Scope — What ships"]));
    assert_eq!(seen["short"], "We ship Monday.");
    let steps = seen["steps"].as_array().unwrap();
    assert_eq!(steps[0][1], "get_recording");
    assert_eq!(
        (steps[1][2].as_str(), steps[1][3].as_str()),
        (Some("completed"), Some("2/4"))
    );
    assert_eq!(seen["errors"], json!([]), "no script errors");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert_eq!(&png[..4], b"\x89PNG");
    eprintln!("screenshot: {}", shot.display());
}

fn reflow_activities_progress(s: &StepState) -> Value {
    activities::progress::event_data("diarization-r1", 13, s)
}

/// The progress page of a real run of the production pipeline (stand-in backends, an
/// in-process worker) draws the run's graph and follows it: the transcription is seen running,
/// then every step completed; on a phone's width the graph keeps a readable size (it scrolls
/// in its box, the page does not) and its steps take keyboard focus. Screenshots at 1280×800 and 390×844 (`$CARGO_TARGET_TMPDIR/pipeline-graph-*.png`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pipeline_graph_follows_a_real_run() {
    let _one = reflow_tests::meetings::exclusive().await;
    // Each transcription takes 5 s, so the page (which redraws at most every 1.5 s) sees it
    // running even on a loaded machine.
    let (stack, _worker) =
        reflow_tests::meetings::in_process(std::time::Duration::from_secs(5), false).await;
    let tmp = tempfile::tempdir().unwrap();
    let voices = reflow_tests::meetings::voices(tmp.path(), 2);
    let m = stack.meeting("page-dag", 0, &voices).await;
    let tid = stack.deliver(&m).await;
    let page = format!("http://{}/transcripts/{tid}", stack.api);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (wide, narrow) = (
        dir.join("pipeline-graph-1280.png"),
        dir.join("pipeline-graph-390.png"),
    );
    let _ = std::fs::remove_file(&wide);
    let _ = std::fs::remove_file(&narrow);
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let out = tokio::process::Command::new("node")
        .arg("dag.mjs")
        .arg(&page)
        .arg(&wide)
        .arg(&narrow)
        .current_dir(&browser_dir)
        .env_remove("LD_LIBRARY_PATH")
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("node is installed; `just setup-test` installs tests/browser");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let done: Value = serde_json::from_str(
        lines
            .last()
            .and_then(|l| l.strip_prefix("DONE "))
            .unwrap_or_else(|| panic!("the page did not finish: {text}")),
    )
    .unwrap();
    let seen: Vec<serde_json::Map<String, Value>> = lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let state_of = |s: &serde_json::Map<String, Value>, k: &str| {
        s.get(k).and_then(Value::as_str).map(str::to_owned)
    };
    let transcription = "TrackProcessing/transcribe_track";
    let running_at = seen
        .iter()
        .position(|s| state_of(s, transcription).as_deref() == Some("running"))
        .unwrap_or_else(|| panic!("the transcription is never seen running: {text}"));
    let last = seen.last().unwrap();
    assert!(
        seen[running_at..]
            .iter()
            .any(|s| state_of(s, transcription).as_deref() == Some("completed")),
        "{text}"
    );
    assert_eq!(
        last.len(),
        20,
        "every step of the pinned definition is drawn: {last:?}"
    );
    assert!(
        last.values().all(|v| v == "completed"),
        "the finished run is drawn completed: {last:?}"
    );
    assert_eq!(done["errors"], serde_json::json!([]), "no script errors");
    assert_eq!(done["focusable"], 20);
    assert_eq!(
        done["fits"], true,
        "on a phone the graph keeps a readable size and the page does not scroll sideways: {}",
        done["phone"]
    );
    for shot in [&wide, &narrow] {
        let png = std::fs::read(shot).expect("screenshot written");
        assert_eq!(&png[..4], b"\x89PNG");
        eprintln!("screenshot: {}", shot.display());
    }
    let _ = reflow::runs::wait(&stack.client, &m.workflow_id).await;
}
