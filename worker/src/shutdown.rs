//! Shutdown: one broadcast that the API, the workers and the dev server all watch.
//!
//! Ctrl-C or SIGTERM triggers it; workers then drain (finishing or cancelling in-flight
//! activities within their grace period) and the dev server, if this process started one,
//! is stopped last.

use std::sync::Arc;

use tokio::sync::watch;

/// Broadcasts "stop"; cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(Arc::new(watch::channel(false).0))
    }
}

impl Shutdown {
    /// Ask everything holding this to stop.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once `trigger` was called.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    /// Trigger on Ctrl-C or SIGTERM (spawned; returns at once).
    pub fn on_signals(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("installing a SIGTERM handler cannot fail on unix");
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
            tracing::info!("stop requested");
            me.trigger();
        });
    }
}
