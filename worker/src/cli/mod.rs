//! The `reflow` command line: its surface (clap) and the dispatch of each command to the
//! function that runs it.
//!
//! [`run`] is the whole program after parsing; `main.rs` only prints its error and picks the
//! exit code. Tests reuse it with a registry that also holds their test activities.
//!
//! One concept: the command-line surface. Each command is one short function beside the code
//! it drives (`pipelines`: validate, graph, alerts; `one_run`: run, status, cost,
//! reset-point; `serve`: worker, dev; `cluster`: plan, apply; `process`; `demo`),
//! reaching Temporal through `connect`; the services are wired by [`crate::app`], the work is
//! done by the modules each command calls.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::registry::Registry;
use crate::settings::Settings;

pub mod backfill;
mod cluster;
mod connect;
mod demo;
mod import;
mod one_run;
mod pipelines;
mod process;
pub mod rerun;
mod serve;

pub use import::ImportFrom;
pub use pipelines::pipeline_files;

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
    /// A recording's live transcript beside its shadow (or every pair since a date), as
    /// Markdown or JSON: WER, title, topics, summaries, action items, failures, per-step time
    /// and cost; over several meetings, the medians and the worst cases.
    Compare {
        /// The recording (Daily recording id).
        #[arg(required_unless_present = "since", conflicts_with = "since")]
        recording: Option<String>,
        /// Every pair whose shadow was made on or after this date (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only this room (by name), with `--since`.
        #[arg(long, requires = "since")]
        room: Option<String>,
        /// Compare with this transcript instead of the shadow: a JSON file in the shape of
        /// `GET /v1/transcripts/{id}?transcript_format=text` (another system's), with a
        /// recording.
        #[arg(long, requires = "recording")]
        against: Option<PathBuf>,
        /// Print JSON instead of Markdown.
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
    /// Cancel a running run (its children and their steps stop; the transcript goes back to
    /// `idle`, and processing it again resumes the run).
    Cancel {
        /// Workflow id.
        workflow_id: String,
    },
    /// Process a transcript again (docs/contracts/events-and-api.md §5.5): a failed or
    /// cancelled run is resumed; otherwise a new run reuses every step whose inputs, definition
    /// and backends are unchanged. Ends with a line and a JSON summary (steps reused and run,
    /// transcription seconds and LLM tokens not paid again).
    Rerun {
        /// Transcript id, or the workflow id of one of its runs.
        id: String,
        /// Run this registered version (default: the rollout's choice, else the last run's).
        #[arg(long)]
        version: Option<u32>,
        /// Recompute this step and everything downstream of it.
        #[arg(long)]
        from: Option<String>,
        /// Reuse nothing.
        #[arg(long)]
        fresh: bool,
        /// Terminate a run in progress, and start a new run even after a failure.
        #[arg(long)]
        force: bool,
        /// Post to Zulip and call the customer webhook again (a new run does not otherwise).
        #[arg(long)]
        notify: bool,
    },
    /// Re-run the meetings recorded since a date, memoized, as one Temporal workflow (at most
    /// N at a time, no notifications), printing progress and a summary; `--dry-run` lists the
    /// meetings with the steps that would run and be reused and the cost estimate.
    Backfill {
        /// Run this registered version (default: the rollout's current one).
        #[arg(long)]
        version: Option<u32>,
        /// Meetings recorded on or after this date (YYYY-MM-DD or RFC 3339, UTC).
        #[arg(long)]
        since: String,
        /// Only this room (name or id).
        #[arg(long)]
        room: Option<String>,
        /// Meetings re-run at once, at most.
        #[arg(long, default_value_t = 2)]
        concurrency: u32,
        /// Meetings per workflow run before it continues as new.
        #[arg(long, default_value_t = crate::backfill::BATCH)]
        batch: u32,
        /// List what would run, start nothing.
        #[arg(long)]
        dry_run: bool,
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
        /// Serve Prometheus's `GET /metrics` on this address, without credentials (a private
        /// network only; on the API's port `/metrics` needs the operator token).
        #[arg(long, env = "REFLOW_METRICS_ADDRESS")]
        metrics: Option<std::net::SocketAddr>,
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
    /// Write a pipeline file from another engine's workflow definition, naming what did not
    /// map (docs/conductor-import.md).
    Import {
        /// The engine.
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Show what `apply` would change in the cluster and in the registered pipeline versions
    /// (each new version step by step, with the steps a re-run could reuse), without changing
    /// it.
    Plan {
        /// Directory of pipeline files (registered as versions; schedules start them).
        #[arg(long, env = "REFLOW_PIPELINES")]
        pipelines: Option<PathBuf>,
    },
    /// Make the cluster match what the repository declares, registering each pipeline file as
    /// an immutable version (idempotent).
    Apply {
        /// Directory of pipeline files (registered as versions; schedules start them).
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

impl Cli {
    /// The settings file, overridden by the global flags (and their environment variables).
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = Settings::load(self.config.as_deref())?;
        if let Some(a) = &self.temporal_address {
            settings.temporal_address = Some(a.clone());
        }
        if let Some(n) = &self.namespace {
            settings.namespace = n.clone();
        }
        if let Some(d) = &self.data_dir {
            settings.data_dir = d.clone();
        }
        // Before anything starts: a weak or half-configured secret is refused in one line.
        settings.api_keys()?;
        Ok(settings)
    }
}

/// Run a parsed command line with the given registry.
pub async fn run(cli: Cli, registry: Registry) -> anyhow::Result<ExitCode> {
    let settings = cli.settings()?;
    match cli.command {
        Command::Validate { paths } => pipelines::validate(&paths, &registry),
        Command::Graph { pipeline, format } => pipelines::graph(&pipeline, format, &registry),
        Command::Alerts { pipelines } => pipelines::alerts(&settings, &registry, pipelines),
        Command::Run {
            pipeline,
            input,
            id,
            wait,
        } => one_run::start(&settings, &registry, &pipeline, &input, id, wait).await,
        Command::Status {
            workflow_id,
            json,
            follow,
        } => one_run::status(&settings, &workflow_id, json, follow).await,
        Command::Cost { workflow_id, json } => one_run::cost(&settings, &workflow_id, json).await,
        Command::ResetPoint { workflow_id, step } => {
            one_run::reset_point(&settings, &workflow_id, step.as_deref()).await
        }
        Command::Cancel { workflow_id } => one_run::cancel(&settings, &workflow_id).await,
        Command::Compare {
            recording,
            since,
            room,
            against,
            json,
        } => one_run::compare(&settings, recording, since, room, against, json).await,
        Command::Rerun {
            id,
            version,
            from,
            fresh,
            force,
            notify,
        } => {
            let o = rerun::Options {
                id,
                version,
                from,
                fresh,
                force,
                notify,
            };
            rerun::rerun(&settings, &registry, o).await
        }
        Command::Backfill {
            version,
            since,
            room,
            concurrency,
            batch,
            dry_run,
        } => {
            let o = backfill::Options {
                version,
                since,
                room,
                concurrency,
                batch,
                dry_run,
            };
            backfill::backfill(&settings, &registry, o).await
        }
        Command::Worker {
            queues,
            pipelines,
            http,
            metrics,
            examples,
        } => {
            let addrs = serve::Addresses { http, metrics };
            serve::worker(&settings, registry, queues, pipelines, addrs, examples).await
        }
        Command::Dev {
            port,
            ui_port,
            pipelines,
            http,
        } => serve::dev(&settings, &registry, port, ui_port, pipelines, http).await,
        Command::Import { from } => import::import(from, &registry),
        Command::Plan { pipelines } => cluster::plan(&settings, &registry, pipelines).await,
        Command::Apply { pipelines } => cluster::apply(&settings, &registry, pipelines).await,
        Command::Process {
            dir,
            http,
            out,
            keep,
            force,
        } => process::process_dir(&settings, &registry, &dir, http, out, keep, force).await,
        Command::Demo { dir, keep } => demo::demo(&settings, &registry, dir, keep).await,
    }
}
