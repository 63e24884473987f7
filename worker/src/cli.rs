//! The `reflow` command line: parsing (clap) and the commands themselves.
//!
//! [`run`] is the whole program after parsing; `main.rs` only prints its error and picks the
//! exit code. Tests reuse it with a registry that also holds their test activities.
//!
//! One concept, one file: the command-line surface (one short function per command; the
//! services are wired by [`crate::app`], the work is done by the modules each command calls).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::app::App;
use crate::registry::{Registry, Services};
use crate::runs;
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::temporal::{self, DevServer};
use crate::worker::run_workers;

/// Exit code for an invalid pipeline (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// reflow: declared pipelines, run durably on Temporal.
#[derive(Debug, Parser)]
#[command(name = "reflow", version, about)]
pub struct Cli {
    /// TOML settings file (default: ./reflow.toml when present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Temporal frontend (host:port or URL). Unset: `dev`/`demo` start a local dev server.
    #[arg(long, global = true, env = "TEMPORAL_ADDRESS")]
    pub temporal_address: Option<String>,
    /// Temporal namespace.
    #[arg(long, global = true, env = "TEMPORAL_NAMESPACE")]
    pub namespace: Option<String>,
    /// Data directory of the embedded default (dev server database and logs).
    #[arg(long, global = true, env = "REFLOW_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check pipeline files (or every *.yaml of a directory) without touching anything.
    Validate {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Draw a pipeline's declared DAG (steps, needs, fan-outs, child pipelines, task queues)
    /// from its validated definition: Mermaid for Markdown, DOT, or SVG.
    Graph {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: crate::graph::Format,
    },
    /// Start a run of a pipeline.
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
        /// The pipeline's input, as JSON.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Workflow id (default: `<pipeline>-<random>`).
        #[arg(long)]
        id: Option<String>,
        /// Wait for the result and print it.
        #[arg(long)]
        wait: bool,
    },
    /// Show a run's step table (children included).
    Status {
        /// Workflow id.
        workflow_id: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Show live progress bars until the run ends, then the table.
        #[arg(long, conflicts_with = "json")]
        follow: bool,
    },
    /// What a run spent on transcription and LLM calls, per step (children included).
    Cost {
        /// Workflow id.
        workflow_id: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The event id for `temporal workflow reset --event-id` that re-runs a run from a step
    /// (default: its earliest failed step).
    ResetPoint {
        /// Workflow id.
        workflow_id: String,
        /// Step id (fan-out members included), activity id or child workflow id.
        #[arg(long)]
        step: Option<String>,
    },
    /// Serve task queues until Ctrl-C / SIGTERM.
    Worker {
        /// Serve only these queues (comma-separated). Default: every queue the pipelines use.
        #[arg(long, value_delimiter = ',')]
        queues: Vec<String>,
        /// Directory of pipeline files whose queues to serve.
        #[arg(long, env = "REFLOW_PIPELINES")]
        pipelines: Option<PathBuf>,
        /// Also serve the HTTP API (REST, WebSocket) on this address.
        #[arg(long, env = "REFLOW_HTTP")]
        http: Option<std::net::SocketAddr>,
        /// Also register the example pipeline's activities (they read any directory and
        /// write inside the data directory); production workers leave them out.
        #[arg(long, env = "REFLOW_EXAMPLES")]
        examples: bool,
    },
    /// Start a local Temporal dev server (unless TEMPORAL_ADDRESS is set) and a worker.
    Dev {
        /// gRPC port of the dev server.
        #[arg(long, default_value_t = 7233)]
        port: u16,
        /// Web UI port of the dev server.
        #[arg(long, default_value_t = 8233)]
        ui_port: u16,
        /// Directory of pipeline files whose queues to serve.
        #[arg(long, env = "REFLOW_PIPELINES")]
        pipelines: Option<PathBuf>,
        /// Address of the HTTP API (REST, WebSocket, progress page).
        #[arg(long, env = "REFLOW_HTTP", default_value = "127.0.0.1:1250")]
        http: std::net::SocketAddr,
    },
    /// Transcribe a meeting: run the meeting pipeline on a directory of per-speaker audio
    /// files (embedded default: dev server, SQLite, local storage, CPU models), with live
    /// progress, then print the title, summary and topics and write the transcript.
    Process {
        /// Directory of per-speaker audio files (and an optional recording.json).
        dir: PathBuf,
        /// Address of the progress page and API (a free port if it is taken).
        #[arg(long, env = "REFLOW_HTTP", default_value = "127.0.0.1:1250")]
        http: std::net::SocketAddr,
        /// Where to write transcript.txt, transcript.vtt and summary.md
        /// (default: <dir>/reflow-output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Keep serving afterwards (progress page, Web UI) until Ctrl-C.
        #[arg(long)]
        keep: bool,
        /// Process the directory afresh even if it was processed (or started) before; by
        /// default a second run resumes an interrupted run and prints a finished one's result.
        #[arg(long)]
        force: bool,
    },
    /// Print the per-step latency alert rules generated from the pipelines' timeouts
    /// (`just alerts` writes them to dashboards/alerts/steps.rules.yml).
    Alerts {
        /// Directory of pipeline files.
        #[arg(long, env = "REFLOW_PIPELINES")]
        pipelines: Option<PathBuf>,
    },
    /// Show what `apply` would change in the cluster (schedules), without changing it.
    Plan {
        /// Directory of pipeline files (for the pipelines schedules start).
        #[arg(long, env = "REFLOW_PIPELINES")]
        pipelines: Option<PathBuf>,
    },
    /// Make the cluster match what the repository declares (idempotent).
    Apply {
        /// Directory of pipeline files (for the pipelines schedules start).
        #[arg(long, env = "REFLOW_PIPELINES")]
        pipelines: Option<PathBuf>,
    },
    /// Run the example pipeline end to end on the embedded default and print its table.
    Demo {
        /// Directory whose files the example pipeline checksums (default: the current one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the dev server and worker running afterwards (to browse the Web UI).
        #[arg(long)]
        keep: bool,
    },
}

/// Run a parsed command line with the given registry.
pub async fn run(cli: Cli, registry: Registry) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(a) = cli.temporal_address {
        settings.temporal_address = Some(a);
    }
    if let Some(n) = cli.namespace {
        settings.namespace = n;
    }
    if let Some(d) = cli.data_dir {
        settings.data_dir = d;
    }
    match cli.command {
        Command::Validate { paths } => validate(&paths, &registry),
        Command::Graph { pipeline, format } => {
            let p = runs::load_pipeline(&pipeline, registry.catalog())?;
            print!("{}", crate::graph::render(&p, format));
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            pipeline,
            input,
            id,
            wait,
        } => {
            let p = runs::load_pipeline(&pipeline, registry.catalog())?;
            let input: Value = serde_json::from_str(&input).map_err(runs::RunError::Input)?;
            let client = connect(&settings).await?;
            let id = id.unwrap_or_else(|| {
                format!(
                    "{}-{}",
                    p.name.to_lowercase(),
                    uuid::Uuid::new_v4().simple()
                )
            });
            let started = runs::start(&client, &p, input, &id).await?;
            eprintln!(
                "started {} (run {})",
                started.workflow_id,
                started.run_id.as_deref().unwrap_or("?")
            );
            if wait {
                let out = runs::wait(&client, &id).await?;
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            workflow_id,
            json,
            follow,
        } => {
            let client = connect(&settings).await?;
            let progress = if follow {
                crate::follow::follow(&client, &workflow_id).await?
            } else {
                runs::query_progress(&client, &workflow_id).await?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&progress)?);
            } else {
                print!("{}", runs::render(&workflow_id, &progress));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cost { workflow_id, json } => {
            let client = connect(&settings).await?;
            // Bytes written come from the step_attempt table, when the database is there.
            let db = match settings.database_url() {
                Ok(url) => match activities::db::Db::connect(&url).await {
                    Ok(db) => Some(db),
                    Err(e) => {
                        eprintln!("bytes written are not shown: {e}");
                        None
                    }
                },
                Err(e) => {
                    eprintln!("bytes written are not shown: {e}");
                    None
                }
            };
            let costs = crate::cost::cost(&client, db.as_ref(), &workflow_id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&costs)?);
            } else {
                print!("{}", crate::cost::render(&workflow_id, &costs));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ResetPoint { workflow_id, step } => {
            let client = connect(&settings).await?;
            let point = crate::reset::reset_point(&client, &workflow_id, step.as_deref()).await?;
            eprintln!(
                "reset to event {} re-runs {} and what follows",
                point.event_id, point.step
            );
            println!("{}", point.event_id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker {
            queues,
            pipelines,
            http,
            examples,
        } => {
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
            let client = connect(&settings).await?;
            // Runs set reflow's search attributes in their first workflow task; without them
            // registered every run would be stuck, so refuse to start instead.
            let missing = crate::gitops::missing_search_attributes(&client).await?;
            if !missing.is_empty() {
                anyhow::bail!(
                    "namespace {:?} lacks reflow's search attributes {}: run `reflow apply` first",
                    settings.namespace,
                    missing.join(", ")
                );
            }
            let shutdown = Shutdown::default();
            shutdown.on_signals();
            tracing::info!(queues = ?queues, "serving");
            let dir = pipelines.as_deref().unwrap_or(&settings.pipelines_dir);
            let app = App::build(&settings, &registry, client, dir).await?;
            app.run(&registry, &queues, http, &shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev {
            port,
            ui_port,
            pipelines,
            http,
        } => {
            crate::http::open_mode_check(
                http,
                settings.api_has_credentials(),
                settings.allow_open_api,
            )?;
            let queues = queues_to_serve(
                Vec::new(),
                pipelines.as_deref().unwrap_or(&settings.pipelines_dir),
                &registry,
            )?;
            let (client, server) = connect_or_start(&settings, port, Some(ui_port)).await?;
            let shutdown = Shutdown::default();
            shutdown.on_signals();
            eprintln!("worker serving {}; Ctrl-C to stop", queues.join(", "));
            let dir = pipelines.as_deref().unwrap_or(&settings.pipelines_dir);
            let app = App::build(&settings, &registry, client, dir).await?;
            let result = app.run(&registry, &queues, Some(http), &shutdown).await;
            if let Some(s) = server {
                s.stop().await;
            }
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Alerts { pipelines } => {
            let dir = pipelines.unwrap_or_else(|| settings.pipelines_dir.clone());
            let mut all = Vec::new();
            for f in pipeline_files(&dir)? {
                all.push(runs::load_pipeline(&f, registry.catalog())?);
            }
            print!("{}", crate::alerts::rules(&crate::alerts::budgets(&all)));
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { pipelines } => {
            let dir = pipelines.unwrap_or_else(|| settings.pipelines_dir.clone());
            let desired =
                crate::gitops::Desired::from_settings(&settings, Some(&dir), registry.catalog())?;
            let client = connect(&settings).await?;
            let changes = crate::gitops::plan(&client, &desired).await?;
            for c in &changes {
                println!("{c}");
            }
            let n = changes.iter().filter(|c| c.is_change()).count();
            println!(
                "{}",
                if n == 0 {
                    "no changes: the cluster matches the repository".to_owned()
                } else {
                    format!("{n} change(s) to apply")
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply { pipelines } => {
            let dir = pipelines.unwrap_or_else(|| settings.pipelines_dir.clone());
            let desired =
                crate::gitops::Desired::from_settings(&settings, Some(&dir), registry.catalog())?;
            let client = connect(&settings).await?;
            let changes = crate::gitops::apply(&client, &desired).await?;
            for c in &changes {
                println!("{c}");
            }
            if !changes.iter().any(crate::gitops::Change::is_change) {
                println!("nothing to change: the cluster already matches the repository");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Process {
            dir,
            http,
            out,
            keep,
            force,
        } => process_dir(&settings, &registry, &dir, http, out, keep, force).await,
        Command::Demo { dir, keep } => demo(&settings, &registry, dir, keep).await,
    }
}

fn validate(paths: &[PathBuf], registry: &Registry) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(pipeline_files(p)?);
        } else {
            files.push(p.clone());
        }
    }
    let mut failed = false;
    for f in &files {
        match runs::load_pipeline(f, registry.catalog()) {
            Ok(p) => println!(
                "{}: ok — {} v{}, {} steps, {} child pipelines, hash {}",
                f.display(),
                p.name,
                p.version,
                p.main.steps.len(),
                p.children.len(),
                &p.hash[..12]
            ),
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::SUCCESS
    })
}

/// The `*.yaml` / `*.yml` files of a directory, sorted.
pub fn pipeline_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading pipeline directory {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

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

async fn connect(settings: &Settings) -> anyhow::Result<temporalio_client::Client> {
    let Some(address) = &settings.temporal_address else {
        bail!(
            "TEMPORAL_ADDRESS is not set: point it at a Temporal frontend, or run `reflow dev` for a local server"
        );
    };
    Ok(temporal::connect_with(
        address,
        &settings.namespace,
        Duration::from_secs(10),
        settings.data_converter()?,
    )
    .await?)
}

async fn connect_or_start(
    settings: &Settings,
    port: u16,
    ui_port: Option<u16>,
) -> anyhow::Result<(temporalio_client::Client, Option<DevServer>)> {
    if settings.temporal_address.is_some() {
        return Ok((connect(settings).await?, None));
    }
    let opts =
        temporal::dev_server_options(&settings.temporal_cli, &settings.data_dir, port, ui_port);
    let server = DevServer::start(opts).await?;
    eprintln!(
        "Temporal dev server on {} (state in {}){}",
        server.address,
        settings.data_dir.join("temporal.db").display(),
        server
            .ui_url
            .as_deref()
            .map(|u| format!(", Web UI {u}"))
            .unwrap_or_default()
    );
    let client = temporal::connect_with(
        &server.address,
        &settings.namespace,
        Duration::from_secs(20),
        settings.data_converter()?,
    )
    .await?;
    Ok((client, Some(server)))
}

async fn demo(
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
    let shutdown = Shutdown::default();
    shutdown.on_signals();
    let id = format!("digest-{}", uuid::Uuid::new_v4().simple());
    let input = serde_json::json!({"dir": dir.display().to_string(), "report": report.display().to_string()});
    let queues = pipeline.task_queues();
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

/// `reflow process <dir>` (see [`crate::local`]).
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

async fn process_dir(
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
    let shutdown = Shutdown::default();
    shutdown.on_signals();
    let app = App::build(settings, registry, client.clone(), &settings.pipelines_dir).await?;
    let services = &app.services;
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
        let resume = format!("reflow process {}", dir.display());
        async move {
            let work = async {
                match input {
                    Some(input) => {
                        runs::start(&client, &pipeline, input, &id).await?;
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
