//! The activity layer's error type and its mapping to Temporal failures.
//!
//! Retryability is decided here, where the failure is understood: each variant carries the
//! failure type of docs/contracts/pipeline.md §6.3 and whether a retry could ever help. The
//! workflow sees the type name in the failure and the progress table shows it.

use temporalio_common::error::ApplicationFailure;
use temporalio_sdk::activities::ActivityError;

/// Why an activity failed.
#[derive(Debug, thiserror::Error)]
pub enum ActivityFailure {
    /// Missing or invalid configuration (never retried).
    #[error("{0}")]
    Config(String),
    /// Malformed input (never retried).
    #[error("{0}")]
    InvalidInput(String),
    /// A named object, file or record does not exist (never retried).
    #[error("{0}")]
    NotFound(String),
    /// Permission refused (never retried).
    #[error("{0}")]
    AccessDenied(String),
    /// Input audio that cannot be decoded (never retried).
    #[error("{0}")]
    AudioDecode(String),
    /// An activity published an event it does not declare: a bug (never retried).
    #[error("{0}")]
    UndeclaredEvent(String),
    /// An HTTP 400/402/413/422 from a backend (never retried).
    #[error("{0}")]
    HttpClient(String),
    /// A 2xx response that lacks required fields (never retried).
    #[error("{0}")]
    ResponseShape(String),
    /// LLM output still invalid after the re-asks (never retried).
    #[error("{0}")]
    LlmParse(String),
    /// The backend asked to slow down (HTTP 429); retried after `retry_after` when it said.
    #[error("{message}")]
    RateLimited {
        /// What was refused.
        message: String,
        /// The backend's `Retry-After`.
        retry_after: Option<std::time::Duration>,
    },
    /// A transient I/O failure (retried).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Any other failure a retry may fix.
    #[error("{0}")]
    Transient(String),
    /// The activity saw its cancellation (through a heartbeat) and stopped.
    #[error("cancelled")]
    Cancelled,
}

impl ActivityFailure {
    /// The failure type name (docs/contracts/pipeline.md §6.3).
    pub fn type_name(&self) -> &'static str {
        match self {
            ActivityFailure::Config(_) => "ConfigError",
            ActivityFailure::InvalidInput(_) => "InvalidInput",
            ActivityFailure::NotFound(_) => "NotFound",
            ActivityFailure::AccessDenied(_) => "AccessDenied",
            ActivityFailure::AudioDecode(_) => "AudioDecodeError",
            ActivityFailure::UndeclaredEvent(_) => "UndeclaredEvent",
            ActivityFailure::HttpClient(_) => "HttpClientError",
            ActivityFailure::ResponseShape(_) => "ResponseShapeError",
            ActivityFailure::LlmParse(_) => "LlmParseError",
            ActivityFailure::RateLimited { .. } => "RateLimited",
            ActivityFailure::Io { .. } => "IoError",
            ActivityFailure::Transient(_) => "Transient",
            ActivityFailure::Cancelled => "Cancelled",
        }
    }

    /// What a viewer who is not the operator is told of a failure of type `type_name` (the
    /// failure's own text can hold URLs with tokens and upstream answers; this never does).
    pub fn public_message(type_name: &str) -> &'static str {
        match type_name {
            "ConfigError" => "the step is not configured correctly",
            "InvalidInput" => "the step's input is invalid",
            "NotFound" => "a file or record the step needs does not exist",
            "AccessDenied" => "a service refused access",
            "AudioDecodeError" => "an audio track cannot be decoded",
            "UndeclaredEvent" => "internal error",
            "HttpClientError" => "a service refused the request",
            "ResponseShapeError" => "a service answered in an unexpected form",
            "LlmParseError" => "the language model's answer could not be read",
            "RateLimited" => "a service asked to slow down",
            "IoError" => "a storage or file operation failed",
            "Transient" => "a temporary failure",
            "Cancelled" => "cancelled",
            _ => "the step failed",
        }
    }

    /// Whether a retry can never succeed.
    pub fn is_non_retryable(&self) -> bool {
        matches!(
            self,
            ActivityFailure::Config(_)
                | ActivityFailure::InvalidInput(_)
                | ActivityFailure::NotFound(_)
                | ActivityFailure::AccessDenied(_)
                | ActivityFailure::AudioDecode(_)
                | ActivityFailure::UndeclaredEvent(_)
                | ActivityFailure::HttpClient(_)
                | ActivityFailure::ResponseShape(_)
                | ActivityFailure::LlmParse(_)
        )
    }

    /// Classify an I/O error on `context` (a path, usually).
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        let context = context.into();
        match source.kind() {
            std::io::ErrorKind::NotFound => {
                ActivityFailure::NotFound(format!("{context}: {source}"))
            }
            std::io::ErrorKind::PermissionDenied => {
                ActivityFailure::AccessDenied(format!("{context}: {source}"))
            }
            _ => ActivityFailure::Io { context, source },
        }
    }
}

impl ActivityFailure {
    /// The Temporal failure, type and retryability included.
    ///
    /// Call this explicitly (`.map_err(ActivityFailure::into_activity_error)`): the SDK's
    /// blanket `From<E: Error>` would turn `?` on an `ActivityFailure` into a *retryable*
    /// failure without a type, so activity bodies keep their `?`s in inner functions that
    /// return `Result<_, ActivityFailure>`.
    pub fn into_activity_error(self) -> ActivityError {
        if matches!(self, ActivityFailure::Cancelled) {
            return ActivityError::cancelled();
        }
        let retry_after = match &self {
            ActivityFailure::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        };
        ActivityError::application(
            ApplicationFailure::builder(self.to_string())
                .type_name(self.type_name().to_owned())
                .non_retryable(self.is_non_retryable())
                .maybe_next_retry_delay(retry_after)
                .build(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_not_retried() {
        let f = ActivityFailure::io("/x", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(f.type_name(), "NotFound");
        assert!(f.is_non_retryable());
        let f = ActivityFailure::io("/x", std::io::Error::from(std::io::ErrorKind::Interrupted));
        assert!(!f.is_non_retryable());
    }
}
