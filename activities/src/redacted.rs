//! `Debug` for types that hold keys: the key's presence shows, its value never does, so a
//! configuration logged with `{:?}` (or carried in a panic message) leaks nothing.

use std::fmt;

/// Shows `Some(<redacted>)` or `None` in place of an optional secret.
pub struct Redacted<'a, T>(pub &'a Option<T>);

impl<T> fmt::Debug for Redacted<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(<redacted>)"
        } else {
            "None"
        })
    }
}

/// Shows `<redacted>` (or `""` when empty) in place of a secret string.
pub struct RedactedStr<'a>(pub &'a str);

impl fmt::Debug for RedactedStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "<redacted>"
        })
    }
}

/// A URL without its query, fragment and credentials (customer webhook URLs carry tokens).
pub struct RedactedUrl<'a>(pub &'a Option<String>);

impl fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(u) => write!(f, "Some({:?})", crate::webhook::display_url(u)),
            None => f.write_str("None"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::daily::client::DailyConfig;
    use crate::llm::LlmBackend;
    use crate::storage::StorageConfig;
    use crate::zulip::ZulipConfig;

    #[test]
    fn configurations_that_hold_keys_print_without_them() {
        let printed = [
            format!(
                "{:?}",
                DailyConfig {
                    api_key: Some("daily-KEY-1".into()),
                    webhook_secret: Some("daily-KEY-2".into()),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                ZulipConfig {
                    api_key: "zulip-KEY-3".into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                StorageConfig {
                    secret_access_key: Some("s3-KEY-4".into()),
                    session_token: Some("s3-KEY-5".into()),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                LlmBackend::OpenAi {
                    url: "https://llm.example".into(),
                    api_key: Some("llm-KEY-6".into()),
                    model: "m".into(),
                }
            ),
        ];
        for p in &printed {
            assert!(!p.contains("KEY-"), "{p}");
            assert!(p.contains("<redacted>"), "{p}");
        }
    }
}
