//! Daily's webhook signature (docs/contracts/daily.md §3.1):
//! `base64(HMAC-SHA256(base64_decode(secret), timestamp + "." + raw body))`, compared in constant
//! time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The signature Daily sends for `body` at `timestamp` with the base64 `secret`; `None` when
/// the secret is not base64.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> Option<String> {
    let mac = mac(secret, timestamp, body)?;
    Some(STANDARD.encode(mac.finalize().into_bytes()))
}

/// Whether `signature` is Daily's for `body` at `timestamp`. A missing part or a secret that
/// is not base64 is invalid.
pub fn verify(
    secret: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> bool {
    let (Some(secret), Some(timestamp), Some(signature)) = (secret, timestamp, signature) else {
        return false;
    };
    let (Some(mac), Ok(given)) = (
        mac(secret, timestamp, body),
        STANDARD.decode(signature.trim()),
    ) else {
        return false;
    };
    mac.verify_slice(&given).is_ok()
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Option<Hmac<Sha256>> {
    let key = STANDARD.decode(secret.trim()).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn the_spec_test_vector_signs_and_verifies() {
        let body = br#"{"test":"test"}"#;
        let sig = sign(SECRET, "1700000000", body).unwrap();
        assert_eq!(sig, "CIooXkmu/ZD0bIzD7+syv8JMam2q89pre6sYq+B/N8s=");
        assert!(verify(Some(SECRET), Some("1700000000"), Some(&sig), body));
    }

    #[test]
    fn anything_else_is_refused() {
        let body = br#"{"test":"test"}"#;
        let sig = sign(SECRET, "1700000000", body).unwrap();
        assert!(!verify(Some(SECRET), Some("1700000001"), Some(&sig), body));
        assert!(!verify(Some(SECRET), Some("1700000000"), Some(&sig), b"{}"));
        assert!(!verify(None, Some("1700000000"), Some(&sig), body));
        assert!(!verify(Some(SECRET), None, Some(&sig), body));
        assert!(!verify(Some(SECRET), Some("1700000000"), None, body));
        assert!(!verify(
            Some("not base64!"),
            Some("1700000000"),
            Some(&sig),
            body
        ));
        assert!(!verify(
            Some(SECRET),
            Some("1700000000"),
            Some("garbage"),
            body
        ));
    }
}
