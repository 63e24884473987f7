//! `reflow demo`: the example pipeline (`pipelines/digest.yaml`) end to end on the embedded
//! default — a dev server unless one is configured, this command's own workers, one run on
//! a directory — then its step table and output.

use std::path::PathBuf;
use std::process::ExitCode;

use super::connect::{connect_or_start, require_applied};
use crate::registry::{Registry, Services};
use crate::runs;
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::temporal;
use crate::worker::run_workers;

/// `reflow demo`: checksum every file of `dir` (default: the current directory) through the
/// example pipeline and print the run's table and result; with `keep`, serve until Ctrl-C.
pub(super) async fn demo(
    settings: &Settings,
    registry: &Registry,
    dir: Option<PathBuf>,
    keep: bool,
) -> anyhow::Result<ExitCode> {
    let pipeline_file = settings.pipelines_dir.join("digest.yaml");
    let pipeline = runs::load_pipeline(&pipeline_file, registry.catalog())?;
    let dir = std::path::absolute(dir.unwrap_or_else(|| PathBuf::from(".")))?;
    let report = std::path::absolute(settings.data_dir.join("demo-report.json"))?;
    let ui_port = temporal::free_port()
        .ok()
        .filter(|_| std::net::TcpListener::bind("127.0.0.1:8233").is_ok())
        .map(|_| 8233);
    let port = if std::net::TcpListener::bind("127.0.0.1:7233").is_ok() {
        7233
    } else {
        0
    };
    let (client, server) = connect_or_start(settings, port, ui_port).await?;
    if server.is_none() {
        require_applied(settings, &client).await?;
    }
    let shutdown = Shutdown::default();
    shutdown.on_signals();
    let id = format!("digest-{}", uuid::Uuid::new_v4().simple());
    let input = serde_json::json!({"dir": dir.display().to_string(), "report": report.display().to_string()});
    let queues = pipeline.task_queues();
    let pipeline_of_job = pipeline.clone();
    let job = {
        let (client, shutdown, id) = (client.clone(), shutdown.clone(), id.clone());
        async move {
            let out = async {
                runs::start(&client, &pipeline, input, &id).await?;
                let out = runs::wait(&client, &id).await?;
                let progress = runs::query_progress(&client, &id).await?;
                Ok::<_, runs::RunError>((out, progress))
            }
            .await;
            if !keep || out.is_err() {
                shutdown.trigger();
            }
            out
        }
    };
    let services = Services::from_settings(settings, registry).await?;
    // The definition the demo runs, registered as `reflow apply` would.
    crate::gitops::register(
        services.db(),
        vec![pipeline_of_job.clone()],
        registry.catalog(),
        crate::gitops::git_commit(&settings.pipelines_dir),
    )
    .await?;
    // This command's own workers run its job: unversioned.
    let setup = crate::worker::Setup {
        slot_overrides: settings.activity_slots(),
        grace: settings.shutdown_grace(),
        deployment: None,
    };
    let (worker, job) = futures::join!(
        run_workers(client, registry, &services, &queues, &setup, shutdown),
        job
    );
    if let Some(s) = server {
        s.stop().await;
    }
    worker?;
    let (out, progress) = job?;
    print!("{}", runs::render(&id, &progress));
    println!("{}", serde_json::to_string_pretty(&out)?);
    eprintln!(
        "report written to {}; `reflow dev` shows this run ({id}) in the Web UI at http://127.0.0.1:8233",
        report.display()
    );
    Ok(ExitCode::SUCCESS)
}
