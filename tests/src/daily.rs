//! The **Daily stand-in** (docs/contracts/daily.md §8): a local HTTP server implementing the parts
//! of Daily's REST API reflow calls, plus Daily's webhook-sending side, for tests. Daily itself
//! cannot be reached from here.
//!
//! - `GET /v1/recordings/{id}`, `GET /v1/recordings` (newest first, `limit` ≤ 100,
//!   `starting_after`/`ending_before` cursors, `{total_count, data}`), `GET
//!   /v1/meetings/{id}/participants` (by `joined_after`/`limit`, 404 when exhausted), `GET
//!   /v1/webhooks/{uuid}`; every one needs the configured bearer token (401 otherwise).
//! - Admin API under `/_standin` (never a Daily path): register recordings and participants,
//!   set faults (status, latency, hang, malformed JSON) per path prefix, read the request log.
//! - [`DailyStandIn::send_webhook`] posts an envelope to reflow signed exactly as Daily does
//!   (or with a wrong signature), counts consecutive failures and flips the webhook to
//!   `FAILED` at 3, like Daily's breaker.
//!
//! Tracks themselves are real objects the test uploads to a real S3-compatible server; the
//! stand-in only reports their keys.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

/// A fault injected on every request whose path starts with `path_prefix`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Fault {
    /// e.g. `/v1/recordings`.
    pub path_prefix: String,
    /// Answer this status instead.
    #[serde(default)]
    pub status: Option<u16>,
    /// Wait this long first.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Answer a body that is not JSON.
    #[serde(default)]
    pub malformed: bool,
    /// Apply this many times (default: always).
    #[serde(default)]
    pub times: Option<u32>,
    /// Apply to one matching request in this many (every `n`th; default: each one).
    #[serde(default)]
    pub one_in: Option<u32>,
    /// Matching requests seen so far (for `one_in`).
    #[serde(skip)]
    pub seen: u32,
}

#[derive(Default)]
struct DailyState {
    token: String,
    /// Newest first.
    recordings: Vec<Value>,
    participants: std::collections::BTreeMap<String, Vec<Value>>,
    faults: Vec<Fault>,
    requests: Vec<String>,
    webhook_state: String,
    failed_count: u64,
}

type Shared = Arc<Mutex<DailyState>>;

/// A running Daily stand-in.
#[derive(Clone)]
pub struct DailyStandIn {
    /// `http://127.0.0.1:PORT` (the API base reflow uses is `{url}/v1`).
    pub url: String,
    state: Shared,
}

impl DailyStandIn {
    /// Serve on a free loopback port, accepting `Bearer {token}`.
    pub async fn start(token: &str) -> Self {
        let state: Shared = Arc::new(Mutex::new(DailyState {
            token: token.to_owned(),
            webhook_state: "ACTIVE".into(),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/v1/recordings", get(list_recordings))
            .route("/v1/recordings/{id}", get(one_recording))
            .route("/v1/meetings/{id}/participants", get(participants))
            .route("/v1/webhooks/{uuid}", get(webhook))
            .route("/_standin/recordings", post(add_recording))
            .route(
                "/_standin/meetings/{id}/participants",
                post(add_participants),
            )
            .route("/_standin/faults", post(add_fault))
            .route("/_standin/requests", get(requests))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("Daily stand-in serves");
        });
        DailyStandIn { url, state }
    }

    /// The API base for `DAILY_API_URL`.
    pub fn api_url(&self) -> String {
        format!("{}/v1", self.url)
    }

    /// Register a recording (Daily's `GET /recordings/{id}` shape); the newest goes first.
    pub fn add_recording(&self, recording: Value) {
        self.state.lock().unwrap().recordings.insert(0, recording);
    }

    /// Register a meeting session's participants.
    pub fn add_participants(&self, mtg_session_id: &str, list: Vec<Value>) {
        self.state
            .lock()
            .unwrap()
            .participants
            .entry(mtg_session_id.to_owned())
            .or_default()
            .extend(list);
    }

    /// Inject a fault.
    pub fn fault(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push(fault);
    }

    /// Every API request so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The webhook's state as Daily would report it (`ACTIVE` / `FAILED`).
    pub fn webhook_state(&self) -> (String, u64) {
        let s = self.state.lock().unwrap();
        (s.webhook_state.clone(), s.failed_count)
    }

    /// Deliver `body` to `endpoint` as Daily does: `X-Webhook-Timestamp` (epoch seconds) and
    /// `X-Webhook-Signature` = base64 HMAC-SHA256 with the base64 `secret` (or a wrong
    /// signature when `tamper`). Counts consecutive non-2xx answers; at 3 the webhook is
    /// `FAILED`. Returns the status and the JSON answer.
    pub async fn send_webhook(
        &self,
        endpoint: &str,
        secret: &str,
        body: &str,
        tamper: bool,
    ) -> (u16, Value) {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let mut sig = ::activities::daily::signature::sign(secret, &ts, body.as_bytes())
            .expect("the secret is base64");
        if tamper {
            sig = ::activities::daily::signature::sign(secret, &ts, b"something else").unwrap();
        }
        let response = reqwest::Client::new()
            .post(endpoint)
            .header("X-Webhook-Timestamp", ts)
            .header("X-Webhook-Signature", sig)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_owned())
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("reflow answers the webhook");
        let status = response.status().as_u16();
        let json = response.json().await.unwrap_or(Value::Null);
        let mut s = self.state.lock().unwrap();
        if (200..300).contains(&status) {
            s.failed_count = 0;
        } else {
            s.failed_count += 1;
            if s.failed_count >= 3 {
                s.webhook_state = "FAILED".into();
            }
        }
        (status, json)
    }
}

/// Daily's `recording.ready-to-download` envelope for `recording` (its `GET` shape).
pub fn ready_to_download(recording: &Value) -> String {
    json!({
        "version": "1.0.0",
        "type": "recording.ready-to-download",
        "id": format!("evt-{}", recording["id"].as_str().unwrap_or("")),
        "event_ts": recording["start_ts"].as_i64().unwrap_or(0) + 60,
        "payload": {
            "recording_id": recording["id"],
            "room_name": recording["room_name"],
            "start_ts": recording["start_ts"],
            "status": "finished",
            "max_participants": recording["tracks"].as_array().map_or(0, Vec::len),
            "duration": recording["duration"],
            "type": "raw-tracks",
            "tracks": recording["tracks"],
        }
    })
    .to_string()
}

/// Check auth, log the request and apply any fault; `Some(response)` ends the request.
async fn gate(state: &Shared, headers: &HeaderMap, line: String) -> Option<Response> {
    let (fault, authorised) = {
        let mut s = state.lock().unwrap();
        s.requests.push(line.clone());
        let want = format!("Bearer {}", s.token);
        let authorised = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            == Some(&want);
        let path = line.split_once(' ').map_or("", |(_, p)| p);
        let fault = s
            .faults
            .iter_mut()
            .find(|f| path.starts_with(&f.path_prefix) && f.times != Some(0))
            .and_then(|f| {
                f.seen += 1;
                f.one_in.is_none_or(|n| f.seen % n.max(1) == 0).then_some(f)
            })
            .map(|f| {
                if let Some(t) = &mut f.times {
                    *t -= 1;
                }
                f.clone()
            });
        (fault, authorised)
    };
    if !authorised {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "authentication-error"})),
            )
                .into_response(),
        );
    }
    let fault = fault?;
    if let Some(ms) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if fault.malformed {
        return Some((StatusCode::OK, "{\"data\": [").into_response());
    }
    fault.status.map(|code| {
        (
            StatusCode::from_u16(code).expect("status"),
            axum::Json(json!({"error": "stand-in fault"})),
        )
            .into_response()
    })
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    starting_after: Option<String>,
    ending_before: Option<String>,
    joined_after: Option<String>,
}

async fn one_recording(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = gate(&state, &headers, format!("GET /v1/recordings/{id}")).await {
        return r;
    }
    let s = state.lock().unwrap();
    match s.recordings.iter().find(|r| r["id"] == id.as_str()) {
        Some(r) => axum::Json(r.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "not-found"})),
        )
            .into_response(),
    }
}

async fn list_recordings(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let line = format!(
        "GET /v1/recordings?limit={:?}&starting_after={:?}",
        q.limit, q.starting_after
    );
    if let Some(r) = gate(&state, &headers, line).await {
        return r;
    }
    let s = state.lock().unwrap();
    let limit = q.limit.unwrap_or(100).min(100);
    let all = &s.recordings;
    let position = |id: &str| all.iter().position(|r| r["id"] == id);
    let (from, to) = match (&q.starting_after, &q.ending_before) {
        (Some(after), _) => (position(after).map_or(all.len(), |p| p + 1), all.len()),
        (None, Some(before)) => (0, position(before).unwrap_or(0)),
        (None, None) => (0, all.len()),
    };
    let data: Vec<Value> = all[from..to].iter().take(limit).cloned().collect();
    axum::Json(json!({"total_count": all.len(), "data": data})).into_response()
}

async fn participants(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let line = format!(
        "GET /v1/meetings/{id}/participants?joined_after={:?}",
        q.joined_after
    );
    if let Some(r) = gate(&state, &headers, line).await {
        return r;
    }
    let s = state.lock().unwrap();
    let Some(all) = s.participants.get(&id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "not-found"})),
        )
            .into_response();
    };
    let from = match &q.joined_after {
        Some(after) => all
            .iter()
            .position(|p| p["participant_id"] == after.as_str())
            .map_or(all.len(), |p| p + 1),
        None => 0,
    };
    if from >= all.len() {
        // Daily answers 404 once the pages are exhausted.
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "not-found"})),
        )
            .into_response();
    }
    let data: Vec<Value> = all[from..]
        .iter()
        .take(q.limit.unwrap_or(100).min(100))
        .cloned()
        .collect();
    axum::Json(json!({"data": data})).into_response()
}

async fn webhook(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Response {
    if let Some(r) = gate(&state, &headers, format!("GET /v1/webhooks/{uuid}")).await {
        return r;
    }
    let s = state.lock().unwrap();
    axum::Json(json!({
        "uuid": uuid, "url": "", "state": s.webhook_state, "failedCount": s.failed_count,
        "eventTypes": ["recording.ready-to-download"],
    }))
    .into_response()
}

async fn add_recording(
    State(state): State<Shared>,
    axum::Json(r): axum::Json<Value>,
) -> StatusCode {
    state.lock().unwrap().recordings.insert(0, r);
    StatusCode::CREATED
}

async fn add_participants(
    State(state): State<Shared>,
    Path(id): Path<String>,
    axum::Json(list): axum::Json<Vec<Value>>,
) -> StatusCode {
    state
        .lock()
        .unwrap()
        .participants
        .entry(id)
        .or_default()
        .extend(list);
    StatusCode::CREATED
}

async fn add_fault(State(state): State<Shared>, axum::Json(f): axum::Json<Fault>) -> StatusCode {
    state.lock().unwrap().faults.push(f);
    StatusCode::CREATED
}

async fn requests(State(state): State<Shared>) -> axum::Json<Vec<String>> {
    axum::Json(state.lock().unwrap().requests.clone())
}
