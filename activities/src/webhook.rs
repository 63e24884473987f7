//! `send_webhook` (pipeline.md §4.16): `transcript.completed` to the room's customer URL,
//! signed `t={unix},v1={hex HMAC-SHA256(secret, "{t}." + body)}`, with an `event_id` that is
//! the same on every attempt, retry and reset of a run.
//!
//! The SSRF guard resolves the URL's host and refuses loopback, private, link-local and
//! other non-public addresses unless the host is listed in
//! `REFLOW_WEBHOOK_ALLOWED_PRIVATE_HOSTS`; the request is then pinned to the checked address,
//! so a DNS answer cannot change between the check and the connection.

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::error::ActivityFailure;
use crate::events::Events;
use crate::http;
use crate::transcript::{Participant, Topic, segments, speaker_name, webvtt};

/// HTTP timeout of a delivery (§6.1).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Input of `send_webhook`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookInput {
    /// The transcript.
    pub transcript_id: String,
}

/// Output of `send_webhook`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookOutput {
    /// `delivered` or `skipped`.
    pub action: String,
    /// The event id sent.
    pub event_id: Option<String>,
    /// The receiver's status.
    pub status: Option<u16>,
    /// Why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `v1` of the signature header: hex HMAC-SHA256 of `"{t}." + body` keyed by the secret's
/// UTF-8 bytes.
pub fn signature(secret: &str, t: u64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The event id of a run: UUIDv5 (URL namespace) of `{transcript_id}:{first run id}`, as 32
/// hex characters.
pub fn event_id(transcript_id: &str, first_run_id: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("{transcript_id}:{first_run_id}").as_bytes(),
    )
    .simple()
    .to_string()
}

/// Whether an address is one a customer URL must not reach: loopback, private, link-local,
/// unspecified, carrier-grade NAT, unique-local or multicast.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Hosts allowed to resolve to private addresses (`REFLOW_WEBHOOK_ALLOWED_PRIVATE_HOSTS`,
/// comma-separated host names or IPs).
pub fn allowed_private_hosts() -> Vec<String> {
    std::env::var("REFLOW_WEBHOOK_ALLOWED_PRIVATE_HOSTS")
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// Resolve `url`'s host and check it against the guard; the address to connect to.
pub async fn guard(url: &str, allowed: &[String]) -> Result<(String, SocketAddr), ActivityFailure> {
    let refuse = |why: String| ActivityFailure::Config(format!("webhook URL {url:?}: {why}"));
    let parsed = url::Url::parse(url).map_err(|e| refuse(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(refuse(format!(
            "scheme {:?} is not http(s)",
            parsed.scheme()
        )));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| refuse("no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| refuse("no port".into()))?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| ActivityFailure::Transient(format!("webhook URL {url:?}: resolve: {e}")))?
        .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| ActivityFailure::Transient(format!("webhook URL {url:?}: no address")))?;
    if !allowed.contains(&host)
        && let Some(bad) = addrs.iter().find(|a| is_private(a.ip()))
    {
        return Err(refuse(format!(
            "{host} resolves to the non-public address {} (allow it with \
             REFLOW_WEBHOOK_ALLOWED_PRIVATE_HOSTS)",
            bad.ip()
        )));
    }
    Ok((host, first))
}

/// Webhook activities.
pub struct WebhookActivities {
    events: Events,
    allowed: Vec<String>,
}

impl WebhookActivities {
    /// Deliver for transcripts read through `events`, allowing `allowed` private hosts.
    pub fn new(events: Events, allowed: Vec<String>) -> Self {
        WebhookActivities { events, allowed }
    }

    async fn send(
        &self,
        ctx: &ActivityContext,
        input: &WebhookInput,
    ) -> Result<WebhookOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let db = self.events.db();
        let t = db.transcript(tid).await?;
        let skipped = |reason: &str| {
            Ok(WebhookOutput {
                action: "skipped".into(),
                event_id: None,
                status: None,
                reason: Some(reason.into()),
            })
        };
        let room = match &t.room_id {
            Some(r) => db.room(r).await?,
            None => None,
        };
        let Some(room) = room else {
            return skipped("the transcript has no room");
        };
        let Some(url) = room.webhook_url.clone().filter(|u| !u.trim().is_empty()) else {
            return skipped("the room has no webhook URL");
        };
        let info = ctx.info();
        let first_run = t
            .workflow_run_id
            .clone()
            .or_else(|| info.workflow_run_id.clone())
            .unwrap_or_default();
        let id = event_id(tid, &first_run);
        let first_attempt = info.scheduled_time.unwrap_or_else(SystemTime::now);
        let timestamp = humantime::format_rfc3339_seconds(first_attempt).to_string();

        let participants: Vec<Participant> =
            serde_json::from_str(&t.participants).map_err(|e| {
                ActivityFailure::InvalidInput(format!("transcript {tid} participants: {e}"))
            })?;
        let topics: Vec<Topic> = serde_json::from_str(&t.topics)
            .map_err(|e| ActivityFailure::InvalidInput(format!("transcript {tid} topics: {e}")))?;
        let action_items: Value = t
            .action_items
            .as_deref()
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or_else(|| json!({"decisions": [], "next_steps": []}));
        let base = crate::zulip::ui_base_url();
        let body = json!({
            "event": "transcript.completed",
            "event_id": id,
            "timestamp": timestamp,
            "transcript": {
                "id": t.id,
                "room_id": t.room_id,
                "created_at": t.created_at,
                "duration": t.duration,
                "title": t.title,
                "short_summary": t.short_summary,
                "long_summary": t.long_summary,
                "webvtt": t.webvtt,
                "topics": topics.iter().map(|topic| json!({
                    "title": topic.title,
                    "summary": topic.summary,
                    "timestamp": topic.timestamp,
                    "duration": topic.duration,
                    "webvtt": if topic.words.is_empty() {
                        String::new()
                    } else {
                        webvtt(&segments(&topic.words), |s| speaker_name(&participants, s))
                    },
                })).collect::<Vec<_>>(),
                "participants": participants.iter().map(|p| json!({
                    "id": p.id, "name": p.name, "speaker": p.speaker,
                })).collect::<Vec<_>>(),
                "source_language": t.source_language,
                "target_language": t.target_language,
                "status": t.status,
                "frontend_url": format!("{base}/transcripts/{}", t.id),
                "action_items": action_items,
            },
            "room": {"id": room.id, "name": room.name},
            "calendar_event": Value::Null,
        });
        let body = serde_json::to_vec(&body).expect("JSON serializes");

        let (host, addr) = guard(&url, &self.allowed).await?;
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .resolve(&host, addr)
            .build()
            .map_err(|e| ActivityFailure::Config(format!("webhook client: {e}")))?;
        let mut request = client
            .post(&url)
            .header("Content-Type", "application/json")
            .header("User-Agent", "Reflector-Webhook/1.0")
            .header("X-Webhook-Event", "transcript.completed")
            .header(
                "X-Webhook-Retry",
                info.attempt.saturating_sub(1).to_string(),
            );
        if let Some(secret) = room.webhook_secret.as_deref().filter(|s| !s.is_empty()) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            request = request.header(
                "X-Webhook-Signature",
                format!("t={now},v1={}", signature(secret, now, &body)),
            );
        }
        let what = format!("webhook POST {url}");
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| http::transport(&what, e))?;
        let status = response.status();
        if status.is_success() {
            tracing::info!(transcript_id = %tid, event_id = %id, status = status.as_u16(), "webhook delivered");
            return Ok(WebhookOutput {
                action: "delivered".into(),
                event_id: Some(id),
                status: Some(status.as_u16()),
                reason: None,
            });
        }
        let code = status.as_u16();
        if status.is_client_error() && code != 408 && code != 429 {
            // The receiver refuses this delivery; retrying will not change its mind.
            return Err(ActivityFailure::HttpClient(format!(
                "{what}: HTTP {status}: the receiver refused the delivery"
            )));
        }
        Err(http::check(&what, response)
            .await
            .err()
            .unwrap_or_else(|| ActivityFailure::Transient(format!("{what}: HTTP {status}"))))
    }
}

#[activities]
impl WebhookActivities {
    /// Deliver `transcript.completed` to the room's webhook (pipeline.md §4.16).
    #[activity(name = "send_webhook")]
    pub async fn send_webhook(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: WebhookInput,
    ) -> Result<WebhookOutput, ActivityError> {
        let result = self.send(&ctx, &input).await;
        crate::metrics::notification(
            "webhook",
            crate::metrics::notification_outcome(&ctx, &result),
        );
        result.map_err(ActivityFailure::into_activity_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_test_vector_signs() {
        assert_eq!(
            signature("whsec-test", 1_700_000_000, br#"{"event":"test"}"#),
            "195b6c9de2a0e62d7b2da7a167156c291a95ddbd1cffc9c72cd3343cec68a226"
        );
    }

    #[test]
    fn event_ids_are_stable_per_run_and_32_hex() {
        let a = event_id("t1", "run-a");
        assert_eq!(a, event_id("t1", "run-a"));
        assert_ne!(a, event_id("t1", "run-b"));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn the_guard_refuses_loopback_unless_allowed() {
        let e = guard("http://127.0.0.1:9/hook", &[]).await.unwrap_err();
        assert_eq!(e.type_name(), "ConfigError");
        assert!(e.to_string().contains("non-public"), "{e}");
        let (host, addr) = guard("http://127.0.0.1:9/hook", &["127.0.0.1".into()])
            .await
            .unwrap();
        assert_eq!(host, "127.0.0.1");
        assert_eq!(addr.port(), 9);
        assert!(guard("file:///etc/passwd", &[]).await.is_err());
    }
}
