//! The Daily REST calls reflow makes (docs/contracts/daily.md §7): one recording, the recordings
//! list, a meeting's participants (paginated by `joined_after` until an empty page or a 404) and a
//! webhook's state. Bearer `DAILY_API_KEY`, client timeout 10 s; failures map to the error
//! classes of docs/contracts/pipeline.md §6.3 (4xx non-retryable, 5xx/timeouts retryable, a 2xx
//! without the fields read a `ResponseShapeError`).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ActivityFailure;
use crate::http;

/// Daily's API base when `DAILY_API_URL` is unset.
pub const DEFAULT_API_URL: &str = "https://api.daily.co/v1";
/// Client timeout of every Daily call (docs/contracts/daily.md §7).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Participants fetched per page.
pub const PAGE: usize = 100;

/// Daily configuration (`DAILY_*`).
#[derive(Clone, Default)]
pub struct DailyConfig {
    /// `DAILY_API_KEY`; without it nothing can be processed (`ConfigError`).
    pub api_key: Option<String>,
    /// `DAILY_API_URL`, no trailing slash.
    pub api_url: String,
    /// `DAILY_WEBHOOK_SECRET` (base64).
    pub webhook_secret: Option<String>,
    /// `DAILY_WEBHOOK_UUID`.
    pub webhook_uuid: Option<String>,
}

impl std::fmt::Debug for DailyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::redacted::Redacted;
        f.debug_struct("DailyConfig")
            .field("api_key", &Redacted(&self.api_key))
            .field("api_url", &self.api_url)
            .field("webhook_secret", &Redacted(&self.webhook_secret))
            .field("webhook_uuid", &self.webhook_uuid)
            .finish()
    }
}

impl DailyConfig {
    /// From the settings (docs/contracts/daily.md §1).
    pub fn from_vars(vars: crate::config::Vars<'_>) -> Self {
        let var = |k: &str| crate::config::non_empty(vars, k);
        DailyConfig {
            api_key: var("DAILY_API_KEY"),
            api_url: var("DAILY_API_URL")
                .unwrap_or_else(|| DEFAULT_API_URL.to_owned())
                .trim_end_matches('/')
                .to_owned(),
            webhook_secret: var("DAILY_WEBHOOK_SECRET"),
            webhook_uuid: var("DAILY_WEBHOOK_UUID"),
        }
    }
}

/// A Daily track of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// `audio` or `video`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Key in the Daily bucket.
    #[serde(rename = "s3Key")]
    pub s3_key: String,
    /// Bytes.
    #[serde(default)]
    pub size: Option<u64>,
}

/// A recording as `GET /recordings/{id}` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// Daily's recording id.
    pub id: String,
    /// `{room}-{YYYYMMDDHHMMSS}`.
    pub room_name: String,
    /// Epoch seconds.
    pub start_ts: i64,
    /// `finished`, `in-progress`, …
    #[serde(default)]
    pub status: Option<String>,
    /// Seconds; null while Daily is still processing.
    #[serde(default)]
    pub duration: Option<f64>,
    /// The meeting session (may be absent).
    #[serde(default, rename = "mtgSessionId")]
    pub mtg_session_id: Option<String>,
    /// Raw tracks (empty for cloud recordings).
    #[serde(default)]
    pub tracks: Vec<Track>,
    /// A cloud recording's single file.
    #[serde(default)]
    pub s3key: Option<String>,
}

impl Recording {
    /// Keys of the audio tracks, in Daily's order.
    pub fn audio_keys(&self) -> Vec<String> {
        self.tracks
            .iter()
            .filter(|t| t.kind == "audio")
            .map(|t| t.s3_key.clone())
            .collect()
    }
}

/// A page of `GET /recordings`.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordingPage {
    /// Recordings in the account.
    #[serde(default)]
    pub total_count: Option<u64>,
    /// Newest first.
    pub data: Vec<Recording>,
}

/// One participant of a meeting session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyParticipant {
    /// The id in track keys.
    pub participant_id: String,
    /// The app's user id, if the token carried one.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Display name.
    #[serde(default)]
    pub user_name: Option<String>,
    /// Epoch seconds.
    #[serde(default)]
    pub join_time: Option<f64>,
    /// Seconds present.
    #[serde(default)]
    pub duration: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct ParticipantPage {
    data: Vec<DailyParticipant>,
}

/// `GET /webhooks/{uuid}`: the fields the breaker watch reads.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookState {
    /// `ACTIVE` or `FAILED`.
    pub state: String,
    /// Consecutive failed deliveries.
    #[serde(default, rename = "failedCount")]
    pub failed_count: u64,
}

/// A Daily REST client.
#[derive(Debug, Clone)]
pub struct DailyClient {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl DailyClient {
    /// A client for `config`; `ConfigError` without an API key.
    pub fn new(config: &DailyConfig) -> Result<DailyClient, ActivityFailure> {
        let key = config.api_key.clone().ok_or_else(|| {
            ActivityFailure::Config("DAILY_API_KEY is not set: Daily cannot be reached".into())
        })?;
        Ok(DailyClient {
            base: config.api_url.clone(),
            key,
            http: http::client(TIMEOUT),
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ActivityFailure> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .query(query)
            .send()
            .await
            .map_err(|e| http::transport(what, e))?;
        let response = http::check(what, response).await?;
        let body = response
            .bytes()
            .await
            .map_err(|e| http::transport(what, e))?;
        serde_json::from_slice(&body).map_err(|e| {
            ActivityFailure::ResponseShape(format!("{what}: {}", http::shape_error(&e)))
        })
    }

    /// `GET /recordings/{id}`.
    pub async fn recording(&self, id: &str) -> Result<Recording, ActivityFailure> {
        self.get(
            &format!("Daily GET /recordings/{id}"),
            &format!("/recordings/{id}"),
            &[],
        )
        .await
    }

    /// `GET /recordings?limit=…[&starting_after=…]` (newest first).
    pub async fn recordings(
        &self,
        limit: usize,
        starting_after: Option<&str>,
    ) -> Result<RecordingPage, ActivityFailure> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(after) = starting_after {
            query.push(("starting_after", after.to_owned()));
        }
        self.get("Daily GET /recordings", "/recordings", &query)
            .await
    }

    /// Every participant of a meeting session: pages of [`PAGE`] by `joined_after` until a
    /// page is empty or the API answers 404 (which means "no more").
    pub async fn participants(
        &self,
        mtg_session_id: &str,
    ) -> Result<Vec<DailyParticipant>, ActivityFailure> {
        let path = format!("/meetings/{mtg_session_id}/participants");
        let what = format!("Daily GET {path}");
        let mut all: Vec<DailyParticipant> = Vec::new();
        loop {
            let mut query = vec![("limit", PAGE.to_string())];
            if let Some(last) = all.last() {
                query.push(("joined_after", last.participant_id.clone()));
            }
            let page: ParticipantPage = match self.get(&what, &path, &query).await {
                Ok(p) => p,
                Err(ActivityFailure::NotFound(_)) => break,
                Err(e) => return Err(e),
            };
            let n = page.data.len();
            all.extend(page.data);
            if n == 0 {
                break;
            }
        }
        Ok(all)
    }

    /// `GET /webhooks/{uuid}`.
    pub async fn webhook(&self, uuid: &str) -> Result<WebhookState, ActivityFailure> {
        self.get(
            &format!("Daily GET /webhooks/{uuid}"),
            &format!("/webhooks/{uuid}"),
            &[],
        )
        .await
    }
}
