//! The Daily webhook (`POST /v1/daily/webhook`): what the handler runs on a body, from the
//! signature check to the recording intake would start.
//!
//! Input: the `X-Webhook-Timestamp` header's value, a newline, then the raw body (no newline:
//! all body, no header). On it: Daily's signature made with a test secret verifies and that
//! secret's signature of another timestamp does not, the timestamp window check, the body read
//! as an event ([`reflow::http::daily::read_event`]) and a ready-to-download payload read as a
//! recording ([`reflow::http::daily::ready_recording`]), whose track keys and room name go
//! through what intake parses (track keys, the folder timestamp).

#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use activities::daily::TrackKey;
use activities::daily::signature;
use libfuzzer_sys::fuzz_target;
use reflow::http::daily;
use serde_json::Value;

/// A base64 secret, as `DAILY_WEBHOOK_SECRET` holds.
const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fuzz_target!(|data: &[u8]| {
    let (timestamp, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (String::from_utf8_lossy(&data[..i]), &data[i + 1..]),
        None => (Default::default(), data),
    };

    // The signature: Daily's verifies, one over another timestamp does not.
    let signed = signature::sign(SECRET, &timestamp, body).expect("the secret is base64");
    assert!(signature::verify(
        Some(SECRET),
        Some(&timestamp),
        Some(&signed),
        body
    ));
    let other = signature::sign(SECRET, &format!("{timestamp}0"), body).expect("base64");
    assert!(!signature::verify(
        Some(SECRET),
        Some(&timestamp),
        Some(&other),
        body
    ));
    // Header values as sent: the body's text where the signature or secret should be.
    let text = String::from_utf8_lossy(body);
    let _ = signature::verify(Some(&text), Some(&timestamp), Some(&text), body);

    // The replay window, at a fixed clock.
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    if let Err(e) = daily::check_timestamp(&timestamp, Duration::from_secs(24 * 3600), now) {
        let _ = e.to_string();
    }

    // Daily's unsigned test ping.
    let _ = serde_json::from_slice::<Value>(body);

    let (kind, payload) = match daily::read_event(body) {
        Ok(event) => event,
        Err(detail) => {
            assert!(matches!(detail, "Invalid JSON" | "Invalid event format"));
            return;
        }
    };
    assert!(payload.is_object());
    let _ = kind;
    // Every kind's payload, not only `recording.ready-to-download`'s (the others are logged).
    let Ok(Some(d)) = daily::ready_recording(&payload) else {
        return;
    };
    for key in &d.track_keys {
        if let Some(t) = TrackKey::parse(key) {
            let offset = t.offset_s();
            assert!(offset.is_finite() && offset >= 0.0);
        }
        if let Some(at) = reflow::intake::recorded_at(key) {
            assert_eq!(at.len(), 20);
        }
    }
    // What intake computes from the payload before any query (worker/src/intake.rs: the room
    // prefix, and the recording's start as a time to match meetings against).
    let _room_prefix = d
        .room_name
        .rsplit_once('-')
        .map_or(d.room_name.as_str(), |(r, _)| r);
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(d.start_ts.max(0) as u64);
    let _ = at.duration_since(now).or_else(|_| now.duration_since(at));
    let _ = reflow::intake::workflow_id(&d.recording_id);
});
