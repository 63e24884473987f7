//! The commands that serve task queues until Ctrl-C / SIGTERM: `reflow worker` (against a
//! configured cluster) and `reflow dev` (a local dev server unless one is configured), and
//! which queues they serve.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;

use super::connect::{connect, connect_or_start, register_pipelines, require_applied};
use super::pipelines::pipeline_files;
use crate::app::App;
use crate::registry::Registry;
use crate::runs;
use crate::settings::Settings;
use crate::shutdown::Shutdown;

/// Where `reflow worker` serves HTTP.
#[derive(Debug, Clone, Copy)]
pub(super) struct Addresses {
    /// The API (`--http`).
    pub http: Option<SocketAddr>,
    /// Prometheus's `/metrics` alone (`--metrics`).
    pub metrics: Option<SocketAddr>,
}

/// `reflow worker`: serve `queues` (default: every queue of the pipelines in `pipelines`),
/// with the HTTP API on `addrs.http` and the metrics on `addrs.metrics`; the example
/// pipeline's activities only with `examples`.
pub(super) async fn worker(
    settings: &Settings,
    registry: Registry,
    queues: Vec<String>,
    pipelines: Option<PathBuf>,
    addrs: Addresses,
    examples: bool,
) -> anyhow::Result<ExitCode> {
    let Addresses { http, metrics } = addrs;
    let registry = if examples {
        registry
    } else {
        registry.without_examples()
    };
    if let Some(addr) = http {
        // Before anything else: a refused bind must not wait for Temporal first.
        crate::http::open_mode_check(
            addr,
            settings.api_has_credentials(),
            settings.allow_open_api,
        )?;
    }
    let queues = queues_to_serve(
        queues,
        pipelines.as_deref().unwrap_or(&settings.pipelines_dir),
        &registry,
    )?;
    let client = connect(settings).await?;
    // Runs set reflow's search attributes in their first workflow task; without them
    // registered every run would be stuck, so refuse to start instead.
    require_applied(settings, &client).await?;
    let shutdown = Shutdown::default();
    shutdown.on_signals();
    tracing::info!(queues = ?queues, "serving");
    let dir = pipelines.as_deref().unwrap_or(&settings.pipelines_dir);
    let app = App::build(settings, &registry, client, dir).await?;
    // The API's intake starts runs of its meeting pipeline: refuse to serve it unregistered.
    if http.is_some() {
        let missing =
            crate::gitops::unregistered(app.services.db(), &[&app.intake.pipeline]).await?;
        if !missing.is_empty() {
            bail!(
                "pipeline {} (which intake starts) is not registered in {}: run `reflow apply` first",
                missing.join(", "),
                app.services.db().url()
            );
        }
    }
    let versions = activities::versions::Versions::of(app.services.db())
        .preload()
        .await?;
    tracing::info!(versions, "registered pipeline versions loaded");
    let metrics = async {
        let Some(addr) = metrics else {
            return Ok(());
        };
        let stop = shutdown.clone();
        crate::http::serve_metrics(
            addr,
            |bound| eprintln!("metrics on http://{bound}/metrics"),
            async move { stop.wait().await },
        )
        .await
    };
    let (run, metrics) = futures::join!(app.run(&registry, &queues, http, &shutdown), metrics);
    run?;
    metrics?;
    Ok(ExitCode::SUCCESS)
}

/// `reflow dev`: a dev server on `port` / `ui_port` (unless `TEMPORAL_ADDRESS` is set) and a
/// worker of every queue of the pipelines in `pipelines`, with the HTTP API on `http`.
pub(super) async fn dev(
    settings: &Settings,
    registry: &Registry,
    port: u16,
    ui_port: u16,
    pipelines: Option<PathBuf>,
    http: SocketAddr,
) -> anyhow::Result<ExitCode> {
    crate::http::open_mode_check(
        http,
        settings.api_has_credentials(),
        settings.allow_open_api,
    )?;
    let queues = queues_to_serve(
        Vec::new(),
        pipelines.as_deref().unwrap_or(&settings.pipelines_dir),
        registry,
    )?;
    let (client, server) = connect_or_start(settings, port, Some(ui_port)).await?;
    if server.is_none() {
        require_applied(settings, &client).await?;
    }
    let shutdown = Shutdown::default();
    shutdown.on_signals();
    eprintln!("worker serving {}; Ctrl-C to stop", queues.join(", "));
    let dir = pipelines.as_deref().unwrap_or(&settings.pipelines_dir);
    let app = App::build(settings, registry, client, dir).await?;
    // Its own definitions, registered as `reflow apply` would.
    register_pipelines(app.services.db(), dir, registry.catalog()).await?;
    let result = app.run(registry, &queues, Some(http), &shutdown).await;
    if let Some(s) = server {
        s.stop().await;
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `explicit`, else every task queue of the pipelines in `dir` (an error when there are none).
fn queues_to_serve(
    explicit: Vec<String>,
    dir: &Path,
    registry: &Registry,
) -> anyhow::Result<Vec<String>> {
    if !explicit.is_empty() {
        return Ok(explicit);
    }
    let mut queues = Vec::new();
    for f in pipeline_files(dir)? {
        queues.extend(runs::load_pipeline(&f, registry.catalog())?.task_queues());
    }
    queues.sort();
    queues.dedup();
    if queues.is_empty() {
        bail!(
            "no pipelines in {} and no --queues given: nothing to serve",
            dir.display()
        );
    }
    Ok(queues)
}
