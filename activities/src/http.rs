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

/// Most of an error answer's body read to find its [`safe_reason`]; the rest is dropped.
const REASON_BODY_LIMIT: usize = 64 * 1024;

/// `response` if it is a success; otherwise the failure its status means, naming `what`.
///
/// The answer's body is never quoted: a service that refuses a request often echoes it (a
/// presigned audio URL, a prompt with meeting content), and failure texts travel in clear
/// through Temporal's history, the `step_attempt` table and the log. The text carries the
/// status and, when the body is a JSON error with a short machine-readable code
/// (`{"error": {"code": "context_length_exceeded"}}`, Zulip's `"code": "BAD_REQUEST"`), that
/// code.
pub async fn check(what: &str, response: Response) -> Result<Response, ActivityFailure> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = retry_after(&response);
    let body = head_of_body(response, REASON_BODY_LIMIT).await;
    let message = match safe_reason(&body) {
        Some(code) => format!("{what}: HTTP {status} ({code})"),
        None => format!("{what}: HTTP {status}"),
    };
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

/// At most `limit` bytes of `response`'s body (empty when it cannot be read).
async fn head_of_body(mut response: Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk[..chunk.len().min(limit - out.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// The machine-readable code of a JSON error body (`error.code`, `error.type`, `code`,
/// `type`), when it is a short identifier (letters, digits, `_`, `-`, `.`; at most 64):
/// enough to tell `context_length_exceeded` from `invalid_api_key`, never free text that could
/// echo the request.
pub fn safe_reason(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let candidates = [
        &v["error"]["code"],
        &v["error"]["type"],
        &v["code"],
        &v["type"],
    ];
    candidates
        .into_iter()
        .filter_map(serde_json::Value::as_str)
        .find(|c| {
            !c.is_empty()
                && c.len() <= 64
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        })
        .map(str::to_owned)
}

/// A transport failure (connect, timeout, broken body): retryable, naming `what`, in the words
/// of [`describe`] (never the URL: its query can carry a token).
pub fn transport(what: &str, e: reqwest::Error) -> ActivityFailure {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    ActivityFailure::Transient(format!("{what}: {kind}: {}", describe(e)))
}

/// `e` as failure texts and logs may show it.
///
/// reqwest's own `Display` appends `for url (…)` with the whole URL, query included (a
/// customer webhook's `?token=…`, a presigned URL's signature); this text leaves the URL out
/// ([`reqwest::Error::without_url`]) and names the causes (`tcp connect error: Connection
/// refused`). A body that does not decode names no cause: serde's message quotes the
/// offending value, which is the service's answer. Whatever a cause says, the URL's query,
/// user and password are cut from the text.
pub fn describe(e: reqwest::Error) -> String {
    let url = e.url().cloned();
    let decode = e.is_decode();
    let e = e.without_url();
    let mut text = e.to_string();
    if !decode {
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let part = s.to_string();
            if !text.ends_with(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            source = s.source();
        }
    }
    if let Some(u) = url {
        for secret in [u.query(), u.password(), Some(u.username())]
            .into_iter()
            .flatten()
            .filter(|s| s.len() >= 4)
        {
            text = text.replace(secret, "…");
        }
    }
    text
}

/// A JSON body that is not the expected shape, as failure texts may show it: the category and
/// position only. serde's own message quotes the offending value (`invalid type: string
/// "https://…?X-Amz-Signature=…"`), and that value is the service's answer.
pub fn shape_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "JSON of an unexpected shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// `url` as failure texts may show it: scheme, host, port and path, without credentials,
/// query or fragment (a customer URL's query often carries its token, a presigned URL its
/// signature).
pub fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TOKEN: &str = "S3CRET-token-4711";

    /// A server on loopback that answers every connection with `status` and a body echoing
    /// the request head (as some services do in their error answers).
    async fn echoing(status: &str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = status.to_owned();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0u8; 8192];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let body = serde_json::json!({"detail": format!("cannot use {head}")}).to_string();
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_refused_connection_names_no_url_query() {
        let url = format!("http://user:pass-w0rd@127.0.0.1:1/h?token={TOKEN}");
        let e = client(Duration::from_secs(5))
            .post(&url)
            .send()
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains(TOKEN),
            "reqwest's own text has it: {e}"
        );
        let text = transport("webhook POST", e).to_string();
        assert!(text.contains("cannot connect"), "{text}");
        assert!(
            text.contains("onnection refused"),
            "the cause is named: {text}"
        );
        assert!(
            !text.contains(TOKEN) && !text.contains("pass-w0rd"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_timeout_names_no_url_query() {
        // A listener that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let e = client(Duration::from_millis(300))
            .get(format!("http://{addr}/x?sig={TOKEN}"))
            .send()
            .await
            .unwrap_err();
        let text = transport("GET", e).to_string();
        assert!(text.contains("timed out"), "{text}");
        assert!(!text.contains(TOKEN), "{text}");
    }

    #[tokio::test]
    async fn an_error_answer_is_not_quoted() {
        let base = echoing("422 Unprocessable Entity").await;
        let response = client(Duration::from_secs(5))
            .post(format!("{base}/v1/audio?audio={TOKEN}"))
            .send()
            .await
            .unwrap();
        let e = check("transcription POST", response).await.unwrap_err();
        assert_eq!(e.type_name(), "HttpClientError");
        let text = e.to_string();
        assert_eq!(text, "transcription POST: HTTP 422 Unprocessable Entity");
        assert!(!text.contains(TOKEN));
    }

    #[test]
    fn only_short_codes_are_kept_of_an_error_body() {
        assert_eq!(
            safe_reason(
                br#"{"error": {"message": "too long: ...", "code": "context_length_exceeded"}}"#
            ),
            Some("context_length_exceeded".into())
        );
        assert_eq!(
            safe_reason(
                br#"{"result": "error", "msg": "Invalid message(s)", "code": "BAD_REQUEST"}"#
            ),
            Some("BAD_REQUEST".into())
        );
        assert_eq!(
            safe_reason(br#"{"code": "see https://x/?token=abc"}"#),
            None
        );
        assert_eq!(safe_reason(br#"{"error": "https://x/?token=abc"}"#), None);
        assert_eq!(safe_reason(b"<html>oops</html>"), None);
    }

    #[test]
    fn shape_errors_do_not_quote_the_body() {
        let e = serde_json::from_str::<Vec<u8>>(r#""https://x/?X-Amz-Signature=abc""#).unwrap_err();
        assert!(
            e.to_string().contains("X-Amz-Signature"),
            "serde's own text has it"
        );
        let text = shape_error(&e);
        assert!(!text.contains("X-Amz"), "{text}");
        assert!(text.starts_with("JSON of an unexpected shape"), "{text}");
    }

    #[test]
    fn urls_are_shown_without_their_secrets() {
        assert_eq!(
            display_url("https://user:pw@hooks.example.com:8443/in?token=s3cret#frag"),
            "https://hooks.example.com:8443/in"
        );
        assert_eq!(display_url("not a url"), "<unparsable URL>");
    }

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
