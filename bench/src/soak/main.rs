//! **A day in twenty minutes** (`just soak`): meetings arriving as signed Daily webhooks over a
//! window (200 over 20 minutes by default; `--meetings N --minutes M`) through the whole
//! production path — reflow's API with Daily intake, `DiarizationPipeline` (timeouts
//! shortened as in the chaos suite) on separate `reflow worker` processes of the release build,
//! SQLite, a real S3 server — while stand-in vendors answer with realistic latencies and a
//! 5 % transient failure rate ([`backends`]), and the day brings its blows at fixed points of
//! the window: one worker SIGKILLed and started again (10 %), the Temporal server restarted
//! on its file (20 %), and two upgrades the runbook's way (30 % and 55 %: a new build id
//! started beside the old one in the same Worker Deployment, made current and waited for
//! until the old one is drained by docs/runbook.md's upgrade block, the old one stopped with
//! SIGTERM).
//!
//! Then [`report`] checks that every meeting completed once, that no paid call (a track's
//! transcription, an LLM prompt, a Zulip post, a webhook event) was answered twice, and that
//! no transcript ever showed `error`; and measures per-step latency, the server's actions and
//! history per meeting, and the workers' and the server's resident memory over time
//! ([`memory`]). Writes `bench/results/soak.md`; exits non-zero when a check fails.
//!
//! It lives in `bench/` rather than in the test suite: it takes the length of its window and
//! more, far over the suite's time budget, and measures (latency, memory, actions) as the
//! other benchmarks do; the chaos and upgrade suites keep the same blows inside the budget.

mod backends;
mod memory;
mod report;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reflow::temporal::{DevServer, DevServerOptions};
use reflow_bench::measure::{action_counts, reflow_binary};
use reflow_tests::blows::{self, Rng};
use reflow_tests::meetings::{Backends, QUEUES, Stack, WorkerProcess, short_timeouts, voices};

/// The Worker Deployment the soak's workers join.
const DEPLOYMENT: &str = "reflow-soak";
/// How long a SIGTERMed worker has to finish its tasks.
const GRACE_S: u64 = 20;

struct Args {
    meetings: usize,
    minutes: f64,
    tracks: usize,
    failure_rate: f64,
    seed: u64,
    results: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        meetings: 200,
        minutes: 20.0,
        tracks: 2,
        failure_rate: 0.05,
        seed: blows::clock_seed(),
        results: PathBuf::from("bench/results"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--meetings" => a.meetings = value()?.parse()?,
            "--minutes" => a.minutes = value()?.parse()?,
            "--tracks" => a.tracks = value()?.parse()?,
            "--failure-rate" => a.failure_rate = value()?.parse()?,
            "--seed" => a.seed = value()?.parse()?,
            "--results" => a.results = value()?.into(),
            other => bail!(
                "unknown argument {other} (--meetings N, --minutes M, --tracks N, \
                 --failure-rate F, --seed S, --results DIR)"
            ),
        }
    }
    anyhow::ensure!(a.meetings > 0 && a.minutes > 0.0, "nothing to run");
    Ok(a)
}

/// One delivered meeting.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Its run.
    pub workflow_id: String,
    /// Its transcript.
    pub transcript_id: String,
    /// When reflow accepted its webhook.
    pub accepted: std::time::SystemTime,
}

/// A worker process of one build.
struct Worker {
    build: String,
    label: String,
    process: WorkerProcess,
}

/// What the soak runs and what it saw happen.
struct Soak {
    dir: PathBuf,
    binary: PathBuf,
    stack: Arc<Stack>,
    address: String,
    live: memory::Live,
    /// When the window opened (reset once the first build is current).
    t0: Mutex<Instant>,
    /// The blows, as `(seconds since t0, what)`.
    log: Mutex<Vec<(f64, String)>>,
}

impl Soak {
    fn t0(&self) -> Instant {
        *self.t0.lock().unwrap()
    }

    fn said(&self, what: String) {
        let t = self.t0().elapsed().as_secs_f64();
        eprintln!("soak: {:>7.1} s  {what}", t);
        self.log.lock().unwrap().push((t, what));
    }

    fn spawn(&self, build: &str, label: &str) -> Worker {
        let mut env = self.stack.worker_env(&self.address, &self.dir.join(build));
        env.push(("REFLOW_DEPLOYMENT_NAME".into(), DEPLOYMENT.into()));
        env.push(("REFLOW_BUILD_ID".into(), build.into()));
        env.push(("REFLOW_SHUTDOWN_GRACE".into(), GRACE_S.to_string()));
        let log = self.dir.join(format!("{build}.log"));
        let process = WorkerProcess::spawn(&self.binary, &QUEUES, &env, &log);
        self.live
            .lock()
            .unwrap()
            .push((format!("worker {label}"), process.pid()));
        Worker {
            build: build.into(),
            label: label.into(),
            process,
        }
    }

    fn forget(&self, w: &Worker) {
        let pid = w.process.pid();
        self.live.lock().unwrap().retain(|(_, p)| *p != pid);
    }

    /// Upgrade `old` to a new build `new` the runbook's way; the new build's worker.
    async fn upgrade(&self, client: &temporalio_client::Client, old: Worker, new: &str) -> Worker {
        self.said(format!(
            "upgrade {} → {new}: the new build starts beside it",
            old.build
        ));
        let worker = self.spawn(new, new);
        blows::wait_polling(client, DEPLOYMENT, new, Duration::from_secs(120)).await;
        let bin = reflow_tests::runbook::bin_dir_with(&self.binary);
        // The block is safe to run again: `set-current-version` timed out once on this
        // loaded machine (the first full run, bench/results/soak.md).
        let since = Instant::now();
        let mut attempt = 1;
        loop {
            let said = tokio::time::timeout(
                Duration::from_secs(1800),
                blows::make_current_and_drain(&bin, &self.address, DEPLOYMENT, new, &old.build),
            )
            .await
            .unwrap_or_else(|_| Err(format!("{} not drained within 30 minutes", old.build)));
            match said {
                Ok(text) => {
                    // The block's last line says the old build drained (the CLI's tables
                    // above it are left to the logs).
                    let drained = text.trim().lines().last().unwrap_or_default();
                    self.said(format!("{new} current; {drained}"));
                    break;
                }
                Err(e) if attempt < 5 && since.elapsed() < Duration::from_secs(1800) => {
                    let why = e.lines().last().unwrap_or_default().to_owned();
                    self.said(format!("the upgrade block failed ({why}); again"));
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(e) => panic!("the upgrade to {new} failed: {e}"),
            }
        }
        self.stop(old).await;
        worker
    }

    /// SIGTERM `w` and wait for it to exit.
    async fn stop(&self, mut w: Worker) {
        let since = Instant::now();
        w.process.signal(libc::SIGTERM);
        while !w.process.try_wait() && since.elapsed() < Duration::from_secs(GRACE_S + 30) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.forget(&w);
        self.said(format!(
            "worker {} stopped by SIGTERM: exited after {:.1} s",
            w.label,
            since.elapsed().as_secs_f64()
        ));
    }

    /// Wait until `at` seconds into the window.
    async fn until(&self, at: f64) {
        let t = self.t0() + Duration::from_secs_f64(at);
        tokio::time::sleep_until(t.into()).await;
    }
}

/// Deliver `n` meetings at random moments of `window` (sorted), each on its own task so a
/// webhook refused while the server restarts does not hold the others back.
fn arrivals(
    soak: Arc<Soak>,
    n: usize,
    window: Duration,
    rng: &mut Rng,
    voices: Vec<reflow_tests::meetings::Voice>,
) -> tokio::task::JoinHandle<Vec<anyhow::Result<Delivered>>> {
    let mut at: Vec<f64> = (0..n).map(|_| rng.unit() * window.as_secs_f64()).collect();
    at.sort_by(f64::total_cmp);
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for (i, at) in at.into_iter().enumerate() {
            soak.until(at).await;
            let m = soak.stack.meeting("soak", i, &voices).await;
            let stack = soak.stack.clone();
            tasks.push(tokio::spawn(async move {
                let tid = stack.deliver(&m).await;
                Delivered {
                    workflow_id: m.workflow_id,
                    transcript_id: tid,
                    accepted: std::time::SystemTime::now(),
                }
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(
                t.await
                    .map_err(|e| anyhow::anyhow!("a webhook was never accepted: {e}")),
            );
        }
        out
    })
}

/// The server's `action` counter, by type, added into `into` since `since` (a restarted
/// server counts from zero).
async fn add_actions(
    into: &mut std::collections::BTreeMap<String, f64>,
    metrics: &str,
    since: &std::collections::BTreeMap<String, f64>,
) {
    match action_counts(metrics).await {
        Ok(now) => {
            for (k, v) in now {
                *into.entry(k.clone()).or_default() += v - since.get(&k).copied().unwrap_or(0.0);
            }
        }
        Err(e) => eprintln!("soak: actions not read: {e:#}"),
    }
}

fn set_server(
    live: &memory::Live,
    metrics: &memory::ServerMetrics,
    label: &str,
    server: &DevServer,
) {
    *metrics.lock().unwrap() = Some(server.metrics_address.clone());
    let mut live = live.lock().unwrap();
    live.retain(|(l, _)| !l.starts_with("server"));
    if let Some(pid) = server.pid() {
        live.push((label.into(), pid));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let window = Duration::from_secs_f64(a.minutes * 60.0);
    let w = window.as_secs_f64();
    let mut rng = Rng(a.seed | 1);
    let dir = tempfile::Builder::new()
        .prefix("reflow-soak-")
        .tempdir()?
        .keep();
    eprintln!(
        "soak: {} meetings over {} min, seed {}, logs in {}",
        a.meetings,
        a.minutes,
        a.seed,
        dir.display()
    );
    let opts = DevServerOptions {
        cli: reflow_tests::temporal_cli(),
        port: reflow::temporal::free_port()?,
        ui_port: None,
        db_file: Some(dir.join("temporal.db")),
        log_file: dir.join("temporal.log"),
    };
    let mut server = blows::start_server(&opts).await;
    let address = server.address.clone();
    let client = reflow::temporal::connect(&address, "default", Duration::from_secs(20)).await?;
    let backends = Backends::start(Duration::ZERO).await;
    let vendors = backends::make_realistic(&backends, a.failure_rate, a.seed);
    let db_url = format!("sqlite://{}/reflow.db", dir.display());
    let stack = Stack::start(&db_url, client.clone(), backends, false, short_timeouts()).await;
    let live: memory::Live = Arc::default();
    let server_metrics: memory::ServerMetrics = Arc::default();
    set_server(&live, &server_metrics, "server 1", &server);
    let soak = Arc::new(Soak {
        dir: dir.clone(),
        binary: reflow_binary()?,
        stack: Arc::new(stack),
        address: address.clone(),
        live: live.clone(),
        t0: Mutex::new(Instant::now()),
        log: Mutex::default(),
    });
    let mut worker = soak.spawn("soak-1", "soak-1");
    // The first version to poll becomes current by itself.
    blows::wait_current(&client, DEPLOYMENT, "soak-1", Duration::from_secs(120)).await;
    let voices = voices(&dir, a.tracks);

    let mut actions = std::collections::BTreeMap::new();
    let baseline = action_counts(&server.metrics_address).await?;
    *soak.t0.lock().unwrap() = Instant::now();
    let sampler = memory::Sampler::start(
        live.clone(),
        server_metrics.clone(),
        Duration::from_secs(5),
        soak.t0(),
    );
    let arriving = arrivals(soak.clone(), a.meetings, window, &mut rng, voices);

    soak.until(0.10 * w).await;
    soak.said(format!("SIGKILL worker {}", worker.label));
    soak.forget(&worker);
    worker.process.kill();
    let killed = Instant::now();
    tokio::time::sleep(rng.between(Duration::from_secs(1), Duration::from_secs(3))).await;
    worker = soak.spawn(&worker.build.clone(), "soak-1 (after the kill)");

    soak.until(0.20 * w).await;
    add_actions(&mut actions, &server.metrics_address, &baseline).await;
    soak.said("the Temporal server stops".into());
    server.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    server = blows::start_server(&opts).await;
    set_server(&live, &server_metrics, "server 2", &server);
    soak.said("the Temporal server serves again".into());

    soak.until(0.30 * w).await;
    worker = soak.upgrade(&client, worker, "soak-2").await;
    soak.until(0.55 * w).await;
    worker = soak.upgrade(&client, worker, "soak-3").await;

    let delivered: Vec<Delivered> = arriving
        .await?
        .into_iter()
        .filter_map(|d| d.map_err(|e| eprintln!("soak: {e:#}")).ok())
        .collect();
    soak.said(format!(
        "{} of {} webhooks accepted",
        delivered.len(),
        a.meetings
    ));
    report::wait_settled(&soak.stack, &delivered, Duration::from_secs(1200)).await;
    soak.said("every transcript settled (or the wait ended)".into());
    // Counters are exported as the server handles requests; let the last ones land.
    tokio::time::sleep(Duration::from_secs(3)).await;
    add_actions(&mut actions, &server.metrics_address, &Default::default()).await;
    let (samples, cached) = sampler.stop().await;

    let seen = report::Seen {
        meetings: a.meetings,
        delivered,
        kills: vec![killed],
        blows: soak.log.lock().unwrap().clone(),
        actions,
        samples,
        cached,
        vendors,
        window,
        seed: a.seed,
        tracks: a.tracks,
    };
    let (text, ok) = report::report(&soak.stack, &client, &seen).await?;
    eprintln!("{text}");
    write(&a.results.join("soak.md"), &text)?;
    drop(worker);
    server.stop().await;
    if !ok {
        bail!(
            "the soak failed its checks (above; logs in {})",
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}
