//! reflow's own metrics (docs/contracts/observability.md §4), recorded through the `metrics`
//! facade: seconds, counters ending in `_total`, `step` = the activity type (a fan-out member's
//! `_{i}` is not part of it). Without an installed recorder (unit tests, tools) every call is a
//! no-op.
//!
//! Labels come from the attempt's context ([`crate::attempt`]), so code deep in a step
//! (checkpoints, the LLM client) labels what it records with the pipeline and step without
//! passing them around.

use std::time::Duration;

use crate::attempt::{self, AttemptContext};

/// Buckets of every `*_duration_seconds` histogram (docs/contracts/observability.md §4).
pub const STEP_BUCKETS: [f64; 17] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0,
    1800.0, 3600.0,
];

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It returned a result.
    Success,
    /// It failed and Temporal retries it.
    RetryableFailure,
    /// It failed for good (or was cancelled).
    NonRetryableFailure,
}

/// The `version` label of an attempt: the pipeline version its run is on, a small integer
/// (one series per registered version of a pipeline, so the label stays bounded), empty when
/// unknown.
pub fn version_label(version: Option<u32>) -> String {
    version.map(|v| v.to_string()).unwrap_or_default()
}

/// One attempt of a step: `reflow_step_duration_seconds` and `reflow_step_attempts_total`,
/// labelled with the run's pipeline `version` (a rollout compares the candidate's steps with
/// the current version's).
pub fn attempt(labels: &AttemptContext, outcome: Outcome, took: Duration) {
    let success = outcome == Outcome::Success;
    let version = version_label(labels.version);
    metrics::histogram!(
        "reflow_step_duration_seconds",
        "pipeline" => labels.pipeline.clone(),
        "version" => version.clone(),
        "step" => labels.step.clone(),
        "queue" => labels.queue.clone(),
        "outcome" => if success { "success" } else { "failure" },
    )
    .record(took.as_secs_f64());
    metrics::counter!(
        "reflow_step_attempts_total",
        "pipeline" => labels.pipeline.clone(),
        "version" => version,
        "step" => labels.step.clone(),
        "outcome" => match outcome {
            Outcome::Success => "success",
            Outcome::RetryableFailure => "retryable_failure",
            Outcome::NonRetryableFailure => "non_retryable_failure",
        },
    )
    .increment(1);
}

/// A step result served from its checkpoint (no work paid twice).
pub fn checkpoint_hit() {
    let l = attempt::current();
    metrics::counter!("reflow_checkpoint_hits_total", "pipeline" => l.pipeline, "step" => l.step)
        .increment(1);
}

/// `n` LLM calls and their `status` class (`2xx`, `4xx`, `429`, `5xx`, `error`).
pub fn llm_requests(status: &'static str, n: u64) {
    let l = attempt::current();
    metrics::counter!("reflow_llm_requests_total", "step" => l.step, "status" => status)
        .increment(n);
}

/// Tokens an LLM call used.
pub fn llm_tokens(prompt: u64, completion: u64) {
    let l = attempt::current();
    metrics::counter!("reflow_llm_tokens_total", "step" => l.step.clone(), "kind" => "prompt")
        .increment(prompt);
    metrics::counter!("reflow_llm_tokens_total", "step" => l.step, "kind" => "completion")
        .increment(completion);
}

/// Audio sent to a transcription backend (whole seconds, rounded per call).
pub fn asr_audio(backend: &str, seconds: f64) {
    metrics::counter!("reflow_asr_audio_seconds_total", "backend" => backend.to_owned())
        .increment(seconds.max(0.0).round() as u64);
}

/// A finished pipeline run (`ended` or `error`), `took` from the workflow's start when known.
pub fn pipeline_run(pipeline: &str, outcome: &'static str, took: Option<Duration>) {
    metrics::counter!(
        "reflow_pipeline_runs_total",
        "pipeline" => pipeline.to_owned(),
        "outcome" => outcome,
    )
    .increment(1);
    if let Some(took) = took {
        metrics::histogram!(
            "reflow_pipeline_duration_seconds",
            "pipeline" => pipeline.to_owned(),
            "outcome" => outcome,
        )
        .record(took.as_secs_f64());
    }
}

/// Object traffic: `bytes` read or written (`direction`) in the store `bucket` (its bucket
/// name, `file` for a directory store), labelled with the current step; writes also count
/// towards the attempt's [`AttemptContext::bytes_written`].
pub fn storage_bytes(bucket: &str, direction: &'static str, bytes: u64) {
    let l = attempt::current();
    if direction == "write" {
        l.wrote(bytes);
    }
    metrics::counter!(
        "reflow_storage_bytes_total",
        "bucket" => bucket.to_owned(),
        "direction" => direction,
        "step" => l.step,
    )
    .increment(bytes);
}

/// Create every series an alert or dashboard reads before anything happens, at zero: a
/// counter that appears with its first increment hides that increment from `increase()`
/// (the first error of a pipeline would never fire `ReflowPipelineErrors`). `checkpointed`
/// lists the checkpointed steps as (workflow type, activity type), derived from the
/// pipelines and the steps' declarations (`reflow::metrics::checkpointed_steps`).
pub fn describe(pipelines: &[&str], checkpointed: &[(String, String)]) {
    for p in pipelines {
        for outcome in ["ended", "error"] {
            metrics::counter!("reflow_pipeline_runs_total", "pipeline" => p.to_string(), "outcome" => outcome)
                .absolute(0);
        }
    }
    // The checkpointed steps, whose hits prove nothing was paid (or computed) twice.
    for (pipeline, step) in checkpointed {
        metrics::counter!("reflow_checkpoint_hits_total", "pipeline" => pipeline.clone(), "step" => step.clone())
            .absolute(0);
    }
    for result in [
        "ok",
        "test",
        "ignored",
        "queued",
        "deferred",
        "bad_signature",
        "bad_payload",
    ] {
        metrics::counter!("reflow_daily_webhook_requests_total", "result" => result).absolute(0);
    }
    metrics::gauge!("reflow_run_backlog").set(0.0);
    for target in ["zulip", "webhook"] {
        for outcome in ["delivered", "retry", "rejected", "gave_up", "skipped"] {
            metrics::counter!("reflow_notifications_total", "target" => target, "outcome" => outcome)
                .absolute(0);
        }
    }
}

/// A Daily webhook delivery and what became of it.
pub fn daily_webhook(result: &'static str) {
    metrics::counter!("reflow_daily_webhook_requests_total", "result" => result).increment(1);
}

/// Runs owed and not started yet (`run_backlog`, every replica's count is the database's):
/// recordings and `process` requests waiting for Temporal.
pub fn run_backlog(owed: i64) {
    metrics::gauge!("reflow_run_backlog").set(owed as f64);
}

/// Daily's breaker state for our webhook.
pub fn daily_webhook_state(failed: bool, failed_count: u64) {
    metrics::gauge!("reflow_daily_webhook_failed").set(if failed { 1.0 } else { 0.0 });
    metrics::gauge!("reflow_daily_webhook_failed_count").set(failed_count as f64);
}

/// An outgoing notification (`zulip`, `webhook`) and its outcome (`delivered`, `retry`,
/// `rejected`, `gave_up`).
pub fn notification(target: &'static str, outcome: &'static str) {
    metrics::counter!("reflow_notifications_total", "target" => target, "outcome" => outcome)
        .increment(1);
}

/// The `reflow_notifications_total` outcome of a notification attempt: `delivered`, `skipped`
/// (not configured), `rejected` (non-retryable), `gave_up` (the last attempt failed) or
/// `retry`.
pub fn notification_outcome<T: serde::Serialize>(
    ctx: &temporalio_sdk::activities::ActivityContext,
    result: &Result<T, crate::ActivityFailure>,
) -> &'static str {
    match result {
        Ok(out) => {
            let skipped = serde_json::to_value(out)
                .ok()
                .and_then(|v| {
                    v.get("action")
                        .and_then(|a| a.as_str())
                        .map(|a| a == "skipped")
                })
                .unwrap_or(false);
            if skipped { "skipped" } else { "delivered" }
        }
        Err(e) if e.is_non_retryable() => "rejected",
        Err(_) => {
            let info = ctx.info();
            let max = info
                .retry_policy
                .as_ref()
                .map_or(0, |p| p.maximum_attempts());
            if max > 0 && info.attempt >= max {
                "gave_up"
            } else {
                "retry"
            }
        }
    }
}
