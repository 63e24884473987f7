//! Failure texts as viewers who are not the operator see them (issue: failure text to
//! anonymous viewers). A step's failure message can carry a customer webhook URL with its
//! query token, an upstream service's answer, or a path; the operator (and the Temporal
//! history) keep it whole, everyone else gets the step, the failure type and a safe message
//! ([`ActivityFailure::public_message`]).
//!
//! The texts have the shapes the interpreter and the attempt reporter give them:
//! `[attempt N: ][step X failed: ]{Type}: {message}[; retrying[; k/n done]]`, `timeout:
//! {KIND}`, `paused: {reason}`, `skipped`, `k/n done`. Anything else is replaced whole.

use activities::error::ActivityFailure;
use serde_json::Value;

/// `text` with every failure message replaced by its type's safe message.
pub fn reason(text: &str) -> String {
    let (body, suffix) = split_suffix(text);
    let mut rest = body;
    let mut out = String::new();
    loop {
        if let Some(r) = rest.strip_prefix("attempt ")
            && let Some((n, after)) = r.split_once(": ")
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            out.push_str(&format!("attempt {n}: "));
            rest = after;
            continue;
        }
        if let Some(r) = rest.strip_prefix("step ")
            && let Some((step, after)) = r.split_once(" failed: ")
            && is_word(step)
        {
            out.push_str(&format!("step {step} failed: "));
            rest = after;
            continue;
        }
        break;
    }
    if rest.is_empty() || rest == "skipped" || is_count(rest) {
        out.push_str(rest);
    } else if let Some(kind) = rest.strip_prefix("timeout: ") {
        out.push_str("timeout: ");
        out.push_str(if is_word(kind) { kind } else { "unknown" });
    } else if rest.starts_with("paused: ") {
        out.push_str("paused");
    } else {
        match rest.split_once(": ") {
            Some((kind, _)) if is_word(kind) => {
                out.push_str(&format!(
                    "{kind}: {}",
                    ActivityFailure::public_message(kind)
                ));
            }
            _ => out.push_str(ActivityFailure::public_message("")),
        }
    }
    out.push_str(suffix);
    out
}

/// The type of the failure `text` describes (the shapes above): `HttpError`, `timeout
/// (HEARTBEAT)`, `paused`, else `error`. Safe for every viewer.
pub fn failure_type(text: &str) -> String {
    let public = reason(text);
    let (body, _) = split_suffix(&public);
    let mut rest = body;
    while let Some((_, after)) = rest
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("attempt ") || head.starts_with("step "))
    {
        rest = after;
    }
    if let Some(kind) = rest.strip_prefix("timeout: ") {
        return format!("timeout ({kind})");
    }
    match rest.split_once(": ") {
        Some((kind, _)) if is_word(kind) => kind.to_owned(),
        _ if rest == "paused" => rest.to_owned(),
        _ => "error".to_owned(),
    }
}

/// The `PIPELINE_PROGRESS` envelope (or data) with its `message` redacted; other events as
/// they are.
pub fn progress_envelope(mut envelope: Value) -> Value {
    if envelope["event"] == "PIPELINE_PROGRESS"
        && let Some(m) = envelope["data"]["message"].as_str()
    {
        envelope["data"]["message"] = Value::String(reason(m));
    }
    envelope
}

/// Every `reasonForIncompletion` of a Conductor workflow or task JSON, redacted in place.
pub fn conductor_json(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, field) in map.iter_mut() {
                if k == "reasonForIncompletion" {
                    if let Some(text) = field.as_str() {
                        *field = Value::String(reason(text));
                    }
                } else {
                    conductor_json(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(conductor_json),
        _ => {}
    }
}

/// The trailing `; retrying[; k/n done]` or `; k/n done` a progress message may carry.
fn split_suffix(text: &str) -> (&str, &str) {
    let mut cut = text.len();
    if let Some(i) = text[..cut].rfind("; ")
        && is_count(&text[i + 2..cut])
    {
        cut = i;
    }
    if text[..cut].ends_with("; retrying") {
        cut -= "; retrying".len();
    }
    text.split_at(cut)
}

fn is_count(s: &str) -> bool {
    s.strip_suffix(" done")
        .and_then(|c| c.split_once('/'))
        .is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|x| x.is_ascii_digit())
        })
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_type_is_its_type_and_nothing_of_its_message() {
        assert_eq!(
            failure_type("attempt 2: HttpError: POST https://h/?token=s3cret: 503"),
            "HttpError"
        );
        assert_eq!(
            failure_type("step x failed: ConfigError: no; retrying"),
            "ConfigError"
        );
        assert_eq!(failure_type("timeout: HEARTBEAT"), "timeout (HEARTBEAT)");
        assert_eq!(failure_type("paused: because"), "paused");
        assert_eq!(failure_type("Weird Type: token=abc"), "error");
    }

    #[test]
    fn messages_lose_their_text_and_keep_their_shape() {
        assert_eq!(
            reason(
                "attempt 2: Transient: webhook POST https://h.example/in?token=s3cret: HTTP 502"
            ),
            "attempt 2: Transient: a temporary failure"
        );
        assert_eq!(
            reason(
                "HttpClientError: webhook POST http://x/?token=abc: HTTP 400: body; retrying; 2/3 done"
            ),
            "HttpClientError: a service refused the request; retrying; 2/3 done"
        );
        assert_eq!(
            reason("step send_webhook failed: ConfigError: webhook URL http://10.0.0.1/?k=v: no"),
            "step send_webhook failed: ConfigError: the step is not configured correctly"
        );
        assert_eq!(reason("timeout: HEARTBEAT"), "timeout: HEARTBEAT");
        assert_eq!(reason("2/4 done"), "2/4 done");
        assert_eq!(reason("skipped"), "skipped");
        assert_eq!(reason("paused: operator said so"), "paused");
        assert_eq!(
            reason("something with https://secret.example/?t=1 in it"),
            "the step failed"
        );
        assert!(!reason("Weird Type: token=abc").contains("abc"));
    }

    #[test]
    fn conductor_reasons_are_redacted_at_every_depth() {
        let mut v = serde_json::json!({
            "reasonForIncompletion": "step x failed: NotFound: s3://bucket/secret-key",
            "tasks": [{"reasonForIncompletion": "IoError: /srv/data/x: denied", "status": "FAILED"}]
        });
        conductor_json(&mut v);
        let text = v.to_string();
        assert!(
            !text.contains("secret-key") && !text.contains("/srv"),
            "{text}"
        );
        assert_eq!(v["tasks"][0]["status"], "FAILED");
    }
}
