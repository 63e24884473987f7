//! Temporal's remote codec protocol: `POST /codec/encode` and `POST /codec/decode` take and
//! answer `{"payloads": [Payload…]}` in protobuf JSON (metadata values and data in base64), as
//! the Web UI's "Remote Codec Endpoint" and `temporal workflow show --codec-endpoint` send it.
//!
//! The Web UI's "Remote Codec Endpoint" (or `TEMPORAL_CODEC_ENDPOINT`) and the CLI's
//! `--codec-endpoint` are `http(s)://<reflow>/codec`.
//!
//! Decoded payloads are meeting content, so only the operator is answered (anyone in open
//! mode, which is loopback-only): `Authorization: Bearer $REFLOW_API_TOKEN` (the CLI's
//! `--codec-auth`), or, for the Web UI, which cannot send reflow's token, the session cookie
//! the operator gets by entering the token once at `GET /codec/session` (HttpOnly,
//! SameSite=Strict, path `/codec`, 12 hours; the UI sends it with "include cross-origin
//! credentials"). The cookie is not the token: it is a value derived from it that expires
//! with the cookie ([`super::keys::codec_session`]), verified on every request; it is `Secure`
//! when the request came over https (`X-Forwarded-Proto: https` from the operator's TLS
//! proxy) or `REFLOW_PUBLIC_URL` is an https URL. Browsers get CORS for the Web UI's origins (`REFLOW_CODEC_CORS_ORIGINS`,
//! default the dev server's `http://localhost:8233` and `http://127.0.0.1:8233`), credentials
//! included; the preflight itself needs no token. Without a codec configured the routes
//! answer 404.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::routing::post;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use temporalio_common::protos::temporal::api::common::v1::Payload;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::auth::Caller;
use super::{ApiError, ApiState};

/// Largest request body the codec routes read.
const MAX_BODY: usize = 4 * 1024 * 1024;

pub(super) fn routes(origins: &[String]) -> Router<ApiState> {
    Router::new()
        .route("/codec/encode", post(encode))
        .route("/codec/decode", post(decode))
        .route(
            "/codec/session",
            axum::routing::get(session_form).post(session),
        )
        .layer(cors(origins))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-namespace"),
        ])
        .allow_credentials(true)
}

/// `{"payloads": […]}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Payloads {
    /// The payloads.
    #[serde(default)]
    pub payloads: Vec<JsonPayload>,
}

/// A `Payload` in protobuf JSON: bytes as base64.
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonPayload {
    /// Metadata values, base64.
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    /// Data, base64.
    #[serde(default)]
    pub data: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl JsonPayload {
    fn into_payload(self) -> Result<Payload, ApiError> {
        let bad =
            |what: &str| ApiError::new(StatusCode::BAD_REQUEST, format!("{what} is not base64"));
        let metadata = self
            .metadata
            .into_iter()
            .map(|(k, v)| Ok((k, b64().decode(v).map_err(|_| bad("a metadata value"))?)))
            .collect::<Result<_, ApiError>>()?;
        Ok(Payload {
            metadata,
            data: b64().decode(self.data).map_err(|_| bad("data"))?,
            ..Default::default()
        })
    }

    fn from_payload(p: Payload) -> Self {
        JsonPayload {
            metadata: p
                .metadata
                .into_iter()
                .map(|(k, v)| (k, b64().encode(v)))
                .collect(),
            data: b64().encode(p.data),
        }
    }
}

/// The operator's session cookie.
const COOKIE: &str = "reflow_codec_operator";
/// Its lifetime.
const SESSION_SECONDS: u64 = 12 * 3600;

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn operator_codec(
    state: &ApiState,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<crate::codec::PayloadEncryption>, ApiError> {
    let codec = state
        .codec
        .clone()
        .ok_or_else(|| ApiError::not_found("no payload codec is configured (REFLOW_CODEC_KEYS)"))?;
    let caller = match state.caller(headers)? {
        Caller::Anonymous => {
            let session = session_cookie(headers);
            match (state.api_token.as_deref(), session) {
                (Some(token), Some(s)) if super::keys::codec_session_valid(token, &s) => {
                    Caller::Operator
                }
                (_, Some(_)) => {
                    return Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "codec session expired or invalid: unlock again at /codec/session",
                    ));
                }
                (_, None) => Caller::Anonymous,
            }
        }
        caller => caller,
    };
    match caller {
        Caller::Open | Caller::Operator => Ok(codec),
        Caller::Anonymous => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "operator token required",
        )),
        Caller::User(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "operator token required",
        )),
    }
}

/// Each payload of `body` through `f`.
fn each(
    body: Payloads,
    f: impl Fn(Payload) -> Result<Payload, ApiError>,
) -> Result<axum::Json<Payloads>, ApiError> {
    let payloads = body
        .payloads
        .into_iter()
        .map(|p| Ok(JsonPayload::from_payload(f(p.into_payload()?)?)))
        .collect::<Result<_, ApiError>>()?;
    Ok(axum::Json(Payloads { payloads }))
}

async fn encode(
    State(state): State<ApiState>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Payloads>,
) -> Result<axum::Json<Payloads>, ApiError> {
    let codec = operator_codec(&state, &headers)?;
    each(body, |p| Ok(codec.seal(p)))
}

async fn decode(
    State(state): State<ApiState>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Payloads>,
) -> Result<axum::Json<Payloads>, ApiError> {
    let codec = operator_codec(&state, &headers)?;
    each(body, |p| {
        codec
            .open(p)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
    })
}

/// `GET /codec/session`: a form where the operator enters the token once per browser.
async fn session_form() -> axum::response::Html<&'static str> {
    axum::response::Html(
        "<!doctype html><meta charset=utf-8><title>reflow codec</title>\
         <form method=post action=/codec/session>\
         <p>Operator token (REFLOW_API_TOKEN), to let the Temporal Web UI decode payloads in \
         this browser for 12 hours:</p>\
         <input type=password name=token autocomplete=off autofocus> \
         <button>Unlock</button></form>",
    )
}

#[derive(Deserialize)]
struct SessionForm {
    token: String,
}

/// Whether the request reached reflow over https: the operator's TLS proxy says so
/// (`X-Forwarded-Proto`, RFC 7239 `Forwarded: proto=https`), or the URI's scheme does.
/// A client can claim it falsely; all it gets is a cookie its browser then keeps off plain HTTP.
fn over_https(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([';', ',']))
        .any(|p| p.trim().eq_ignore_ascii_case("proto=https"));
    forwarded_proto || forwarded || uri.scheme_str() == Some("https")
}

/// `POST /codec/session` (form `token=…`): the operator's session cookie, or 401.
async fn session(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    axum::Form(form): axum::Form<SessionForm>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let Some(token) = state
        .api_token
        .as_deref()
        .filter(|_| state.caller_of(Some(&form.token)).ok() == Some(Caller::Operator))
    else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not the operator token",
        ));
    };
    let expires = std::time::SystemTime::now() + std::time::Duration::from_secs(SESSION_SECONDS);
    let secure = if state.https || over_https(&headers, &uri) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={}; Path=/codec; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{secure}",
        super::keys::codec_session(token, expires)
    );
    Ok((
        [(header::SET_COOKIE, cookie)],
        axum::response::Html(
            "codec unlocked for this browser; the Temporal Web UI can now decode payloads",
        ),
    )
        .into_response())
}
