//! `send_webhook` (docs/contracts/pipeline.md §4.16): `transcript.completed` to the room's customer
//! URL, signed `t={unix},v1={hex HMAC-SHA256(secret, "{t}." + body)}`, with an `event_id` that is
//! the same on every attempt, retry and reset of a run.
//!
//! The SSRF guard resolves the URL's host and refuses loopback, private, link-local and
//! other non-public addresses (every IANA special-purpose range, and IPv6 prefixes that embed
//! one) unless the host is listed in `REFLOW_WEBHOOK_ALLOWED_PRIVATE_HOSTS`; the request is
//! then pinned to the checked address, so a DNS answer cannot change between the check and the
//! connection. Redirects are never followed (a 3xx is a refused delivery: a public host must
//! not bounce the request to an internal one), proxy variables are ignored, and failure texts
//! name the URL without its query or credentials and never carry the receiver's body.

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
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// The transcript.
    pub transcript_id: String,
}

/// Output of `send_webhook`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
/// unspecified, "this network", carrier-grade NAT, IETF protocol assignments, documentation,
/// benchmarking (198.18.0.0/15), reserved (240.0.0.0/4), broadcast and multicast; for IPv6 the
/// same plus unique-local, site-local, discard-only, documentation, and every prefix that
/// embeds an IPv4 address (mapped, compatible, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4
/// 2002::/16, Teredo 2001::/32), which is judged by the address it embeds or refused.
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
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded = || {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d))
            };
            // IPv4-compatible (::a.b.c.d, deprecated; :: and ::1 are themselves refused):
            // judged by the embedded address.
            if s[..6] == [0; 6] {
                return (s[6] == 0 && s[7] <= 1) || is_private(embedded());
            }
            // NAT64: the well-known prefix 64:ff9b::/96 by the embedded address; the local-use
            // prefix 64:ff9b:1::/48 translates to anything, so it is refused.
            if s[0] == 0x64 && s[1] == 0xff9b {
                return s[2] != 0 || s[3] != 0 || s[4] != 0 || s[5] != 0 || is_private(embedded());
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || (s[0] == 0x100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
                || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
                || s[0] == 0x2002 // 6to4: embeds an IPv4 address
                || (s[0] == 0x2001 && s[1] < 0x200) // IETF protocol assignments, Teredo
        }
    }
}

/// `url` as failure texts may show it ([`http::display_url`]: no credentials, query or
/// fragment; a customer URL's query often carries its token).
pub fn display_url(url: &str) -> String {
    http::display_url(url)
}

/// Hosts allowed to resolve to private addresses (`REFLOW_WEBHOOK_ALLOWED_PRIVATE_HOSTS`,
/// comma-separated host names or IPs).
pub fn allowed_private_hosts(vars: crate::config::Vars<'_>) -> Vec<String> {
    vars("REFLOW_WEBHOOK_ALLOWED_PRIVATE_HOSTS")
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// Resolve `url`'s host and check it against the guard; the address to connect to.
pub async fn guard(url: &str, allowed: &[String]) -> Result<(String, SocketAddr), ActivityFailure> {
    let shown = display_url(url);
    let refuse = |why: String| ActivityFailure::Config(format!("webhook URL {shown}: {why}"));
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
        .map_err(|e| ActivityFailure::Transient(format!("webhook URL {shown}: resolve: {e}")))?
        .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| ActivityFailure::Transient(format!("webhook URL {shown}: no address")))?;
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
    ui_base_url: String,
}

impl WebhookActivities {
    /// Deliver for transcripts read through `events`, allowing `allowed` private hosts; links
    /// point under `ui_base_url` (the transcript page).
    pub fn new(events: Events, allowed: Vec<String>, ui_base_url: String) -> Self {
        WebhookActivities {
            events,
            allowed,
            ui_base_url,
        }
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
                action: workflow::progress::SKIPPED_ACTION.into(),
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
        let base = &self.ui_base_url;
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
            // The guard checked this host only: a redirect would reach an unchecked one.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would connect on our behalf, past the pinning.
            .no_proxy()
            .build()
            .map_err(|e| {
                ActivityFailure::Config(format!("webhook client: {}", http::describe(e)))
            })?;
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
        let what = format!("webhook POST {}", display_url(&url));
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
        // The receiver's body is never quoted: a failure text is shown to the room's viewers,
        // and an answer from an unexpected host must not travel back through it.
        let code = status.as_u16();
        if status.is_redirection() {
            return Err(ActivityFailure::HttpClient(format!(
                "{what}: HTTP {status}: redirects are not followed; configure the final URL"
            )));
        }
        if status.is_client_error() && code != 408 && code != 429 {
            // The receiver refuses this delivery; retrying will not change its mind.
            return Err(ActivityFailure::HttpClient(format!(
                "{what}: HTTP {status}: the receiver refused the delivery"
            )));
        }
        if code == 429 {
            return Err(ActivityFailure::RateLimited {
                message: format!("{what}: HTTP {status}"),
                retry_after: http::retry_after(&response),
            });
        }
        Err(ActivityFailure::Transient(format!("{what}: HTTP {status}")))
    }
}

/// `send_webhook`, declared (`crate::step`).
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    use crate::step::{Declare as _, Step};
    catalog.declare(WebhookActivities::send_webhook, Step::FREE.notifying())
}

#[activities]
impl WebhookActivities {
    /// Deliver `transcript.completed` to the room's webhook (docs/contracts/pipeline.md §4.16).
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
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::808:808",
            "::127.0.0.1",
            "::10.0.0.1",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378::1",
            "ff02::1",
            "fec0::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "::8.8.8.8",
        ] {
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

    #[test]
    fn failure_texts_show_urls_without_their_secrets() {
        assert_eq!(
            display_url("https://user:pw@hooks.example.com:8443/in?token=s3cret#frag"),
            "https://hooks.example.com:8443/in"
        );
        assert_eq!(display_url("not a url"), "<unparsable URL>");
    }
}
