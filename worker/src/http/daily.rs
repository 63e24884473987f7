//! `POST /v1/daily/webhook` (docs/contracts/daily.md §3): verify Daily's signature over the raw
//! body, then hand `recording.ready-to-download` raw-tracks recordings to intake.
//!
//! Every condition that is ours answers 200 (unknown types `ignored`, internal failures
//! `deferred`), because Daily disables a webhook after three failed deliveries; only a bad
//! signature (401) and a malformed body (422) are the sender's fault. Intake writes rows and
//! starts a workflow; it never waits for the pipeline.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::ApiState;
use crate::intake::Discovered;

/// Largest webhook body accepted (axum's default extractor limit, 2 MiB). A larger declared
/// `Content-Length` is answered 413 at once, before any of the body is read.
const WEBHOOK_BODY_LIMIT: usize = 2 << 20;

/// The routes of this module.
pub fn routes() -> Router<ApiState> {
    Router::new().route(
        "/v1/daily/webhook",
        post(webhook).layer(tower_http::limit::RequestBodyLimitLayer::new(
            WEBHOOK_BODY_LIMIT,
        )),
    )
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn webhook(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    // Daily's test ping, sent when a webhook is created, is accepted signed or not.
    if serde_json::from_slice::<Value>(&body).ok() == Some(json!({"test": "test"})) {
        activities::metrics::daily_webhook("test");
        return reply(StatusCode::OK, json!({"status": "ok"}));
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !activities::daily::signature::verify(
        state.daily_webhook_secret.as_deref(),
        header("x-webhook-timestamp"),
        header("x-webhook-signature"),
        &body,
    ) {
        tracing::warn!("Daily webhook with a bad or missing signature refused");
        activities::metrics::daily_webhook("bad_signature");
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"detail": "Invalid webhook signature"}),
        );
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        activities::metrics::daily_webhook("bad_payload");
        return reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"detail": "Invalid JSON"}),
        );
    };
    let (Some(kind), Some(payload)) = (
        event.get("type").and_then(Value::as_str),
        event.get("payload").filter(|p| p.is_object()),
    ) else {
        activities::metrics::daily_webhook("bad_payload");
        return reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"detail": "Invalid event format"}),
        );
    };
    let ok = || {
        activities::metrics::daily_webhook("ok");
        reply(StatusCode::OK, json!({"status": "ok"}))
    };
    match kind {
        "recording.ready-to-download" => ready(&state, payload).await,
        "recording.started" => {
            tracing::info!(recording_id = ?payload.get("recording_id"), room = ?payload.get("room_name"), "Daily recording started");
            ok()
        }
        "recording.error" => {
            tracing::error!(recording_id = ?payload.get("recording_id"), error = ?payload.get("error_msg"), "Daily recording error");
            ok()
        }
        "participant.joined" | "participant.left" => ok(),
        other => {
            tracing::debug!(event = other, "Daily event ignored");
            activities::metrics::daily_webhook("ignored");
            reply(StatusCode::OK, json!({"status": "ignored"}))
        }
    }
}

async fn ready(state: &ApiState, payload: &Value) -> Response {
    let s = |k: &str| payload.get(k).and_then(Value::as_str).map(str::to_owned);
    let tracks: Vec<&Value> = payload
        .get("tracks")
        .and_then(Value::as_array)
        .map(|t| t.iter().collect())
        .unwrap_or_default();
    let kind = s("type");
    if kind.as_deref() == Some("cloud") || (kind.is_none() && tracks.is_empty()) {
        tracing::info!(recording_id = ?s("recording_id"), "cloud recording: not transcribed");
        activities::metrics::daily_webhook("ok");
        return reply(StatusCode::OK, json!({"status": "ok"}));
    }
    let (Some(recording_id), Some(room_name)) = (s("recording_id"), s("room_name")) else {
        activities::metrics::daily_webhook("bad_payload");
        return reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"detail": "Invalid event format"}),
        );
    };
    let start_ts = payload
        .get("start_ts")
        .and_then(Value::as_f64)
        .map_or(0, |t| t as i64);
    let track_keys = tracks
        .iter()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("audio"))
        .filter_map(|t| t.get("s3Key").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let Some(intake) = &state.intake else {
        tracing::error!(%recording_id, "no intake configured (Temporal unreachable?); deferred to polling");
        activities::metrics::daily_webhook("deferred");
        return reply(StatusCode::OK, json!({"status": "deferred"}));
    };
    let discovered = Discovered {
        recording_id: recording_id.clone(),
        room_name,
        start_ts,
        track_keys,
    };
    match intake.intake(&discovered).await {
        Ok(outcome) => {
            tracing::info!(%recording_id, ?outcome, "Daily recording taken in");
            activities::metrics::daily_webhook("ok");
            reply(StatusCode::OK, json!({"status": "ok"}))
        }
        Err(e) => {
            tracing::error!(%recording_id, error = %e, "intake failed; deferred to polling");
            activities::metrics::daily_webhook("deferred");
            reply(StatusCode::OK, json!({"status": "deferred"}))
        }
    }
}
