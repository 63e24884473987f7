//! The cooldown of forced reprocessing: `POST /v1/transcripts/{id}/process?force=true`
//! succeeds at most once per [`FORCE_PROCESS_INTERVAL`] per transcript (429 with
//! `Retry-After` otherwise), since each one terminates a run and pays for a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

/// Least time between two forced reprocessings of one transcript.
pub const FORCE_PROCESS_INTERVAL: Duration = Duration::from_secs(60);

/// The last forced reprocessing of each transcript, for [`force_process_cooldown`].
#[derive(Debug, Default)]
pub struct Cooldown {
    last: Mutex<HashMap<String, Instant>>,
}

impl Cooldown {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserve `key` for `every`, or how long until it may be used again.
    fn reserve(&self, key: &str, every: Duration) -> Result<(), Duration> {
        let now = Instant::now();
        let mut last = self.lock();
        last.retain(|_, at| now.duration_since(*at) < every);
        if let Some(at) = last.get(key) {
            return Err(every.saturating_sub(now.duration_since(*at)));
        }
        last.insert(key.to_owned(), now);
        Ok(())
    }

    /// Give back a reservation whose request did not succeed.
    fn release(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// The transcript of a forced `POST /v1/transcripts/{id}/process?force=true`, if `request` is
/// one.
fn forced_process(request: &Request) -> Option<String> {
    if request.method() != axum::http::Method::POST {
        return None;
    }
    let mut parts = request.uri().path().split('/');
    let id = match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(""), Some("v1"), Some("transcripts"), Some(id), Some("process"), None) => {
            percent_decoded(id)
        }
        _ => return None,
    };
    #[derive(serde::Deserialize)]
    struct Force {
        #[serde(default)]
        force: bool,
    }
    let force = axum::extract::Query::<Force>::try_from_uri(request.uri()).ok()?;
    force.0.force.then_some(id)
}

/// A path segment as the router hands it to the handler (`%2D` is `-`), so that one
/// transcript has one key however its id is spelled in the URL.
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Middleware: a transcript is reprocessed by force at most once per
/// [`FORCE_PROCESS_INTERVAL`]; sooner is 429 with `Retry-After`. Only a request that succeeded
/// counts (one that was refused gives its turn back).
pub async fn force_process_cooldown(
    State(cooldown): State<Arc<Cooldown>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(id) = forced_process(&request) else {
        return next.run(request).await;
    };
    if let Err(wait) = cooldown.reserve(&id, FORCE_PROCESS_INTERVAL) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        tracing::warn!(transcript_id = %id, retry_after = secs, "forced reprocessing refused: too soon");
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!({
                "detail": format!(
                    "Transcript was reprocessed less than {} s ago; retry after {secs} s",
                    FORCE_PROCESS_INTERVAL.as_secs()
                )
            })),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        return response;
    }
    let response = next.run(request).await;
    if !response.status().is_success() {
        cooldown.release(&id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cooldown_refuses_until_its_interval_passed_and_a_release_gives_the_turn_back() {
        let c = Cooldown::default();
        c.reserve("t1", Duration::from_secs(60)).unwrap();
        let wait = c.reserve("t1", Duration::from_secs(60)).unwrap_err();
        assert!(wait > Duration::from_secs(59), "{wait:?}");
        c.reserve("t2", Duration::from_secs(60)).unwrap();
        c.release("t1");
        c.reserve("t1", Duration::from_secs(60)).unwrap();
        c.reserve("t3", Duration::ZERO).unwrap();
        c.reserve("t3", Duration::ZERO).unwrap();
    }

    #[test]
    fn only_a_forced_process_request_is_recognised() {
        let req = |method: &str, uri: &str| {
            axum::http::Request::builder()
                .method(method)
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert_eq!(
            forced_process(&req("POST", "/v1/transcripts/t-1/process?force=true")).as_deref(),
            Some("t-1")
        );
        assert_eq!(
            forced_process(&req("POST", "/v1/transcripts/t%2D1/process?force=true")).as_deref(),
            Some("t-1"),
            "one key however the id is spelled"
        );
        assert_eq!(
            forced_process(&req("POST", "/v1/transcripts/t-1/process")),
            None
        );
        assert_eq!(
            forced_process(&req("POST", "/v1/transcripts/t-1/process?force=false")),
            None
        );
        assert_eq!(
            forced_process(&req("GET", "/v1/transcripts/t-1/process?force=true")),
            None
        );
        assert_eq!(
            forced_process(&req("POST", "/v1/transcripts/t-1/x/process?force=true")),
            None
        );
    }
}
