//! `GET /v1/transcripts/{id}` and its sub-resources (docs/contracts/events-and-api.md §5.2–§5.4),
//! and the audio with HTTP range requests.

use activities::db::transcripts::Transcript;
use activities::storage::keys;
use activities::transcript::{Participant, Topic, render};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ApiError, ApiState};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/v1/transcripts/{id}",
            get(transcript).delete(super::delete::delete_transcript),
        )
        .route("/v1/transcripts/{id}/topics", get(topics))
        .route(
            "/v1/transcripts/{id}/topics/with-words",
            get(topics_with_words),
        )
        .route(
            "/v1/transcripts/{id}/topics/{topic_id}/words-per-speaker",
            get(words_per_speaker),
        )
        .route("/v1/transcripts/{id}/participants", get(participants))
        .route("/v1/transcripts/{id}/audio/waveform", get(waveform))
        .route("/v1/transcripts/{id}/audio/mp3", get(audio).head(audio))
        .route(
            "/v1/transcripts/{id}/audio/link",
            axum::routing::post(audio_link),
        )
        .route("/v1/transcripts/{id}/process", axum::routing::post(process))
        .route("/v1/transcripts/{id}/cancel", axum::routing::post(cancel))
}

/// What `process` is asked (its query); a request the run backlog keeps is stored with it
/// (`run_backlog.options`, JSON) so that the backlog loop starts exactly this run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessQuery {
    #[serde(default)]
    force: bool,
    /// Recompute this step and everything downstream of it (a new run).
    #[serde(default)]
    from: Option<String>,
    /// Reuse no stored result (a new run).
    #[serde(default)]
    fresh: bool,
    /// A new run posts to Zulip and calls the customer webhook again.
    #[serde(default)]
    notify: bool,
}

/// `POST /v1/transcripts/{id}/process` (docs/contracts/events-and-api.md §5.5): resume a failed run
/// from its failed step, or start a new run of the recording (terminating a running one with
/// `force`). When Temporal (or the store) is unavailable the request is kept in the run backlog
/// and answered 202 `queued`: the backlog loop ([`crate::backlog`]) processes it once Temporal
/// answers.
async fn process(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ProcessQuery>,
) -> Result<Response, ApiError> {
    let t = writable(&state, &headers, &id, "process this transcript").await?;
    match start_processing(&state, &t, &q).await {
        Err(e)
            if e.status == StatusCode::SERVICE_UNAVAILABLE
                && state.intake.is_some()
                && state.temporal.is_some() =>
        {
            let db = state.events.db();
            let options = serde_json::to_string(&q).expect("a query serializes");
            db.owe_process_run(&t.id, q.force, Some(&options)).await?;
            crate::backlog::wake();
            crate::backlog::report(db).await;
            tracing::warn!(transcript_id = %t.id, detail = %e.detail, "process request queued until Temporal answers");
            Ok((
                StatusCode::ACCEPTED,
                axum::Json(json!({"status": "queued", "workflow_id": t.workflow_id})),
            )
                .into_response())
        }
        answer => answer.map(|a| axum::Json(a).into_response()),
    }
}

/// A `process` request the run backlog kept, processed as the route would with the options it
/// was asked with (the owner's right to was checked when it was asked for). `force` is the
/// row's: the loop drops it once an attempt may have reached Temporal.
pub(crate) async fn process_owed(
    state: &ApiState,
    row: &activities::db::backlog::OwedRun,
) -> Result<Value, ApiError> {
    let t = state.events.db().transcript(&row.transcript_id).await?;
    let query = owed_query(row).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unreadable queued options: {e}"),
        )
    })?;
    start_processing(state, &t, &query).await
}

/// The query a kept `process` request was asked with (a row without options: a plain one),
/// `force` as the row has it now.
fn owed_query(row: &activities::db::backlog::OwedRun) -> Result<ProcessQuery, serde_json::Error> {
    let mut query = match &row.options {
        Some(json) => serde_json::from_str(json)?,
        None => ProcessQuery::default(),
    };
    query.force = row.forced;
    Ok(query)
}

/// How long `process` waits for each Temporal call before it answers 503 (and keeps the
/// request).
const TEMPORAL_CALL: std::time::Duration = std::time::Duration::from_secs(3);

async fn start_processing(
    state: &ApiState,
    t: &Transcript,
    q: &ProcessQuery,
) -> Result<Value, ApiError> {
    if t.locked {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "Transcript is locked"));
    }
    let Some(client) = &state.temporal else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Temporal connection",
        ));
    };
    let request = crate::rerun::Request {
        force: q.force,
        version: None,
        rerun: workflow::interpreter::memo::Rerun {
            from: q.from.clone().filter(|f| !f.is_empty()),
            fresh: q.fresh,
            ..Default::default()
        },
        notify: q.notify,
    };
    // Resume, or a new memoized run (crate::rerun): every Temporal call of it within a bound.
    let outcome = tokio::time::timeout(
        TEMPORAL_CALL * 4,
        crate::rerun::rerun(client, &state.events, state.intake.as_deref(), t, &request),
    )
    .await
    .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Temporal unavailable"))?;
    use crate::rerun::RerunError as E;
    let outcome = outcome.map_err(|e| match e {
        E::Locked => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
        E::NothingToProcess | E::UnknownStep { .. } | E::Shadow(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
        }
        E::InProgress => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        E::Retry(e) => {
            let e = super::conductor::ConductorError::from(e);
            ApiError::new(e.status, e.message)
        }
        E::Db(e) => ApiError::from(e),
        E::NotRegistered(_) => ApiError::unavailable("pipeline version", &e),
        E::Temporal(_) => ApiError::unavailable("Temporal", &e),
    })?;
    Ok(serde_json::to_value(&outcome).expect("an outcome serializes"))
}

/// `POST /v1/transcripts/{id}/cancel` (docs/contracts/events-and-api.md §5.5), for the owner
/// or an operator: request the cancellation of the transcript's running run. Its children and
/// their heartbeating steps stop within seconds, its failure hook puts the transcript back to
/// `idle` (never `error`: a cancel is not a failure), and a later `process` resumes it.
async fn cancel(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let t = writable(&state, &headers, &id, "cancel this transcript").await?;
    let Some(client) = &state.temporal else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Temporal connection",
        ));
    };
    let Some(workflow_id) = t
        .workflow_id
        .clone()
        .or_else(|| t.recording_id.as_deref().map(crate::intake::workflow_id))
    else {
        return Err(ApiError::new(StatusCode::CONFLICT, "No run in progress"));
    };
    crate::runs::cancel(client, &workflow_id, "cancel requested")
        .await
        .map_err(|e| match e {
            crate::runs::RunError::NotRunning { .. } => {
                ApiError::new(StatusCode::CONFLICT, "No run in progress")
            }
            e => ApiError::unavailable("Temporal", &e),
        })?;
    tracing::info!(transcript_id = %t.id, workflow_id = %workflow_id, "cancel requested");
    Ok(axum::Json(
        json!({"status": "cancelling", "workflow_id": workflow_id}),
    ))
}

/// A transcript the caller may change (its owner, or the operator): [`readable`], else 403
/// `"Only the owner may {what}"`.
pub(super) async fn writable(
    state: &ApiState,
    headers: &HeaderMap,
    id: &str,
    what: &str,
) -> Result<Transcript, ApiError> {
    let t = readable(state, headers, id).await?;
    if !state.may_write(&state.caller(headers)?, &t) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("Only the owner may {what}"),
        ));
    }
    Ok(t)
}

/// A readable, not soft-deleted transcript, or the error to answer. A shadow transcript
/// (`shadow_of` set: a shadow run's, `reflow compare` reads it) is never one, for any caller.
pub(super) async fn readable(
    state: &ApiState,
    headers: &HeaderMap,
    id: &str,
) -> Result<Transcript, ApiError> {
    let caller = state.caller(headers)?;
    let t = state
        .events
        .db()
        .find_transcript(id)
        .await?
        .filter(|t| t.deleted_at.is_none() && t.shadow_of.is_none())
        .ok_or_else(|| ApiError::not_found("Transcript not found"))?;
    if !state.may_read(&caller, &t) {
        // Private transcripts are invisible, not forbidden (no existence leak).
        return Err(ApiError::not_found("Transcript not found"));
    }
    Ok(t)
}

fn parsed<T: serde::de::DeserializeOwned>(
    t: &Transcript,
    what: &str,
    text: &str,
) -> Result<T, ApiError> {
    serde_json::from_str(text).map_err(|e| {
        tracing::error!(transcript = %t.id, column = what, error = %e, "unreadable column");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("transcript {what} unreadable"),
        )
    })
}

#[derive(Deserialize)]
struct FormatQuery {
    transcript_format: Option<String>,
}

async fn transcript(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let t = readable(&state, &headers, &id).await?;
    let topics: Vec<Topic> = parsed(&t, "topics", &t.topics)?;
    let people: Vec<Participant> = parsed(&t, "participants", &t.participants)?;
    let format = q.transcript_format.unwrap_or_else(|| "text".into());
    let text = render(&format, &topics, &people)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let action_items: Value = match &t.action_items {
        Some(a) => parsed(&t, "action_items", a)?,
        None => Value::Null,
    };
    let room_name = match &t.room_id {
        Some(r) => state.events.db().room_name(r).await?,
        None => None,
    };
    Ok(axum::Json(json!({
        "id": t.id, "user_id": t.user_id, "name": t.name, "status": t.status,
        "locked": t.locked, "duration": t.duration, "title": t.title,
        "short_summary": t.short_summary, "long_summary": t.long_summary,
        "action_items": action_items, "created_at": t.created_at, "share_mode": t.share_mode,
        "source_language": t.source_language, "target_language": t.target_language,
        "reviewed": t.reviewed, "meeting_id": t.meeting_id, "source_kind": t.source_kind,
        "room_id": t.room_id, "room_name": room_name, "audio_deleted": t.audio_deleted,
        "change_seq": t.change_seq, "has_cloud_video": false, "cloud_video_duration": null,
        "participants": people, "transcript_format": format, "transcript": text,
    })))
}

async fn topics(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    topic_list(&state, &headers, &id, false).await
}

async fn topics_with_words(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    topic_list(&state, &headers, &id, true).await
}

async fn topic_list(
    state: &ApiState,
    headers: &HeaderMap,
    id: &str,
    with_words: bool,
) -> Result<axum::Json<Value>, ApiError> {
    let t = readable(state, headers, id).await?;
    let topics: Vec<Topic> = parsed(&t, "topics", &t.topics)?;
    Ok(axum::Json(Value::Array(
        topics.iter().map(|tp| tp.to_rest(with_words)).collect(),
    )))
}

async fn words_per_speaker(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((id, topic_id)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    let t = readable(&state, &headers, &id).await?;
    let topics: Vec<Topic> = parsed(&t, "topics", &t.topics)?;
    let topic = topics
        .iter()
        .find(|tp| tp.id == topic_id)
        .ok_or_else(|| ApiError::not_found("Topic not found"))?;
    let mut v = topic.to_rest(false);
    v["words_per_speaker"] = Value::Array(topic.words_per_speaker());
    Ok(axum::Json(v))
}

async fn participants(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let t = readable(&state, &headers, &id).await?;
    let people: Vec<Participant> = parsed(&t, "participants", &t.participants)?;
    Ok(axum::Json(json!(people)))
}

async fn waveform(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let t = readable(&state, &headers, &id).await?;
    let key = keys::waveform(&t.id);
    if state.storage.size(&key).await?.is_none() {
        return Err(ApiError::not_found("Waveform not found"));
    }
    let peaks: Value = serde_json::from_slice(&state.storage.get(&key).await?).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("waveform unreadable: {e}"),
        )
    })?;
    Ok(axum::Json(json!({"data": peaks})))
}

/// A parsed `Range: bytes=…` header against an object of `size` bytes: the inclusive range, or
/// `Err(())` when it cannot be satisfied.
fn byte_range(header: &str, size: u64) -> Result<(u64, u64), ()> {
    let spec = header.trim().strip_prefix("bytes=").ok_or(())?;
    // Several ranges are answered with the first one.
    let first = spec.split(',').next().ok_or(())?.trim();
    let (a, b) = first.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (s, "") => (s.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (s, e) => {
            let e: u64 = e.parse().map_err(|_| ())?;
            (s.parse().map_err(|_| ())?, e.min(size.saturating_sub(1)))
        }
    };
    if size == 0 || start > end || start >= size {
        return Err(());
    }
    Ok((start, end))
}

#[derive(Debug, Deserialize)]
struct AudioQuery {
    /// A shareable link's JWT (`sub` = the transcript id).
    token: Option<String>,
}

async fn audio(
    State(state): State<ApiState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<AudioQuery>,
) -> Result<Response, ApiError> {
    let linked = q
        .token
        .as_deref()
        .is_some_and(|token| state.audio_link_ok(token, &id));
    let t = if linked {
        state
            .events
            .db()
            .find_transcript(&id)
            .await?
            .filter(|t| t.deleted_at.is_none() && t.shadow_of.is_none())
            .ok_or_else(|| ApiError::not_found("Transcript not found"))?
    } else {
        readable(&state, &headers, &id).await?
    };
    if t.audio_deleted {
        return Err(ApiError::not_found(
            "Audio unavailable due to privacy settings",
        ));
    }
    let key = keys::audio_mp3(&t.id);
    let size = state
        .storage
        .size(&key)
        .await?
        .ok_or_else(|| ApiError::not_found("Audio not found"))?;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| byte_range(r, size));
    let (status, first, last) = match range {
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
        Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Some(Err(())) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response());
        }
    };
    let length = if size == 0 { 0 } else { last - first + 1 };
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "audio/mpeg")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, length);
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{size}"),
        );
    }
    let body = if method == Method::HEAD || length == 0 {
        Body::empty()
    } else {
        let reader = state.storage.range_reader(&key, first, last).await?;
        Body::from_stream(tokio_util::io::ReaderStream::new(reader))
    };
    response.body(body).map_err(|e| {
        tracing::error!(error = %e, "audio response");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })
}

/// How long a shareable audio link is valid.
pub const AUDIO_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// `POST /v1/transcripts/{id}/audio/link`: a shareable link to the transcript's audio (owner or
/// operator; needs `SECRET_KEY`). The token opens this transcript's audio and nothing else.
async fn audio_link(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let t = writable(&state, &headers, &id, "share this transcript's audio").await?;
    let Some(secret) = state.secret_key.as_deref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audio links need SECRET_KEY",
        ));
    };
    let token = super::auth::sign_audio_link(secret, &t.id, AUDIO_LINK_TTL);
    Ok(axum::Json(json!({
        "url": format!("/v1/transcripts/{}/audio/mp3?token={token}", t.id),
        "expires_in": AUDIO_LINK_TTL.as_secs(),
    })))
}

#[cfg(test)]
mod tests {
    use super::{ProcessQuery, byte_range, owed_query};
    use activities::db::backlog::{OwedRun, PROCESS};

    #[test]
    fn a_kept_process_request_keeps_its_options() {
        let asked = ProcessQuery {
            force: true,
            from: Some("merge_transcripts".into()),
            fresh: true,
            notify: true,
        };
        let mut row = OwedRun {
            transcript_id: "t".into(),
            kind: PROCESS.into(),
            forced: true,
            options: Some(serde_json::to_string(&asked).unwrap()),
            requested_at: String::new(),
            attempts: 0,
            last_error: None,
            next_attempt_at: String::new(),
        };
        assert_eq!(owed_query(&row).unwrap(), asked);
        // `force` dropped by the loop after an attempt that may have reached Temporal.
        row.forced = false;
        let q = owed_query(&row).unwrap();
        assert_eq!(
            (q.force, q.from.as_deref(), q.fresh, q.notify),
            (false, Some("merge_transcripts"), true, true)
        );
        // A row written before options were kept: a plain request.
        row.options = None;
        assert_eq!(owed_query(&row).unwrap(), ProcessQuery::default());
    }

    #[test]
    fn range_headers() {
        assert_eq!(byte_range("bytes=0-99", 1000), Ok((0, 99)));
        assert_eq!(byte_range("bytes=900-", 1000), Ok((900, 999)));
        assert_eq!(byte_range("bytes=-100", 1000), Ok((900, 999)));
        assert_eq!(byte_range("bytes=990-2000", 1000), Ok((990, 999)));
        assert_eq!(byte_range("bytes=1000-", 1000), Err(()));
        assert_eq!(byte_range("bytes=5-2", 1000), Err(()));
        assert_eq!(byte_range("items=0-1", 1000), Err(()));
    }
}
