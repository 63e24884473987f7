//! Who is calling (events-and-api.md §5.1): a user with a JWT (HS256, `sub` = user id, `exp`,
//! signed with `SECRET_KEY`), the operator (`REFLOW_API_TOKEN`), or anonymous. With neither
//! secret configured (embedded/dev mode) everything is open. Public transcripts are readable by
//! anyone; others by their owner or the operator. Shareable audio links carry `?token=`, a JWT
//! whose `sub` is the transcript id.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use activities::db::transcripts::Transcript;
use axum::http::{HeaderMap, StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};

/// The claims reflow reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id (or, for audio links, the transcript id).
    pub sub: String,
    /// Expiry, epoch seconds.
    pub exp: u64,
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No secret configured: everything is open.
    Open,
    /// The operator token.
    Operator,
    /// A user, by id.
    User(String),
    /// No credentials.
    Anonymous,
}

/// A JWT for `sub` valid for `ttl`, signed with `secret` (HS256).
pub fn sign(secret: &str, sub: &str, ttl: Duration) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| (d + ttl).as_secs());
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Claims {
            sub: sub.to_owned(),
            exp,
        },
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

/// The `sub` of a valid, unexpired HS256 JWT signed with `secret`.
pub fn subject(secret: &str, token: &str) -> Option<String> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .ok()
    .map(|d| d.claims.sub)
}

fn eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl ApiState {
    /// Whether any credential is configured.
    pub fn auth_configured(&self) -> bool {
        self.api_token.is_some() || self.secret_key.is_some()
    }

    /// Who a bearer `token` is.
    pub fn caller_of(&self, token: Option<&str>) -> Result<Caller, ApiError> {
        if !self.auth_configured() {
            return Ok(Caller::Open);
        }
        let Some(token) = token else {
            return Ok(Caller::Anonymous);
        };
        if self.api_token.as_deref().is_some_and(|t| eq(t, token)) {
            return Ok(Caller::Operator);
        }
        match self.secret_key.as_deref().and_then(|k| subject(k, token)) {
            Some(user) => Ok(Caller::User(user)),
            None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "Invalid token")),
        }
    }

    /// Who the request's `Authorization: Bearer` is (an invalid token is a 401).
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        self.caller_of(token)
    }

    /// Whether `caller` may read `t`: public ones, their owner's, everything for the operator.
    pub fn may_read(&self, caller: &Caller, t: &Transcript) -> bool {
        match caller {
            Caller::Open | Caller::Operator => true,
            _ if t.share_mode == "public" => true,
            Caller::User(u) => t.user_id.as_deref() == Some(u.as_str()),
            Caller::Anonymous => false,
        }
    }

    /// Whether `caller` may change `t` (reprocess it): its owner or the operator.
    pub fn may_write(&self, caller: &Caller, t: &Transcript) -> bool {
        match caller {
            Caller::Open | Caller::Operator => true,
            Caller::User(u) => t.user_id.as_deref() == Some(u.as_str()),
            Caller::Anonymous => false,
        }
    }

    /// Whether `token` is a shareable audio link for transcript `id`.
    pub fn audio_link_ok(&self, token: &str, id: &str) -> bool {
        self.secret_key
            .as_deref()
            .and_then(|k| subject(k, token))
            .is_some_and(|sub| sub == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_secret_and_before_expiry() {
        let t = sign("s3cret", "u-7", Duration::from_secs(60));
        assert_eq!(subject("s3cret", &t).as_deref(), Some("u-7"));
        assert_eq!(subject("other", &t), None);
        assert_eq!(subject("s3cret", "not.a.jwt"), None);
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "u-7".into(),
                exp: 1_000,
            },
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert_eq!(subject("s3cret", &expired), None);
    }
}
