//! `post_zulip` (docs/contracts/pipeline.md §4.15): the finished transcript as a Zulip message,
//! created once and updated in place on re-runs (by the stored `zulip_message_id`).
//!
//! Runs only when `ZULIP_REALM` is set and the room auto-posts to a stream; otherwise it
//! returns `skipped` with the reason. Basic auth `(ZULIP_BOT_EMAIL, ZULIP_API_KEY)`, HTTP
//! timeout 30 s, TLS verified. `ZULIP_REALM` is a host (`https://{realm}`) or, for local
//! receivers, a full base URL.

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::db::transcripts::Transcript;
use crate::error::ActivityFailure;
use crate::events::Events;
use crate::http;
use crate::transcript::Topic;

/// HTTP timeout of Zulip calls (§6.1).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Zulip configuration (`ZULIP_*`, `UI_BASE_URL`).
#[derive(Clone, Default)]
pub struct ZulipConfig {
    /// `ZULIP_REALM`: a host, or a base URL.
    pub realm: Option<String>,
    /// `ZULIP_BOT_EMAIL`.
    pub bot_email: String,
    /// `ZULIP_API_KEY`.
    pub api_key: String,
    /// `UI_BASE_URL`: where transcripts are viewed.
    pub ui_base_url: String,
}

impl std::fmt::Debug for ZulipConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZulipConfig")
            .field("realm", &self.realm)
            .field("bot_email", &self.bot_email)
            .field("api_key", &crate::redacted::RedactedStr(&self.api_key))
            .field("ui_base_url", &self.ui_base_url)
            .finish()
    }
}

impl ZulipConfig {
    /// From the settings.
    pub fn from_vars(vars: crate::config::Vars<'_>) -> Self {
        let var = |k: &str| crate::config::non_empty(vars, k);
        ZulipConfig {
            realm: var("ZULIP_REALM"),
            bot_email: var("ZULIP_BOT_EMAIL").unwrap_or_default(),
            api_key: var("ZULIP_API_KEY").unwrap_or_default(),
            ui_base_url: ui_base_url(vars),
        }
    }

    fn api(&self, realm: &str) -> String {
        if realm.contains("://") {
            format!("{}/api/v1", realm.trim_end_matches('/'))
        } else {
            format!("https://{realm}/api/v1")
        }
    }
}

/// `UI_BASE_URL` without a trailing slash (default `http://localhost:8080`, reflow's own page).
pub fn ui_base_url(vars: crate::config::Vars<'_>) -> String {
    crate::config::non_empty(vars, "UI_BASE_URL")
        .unwrap_or_else(|| "http://localhost:8080".into())
        .trim_end_matches('/')
        .to_owned()
}

/// Input of `post_zulip`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZulipInput {
    /// The transcript.
    pub transcript_id: String,
}

/// Output of `post_zulip`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ZulipOutput {
    /// `created`, `updated` or `skipped`.
    pub action: String,
    /// The message, when one was posted.
    pub message_id: Option<i64>,
    /// Why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ZulipReply {
    #[serde(default)]
    id: Option<i64>,
}

/// Zulip activities.
pub struct ZulipActivities {
    config: ZulipConfig,
    events: Events,
}

impl ZulipActivities {
    /// Post as `config` says, reading transcripts through `events`.
    pub fn new(config: ZulipConfig, events: Events) -> Self {
        ZulipActivities { config, events }
    }

    async fn post(&self, input: &ZulipInput) -> Result<ZulipOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let db = self.events.db();
        let t = db.transcript(tid).await?;
        let skipped = |reason: &str| {
            Ok(ZulipOutput {
                action: workflow::progress::SKIPPED_ACTION.into(),
                message_id: None,
                reason: Some(reason.into()),
            })
        };
        let Some(realm) = &self.config.realm else {
            return skipped("ZULIP_REALM is not set");
        };
        let room = match &t.room_id {
            Some(r) => db.room(r).await?,
            None => None,
        };
        let Some(room) = room else {
            return skipped("the transcript has no room");
        };
        let (true, Some(stream)) = (room.zulip_auto_post, room.zulip_stream.clone()) else {
            return skipped("the room does not post to Zulip");
        };
        let topic = room
            .zulip_topic
            .clone()
            .unwrap_or_else(|| room.name.clone());
        let content = message(&t, &self.config.ui_base_url)?;
        let client = http::client(TIMEOUT);
        let api = self.config.api(realm);
        let auth = |r: reqwest::RequestBuilder| {
            r.basic_auth(&self.config.bot_email, Some(&self.config.api_key))
        };
        if let Some(id) = t.zulip_message_id {
            let what = format!("Zulip PATCH /messages/{id}");
            let response = auth(client.patch(format!("{api}/messages/{id}")))
                .form(&[("topic", topic.as_str()), ("content", content.as_str())])
                .send()
                .await
                .map_err(|e| http::transport(&what, e))?;
            match http::check(&what, response).await {
                Ok(_) => {
                    return Ok(ZulipOutput {
                        action: "updated".into(),
                        message_id: Some(id),
                        reason: None,
                    });
                }
                // The message is gone (400 "Invalid message(s)"): post a new one.
                Err(ActivityFailure::HttpClient(m) | ActivityFailure::NotFound(m)) => {
                    tracing::warn!(transcript_id = %tid, error = %m, "Zulip message not updatable; posting a new one");
                }
                Err(e) => return Err(e),
            }
        }
        let what = "Zulip POST /messages";
        let response = auth(client.post(format!("{api}/messages")))
            .form(&[
                ("type", "stream"),
                ("to", stream.as_str()),
                ("topic", topic.as_str()),
                ("content", content.as_str()),
            ])
            .send()
            .await
            .map_err(|e| http::transport(what, e))?;
        let reply: ZulipReply = http::check(what, response)
            .await?
            .json()
            .await
            .map_err(|e| ActivityFailure::ResponseShape(format!("{what}: {e}")))?;
        let id = reply
            .id
            .ok_or_else(|| ActivityFailure::ResponseShape(format!("{what}: no message id")))?;
        db.set_zulip_message_id(tid, id).await?;
        Ok(ZulipOutput {
            action: "created".into(),
            message_id: Some(id),
            reason: None,
        })
    }
}

/// `m:ss`, or `h:mm:ss` from one hour.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).floor() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The message of §4.15.
pub fn message(t: &Transcript, ui_base_url: &str) -> Result<String, ActivityFailure> {
    let title = t
        .title
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or("Unnamed recording");
    let host = url::Url::parse(ui_base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| ui_base_url.to_owned());
    let topics: Vec<Topic> = serde_json::from_str(&t.topics)
        .map_err(|e| ActivityFailure::InvalidInput(format!("transcript {} topics: {e}", t.id)))?;
    let mut out = format!(
        "# Reflector – {title}\n\n**Date**: <time:{}>\n**Link**: [{host}]({ui_base_url}/transcripts/{})\n**Duration**: {}\n\n",
        t.created_at,
        t.id,
        clock(t.duration.unwrap_or(0.0) / 1000.0)
    );
    let summary = t
        .long_summary
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or("No summary available");
    out.push_str(&format!("```spoiler Summary\n{summary}\n```\n\n"));
    out.push_str("```spoiler Topics\n");
    for (n, topic) in topics.iter().enumerate() {
        out.push_str(&format!(
            "{}. [{}] {}\n",
            n + 1,
            clock(topic.timestamp),
            topic.title
        ));
    }
    out.push_str("```\n\n-----\n");
    Ok(out)
}

/// `post_zulip`, declared (`crate::step`).
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    use crate::step::{Declare as _, Step};
    catalog.declare(ZulipActivities::post_zulip, Step::FREE)
}

#[activities]
impl ZulipActivities {
    /// Post or update the transcript's Zulip message (docs/contracts/pipeline.md §4.15).
    #[activity(name = "post_zulip")]
    pub async fn post_zulip(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ZulipInput,
    ) -> Result<ZulipOutput, ActivityError> {
        let result = self.post(&input).await;
        crate::metrics::notification("zulip", crate::metrics::notification_outcome(&ctx, &result));
        result.map_err(ActivityFailure::into_activity_error)
    }
}

#[cfg(test)]
mod tests {
    use super::clock;

    #[test]
    fn durations_read_as_clock_times() {
        assert_eq!(clock(0.0), "0:00");
        assert_eq!(clock(65.9), "1:05");
        assert_eq!(clock(3599.0), "59:59");
        assert_eq!(clock(3600.0), "1:00:00");
        assert_eq!(clock(1834.0), "30:34");
    }
}
