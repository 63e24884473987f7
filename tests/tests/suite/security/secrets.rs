//! Secrets in failure texts (issue 39, item 3): a failure's text travels further than its
//! step. It is written to Temporal's history (outside the payloads, so in clear even with the
//! payload codec unless the failure converter seals it), to `step_attempt.failure_message`,
//! to the transcript's `error`, to its events and to the worker's log.
//!
//! - a customer webhook `http://127.0.0.1:1/h?token=…` that refuses the connection, and a
//!   transcription service that answers 422 quoting the request (the presigned audio URL) in
//!   its body: neither the token nor the URL's signature or credential reaches any history
//!   event, database row or log line of the worker process, in clear, URL-encoded or base64;
//! - with the payload codec on, the failure texts themselves are sealed in history, and reflow
//!   (the run's failure, `mark_failed`, the decoded history) still reads them.

use std::sync::{Arc, Mutex};

use base64::Engine as _;

use super::*;

/// The meeting pipeline with short timeouts and `send_webhook` tried 3 times, not 31 (whose
/// backoff would keep the run open for hours): the graph, queues and every other policy are
/// production's.
fn pipeline_webhook_tried_thrice() -> workflow::Pipeline {
    let yaml = reflow_tests::meetings::short_timeouts_yaml();
    assert_eq!(yaml.matches("maximum_attempts: 31").count(), 1);
    let yaml = yaml.replace("maximum_attempts: 31", "maximum_attempts: 3");
    workflow::parse_and_validate(
        "diarization.yaml",
        &yaml,
        reflow_tests::registry().catalog(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A `gpu-url` transcription service: while `refusing`, it answers 422 with a FastAPI-style
/// body that quotes the request's audio URL (as validation errors do); otherwise the stand-in
/// words. Every audio URL it is sent is kept.
#[derive(Clone)]
struct EchoingAsr {
    url: String,
    refusing: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl EchoingAsr {
    async fn start() -> Self {
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (r, s) = (refusing.clone(), seen.clone());
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let (refusing, seen) = (r.clone(), s.clone());
            async move {
                let request: Value = serde_json::from_slice(&body).unwrap_or_default();
                let audio = request["audio_file_url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().unwrap().push(audio.clone());
                if refusing.load(std::sync::atomic::Ordering::SeqCst) {
                    let answer = json!({"detail": [{
                        "input": audio,
                        "loc": ["body", "audio_file_url"],
                        "msg": "Input should be a reachable URL",
                        "type": "url_parsing",
                        "request": request,
                    }]});
                    return (
                        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                        axum::Json(answer),
                    );
                }
                let key = url::Url::parse(&audio)
                    .map(|u| {
                        let path = u.path().trim_start_matches('/').to_owned();
                        path.split_once('/')
                            .map_or(path.clone(), |(_, k)| k.to_owned())
                    })
                    .unwrap_or_default();
                (
                    axum::http::StatusCode::OK,
                    axum::Json(reflow_tests::meetings::asr_words(&key)),
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        EchoingAsr {
            url,
            refusing,
            seen,
        }
    }

    fn answer_words(&self) {
        self.refusing
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// The secrets of the presigned URLs it was sent: each signature, and each credential as
    /// the URL spells it (percent-encoded).
    fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for audio in self.seen.lock().unwrap().iter() {
            let query = audio.split_once('?').map(|(_, q)| q).unwrap_or_default();
            for pair in query.split('&') {
                if let Some((k, v)) = pair.split_once('=')
                    && matches!(k, "X-Amz-Signature" | "X-Amz-Credential")
                {
                    out.push(v.to_owned());
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// `secret` as it may appear elsewhere: as is, URL-encoded, and base64 (standard and URL-safe)
/// at each of the three byte alignments it can have inside a longer encoded text (the
/// characters that depend on its bytes alone).
fn encoded_forms(secret: &str) -> Vec<String> {
    let mut out = vec![
        secret.to_owned(),
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
    ];
    for engine in [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for shift in 0..3 {
            let mut bytes = vec![b'x'; shift];
            bytes.extend_from_slice(secret.as_bytes());
            let encoded = engine.encode(&bytes);
            let skip = if shift == 0 { 0 } else { 4 };
            let keep = encoded.len().saturating_sub(4);
            if keep > skip + 8 {
                out.push(encoded[skip..keep].to_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Every place `secrets` (in any [`encoded_forms`]) occurs in `texts` (name, text).
fn leaks(secrets: &[String], texts: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for s in secrets {
        for form in encoded_forms(s) {
            for (name, text) in texts {
                if let Some(at) = text.find(&form) {
                    let from = text[..at]
                        .char_indices()
                        .rev()
                        .nth(200)
                        .map_or(0, |(i, _)| i);
                    let to = (at + form.len() + 80).min(text.len());
                    let to = (to..=text.len())
                        .find(|i| text.is_char_boundary(*i))
                        .unwrap_or(text.len());
                    out.push(format!(
                        "{form:?} (of {s:?}) in {name}: …{}…",
                        &text[from..to]
                    ));
                }
            }
        }
    }
    out
}

/// A history as Temporal's database holds it: the JSON, and every payload's data decoded.
async fn history_texts(client: &temporalio_client::Client, id: &str) -> Vec<(String, String)> {
    let raw = raw_history(client, id).await;
    assert!(raw.contains("WorkflowExecutionStarted"), "{id}: {raw}");
    let mut found = Vec::new();
    payloads(&serde_json::from_str(&raw).unwrap(), false, &mut found);
    let decoded: String = found
        .iter()
        .map(|(.., data, _)| String::from_utf8_lossy(data).into_owned() + "\n")
        .collect();
    vec![
        (format!("history of {id}"), raw),
        (format!("payloads of {id}"), decoded),
    ]
}

/// Everything reflow's database holds about a run: its attempts, its transcript, its events
/// and its progress rows.
async fn database_texts(
    db: &activities::db::Db,
    workflow_ids: &[String],
    transcript_id: &str,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for id in workflow_ids {
        let attempts = db.attempts(id).await.unwrap();
        out.push((
            format!("step_attempt of {id}"),
            serde_json::to_string(&attempts).unwrap(),
        ));
    }
    out.push((
        format!("transcript {transcript_id}"),
        format!("{:?}", db.transcript(transcript_id).await.unwrap()),
    ));
    out.push((
        format!("events of {transcript_id}"),
        format!("{:?}", db.events(transcript_id, 0).await.unwrap()),
    ));
    out.push((
        format!("progress of {transcript_id}"),
        format!("{:?}", db.progress_events(transcript_id).await.unwrap()),
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failure_texts_carry_no_token_signature_or_upstream_answer() {
    let _one = reflow_tests::meetings::exclusive().await;
    let dir = tempfile::Builder::new()
        .prefix("reflow-secrets-")
        .tempdir()
        .unwrap()
        .keep();
    let db_url = format!("sqlite://{}/reflow.db", dir.display());
    let stack = Stack::start(
        &db_url,
        reflow_tests::client().await,
        Backends::start(Duration::from_millis(50)).await,
        false,
        pipeline_webhook_tried_thrice(),
    )
    .await;
    let asr = EchoingAsr::start().await;
    // A worker process, as in production, whose log is kept (at `info`, more than the
    // default `warn` shows).
    let mut env = stack.worker_env(&reflow_tests::server().address, &dir.join("worker"));
    for (k, v) in &mut env {
        match k.as_str() {
            "TRANSCRIPT_URL" => *v = asr.url.clone(),
            "RUST_LOG" => *v = "info".into(),
            _ => {}
        }
    }
    env.push(("NO_COLOR".into(), "1".into()));
    let log = dir.join("worker.log");
    let _worker = reflow_tests::meetings::WorkerProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_reflow-test-worker")),
        &QUEUES,
        &env,
        &log,
    );
    let tracks = tempfile::tempdir().unwrap();

    // 1. The transcription service refuses with the presigned URL quoted: the run fails.
    let refused = stack.meeting("leakasr", 0, &voices(tracks.path(), 1)).await;
    let (refused_tid, out) = stack.run(&refused).await;
    let err = out.expect_err("a refused transcription fails the run");
    let signed = asr.secrets();
    assert!(
        signed.len() >= 2,
        "the service saw presigned URLs: {:?}",
        asr.seen.lock().unwrap()
    );
    let transcribe = stack
        .db
        .attempts(&format!("{}-track-0", refused.workflow_id))
        .await
        .unwrap();
    let failed = transcribe
        .iter()
        .find(|a| a.activity_type == "transcribe_track")
        .expect("a transcribe_track attempt");
    assert_eq!(failed.failure_type.as_deref(), Some("HttpClientError"));
    let message = failed.failure_message.clone().unwrap_or_default();
    assert!(
        message.contains("HTTP 422 Unprocessable Entity"),
        "the status is kept: {message}"
    );
    assert!(
        !message.contains("Input should be") && !message.contains("audio_file_url"),
        "nothing of the answer's body: {message}"
    );
    assert!(err.to_string().contains("HTTP 422"), "{err}");

    // 2. The customer's webhook cannot be reached: the run completes, the delivery failed.
    asr.answer_words();
    let token = format!("S3CRET-{}-customer-hook-token", std::process::id());
    let hooked = stack
        .meeting("leakhook", 0, &voices(tracks.path(), 1))
        .await;
    stack
        .db
        .set_room_webhook_url(
            "room-leakhook-0",
            &format!("http://127.0.0.1:1/h?token={token}"),
        )
        .await
        .unwrap();
    let (hooked_tid, out) = stack.run(&hooked).await;
    out.expect("a failed notification does not fail the meeting");
    let hook_attempts = stack.db.attempts(&hooked.workflow_id).await.unwrap();
    let hook_failures: Vec<&str> = hook_attempts
        .iter()
        .filter(|a| a.activity_type == "send_webhook")
        .filter_map(|a| a.failure_message.as_deref())
        .collect();
    assert_eq!(hook_failures.len(), 3, "{hook_attempts:#?}");
    for m in &hook_failures {
        assert!(
            m.contains("webhook POST http://127.0.0.1:1/h: cannot connect")
                && m.contains("onnection refused"),
            "the failure says what and why: {m}"
        );
    }

    // Nothing of either secret anywhere the failures went.
    let plain = reflow_tests::client().await;
    let mut texts = Vec::new();
    let mut ids = Vec::new();
    for m in [&refused, &hooked] {
        ids.push(m.workflow_id.clone());
        ids.push(format!("{}-track-0", m.workflow_id));
    }
    for id in &ids {
        texts.extend(history_texts(&plain, id).await);
    }
    texts.extend(database_texts(&stack.db, &ids, &refused_tid).await);
    texts.extend(database_texts(&stack.db, &ids, &hooked_tid).await);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("attempt failed"),
        "the worker logged the failures: {logged}"
    );
    texts.push(("the worker's log".into(), logged));
    let mut secrets = signed.clone();
    secrets.push(token.clone());
    let found = leaks(&secrets, &texts);
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
    // The checks look where the failures are: each text names its step's failure.
    let everything: String = texts.iter().map(|(_, t)| t.as_str()).collect();
    assert!(everything.contains("HTTP 422 Unprocessable Entity"));
    assert!(everything.contains("cannot connect"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failure_texts_are_sealed_in_history_with_the_codec() {
    let _one = reflow_tests::meetings::exclusive().await;
    let codec = PayloadEncryption::from_spec(&format!("k1:{}", key(7)), false).unwrap();
    let address = reflow_tests::server().address.clone();
    let client = reflow::temporal::connect_with(
        &address,
        "default",
        Duration::from_secs(20),
        codec.data_converter(),
    )
    .await
    .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("reflow-sealed-failures-")
        .tempdir()
        .unwrap()
        .keep();
    let stack = Stack::start(
        &format!("sqlite://{}/reflow.db", dir.display()),
        client,
        Backends::start(Duration::from_millis(50)).await,
        false,
        short_timeouts(),
    )
    .await;
    let asr = EchoingAsr::start().await;
    let mut services = stack.services(100);
    services.transcriber = Arc::new(activities::asr::Transcriber::new(
        activities::asr::AsrConfig::Remote(activities::asr::remote::RemoteAsr {
            api: activities::asr::remote::Api::GpuUrl,
            url: asr.url.clone(),
            api_key: None,
            model: None,
            timeout: None,
        }),
    ));
    let queues: Vec<String> = QUEUES.iter().map(|q| q.to_string()).collect();
    let _worker = InProcessWorker::start_with_converter(&queues, services, codec.data_converter());
    let tracks = tempfile::tempdir().unwrap();
    let m = stack
        .meeting("sealedfail", 0, &voices(tracks.path(), 1))
        .await;
    let (tid, out) = stack.run(&m).await;

    // reflow reads the failure: the run's failure, `mark_failed`'s row, the decoded history.
    let err = out
        .expect_err("a refused transcription fails the run")
        .to_string();
    assert!(
        err.contains("transcribe_track") && err.contains("HTTP 422"),
        "{err}"
    );
    let t = stack.db.transcript(&tid).await.unwrap();
    assert_eq!(t.status, "error");
    let error = t.error.clone().unwrap_or_default();
    assert!(
        error.contains("HttpClientError") && error.contains("HTTP 422"),
        "mark_failed was told the failure: {error}"
    );
    let child = format!("{}-track-0", m.workflow_id);
    // The parent's history, decoded: the child's failure is its cause. (The child's own
    // description does not load with a codec: the SDK's client decodes a workflow's user
    // metadata, which children carry as their summary, before opening it.)
    let decoded = reflow::history::load(&stack.client, &m.workflow_id)
        .await
        .unwrap();
    assert!(
        format!("{decoded:?}").contains("HTTP 422 Unprocessable Entity"),
        "{decoded:?}"
    );

    // Temporal's copy holds none of it in clear.
    let plain = reflow_tests::client().await;
    for id in [&m.workflow_id, &child] {
        let texts = history_texts(&plain, id).await;
        let raw = &texts[0].1;
        assert!(raw.contains("Encoded failure"), "{id}: {raw}");
        for (name, text) in &texts {
            for clear in ["HTTP 422", "Unprocessable", asr.url.as_str()] {
                assert!(!text.contains(clear), "{clear:?} in clear in the {name}");
            }
        }
    }
}
