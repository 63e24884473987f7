//! What the API server allows a connection, so that no client holds a slot for free:
//!
//! - a connection must deliver its first request within [`HEADER_READ_TIMEOUT`] of being
//!   accepted, whatever it sends: silence, half a request head, or half the HTTP/2 preface
//!   (hyper-util's protocol detection has no timeout of its own); later request heads have
//!   the same time, and each piece of a body [`BODY_READ_TIMEOUT`];
//! - a connection with no request or response in flight is closed after
//!   [`HttpLimits::idle_timeout`] (`REFLOW_HTTP_IDLE_TIMEOUT`): HTTP/2 connections, whose pings
//!   any client answers, included; HTTP/2 pings unanswered for [`H2_KEEP_ALIVE_TIMEOUT`] close
//!   the connection, and one connection runs at most [`H2_MAX_CONCURRENT_STREAMS`] requests;
//! - at most [`HttpLimits::max_connections`] (`REFLOW_HTTP_MAX_CONNECTIONS`) connections are
//!   served at once (further ones wait in the listen backlog), and one client address at most
//!   [`HttpLimits::max_connections_per_client`] (`REFLOW_HTTP_MAX_CONNECTIONS_PER_CLIENT`; a
//!   connection over it is closed at once), so a client that keeps reconnecting cannot take
//!   every slot;
//! - WebSockets, which leave the connection count once upgraded, have their own caps
//!   ([`HttpLimits::ws_max`], [`HttpLimits::ws_max_per_client`]; `REFLOW_WS_MAX`,
//!   `REFLOW_WS_MAX_PER_CLIENT`), taken by [`super::ws`] through [`ClientSlots`], and client
//!   messages are capped at [`WS_MAX_MESSAGE`] (clients only ever send pings);
//! - `POST /v1/transcripts/{id}/process?force=true` succeeds at most once per
//!   [`FORCE_PROCESS_INTERVAL`] per transcript ([`force_process_cooldown`]; 429 with
//!   `Retry-After` otherwise): each one terminates a run and pays for a new one. That
//!   cooldown is a module of its own (`cooldown`); this file holds the connection limits.
//!
//! Behind a reverse proxy every client has the proxy's address: raise the per-client caps to
//! the process caps there, and let the proxy limit its clients.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::settings::Settings;

mod cooldown;

pub use cooldown::{Cooldown, FORCE_PROCESS_INTERVAL, force_process_cooldown};

/// Time a client has to send a request's head (request line and headers), counted for the
/// first request from the moment the connection is accepted.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between two pieces of a request body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest WebSocket message a client may send.
pub const WS_MAX_MESSAGE: usize = 64 * 1024;
/// Largest WebSocket frame a client may send.
pub const WS_MAX_FRAME: usize = 16 * 1024;
/// How long a shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often an HTTP/2 connection is pinged.
pub const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the HTTP/2 connection is closed.
pub const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests one HTTP/2 connection may have open at once.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 64;

/// The limits a deployment sets (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections one client address may hold at once.
    pub max_connections_per_client: usize,
    /// How long a connection with nothing in flight stays open.
    pub idle_timeout: Duration,
    /// WebSockets open at once.
    pub ws_max: usize,
    /// WebSockets one client address may hold at once.
    pub ws_max_per_client: usize,
}

impl HttpLimits {
    /// `max_connections` connections and `ws_max` sockets, a quarter of each per client (at
    /// least one), idle connections closed after the default idle timeout.
    pub fn new(max_connections: usize, ws_max: usize) -> Self {
        let max_connections = max_connections.clamp(1, MAX_SLOTS);
        let ws_max = ws_max.clamp(1, MAX_SLOTS);
        HttpLimits {
            max_connections,
            max_connections_per_client: (max_connections / 4).max(1),
            idle_timeout: crate::settings::DEFAULT_HTTP_IDLE_TIMEOUT,
            ws_max,
            ws_max_per_client: (ws_max / 4).max(1),
        }
    }

    /// The HTTP API's connection and WebSocket limits (from the settings):
    /// `REFLOW_HTTP_MAX_CONNECTIONS`, `REFLOW_HTTP_MAX_CONNECTIONS_PER_CLIENT` (default a
    /// quarter of the first), `REFLOW_HTTP_IDLE_TIMEOUT`, `REFLOW_WS_MAX` and
    /// `REFLOW_WS_MAX_PER_CLIENT` (default a quarter of `REFLOW_WS_MAX`). A per-client cap is
    /// never above its process cap.
    pub fn from_settings(settings: &Settings) -> HttpLimits {
        let mut limits = HttpLimits::new(
            settings.http_max_connections(),
            settings
                .count("REFLOW_WS_MAX")
                .unwrap_or(crate::settings::DEFAULT_WS_MAX),
        );
        if let Some(n) = settings.count("REFLOW_HTTP_MAX_CONNECTIONS_PER_CLIENT") {
            limits.max_connections_per_client = n.min(limits.max_connections);
        }
        if let Some(n) = settings.count("REFLOW_WS_MAX_PER_CLIENT") {
            limits.ws_max_per_client = n.min(limits.ws_max);
        }
        if let Some(d) = settings
            .var("REFLOW_HTTP_IDLE_TIMEOUT")
            .and_then(|v| crate::settings::duration(&v))
            .filter(|d| !d.is_zero())
        {
            limits.idle_timeout = d;
        }
        limits
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::new(
            crate::settings::DEFAULT_HTTP_MAX_CONNECTIONS,
            crate::settings::DEFAULT_WS_MAX,
        )
    }
}

/// The most slots of any kind a process keeps track of (a semaphore's permits are bounded).
pub const MAX_SLOTS: usize = 1 << 20;

/// The address a request came from, put in its extensions by [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Why a slot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotRefused {
    /// Every slot of the process is taken.
    #[error("all {0} slots are taken")]
    Full(usize),
    /// This client holds as many as one client may.
    #[error("{client} holds {held} slots, the most one client may")]
    Client {
        /// The client.
        client: IpAddr,
        /// What it holds.
        held: usize,
    },
}

/// Slots counted per process and per client address: connections in [`serve`], WebSockets in
/// [`super::ws`]. A slot is given back when its [`ClientSlot`] is dropped.
#[derive(Debug)]
pub struct ClientSlots {
    total: usize,
    per_client: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

impl ClientSlots {
    /// At most `total` slots, `per_client` of them for one address.
    pub fn new(total: usize, per_client: usize) -> Self {
        ClientSlots {
            total,
            per_client,
            held: Mutex::new(Held::default()),
        }
    }

    /// Slots held now, in all.
    pub fn in_use(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // The counters stay consistent even if a holder panicked: every change is one step.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for `client` (`None`: an address unknown, counted in the total only).
    pub fn try_acquire(
        self: &Arc<Self>,
        client: Option<IpAddr>,
    ) -> Result<ClientSlot, SlotRefused> {
        let mut held = self.lock();
        if held.total >= self.total {
            return Err(SlotRefused::Full(self.total));
        }
        if let Some(ip) = client {
            let mine = held.by_client.entry(ip).or_default();
            if *mine >= self.per_client {
                return Err(SlotRefused::Client {
                    client: ip,
                    held: *mine,
                });
            }
            *mine += 1;
        }
        held.total += 1;
        Ok(ClientSlot {
            slots: self.clone(),
            client,
        })
    }
}

/// One slot of a [`ClientSlots`], given back on drop.
#[derive(Debug)]
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
    client: Option<IpAddr>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
        held.total = held.total.saturating_sub(1);
        if let Some(ip) = self.client
            && let Some(n) = held.by_client.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                held.by_client.remove(&ip);
            }
        }
    }
}

/// Serve `app` on `listener` with `limits` until `shutdown` resolves, then let the requests in
/// flight finish (at most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
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
        .keep_alive_interval(Some(H2_KEEP_ALIVE_INTERVAL))
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS);
    let builder = Arc::new(builder);
    let max = limits.max_connections.clamp(1, MAX_SLOTS);
    let slots = Arc::new(Semaphore::new(max));
    let clients = Arc::new(ClientSlots::new(max, limits.max_connections_per_client));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let client = match clients.try_acquire(Some(peer.ip())) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection refused: per-client cap");
                continue;
            }
        };
        let connection = Connection {
            builder: builder.clone(),
            app: app.clone(),
            peer,
            idle_timeout: limits.idle_timeout,
            stopping: stopping.clone(),
        };
        tokio::spawn(async move {
            connection.run(stream).await;
            drop((permit, client));
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit until it ends: all of them back means all ended.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the shutdown grace; dropping them");
    }
    Ok(())
}

/// One accepted connection and what it is served with.
struct Connection {
    builder: Arc<Builder<TokioExecutor>>,
    app: Router,
    peer: SocketAddr,
    idle_timeout: Duration,
    stopping: watch::Receiver<bool>,
}

impl Connection {
    /// Serve the connection until it ends, is idle too long, never sends a request, or the
    /// server stops.
    async fn run(mut self, stream: TcpStream) {
        let accepted = Instant::now();
        let activity = Arc::new(Activity::default());
        let inner = TowerToHyperService::new(tower_http::timeout::RequestBodyTimeout::new(
            self.app.clone(),
            BODY_READ_TIMEOUT,
        ));
        let client = ClientAddr(self.peer.ip());
        let tracker = activity.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(client);
            let in_flight = tracker.begin();
            let call = hyper::service::Service::call(&inner, request);
            async move {
                let response = call.await?;
                Ok::<_, Infallible>(response.map(|body| Tracked {
                    inner: body,
                    _in_flight: in_flight,
                }))
            }
        });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(connection);
        // Set once the connection is told to close: when it must be gone.
        let mut closing: Option<Instant> = None;
        loop {
            let wake = match closing {
                Some(at) => at,
                None => activity.deadline(accepted, self.idle_timeout),
            };
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                // A request began or ended: the deadline moved.
                () = activity.changed.notified() => {}
                _ = self.stopping.changed(), if closing.is_none() => {
                    connection.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + SHUTDOWN_GRACE);
                }
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    match (closing, activity.state()) {
                        // Told to close, and nothing is in flight any more: gone.
                        (Some(_), (0, _, _)) => return,
                        // A response still streams: it is not cut.
                        (Some(_), _) => closing = Some(now + SHUTDOWN_GRACE),
                        (None, (0, 0, _)) if now >= accepted + HEADER_READ_TIMEOUT => {
                            tracing::debug!(peer = %self.peer, "no request within the head timeout; closed");
                            return;
                        }
                        (None, (0, _, last)) if now >= last + self.idle_timeout => {
                            tracing::debug!(peer = %self.peer, "idle connection closed");
                            connection.as_mut().graceful_shutdown();
                            closing = Some(now + SHUTDOWN_GRACE);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// What a connection has in flight: requests whose response has not been sent in full.
#[derive(Debug, Default)]
struct Activity {
    state: Mutex<ActivityState>,
    /// Told when a request begins or ends (the connection's deadline moves).
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct ActivityState {
    in_flight: usize,
    requests: u64,
    last_end: Option<Instant>,
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request arrived; in flight until the guard (carried by its response body) drops.
    fn begin(self: &Arc<Self>) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        s.requests += 1;
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// `(in flight, requests so far, when the last one ended)`.
    fn state(&self) -> (usize, u64, Instant) {
        let s = self.lock();
        (
            s.in_flight,
            s.requests,
            s.last_end.unwrap_or_else(Instant::now),
        )
    }

    /// When to look at the connection next: the first request's deadline, the idle deadline,
    /// or (with something in flight) one idle period from now.
    fn deadline(&self, accepted: Instant, idle: Duration) -> Instant {
        match self.state() {
            (0, 0, _) => accepted + HEADER_READ_TIMEOUT,
            (0, _, last) => last + idle,
            _ => Instant::now() + idle,
        }
    }
}

/// A request in flight on its connection.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.last_end = Some(Instant::now());
        self.0.changed.notify_one();
    }
}

/// A response body that keeps its request in flight until it is sent (or dropped).
struct Tracked {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
