//! The reflow process: CLI, configuration, Temporal worker wiring.
//!
//! `main.rs` parses the command line and calls [`cli::run`] with the built-in
//! [`registry::Registry`]; integration tests call the same function with a registry that also
//! holds their test activities, so they exercise exactly this wiring.

pub mod alerts;
pub mod app;
pub mod attempts;
pub mod backfill;
pub mod backlog;
pub mod cli;
pub mod codec;
pub mod compare;
pub mod cost;
pub mod deployment;
pub mod follow;
pub mod gitops;
pub mod graph;
pub mod history;
pub mod http;
pub mod import;
pub mod intake;
pub mod local;
pub mod memo_sweep;
pub mod metrics;
pub mod poll;
pub mod registry;
pub mod rerun;
pub mod reset;
pub mod retry;
pub mod runs;
pub mod settings;
pub mod shadow;
pub mod shutdown;
pub mod temporal;
pub mod worker;

/// Install the tracing subscriber (`RUST_LOG`, default `info`), once per process.
pub fn init_tracing() {
    init_tracing_with("info");
}

/// Install the tracing subscriber with `level` as the default for reflow's own logs when
/// `RUST_LOG` is unset (`reflow process` uses `warn`, so its progress bars stay readable).
pub fn init_tracing_with(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},temporalio_sdk_core=warn,temporalio_sdk=warn,symphonia_format_mkv=warn,\
             symphonia_core=warn,symphonia_bundle_mp3=warn"
        ))
    });
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Colours only on a terminal: a log redirected to a file or a collector stays plain text.
    // While the Temporal server is unreachable the SDK client's retry warnings are left out
    // (one per poller every few seconds); `worker::watch_server` says it once instead.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter(worker::QuietWhileUnreachable),
        )
        .try_init();
}
