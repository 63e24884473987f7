//! The API's secrets and what is derived from them (docs/security.md, "Secrets"):
//!
//! - `SECRET_KEY` and `REFLOW_API_TOKEN` are refused under [`MIN_SECRET_BYTES`] when the
//!   process starts ([`check_length`]): an HS256 key or a bearer token that short can be
//!   guessed offline from one signed token or online against the API.
//! - `SECRET_KEY` rotates: `SECRET_KEY_PREVIOUS` is accepted for *verifying* users' JWTs and
//!   audio links until `SECRET_KEY_PREVIOUS_UNTIL` (an RFC 3339 date), while everything reflow
//!   signs is signed with `SECRET_KEY` only ([`PreviousKey`]).
//! - The codec's browser session (`/codec/session`) is not the operator token but a value
//!   derived from it ([`codec_session`]): `v1.<expiry>.<HMAC-SHA256 of the expiry>` with a key
//!   that is itself an HMAC of the token, so the cookie neither reveals the token nor outlives
//!   its expiry, and rotating the token ends every session.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The shortest `SECRET_KEY` or `REFLOW_API_TOKEN` accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// What is wrong with the configured secrets (refused at start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A secret shorter than [`MIN_SECRET_BYTES`].
    #[error(
        "{var} is {len} bytes; at least {MIN_SECRET_BYTES} are required \
         (generate one with `openssl rand -hex 32`)"
    )]
    TooShort {
        /// The variable.
        var: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A previous key without the date it stops being accepted.
    #[error(
        "SECRET_KEY_PREVIOUS is set without SECRET_KEY_PREVIOUS_UNTIL: say until when tokens \
         signed with it are accepted (an RFC 3339 date, e.g. 2027-01-31T00:00:00Z)"
    )]
    PreviousWithoutUntil,
    /// A date without a previous key.
    #[error("SECRET_KEY_PREVIOUS_UNTIL is set without SECRET_KEY_PREVIOUS")]
    UntilWithoutPrevious,
    /// A previous key without a current one.
    #[error("SECRET_KEY_PREVIOUS is set without SECRET_KEY (the key that replaces it)")]
    PreviousWithoutCurrent,
    /// The date does not parse.
    #[error(
        "SECRET_KEY_PREVIOUS_UNTIL {0:?} is not an RFC 3339 date \
         (2027-01-31, 2027-01-31T12:00:00Z or 2027-01-31T12:00:00+01:00)"
    )]
    BadUntil(String),
}

/// Refuse `value` of `var` when shorter than [`MIN_SECRET_BYTES`].
pub fn check_length(var: &'static str, value: &str) -> Result<(), KeyError> {
    if value.len() < MIN_SECRET_BYTES {
        return Err(KeyError::TooShort {
            var,
            len: value.len(),
        });
    }
    Ok(())
}

/// The `SECRET_KEY` a rotation replaced, accepted for verification until `until`.
#[derive(Clone, PartialEq, Eq)]
pub struct PreviousKey {
    /// The key.
    pub key: String,
    /// When it stops being accepted.
    pub until: SystemTime,
}

impl std::fmt::Debug for PreviousKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviousKey")
            .field("key", &"<redacted>")
            .field("until", &humantime::format_rfc3339_seconds(self.until))
            .finish()
    }
}

impl PreviousKey {
    /// The key, if it is still accepted now.
    pub fn current(&self) -> Option<&str> {
        (SystemTime::now() < self.until).then_some(self.key.as_str())
    }
}

/// `SECRET_KEY_PREVIOUS_UNTIL`: a date (`2027-01-31`, midnight UTC) or a date-time with `Z` or
/// an offset (`2027-01-31T12:00:00Z`, `2027-01-31T12:00:00+01:00`).
pub fn parse_until(text: &str) -> Result<SystemTime, KeyError> {
    let bad = || KeyError::BadUntil(text.to_owned());
    let t = text.trim();
    if t.len() == 10 {
        return humantime::parse_rfc3339(&format!("{t}T00:00:00Z")).map_err(|_| bad());
    }
    if let Some(local) = t.strip_suffix('Z').or_else(|| t.strip_suffix('z')) {
        return humantime::parse_rfc3339_weak(local).map_err(|_| bad());
    }
    // `…±hh:mm`: the local time, moved by the offset.
    let (local, offset) = t.split_at(t.len().checked_sub(6).ok_or_else(bad)?);
    let (sign, hm) = offset.split_at(1);
    let (h, m) = hm.split_once(':').ok_or_else(bad)?;
    let (h, m): (u64, u64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    let local = humantime::parse_rfc3339_weak(local).map_err(|_| bad())?;
    let shift = Duration::from_secs(h * 3600 + m * 60);
    match sign {
        "+" => local.checked_sub(shift),
        "-" => local.checked_add(shift),
        _ => None,
    }
    .ok_or_else(bad)
}

/// The previous key the variables describe, checked: it needs a current key and a date; a
/// date already past leaves it out.
pub fn previous_key(
    current: Option<&str>,
    previous: Option<&str>,
    until: Option<&str>,
) -> Result<Option<PreviousKey>, KeyError> {
    let (previous, until) = match (previous, until) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(KeyError::PreviousWithoutUntil),
        (None, Some(_)) => return Err(KeyError::UntilWithoutPrevious),
        (Some(p), Some(u)) => (p, parse_until(u)?),
    };
    if current.is_none() {
        return Err(KeyError::PreviousWithoutCurrent);
    }
    if until <= SystemTime::now() {
        return Ok(None);
    }
    Ok(Some(PreviousKey {
        key: previous.to_owned(),
        until,
    }))
}

/// Version tag of [`codec_session`] values.
const SESSION_VERSION: &str = "v1";

fn session_mac(token: &str, expires: u64) -> Hmac<Sha256> {
    // The key of the session MACs: the token's own HMAC over a fixed label, so the cookie's
    // MAC is computed with neither the token nor anything else a request shows.
    let mut derive =
        Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes keys of any length");
    derive.update(b"reflow:codec-session");
    let key = derive.finalize().into_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(format!("{SESSION_VERSION}.{expires}").as_bytes());
    mac
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A codec session for the operator token `token`, valid until `expires`.
pub fn codec_session(token: &str, expires: SystemTime) -> String {
    let expires = epoch(expires);
    let tag = session_mac(token, expires).finalize().into_bytes();
    format!("{SESSION_VERSION}.{expires}.{}", b64().encode(tag))
}

/// Whether `value` is an unexpired codec session made with `token` (constant-time check).
pub fn codec_session_valid(token: &str, value: &str) -> bool {
    let mut parts = value.splitn(3, '.');
    let (Some(SESSION_VERSION), Some(expires), Some(tag)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(expires), Ok(tag)) = (expires.parse::<u64>(), b64().decode(tag)) else {
        return false;
    };
    // The decimal form must be the one that was signed (no `+`, no leading zeros).
    if expires.to_string() != value.split('.').nth(1).unwrap_or_default() {
        return false;
    }
    expires > epoch(SystemTime::now()) && session_mac(token, expires).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused_naming_the_variable_and_the_remedy() {
        let e = check_length("SECRET_KEY", "too-short").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("SECRET_KEY is 9 bytes") && text.contains("openssl rand -hex 32"),
            "{text}"
        );
        assert!(check_length("REFLOW_API_TOKEN", &"a".repeat(32)).is_ok());
    }

    #[test]
    fn until_dates_parse_in_every_rfc3339_form() {
        let base = humantime::parse_rfc3339("2027-01-31T00:00:00Z").unwrap();
        assert_eq!(parse_until("2027-01-31"), Ok(base));
        assert_eq!(parse_until("2027-01-31T00:00:00Z"), Ok(base));
        assert_eq!(parse_until("2027-01-31T01:00:00+01:00"), Ok(base));
        assert_eq!(parse_until("2027-01-30T23:30:00-00:30"), Ok(base));
        for bad in ["soon", "2027-13-01", "2027-01-31T00:00:00+25:00", ""] {
            assert!(parse_until(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_previous_key_needs_its_date_and_a_successor() {
        assert_eq!(previous_key(Some("k"), None, None), Ok(None));
        assert_eq!(
            previous_key(Some("k"), Some("old"), None),
            Err(KeyError::PreviousWithoutUntil)
        );
        assert_eq!(
            previous_key(Some("k"), None, Some("2099-01-01")),
            Err(KeyError::UntilWithoutPrevious)
        );
        assert_eq!(
            previous_key(None, Some("old"), Some("2099-01-01")),
            Err(KeyError::PreviousWithoutCurrent)
        );
        assert_eq!(
            previous_key(Some("k"), Some("old"), Some("2001-01-01")),
            Ok(None),
            "expired"
        );
        let p = previous_key(Some("k"), Some("old"), Some("2099-01-01"))
            .unwrap()
            .unwrap();
        assert_eq!(p.current(), Some("old"));
        assert!(!format!("{p:?}").contains("old"));
    }

    #[test]
    fn codec_sessions_verify_with_their_token_until_they_expire() {
        let token = "t".repeat(40);
        let later = SystemTime::now() + Duration::from_secs(60);
        let s = codec_session(&token, later);
        assert!(codec_session_valid(&token, &s));
        assert!(!s.contains(&token));
        assert!(!codec_session_valid(&"u".repeat(40), &s), "another token");
        let past = codec_session(&token, SystemTime::now() - Duration::from_secs(1));
        assert!(!codec_session_valid(&token, &past), "expired");
        // Another expiry with the same tag.
        let tag = s.rsplit('.').next().unwrap();
        let forged = format!("v1.{}.{tag}", epoch(later) + 3600);
        assert!(!codec_session_valid(&token, &forged));
        let padded = format!("v1.0{}.{tag}", epoch(later));
        assert!(!codec_session_valid(&token, &padded));
        assert!(!codec_session_valid(&token, &token), "the raw token");
    }
}
