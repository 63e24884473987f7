//! `GET /v1/transcripts/{id}/events`: the transcript's WebSocket
//! (docs/contracts/events-and-api.md §2).
//!
//! On connect the socket subscribes to the live fan-out first, then replays the stored log
//! (except `TRANSCRIPT` and `STATUS`), then sends the latest `PIPELINE_PROGRESS` of every step
//! of the transcript's run, then streams live events, skipping any it already
//! replayed (by `seq`). A socket that falls behind the fan-out re-reads the log from its last
//! position, so nothing is lost. Client messages are ignored; the server pings every 30 s and
//! never closes first.
//!
//! A transcript's socket keeps checking that its viewer may read it: every
//! [`ACCESS_RECHECK`] it reads the transcript again and closes with [`ACCESS_REVOKED_CLOSE`]
//! once the transcript is deleted or turned private to that viewer (the change may come from
//! another process sharing the database, so it is read, not announced). Sockets opened with a
//! user's JWT close with [`UNAUTHORIZED_CLOSE`] when it expires (both kinds of socket).
//!
//! An upgraded socket no longer counts as a connection ([`super::limits`]), and each one
//! replays a transcript's whole log: sockets are capped per process and per client address
//! (`REFLOW_WS_MAX`, `REFLOW_WS_MAX_PER_CLIENT`). Over a cap the upgrade is answered
//! 503 with `Retry-After` ([`SOCKETS_BUSY_RETRY_AFTER`]) before anything is read.

use std::time::Duration;

use activities::events::Message;
use axum::Router;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::broadcast::error::RecvError;

use super::limits::{ClientAddr, ClientSlot, SlotRefused};
use super::transcripts::readable;
use super::{ApiError, ApiState};

/// Events the on-connect replay leaves out (Reflector's rule).
pub const NOT_REPLAYED: [&str; 2] = ["TRANSCRIPT", "STATUS"];
/// Server ping interval.
pub const PING_EVERY: Duration = Duration::from_secs(30);

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/transcripts/{id}/events", get(upgrade))
        .route("/v1/events", get(user_upgrade))
}

/// Close code for a user socket without a valid token (§2), and for any socket whose token
/// expired.
pub const UNAUTHORIZED_CLOSE: u16 = 4401;

/// Close code for a transcript socket whose viewer may no longer read the transcript (it was
/// deleted, or turned private).
pub const ACCESS_REVOKED_CLOSE: u16 = 4403;

/// How often a transcript's socket checks that its viewer may still read it.
pub const ACCESS_RECHECK: Duration = Duration::from_secs(10);

/// Resolves when a token expiring at `exp` (epoch seconds; `None`: never) expires.
async fn expiry(exp: Option<u64>) {
    let Some(exp) = exp else {
        return std::future::pending().await;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(exp).saturating_sub(now)).await;
}

/// Close `socket` with `code` and `reason`.
async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) -> Result<(), axum::Error> {
    socket
        .send(ws::Message::Close(Some(ws::CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await
}

/// Seconds a client refused for too many sockets is told to wait (`Retry-After`).
pub const SOCKETS_BUSY_RETRY_AFTER: u64 = 5;

/// A socket slot for the caller at `client`.
fn socket_slot(
    state: &ApiState,
    client: Option<Extension<ClientAddr>>,
) -> Result<ClientSlot, SlotRefused> {
    state
        .sockets
        .try_acquire(client.map(|Extension(ClientAddr(ip))| ip))
}

/// The answer to an upgrade over a cap: 503 with `Retry-After`.
fn busy(why: &SlotRefused) -> Response {
    tracing::warn!(error = %why, "WebSocket refused");
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({"detail": "Too many WebSocket connections"})),
    )
        .into_response();
    r.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from(SOCKETS_BUSY_RETRY_AFTER),
    );
    r
}

/// `GET /v1/events`: the user's channel (`user:{user_id}`): `TRANSCRIPT_STATUS`,
/// `TRANSCRIPT_FINAL_TITLE`, `TRANSCRIPT_DURATION` of the user's transcripts. The token comes
/// in the subprotocol list `["bearer", "<JWT>"]`; without a valid one the socket is closed
/// with 4401.
async fn user_upgrade(
    State(state): State<ApiState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let slot = match socket_slot(&state, client) {
        Ok(s) => s,
        Err(e) => return busy(&e),
    };
    let offered: Vec<String> = headers
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').map(|p| p.trim().to_owned()).collect())
        .unwrap_or_default();
    let user = match offered.as_slice() {
        [bearer, token] if bearer == "bearer" => state.user_token(token),
        _ => None,
    };
    upgrade
        .max_message_size(super::limits::WS_MAX_MESSAGE)
        .max_frame_size(super::limits::WS_MAX_FRAME)
        .protocols(["bearer"])
        .on_upgrade(move |mut socket| async move {
            let _slot = slot;
            let Some(user) = user else {
                let _ = socket
                    .send(ws::Message::Close(Some(ws::CloseFrame {
                        code: UNAUTHORIZED_CLOSE,
                        reason: "unauthorized".into(),
                    })))
                    .await;
                return;
            };
            if let Err(e) = user_stream(state, &user.sub, user.exp, socket).await {
                tracing::debug!(user = %user.sub, error = %e, "user socket closed");
            }
        })
}

async fn user_stream(
    state: ApiState,
    user: &str,
    exp: u64,
    mut socket: WebSocket,
) -> Result<(), axum::Error> {
    let mut rx = state.events.hub().subscribe();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let expired = expiry(Some(exp));
    tokio::pin!(expired);
    loop {
        tokio::select! {
            () = &mut expired => return close(&mut socket, UNAUTHORIZED_CLOSE, "token expired").await,
            m = rx.recv() => match m {
                Ok(m) => {
                    if let Message::User { user_id, envelope } = &*m
                        && user_id == user
                    {
                        send(&mut socket, envelope.clone()).await?;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(user = %user, skipped = n, "user socket fell behind");
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(ws::Message::Close(_))) => return Ok(()),
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => socket.send(ws::Message::Ping(Vec::new().into())).await?,
        }
    }
}

async fn upgrade(
    State(state): State<ApiState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let t = readable(&state, &headers, &id).await?;
    let caller = state.caller(&headers)?;
    let exp = ApiState::bearer(&headers)
        .and_then(|token| state.user_token(token))
        .map(|claims| claims.exp);
    let slot = match socket_slot(&state, client) {
        Ok(s) => s,
        Err(e) => return Ok(busy(&e)),
    };
    let upgrade = upgrade
        .max_message_size(super::limits::WS_MAX_MESSAGE)
        .max_frame_size(super::limits::WS_MAX_FRAME);
    Ok(upgrade.on_upgrade(move |socket| async move {
        let _slot = slot;
        let viewer = Viewer { caller, exp };
        if let Err(e) = stream(state, t.id.clone(), viewer, socket).await {
            tracing::debug!(transcript = %t.id, error = %e, "socket closed");
        }
    }))
}

async fn send(socket: &mut WebSocket, envelope: serde_json::Value) -> Result<(), axum::Error> {
    socket
        .send(ws::Message::Text(envelope.to_string().into()))
        .await
}

/// Who watches a transcript's socket.
struct Viewer {
    /// As whom they opened it.
    caller: super::auth::Caller,
    /// Their token's expiry (epoch seconds), for a user's JWT.
    exp: Option<u64>,
}

/// Why `viewer` may no longer watch transcript `id`, if so (a database error keeps the
/// socket: logged).
async fn revoked(state: &ApiState, viewer: &Viewer, id: &str) -> Option<&'static str> {
    match state.events.db().find_transcript(id).await {
        Ok(Some(t)) if t.deleted_at.is_none() && t.shadow_of.is_none() => {
            (!state.may_read(&viewer.caller, &t)).then_some("transcript is private")
        }
        Ok(_) => Some("transcript deleted"),
        Err(e) => {
            tracing::warn!(transcript = %id, error = %e, "socket access check failed");
            None
        }
    }
}

/// The transcript's events: failure texts as they are for the operator, else redacted; closed
/// when the viewer's access ends.
async fn stream(
    state: ApiState,
    id: String,
    viewer: Viewer,
    mut socket: WebSocket,
) -> Result<(), axum::Error> {
    let full = ApiState::sees_full_failures(&viewer.caller);
    let view = |envelope: serde_json::Value| {
        if full {
            envelope
        } else {
            super::redact::progress_envelope(envelope)
        }
    };
    let mut rx = state.events.hub().subscribe();
    let db = state.events.db();
    let mut last = 0;
    let replay = |after: i64| {
        let db = db.clone();
        let id = id.clone();
        async move { db.events(&id, after).await }
    };
    match replay(0).await {
        Ok(events) => {
            for e in events {
                last = e.seq;
                if !NOT_REPLAYED.contains(&e.event.as_str()) {
                    send(&mut socket, view(e.envelope())).await?;
                }
            }
        }
        Err(e) => tracing::warn!(transcript = %id, error = %e, "replay failed"),
    }
    // reflow extension: the latest state of every step of the transcript's run.
    match db.progress_events(&id).await {
        Ok(states) => {
            for data in states {
                send(
                    &mut socket,
                    view(serde_json::json!({"event": "PIPELINE_PROGRESS", "data": data})),
                )
                .await?;
            }
        }
        Err(e) => tracing::warn!(transcript = %id, error = %e, "progress catch-up failed"),
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut recheck = tokio::time::interval(state.ws_access_recheck);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    recheck.tick().await;
    let expired = expiry(viewer.exp);
    tokio::pin!(expired);
    loop {
        tokio::select! {
            () = &mut expired => return close(&mut socket, UNAUTHORIZED_CLOSE, "token expired").await,
            _ = recheck.tick() => {
                if let Some(why) = revoked(&state, &viewer, &id).await {
                    tracing::debug!(transcript = %id, "{why}: socket closed");
                    return close(&mut socket, ACCESS_REVOKED_CLOSE, why).await;
                }
            }
            m = rx.recv() => match m {
                Ok(m) => {
                    if let Message::Transcript(e) = &*m
                        && e.transcript_id == id
                        && (e.seq == 0 || e.seq > last)
                    {
                        last = last.max(e.seq);
                        send(&mut socket, view(e.envelope())).await?;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(transcript = %id, skipped = n, "socket fell behind; re-reading the log");
                    if let Ok(events) = replay(last).await {
                        for e in events {
                            last = e.seq;
                            send(&mut socket, view(e.envelope())).await?;
                        }
                    }
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(ws::Message::Close(_))) => return Ok(()),
                Some(Ok(_)) => {} // client messages are ignored
            },
            _ = ping.tick() => socket.send(ws::Message::Ping(Vec::new().into())).await?,
        }
    }
}
