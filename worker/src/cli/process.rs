//! `reflow process <dir>`: the meeting pipeline on a directory of per-speaker audio files on
//! the embedded default (see [`crate::local`] for the directory's tracks and the run's
//! identity) — start, resume or retry the directory's run with its own workers and a
//! progress page, then print its result and write the transcript files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::connect::{connect_or_start, require_applied};
use crate::app::App;
use crate::registry::{Registry, Services};
use crate::runs;
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::worker::run_workers;

/// What `reflow process` does with its directory's run.
enum LocalRun {
    /// No run of this source yet: prepare it and start one.
    Start,
    /// Its run is open (interrupted): serve it until it ends.
    Attach,
    /// Its run failed, was cancelled or terminated: retry it from the failed step.
    Retry,
    /// Its run finished: print the result again.
    Finished,
}

/// `reflow process <dir>`: start, resume, retry or re-print the directory's run (a fresh one
/// with `force`), serving its workers and the progress page on `http` until it ends; the
/// transcript files go to `out` (default: `<dir>/reflow-output`).
pub(super) async fn process_dir(
    settings: &Settings,
    registry: &Registry,
    dir: &Path,
    http: std::net::SocketAddr,
    out: Option<PathBuf>,
    keep: bool,
    force: bool,
) -> anyhow::Result<ExitCode> {
    use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus as Status;
    let dir = std::path::absolute(dir)?;
    let pipeline = crate::intake::load_pipeline(Some(&settings.pipelines_dir), registry.catalog())?;
    let (tracks, duration_s) = crate::local::scan(&dir)?;
    // The same directory is the same recording, so a second invocation finds its run.
    let source = crate::local::source_id(&dir, &tracks)?;
    let recording_id = if force {
        format!(
            "{}-{}",
            crate::local::recording_id(&source),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    } else {
        crate::local::recording_id(&source)
    };
    let transcript_id =
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, recording_id.as_bytes()).to_string();
    let workflow_id = crate::local::workflow_id(&recording_id);
    // The Web UI of the dev server this command starts (none with an external Temporal).
    let ui_port = (settings.temporal_address.is_none()
        && std::net::TcpListener::bind("127.0.0.1:8233").is_ok())
    .then_some(8233);
    let port = if std::net::TcpListener::bind("127.0.0.1:7233").is_ok() {
        7233
    } else {
        0
    };
    let http = if std::net::TcpListener::bind(http).is_ok() {
        http
    } else {
        std::net::SocketAddr::from(([127, 0, 0, 1], 0))
    };
    let (client, server) = connect_or_start(settings, port, ui_port).await?;
    if server.is_none() {
        // A cluster `reflow apply` never prepared: say so now, not in the run's first task.
        require_applied(settings, &client).await?;
    }
    let shutdown = Shutdown::default();
    shutdown.on_signals();
    let app = App::build(settings, registry, client.clone(), &settings.pipelines_dir).await?;
    let services = &app.services;
    // The definition this command runs, registered as `reflow apply` would.
    crate::gitops::register(
        services.db(),
        vec![pipeline.clone()],
        registry.catalog(),
        crate::gitops::git_commit(&settings.pipelines_dir),
    )
    .await?;
    let have_transcript = services
        .db()
        .find_transcript(&transcript_id)
        .await?
        .is_some();
    let action = match crate::history::status(&client, &workflow_id).await? {
        None => LocalRun::Start,
        Some(Status::Running) => LocalRun::Attach,
        Some(Status::Completed) if have_transcript => LocalRun::Finished,
        Some(Status::Completed) => anyhow::bail!(
            "{workflow_id} finished, but its transcript is not in {}: run again with --force",
            settings.data_dir.display()
        ),
        Some(_) => LocalRun::Retry,
    };
    let out = out.unwrap_or_else(|| dir.join("reflow-output"));
    if let LocalRun::Finished = action {
        eprintln!(
            "{} was processed already ({workflow_id}); --force runs it again",
            dir.display()
        );
        if let Some(s) = server {
            s.stop().await;
        }
        return print_local_result(services, &transcript_id, &out).await;
    }
    let input = match action {
        LocalRun::Start => Some(
            crate::local::prepare(
                &tracks,
                duration_s,
                &recording_id,
                &transcript_id,
                &services.recordings,
                services.db(),
            )
            .await?,
        ),
        _ => None,
    };
    eprintln!(
        "{} track(s) from {}: {}",
        tracks.len(),
        dir.display(),
        tracks
            .iter()
            .map(|t| t
                .name
                .clone()
                .unwrap_or_else(|| t.path.display().to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let queues = pipeline.task_queues();
    let job = {
        let (client, shutdown, id) = (client.clone(), shutdown.clone(), workflow_id.clone());
        let events = services.events.clone();
        let tid = transcript_id.clone();
        let resume = format!("reflow process {}", dir.display());
        async move {
            let work = async {
                match input {
                    Some(input) => {
                        let run = runs::start(&client, &pipeline, input, &id).await?;
                        // The transcript names its run, so `reflow rerun` and `POST …/process`
                        // find it (its input is rebuilt from that run's).
                        events
                            .db()
                            .set_workflow(&tid, &id, run.run_id.as_deref().unwrap_or_default())
                            .await?;
                    }
                    None if matches!(action, LocalRun::Retry) => {
                        eprintln!(
                            "{id} stopped before it finished; retrying it from the failed step"
                        );
                        crate::retry::retry_run(&client, &events, &id).await?;
                    }
                    None => eprintln!(
                        "resuming {id} where it stopped (finished steps are not run again)"
                    ),
                }
                if let Some(port) = ui_port {
                    eprintln!(
                        "Temporal Web UI: http://127.0.0.1:{port}/namespaces/default/workflows/{id}"
                    );
                }
                crate::follow::follow(&client, &id).await?;
                runs::wait(&client, &id).await.map_err(anyhow::Error::from)
            };
            let result = tokio::select! {
                r = work => r.map(Some),
                () = shutdown.wait() => Ok(None),
            };
            match &result {
                Ok(None) => eprintln!("interrupted; `{resume}` resumes {id} where it stopped"),
                Ok(Some(_)) if keep => eprintln!("still serving (--keep); Ctrl-C to stop"),
                _ => shutdown.trigger(),
            }
            result
        }
    };
    // The progress page: on loopback, without credentials (the run is this user's own).
    let tid = transcript_id.clone();
    let page = app.serve_api(
        Some(http),
        app.api_state(true),
        move |bound| eprintln!("progress page: http://{bound}/transcripts/{tid}"),
        &shutdown,
    );
    // A local run stops at once on Ctrl-C: what is in flight runs again on resume. Its
    // workers are its own: unversioned.
    let setup = crate::worker::Setup {
        slot_overrides: app.activity_slots.clone(),
        grace: crate::worker::LOCAL_GRACE,
        deployment: None,
    };
    let (worker, page, job) = futures::join!(
        run_workers(
            client,
            registry,
            services,
            &queues,
            &setup,
            shutdown.clone()
        ),
        page,
        job
    );
    if let Some(s) = server {
        s.stop().await;
    }
    worker?;
    page?;
    if job?.is_none() {
        return Ok(ExitCode::from(130));
    }
    print_local_result(services, &transcript_id, &out).await
}

/// Write a finished local transcript's files into `out` and print its summary.
async fn print_local_result(
    services: &Services,
    transcript_id: &str,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let t = services.db().transcript(transcript_id).await?;
    let written = crate::local::write_outputs(&t, out)?;
    print!("{}", crate::local::summary(&t)?);
    println!("transcript: {}", written.display());
    Ok(ExitCode::SUCCESS)
}
