//! The bad-input corpus (issue: reliability suites): what Daily, a customer or an operator can
//! send that is wrong, through reflow's real entry points — the Daily webhook, the meeting
//! pipeline on a real Temporal server, storage keys and pipeline definitions. Each gets a
//! clear error naming the step or the field; nothing crashes (the API and the worker keep
//! serving the next good request), and nothing already stored is lost.

use std::time::Duration;

use reflow_tests::InProcessWorker;
use reflow_tests::meetings::{DAILY_SECRET, Stack, voices};
use serde_json::{Value, json};

async fn stack(proxy: bool) -> (Stack, InProcessWorker) {
    reflow_tests::meetings::in_process(Duration::from_millis(10), proxy).await
}

/// POST `body` to the Daily webhook with the given headers; status and JSON answer.
async fn post(stack: &Stack, body: Vec<u8>, headers: &[(&str, String)]) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .post(format!("http://{}/v1/daily/webhook", stack.api))
        .body(body);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    let answer = r.send().await.expect("the API answers");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// POST only the head of a request announcing `length` bytes of body to the Daily webhook,
/// and read the status the API answers with (within 10 s) without sending the body.
async fn post_head_only(stack: &Stack, headers: &[(&str, String)], length: usize) -> u16 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(&stack.api)
        .await
        .expect("the API accepts a connection");
    let mut head = format!(
        "POST /v1/daily/webhook HTTP/1.1\r\nhost: {}\r\ncontent-length: {length}\r\n",
        stack.api
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await.expect("head sent");
    let mut status_line = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::BufReader::new(conn).read_line(&mut status_line),
    )
    .await
    .expect("the API answers before the body arrives")
    .expect("status line read");
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"))
}

fn signed(body: &[u8], ts: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-webhook-timestamp", ts.to_owned()),
        (
            "x-webhook-signature",
            activities::daily::signature::sign(DAILY_SECRET, ts, body).unwrap(),
        ),
        ("content-type", "application/json".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_webhooks_are_refused_and_change_nothing() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) = stack(false).await;
    let dir = tempfile::tempdir().unwrap();
    let tracks = voices(dir.path(), 1);
    let m = stack.meeting("hooks", 0, &tracks).await;
    let body = m.webhook.as_bytes().to_vec();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let invalid = json!({"detail": "Invalid webhook signature"});

    // Missing signature, missing timestamp, a wrong one, one for another body, garbage.
    let mut no_sig = signed(&body, &now);
    no_sig.remove(1);
    assert_eq!(
        post(&stack, body.clone(), &no_sig).await,
        (401, invalid.clone())
    );
    let mut no_ts = signed(&body, &now);
    no_ts.remove(0);
    assert_eq!(
        post(&stack, body.clone(), &no_ts).await,
        (401, invalid.clone())
    );
    let mut wrong = signed(b"another body", &now);
    wrong[0].1 = now.clone();
    assert_eq!(
        post(&stack, body.clone(), &wrong).await,
        (401, invalid.clone())
    );
    let mut garbage = signed(&body, &now);
    garbage[1].1 = "not base64 at all!".into();
    assert_eq!(
        post(&stack, body.clone(), &garbage).await,
        (401, invalid.clone())
    );
    // The signature of another timestamp.
    let mut shifted = signed(&body, "1700000000");
    shifted[0].1 = now.clone();
    assert_eq!(post(&stack, body.clone(), &shifted).await, (401, invalid));

    // Signed but malformed: not JSON, JSON without an envelope, a payload without ids.
    for (bad, detail) in [
        (b"{not json".to_vec(), "Invalid JSON"),
        (b"[1, 2, 3]".to_vec(), "Invalid event format"),
        (br#"{"type": "recording.ready-to-download"}"#.to_vec(), "Invalid event format"),
        (
            br#"{"type": "recording.ready-to-download", "payload": {"tracks": [{"type": "audio", "s3Key": "k"}]}}"#.to_vec(),
            "Invalid event format",
        ),
    ] {
        let (status, answer) = post(&stack, bad.clone(), &signed(&bad, &now)).await;
        assert_eq!((status, answer["detail"].as_str()), (422, Some(detail)), "{}", String::from_utf8_lossy(&bad));
    }
    // Oversized (8 MB, signed): refused from its Content-Length, before the body is read or
    // anything parsed. Over a raw connection that sends only the head: an HTTP client that
    // writes the whole body races the server closing the connection after its answer.
    let huge = vec![b' '; 8 << 20];
    assert_eq!(
        post_head_only(&stack, &signed(&huge, &now), huge.len()).await,
        413
    );
    // An unknown event is acknowledged and ignored.
    let unknown = br#"{"version": "1.0.0", "type": "meeting.teleported", "id": "e1", "payload": {}, "event_ts": 1}"#.to_vec();
    assert_eq!(
        post(&stack, unknown.clone(), &signed(&unknown, &now)).await,
        (200, json!({"status": "ignored"}))
    );
    // Nothing of the above created a transcript.
    assert!(stack.db.recording(&m.recording_id).await.unwrap().is_none());

    // The real delivery works. A replay of it signed long ago is refused
    // (docs/contracts/daily.md §3.1: at most REFLOW_DAILY_WEBHOOK_MAX_AGE old); one inside the
    // window (Daily redelivers late) is answered and starts nothing new.
    let tid = stack.deliver(&m).await;
    let old = signed(&body, "1600000000");
    assert_eq!(
        post(&stack, body.clone(), &old).await,
        (
            401,
            json!({"detail": "Webhook timestamp outside the accepted window"})
        )
    );
    let (status, answer) = post(&stack, body.clone(), &signed(&body, &now)).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer == json!({"status": "ok"}) || answer == json!({"status": "ignored"}),
        "{answer}"
    );
    assert_eq!(
        stack
            .db
            .transcript_id_of_recording(&m.recording_id)
            .await
            .unwrap(),
        Some(tid.clone())
    );
    let runs = stack
        .client
        .count_workflows(
            format!("WorkflowId = '{}'", m.workflow_id),
            temporalio_client::WorkflowCountOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(runs.count(), 1, "the replay started nothing");
    reflow::runs::wait(&stack.client, &m.workflow_id)
        .await
        .unwrap();
    assert_eq!(stack.db.transcript(&tid).await.unwrap().status, "ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_tracks_fail_their_meeting_with_the_step_and_lose_nothing() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) = stack(false).await;
    let dir = tempfile::tempdir().unwrap();
    let good = voices(dir.path(), 1);
    let real = std::fs::read(&good[0].path).unwrap();
    let mut corpus: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("text", b"hello, this is not audio\n".repeat(40)),
        (
            "noise",
            (0..20_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("truncated", real[..real.len() / 3].to_vec()),
    ];
    // A WebM header and nothing after it.
    corpus.push(("header-only", real[..real.len().min(200)].to_vec()));
    let mut runs = Vec::new();
    for (i, (name, bytes)) in corpus.iter().enumerate() {
        let path = dir.path().join(format!("{name}.webm"));
        std::fs::write(&path, bytes).unwrap();
        let mut tracks = good.clone();
        tracks[0].path = path;
        let m = stack.meeting("badtrack", i, &tracks).await;
        let tid = stack.deliver(&m).await;
        runs.push((name, m, tid));
    }
    let mut outcomes = Vec::new();
    for (name, m, tid) in &runs {
        let out = tokio::time::timeout(
            Duration::from_secs(300),
            reflow::runs::wait(&stack.client, &m.workflow_id),
        )
        .await
        .expect("the run ends");
        let t = stack.db.transcript(tid).await.unwrap();
        outcomes.push((
            name.to_string(),
            out.is_ok(),
            t.status.clone(),
            t.error.clone(),
        ));
        // The recording's track is still where Daily put it.
        let rec = stack.db.recording(&m.recording_id).await.unwrap().unwrap();
        let keys: Vec<String> =
            serde_json::from_str(rec.track_keys.as_deref().unwrap_or("[]")).unwrap_or_default();
        for k in keys {
            assert!(
                stack.recordings.exists(&k).await.unwrap(),
                "{name}: {k} kept"
            );
        }
    }
    eprintln!("{outcomes:#?}");
    for (name, ok, status, error) in &outcomes {
        // A truncated file still holds a few seconds of speech: it may be transcribed.
        if *name == "truncated" && *ok {
            assert_eq!(status, "ended");
            continue;
        }
        assert!(!ok, "{name} fails");
        assert_eq!(status, "error", "{name}");
        let why = error.clone().unwrap_or_default();
        assert!(
            why.contains("pad_track") && (why.contains("InvalidAudio") || why.contains("audio")),
            "{name}: the error names the step and the cause: {why}"
        );
    }

    // The worker still serves: a good meeting after the bad ones ends.
    let m = stack.meeting("badtrack", 99, &good).await;
    let (tid, out) = stack.run(&m).await;
    out.unwrap();
    assert_eq!(stack.db.transcript(&tid).await.unwrap().status, "ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_tracks_64_tracks_and_a_track_a_day_late() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) = stack(false).await;
    let dir = tempfile::tempdir().unwrap();
    let good = voices(dir.path(), 1);

    // A raw-tracks recording without a single track: acknowledged, nothing started.
    let m = stack.meeting("notracks", 0, &[]).await;
    let hook = format!("http://{}/v1/daily/webhook", stack.api);
    let (status, _) = stack
        .backends
        .daily
        .send_webhook(&hook, DAILY_SECRET, &m.webhook, false)
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack
            .db
            .transcript_id_of_recording(&m.recording_id)
            .await
            .unwrap(),
        None,
        "no transcript for a recording without tracks"
    );
    assert!(
        matches!(
            reflow::history::load(&stack.client, &m.workflow_id).await,
            Err(reflow::history::HistoryError::NotFound(_))
        ),
        "no run for a recording without tracks"
    );

    // 64 participants: one child workflow per track, every track transcribed once.
    let many: Vec<_> = (0..64).map(|_| good[0].clone()).collect();
    let m = stack.meeting("manytracks", 0, &many).await;
    let before = stack.backends.asr_calls().len();
    let (tid, out) = stack.run(&m).await;
    let out = out.unwrap_or_else(|e| panic!("64 tracks: {e}"));
    assert_eq!(stack.backends.asr_calls().len() - before, 64);
    let t = stack.db.transcript(&tid).await.unwrap();
    let speakers: Vec<Value> = serde_json::from_str(&t.participants).unwrap();
    assert_eq!(speakers.len(), 64, "{out}");
    assert_eq!(t.status, "ended", "{:?}", t.error);

    // A track whose first block is 28 hours into the recording: corrupt timestamps, refused
    // before a day of silence is written.
    let wav = reflow_tests::media::espeak(dir.path(), "late", "en-us", "I joined very late.");
    let late = dir.path().join("late.webm");
    reflow_tests::media::opus_webm(
        &wav,
        &late,
        "aresample=48000",
        &["-output_ts_offset", "100000"],
    );
    let mut tracks = good.clone();
    tracks.push(reflow_tests::meetings::Voice {
        path: late,
        offset_s: 100_000.0,
        end_s: 100_002.0,
    });
    let m = stack.meeting("daylate", 0, &tracks).await;
    let (tid, out) = stack.run(&m).await;
    let err = out.unwrap_err();
    assert!(err.to_string().contains("pad_track"), "{err}");
    let t = stack.db.transcript(&tid).await.unwrap();
    assert_eq!(t.status, "error");
    let why = t.error.unwrap_or_default();
    assert!(
        why.contains("pad_track")
            && why.contains("AudioDecodeError")
            && why.contains("corrupt timestamps"),
        "{why}"
    );
}

#[test]
fn path_traversal_keys_are_refused_by_storage() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = reflow_tests::storage();
    rt.block_on(async {
        store
            .put("t-safe/file.txt", b"kept".to_vec().into())
            .await
            .unwrap();
        for key in [
            "../etc/passwd",
            "t-safe/../../x",
            "/abs/key",
            "a//b",
            "a\\b",
            "",
        ] {
            let put = store.put(key, b"x".to_vec().into()).await;
            assert!(put.is_err(), "put {key:?} is refused");
            let msg = put.unwrap_err().to_string();
            assert!(msg.contains("key"), "{key:?}: {msg}");
            assert!(store.get(key).await.is_err(), "get {key:?} is refused");
        }
        assert_eq!(&store.get("t-safe/file.txt").await.unwrap()[..], b"kept");
    });
}

#[test]
fn invalid_pipeline_definitions_name_the_step_and_the_field() {
    let catalog = reflow_tests::registry();
    let catalog = catalog.catalog();
    let base = "name: P\nversion: 1\ntask_queue: q\n";
    for (yaml, expect) in [
        ("", "name"),
        ("name: [", "yaml"),
        (&format!("{base}steps: []\n")[..], "step"),
        (
            &format!("{base}steps:\n  - id: a\n    activity: no_such_activity\n")[..],
            "no_such_activity",
        ),
        (
            &format!("{base}steps:\n  - id: a\n    activity: sleep\n    needs: [ghost]\n")[..],
            "ghost",
        ),
        (
            &format!(
                "{base}steps:\n  - id: a\n    activity: sleep\n    needs: [b]\n  - id: b\n    activity: sleep\n    needs: [a]\n"
            )[..],
            "cycle",
        ),
        (
            &format!("{base}steps:\n  - id: a\n    activity: sleep\n    start_to_close: soon\n")[..],
            "start_to_close",
        ),
        (
            &format!(
                "{base}steps:\n  - id: a\n    activity: sleep\n    with: {{x: \"${{nope.value}}\"}}\n"
            )[..],
            "nope",
        ),
        (
            &format!(
                "{base}steps:\n  - id: a\n    activity: sleep\n  - id: a\n    activity: sleep\n"
            )[..],
            "duplicate",
        ),
    ] {
        let err = workflow::parse_and_validate("bad.yaml", yaml, catalog)
            .map(|_| ())
            .expect_err(yaml);
        let msg = err.to_string().to_lowercase();
        assert!(msg.contains(&expect.to_lowercase()), "{yaml:?} → {msg}");
    }
}
