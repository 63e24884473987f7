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
        let topic = topic_name(room.zulip_topic.as_deref().unwrap_or(&room.name));
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
            .map_err(|e| {
                ActivityFailure::ResponseShape(format!("{what}: {}", http::describe(e)))
            })?;
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

/// An invisible character (U+200B ZERO WIDTH SPACE) that breaks Zulip's markdown syntax where
/// it is inserted and changes nothing a reader sees.
const BREAK: char = '\u{200B}';

/// `text` (a meeting's summary: what its participants said, rephrased by a model) made inert
/// as Zulip markdown, so that speech cannot steer the bot's message:
///
/// - mentions (`@**all**`, `@**Name**`, `@_**Name**`, `@*group*`, old-style `@all`) and
///   stream links (`#**stream**`) are broken by an invisible character after the `@` / `#`;
/// - links `[text](target)` (and reference links `[text][ref]`) likewise between `]` and
///   `(` / `[`, so the target shows as text;
/// - a line that would open or close a fence (```` ``` ````, `~~~`, after any indentation)
///   starts with the invisible character, so it can neither close the spoiler it is quoted in
///   nor open a block of its own.
///
/// Everything else (emphasis, lists, plain URLs, which show their target) is left as written.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let bare = line.trim_start_matches([' ', '\t']);
        if bare.starts_with("```") || bare.starts_with("~~~") {
            out.push(BREAK);
        }
        let mut prev: Option<char> = None;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            out.push(c);
            let next = chars.peek().copied();
            let breaks = match c {
                // Zulip reads a mention only after the start, a space or punctuation; an `@`
                // after a letter or digit (an email address) is left alone.
                '@' => !prev.is_some_and(char::is_alphanumeric),
                '#' => next == Some('*'),
                ']' => matches!(next, Some('(' | '[')),
                _ => false,
            };
            if breaks {
                out.push(BREAK);
            }
            prev = Some(c);
        }
    }
    out
}

/// A one-line field (a title, a topic's title, the Zulip topic itself): line breaks and other
/// control characters become spaces (a title must not start lines of markdown of its own),
/// then [`escape_markdown`].
pub fn escape_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    escape_markdown(flat.trim())
}

/// A fence that `content` cannot close: one backtick longer than its longest run of backticks
/// (at least three).
pub fn fence_for(content: &str) -> String {
    let longest = content.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat((longest + 1).max(3))
}

/// The Zulip topic a message is posted under: a plain-text field (no markdown is rendered in
/// it), so only control characters are replaced, by spaces.
pub fn topic_name(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The message of §4.15. Everything that comes from the meeting (the title, the topics'
/// titles, the summary) is escaped ([`escape_line`], [`escape_markdown`]) and each spoiler's
/// fence is longer than any backtick run it holds ([`fence_for`]).
pub fn message(t: &Transcript, ui_base_url: &str) -> Result<String, ActivityFailure> {
    let title = t
        .title
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map_or_else(|| "Unnamed recording".to_owned(), escape_line);
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
        .map_or_else(|| "No summary available".to_owned(), escape_markdown);
    let fence = fence_for(&summary);
    out.push_str(&format!("{fence}spoiler Summary\n{summary}\n{fence}\n\n"));
    let list: String = topics
        .iter()
        .enumerate()
        .map(|(n, topic)| {
            format!(
                "{}. [{}] {}\n",
                n + 1,
                clock(topic.timestamp),
                escape_line(&topic.title)
            )
        })
        .collect();
    let fence = fence_for(&list);
    out.push_str(&format!("{fence}spoiler Topics\n{list}{fence}\n\n-----\n"));
    Ok(out)
}

/// `post_zulip`, declared (`crate::step`).
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    use crate::step::{Declare as _, Step};
    catalog.declare(ZulipActivities::post_zulip, Step::FREE.notifying())
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
    use super::*;

    /// How Zulip's server reads fences (`zerver/lib/markdown/fenced_code.py`): a line matching
    /// `^(`{3,}|~{3,})` opens a block (inside a spoiler too), and a block closes at the line
    /// that equals its own fence. The blocks of `message` in order: (fence, header, lines).
    fn zulip_blocks(message: &str) -> Vec<(String, String, Vec<String>)> {
        let opens = |l: &str| {
            let run = |ch: char| l.chars().take_while(|c| *c == ch).count();
            let n = run('`').max(run('~'));
            (n >= 3).then(|| (l[..n].to_owned(), l[n..].trim().to_owned()))
        };
        let mut out = Vec::new();
        let mut stack: Vec<(String, String, Vec<String>)> = Vec::new();
        for line in message.lines() {
            if let Some(top) = stack.last_mut() {
                if line.trim_end() == top.0 {
                    let done = stack.pop().unwrap();
                    out.push(done);
                    continue;
                }
                top.2.push(line.to_owned());
            }
            if let Some((fence, header)) = opens(line) {
                stack.push((fence, header, Vec::new()));
            }
        }
        assert!(stack.is_empty(), "an unclosed block: {stack:?}");
        out
    }

    /// Whether Zulip would read a mention in `text`: `@`, optional `_`, then `*`, after the
    /// start, a space or punctuation (`zerver/lib/mention.py`), or an old-style `@all`.
    fn live_mention(text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        chars.iter().enumerate().any(|(i, c)| {
            let after_ok = i == 0 || !chars[i - 1].is_alphanumeric();
            let rest: String = chars[i + 1..].iter().take(12).collect();
            *c == '@'
                && after_ok
                && (rest.starts_with('*')
                    || rest.starts_with("_*")
                    || ["all", "everyone", "stream", "channel", "topic"]
                        .iter()
                        .any(|w| rest.starts_with(w)))
        })
    }

    fn hostile() -> Transcript {
        let topics = serde_json::json!([
            {"id": "1", "title": "Plan ```spoiler\n@**everyone**", "summary": "", "timestamp": 3.0},
            {"id": "2", "title": "[x][y] and [z](javascript:alert(1))", "summary": "", "timestamp": 63.0}
        ]);
        serde_json::from_value(serde_json::json!({
            "id": "t-1", "name": "", "status": "ended", "locked": false,
            "created_at": "2026-01-10T04:21:17Z", "topics": topics.to_string(),
            "participants": "[]", "reviewed": false, "audio_location": "storage",
            "audio_deleted": false, "share_mode": "public", "source_kind": "room",
            "change_seq": 1,
            "title": "Budget @**all** review\n```\n@_**Ben** [click](https://evil.example)",
            "long_summary": "We agreed.\n```\n@**all** see [the form](https://evil.example/login) \
                 and #**general>secret** or @*admins* or @all\n````\n~~~\nmail ana@example.com",
        }))
        .unwrap()
    }

    #[test]
    fn meeting_text_cannot_mention_link_or_close_a_fence() {
        let m = message(&hostile(), "https://reflector.example").unwrap();
        assert!(!live_mention(&m), "{m}");
        // Our own link is the only one.
        let ours = m.replace(
            "[reflector.example](https://reflector.example/transcripts/t-1)",
            "",
        );
        assert!(!ours.contains("]("), "{m}");
        assert!(!m.contains("]["), "{m}");
        assert!(!m.contains("#**"), "{m}");
        let blocks = zulip_blocks(&m);
        assert_eq!(blocks.len(), 2, "exactly the two spoilers: {blocks:#?}");
        assert_eq!(blocks[0].1, "spoiler Summary");
        assert_eq!(
            blocks[0].2.len(),
            6,
            "every summary line inside: {:#?}",
            blocks[0]
        );
        assert_eq!(blocks[1].1, "spoiler Topics");
        assert_eq!(blocks[1].2.len(), 2, "{:#?}", blocks[1]);
        // The title stays on the heading's line.
        assert!(m.lines().next().unwrap().contains("Budget"), "{m}");
        assert!(m.lines().nth(1).unwrap().is_empty(), "{m}");
        // What a reader sees is the text as said (the break is invisible).
        let seen = m.replace(BREAK, "");
        assert!(
            seen.contains("@**all** see [the form](https://evil.example/login)"),
            "{seen}"
        );
        assert!(
            seen.contains("mail ana@example.com"),
            "an email is untouched: {seen}"
        );
        assert!(m.contains("mail ana@example.com"), "{m}");
    }

    #[test]
    fn escapers_break_only_what_zulip_would_read_as_syntax() {
        assert_eq!(escape_markdown("@**all**"), "@\u{200B}**all**");
        assert_eq!(escape_markdown("(@_**Ben**)"), "(@\u{200B}_**Ben**)");
        assert_eq!(escape_markdown("a@b.c"), "a@b.c");
        assert_eq!(escape_markdown("[a](b)"), "[a]\u{200B}(b)");
        assert_eq!(escape_markdown("#**s>t**"), "#\u{200B}**s>t**");
        assert_eq!(escape_markdown("x\n  ```\ny"), "x\n\u{200B}  ```\ny");
        assert_eq!(escape_markdown("~~~~"), "\u{200B}~~~~");
        assert_eq!(escape_markdown("plain *bold* text"), "plain *bold* text");
        assert_eq!(escape_line("a\r\nb\tc"), "a  b c");
        assert_eq!(fence_for("no ticks"), "```");
        assert_eq!(fence_for("a ```` b"), "`````");
        assert_eq!(topic_name("room\n@**all**"), "room @**all**");
    }

    #[test]
    fn durations_read_as_clock_times() {
        assert_eq!(clock(0.0), "0:00");
        assert_eq!(clock(65.9), "1:05");
        assert_eq!(clock(3599.0), "59:59");
        assert_eq!(clock(3600.0), "1:00:00");
        assert_eq!(clock(1834.0), "30:34");
    }
}
