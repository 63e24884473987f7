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
        Some(2),
        &state(1, "get_recording", "completed", 1, None),
    )
    .await
    .unwrap();
    db.save_progress(
        "diarization-r1",
        "t-page",
        13,
        Some(2),
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
    assert_eq!(
        replayed,
        json!({"duration": "30:34", "steps": 2, "version": "v2"}),
        "the run's pipeline version from the stored states"
    );

    // Live, while the page is open.
    events
        .publish(
            "test",
            "t-page",
            activities::events::Event::FinalTitle,
            json!({"title": "Release planning"}),
        )
        .await
        .unwrap();
    events
        .publish(
            "test",
            "t-page",
            activities::events::Event::Topic,
            json!({"id": "tp1", "title": "Scope", "summary": "What ships", "timestamp": 62.0}),
        )
        .await
        .unwrap();
    events
        .publish(
            "test",
            "t-page",
            activities::events::Event::FinalShortSummary,
            json!({"short_summary": "We ship Monday."}),
        )
        .await
        .unwrap();
    let done = reflow_activities_progress(&state(2, "get_participants", "completed", 2, None));
    events
        .publish(
            "test",
            "t-page",
            activities::events::Event::PipelineProgress,
            done,
        )
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
    activities::progress::event_data("diarization-r1", 13, Some(2), s)
}

/// The progress page of a real run of the production pipeline (stand-in backends, an
/// in-process worker) draws the run's graph and follows it: the transcription is seen running,
/// then every step completed; on a phone's width the graph keeps a readable size (it scrolls
/// in its box, the page does not) and its steps take keyboard focus. Screenshots at 1280×800 and 390×844 (`$CARGO_TARGET_TMPDIR/pipeline-graph-*.png`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pipeline_graph_follows_a_real_run() {
    let _one = reflow_tests::meetings::exclusive().await;
    // Transcriptions take 5 s, so the page (which redraws at most every 1.5 s) sees them
    // running even on a loaded machine. The first transcription request is refused (503):
    // that track's step is retried. No Zulip realm: `post_zulip` has nothing to do (skipped).
    let (stack, _worker) = reflow_tests::meetings::in_process_with(
        std::time::Duration::from_secs(5),
        false,
        |services| services.zulip.realm = None,
    )
    .await;
    // The other track is answered at once, so the fan-out stays at one of two done for the
    // refused track's backoff and its 5-second retry.
    stack
        .backends
        .asr
        .then(reflow_tests::standins::Reply::status(503));
    stack.backends.asr.then(reflow_tests::standins::Reply::Json(
        reflow_tests::standins::transcription(&[("hello", 0.4, 0.8), ("everyone", 0.9, 1.5)]),
    ));
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
    let of = |s: &serde_json::Map<String, Value>, k: &str, field: &str| {
        s.get(k).and_then(|n| n[field].as_str()).map(str::to_owned)
    };
    let transcription = "TrackProcessing/transcribe_track";
    // Live: the transcriptions run; the refused track's next attempt runs, drawn as attempt 2
    // of the step's 4 with the refusal's type.
    let running_at = seen
        .iter()
        .position(|s| of(s, transcription, "state").as_deref() == Some("running"))
        .unwrap_or_else(|| panic!("the transcription is never seen running: {text}"));
    assert!(
        seen[running_at..].iter().any(|s| {
            matches!(
                of(s, transcription, "state").as_deref(),
                Some("running" | "retrying")
            ) && of(s, transcription, "attempt").as_deref() == Some("2/4")
                && of(s, transcription, "error").as_deref() == Some("Transient")
        }),
        "the retried transcription is never seen at attempt 2/4 after Transient: {text}"
    );
    assert!(
        seen[running_at..]
            .iter()
            .any(|s| of(s, transcription, "done").as_deref() == Some("1/2")),
        "the fan-out is never seen with one of two tracks done: {text}"
    );
    // The end: every step of the pinned definition drawn, completed but the skipped one.
    let last = seen.last().unwrap();
    assert_eq!(
        last.len(),
        20,
        "every step of the pinned definition is drawn: {last:?}"
    );
    for (k, n) in last {
        let want = if k == "DiarizationPipeline/post_zulip" {
            "skipped"
        } else {
            "completed"
        };
        assert_eq!(n["state"], want, "{k}: {n}");
        if want == "completed" {
            assert!(n["ms"].as_i64().is_some(), "{k} shows its duration: {n}");
        }
    }
    assert_eq!(
        last[transcription]["attempt"], "2/4",
        "{}",
        last[transcription]
    );
    assert_eq!(last[transcription]["error"], "Transient");
    // The Conductor JSON says the same of that track.
    let w: Value = reqwest::get(format!(
        "http://{}/api/workflow/{}",
        stack.api, m.workflow_id
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let refused: Vec<&Value> = w["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["taskType"] == "transcribe_track" && t["retried"] == true)
        .collect();
    assert_eq!(refused.len(), 1, "{w}");
    assert!(
        refused[0]["reasonForIncompletion"]
            .as_str()
            .is_some_and(|r| r.starts_with("Transient: ")),
        "{}",
        refused[0]
    );
    // The finished run's critical path: through the transcriptions (1 s backoff + 5 s), not
    // through the mix beside them; a chain from the first step to the end.
    let critical: Vec<&str> = last
        .iter()
        .filter(|(_, n)| n["critical"] == true)
        .map(|(k, _)| k.as_str())
        .collect();
    for on in [
        "DiarizationPipeline/get_recording",
        "DiarizationPipeline/pad_track",
        "DiarizationPipeline/process_tracks",
        "DiarizationPipeline/merge_transcripts",
        "DiarizationPipeline/finalize",
        transcription,
    ] {
        assert!(critical.contains(&on), "{on} is not on {critical:?}");
    }
    for off in [
        "DiarizationPipeline/mixdown_tracks",
        "DiarizationPipeline/generate_waveform",
    ] {
        assert!(!critical.contains(&off), "{off} is on {critical:?}");
    }
    let pipeline = reflow_tests::meetings::short_timeouts();
    let main_path: Vec<&workflow::pipeline::Step> = pipeline
        .main
        .steps
        .iter()
        .filter(|s| critical.contains(&format!("DiarizationPipeline/{}", s.id).as_str()))
        .collect();
    for s in &main_path[1..] {
        assert!(
            s.needs.iter().any(|n| main_path.iter().any(|c| &c.id == n)),
            "{} on the path needs none of it: {critical:?}",
            s.id
        );
    }
    // Members on demand, by keyboard: both tracks, the refused one at attempt 2.
    assert_eq!(done["expanded"], "true", "{done}");
    assert_eq!(done["visible"], true, "{done}");
    let members = done["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{done}");
    assert!(members.iter().all(|m| m["state"] == "completed"), "{done}");
    assert!(
        members.iter().any(|m| m["text"]
            .as_str()
            .is_some_and(|t| t.contains("attempt 2/4 · after Transient"))),
        "{done}"
    );
    // The step table agrees that post_zulip had nothing to do; the long summary (Markdown,
    // as LLMs write it) reads as headings and bold, not as `#` and `**`.
    let reading = &done["reading"];
    assert_eq!(reading["table"]["post_zulip"], "skipped", "{reading}");
    assert_eq!(reading["table"]["finalize"], "completed", "{reading}");
    assert_eq!(
        reading["headings"],
        serde_json::json!(["Quick recap", "Summary"]),
        "{reading}"
    );
    assert!(reading["bold"].as_u64() >= Some(1), "{reading}");
    assert_eq!(reading["raw"], false, "{reading}");
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
