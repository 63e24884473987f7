//! Who is calling (docs/contracts/events-and-api.md §5.1): a user with a JWT (HS256, `sub` = user
//! id, `exp`, signed with `SECRET_KEY`), the operator (`REFLOW_API_TOKEN`), or anonymous. With
//! neither secret configured (embedded/dev mode) everything is open. Public transcripts are
//! readable by anyone; others by their owner or the operator. Shareable audio links carry
//! `?token=`, a JWT whose `sub` is the transcript id and whose `aud` is [`AUDIO_LINK_AUDIENCE`]:
//! such a token opens that transcript's audio and nothing else (as a bearer token it is refused),
//! and a user's token (no such audience) is never taken for an audio link. Runs (the Conductor
//! routes) are the operator's and the owner's: see [`ApiState::run_access`].
//!
//! Tokens are verified with `SECRET_KEY`, and with the key it replaced while that is still
//! accepted (`SECRET_KEY_PREVIOUS` until `SECRET_KEY_PREVIOUS_UNTIL`, [`super::keys`]); reflow
//! signs with `SECRET_KEY` only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use activities::db::transcripts::Transcript;
use axum::http::{HeaderMap, StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};

/// The audience of a shareable audio link's token.
pub const AUDIO_LINK_AUDIENCE: &str = "reflow:audio-link";

/// The claims reflow reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id (or, for audio links, the transcript id).
    pub sub: String,
    /// Expiry, epoch seconds.
    pub exp: u64,
    /// Audience: [`AUDIO_LINK_AUDIENCE`] for audio links, absent (or an identity provider's
    /// own) for users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

/// `aud`: one string or a list (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(all) => all.iter().any(|a| a == aud),
        }
    }
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

fn encode(secret: &str, sub: &str, ttl: Duration, aud: Option<&str>) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| (d + ttl).as_secs());
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Claims {
            sub: sub.to_owned(),
            exp,
            aud: aud.map(|a| Audience::One(a.to_owned())),
        },
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

/// A user's JWT for `sub` valid for `ttl`, signed with `secret` (HS256).
pub fn sign(secret: &str, sub: &str, ttl: Duration) -> String {
    encode(secret, sub, ttl, None)
}

/// A shareable audio link's token for transcript `transcript_id`, valid for `ttl`.
pub fn sign_audio_link(secret: &str, transcript_id: &str, ttl: Duration) -> String {
    encode(secret, transcript_id, ttl, Some(AUDIO_LINK_AUDIENCE))
}

/// The claims of a valid, unexpired HS256 JWT signed with `secret` (audience not checked).
fn claims(secret: &str, token: &str) -> Option<Claims> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    // Checked by the callers: a user's token must not carry the link audience, a link must.
    validation.validate_aud = false;
    jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .ok()
    .map(|d| d.claims)
}

/// The claims of a valid, unexpired user JWT signed with `secret` (audio links refused).
pub fn user_claims(secret: &str, token: &str) -> Option<Claims> {
    claims(secret, token).filter(|c| {
        !c.aud
            .as_ref()
            .is_some_and(|a| a.contains(AUDIO_LINK_AUDIENCE))
    })
}

/// The user id of a valid, unexpired user JWT signed with `secret` (audio links refused).
pub fn subject(secret: &str, token: &str) -> Option<String> {
    user_claims(secret, token).map(|c| c.sub)
}

/// The transcript id of a valid, unexpired audio link token signed with `secret`.
pub fn audio_link_subject(secret: &str, token: &str) -> Option<String> {
    claims(secret, token)
        .filter(|c| {
            c.aud
                .as_ref()
                .is_some_and(|a| a.contains(AUDIO_LINK_AUDIENCE))
        })
        .map(|c| c.sub)
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

    /// The keys tokens are verified with: `SECRET_KEY`, then the previous key while it is
    /// accepted.
    pub fn verification_keys(&self) -> impl Iterator<Item = &str> {
        self.secret_key.as_deref().into_iter().chain(
            self.secret_key_previous
                .as_ref()
                .and_then(super::keys::PreviousKey::current),
        )
    }

    /// The claims of `token` if it is a valid user JWT under any [`Self::verification_keys`].
    pub fn user_token(&self, token: &str) -> Option<Claims> {
        self.verification_keys().find_map(|k| user_claims(k, token))
    }

    /// The bearer token of a request's `Authorization` header.
    pub fn bearer(headers: &HeaderMap) -> Option<&str> {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
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
        match self.user_token(token) {
            Some(claims) => Ok(Caller::User(claims.sub)),
            None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "Invalid token")),
        }
    }

    /// Who the request's `Authorization: Bearer` is (an invalid token is a 401).
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        self.caller_of(Self::bearer(headers))
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
        self.verification_keys()
            .find_map(|k| audio_link_subject(k, token))
            .is_some_and(|sub| sub == id)
    }

    /// Whether `caller` may see run `workflow_id` (the Conductor routes): the operator (and
    /// everyone in open mode) any run; a user the runs of transcripts they own. Anonymous
    /// callers are told to authenticate (401); a user asking for another's run is told it does
    /// not exist (404), like a private transcript, so that ids cannot be probed.
    pub async fn run_access(&self, caller: &Caller, workflow_id: &str) -> Result<(), ApiError> {
        match caller {
            Caller::Open | Caller::Operator => Ok(()),
            Caller::Anonymous => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication required",
            )),
            Caller::User(u) => {
                let owned = self
                    .events
                    .db()
                    .transcript_of_run(workflow_id)
                    .await?
                    .filter(|t| t.deleted_at.is_none())
                    .is_some_and(|t| t.user_id.as_deref() == Some(u.as_str()));
                if owned {
                    Ok(())
                } else {
                    Err(ApiError::not_found(format!(
                        "No such workflow found by id: {workflow_id}"
                    )))
                }
            }
        }
    }

    /// Whether `caller` sees failure texts in full (the operator, and everyone in open mode);
    /// everyone else gets them redacted ([`super::redact`]).
    pub fn sees_full_failures(caller: &Caller) -> bool {
        matches!(caller, Caller::Open | Caller::Operator)
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
                aud: None,
            },
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert_eq!(subject("s3cret", &expired), None);
    }

    #[test]
    fn audio_links_and_user_tokens_are_not_interchangeable() {
        let hour = Duration::from_secs(3600);
        let link = sign_audio_link("s3cret", "t-1", hour);
        assert_eq!(subject("s3cret", &link), None, "a link is no user token");
        assert_eq!(audio_link_subject("s3cret", &link).as_deref(), Some("t-1"));
        let user = sign("s3cret", "t-1", hour);
        assert_eq!(
            audio_link_subject("s3cret", &user),
            None,
            "a user token is no link"
        );
        assert_eq!(subject("s3cret", &user).as_deref(), Some("t-1"));
    }
}
