//! Test activities, registered only by the tests: sleep, fail N times, fail non-retryably,
//! heartbeat then hang, echo, and a heartbeating long step.
//!
//! Every activity appends what it does to a journal (a JSON-lines file named in its input),
//! so a test can count executions and compare execution intervals, also across worker
//! processes. The journal records wall-clock times from the activity's own process; tests
//! compare them with each other (overlap, order), never against a fixed duration.

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

/// The input every test activity takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Probe {
    /// Journal file.
    pub journal: String,
    /// What the test calls this execution.
    pub key: String,
    /// Duration of the work, ms.
    #[serde(default)]
    pub ms: u64,
    /// `test_flaky`: attempts that fail before one succeeds.
    #[serde(default)]
    pub failures: u32,
    /// `test_echo`: the value returned.
    #[serde(default)]
    pub value: Value,
}

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// The probe key.
    pub key: String,
    /// Activity type.
    pub activity: String,
    /// Attempt number.
    pub attempt: u32,
    /// `start`, `end`, `fail` or `beat`.
    pub event: String,
    /// Wall clock, ms since the epoch.
    pub t_ms: f64,
    /// Process that ran it.
    pub pid: u32,
}

fn record(ctx: &ActivityContext, probe: &Probe, event: &str) {
    let info = ctx.info();
    let entry = Entry {
        key: probe.key.clone(),
        activity: info.activity_type.clone(),
        attempt: info.attempt,
        event: event.to_owned(),
        t_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0),
        pid: std::process::id(),
    };
    let mut line = serde_json::to_vec(&entry).expect("entries serialize");
    line.push(b'\n');
    // One write per line on an O_APPEND file: lines from concurrent activities never interleave.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&probe.journal)
        .expect("journal opens");
    f.write_all(&line).expect("journal write");
}

/// Read a journal.
pub fn read_journal(path: &std::path::Path) -> Vec<Entry> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("journal lines are entries"))
        .collect()
}

/// The test activities.
pub struct TestActivities;

#[activities]
impl TestActivities {
    /// Sleep `ms`, then return `{key, attempt}`.
    #[activity(name = "test_sleep")]
    pub async fn sleep(ctx: ActivityContext, probe: Probe) -> Result<Value, ActivityError> {
        record(&ctx, &probe, "start");
        tokio::time::sleep(Duration::from_millis(probe.ms)).await;
        record(&ctx, &probe, "end");
        Ok(serde_json::json!({"key": probe.key, "attempt": ctx.info().attempt}))
    }

    /// Fail (retryably) on the first `failures` attempts, then succeed.
    #[activity(name = "test_flaky")]
    pub async fn flaky(ctx: ActivityContext, probe: Probe) -> Result<Value, ActivityError> {
        record(&ctx, &probe, "start");
        let attempt = ctx.info().attempt;
        if attempt <= probe.failures {
            record(&ctx, &probe, "fail");
            return Err(ActivityError::application(
                ApplicationFailure::builder(format!("flaky failure on attempt {attempt}"))
                    .type_name("Flaky".to_owned())
                    .build(),
            ));
        }
        record(&ctx, &probe, "end");
        Ok(serde_json::json!({"key": probe.key, "attempt": attempt}))
    }

    /// Fail non-retryably.
    #[activity(name = "test_fatal")]
    pub async fn fatal(ctx: ActivityContext, probe: Probe) -> Result<Value, ActivityError> {
        record(&ctx, &probe, "start");
        record(&ctx, &probe, "fail");
        Err(ActivityError::application(
            ApplicationFailure::builder(format!("{} cannot work", probe.key))
                .type_name("TestFatal".to_owned())
                .non_retryable(true)
                .build(),
        ))
    }

    /// Fail non-retryably until the file `{journal}.{key}.open` exists (an operator fixing
    /// what was broken), then succeed.
    #[activity(name = "test_gate")]
    pub async fn gate(ctx: ActivityContext, probe: Probe) -> Result<Value, ActivityError> {
        record(&ctx, &probe, "start");
        if !gate_path(&probe).exists() {
            record(&ctx, &probe, "fail");
            return Err(ActivityError::application(
                ApplicationFailure::builder(format!("{} is closed", probe.key))
                    .type_name("GateClosed".to_owned())
                    .non_retryable(true)
                    .build(),
            ));
        }
        record(&ctx, &probe, "end");
        Ok(serde_json::json!({"key": probe.key}))
    }

    /// Fail retryably until the file `{journal}.{key}.open` exists, then succeed (a step that
    /// waits out its retry backoff until someone fixes the cause).
    #[activity(name = "test_latch")]
    pub async fn latch(ctx: ActivityContext, probe: Probe) -> Result<Value, ActivityError> {
        record(&ctx, &probe, "start");
        if !gate_path(&probe).exists() {
            record(&ctx, &probe, "fail");
            return Err(ActivityError::application(
                ApplicationFailure::builder(format!("{} is not ready", probe.key))
                    .type_name("NotReady".to_owned())
                    .build(),
            ));
        }
        record(&ctx, &probe, "end");
        Ok(serde_json::json!({"key": probe.key, "attempt": ctx.info().attempt}))
    }

    /// Heartbeat for `ms`; then, on attempt 1, hang without heartbeating; later attempts
    /// return at once.
    #[activity(name = "test_hang")]
    pub async fn hang(ctx: ActivityContext, probe: Probe) -> Result<Value, ActivityError> {
        record(&ctx, &probe, "start");
        beat_for(&ctx, &probe).await?;
        if ctx.info().attempt == 1 {
            record(&ctx, &probe, "hang");
            // A stuck call: no heartbeats, no return. Only the heartbeat timeout ends this attempt.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        record(&ctx, &probe, "end");
        Ok(serde_json::json!({"key": probe.key, "attempt": ctx.info().attempt}))
    }

    /// Heartbeat every 200 ms for `ms`, then return.
    #[activity(name = "test_beat")]
    pub async fn beat(ctx: ActivityContext, probe: Probe) -> Result<Value, ActivityError> {
        record(&ctx, &probe, "start");
        beat_for(&ctx, &probe).await?;
        record(&ctx, &probe, "end");
        Ok(serde_json::json!({"key": probe.key, "attempt": ctx.info().attempt}))
    }

    /// Return `value`.
    #[activity(name = "test_echo")]
    pub async fn echo(ctx: ActivityContext, probe: Probe) -> Result<Value, ActivityError> {
        record(&ctx, &probe, "start");
        record(&ctx, &probe, "end");
        Ok(probe.value)
    }
}

async fn beat_for(ctx: &ActivityContext, probe: &Probe) -> Result<(), ActivityError> {
    let until = std::time::Instant::now() + Duration::from_millis(probe.ms);
    while std::time::Instant::now() < until {
        if ctx.is_cancelled() {
            return Err(ActivityError::cancelled());
        }
        ctx.record_heartbeat(probe.key.clone()).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The file that opens `test_gate` for a probe.
pub fn gate_path(probe: &Probe) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("{}.{}.open", probe.journal, probe.key))
}
