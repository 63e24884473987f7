//! Security suite (issue: the API, the webhooks, the worker and Temporal history hold against
//! an attacker): each test tries an attack on the real server and worker, on runs of
//! `pipelines/diarization.yaml` with stand-in backends, and shows it refused.
//!
//! - a customer webhook that redirects to an internal (metadata) address is not followed and
//!   nothing of the internal answer reaches the failure text; a worker whose environment names
//!   a proxy delivers webhooks directly;
//! - every run route and transcript route against anonymous, another user, the owner, the
//!   operator and a share-link token;
//! - open mode (no credentials) on a non-loopback address refuses to start;
//! - a webhook URL with a token in its query failing while an anonymous viewer watches the
//!   transcript's socket: the viewer gets the step, the type and a safe message only;
//! - `write_report` asked to write outside the data directory;
//! - a client that never finishes its request head, one whose body stalls, and an oversized
//!   WebSocket message;
//! - with the payload codec on, the raw history of a completed meeting holds none of its
//!   participants' names or its title, the Web UI's codec request and `temporal workflow show
//!   --codec-endpoint` decode it, and a run started before a key rotation completes after it.
//! - [`slow_clients`]: silent sockets, half an HTTP/2 preface, idle HTTP/2 connections, one
//!   client taking every connection, and WebSockets over their caps;
//! - [`replay`]: Daily webhooks replayed outside their timestamp window or after the meeting
//!   ended or was deleted, an owner's retries of a paused, spent or locked step, and forced
//!   reprocessing in a loop.
//! - [`secrets`]: a customer webhook with a token in its query that cannot be reached, and a
//!   transcription service whose 422 quotes the presigned audio URL: neither secret reaches
//!   history, the database or the worker's log; with the codec on, failure texts are sealed;
//! - [`input`]: meeting speech cannot make the Zulip bot mention, link or break its fences, a
//!   display name cannot forge WebVTT cues, and `reflow process` reads only its directory.
//! - [`hygiene`]: secrets under 32 bytes refused at start, `SECRET_KEY` rotation, the codec
//!   cookie (derived, expiring, `Secure` over https), no `?token=` in the request log,
//!   `/metrics` for the operator and Prometheus only, sockets closed when access ends.
//! - [`temporal_boundary`]: with the codec required, a workflow started by hand with plaintext
//!   input runs nothing and its task failure says why; a sealed input copied from a run (or
//!   its child) into another workflow id is refused, naming both ids, before any step.

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use reflow::codec::PayloadEncryption;
use reflow::http::ApiState;
use reflow::http::auth::{sign, sign_audio_link};
use reflow_tests::InProcessWorker;
use reflow_tests::meetings::{Backends, QUEUES, Stack, short_timeouts, voices};
use reflow_tests::standins::Reply;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod hygiene;
mod input;
mod open_mode;
mod replay;
mod secrets;
mod slow_clients;
mod temporal_boundary;

const OPERATOR: &str = "operator-token-for-tests-at-least-32-bytes";
const SECRET: &str = "user-jwt-secret-for-tests-at-least-32-bytes";
const HOUR: Duration = Duration::from_secs(3600);

/// An API over `stack`'s database and events with credentials (and `codec`, if any).
async fn guarded_api(stack: &Stack, codec: Option<PayloadEncryption>) -> String {
    reflow_tests::serve_api(ApiState {
        api_token: Some(OPERATOR.into()),
        secret_key: Some(SECRET.into()),
        temporal: Some(stack.client.clone()),
        intake: Some(stack.intake.clone()),
        codec: codec.map(std::sync::Arc::new),
        ..ApiState::new(stack.events.clone(), stack.storage.clone())
    })
    .await
}

fn key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_redirect_to_an_internal_address_is_not_followed() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) =
        reflow_tests::meetings::in_process(Duration::from_millis(50), false).await;
    // The "metadata service": an internal host with a secret answer.
    let metadata = reflow_tests::standins::StandIn::start(|_| {
        Reply::Json(json!({"AccessKeyId": "INTERNAL-SECRET-ROLE"}))
    })
    .await;
    // A "public" receiver that answers 302 to it (allowed as a private host only because the
    // test runs on loopback; the internal host is `localhost`, which is not allowed).
    let internal = metadata.url.replace("127.0.0.1", "localhost");
    let app = axum::Router::new().fallback(move || {
        let to = format!("{internal}/latest/meta-data/iam/security-credentials/");
        async move {
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, to)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let m = stack.meeting("redirect", 0, &voices(dir.path(), 1)).await;
    stack
        .db
        .set_room_webhook_url("room-redirect-0", &format!("{public}/hook"))
        .await
        .unwrap();
    let (tid, out) = stack.run(&m).await;
    out.expect("a failed notification does not fail the meeting");
    assert_eq!(metadata.count(), 0, "the redirect was followed");
    let progress = stack.db.progress_events(&tid).await.unwrap();
    let hook = progress
        .iter()
        .find(|p| p["current_step"] == "send_webhook")
        .expect("a send_webhook state");
    let message = hook["message"].as_str().unwrap_or_default();
    assert_eq!(hook["step_status"], "failed", "{hook}");
    assert!(message.contains("redirects are not followed"), "{message}");
    assert!(!message.contains("INTERNAL-SECRET"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_ignores_the_proxy_environment() {
    let _one = reflow_tests::meetings::exclusive().await;
    let dir = tempfile::Builder::new()
        .prefix("reflow-proxy-")
        .tempdir()
        .unwrap()
        .keep();
    let db_url = format!("sqlite://{}/reflow.db", dir.display());
    let stack = Stack::start(
        &db_url,
        reflow_tests::client().await,
        Backends::start(Duration::from_millis(50)).await,
        false,
        short_timeouts(),
    )
    .await;
    // A proxy that would see (and could answer) whatever a client sends through it.
    let proxy = reflow_tests::standins::StandIn::start(|_| Reply::status(502)).await;
    let mut env = stack.worker_env(&reflow_tests::server().address, &dir.join("worker"));
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        env.push((var.into(), proxy.url.clone()));
    }
    // The backends on 127.0.0.1 are reached directly; the customer's host, `localhost`, would
    // go through the proxy with a client that reads the environment.
    env.push(("NO_PROXY".into(), "127.0.0.1".into()));
    env.push(("no_proxy".into(), "127.0.0.1".into()));
    env.push((
        "REFLOW_WEBHOOK_ALLOWED_PRIVATE_HOSTS".into(),
        "127.0.0.1,localhost".into(),
    ));
    let _worker = reflow_tests::meetings::WorkerProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_reflow-test-worker")),
        &QUEUES,
        &env,
        &dir.join("worker.log"),
    );
    let tracks = tempfile::tempdir().unwrap();
    let m = stack.meeting("proxy", 0, &voices(tracks.path(), 1)).await;
    let receiver = stack
        .backends
        .receiver
        .url
        .replace("127.0.0.1", "localhost");
    stack
        .db
        .set_room_webhook_url("room-proxy-0", &format!("{receiver}/hooks/reflow"))
        .await
        .unwrap();
    let (tid, out) = stack.run(&m).await;
    out.unwrap();
    assert_eq!(proxy.count(), 0, "a request went through the proxy");
    let hooks = stack.backends.webhooks();
    assert_eq!(
        hooks.get(&tid).map(|h| h.0.len()),
        Some(1),
        "delivered directly: {hooks:?}"
    );
}

/// Status of `request` sent with `token` as bearer (if any).
async fn status(request: reqwest::RequestBuilder, token: Option<&str>) -> u16 {
    let request = match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    };
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_and_transcripts_answer_only_whom_they_belong_to() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) =
        reflow_tests::meetings::in_process(Duration::from_millis(50), false).await;
    let dir = tempfile::tempdir().unwrap();
    let m = stack.meeting("access", 0, &voices(dir.path(), 2)).await;
    let (tid, out) = stack.run(&m).await;
    out.unwrap();
    let t = stack.db.transcript(&tid).await.unwrap();
    assert_eq!(t.user_id.as_deref(), Some("u-7"));
    // Room recordings are public by default; this one is made private by its owner.
    stack.db.set_share_mode(&tid, "private").await.unwrap();
    let api = guarded_api(&stack, None).await;
    let http = reqwest::Client::new();

    let owner = sign(SECRET, "u-7", HOUR);
    let stranger = sign(SECRET, "u-8", HOUR);
    let link = sign_audio_link(SECRET, &tid, HOUR);
    let child = format!("{}-track-0", m.workflow_id);
    let wf = |path: &str| format!("http://{api}/api/workflow/{path}");
    let routes: Vec<(String, bool)> = vec![
        (wf(&m.workflow_id), false),
        (wf(&format!("{}/status", m.workflow_id)), false),
        (wf(&format!("{}/graph.svg", m.workflow_id)), false),
        (wf(&child), false),
        (wf(&format!("{}/retry", m.workflow_id)), true),
    ];
    for (url, post) in &routes {
        let req = || if *post { http.post(url) } else { http.get(url) };
        // A completed run has nothing to retry: 409 means "allowed, and refused for cause".
        let allowed = if *post { 409 } else { 200 };
        assert_eq!(status(req(), None).await, 401, "anonymous {url}");
        assert_eq!(
            status(req(), Some(&stranger)).await,
            404,
            "another user {url}"
        );
        assert_eq!(status(req(), Some(&owner)).await, allowed, "owner {url}");
        assert_eq!(
            status(req(), Some(OPERATOR)).await,
            allowed,
            "operator {url}"
        );
        assert_eq!(
            status(req(), Some(&link)).await,
            401,
            "share link as bearer {url}"
        );
        let with_query = if *post {
            http.post(format!("{url}?token={link}"))
        } else {
            http.get(format!("{url}?token={link}"))
        };
        assert_eq!(
            status(with_query, None).await,
            401,
            "share link as ?token= {url}"
        );
    }
    // Another user cannot learn that a run exists: the same answer as for no run.
    assert_eq!(
        status(http.get(wf("diarization-no-such-run")), Some(&stranger)).await,
        404
    );

    // The transcript and its audio.
    let tr = format!("http://{api}/v1/transcripts/{tid}");
    assert_eq!(
        status(http.get(&tr), None).await,
        404,
        "private to anonymous"
    );
    assert_eq!(status(http.get(&tr), Some(&stranger)).await, 404);
    assert_eq!(status(http.get(&tr), Some(&owner)).await, 200);
    assert_eq!(status(http.get(&tr), Some(OPERATOR)).await, 200);
    assert_eq!(
        status(http.get(&tr), Some(&link)).await,
        401,
        "a link is no login"
    );
    let mp3 = format!("{tr}/audio/mp3");
    assert_eq!(
        status(http.get(format!("{mp3}?token={link}")), None).await,
        200
    );
    let user_as_link = sign(SECRET, &tid, HOUR);
    assert_eq!(
        status(http.get(format!("{mp3}?token={user_as_link}")), None).await,
        404,
        "a user token is no audio link"
    );
    // Share links are minted by the owner (or the operator) only, and open the audio.
    let mint = format!("{tr}/audio/link");
    assert_eq!(status(http.post(&mint), Some(&stranger)).await, 404);
    assert_eq!(status(http.post(&mint), None).await, 404);
    let minted: Value = http
        .post(&mint)
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = minted["url"].as_str().unwrap();
    assert_eq!(
        status(http.get(format!("http://{api}{url}")), None).await,
        200
    );
    // The transcript's socket refuses a private transcript to a share link.
    let ws = tokio_tungstenite::connect_async(format!(
        "ws://{api}/v1/transcripts/{tid}/events?token={link}"
    ))
    .await;
    assert!(ws.is_err(), "socket opened with a share link");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_refuses_a_non_loopback_address() {
    // The binary: it refuses before it ever talks to Temporal (the address is unreachable).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"))
        .args(["worker", "--queues", "reflow", "--http", "0.0.0.0:0"])
        .env("TEMPORAL_ADDRESS", "127.0.0.1:1")
        .env_remove("REFLOW_API_TOKEN")
        .env_remove("SECRET_KEY")
        .env_remove("REFLOW_ALLOW_OPEN_API")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("refusing to serve the HTTP API on 0.0.0.0:0 without credentials")
            && stderr.contains("REFLOW_API_TOKEN"),
        "{stderr}"
    );
    // The library: the same refusal; credentials, loopback or the opt-out let it serve.
    let db = temp_db().await;
    let state = |token: Option<&str>, open: bool| ApiState {
        api_token: token.map(Into::into),
        open_on_public_address: open,
        ..ApiState::new(
            activities::events::Events::new(db.clone(), Default::default(), Default::default()),
            reflow_tests::storage(),
        )
    };
    let public = "0.0.0.0:0".parse().unwrap();
    let e = reflow::http::serve(public, state(None, false), |_| {}, async {})
        .await
        .unwrap_err();
    assert!(
        matches!(e, reflow::http::ServeError::OpenOnPublicAddress(_)),
        "{e}"
    );
    for (addr, token, open) in [
        (public, Some(OPERATOR), false),
        ("127.0.0.1:0".parse().unwrap(), None, false),
        (public, None, true),
    ] {
        reflow::http::serve(addr, state(token, open), |_| {}, async {})
            .await
            .unwrap_or_else(|e| panic!("{addr} {token:?} {open}: {e}"));
    }
}

/// Every `PIPELINE_PROGRESS` message a socket receives until `STATUS ended` (or `quiet`).
async fn watch(url: &str, quiet: Duration) -> Vec<Value> {
    let url = url.to_owned();
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("socket");
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(quiet, ws.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            let ended = v["event"] == "STATUS" && v["data"]["value"] == "ended";
            out.push(v);
            if ended {
                break;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewers_who_are_not_the_operator_get_failures_redacted() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) =
        reflow_tests::meetings::in_process(Duration::from_millis(50), false).await;
    let api = guarded_api(&stack, None).await;
    let dir = tempfile::tempdir().unwrap();
    let m = stack.meeting("redact", 0, &voices(dir.path(), 1)).await;
    let token = "QUERY-TOKEN-s3cr3t";
    stack
        .db
        .set_room_webhook_url(
            "room-redact-0",
            &format!("{}/hooks/reflow?token={token}", stack.backends.receiver.url),
        )
        .await
        .unwrap();
    // The receiver refuses with a body that quotes internal detail.
    stack.backends.receiver.then(Reply::status(400));
    let tid = stack.deliver(&m).await;
    stack.db.set_share_mode(&tid, "public").await.unwrap();
    let socket = format!("ws://{api}/v1/transcripts/{tid}/events");
    let anonymous = tokio::spawn(async move { watch(&socket, Duration::from_secs(90)).await });
    reflow::runs::wait(&stack.client, &m.workflow_id)
        .await
        .unwrap();
    let seen = anonymous.await.unwrap();
    // And a viewer arriving afterwards gets the catch-up.
    let later = watch(
        &format!("ws://{api}/v1/transcripts/{tid}/events"),
        Duration::from_secs(3),
    )
    .await;
    let progress: Vec<&Value> = seen
        .iter()
        .chain(&later)
        .filter(|e| e["event"] == "PIPELINE_PROGRESS")
        .collect();
    let failed: Vec<&&Value> = progress
        .iter()
        .filter(|e| {
            e["data"]["current_step"] == "send_webhook" && e["data"]["step_status"] == "failed"
        })
        .collect();
    assert!(
        !failed.is_empty(),
        "the viewer saw the webhook fail: {progress:#?}"
    );
    for e in &failed {
        assert_eq!(
            e["data"]["message"], "HttpClientError: a service refused the request",
            "{e}"
        );
    }
    let everything = serde_json::to_string(&(&seen, &later)).unwrap();
    assert!(!everything.contains(token), "the token reached a viewer");
    assert!(
        !everything.contains("/hooks/reflow"),
        "the URL reached a viewer"
    );

    // The Conductor JSON: the owner sees the step and type, the operator the whole text.
    let http = reqwest::Client::new();
    let url = format!("http://{api}/api/workflow/{}", m.workflow_id);
    let as_owner: Value = http
        .get(&url)
        .bearer_auth(sign(SECRET, "u-7", HOUR))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let as_operator: Value = http
        .get(&url)
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reason = |v: &Value| {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["taskDefName"] == "send_webhook")
            .filter_map(|t| t["reasonForIncompletion"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let owner_reasons = reason(&as_owner);
    assert!(!owner_reasons.is_empty(), "{as_owner:#}");
    for r in &owner_reasons {
        assert_eq!(r, "HttpClientError: a service refused the request");
    }
    let operator_reasons = reason(&as_operator);
    assert!(
        operator_reasons
            .iter()
            .any(|r| r.contains("webhook POST") && r.contains("/hooks/reflow")),
        "{operator_reasons:?}"
    );
    // The token is in no failure text at all: the URL is shown without its query.
    assert!(!as_operator.to_string().contains(token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_report_refuses_paths_outside_the_data_directory() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) =
        reflow_tests::meetings::in_process(Duration::from_millis(50), false).await;
    let pipeline = reflow::runs::load_pipeline(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/digest.yaml"),
        reflow_tests::registry().catalog(),
    )
    .unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("authorized_keys");
    let id = format!("digest-escape-{}", std::process::id());
    let input = json!({
        "dir": std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines").display().to_string(),
        "report": target.display().to_string(),
    });
    reflow::runs::start(&stack.client, &pipeline, input, &id)
        .await
        .unwrap();
    let err = reflow::runs::wait(&stack.client, &id)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step \"report\"") && err.contains("AccessDenied"),
        "{err}"
    );
    assert!(err.contains("inside the data directory"), "{err}");
    assert!(
        !target.exists(),
        "a file was written outside the data directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_and_oversized_socket_messages_are_cut_off() {
    let db = temp_db().await;
    db.create_transcript(&activities::db::transcripts::NewTranscript {
        id: "t-pub".into(),
        share_mode: Some("public".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let api = reflow_tests::serve_api(ApiState {
        api_token: Some(OPERATOR.into()),
        ..ApiState::new(
            activities::events::Events::new(db, Default::default(), Default::default()),
            reflow_tests::storage(),
        )
    })
    .await;

    // A request head that never ends: the server hangs up after its header timeout.
    let mut slow = tokio::net::TcpStream::connect(&api).await.unwrap();
    slow.write_all(b"GET /v1/transcripts/t-pub HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was still open after 30 s");
    let waited = started.elapsed();
    assert!(
        waited <= reflow::http::limits::HEADER_READ_TIMEOUT + Duration::from_secs(5),
        "closed after {waited:?}"
    );
    // A body that stops arriving: the request fails once the body has been silent for the
    // body timeout, and the connection is given back.
    let mut stalled = tokio::net::TcpStream::connect(&api).await.unwrap();
    stalled
        .write_all(
            b"POST /v1/daily/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"type\": ",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        reflow::http::limits::BODY_READ_TIMEOUT + Duration::from_secs(10),
        stalled.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "a stalled body held the connection");
    assert!(started.elapsed() >= reflow::http::limits::BODY_READ_TIMEOUT - Duration::from_secs(1));
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || !answer.starts_with("HTTP/1.1 200"),
        "a stalled body was accepted: {answer}"
    );
    // Meanwhile the server answers others.
    let ok = reqwest::get(format!("http://{api}/v1/transcripts/t-pub"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // A WebSocket message far over the limit closes that socket; the server stays up.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{api}/v1/transcripts/t-pub/events"))
            .await
            .unwrap();
    let big = "x".repeat(4 * 1024 * 1024);
    let _ = ws
        .send(tokio_tungstenite::tungstenite::Message::Text(big.into()))
        .await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                    return frame.map(|f| u16::from(f.code));
                }
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the socket is closed within 10 s");
    if let Some(code) = ended {
        assert_eq!(code, 1009, "closed as 'message too big'");
    }
    let ok = reqwest::get(format!("http://{api}/v1/transcripts/t-pub"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

/// A payload of a history: encoding, key id, data (base64-decoded), and its JSON as the
/// server gave it.
type Found = (String, String, Vec<u8>, Value);

/// Every payload of a history JSON (an object with `metadata` and `data`), outside search
/// attributes.
fn payloads(v: &Value, in_search_attributes: bool, out: &mut Vec<Found>) {
    let b64 = base64::engine::general_purpose::STANDARD;
    match v {
        Value::Object(map) => {
            if let (Some(Value::Object(meta)), Some(Value::String(data))) =
                (map.get("metadata"), map.get("data"))
                && !in_search_attributes
            {
                let field = |k: &str| {
                    meta.get(k)
                        .and_then(Value::as_str)
                        .and_then(|s| b64.decode(s).ok())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                };
                out.push((
                    field("encoding"),
                    field("encryption-key-id"),
                    b64.decode(data).unwrap_or_default(),
                    v.clone(),
                ));
                return;
            }
            for (k, field) in map {
                let sa = matches!(k.as_str(), "search_attributes" | "searchAttributes");
                payloads(field, in_search_attributes || sa, out);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|i| payloads(i, in_search_attributes, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn meeting_content_is_encrypted_in_history_and_keys_rotate_mid_run() {
    let _one = reflow_tests::meetings::exclusive().await;
    let old = PayloadEncryption::from_spec(&format!("k1:{}", key(1)), false).unwrap();
    let rotated =
        PayloadEncryption::from_spec(&format!("k2:{},k1:{}", key(2), key(1)), true).unwrap();
    let address = reflow_tests::server().address.clone();
    let connect = |converter| {
        let address = address.clone();
        async move {
            reflow::temporal::connect_with(&address, "default", Duration::from_secs(20), converter)
                .await
                .unwrap()
        }
    };
    let dir = tempfile::Builder::new()
        .prefix("reflow-codec-db-")
        .tempdir()
        .unwrap();
    let db_url = format!("sqlite://{}/reflow.db", dir.path().display());
    // Transcription takes 3 s a track, so the rotation falls in the middle of the run.
    let backends = Backends::start(Duration::from_secs(3)).await;
    let stack = Stack::start(
        &db_url,
        connect(old.data_converter()).await,
        backends,
        false,
        short_timeouts(),
    )
    .await;
    let queues: Vec<String> = QUEUES.iter().map(|q| q.to_string()).collect();
    let worker =
        InProcessWorker::start_with_converter(&queues, stack.services(100), old.data_converter());
    let tracks = tempfile::tempdir().unwrap();
    let m = stack.meeting("codec", 0, &voices(tracks.path(), 2)).await;
    let tid = stack.deliver(&m).await;
    // Rotate once the speakers are known: stop the old worker (it drains), start the new one.
    let plain = reflow_tests::client().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let history = raw_history(&plain, &m.workflow_id).await;
        if history.contains("get_participants") && history.contains("ActivityTaskCompleted") {
            let done = history
                .matches("ActivityTaskCompletedEventAttributes")
                .count();
            if done >= 2 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the run never got going");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(worker);
    let _worker = InProcessWorker::start_with_converter(
        &queues,
        stack.services(100),
        rotated.data_converter(),
    );
    let reader = connect(rotated.data_converter()).await;
    tokio::time::timeout(
        Duration::from_secs(300),
        reflow::runs::wait(&reader, &m.workflow_id),
    )
    .await
    .expect("the run ends")
    .expect("the run completes after the rotation");

    let t = stack.db.transcript(&tid).await.unwrap();
    assert_eq!(t.status, "ended");
    let mut secrets: Vec<String> = serde_json::from_str::<Vec<Value>>(&t.participants)
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    assert!(!secrets.is_empty());
    if let Some(title) = t.title.clone().filter(|t| t.len() >= 6) {
        secrets.push(title);
    }
    // The raw history (read without the codec, as Temporal's database holds it).
    let mut found = Vec::new();
    for id in [m.workflow_id.clone(), format!("{}-track-0", m.workflow_id)] {
        let raw: Value = serde_json::from_str(&raw_history(&plain, &id).await).unwrap();
        payloads(&raw, false, &mut found);
    }
    assert!(found.len() > 20, "{} payloads", found.len());
    // Sealed: everything the SDK and the client send. Core's own bookkeeping (local-activity
    // and patch markers' descriptors) is not passed to codecs; it holds ids and types only,
    // which the loop below checks like every other payload.
    let sealed = found
        .iter()
        .filter(|(e, ..)| e == "binary/encrypted")
        .count();
    assert!(
        sealed * 2 > found.len(),
        "{sealed} of {} payloads sealed",
        found.len()
    );
    let ids: std::collections::BTreeSet<&str> = found.iter().map(|(_, k, ..)| k.as_str()).collect();
    assert!(
        ids.contains("k1") && ids.contains("k2"),
        "sealed before and after the rotation: {ids:?}"
    );
    for (_, _, data, _) in &found {
        let text = String::from_utf8_lossy(data);
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{s:?} in clear in the history");
        }
    }
    // The history as reflow reads it (codec on) has them.
    let decoded = reflow::history::load(&reader, &m.workflow_id)
        .await
        .unwrap();
    assert!(
        format!("{decoded:?}").contains(secrets[0].as_str()),
        "the decoded history names the participants"
    );

    // The Web UI's remote codec request: preflight, then decode with the operator's token.
    let api = guarded_api(&stack, Some(rotated.clone())).await;
    let http = reqwest::Client::new();
    let preflight = http
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{api}/codec/decode"),
        )
        .header("Origin", "http://localhost:8233")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type,x-namespace,authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://localhost:8233"
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    // The payloads as the UI has them: straight from the server's history.
    let request: Vec<Value> = found
        .iter()
        .filter(|(e, ..)| e == "binary/encrypted")
        .take(40)
        .map(|(.., raw)| raw.clone())
        .collect();
    let body = json!({ "payloads": request });
    let decode = |token: Option<&str>| {
        let mut r = http
            .post(format!("http://{api}/codec/decode"))
            .header("Origin", "http://localhost:8233")
            .header("X-Namespace", "default")
            .json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(decode(None).await.unwrap().status(), 401);
    assert_eq!(
        decode(Some(&sign(SECRET, "u-7", HOUR)))
            .await
            .unwrap()
            .status(),
        403
    );
    let answer = decode(Some(OPERATOR)).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "http://localhost:8233"
    );
    let answer: Value = answer.json().await.unwrap();
    let texts: Vec<String> = answer["payloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            String::from_utf8_lossy(&b64.decode(p["data"].as_str().unwrap()).unwrap()).into_owned()
        })
        .collect();
    assert_eq!(texts.len(), request.len());
    assert!(
        texts
            .iter()
            .any(|t| t.contains("diarization") || t.contains(&tid)),
        "{texts:?}"
    );

    // The Web UI cannot send reflow's token: the operator unlocks the browser once, and the
    // UI's credentialed request carries the session cookie.
    let unlock = |token: &str| {
        http.post(format!("http://{api}/codec/session"))
            .form(&[("token", token)])
            .send()
    };
    assert_eq!(unlock("wrong").await.unwrap().status(), 401);
    let unlocked = unlock(OPERATOR).await.unwrap();
    assert_eq!(unlocked.status(), 200);
    let cookie = unlocked.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let by_cookie = http
        .post(format!("http://{api}/codec/decode"))
        .header("Origin", "http://localhost:8233")
        .header("Cookie", &pair)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), 200);
    assert_eq!(
        by_cookie.headers()["access-control-allow-credentials"],
        "true"
    );
    let forged = http
        .post(format!("http://{api}/codec/decode"))
        .header("Cookie", "reflow_codec_operator=guess")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // The operator's CLI through the same endpoint, and without it.
    let endpoint = format!("http://{api}/codec");
    let auth = format!("Bearer {OPERATOR}");
    let show = |codec: bool| {
        let mut cmd = std::process::Command::new(reflow_tests::temporal_cli());
        cmd.args(["workflow", "show", "--address", &address]).args([
            "--workflow-id",
            &m.workflow_id,
            "--output",
            "json",
        ]);
        if codec {
            cmd.args(["--codec-endpoint", &endpoint, "--codec-auth", &auth]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON from the CLI");
        let mut all = Vec::new();
        payloads(&v, false, &mut all);
        all.iter()
            .any(|(_, _, d, _)| String::from_utf8_lossy(d).contains(secrets[0].as_str()))
    };
    assert!(show(true), "the CLI shows decoded payloads");
    assert!(!show(false), "names in clear without the codec");
}

async fn raw_history(client: &temporalio_client::Client, id: &str) -> String {
    use temporalio_client::{UntypedWorkflow, WorkflowFetchHistoryOptions};
    let bytes = client
        .get_workflow_handle::<UntypedWorkflow>(id)
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap()
}

/// A fresh SQLite database in a directory that outlives the test.
async fn temp_db() -> activities::db::Db {
    let dir = tempfile::Builder::new()
        .prefix("reflow-security-db-")
        .tempdir()
        .unwrap()
        .keep();
    activities::db::Db::connect(&format!("sqlite://{}/reflow.db", dir.display()))
        .await
        .unwrap()
}
