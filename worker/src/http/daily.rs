//! `POST /v1/daily/webhook` (docs/contracts/daily.md §3): verify Daily's signature over the raw
//! body, then hand `recording.ready-to-download` raw-tracks recordings to intake.
//!
//! Every condition that is ours answers 200 (unknown types `ignored`, internal failures
//! `deferred`), because Daily disables a webhook after three failed deliveries; only a bad
//! signature (401) and a malformed body (422) are the sender's fault. Intake writes rows and
//! starts a workflow; it never waits for the pipeline, and waits for Temporal at most
//! [`crate::intake::START_TIMEOUT`]: a recording whose run Temporal did not start (unreachable,
//! or older runs still waiting for the loop) is answered `queued` and started by the backlog loop
//! ([`crate::backlog`]) once Temporal answers.
//!
//! Replays (docs/contracts/daily.md §3.1): the signed `X-Webhook-Timestamp` must be at most
//! `REFLOW_DAILY_WEBHOOK_MAX_AGE` (24 h) old and at most [`MAX_FUTURE_SKEW`] ahead of this
//! clock; outside that window a correctly signed webhook is refused like a bad signature
//! (401), so a captured delivery cannot be replayed weeks later. A replay inside the window is
//! harmless: intake leaves a recording whose transcript ended, was reprocessed or was deleted
//! alone and answers `ignored` ([`crate::intake::Outcome::Ignored`]).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::ApiState;
use crate::intake::{Discovered, Outcome};

/// How far ahead of this clock a signed timestamp may be (clock skew; docs/contracts/daily.md
/// §3.1).
pub const MAX_FUTURE_SKEW: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// Why a correctly signed webhook's timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaleTimestamp {
    /// Not a number of seconds.
    #[error("X-Webhook-Timestamp {0:?} is not epoch seconds")]
    Unreadable(String),
    /// Older than the accepted age.
    #[error("X-Webhook-Timestamp is {age_s} s old; at most {max_s} s is accepted")]
    TooOld {
        /// Its age.
        age_s: i64,
        /// The bound.
        max_s: u64,
    },
    /// Further ahead than clock skew explains.
    #[error("X-Webhook-Timestamp is {ahead_s} s in the future; at most {max_s} s is accepted")]
    InTheFuture {
        /// How far ahead.
        ahead_s: i64,
        /// The bound.
        max_s: u64,
    },
}

/// Whether the signed `timestamp` (epoch seconds; milliseconds are tolerated) lies within
/// `max_age` before `now` and [`MAX_FUTURE_SKEW`] after it.
pub fn check_timestamp(
    timestamp: &str,
    max_age: std::time::Duration,
    now: std::time::SystemTime,
) -> Result<(), StaleTimestamp> {
    let mut ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| StaleTimestamp::Unreadable(timestamp.chars().take(32).collect()))?;
    if ts > 100_000_000_000 {
        ts /= 1000;
    }
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let age = now.saturating_sub(ts);
    if age > max_age.as_secs() as i64 {
        return Err(StaleTimestamp::TooOld {
            age_s: age,
            max_s: max_age.as_secs(),
        });
    }
    if -age > MAX_FUTURE_SKEW.as_secs() as i64 {
        return Err(StaleTimestamp::InTheFuture {
            ahead_s: -age,
            max_s: MAX_FUTURE_SKEW.as_secs(),
        });
    }
    Ok(())
}

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
    // Verified above: the header is there.
    if let Err(e) = check_timestamp(
        header("x-webhook-timestamp").unwrap_or_default(),
        state.daily_webhook_max_age,
        std::time::SystemTime::now(),
    ) {
        tracing::warn!(error = %e, "Daily webhook outside the timestamp window refused (a replay?)");
        activities::metrics::daily_webhook("bad_signature");
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"detail": "Webhook timestamp outside the accepted window"}),
        );
    }
    let (kind, payload) = match read_event(&body) {
        Ok(event) => event,
        Err(detail) => {
            activities::metrics::daily_webhook("bad_payload");
            return reply(StatusCode::UNPROCESSABLE_ENTITY, json!({"detail": detail}));
        }
    };
    let payload = &payload;
    let ok = || {
        activities::metrics::daily_webhook("ok");
        reply(StatusCode::OK, json!({"status": "ok"}))
    };
    match kind.as_str() {
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

/// The `type` and `payload` object of a verified webhook body; `Err` is the 422 answer's
/// `detail` (not JSON, or not an event). Pure, like [`ready_recording`], so the `daily_webhook`
/// fuzz target (`fuzz/`) runs what the handler runs on arbitrary bodies.
pub fn read_event(body: &[u8]) -> Result<(String, Value), &'static str> {
    let mut event: Value = serde_json::from_slice(body).map_err(|_| "Invalid JSON")?;
    let kind = event.get("type").and_then(Value::as_str).map(str::to_owned);
    let payload = event
        .get_mut("payload")
        .filter(|p| p.is_object())
        .map(Value::take);
    kind.zip(payload).ok_or("Invalid event format")
}

/// The recording a `recording.ready-to-download` payload names: `Ok(None)` for a cloud
/// recording (not transcribed), `Err` (422's `detail`) without a recording id or room name.
pub fn ready_recording(payload: &Value) -> Result<Option<Discovered>, &'static str> {
    let s = |k: &str| payload.get(k).and_then(Value::as_str).map(str::to_owned);
    let tracks: Vec<&Value> = payload
        .get("tracks")
        .and_then(Value::as_array)
        .map(|t| t.iter().collect())
        .unwrap_or_default();
    let kind = s("type");
    if kind.as_deref() == Some("cloud") || (kind.is_none() && tracks.is_empty()) {
        return Ok(None);
    }
    let (Some(recording_id), Some(room_name)) = (s("recording_id"), s("room_name")) else {
        return Err("Invalid event format");
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
    Ok(Some(Discovered {
        recording_id,
        room_name,
        start_ts,
        track_keys,
    }))
}

async fn ready(state: &ApiState, payload: &Value) -> Response {
    let discovered = match ready_recording(payload) {
        Ok(Some(d)) => d,
        Ok(None) => {
            tracing::info!(recording_id = ?payload.get("recording_id").and_then(serde_json::Value::as_str), "cloud recording: not transcribed");
            activities::metrics::daily_webhook("ok");
            return reply(StatusCode::OK, json!({"status": "ok"}));
        }
        Err(detail) => {
            activities::metrics::daily_webhook("bad_payload");
            return reply(StatusCode::UNPROCESSABLE_ENTITY, json!({"detail": detail}));
        }
    };
    let recording_id = discovered.recording_id.clone();
    let Some(intake) = &state.intake else {
        tracing::error!(%recording_id, "no intake configured (Temporal unreachable?); deferred to polling");
        activities::metrics::daily_webhook("deferred");
        return reply(StatusCode::OK, json!({"status": "deferred"}));
    };
    match intake.intake(&discovered).await {
        Ok(outcome @ Outcome::Queued { .. }) => {
            // Kept: the backlog loop starts it once Temporal answers (crate::backlog).
            tracing::warn!(%recording_id, ?outcome, "Daily recording taken in; its run waits in the backlog");
            activities::metrics::daily_webhook("queued");
            reply(StatusCode::OK, json!({"status": "queued"}))
        }
        Ok(outcome @ Outcome::Ignored { .. }) => {
            tracing::info!(%recording_id, ?outcome, "Daily recording already settled; nothing started");
            activities::metrics::daily_webhook("ignored");
            reply(StatusCode::OK, json!({"status": "ignored"}))
        }
        Ok(outcome) => {
            tracing::info!(%recording_id, ?outcome, "Daily recording taken in");
            activities::metrics::daily_webhook("ok");
            reply(StatusCode::OK, json!({"status": "ok"}))
        }
        Err(e) => {
            tracing::error!(%recording_id, error = %e, "intake failed; deferred (the backlog loop or the poll retries)");
            activities::metrics::daily_webhook("deferred");
            reply(StatusCode::OK, json!({"status": "deferred"}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_timestamp_is_accepted_within_its_age_and_a_little_clock_skew() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(24 * 3600);
        let at = |offset: i64| (1_800_000_000i64 + offset).to_string();
        assert_eq!(check_timestamp(&at(0), day, now), Ok(()));
        assert_eq!(check_timestamp(&at(-24 * 3600), day, now), Ok(()));
        assert_eq!(check_timestamp(&at(300), day, now), Ok(()));
        assert_eq!(
            check_timestamp(&at(-25 * 3600), day, now),
            Err(StaleTimestamp::TooOld {
                age_s: 25 * 3600,
                max_s: 24 * 3600
            })
        );
        assert_eq!(
            check_timestamp(&at(600), day, now),
            Err(StaleTimestamp::InTheFuture {
                ahead_s: 600,
                max_s: 300
            })
        );
        assert_eq!(
            check_timestamp("1800000000000", day, now),
            Ok(()),
            "milliseconds"
        );
        assert!(matches!(
            check_timestamp("yesterday", day, now),
            Err(StaleTimestamp::Unreadable(_))
        ));
    }
}
