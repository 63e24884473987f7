//! The soak's stand-in backends: the harness's stand-ins ([`Backends`]: transcription, LLM,
//! Zulip, the customer's webhook receiver, Daily) with realistic latencies laid over their
//! answers and a transient failure rate (503), drawn from a seeded generator.

use std::sync::Mutex;
use std::time::Duration;

use reflow_tests::blows::Rng;
use reflow_tests::daily::Fault;
use reflow_tests::meetings::Backends;
use reflow_tests::standins::{Reply, StandIn};

/// How long each vendor takes to answer, in milliseconds (uniform in the range).
pub struct Latency {
    /// What the stand-in is.
    pub name: &'static str,
    /// Shortest answer.
    pub lo_ms: u64,
    /// Longest answer.
    pub hi_ms: u64,
}

/// A hosted GPU transcription of a few seconds of speech, its queue included.
pub const ASR: Latency = Latency {
    name: "transcription (gpu-url)",
    lo_ms: 3_000,
    hi_ms: 12_000,
};
/// A hosted LLM's chat completion of a short prompt.
pub const LLM: Latency = Latency {
    name: "LLM (chat completions)",
    lo_ms: 800,
    hi_ms: 4_000,
};
/// Zulip's messages API.
pub const ZULIP: Latency = Latency {
    name: "Zulip",
    lo_ms: 100,
    hi_ms: 600,
};
/// The customer's webhook receiver.
pub const HOOK: Latency = Latency {
    name: "customer webhook",
    lo_ms: 50,
    hi_ms: 400,
};

/// Lay `latency` and `failure_rate` over `standin`'s answers: a request fails with 503
/// (after a quarter of a latency) with probability `failure_rate`, else gets the stand-in's own
/// answer after a latency.
fn flaky(standin: &StandIn, latency: &Latency, failure_rate: f64, seed: u64) {
    let rng = Mutex::new(Rng(seed | 1));
    let (lo, hi) = (latency.lo_ms, latency.hi_ms);
    standin.wrap_default(move |r, default| {
        let (fail, ms) = {
            let mut rng = rng.lock().unwrap();
            (
                rng.unit() < failure_rate,
                lo + rng.next_u64() % (hi - lo).max(1),
            )
        };
        if fail {
            Reply::After(Duration::from_millis(ms / 4), Box::new(Reply::status(503)))
        } else {
            Reply::After(Duration::from_millis(ms), Box::new(default(r)))
        }
    });
}

/// Make `backends` (started with an immediate transcription stand-in) slow and flaky; the
/// lines of the results file that say how.
pub fn make_realistic(backends: &Backends, failure_rate: f64, seed: u64) -> String {
    let mut said = String::new();
    for (i, (standin, latency)) in [
        (&backends.asr, &ASR),
        (&backends.llm, &LLM),
        (&backends.zulip, &ZULIP),
        (&backends.receiver, &HOOK),
    ]
    .into_iter()
    .enumerate()
    {
        flaky(
            standin,
            latency,
            failure_rate,
            seed.wrapping_add(i as u64 + 1),
        );
        said.push_str(&format!(
            "- {}: {:.1}–{:.1} s, {:.0} % answered 503\n",
            latency.name,
            latency.lo_ms as f64 / 1000.0,
            latency.hi_ms as f64 / 1000.0,
            failure_rate * 100.0
        ));
    }
    // Daily's API: one request in 1/rate answered 503 (the stand-in answers at once otherwise).
    let one_in = (1.0 / failure_rate.max(1e-6)).round() as u32;
    backends.daily.fault(Fault {
        path_prefix: "/v1/".into(),
        status: Some(503),
        one_in: Some(one_in),
        ..Default::default()
    });
    said.push_str(&format!(
        "- Daily's REST API: immediate, one request in {one_in} answered 503\n"
    ));
    said
}

/// The most a call of `latency` can be in flight.
pub fn longest(latency: &Latency) -> Duration {
    Duration::from_millis(latency.hi_ms)
}
