//! The HTTP API the frontend speaks (docs/contracts/events-and-api.md): Reflector-compatible REST
//! under `/v1/transcripts/…`, the transcript WebSocket, and the Conductor-compatible status shim
//! under `/api/workflow/…` ([`conductor`]); served by `reflow worker --http` and `reflow dev`.
//!
//! Handlers read the database and the object store; they never talk to a worker. Errors are
//! `{"detail": "<message>"}` with the status the spec gives.

pub mod auth;
pub mod codec;
pub mod conductor;
pub mod daily;
mod delete;
pub mod keys;
pub mod limits;
mod loopback;
pub mod page;
pub mod redact;
pub mod request_log;
pub mod transcripts;
pub mod ws;

use std::net::SocketAddr;

use activities::events::Events;
use activities::storage::Storage;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    /// The database and the event fan-out.
    pub events: Events,
    /// The transcript bucket.
    pub storage: Storage,
    /// Operator token (`REFLOW_API_TOKEN`): sees everything.
    pub api_token: Option<String>,
    /// `SECRET_KEY`: users' JWTs (HS256) and shareable audio links are signed with it.
    pub secret_key: Option<String>,
    /// The `SECRET_KEY` a rotation replaced (`SECRET_KEY_PREVIOUS`), accepted for verifying
    /// until its date, never for signing ([`keys`]).
    pub secret_key_previous: Option<keys::PreviousKey>,
    /// Users reach the API over https (`REFLOW_PUBLIC_URL` is an `https://` URL): cookies are
    /// `Secure` whatever the request says.
    pub https: bool,
    /// How often a transcript's WebSocket checks again that its viewer may still read it
    /// ([`ws::ACCESS_RECHECK`] unless a test says).
    pub ws_access_recheck: std::time::Duration,
    /// Temporal, for the status API (`None`: those endpoints answer 503).
    pub temporal: Option<temporalio_client::Client>,
    /// Daily intake (`None`: webhooks are answered `deferred`).
    pub intake: Option<std::sync::Arc<crate::intake::Intake>>,
    /// `DAILY_WEBHOOK_SECRET` (base64): without it every signed webhook is refused.
    pub daily_webhook_secret: Option<String>,
    /// `REFLOW_ALLOW_OPEN_API`: serve without credentials on a non-loopback address (logged
    /// as a warning). Without it, [`serve`] refuses such an address.
    pub open_on_public_address: bool,
    /// The payload codec served on `/codec/*` for the Web UI and the CLI (`None`: 404).
    pub codec: Option<std::sync::Arc<crate::codec::PayloadEncryption>>,
    /// Browser origins allowed on `/codec/*` (`REFLOW_CODEC_CORS_ORIGINS`).
    pub codec_cors_origins: Vec<String>,
    /// Connection and WebSocket limits ([`limits`]; `REFLOW_HTTP_*`, `REFLOW_WS_*`).
    pub limits: limits::HttpLimits,
    /// How old a Daily webhook's signed timestamp may be (`REFLOW_DAILY_WEBHOOK_MAX_AGE`);
    /// [`daily::MAX_FUTURE_SKEW`] bounds it the other way.
    pub daily_webhook_max_age: std::time::Duration,
    /// The WebSockets open now, capped by `limits` ([`serve`] makes a fresh count from them).
    pub sockets: std::sync::Arc<limits::ClientSlots>,
    /// Forced reprocessings by transcript ([`limits::force_process_cooldown`]).
    pub force_process: std::sync::Arc<limits::Cooldown>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use activities::redacted::Redacted;
        f.debug_struct("ApiState")
            .field("events", &self.events)
            .field("storage", &self.storage)
            .field("api_token", &Redacted(&self.api_token))
            .field("secret_key", &Redacted(&self.secret_key))
            .field("secret_key_previous", &self.secret_key_previous)
            .field("https", &self.https)
            .field("temporal", &self.temporal.is_some())
            .field("intake", &self.intake.is_some())
            .field(
                "daily_webhook_secret",
                &Redacted(&self.daily_webhook_secret),
            )
            .field("open_on_public_address", &self.open_on_public_address)
            .field("codec", &self.codec)
            .field("codec_cors_origins", &self.codec_cors_origins)
            .field("limits", &self.limits)
            .field("daily_webhook_max_age", &self.daily_webhook_max_age)
            .field("sockets", &self.sockets.in_use())
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// Open mode over `events` and `storage`: no credentials, no Temporal, no intake, no codec
    /// (fill in what a caller needs with struct update syntax).
    pub fn new(events: Events, storage: Storage) -> Self {
        let limits = limits::HttpLimits::default();
        ApiState {
            events,
            storage,
            api_token: None,
            secret_key: None,
            secret_key_previous: None,
            https: false,
            ws_access_recheck: ws::ACCESS_RECHECK,
            temporal: None,
            intake: None,
            daily_webhook_secret: None,
            open_on_public_address: false,
            codec: None,
            codec_cors_origins: crate::settings::origins(
                crate::settings::DEFAULT_CODEC_CORS_ORIGINS,
            ),
            limits,
            daily_webhook_max_age: crate::settings::DEFAULT_DAILY_WEBHOOK_MAX_AGE,
            sockets: std::sync::Arc::new(limits::ClientSlots::new(
                limits.ws_max,
                limits.ws_max_per_client,
            )),
            force_process: Default::default(),
        }
    }
}

/// Why the API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Open mode (no credentials) on an address other hosts reach.
    #[error(
        "refusing to serve the HTTP API on {0} without credentials: every transcript, run and \
         retry would be open to anyone who reaches it. Set REFLOW_API_TOKEN (operator) and/or \
         SECRET_KEY (users' JWTs), bind a loopback address (127.0.0.1), or set \
         REFLOW_ALLOW_OPEN_API=1 if something in front of reflow authenticates every request"
    )]
    OpenOnPublicAddress(SocketAddr),
    /// Binding or serving failed.
    #[error("HTTP API on {addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// An API error: a status and Reflector's `{"detail": …}` body.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human text.
    pub detail: String,
}

impl ApiError {
    /// `status` with `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
        }
    }

    /// 404 with `detail`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 503 `{service} unavailable`: the cause is logged, never sent (a 5xx body carries no
    /// internal error text).
    pub fn unavailable(service: &'static str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{service} unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{service} unavailable"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({"detail": self.detail}))).into_response()
    }
}

impl From<activities::db::DbError> for ApiError {
    fn from(e: activities::db::DbError) -> Self {
        tracing::error!(error = %e, "database");
        match e {
            activities::db::DbError::NotFound { .. } => ApiError::not_found(e.to_string()),
            _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
        }
    }
}

impl From<activities::storage::StorageError> for ApiError {
    fn from(e: activities::storage::StorageError) -> Self {
        tracing::error!(error = %e, "storage");
        match e {
            activities::storage::StorageError::NotFound { .. } => ApiError::not_found("Not found"),
            _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable"),
        }
    }
}

/// Every route.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .merge(transcripts::routes())
        .merge(conductor::routes())
        .merge(daily::routes())
        .merge(codec::routes(&state.codec_cors_origins))
        .route("/metrics", axum::routing::get(metrics))
        .merge(page::routes())
        .merge(ws::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.force_process.clone(),
            limits::force_process_cooldown,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            loopback::guard,
        ))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(request_log::RequestSpan),
        )
        .with_state(state)
}

/// SDK Core's and reflow's metrics, Prometheus text format.
async fn metrics_text() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render().await,
    )
        .into_response()
}

/// `GET /metrics` on the API's port: the operator's only (everyone in open mode). Counters
/// name rooms, queues and failure types and show when meetings happen: nothing the public
/// behind the operator's proxy needs. Prometheus scrapes the metrics port instead
/// ([`serve_metrics`]), so that the operator token, which grants everything, is not handed to
/// it.
async fn metrics(
    axum::extract::State(state): axum::extract::State<ApiState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    match state.caller(&headers)? {
        auth::Caller::Open | auth::Caller::Operator => Ok(metrics_text().await),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "operator token required (Prometheus scrapes the metrics port, --metrics)",
        )),
    }
}

/// Serve `GET /metrics` alone, without credentials, on `addr` (`reflow worker --metrics`,
/// `REFLOW_METRICS_ADDRESS`) until `shutdown`; `bound` hears the address bound. The port is
/// for Prometheus on a private network (the compose network), never published or proxied:
/// every other path is a 404.
pub async fn serve_metrics(
    addr: SocketAddr,
    bound: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let io = |source| ServeError::Io { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(io)?;
    bound(listener.local_addr().map_err(io)?);
    let app = Router::new()
        .route("/metrics", axum::routing::get(metrics_text))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(request_log::RequestSpan),
        );
    limits::serve(listener, app, limits::HttpLimits::new(64, 1), shutdown)
        .await
        .map_err(io)
}

/// Refuse open mode (`credentials` false) on a non-loopback `addr` unless `allowed`
/// (`REFLOW_ALLOW_OPEN_API`, logged as a warning).
pub fn open_mode_check(
    addr: SocketAddr,
    credentials: bool,
    allowed: bool,
) -> Result<(), ServeError> {
    if !credentials && !addr.ip().is_loopback() {
        if !allowed {
            return Err(ServeError::OpenOnPublicAddress(addr));
        }
        tracing::warn!(%addr, "serving the HTTP API without credentials on a non-loopback address (REFLOW_ALLOW_OPEN_API)");
    }
    Ok(())
}

/// Serve `router(state)` on `addr` until `shutdown` resolves; returns the bound address
/// through `bound` (port 0 picks a free one). Open mode (neither credential configured) is for
/// loopback addresses only, unless `state.open_on_public_address` says otherwise.
pub async fn serve(
    addr: SocketAddr,
    state: ApiState,
    bound: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    open_mode_check(addr, state.auth_configured(), state.open_on_public_address)?;
    let io = |source| ServeError::Io { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(io)?;
    bound(listener.local_addr().map_err(io)?);
    let limits = state.limits;
    let state = ApiState {
        sockets: std::sync::Arc::new(limits::ClientSlots::new(
            limits.ws_max,
            limits.ws_max_per_client,
        )),
        ..state
    };
    limits::serve(listener, router(state), limits, shutdown)
        .await
        .map_err(io)
}
