//! Transcript rows: what the pipeline reads and updates, and what the REST API serves.
//!
//! Every update bumps `change_seq`. Status changes follow docs/contracts/pipeline.md §5: `error` is
//! never set after `ended`, and a resumed run moves `error` back to `processing`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Db, DbError, now};

/// Transcript statuses (the enum Reflector stores).
pub const STATUSES: [&str; 6] = [
    "idle",
    "uploaded",
    "recording",
    "processing",
    "error",
    "ended",
];

/// A `transcript` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Transcript {
    /// uuid4 text.
    pub id: String,
    /// Free name.
    pub name: String,
    /// One of [`STATUSES`].
    pub status: String,
    /// Locked transcripts are not reprocessed.
    pub locked: bool,
    /// Milliseconds.
    pub duration: Option<f64>,
    /// RFC 3339.
    pub created_at: String,
    /// Generated title.
    pub title: Option<String>,
    /// Recap.
    pub short_summary: Option<String>,
    /// Long summary (Markdown).
    pub long_summary: Option<String>,
    /// `{decisions, next_steps}` as JSON text.
    pub action_items: Option<String>,
    /// Topics as JSON text.
    pub topics: String,
    /// Participants as JSON text.
    pub participants: String,
    /// WebVTT of all topics.
    pub webvtt: Option<String>,
    /// Spoken language (`None`: detect).
    pub source_language: Option<String>,
    /// Target language.
    pub target_language: Option<String>,
    /// Reviewed by a person.
    pub reviewed: bool,
    /// `local` or `storage`.
    pub audio_location: String,
    /// Audio deleted for privacy.
    pub audio_deleted: bool,
    /// Owner.
    pub user_id: Option<String>,
    /// `private`, `semi-private` or `public`.
    pub share_mode: String,
    /// Meeting.
    pub meeting_id: Option<String>,
    /// Daily recording id.
    pub recording_id: Option<String>,
    /// Room.
    pub room_id: Option<String>,
    /// `room`, `live` or `file`.
    pub source_kind: String,
    /// Zulip message posted for it.
    pub zulip_message_id: Option<i64>,
    /// Soft deletion time.
    pub deleted_at: Option<String>,
    /// Bumped on every update.
    pub change_seq: i64,
    /// Temporal workflow id of its pipeline.
    pub workflow_id: Option<String>,
    /// Temporal run id.
    pub workflow_run_id: Option<String>,
    /// Why the last run failed.
    pub error: Option<String>,
    /// The live transcript this one shadows (a shadow run's; never shown to users).
    #[serde(default)]
    pub shadow_of: Option<String>,
}

impl Transcript {
    /// The topics column parsed.
    pub fn topics_json(&self) -> Result<Value, DbError> {
        parse(&self.id, "topics", &self.topics)
    }

    /// The participants column parsed.
    pub fn participants_json(&self) -> Result<Value, DbError> {
        parse(&self.id, "participants", &self.participants)
    }
}

fn parse(id: &str, column: &str, text: &str) -> Result<Value, DbError> {
    serde_json::from_str(text).map_err(|e| DbError::Corrupt {
        what: format!("transcript {id} {column}"),
        message: e.to_string(),
    })
}

/// What a new transcript starts with.
#[derive(Debug, Clone, Default)]
pub struct NewTranscript {
    /// Its id (the caller picks: a uuid4).
    pub id: String,
    /// Owner.
    pub user_id: Option<String>,
    /// Room.
    pub room_id: Option<String>,
    /// Meeting.
    pub meeting_id: Option<String>,
    /// Daily recording.
    pub recording_id: Option<String>,
    /// `private` when `None`.
    pub share_mode: Option<String>,
    /// `en` when `None`.
    pub source_language: Option<String>,
}

const COLUMNS: &str = "id, name, status, locked, duration, created_at, title, short_summary, \
    long_summary, action_items, topics, participants, webvtt, source_language, target_language, \
    reviewed, audio_location, audio_deleted, user_id, share_mode, meeting_id, recording_id, \
    room_id, source_kind, zulip_message_id, deleted_at, change_seq, workflow_id, \
    workflow_run_id, error, shadow_of";

impl Db {
    /// Insert a transcript in status `idle`.
    pub async fn create_transcript(&self, t: &NewTranscript) -> Result<Transcript, DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "INSERT INTO transcript (id, created_at, user_id, room_id, meeting_id, recording_id, \
             share_mode, source_language) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&t.id)
        .bind(now())
        .bind(&t.user_id)
        .bind(&t.room_id)
        .bind(&t.meeting_id)
        .bind(&t.recording_id)
        .bind(t.share_mode.clone().unwrap_or_else(|| "private".into()))
        .bind(t.source_language.clone().unwrap_or_else(|| "en".into()))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::query("create transcript"))?;
        self.transcript(&t.id).await
    }

    /// A transcript by id (soft-deleted ones included).
    pub async fn find_transcript(&self, id: &str) -> Result<Option<Transcript>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, Transcript>(&format!(
            "SELECT {COLUMNS} FROM transcript WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read transcript"))
    }

    /// The transcript a run belongs to: the one whose `workflow_id` is `workflow_id`, or, for a
    /// track child (`{parent}-track-{i}`), its parent's.
    pub async fn transcript_of_run(
        &self,
        workflow_id: &str,
    ) -> Result<Option<Transcript>, DbError> {
        let parent = workflow_id
            .rsplit_once("-track-")
            .filter(|(_, i)| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
            .map(|(p, _)| p);
        for id in std::iter::once(workflow_id).chain(parent) {
            let found = crate::on_pool!(self, |pool| {
                sqlx::query_as::<_, Transcript>(&format!(
                "SELECT {COLUMNS} FROM transcript WHERE workflow_id = $1 ORDER BY created_at DESC"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await
            })
            .map_err(DbError::query("read transcript by workflow"))?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// A room's name.
    pub async fn room_name(&self, room_id: &str) -> Result<Option<String>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_scalar::<_, String>(
            "SELECT name FROM room WHERE id = $1"
        )
        .bind(room_id)
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read room"))
    }

    /// A transcript that must exist.
    pub async fn transcript(&self, id: &str) -> Result<Transcript, DbError> {
        self.find_transcript(id)
            .await?
            .ok_or_else(|| DbError::NotFound {
                what: "transcript",
                id: id.to_owned(),
            })
    }

    /// Set the status; `true` if it changed. `error` is never set on an `ended` transcript.
    pub async fn set_transcript_status(&self, id: &str, status: &str) -> Result<bool, DbError> {
        if !STATUSES.contains(&status) {
            return Err(DbError::Corrupt {
                what: format!("transcript {id} status"),
                message: format!("{status:?} is not one of {STATUSES:?}"),
            });
        }
        let guard = if status == "error" {
            " AND status <> 'ended'"
        } else {
            ""
        };
        let done = crate::on_pool!(self, |pool| sqlx::query(&format!(
            "UPDATE transcript SET status = $1, change_seq = change_seq + 1 \
             WHERE id = $2 AND status <> $1{guard}"
        ))
        .bind(status)
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::query("set transcript status"))?;
        if done == 0 {
            // Unchanged, or unknown: tell the two apart.
            self.transcript(id).await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Set `duration` (ms) unless one is already set; `true` if it was set now.
    pub async fn set_duration_if_unset(&self, id: &str, ms: f64) -> Result<bool, DbError> {
        let done = crate::on_pool!(self, |pool| sqlx::query(
            "UPDATE transcript SET duration = $1, change_seq = change_seq + 1 \
             WHERE id = $2 AND duration IS NULL",
        )
        .bind(ms)
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::query("set transcript duration"))?;
        if done == 0 {
            self.transcript(id).await?;
        }
        Ok(done == 1)
    }

    /// Set `duration` (ms), replacing any value (Daily's duration is the master).
    pub async fn set_duration(&self, id: &str, ms: f64) -> Result<(), DbError> {
        self.update_one(id, "set transcript duration", "duration = $2", ms)
            .await
    }

    /// Set `audio_location` (`local` or `storage`).
    pub async fn set_audio_location(&self, id: &str, location: &str) -> Result<(), DbError> {
        self.update_one(
            id,
            "set audio location",
            "audio_location = $1",
            location.to_owned(),
        )
        .await
    }

    /// Replace the topics, and the WebVTT rebuilt from them (docs/contracts/events-and-api.md §6).
    pub async fn set_topics(
        &self,
        id: &str,
        topics: &[crate::transcript::Topic],
    ) -> Result<(), DbError> {
        let json = serde_json::to_string(topics).expect("topics serialize");
        let vtt = crate::transcript::stored_webvtt(topics);
        let done = crate::on_pool!(self, |pool| sqlx::query(
            "UPDATE transcript SET topics = $1, webvtt = $2, change_seq = change_seq + 1 WHERE id = $3"
        )
        .bind(&json)
        .bind(&vtt)
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::query("set topics"))?;
        if done == 0 {
            return Err(DbError::NotFound {
                what: "transcript",
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    /// Replace the participants.
    pub async fn set_participants(
        &self,
        id: &str,
        participants: &[crate::transcript::Participant],
    ) -> Result<(), DbError> {
        let json = serde_json::to_string(participants).expect("participants serialize");
        self.update_one(id, "set participants", "participants = $1", json)
            .await
    }

    /// Mark the audio deleted (consent cleanup) or not.
    pub async fn set_audio_deleted(&self, id: &str, deleted: bool) -> Result<(), DbError> {
        let done = crate::on_pool!(self, |pool| {
            sqlx::query(
            "UPDATE transcript SET audio_deleted = $1, change_seq = change_seq + 1 WHERE id = $2"
        )
        .bind(deleted)
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })
        .map_err(DbError::query("set audio_deleted"))?;
        if done == 0 {
            return Err(DbError::NotFound {
                what: "transcript",
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    /// Soft-delete a transcript (`deleted_at` = now), as Reflector does: every route then
    /// answers 404, its sockets close, intake starts nothing more for its recording. Whether it
    /// was not deleted before.
    pub async fn delete_transcript(&self, id: &str) -> Result<bool, DbError> {
        let done = crate::on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE transcript SET deleted_at = $1, change_seq = change_seq + 1 \
                 WHERE id = $2 AND deleted_at IS NULL",
            )
            .bind(now())
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(DbError::query("delete transcript"))?;
        Ok(done > 0)
    }

    /// Set the share mode (`private`, `semi-private`, `public`).
    pub async fn set_share_mode(&self, id: &str, mode: &str) -> Result<(), DbError> {
        self.update_one(id, "set share mode", "share_mode = $1", mode.to_owned())
            .await
    }

    /// Save a generated title unless one is already set (user edits win,
    /// docs/contracts/pipeline.md §4.8); returns the title now stored.
    pub async fn set_title_if_empty(&self, id: &str, title: &str) -> Result<String, DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "UPDATE transcript SET title = $1, change_seq = change_seq + 1 \
             WHERE id = $2 AND (title IS NULL OR title = '')"
        )
        .bind(title)
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("set title"))?;
        Ok(self.transcript(id).await?.title.unwrap_or_default())
    }

    /// Save the recap and the long summary (docs/contracts/pipeline.md §4.11).
    pub async fn set_summaries(&self, id: &str, short: &str, long: &str) -> Result<(), DbError> {
        self.update_one(
            id,
            "set short summary",
            "short_summary = $1",
            short.to_owned(),
        )
        .await?;
        self.update_one(id, "set long summary", "long_summary = $1", long.to_owned())
            .await
    }

    /// Save the action items (`{decisions, next_steps}`, docs/contracts/pipeline.md §4.12).
    pub async fn set_action_items(&self, id: &str, items: &Value) -> Result<(), DbError> {
        self.update_one(
            id,
            "set action items",
            "action_items = $1",
            items.to_string(),
        )
        .await
    }

    /// Record the Temporal execution processing the transcript.
    pub async fn set_workflow(
        &self,
        id: &str,
        workflow_id: &str,
        run_id: &str,
    ) -> Result<(), DbError> {
        let done = crate::on_pool!(self, |pool| sqlx::query(
            "UPDATE transcript SET workflow_id = $1, workflow_run_id = $2, \
             change_seq = change_seq + 1 WHERE id = $3",
        )
        .bind(workflow_id)
        .bind(run_id)
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::query("set transcript workflow"))?;
        if done == 0 {
            return Err(DbError::NotFound {
                what: "transcript",
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    async fn update_one(
        &self,
        id: &str,
        what: &'static str,
        set: &str,
        value: impl Into<Bind>,
    ) -> Result<(), DbError> {
        let value = value.into();
        let done = crate::on_pool!(self, |pool| sqlx::query(&format!(
            "UPDATE transcript SET {set}, change_seq = change_seq + 1 WHERE id = $3"
        ))
        .bind(value.text())
        .bind(value.number())
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::query(what))?;
        if done == 0 {
            return Err(DbError::NotFound {
                what: "transcript",
                id: id.to_owned(),
            });
        }
        Ok(())
    }
}

/// A value for [`Db::update_one`]: text binds `$1`, numbers bind `$2`.
enum Bind {
    Text(String),
    Number(f64),
}

impl Bind {
    fn text(&self) -> Option<String> {
        match self {
            Bind::Text(t) => Some(t.clone()),
            Bind::Number(_) => None,
        }
    }
    fn number(&self) -> Option<f64> {
        match self {
            Bind::Number(n) => Some(*n),
            Bind::Text(_) => None,
        }
    }
}

impl From<String> for Bind {
    fn from(t: String) -> Self {
        Bind::Text(t)
    }
}

impl From<f64> for Bind {
    fn from(n: f64) -> Self {
        Bind::Number(n)
    }
}
