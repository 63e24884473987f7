//! Declared inputs and step options: durations parsed, defaults merged (pipeline, child,
//! step), retry policies checked.

use std::time::Duration;

use super::error::Problem;
use super::raw::{RawDuration, RawInput, RawOptions, RawRetry};
use super::{InputKind, InputSpec, Retry, StepOptions};

pub(super) fn input_spec(i: &RawInput) -> Result<InputSpec, String> {
    let kind = match i.kind.as_deref().unwrap_or("any") {
        "string" => InputKind::String,
        "integer" => InputKind::Integer,
        "number" => InputKind::Number,
        "boolean" => InputKind::Boolean,
        "array" => InputKind::Array,
        "object" => InputKind::Object,
        "any" => InputKind::Any,
        other => {
            return Err(format!(
                "type {other:?} is not one of string, integer, number, boolean, array, object, any"
            ));
        }
    };
    if let Some(d) = &i.default
        && !kind.accepts(d)
    {
        return Err(format!("default {d} is not of type {kind:?}"));
    }
    Ok(InputSpec {
        kind,
        required: i.required.unwrap_or(true) && i.default.is_none(),
        default: i.default.clone(),
    })
}

pub(super) fn duration(
    field: &'static str,
    d: &RawDuration,
    problems: &mut Vec<Problem>,
) -> Option<u64> {
    let parsed = match d {
        RawDuration::Seconds(s) => Some(Duration::from_secs(*s)),
        RawDuration::Text(t) => humantime::parse_duration(t.trim()).ok(),
    };
    match parsed {
        Some(d) if !d.is_zero() => Some(d.as_millis() as u64),
        _ => {
            problems.push(Problem::BadDuration {
                field,
                value: show(d),
            });
            None
        }
    }
}

pub(super) fn show(d: &RawDuration) -> String {
    match d {
        RawDuration::Seconds(s) => format!("{s}s"),
        RawDuration::Text(t) => t.clone(),
    }
}

pub(super) fn merge_options(
    defaults: &RawOptions,
    child_defaults: Option<&RawOptions>,
    step: &RawOptions,
    queue: &str,
    is_child: bool,
    problems: &mut Vec<Problem>,
) -> StepOptions {
    if is_child {
        for (field, set) in [
            ("start_to_close", step.start_to_close.is_some()),
            ("schedule_to_close", step.schedule_to_close.is_some()),
            ("heartbeat", step.heartbeat.is_some()),
            ("retry", step.retry.is_some()),
        ] {
            if set {
                problems.push(Problem::TimeoutOnChild { field });
            }
        }
    }
    // Layers, most specific last.
    let layers: Vec<&RawOptions> = std::iter::once(defaults)
        .chain(child_defaults)
        .chain(std::iter::once(step))
        .collect();
    let pick = |f: fn(&RawOptions) -> Option<&RawDuration>| {
        layers.iter().rev().find_map(|l| f(l)).cloned()
    };
    let s2c = pick(|o| o.schedule_to_close.as_ref());
    let stc = pick(|o| o.start_to_close.as_ref());
    let hb = pick(|o| o.heartbeat.as_ref());
    let s2c_ms = s2c
        .as_ref()
        .and_then(|d| duration("schedule_to_close", d, problems));
    let stc_formula = match &stc {
        Some(RawDuration::Text(t)) if crate::formula::is_formula(t) => {
            if let Err(source) = crate::formula::Formula::parse(t) {
                problems.push(Problem::Expr {
                    field: "start_to_close",
                    source,
                });
            }
            Some(t.clone())
        }
        _ => None,
    };
    let stc_ms = stc
        .as_ref()
        .filter(|_| stc_formula.is_none())
        .and_then(|d| duration("start_to_close", d, problems));
    let hb_ms = hb.as_ref().and_then(|d| duration("heartbeat", d, problems));
    if !is_child {
        if s2c.is_none() && stc.is_none() {
            problems.push(Problem::NoTimeout);
        }
        if let (Some(h), Some(hb)) = (hb_ms, &hb) {
            for (limit, raw) in [(stc_ms, &stc), (s2c_ms, &s2c)] {
                if let (Some(l), Some(raw)) = (limit, raw)
                    && h > l
                {
                    problems.push(Problem::HeartbeatTooLong {
                        heartbeat: show(hb),
                        start_to_close: show(raw),
                    });
                    break;
                }
            }
        }
    }
    let mut retry = Retry::default();
    for r in layers.iter().filter_map(|l| l.retry.as_ref()) {
        apply_retry(&mut retry, r, problems);
    }
    if retry.backoff_coefficient < 1.0 {
        problems.push(Problem::BadRetry(format!(
            "backoff_coefficient {} must be 1.0 or more",
            retry.backoff_coefficient
        )));
    }
    if let Some(max) = retry.maximum_interval_ms
        && max < retry.initial_interval_ms
    {
        problems.push(Problem::BadRetry(
            "maximum_interval is shorter than initial_interval".into(),
        ));
    }
    StepOptions {
        task_queue: layers
            .iter()
            .rev()
            .find_map(|l| l.task_queue.clone())
            .unwrap_or_else(|| queue.to_owned()),
        schedule_to_close_ms: s2c_ms,
        start_to_close_ms: stc_ms,
        start_to_close_formula: stc_formula,
        heartbeat_ms: hb_ms,
        retry,
    }
}

pub(super) fn apply_retry(retry: &mut Retry, r: &RawRetry, problems: &mut Vec<Problem>) {
    if let Some(d) = &r.initial_interval
        && let Some(ms) = duration("retry.initial_interval", d, problems)
    {
        retry.initial_interval_ms = ms;
    }
    if let Some(c) = r.backoff_coefficient {
        retry.backoff_coefficient = c;
    }
    if let Some(d) = &r.maximum_interval {
        retry.maximum_interval_ms = duration("retry.maximum_interval", d, problems);
    }
    if let Some(m) = r.maximum_attempts {
        retry.maximum_attempts = m;
    }
    if let Some(t) = &r.non_retryable_error_types {
        retry.non_retryable_error_types = t.clone();
    }
}
