//! What the request log records of a request: tower-http's `TraceLayer` opens a span per
//! request (at `debug`) whose fields every log line inside it repeats. Its default records the
//! whole URI, and URIs carry credentials in their query (`?token=` of audio links, a `key` or
//! `signature` a client appends), so [`RequestSpan`] records the path and the query with the
//! value of every credential-like parameter replaced by `[redacted]`.

use axum::http::{Request, Uri};
use tower_http::trace::MakeSpan;

/// Query parameters whose values never reach the log: those whose name contains one of these
/// (case-insensitive).
const SECRET_PARAMETERS: [&str; 8] = [
    "token",
    "key",
    "secret",
    "sig",
    "password",
    "auth",
    "credential",
    "code",
];

/// The request span: `request{method=… uri=… version=…}`, the URI as [`redacted_uri`] shows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> tracing::Span {
        tracing::debug_span!(
            "request",
            method = %request.method(),
            uri = %redacted_uri(request.uri()),
            version = ?request.version(),
        )
    }
}

fn is_secret(name: &str) -> bool {
    let name: String = url::form_urlencoded::parse(name.as_bytes())
        .next()
        .map(|(k, _)| k.to_ascii_lowercase())
        .unwrap_or_default();
    SECRET_PARAMETERS.iter().any(|s| name.contains(s))
}

/// `uri`'s path and query, credential-like query values replaced by `[redacted]`.
pub fn redacted_uri(uri: &Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret(name) => format!("{name}=[redacted]"),
            None if is_secret(pair) => "[redacted]".to_owned(),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_query_are_redacted_and_the_rest_kept() {
        let show = |u: &str| redacted_uri(&u.parse().unwrap());
        assert_eq!(
            show("/v1/transcripts/t-1/audio/mp3?token=eyJ.a.b&x=1"),
            "/v1/transcripts/t-1/audio/mp3?token=[redacted]&x=1"
        );
        assert_eq!(show("/p?%74oken=s3cret"), "/p?%74oken=[redacted]");
        assert_eq!(
            show("/p?api_key=1&Signature=2&force=true"),
            "/p?api_key=[redacted]&Signature=[redacted]&force=true"
        );
        assert_eq!(show("/p?s3cret-alone-token"), "/p?[redacted]");
        assert_eq!(show("/metrics"), "/metrics");
        assert_eq!(show("http://h/p?token=a"), "/p?token=[redacted]");
    }
}
