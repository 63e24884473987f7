//! Rooms, meetings, consents and Daily recordings: what intake matches and writes
//! (docs/contracts/daily.md §6) and what the post-processing steps read
//! (docs/contracts/pipeline.md §4.14–§4.16).

use serde::{Deserialize, Serialize};

use super::{Db, DbError, now};

/// A `room` row.
#[derive(Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Room {
    /// Id.
    pub id: String,
    /// Daily room name prefix (unique).
    pub name: String,
    /// Owner.
    pub user_id: Option<String>,
    /// Post finished transcripts to Zulip.
    pub zulip_auto_post: bool,
    /// Zulip stream.
    pub zulip_stream: Option<String>,
    /// Zulip topic.
    pub zulip_topic: Option<String>,
    /// Customer webhook.
    pub webhook_url: Option<String>,
    /// Its HMAC secret.
    pub webhook_secret: Option<String>,
    /// Consent is not asked in this room.
    pub skip_consent: bool,
    /// `daily`.
    pub platform: String,
    /// RFC 3339.
    pub created_at: String,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::redacted::{Redacted, RedactedUrl};
        f.debug_struct("Room")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("user_id", &self.user_id)
            .field("zulip_auto_post", &self.zulip_auto_post)
            .field("zulip_stream", &self.zulip_stream)
            .field("zulip_topic", &self.zulip_topic)
            .field("webhook_url", &RedactedUrl(&self.webhook_url))
            .field("webhook_secret", &Redacted(&self.webhook_secret))
            .field("skip_consent", &self.skip_consent)
            .field("platform", &self.platform)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A `meeting` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Meeting {
    /// Id.
    pub id: String,
    /// The Daily room name (`{room}-{YYYYMMDDHHMMSS}`).
    pub room_name: Option<String>,
    /// Room.
    pub room_id: Option<String>,
    /// RFC 3339.
    pub start_date: Option<String>,
    /// RFC 3339.
    pub end_date: Option<String>,
    /// Calendar event, if any.
    pub calendar_event_id: Option<String>,
}

/// A `recording` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RecordingRow {
    /// Daily's recording id.
    pub id: String,
    /// Daily's bucket.
    pub bucket_name: String,
    /// Folder of the tracks.
    pub object_key: Option<String>,
    /// RFC 3339.
    pub recorded_at: Option<String>,
    /// `pending`, …
    pub status: String,
    /// Matched meeting.
    pub meeting_id: Option<String>,
    /// Every audio key, JSON array text.
    pub track_keys: Option<String>,
}

impl RecordingRow {
    /// `track_keys` parsed (empty when absent or unreadable).
    pub fn keys(&self) -> Vec<String> {
        self.track_keys
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default()
    }
}

/// What a new room holds.
#[derive(Clone, Default)]
pub struct NewRoom {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub user_id: Option<String>,
    /// Zulip stream (auto-post when set).
    pub zulip_stream: Option<String>,
    /// Zulip topic.
    pub zulip_topic: Option<String>,
    /// Customer webhook URL.
    pub webhook_url: Option<String>,
    /// Its secret; generated when a URL is set without one.
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for NewRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::redacted::{Redacted, RedactedUrl};
        f.debug_struct("NewRoom")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("user_id", &self.user_id)
            .field("zulip_stream", &self.zulip_stream)
            .field("zulip_topic", &self.zulip_topic)
            .field("webhook_url", &RedactedUrl(&self.webhook_url))
            .field("webhook_secret", &Redacted(&self.webhook_secret))
            .finish()
    }
}

const ROOM: &str = "id, name, user_id, zulip_auto_post, zulip_stream, zulip_topic, webhook_url, \
    webhook_secret, skip_consent, platform, created_at";
const MEETING: &str = "id, room_name, room_id, start_date, end_date, calendar_event_id";
const RECORDING: &str = "id, bucket_name, object_key, recorded_at, status, meeting_id, track_keys";

impl Db {
    /// Insert a room. A webhook URL without a secret gets one: 32 random bytes, URL-safe
    /// base64 (docs/contracts/pipeline.md §4.16).
    pub async fn create_room(&self, r: &NewRoom) -> Result<Room, DbError> {
        let secret = match (&r.webhook_url, &r.webhook_secret) {
            (Some(_), None) => Some(random_secret()),
            (_, s) => s.clone(),
        };
        crate::on_pool!(self, |pool| sqlx::query(
            "INSERT INTO room (id, name, user_id, zulip_auto_post, zulip_stream, zulip_topic, \
             webhook_url, webhook_secret, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )
        .bind(&r.id)
        .bind(&r.name)
        .bind(&r.user_id)
        .bind(r.zulip_stream.is_some())
        .bind(&r.zulip_stream)
        .bind(&r.zulip_topic)
        .bind(&r.webhook_url)
        .bind(&secret)
        .bind(now())
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("create room"))?;
        self.room(&r.id).await?.ok_or_else(|| DbError::NotFound {
            what: "room",
            id: r.id.clone(),
        })
    }

    /// Point a room's customer webhook at `url` (the secret is kept).
    pub async fn set_room_webhook_url(&self, room_id: &str, url: &str) -> Result<(), DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "UPDATE room SET webhook_url = $1 WHERE id = $2"
        )
        .bind(url)
        .bind(room_id)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("set room webhook"))
    }

    /// A room by id.
    pub async fn room(&self, id: &str) -> Result<Option<Room>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, Room>(&format!(
            "SELECT {ROOM} FROM room WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read room"))
    }

    /// A room by name.
    pub async fn room_by_name(&self, name: &str) -> Result<Option<Room>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, Room>(&format!(
            "SELECT {ROOM} FROM room WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read room"))
    }

    /// Insert a meeting of `room` held in the Daily room `room_name`, starting `start_date`.
    pub async fn create_meeting(
        &self,
        id: &str,
        room: &Room,
        room_name: &str,
        start_date: &str,
    ) -> Result<(), DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "INSERT INTO meeting (id, room_name, room_id, start_date) VALUES ($1, $2, $3, $4)"
        )
        .bind(id)
        .bind(room_name)
        .bind(&room.id)
        .bind(start_date)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("create meeting"))
    }

    /// A meeting by id.
    pub async fn meeting(&self, id: &str) -> Result<Option<Meeting>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, Meeting>(&format!(
            "SELECT {MEETING} FROM meeting WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read meeting"))
    }

    /// Meetings held in the Daily room `room_name`.
    pub async fn meetings_in(&self, room_name: &str) -> Result<Vec<Meeting>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, Meeting>(&format!(
            "SELECT {MEETING} FROM meeting WHERE room_name = $1 ORDER BY id"
        ))
        .bind(room_name)
        .fetch_all(pool)
        .await)
        .map_err(DbError::query("read meetings"))
    }

    /// Record a participant's consent answer for a meeting.
    pub async fn add_consent(
        &self,
        meeting_id: &str,
        user_id: Option<&str>,
        given: bool,
    ) -> Result<(), DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "INSERT INTO meeting_consent (id, meeting_id, user_id, consent_given, consent_timestamp) \
             VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(meeting_id)
        .bind(user_id)
        .bind(given)
        .bind(now())
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("add consent"))
    }

    /// Whether anyone denied consent in `meeting_id` (docs/contracts/pipeline.md §4.14).
    pub async fn consent_denied(&self, meeting_id: &str) -> Result<bool, DbError> {
        let n = crate::on_pool!(self, |pool| {
            sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM meeting_consent WHERE meeting_id = $1 AND consent_given = FALSE"
        )
        .bind(meeting_id)
        .fetch_one(pool)
        .await
        })
        .map_err(DbError::query("read consents"))?;
        Ok(n > 0)
    }

    /// A recording by Daily id.
    pub async fn recording(&self, id: &str) -> Result<Option<RecordingRow>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, RecordingRow>(&format!(
            "SELECT {RECORDING} FROM recording WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read recording"))
    }

    /// Insert the recording unless it exists (`ON CONFLICT DO NOTHING`), then give it
    /// `meeting_id` if it has none (docs/contracts/daily.md §6 step 5). Returns the stored row.
    pub async fn upsert_recording(&self, r: &RecordingRow) -> Result<RecordingRow, DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "INSERT INTO recording (id, bucket_name, object_key, recorded_at, status, meeting_id, \
             track_keys) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING"
        )
        .bind(&r.id)
        .bind(&r.bucket_name)
        .bind(&r.object_key)
        .bind(&r.recorded_at)
        .bind(&r.status)
        .bind(&r.meeting_id)
        .bind(&r.track_keys)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("insert recording"))?;
        if r.meeting_id.is_some() {
            crate::on_pool!(self, |pool| sqlx::query(
                "UPDATE recording SET meeting_id = $1 WHERE id = $2 AND meeting_id IS NULL"
            )
            .bind(&r.meeting_id)
            .bind(&r.id)
            .execute(pool)
            .await
            .map(|_| ()))
            .map_err(DbError::query("update recording"))?;
        }
        self.recording(&r.id)
            .await?
            .ok_or_else(|| DbError::NotFound {
                what: "recording",
                id: r.id.clone(),
            })
    }

    /// The transcript of a Daily recording, if one exists.
    pub async fn transcript_id_of_recording(
        &self,
        recording_id: &str,
    ) -> Result<Option<String>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_scalar::<_, String>(
            "SELECT id FROM transcript WHERE recording_id = $1"
        )
        .bind(recording_id)
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read transcript of recording"))
    }

    /// Store the Zulip message posted for a transcript.
    pub async fn set_zulip_message_id(&self, transcript_id: &str, id: i64) -> Result<(), DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "UPDATE transcript SET zulip_message_id = $1, change_seq = change_seq + 1 WHERE id = $2"
        )
        .bind(id)
        .bind(transcript_id)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("set zulip message id"))
    }

    /// The transcript a pipeline run belongs to.
    pub async fn transcript_of_workflow(
        &self,
        workflow_id: &str,
    ) -> Result<Option<String>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_scalar::<_, String>(
            "SELECT id FROM transcript WHERE workflow_id = $1"
        )
        .bind(workflow_id)
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read transcript of workflow"))
    }

    /// `error` → `processing` (a retried run resumes, docs/contracts/pipeline.md §5); `true` if it
    /// changed.
    pub async fn resume_from_error(&self, transcript_id: &str) -> Result<bool, DbError> {
        let n = crate::on_pool!(self, |pool| sqlx::query(
            "UPDATE transcript SET status = 'processing', error = NULL, \
             change_seq = change_seq + 1 WHERE id = $1 AND status = 'error'"
        )
        .bind(transcript_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::query("resume transcript"))?;
        Ok(n == 1)
    }

    /// Set `error` (why the run failed; `None` clears it).
    pub async fn set_error(&self, transcript_id: &str, error: Option<&str>) -> Result<(), DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "UPDATE transcript SET error = $1, change_seq = change_seq + 1 WHERE id = $2"
        )
        .bind(error)
        .bind(transcript_id)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("set transcript error"))
    }
}

/// 32 random bytes, URL-safe base64 without padding.
fn random_secret() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
