//! What every outgoing HTTP call of an activity shares: a client whose timeout sits below the
//! activity's start-to-close, the mapping of HTTP outcomes to the error classes of
//! docs/contracts/pipeline.md §6.3, `Retry-After`, and heartbeats while a call is in flight.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use temporalio_sdk::activities::ActivityContext;

use crate::error::ActivityFailure;

/// Margin kept between an HTTP timeout and the activity's start-to-close
/// (docs/contracts/pipeline.md §6.1: transcription 1800 → 1740 s, LLM 300 → 270 s).
pub fn ceiling(
    start_to_close: Option<Duration>,
    margin: Duration,
    configured: Option<Duration>,
) -> Duration {
    let cap = start_to_close
        .map(|s| s.saturating_sub(margin).max(Duration::from_secs(1)))
        .unwrap_or(Duration::from_secs(270));
    configured.map_or(cap, |c| c.min(cap))
}

/// The running attempt's start-to-close timeout (its deadline less its start), if it has one.
pub fn start_to_close(ctx: &ActivityContext) -> Option<Duration> {
    let info = ctx.info();
    info.deadline
        .zip(info.started_time)
        .and_then(|(deadline, started)| deadline.duration_since(started).ok())
}

/// A client with `timeout` on every request (connect included).
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .expect("a rustls client builds")
}

/// `response` if it is a success; otherwise the failure its status means, naming `what`.
pub async fn check(what: &str, response: Response) -> Result<Response, ActivityFailure> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = retry_after(&response);
    let body = response.text().await.unwrap_or_default();
    let excerpt: String = body.chars().take(300).collect();
    let message = format!("{what}: HTTP {status}: {excerpt}");
    Err(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ActivityFailure::AccessDenied(message),
        StatusCode::NOT_FOUND => ActivityFailure::NotFound(message),
        StatusCode::TOO_MANY_REQUESTS => ActivityFailure::RateLimited {
            message,
            retry_after,
        },
        StatusCode::BAD_REQUEST
        | StatusCode::PAYMENT_REQUIRED
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNPROCESSABLE_ENTITY => ActivityFailure::HttpClient(message),
        // 408, 425, 5xx and anything unexpected: a retry may help.
        _ => ActivityFailure::Transient(message),
    })
}

/// A transport failure (connect, timeout, broken body): retryable, naming `what`.
pub fn transport(what: &str, e: reqwest::Error) -> ActivityFailure {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    ActivityFailure::Transient(format!("{what}: {kind}: {e}"))
}

/// The `Retry-After` header in seconds (the HTTP-date form is not used by the backends).
pub fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: f64 = value.to_str().ok()?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Drive `call`, heartbeating `{phase: "waiting", done_s}` (seconds waited) every `every` until it ends
/// (docs/contracts/pipeline.md §6.2: at least every min(30 s, heartbeat/4)), or until the activity
/// is cancelled: then `call` is dropped and the answer is `Cancelled`
/// ([`crate::error::ActivityFailure`]).
pub async fn while_waiting<T>(
    ctx: &ActivityContext,
    every: Duration,
    call: impl Future<Output = T>,
) -> Result<T, crate::error::ActivityFailure> {
    let started = Instant::now();
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    tokio::pin!(call);
    loop {
        tokio::select! {
            done = &mut call => return Ok(done),
            // Cancelled (the run, a reset, the server's cancel, the worker stopping): the call
            // is dropped here, so an HTTP request is abandoned at once.
            () = ctx.cancelled() => return Err(crate::error::ActivityFailure::Cancelled),
            _ = ticker.tick() => {
                let details = crate::heartbeat::Progress::of("waiting", started.elapsed().as_secs_f64().floor(), 0.0);
                if let Err(e) = ctx.record_heartbeat(details).await {
                    tracing::debug!(error = %e, "heartbeat not recorded");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_stays_below_start_to_close() {
        let m = Duration::from_secs(60);
        assert_eq!(
            ceiling(Some(Duration::from_secs(1800)), m, None),
            Duration::from_secs(1740)
        );
        assert_eq!(
            ceiling(
                Some(Duration::from_secs(1800)),
                m,
                Some(Duration::from_secs(3600))
            ),
            Duration::from_secs(1740),
            "a configured timeout is capped"
        );
        assert_eq!(
            ceiling(
                Some(Duration::from_secs(1800)),
                m,
                Some(Duration::from_secs(90))
            ),
            Duration::from_secs(90)
        );
    }
}
