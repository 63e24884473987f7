//! What the interpreter tells Temporal about a step: its activity (or local activity) options
//! — timeouts, a formula's start-to-close for this run, retry policy, queue, heartbeat — and
//! the label the Web UI shows for it.

use std::time::Duration;

use serde_json::Value;
use temporalio_workflow::common::{ActivityCloseTimeouts, RetryPolicy};
use temporalio_workflow::{ActivityOptions, LocalActivityOptions};

use super::COUNT_SCOPE;
use crate::expr::{self, Scope};
use crate::pipeline::Step;

/// The Web UI label of a step's activity or child: its `summary:` template rendered for this
/// member, else the step id (with `i/N` for a fan-out member).
pub(super) fn summary_of(step: &Step, scope: &Scope, index: Option<usize>) -> String {
    let default = || match index {
        Some(i) => match scope.get(COUNT_SCOPE).and_then(Value::as_u64) {
            Some(n) => format!("{} {}/{n}", step.id, i + 1),
            None => format!("{} {}", step.id, i + 1),
        },
        None => step.id.clone(),
    };
    match &step.summary {
        None => default(),
        Some(t) => match expr::render(&Value::String(t.clone()), scope) {
            Ok(Value::String(s)) if !s.trim().is_empty() => s,
            Ok(Value::String(_)) | Ok(Value::Null) | Err(_) => default(),
            Ok(other) => other.to_string(),
        },
    }
}

/// A formula's start-to-close for this member (at least one second).
pub(super) fn computed_timeout(text: &str, scope: &Scope) -> Result<Duration, expr::ExprError> {
    let seconds = crate::formula::Formula::parse(text)?.seconds(scope)?;
    Ok(Duration::from_secs_f64(seconds.max(1.0)))
}

/// The activity options a step declares; `start_to_close` is the step's formula evaluated for
/// this run, when it has one; `summary` is the Web UI label.
pub fn activity_options(
    step: &Step,
    activity_id: String,
    start_to_close: Option<Duration>,
    summary: String,
) -> ActivityOptions {
    let o = &step.options;
    let close = match (o.schedule_to_close(), start_to_close.or(o.start_to_close())) {
        (Some(s), Some(t)) => ActivityCloseTimeouts::ScheduleAndStartToClose {
            schedule_to_close: s,
            start_to_close: t,
        },
        (Some(s), None) => ActivityCloseTimeouts::ScheduleToClose(s),
        (None, Some(t)) => ActivityCloseTimeouts::StartToClose(t),
        // Validation forbids this; a minute keeps a hand-written input from hanging forever.
        (None, None) => ActivityCloseTimeouts::StartToClose(Duration::from_secs(60)),
    };
    let retry = retry_policy(&o.retry);
    ActivityOptions::with_close_timeouts(close)
        .activity_id(activity_id)
        .task_queue(o.task_queue.clone())
        .maybe_heartbeat_timeout(o.heartbeat())
        .retry_policy(retry)
        .summary(summary)
        .build()
}

/// The local-activity options of a `local: true` step: the same timeouts and retry policy
/// as [`activity_options`] (no queue, no heartbeat: validation forbids both). The input is
/// kept in the marker, so history (and the Conductor shim) shows what the step received.
pub fn local_activity_options(
    step: &Step,
    activity_id: String,
    start_to_close: Option<Duration>,
    summary: String,
) -> LocalActivityOptions {
    let o = &step.options;
    let (schedule_to_close, start_to_close) =
        match (o.schedule_to_close(), start_to_close.or(o.start_to_close())) {
            // Validation forbids neither; a minute keeps a hand-written input from hanging.
            (None, None) => (None, Some(Duration::from_secs(60))),
            pair => pair,
        };
    LocalActivityOptions::builder()
        .activity_id(activity_id)
        .retry_policy(retry_policy(&o.retry))
        .maybe_schedule_to_close_timeout(schedule_to_close)
        .maybe_start_to_close_timeout(start_to_close)
        .include_arguments_in_marker(true)
        .summary(summary)
        .build()
}

/// A step's retry policy as Temporal's.
pub(super) fn retry_policy(r: &crate::pipeline::Retry) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(r.initial_interval_ms))
        .backoff_coefficient(r.backoff_coefficient)
        .maybe_maximum_interval(r.maximum_interval_ms.map(Duration::from_millis))
        .maximum_attempts(r.maximum_attempts)
        .non_retryable_error_types(r.non_retryable_error_types.clone())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(extra: Value) -> Step {
        let mut s = json!({
            "id": "transcribe_track", "run": {"activity": "transcribe_track"}, "needs": [],
            "with": null, "for_each": null, "concurrency": null, "child_id": null,
            "activity_id": null, "when": null, "optional": false, "emits": [],
            "options": {"task_queue": "asr", "schedule_to_close_ms": null,
                        "start_to_close_ms": 1_800_000, "heartbeat_ms": 900_000,
                        "retry": {"initial_interval_ms": 5000, "backoff_coefficient": 2.0,
                                  "maximum_interval_ms": 60000, "maximum_attempts": 4,
                                  "non_retryable_error_types": []}}
        });
        if let (Value::Object(m), Value::Object(e)) = (&mut s, extra) {
            m.extend(e);
        }
        serde_json::from_value(s).unwrap()
    }

    #[test]
    fn a_fan_out_member_is_labelled_i_of_n_unless_the_step_says_otherwise() {
        let mut scope = Scope::new();
        scope.insert(COUNT_SCOPE.into(), json!(3));
        scope.insert("input".into(), json!({"name": "Ana"}));
        assert_eq!(
            summary_of(&step(json!({})), &scope, Some(1)),
            "transcribe_track 2/3"
        );
        assert_eq!(
            summary_of(&step(json!({})), &scope, None),
            "transcribe_track"
        );
        let labelled = step(json!({"summary": "transcribe ${input.name}"}));
        assert_eq!(summary_of(&labelled, &scope, Some(1)), "transcribe Ana");
        let broken = step(json!({"summary": "${input.missing}"}));
        assert_eq!(summary_of(&broken, &scope, Some(0)), "transcribe_track 1/3");
    }

    #[test]
    fn a_formula_gives_at_least_a_second_and_the_retry_policy_is_the_steps() {
        let mut scope = Scope::new();
        scope.insert("input".into(), json!({"tracks": [1, 2]}));
        let t = computed_timeout("max(0s, 60s * len(${input.tracks}))", &scope).unwrap();
        assert_eq!(t, Duration::from_secs(120));
        let zero = computed_timeout("0s", &scope).unwrap();
        assert_eq!(zero, Duration::from_secs(1));
        let r = retry_policy(&step(json!({})).options.retry);
        assert_eq!(r.maximum_attempts(), 4);
        assert_eq!(r.backoff_coefficient(), 2.0);
    }
}
