//! Open mode (no credentials, `reflow dev` and `reflow process` on 127.0.0.1) answers only
//! requests that a loopback client meant for it: the `Host` header must name a loopback
//! address (`localhost`, `127.x.x.x`, `[::1]`), so a web page whose name was rebound to
//! 127.0.0.1 (DNS rebinding) cannot read or process transcripts through the visitor's
//! browser, and a request that carries an `Origin` (every browser's cross-site request and
//! WebSocket) must come from a loopback page too. Refused: 403 with a JSON reason. With
//! credentials configured, or `REFLOW_ALLOW_OPEN_API` (something in front authenticates), the
//! check is off.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiState;

/// Whether `host` (a `Host` header's host, without the port) names a loopback address.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The host of a `Host` header value (`name`, `name:port`, `[v6]:port`).
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// Why a request is refused in open mode, or `None`. `authority` is the request URI's (an
/// HTTP/2 request names its host there, in `:authority`, and may carry no `Host` header).
fn refusal(headers: &HeaderMap, authority: Option<&str>) -> Option<&'static str> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(authority)
        .map(host_of);
    if !host.is_some_and(is_loopback_host) {
        return Some("open mode answers loopback hosts only (Host)");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let loopback = origin
            .to_str()
            .ok()
            .and_then(|o| url::Url::parse(o).ok())
            .and_then(|u| u.host_str().map(str::to_owned))
            .is_some_and(|h| is_loopback_host(&h));
        if !loopback {
            return Some("open mode answers loopback pages only (Origin)");
        }
    }
    None
}

/// The middleware: in open mode, refuse what [`refusal`] names.
pub(super) async fn guard(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if !state.auth_configured()
        && !state.open_on_public_address
        && let Some(why) = refusal(
            req.headers(),
            req.uri()
                .authority()
                .map(axum::http::uri::Authority::as_str),
        )
    {
        tracing::warn!(
            host = ?req.headers().get(header::HOST),
            origin = ?req.headers().get(header::ORIGIN),
            "{why}"
        );
        return (StatusCode::FORBIDDEN, axum::Json(json!({"detail": why}))).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn refusal_of(h: &HeaderMap) -> Option<&'static str> {
        refusal(h, None)
    }

    #[test]
    fn loopback_hosts_and_origins_pass_and_others_do_not() {
        for ok in [
            "127.0.0.1:1250",
            "localhost:1250",
            "[::1]:8000",
            "127.0.0.2",
            "LOCALHOST",
        ] {
            assert_eq!(refusal_of(&headers(&[("host", ok)])), None, "{ok}");
        }
        for bad in [
            "evil.example:1250",
            "10.0.0.5:1250",
            "127.0.0.1.evil.example",
            "[2001:db8::1]:80",
        ] {
            assert!(refusal_of(&headers(&[("host", bad)])).is_some(), "{bad}");
        }
        assert!(refusal(&HeaderMap::new(), None).is_some(), "no Host");
        // HTTP/2: the host is the URI's authority.
        assert_eq!(refusal(&HeaderMap::new(), Some("127.0.0.1:1250")), None);
        assert!(refusal(&HeaderMap::new(), Some("rebind.example:1250")).is_some());
        assert_eq!(
            refusal_of(&headers(&[
                ("host", "127.0.0.1:1250"),
                ("origin", "http://localhost:1250")
            ])),
            None
        );
        for origin in [
            "http://evil.example",
            "null",
            "http://127.0.0.1.evil.example",
        ] {
            assert!(
                refusal_of(&headers(&[("host", "127.0.0.1:1250"), ("origin", origin)])).is_some(),
                "{origin}"
            );
        }
    }
}
