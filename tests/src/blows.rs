//! What the reliability runs do to a running system, shared by the chaos suite
//! (tests/tests/suite/chaos.rs) and the soak benchmark (bench/src/soak.rs): a seeded
//! generator for when the blows fall, a dev server started again on its file after a restart,
//! a rolling upgrade of a worker build the runbook's way, and the rule that tells a paid call
//! repeated because a SIGKILL lost its answer from one repeated for no reason.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use reflow::temporal::{DevServer, DevServerOptions};

/// A small deterministic generator (xorshift64*), so a failing run can be repeated by seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A duration in `[lo, hi)`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = (hi - lo).as_millis() as u64;
        lo + Duration::from_millis(self.next_u64() % span.max(1))
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The clock in milliseconds: a seed when none is given (print it, so a failing run can be
/// repeated).
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Start the dev server of `opts`, trying again for 10 s: after a restart the old process may
/// still hold the port for a moment.
pub async fn start_server(opts: &DevServerOptions) -> DevServer {
    let mut last = String::new();
    for _ in 0..20 {
        match DevServer::start(opts.clone()).await {
            Ok(s) => return s,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the dev server does not start again: {last}");
}

/// How long after a stand-in answered its result may still be unrecorded (the activity
/// parsing the answer and writing its checkpoint); a kill later than that cannot excuse a
/// repeated call.
pub const RECORDING: Duration = Duration::from_secs(2);

/// Repeated calls of one input that no kill explains: each call after the first needs a kill
/// while the call before it was in flight (sent, not answered for `answer`) or its result was
/// being recorded (`RECORDING` more). A kill later than that found the result recorded, so a
/// call after it would have been paid twice.
pub fn repeats_without_a_kill(
    calls: &BTreeMap<String, Vec<Instant>>,
    kills: &[Instant],
    answer: Duration,
) -> Vec<String> {
    let mut bad = Vec::new();
    for (key, at) in calls {
        for pair in at.windows(2) {
            let unrecorded_until = pair[0] + answer + RECORDING;
            if !kills
                .iter()
                .any(|k| *k > pair[0] && *k < pair[1] && *k < unrecorded_until)
            {
                bad.push(format!(
                    "{key}: called again {:?} later, with no kill while the earlier call was \
                     in flight or being recorded",
                    pair[1] - pair[0]
                ));
            }
        }
    }
    bad
}

/// Wait (up to `limit`, then panic) until `check` holds for the Worker Deployment `name`,
/// asking the server once a second (a deployment takes a few requests a second, shared with
/// the workers).
async fn until_deployment(
    client: &temporalio_client::Client,
    what: &str,
    limit: Duration,
    check: impl AsyncFn(&temporalio_client::Client) -> bool,
) {
    let since = Instant::now();
    while !check(client).await {
        assert!(since.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Wait until `build` is the current version of deployment `name`.
pub async fn wait_current(
    client: &temporalio_client::Client,
    name: &str,
    build: &str,
    limit: Duration,
) {
    let what = format!("build {build} current in {name}");
    until_deployment(client, &what, limit, async |c| {
        matches!(reflow::deployment::describe(c, name).await,
            Ok(Some(d)) if d.current.as_deref() == Some(build))
    })
    .await;
}

/// Wait until a worker of `build` polls deployment `name` (the server knows the version).
pub async fn wait_polling(
    client: &temporalio_client::Client,
    name: &str,
    build: &str,
    limit: Duration,
) {
    let what = format!("build {build} polling in {name}");
    until_deployment(client, &what, limit, async |c| {
        reflow::deployment::version_exists(c, name, build)
            .await
            .unwrap_or(false)
    })
    .await;
}

/// docs/runbook.md's upgrade block as written, with `bin` (holding `temporal`) on the `PATH`:
/// `new` made the current version of deployment `name`, then waited for until `old` is
/// drained. What the block printed, or why it failed (`temporal worker deployment
/// set-current-version` can time out on a loaded server: the block is safe to run again).
pub async fn make_current_and_drain(
    bin: &Path,
    address: &str,
    name: &str,
    new: &str,
    old: &str,
) -> Result<String, String> {
    crate::runbook::try_run_in(
        bin,
        "upgrade",
        &[
            ("TEMPORAL_ADDRESS", address),
            ("DEPLOYMENT", name),
            ("NEW_BUILD", new),
            ("OLD_BUILD", old),
        ],
        Path::new("."),
    )
    .await
}
