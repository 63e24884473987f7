//! Faults injected by the stand-ins (issue: reliability suites): the transcription, LLM,
//! Daily, Zulip and webhook stand-ins and a proxy in front of the S3 server answer 500s, 429
//! with `Retry-After`, connection resets, slow answers and hangs on demand, on the whole
//! meeting path (a signed Daily webhook → `DiarizationPipeline`, timeouts shortened as in the
//! chaos suite).
//!
//! - Transient faults are retried with backoff and the meeting ends, each fault seen by its
//!   stand-in, nothing paid twice once a result was recorded.
//! - Permanent errors fail fast — a 401 from transcription, a 404 from Daily, a 403 from the
//!   LLM, a track that is not audio, LLM output that stays unparsable after its re-asks — with
//!   the step and the cause in the transcript's status, its `PIPELINE_PROGRESS` state and the
//!   Conductor JSON.

use std::time::{Duration, Instant};

use reflow_tests::InProcessWorker;
use reflow_tests::daily::Fault;
use reflow_tests::meetings::{Stack, voices};
use reflow_tests::standins::{Reply, completion};
use serde_json::Value;

async fn stack(proxy: bool) -> (Stack, InProcessWorker) {
    reflow_tests::meetings::in_process(Duration::from_millis(50), proxy).await
}

async fn conductor(stack: &Stack, workflow_id: &str) -> Value {
    reqwest::get(format!("http://{}/api/workflow/{workflow_id}", stack.api))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The transcript's error, its failed `PIPELINE_PROGRESS` state and the Conductor task's
/// reason must all name `step` and contain `cause`.
async fn failed_with(stack: &Stack, tid: &str, workflow_id: &str, step: &str, cause: &str) {
    let t = stack.db.transcript(tid).await.unwrap();
    assert_eq!(t.status, "error", "{t:?}");
    let why = t.error.clone().unwrap_or_default();
    assert!(
        why.contains(step) && why.contains(cause),
        "transcript error: {why}"
    );
    let progress = stack.db.progress_events(tid).await.unwrap();
    let failed: Vec<&Value> = progress
        .iter()
        .filter(|p| p["step_status"] == "failed")
        .collect();
    assert!(
        failed.iter().any(
            |p| p["current_step"].as_str().is_some_and(|s| s.contains(step))
                && p["message"].as_str().is_some_and(|m| m.contains(cause))
        ),
        "a failed progress state names {step} and {cause}: {progress:#?}"
    );
    let json = conductor(stack, workflow_id).await;
    assert_eq!(json["status"], "FAILED", "{json}");
    let tasks = json["tasks"].as_array().cloned().unwrap_or_default();
    assert!(
        tasks.iter().any(|t| t["referenceTaskName"]
            .as_str()
            .is_some_and(|n| n.contains(step))
            && t["status"]
                .as_str()
                .is_some_and(|s| s.starts_with("FAILED"))
            && t["reasonForIncompletion"]
                .as_str()
                .is_some_and(|r| r.contains(cause))),
        "a FAILED task names {step} and {cause}: {tasks:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transient_faults_everywhere_are_retried_and_the_meeting_ends() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) = stack(true).await;
    let b = &stack.backends;
    let dir = tempfile::tempdir().unwrap();
    let tracks = voices(dir.path(), 2);
    let m = stack.meeting("faulty", 0, &tracks).await;

    // Each service fails the first calls in a different way.
    b.daily.fault(Fault {
        path_prefix: "/v1/recordings".into(),
        status: Some(500),
        times: Some(1),
        ..Default::default()
    });
    b.daily.fault(Fault {
        path_prefix: "/v1/meetings".into(),
        status: Some(429),
        times: Some(1),
        ..Default::default()
    });
    let s3 = stack.s3_proxy.as_ref().unwrap();
    s3.then(Reply::status(500));
    s3.then(Reply::Reset);
    s3.then(Reply::slow(Duration::from_secs(2)));
    b.asr.then(Reply::status(503));
    b.asr.then(Reply::Status {
        code: 429,
        retry_after: Some(1),
    });
    b.asr.then(Reply::Reset);
    b.asr.then(Reply::Hang(Duration::from_secs(120)));
    b.llm.then(Reply::status(500));
    b.llm.then(Reply::Status {
        code: 429,
        retry_after: Some(1),
    });
    b.llm.then(Reply::Reset);
    b.llm.then(Reply::slow(Duration::from_secs(3)));
    b.zulip.then(Reply::status(502));
    b.receiver.then(Reply::Reset);
    b.receiver.then(Reply::Status {
        code: 429,
        retry_after: Some(3),
    });

    let started = Instant::now();
    let (tid, out) = stack.run(&m).await;
    let out = out.unwrap_or_else(|e| panic!("the run fails: {e}"));
    eprintln!("faulty meeting ended in {:?}", started.elapsed());
    let t = stack.db.transcript(&tid).await.unwrap();
    assert_eq!((t.status.as_str(), t.error.as_deref()), ("ended", None));
    assert!(
        out["word_count"].as_u64() > Some(20),
        "both tracks' words: {out}"
    );
    assert!(
        t.title.as_deref().is_some_and(|x| x.contains("Release")),
        "{t:?}"
    );

    // Every fault was met, and then answered properly.
    let daily = b.daily.requests();
    assert!(
        daily
            .iter()
            .filter(|r| r.contains("/v1/recordings/"))
            .count()
            >= 2,
        "{daily:?}"
    );
    assert!(
        daily.iter().filter(|r| r.contains("/participants")).count() >= 2,
        "{daily:?}"
    );
    assert!(s3.count() > 3);
    let asr = b.asr_calls();
    assert_eq!(asr.len(), 2, "two tracks");
    assert_eq!(
        asr.values().map(Vec::len).sum::<usize>(),
        2 + 4,
        "each of the 4 faults cost one more call, nothing else: {asr:?}"
    );
    let llm = b.llm_calls();
    let llm_total: usize = llm.values().map(Vec::len).sum();
    // The slow answer is not a fault: 3 failed calls were repeated.
    assert_eq!(llm_total, llm.len() + 3, "{llm:?}");
    let zulip = b.zulip_posts();
    assert_eq!(zulip.get(&tid), Some(&1), "{zulip:?}");
    let hooks = b.webhooks();
    assert_eq!(hooks.get(&tid).map(|h| h.0.len()), Some(1), "{hooks:?}");
    assert_eq!(b.receiver.count(), 3, "a reset, a 429, then the delivery");
    // The 429's Retry-After: 3 was honoured: the retry policy alone would have waited 2 s
    // (1 s, doubled) after the second failure.
    let hook_times: Vec<Instant> = b.receiver.requests().iter().map(|r| r.at).collect();
    let waited = hook_times[2] - hook_times[1];
    assert!(waited >= Duration::from_secs(3), "retried after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn permanent_errors_fail_fast_with_the_step_and_the_cause() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) = stack(false).await;
    let b = &stack.backends;
    let dir = tempfile::tempdir().unwrap();
    let tracks = voices(dir.path(), 1);

    // Transcription refuses our key: no retry.
    let m = stack.meeting("denied", 0, &tracks).await;
    b.asr.then(Reply::status(401));
    let started = Instant::now();
    let (tid, out) = stack.run(&m).await;
    let err = out.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(60), "fails fast");
    assert!(err.to_string().contains("transcribe"), "{err}");
    assert_eq!(b.asr.count(), 1, "a 401 is not retried");
    failed_with(&stack, &tid, &m.workflow_id, "transcribe", "AccessDenied").await;

    // Daily does not know the recording: no retry.
    let m = stack.meeting("unknown", 0, &tracks).await;
    b.daily.fault(Fault {
        path_prefix: format!("/v1/recordings/{}", m.recording_id),
        status: Some(404),
        ..Default::default()
    });
    let (tid, out) = stack.run(&m).await;
    let err = out.unwrap_err();
    assert!(err.to_string().contains("get_recording"), "{err}");
    let asked = b
        .daily
        .requests()
        .iter()
        .filter(|r| r.contains(&m.recording_id))
        .count();
    assert_eq!(asked, 1, "a 404 is not retried");
    failed_with(&stack, &tid, &m.workflow_id, "get_recording", "NotFound").await;

    // The LLM service forbids our key: the first LLM step fails without a retry.
    let m = stack.meeting("forbidden", 0, &tracks).await;
    b.llm.then(Reply::status(403));
    let before = b.llm.count();
    let (tid, out) = stack.run(&m).await;
    let err = out.unwrap_err();
    assert!(err.to_string().contains("detect_chunk_topic"), "{err}");
    assert_eq!(b.llm.count() - before, 1, "a 403 is not retried");
    failed_with(
        &stack,
        &tid,
        &m.workflow_id,
        "detect_chunk_topic",
        "AccessDenied",
    )
    .await;

    // A track that is not audio at all.
    let junk = dir.path().join("junk.webm");
    std::fs::write(
        &junk,
        b"this is a text file, not a WebM recording\n".repeat(50),
    )
    .unwrap();
    let mut bad = tracks.clone();
    bad[0].path = junk;
    let m = stack.meeting("junk", 0, &bad).await;
    let (tid, out) = stack.run(&m).await;
    let err = out.unwrap_err();
    assert!(err.to_string().contains("pad_track"), "{err}");
    failed_with(
        &stack,
        &tid,
        &m.workflow_id,
        "pad_track",
        "AudioDecodeError",
    )
    .await;

    // The LLM answers garbage to every re-ask of a chunk's topic.
    let m = stack.meeting("garbage", 0, &tracks).await;
    for _ in 0..4 {
        b.llm.then(Reply::Json(completion(
            "Sure! The topic is the budget.",
            10,
        )));
    }
    let before = b.llm.count();
    let (tid, out) = stack.run(&m).await;
    let err = out.unwrap_err();
    assert!(err.to_string().contains("detect_chunk_topic"), "{err}");
    assert_eq!(
        b.llm.count() - before,
        4,
        "the question and 3 re-asks, no activity retry"
    );
    failed_with(
        &stack,
        &tid,
        &m.workflow_id,
        "detect_chunk_topic",
        "LlmParseError",
    )
    .await;
}
