//! A Conductor task definition as a step's options (docs/contracts/pipeline.md §6.2).
//!
//! | Conductor | step |
//! |---|---|
//! | `timeoutSeconds` | `start_to_close` |
//! | `responseTimeoutSeconds` (< `timeoutSeconds`) | `heartbeat`, only where the activity heartbeats |
//! | `totalTimeoutSeconds` | `schedule_to_close` |
//! | `retryCount` (default 3) | `retry.maximum_attempts` = retryCount + 1 |
//! | `retryLogic` FIXED (default) / EXPONENTIAL_BACKOFF / LINEAR_BACKOFF | `backoff_coefficient` 1.0 / 2.0 / 1.0 |
//! | `retryDelaySeconds` (× `backoffScaleFactor` for LINEAR) | `initial_interval` (absent: reflow's 5 s) |
//! | `maxRetryDelaySeconds` | `maximum_interval` |
//!
//! Not mapped, and said so: a response timeout on an activity that does not heartbeat (or
//! that is not registered), LINEAR_BACKOFF's growing delay (the activity would have to set
//! `next_retry_delay`), `pollTimeoutSeconds`, rate and concurrency limits (settings of the
//! task queue, not of a step), `timeoutPolicy: ALERT_ONLY`.

use super::ImportError;
use super::model::TaskDef;
use crate::import::yaml::{RetryDoc, StepDoc};

/// reflow's default cap on a retry delay (`workflow::pipeline::Retry::default`), seconds.
const DEFAULT_MAXIMUM_INTERVAL_S: u64 = 60;

/// Whether the step's activity heartbeats: `None` when it is not registered.
pub(super) type Heartbeats = Option<bool>;

/// Set `step`'s options from `def`; what does not map is returned (one line each).
pub(super) fn apply(
    step: &mut StepDoc,
    def: &TaskDef,
    heartbeats: Heartbeats,
) -> Result<Vec<String>, ImportError> {
    let mut unmapped = Vec::new();
    let bad = |cause: String| ImportError::TaskDef {
        name: def.name.clone(),
        cause,
    };
    let timeout = def.timeout_seconds.filter(|t| *t > 0);
    match timeout {
        Some(t) => step.start_to_close = Some(t),
        None => unmapped.push(
            "no timeoutSeconds: Temporal needs a timeout on every activity, give it \
             `start_to_close`"
                .to_owned(),
        ),
    }
    step.schedule_to_close = def.total_timeout_seconds.filter(|t| *t > 0);
    if let Some(r) = def.response_timeout_seconds.filter(|r| *r > 0)
        && timeout.is_none_or(|t| r < t)
    {
        match heartbeats {
            Some(true) => step.heartbeat = Some(r),
            Some(false) => unmapped.push(format!(
                "responseTimeoutSeconds {r}: activity {} does not heartbeat, so it gets no \
                 heartbeat timeout (start_to_close bounds each attempt)",
                def.name
            )),
            None => unmapped.push(format!(
                "responseTimeoutSeconds {r}: activity {} is not registered, so whether it \
                 heartbeats is unknown; no heartbeat timeout",
                def.name
            )),
        }
    }

    let logic = def.retry_logic.as_deref().unwrap_or("FIXED");
    let coefficient = match logic {
        "FIXED" | "LINEAR_BACKOFF" => 1.0,
        "EXPONENTIAL_BACKOFF" => 2.0,
        other => {
            return Err(bad(format!(
                "retryLogic {other:?} is not FIXED, EXPONENTIAL_BACKOFF or LINEAR_BACKOFF"
            )));
        }
    };
    let count = def.retry_count.unwrap_or(3);
    let mut retry = RetryDoc {
        maximum_attempts: Some(count.saturating_add(1)),
        backoff_coefficient: Some(coefficient),
        ..RetryDoc::default()
    };
    match def.retry_delay_seconds {
        Some(0) => unmapped.push(
            "retryDelaySeconds 0: Temporal waits before every retry; reflow's default delay \
             (5 s) applies"
                .to_owned(),
        ),
        Some(d) => {
            let scale = if logic == "LINEAR_BACKOFF" {
                def.backoff_scale_factor.unwrap_or(1).max(1)
            } else {
                1
            };
            retry.initial_interval = Some(d.saturating_mul(scale));
        }
        None => {}
    }
    if logic == "LINEAR_BACKOFF" {
        unmapped.push(format!(
            "retryLogic LINEAR_BACKOFF: every retry waits {}; a delay growing with the attempt \
             needs the activity to set next_retry_delay on its failure (§6.2)",
            retry
                .initial_interval
                .map_or_else(|| "reflow's default delay".to_owned(), |i| format!("{i}s"))
        ));
    }
    if let Some(m) = def.max_retry_delay_seconds.filter(|m| *m > 0) {
        retry.maximum_interval = Some(m.max(retry.initial_interval.unwrap_or(0)));
    } else if let Some(i) = retry
        .initial_interval
        .filter(|i| *i > DEFAULT_MAXIMUM_INTERVAL_S)
    {
        // reflow caps delays at 60 s unless told otherwise; a longer first delay needs a cap
        // at least as long.
        retry.maximum_interval = Some(i);
        if coefficient > 1.0 {
            unmapped.push(format!(
                "retryDelaySeconds {i} with no maxRetryDelaySeconds: the backoff is capped at \
                 {i}s (set retry.maximum_interval to let it grow)"
            ));
        }
    }
    step.retry = Some(retry);

    if let Some(p) = def.poll_timeout_seconds.filter(|p| *p > 0) {
        unmapped.push(format!(
            "pollTimeoutSeconds {p}: reflow sets no schedule-to-start timeout (waiting in a \
             queue is watched through metrics)"
        ));
    }
    if def.rate_limit_per_frequency.is_some_and(|r| r > 0) {
        unmapped.push(
            "rateLimitPerFrequency: a rate limit belongs to the step's task queue \
             (activities per second), not to the step"
                .into(),
        );
    }
    if def.concurrent_exec_limit.is_some_and(|c| c > 0) {
        unmapped.push(
            "concurrentExecLimit: concurrency is the task queue's slots per worker \
             (REFLOW_ACTIVITY_SLOTS), not the step's"
                .into(),
        );
    }
    if def.timeout_policy.as_deref() == Some("ALERT_ONLY") {
        unmapped.push(
            "timeoutPolicy ALERT_ONLY: Temporal enforces its timeouts; start_to_close here \
             fails the attempt"
                .into(),
        );
    }
    Ok(unmapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(f: impl FnOnce(&mut TaskDef)) -> TaskDef {
        let mut d = TaskDef {
            name: "t".into(),
            timeout_seconds: Some(600),
            response_timeout_seconds: Some(300),
            retry_count: Some(3),
            retry_logic: Some("EXPONENTIAL_BACKOFF".into()),
            ..TaskDef::default()
        };
        f(&mut d);
        d
    }

    fn map(d: &TaskDef, heartbeats: Heartbeats) -> (StepDoc, Vec<String>) {
        let mut s = StepDoc::default();
        let u = apply(&mut s, d, heartbeats).unwrap();
        (s, u)
    }

    #[test]
    fn import_timeouts_map_to_start_to_close_and_heartbeat_where_the_activity_heartbeats() {
        let (s, u) = map(&def(|_| {}), Some(true));
        assert_eq!(
            (s.start_to_close, s.heartbeat, s.schedule_to_close),
            (Some(600), Some(300), None)
        );
        assert!(u.is_empty(), "{u:?}");

        let (s, u) = map(&def(|_| {}), Some(false));
        assert_eq!((s.start_to_close, s.heartbeat), (Some(600), None));
        assert_eq!(u.len(), 1);
        assert!(u[0].starts_with("responseTimeoutSeconds 300: activity t does not heartbeat"));

        let (s, u) = map(&def(|_| {}), None);
        assert_eq!(s.heartbeat, None);
        assert!(u[0].contains("not registered"), "{u:?}");

        // A response timeout not below the timeout is never reached: nothing to say.
        let (s, u) = map(
            &def(|d| d.response_timeout_seconds = Some(600)),
            Some(false),
        );
        assert_eq!(s.heartbeat, None);
        assert!(u.is_empty(), "{u:?}");

        let (s, u) = map(
            &def(|d| {
                d.timeout_seconds = None;
                d.total_timeout_seconds = Some(3600);
                d.poll_timeout_seconds = Some(10);
            }),
            Some(true),
        );
        assert_eq!(
            (s.start_to_close, s.schedule_to_close, s.heartbeat),
            (None, Some(3600), Some(300))
        );
        assert!(u[0].starts_with("no timeoutSeconds"), "{u:?}");
        assert!(u[1].starts_with("pollTimeoutSeconds 10"), "{u:?}");
    }

    #[test]
    fn import_retry_logic_maps_to_attempts_and_backoff() {
        let retry = |d: TaskDef| map(&d, Some(true)).0.retry.unwrap();
        // EXPONENTIAL_BACKOFF: ×2; attempts = retries + 1; no delay given → reflow's default.
        assert_eq!(
            retry(def(|_| {})),
            RetryDoc {
                maximum_attempts: Some(4),
                backoff_coefficient: Some(2.0),
                initial_interval: None,
                maximum_interval: None
            }
        );
        // FIXED (also Conductor's default logic, with its default 3 retries).
        let fixed = retry(def(|d| {
            d.retry_logic = None;
            d.retry_count = None;
            d.retry_delay_seconds = Some(10);
        }));
        assert_eq!(
            (
                fixed.maximum_attempts,
                fixed.backoff_coefficient,
                fixed.initial_interval
            ),
            (Some(4), Some(1.0), Some(10))
        );
        // The send_webhook of §6.1: 30 retries → 31 attempts; a cap.
        let hook = retry(def(|d| {
            d.retry_count = Some(30);
            d.retry_delay_seconds = Some(60);
            d.max_retry_delay_seconds = Some(3600);
        }));
        assert_eq!(
            (
                hook.maximum_attempts,
                hook.initial_interval,
                hook.maximum_interval
            ),
            (Some(31), Some(60), Some(3600))
        );
        // A first delay above reflow's 60 s cap raises the cap, and says so for a backoff.
        let (s, u) = map(&def(|d| d.retry_delay_seconds = Some(120)), Some(true));
        assert_eq!(s.retry.unwrap().maximum_interval, Some(120));
        assert!(u[0].contains("capped at 120s"), "{u:?}");
        let (s, u) = map(
            &def(|d| {
                d.retry_logic = Some("FIXED".into());
                d.retry_delay_seconds = Some(120);
            }),
            Some(true),
        );
        assert_eq!(s.retry.unwrap().maximum_interval, Some(120));
        assert!(u.is_empty(), "{u:?}");
    }

    #[test]
    fn import_linear_backoff_is_a_fixed_delay_and_says_what_is_missing() {
        let (s, u) = map(
            &def(|d| {
                d.retry_logic = Some("LINEAR_BACKOFF".into());
                d.retry_delay_seconds = Some(5);
                d.backoff_scale_factor = Some(3);
            }),
            Some(true),
        );
        let r = s.retry.unwrap();
        assert_eq!(
            (r.backoff_coefficient, r.initial_interval),
            (Some(1.0), Some(15))
        );
        assert_eq!(u.len(), 1);
        assert!(
            u[0].contains("LINEAR_BACKOFF: every retry waits 15s"),
            "{u:?}"
        );
        assert!(u[0].contains("next_retry_delay"), "{u:?}");
    }

    #[test]
    fn import_queue_settings_and_alert_only_are_named_and_a_bad_logic_is_an_error() {
        let (_, u) = map(
            &def(|d| {
                d.rate_limit_per_frequency = Some(10);
                d.concurrent_exec_limit = Some(2);
                d.timeout_policy = Some("ALERT_ONLY".into());
            }),
            Some(true),
        );
        assert_eq!(u.len(), 3, "{u:?}");
        let err = apply(
            &mut StepDoc::default(),
            &def(|d| d.retry_logic = Some("RANDOM".into())),
            Some(true),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "task definition t: retryLogic \"RANDOM\" is not FIXED, EXPONENTIAL_BACKOFF or \
             LINEAR_BACKOFF"
        );
    }
}
