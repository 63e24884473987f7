//! `DELETE /v1/transcripts/{id}` (owner or operator), as Reflector answers it: the transcript
//! is soft-deleted (`deleted_at`; every route answers 404 from then on, its sockets close) and
//! the results reflow memoized from its runs are purged from the store
//! ([`activities::memo::purge`]), so no later run of anything reuses them. A run still in flight
//! stores none when it ends (`memo_store` sees the deletion).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::transcripts::writable;
use super::{ApiError, ApiState};

/// Soft-delete the transcript and purge its memos: `{"status": "ok"}`.
pub(super) async fn delete_transcript(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let t = writable(&state, &headers, &id, "delete this transcript").await?;
    state.events.db().delete_transcript(&t.id).await?;
    let memos = activities::memo::purge(&state.storage, &t.id).await?;
    tracing::info!(transcript_id = %t.id, memos, "transcript deleted");
    Ok(axum::Json(json!({"status": "ok"})))
}
