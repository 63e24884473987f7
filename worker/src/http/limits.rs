//! What the API server allows a connection: a client must send its request head within
//! [`HEADER_READ_TIMEOUT`] and each piece of its body within [`BODY_READ_TIMEOUT`] (a slow
//! client cannot hold a connection open by trickling bytes), at most
//! `max_connections` (`REFLOW_HTTP_MAX_CONNECTIONS`, default 1024) connections are served at once (further ones wait in the listen backlog),
//! and WebSocket messages from clients are capped at [`WS_MAX_MESSAGE`] (clients only ever send
//! pings; the default would buffer 64 MiB).

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Time a client has to send a request's head (request line and headers).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between two pieces of a request body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest WebSocket message a client may send.
pub const WS_MAX_MESSAGE: usize = 64 * 1024;
/// Largest WebSocket frame a client may send.
pub const WS_MAX_FRAME: usize = 16 * 1024;
/// How long a shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serve `app` on `listener` with the limits above until `shutdown` resolves, then let the
/// requests in flight finish (at most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(tower_http::timeout::RequestBodyTimeout::new(
            app.clone(),
            BODY_READ_TIMEOUT,
        ));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the shutdown grace; dropping them");
    }
    Ok(())
}
