//! `GET /transcripts/{id}`: the live progress page. Plain HTML and JavaScript served by the
//! binary; everything it shows — step states, attempts and durations, the overall bar, the
//! duration, waveform, topics, title and summaries — comes from the transcript's WebSocket.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::transcripts::readable;
use super::{ApiError, ApiState};

/// The page (no build step, no external assets).
pub const PAGE: &str = include_str!("page.html");

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/transcripts/{id}", get(page))
}

async fn page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    readable(&state, &headers, &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    ))
}
