//! Why a step failed: a Temporal failure (or a payload or start error) reduced to its root
//! cause's type and message, as the progress table, the run's failure and `mark_failed` show it.

use serde_json::Value;
use temporalio_workflow::common::protos::temporal::api::failure::v1::{
    Failure, failure::FailureInfo,
};

use crate::payload;

/// Failure type set on a run that failed because a step failed.
pub const STEP_FAILED: &str = "StepFailed";
/// Failure type for input that does not match the declared inputs.
pub const INVALID_INPUT: &str = "InvalidInput";

/// Why a step failed, as the progress table and the run's failure report it.
#[derive(Debug, Clone)]
pub(super) struct StepFailure {
    /// Failure type (`NotFound`, `timeout: HEARTBEAT`, …).
    pub(super) kind: String,
    /// Root message.
    pub(super) message: String,
}

impl StepFailure {
    pub(super) fn new(kind: &str, message: impl Into<String>) -> Self {
        StepFailure {
            kind: kind.to_owned(),
            message: message.into(),
        }
    }
    pub(super) fn text(&self) -> String {
        // A child's own step failure already names its step and cause.
        if self.kind.is_empty() || self.kind == STEP_FAILED {
            self.message.clone()
        } else {
            format!("{}: {}", self.kind, self.message)
        }
    }
}

/// A failed activity or child: its Temporal failure if there is one, else `fallback` and the
/// error's text (payload conversion, start refused).
pub(super) fn failed(
    failure: Option<&Failure>,
    fallback: &str,
    e: &dyn std::fmt::Display,
) -> StepFailure {
    failure.map_or_else(|| StepFailure::new(fallback, e.to_string()), describe)
}

/// A step's JSON output from its raw payload.
pub(super) fn decode(
    raw: temporalio_workflow::common::data_converters::RawValue,
) -> Result<Value, StepFailure> {
    payload::from_raw(&raw).map_err(|e| StepFailure::new("PayloadError", e))
}

/// The root cause of a Temporal failure, as a type and a message.
pub(super) fn describe(f: &Failure) -> StepFailure {
    let mut root = f;
    while let Some(c) = &root.cause {
        root = c;
    }
    let kind = match &root.failure_info {
        Some(FailureInfo::ApplicationFailureInfo(a)) => a.r#type.clone(),
        Some(FailureInfo::TimeoutFailureInfo(t)) => {
            let name = temporalio_workflow::common::protos::temporal::api::enums::v1::TimeoutType::try_from(t.timeout_type)
                .map(|t| t.as_str_name().trim_start_matches("TIMEOUT_TYPE_").to_owned())
                .unwrap_or_default();
            format!("timeout: {name}")
        }
        Some(FailureInfo::CanceledFailureInfo(_)) => "Canceled".into(),
        Some(FailureInfo::TerminatedFailureInfo(_)) => "Terminated".into(),
        _ => String::new(),
    };
    StepFailure {
        kind,
        message: message_of(root),
    }
}

/// A failure's own message. With the payload codec on, the worker's failure converter moves
/// the message into `encoded_attributes` (`{"message", "stack_trace"}`, sealed in history and
/// opened by the codec before the workflow sees it) and leaves `"Encoded failure"` in its
/// place; the SDK restores the outermost failure only, so the root cause is read here.
fn message_of(f: &Failure) -> String {
    f.encoded_attributes
        .as_ref()
        .and_then(|p| serde_json::from_slice::<Value>(&p.data).ok())
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| f.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use temporalio_workflow::common::protos::temporal::api::enums::v1::TimeoutType;
    use temporalio_workflow::common::protos::temporal::api::failure::v1::{
        ApplicationFailureInfo, TimeoutFailureInfo,
    };

    fn failure(message: &str, info: Option<FailureInfo>, cause: Option<Failure>) -> Failure {
        Failure {
            message: message.into(),
            failure_info: info,
            cause: cause.map(Box::new),
            ..Default::default()
        }
    }

    #[test]
    fn the_root_cause_names_the_failure() {
        let app = failure(
            "503 from ASR",
            Some(FailureInfo::ApplicationFailureInfo(
                ApplicationFailureInfo {
                    r#type: "HttpError".into(),
                    ..Default::default()
                },
            )),
            None,
        );
        let wrapped = failure("activity task failed", None, Some(app));
        let f = describe(&wrapped);
        assert_eq!(
            (f.kind.as_str(), f.message.as_str()),
            ("HttpError", "503 from ASR")
        );
        assert_eq!(f.text(), "HttpError: 503 from ASR");
        let timeout = failure(
            "activity timed out",
            Some(FailureInfo::TimeoutFailureInfo(TimeoutFailureInfo {
                timeout_type: TimeoutType::Heartbeat as i32,
                ..Default::default()
            })),
            None,
        );
        assert_eq!(describe(&timeout).kind, "timeout: HEARTBEAT");
    }

    #[test]
    fn an_encoded_root_message_is_read_from_its_attributes() {
        let mut app = failure(
            "Encoded failure",
            Some(FailureInfo::ApplicationFailureInfo(
                ApplicationFailureInfo {
                    r#type: "HttpClientError".into(),
                    ..Default::default()
                },
            )),
            None,
        );
        app.encoded_attributes = Some(
            payload::to_raw(&serde_json::json!({
                "message": "webhook POST http://h/in: HTTP 400", "stack_trace": ""
            }))
            .payloads[0]
                .clone(),
        );
        let f = describe(&failure("Encoded failure", None, Some(app)));
        assert_eq!(
            f.text(),
            "HttpClientError: webhook POST http://h/in: HTTP 400"
        );
    }

    #[test]
    fn a_childs_step_failure_is_not_prefixed_twice_and_errors_without_failure_fall_back() {
        let child = StepFailure::new(STEP_FAILED, "step \"x\" failed: NotFound: gone");
        assert_eq!(child.text(), "step \"x\" failed: NotFound: gone");
        let f = failed(None, "ChildStartFailed", &"already started");
        assert_eq!(f.text(), "ChildStartFailed: already started");
        let back = decode(payload::to_raw(&serde_json::json!({"words_key": "k"}))).unwrap();
        assert_eq!(back["words_key"], "k");
    }
}
