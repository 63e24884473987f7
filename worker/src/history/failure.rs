//! [`Failure`]: the root cause of a Temporal failure as reflow reads it from a run's history
//! (type, message, which timeout, whether the activity said not to retry).

use serde_json::Value;
use temporalio_common::protos::temporal::api::enums::v1::TimeoutType;
use temporalio_common::protos::temporal::api::failure::v1::{
    Failure as ProtoFailure, failure::FailureInfo,
};

/// The root cause of a Temporal failure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failure {
    /// The application failure's type (`HttpError`), empty for other failures.
    pub kind: String,
    /// Its message.
    pub message: String,
    /// For a timeout, which one.
    pub timeout: Option<TimeoutType>,
    /// The activity said not to retry.
    pub non_retryable: bool,
}

impl Failure {
    /// The root cause of `f`.
    pub fn of(f: &ProtoFailure) -> Failure {
        let mut root = f;
        while let Some(cause) = root.cause.as_deref() {
            root = cause;
        }
        // With the payload codec on, the message travels in `encoded_attributes` (sealed in
        // history, opened by the codec when the history is loaded) and `message` says
        // "Encoded failure".
        let message = root
            .encoded_attributes
            .as_ref()
            .and_then(|p| serde_json::from_slice::<Value>(&p.data).ok())
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| root.message.clone());
        let mut out = Failure {
            message,
            ..Failure::default()
        };
        match &root.failure_info {
            Some(FailureInfo::ApplicationFailureInfo(a)) => {
                out.kind = a.r#type.clone();
                out.non_retryable = a.non_retryable;
            }
            Some(FailureInfo::TimeoutFailureInfo(t)) => {
                out.timeout = TimeoutType::try_from(t.timeout_type).ok();
            }
            _ => {}
        }
        out
    }

    /// `{type}: {message}`; a timeout reads `timeout: HEARTBEAT`; without a type, the message.
    pub fn reason(&self) -> String {
        if let Some(t) = self.timeout {
            return format!("timeout: {}", timeout_name(t));
        }
        if self.kind.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.kind, self.message)
        }
    }
}

/// `START_TO_CLOSE`, `HEARTBEAT`, … (the enum's name without its prefix).
pub fn timeout_name(t: TimeoutType) -> &'static str {
    t.as_str_name().trim_start_matches("TIMEOUT_TYPE_")
}
