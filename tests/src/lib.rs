//! Integration test harness: a real Temporal dev server per test binary, reflow's own worker
//! wiring in-process or as a separate process, and test activities that keep a journal.
//!
//! - [`server`] starts `temporal server start-dev` once per test binary on free ports.
//! - [`registry`] is reflow's built-in registry plus the test activities and workflow types.
//! - [`InProcessWorker`] runs `reflow::worker::run_workers` on its own thread.
//! - [`s3::S3Server`] is a real S3-compatible server (s3s-fs); [`daily::DailyStandIn`] and
//!   [`standins`] stand in for the HTTP services reflow cannot reach from here.
//! - [`netns`] puts a worker process in a network namespace of its own, to cut it off.
//! - [`demo`] synthesizes the demo meeting and scores a summary against its facts; [`eval`]
//!   loads the evaluation set (`eval/meetings/`) and scores what reflow published for a meeting.
//! - [`TestPipeline`] loads a YAML file from `tests/pipelines/`, giving it a task queue of
//!   its own, so tests sharing one server never pick up each other's tasks.

pub mod activities;
pub mod blows;
pub mod daily;
pub mod demo;
pub mod eval;
pub mod media;
pub mod meetings;
pub mod netns;
pub mod next_release;
pub mod postgres;
pub mod runbook;
#[path = "../../activities/tests/common/s3.rs"]
pub mod s3;
pub mod standins;

pub use postgres::PgServer;
pub mod workflows;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reflow::registry::Registry;
use reflow::shutdown::Shutdown;
use reflow::temporal::{DevServer, DevServerOptions};
use temporalio_client::Client;
use workflow::{Catalog, Pipeline};

pub use activities::{Entry, Probe, read_journal};

/// reflow's registry plus the test activities and the test workflow types.
pub fn registry() -> Registry {
    use activities::TestActivities as T;
    let catalog = Catalog::new()
        .activity(T::sleep.name(), &[])
        .activity(T::flaky.name(), &[])
        .activity(T::fatal.name(), &[])
        .activity(T::hang.name(), &[])
        .activity(T::beat.name(), &[])
        .activity(T::echo.name(), &[])
        .activity(T::gate.name(), &[])
        .activity(T::latch.name(), &[])
        .workflow_type("EngineTest")
        .workflow_type("EngineChild");
    Registry::builtin().with(
        catalog,
        std::sync::Arc::new(
            |o: &mut temporalio_sdk::WorkerOptions, _: &reflow::registry::Services| {
                o.register_activities(activities::TestActivities);
                o.register_workflow::<workflows::EngineTest>()
                    .map_err(|e| e.to_string())?;
                o.register_workflow::<workflows::EngineChild>()
                    .map_err(|e| e.to_string())?;
                o.register_workflow::<workflows::TaskFailsOnce>()
                    .map_err(|e| e.to_string())?;
                Ok(())
            },
        ),
    )
}

/// The shared dev server of this test binary.
pub struct ServerInfo {
    /// gRPC address.
    pub address: String,
    /// Its data directory (database, log).
    pub dir: PathBuf,
    /// The server's own Prometheus metrics, `host:port` (its `action` counter).
    pub metrics_address: String,
}

/// The `temporal` CLI: `TEMPORAL_CLI`, else the repository's `.venv/bin/temporal`, else `PATH`.
pub fn temporal_cli() -> PathBuf {
    if let Ok(p) = std::env::var("TEMPORAL_CLI") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/temporal");
    if venv.exists() {
        venv
    } else {
        "temporal".into()
    }
}

/// Start (once) and return the dev server shared by the tests of this binary.
///
/// It runs from a thread that lives as long as the process, so the kernel's parent-death
/// signal (see `reflow::temporal`) stops it exactly when the test binary exits.
pub fn server() -> &'static ServerInfo {
    static SERVER: OnceLock<ServerInfo> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("reflow-temporal-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let (tx, rx) = std::sync::mpsc::channel();
        let opts = DevServerOptions {
            cli: temporal_cli(),
            port: 0,
            ui_port: None,
            db_file: Some(dir.join("temporal.db")),
            log_file: dir.join("temporal.log"),
        };
        std::thread::Builder::new()
            .name("temporal-dev-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    // Free ports are picked, not reserved: another process may take one (or
                    // one of the internal ports next to it) before the server binds. Such a
                    // start fails at once; try again on fresh ports.
                    let mut last = String::new();
                    for attempt in 1..=3 {
                        let mut opts = opts.clone();
                        opts.db_file = opts
                            .db_file
                            .map(|f| f.with_file_name(format!("temporal-{attempt}.db")));
                        match DevServer::start(opts).await {
                            Ok(server) => {
                                tx.send(Ok((
                                    server.address.clone(),
                                    server.metrics_address.clone(),
                                )))
                                .ok();
                                // Keep the server (and this thread) alive until the process
                                // exits.
                                std::future::pending::<()>().await;
                                drop(server);
                                return;
                            }
                            Err(e) => last = e.to_string(),
                        }
                    }
                    tx.send(Err(last)).ok();
                });
            })
            .expect("spawn server thread");
        let (address, metrics_address) = rx
            .recv()
            .expect("server thread answers")
            .unwrap_or_else(|e| panic!("{e}"));
        ServerInfo {
            address,
            dir,
            metrics_address,
        }
    })
}

/// A client of the shared server.
pub async fn client() -> Client {
    reflow::temporal::connect(&server().address, "default", Duration::from_secs(20))
        .await
        .expect("connect to the dev server")
}

/// The object store every in-process worker of this test binary uses: a directory.
pub fn storage() -> ::activities::storage::Storage {
    static STORE: OnceLock<::activities::storage::Storage> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("reflow-storage-")
                .tempdir()
                .expect("temp dir")
                .keep();
            let url = url::Url::from_directory_path(&dir)
                .expect("absolute")
                .to_string();
            ::activities::storage::Storage::open(&::activities::storage::StorageConfig {
                url,
                ..Default::default()
            })
            .expect("file store")
        })
        .clone()
}

/// The URL of [`db`] (a `reflow` process of the test gives it as `DATABASE_URL`, to resolve
/// the pipeline versions the test registered).
pub fn db_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("reflow-db-")
            .tempdir()
            .expect("temp dir")
            .keep();
        format!("sqlite://{}/reflow.db", dir.display())
    })
    .clone()
}

/// The database every in-process worker of this test binary uses: a SQLite file (SQLite's
/// connections live on their own threads, so the pool serves any test's runtime).
pub fn db() -> ::activities::db::Db {
    static DB: OnceLock<::activities::db::Db> = OnceLock::new();
    DB.get_or_init(|| {
        let url = db_url();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(::activities::db::Db::connect(&url))
                .expect("test database")
        })
        .join()
        .expect("database thread")
    })
    .clone()
}

/// Register `pipeline` as a version in [`db`], which in-process workers resolve runs from
/// (runs name a registered version; tests start the definitions they load).
pub fn register(pipeline: &Pipeline) {
    let (db, pipeline) = (db(), pipeline.clone());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(register_in(&db, &pipeline));
    })
    .join()
    .expect("registration thread");
}

/// Register `pipeline` in `db` as a version (fingerprinted against the test catalog). Tests
/// register as they load, without `reflow apply`'s rule that a changed definition bumps its
/// version: two tests' variants of one definition share a version number.
pub async fn register_in(db: &::activities::db::Db, pipeline: &Pipeline) {
    let fps = workflow::pipeline::fingerprint::Fingerprints::of(pipeline, registry().catalog());
    db.insert_pipeline_version(pipeline, &fps, None)
        .await
        .expect("register the pipeline version");
}

/// The event fan-out of this test binary (SQLite: in process).
pub fn hub() -> ::activities::events::EventHub {
    static HUB: OnceLock<::activities::events::EventHub> = OnceLock::new();
    HUB.get_or_init(Default::default).clone()
}

/// A transcript row for a test (activities that update transcripts or publish events need
/// one); an existing row is left as it is.
pub async fn transcript(id: &str) -> ::activities::db::transcripts::Transcript {
    let db = db();
    if let Some(t) = db.find_transcript(id).await.expect("read transcript") {
        return t;
    }
    db.create_transcript(&::activities::db::transcripts::NewTranscript {
        id: id.into(),
        ..Default::default()
    })
    .await
    .expect("create transcript")
}

/// Services of in-process workers: the shared [`storage`], [`db`] and [`hub`], a scratch
/// directory, and the embedded backends ([`transcriber`], [`llm`]).
pub fn services() -> reflow::registry::Services {
    reflow::registry::Services {
        storage: storage(),
        recordings: storage(),
        scratch: std::env::temp_dir().join("reflow-scratch"),
        data_dir: std::env::temp_dir().join("reflow-data"),
        events: ::activities::events::Events::new(db(), hub(), registry().emits()),
        transcriber: transcriber(),
        llm: llm(),
        daily: Default::default(),
        zulip: Default::default(),
        webhook_private_hosts: Vec::new(),
        intake: None,
    }
}

/// The embedded transcription backend of this test binary: Whisper tiny.en on 2 threads
/// (loaded once, on first use).
pub fn transcriber() -> std::sync::Arc<::activities::asr::Transcriber> {
    use ::activities::asr::{AsrConfig, Transcriber, embedded::EmbeddedConfig, embedded_model_dir};
    static T: OnceLock<std::sync::Arc<Transcriber>> = OnceLock::new();
    T.get_or_init(|| {
        std::sync::Arc::new(Transcriber::new(AsrConfig::Embedded(EmbeddedConfig {
            model_dir: embedded_model_dir("tiny.en"),
            threads: 2,
            detector: Default::default(),
        })))
    })
    .clone()
}

/// The embedded LLM of this test binary (SmolLM2, loaded once, on first use).
pub fn llm() -> std::sync::Arc<::activities::llm::Llm> {
    use ::activities::llm::{Llm, LlmBackend, LlmConfig};
    static L: OnceLock<std::sync::Arc<Llm>> = OnceLock::new();
    L.get_or_init(|| {
        std::sync::Arc::new(Llm::new(LlmConfig {
            backend: LlmBackend::Embedded {
                model_path: ::activities::models::dir().join(::activities::llm::EMBEDDED_SMALL),
                parallelism: ::activities::llm::chat_model::Parallelism::resolve(1, 2),
            },
            context_window: 16_000,
            parse_max_retries: 1,
            rate_limit_per_second: 10,
            timeout: None,
        }))
    })
    .clone()
}

/// A worker running reflow's wiring on its own thread; stopped (drained) on drop.
pub struct InProcessWorker {
    shutdown: Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcessWorker {
    /// Serve `queues` against the shared server with the test registry.
    pub fn start(queues: &[String]) -> Self {
        Self::start_with(queues, services())
    }

    /// Serve `queues` with the test registry over `services` (other backends, say).
    pub fn start_with(queues: &[String], services: reflow::registry::Services) -> Self {
        Self::start_with_converter(queues, services, Default::default())
    }

    /// [`Self::start_with`], the worker's client using `converter` (a payload codec).
    pub fn start_with_converter(
        queues: &[String],
        services: reflow::registry::Services,
        converter: temporalio_common::data_converters::DataConverter,
    ) -> Self {
        let shutdown = Shutdown::default();
        let (s, queues) = (shutdown.clone(), queues.to_vec());
        let address = server().address.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let client = reflow::temporal::connect_with(
                    &address,
                    "default",
                    Duration::from_secs(20),
                    converter,
                )
                .await
                .expect("connect");
                reflow::worker::run_workers(
                    client,
                    &registry(),
                    &services,
                    &queues,
                    &reflow::worker::Setup {
                        slot_overrides: None,
                        grace: reflow::worker::GRACE,
                        deployment: None,
                    },
                    s,
                )
                .await
                .expect("workers run");
            });
        });
        InProcessWorker {
            shutdown,
            thread: Some(thread),
        }
    }
}

impl Drop for InProcessWorker {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A test pipeline bound to a task queue of its own.
pub struct TestPipeline {
    /// The validated definition.
    pub pipeline: Pipeline,
    /// Its task queue.
    pub queue: String,
}

impl TestPipeline {
    /// Load `tests/pipelines/{file}`, replacing `__QUEUE__` with `queue`.
    pub fn load(file: &str, queue: &str) -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("pipelines")
            .join(file);
        let text = std::fs::read_to_string(&path)
            .expect("test pipeline exists")
            .replace("__QUEUE__", queue);
        Self::from_text(&path.display().to_string(), &text, queue)
    }

    /// Validate YAML text with the test catalog, and [`register`] it.
    pub fn from_text(name: &str, text: &str, queue: &str) -> Self {
        let pipeline = workflow::parse_and_validate(name, text, registry().catalog())
            .unwrap_or_else(|e| panic!("{e}"));
        register(&pipeline);
        TestPipeline {
            pipeline,
            queue: queue.to_owned(),
        }
    }
}

/// A test's queue, its pipeline bound to that queue, a worker serving it, and a client.
pub async fn started(
    queue: &'static str,
    file: &str,
) -> (&'static str, TestPipeline, InProcessWorker, Client) {
    let tp = TestPipeline::load(file, queue);
    let worker = InProcessWorker::start(&[queue.to_owned()]);
    (queue, tp, worker, client().await)
}

/// Wait (bounded) until `check` returns `Some`, polling every 100 ms.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh journal path under the system temp dir, named after the test.
pub fn journal(test: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(&format!("reflow-{test}-"))
        .tempdir()
        .expect("temp dir")
        .keep();
    dir.join("journal.jsonl")
}

/// The entries of `key` with `event`.
pub fn events<'a>(entries: &'a [Entry], key: &str, event: &str) -> Vec<&'a Entry> {
    entries
        .iter()
        .filter(|e| e.key == key && e.event == event)
        .collect()
}

/// Replay the closed runs `ids` against this build's workflow code (a determinism check), and
/// when `REFLOW_RECORD_HISTORIES` is set, store their histories as fixtures for `tests/replay.rs`.
pub async fn replay_live(client: &Client, ids: &[&str]) {
    for id in ids {
        replay_live_as(client, id, id).await;
    }
}

/// [`replay_live`] of the latest run of `id`, recorded (with `REFLOW_RECORD_HISTORIES`) as
/// `{name}.json` (a reset run and the run it replaced keep one id).
pub async fn replay_live_as(client: &Client, id: &str, name: &str) {
    use temporalio_client::{UntypedWorkflow, WorkflowFetchHistoryOptions, WorkflowHistory};
    let json = client
        .get_workflow_handle::<UntypedWorkflow>(id)
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .expect("history");
    replay(WorkflowHistory::from_json(&json).expect("history JSON"))
        .await
        .unwrap_or_else(|e| panic!("{id}: {e}"));
    if std::env::var_os("REFLOW_RECORD_HISTORIES").is_some() {
        std::fs::write(histories_dir().join(format!("{name}.json")), &json).expect("write fixture");
    }
}

/// `(activity type, start-to-close in whole seconds)` of every activity a run scheduled, from
/// its history.
pub async fn scheduled_activities(client: &Client, id: &str) -> Vec<(String, u64)> {
    let run = reflow::history::load(client, id).await.expect("history");
    run.steps
        .iter()
        .filter(|s| !s.local)
        .map(|s| (s.activity_type.clone(), s.start_to_close_s.max(0) as u64))
        .collect()
}

/// Where recorded histories live.
pub fn histories_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/histories")
}

/// Replay one history with the test and built-in workflow types.
pub async fn replay(history: temporalio_client::WorkflowHistory) -> Result<(), String> {
    replay_with(history, None).await
}

/// [`replay`], under a workflow interceptor when given (the [`next_release`]'s).
pub async fn replay_with(
    history: temporalio_client::WorkflowHistory,
    interceptor: Option<temporalio_workflow::workflow_interceptors::WorkflowInterceptorConstructor>,
) -> Result<(), String> {
    use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
    let mut options = WorkflowReplayerOptions::new()
        .register_workflow::<workflows::EngineTest>()
        .and_then(|o| o.register_workflow::<workflows::EngineChild>())
        .and_then(|o| o.register_workflow::<workflow::workflows::DiarizationPipeline>())
        .and_then(|o| o.register_workflow::<workflow::workflows::TrackProcessing>())
        .and_then(|o| o.register_workflow::<workflow::backfill::Backfill>())
        .map_err(|e| e.to_string())?;
    if let Some(i) = interceptor {
        options = options.workflow_interceptor(i);
    }
    let options = options.build();
    let replayer = WorkflowReplayer::new(options).map_err(|e| e.to_string())?;
    replayer
        .replay_workflow(history)
        .await
        .map_err(|e| e.to_string())
}

/// Serve the HTTP API with `state` on a free loopback port for the rest of the test; returns
/// `host:port`.
pub async fn serve_api(state: reflow::http::ApiState) -> String {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(reflow::http::serve(
        "127.0.0.1:0".parse().expect("address"),
        state,
        move |a| {
            let _ = tx.send(a);
        },
        std::future::pending(),
    ));
    format!("127.0.0.1:{}", rx.await.expect("server bound").port())
}
