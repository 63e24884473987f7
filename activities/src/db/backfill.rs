//! The meetings a backfill re-runs (`reflow backfill`): transcripts with a recording made in a
//! time window, optionally in one room, in `(recorded_at, transcript id)` order, a page at a
//! time after a cursor.

use serde::{Deserialize, Serialize};

use super::{Db, DbError};

/// One selected meeting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct BackfillMeeting {
    /// Its transcript.
    pub transcript_id: String,
    /// Its recording.
    pub recording_id: String,
    /// When it was recorded (RFC 3339).
    pub recorded_at: String,
    /// Its room's name, if it has a room.
    pub room: Option<String>,
    /// The transcript's status.
    pub status: String,
}

/// Which meetings (RFC 3339 bounds; `room` is a room's name or id).
#[derive(Debug, Clone, Default)]
pub struct Window<'a> {
    /// Recorded at or after.
    pub since: &'a str,
    /// Recorded before.
    pub until: &'a str,
    /// Only this room.
    pub room: Option<&'a str>,
    /// After this `(recorded_at, transcript id)`.
    pub after: Option<(&'a str, &'a str)>,
}

impl Db {
    /// Up to `limit` meetings of `w`, in order (deleted transcripts and recordings left out).
    pub async fn backfill_meetings(
        &self,
        w: &Window<'_>,
        limit: u32,
    ) -> Result<Vec<BackfillMeeting>, DbError> {
        let (after_at, after_id) = w.after.unwrap_or(("", ""));
        crate::on_pool!(self, |pool| sqlx::query_as::<_, BackfillMeeting>(
            "SELECT t.id AS transcript_id, r.id AS recording_id, r.recorded_at AS recorded_at, \
             room.name AS room, t.status AS status \
             FROM transcript t JOIN recording r ON r.id = t.recording_id \
             LEFT JOIN room ON room.id = t.room_id \
             WHERE t.deleted_at IS NULL AND r.deleted_at IS NULL AND r.recorded_at IS NOT NULL \
             AND r.recorded_at >= $1 AND r.recorded_at < $2 \
             AND ($3 = '' OR room.name = $3 OR t.room_id = $3) \
             AND (r.recorded_at > $4 OR (r.recorded_at = $4 AND t.id > $5)) \
             ORDER BY r.recorded_at, t.id LIMIT $6"
        )
        .bind(w.since)
        .bind(w.until)
        .bind(w.room.unwrap_or(""))
        .bind(after_at)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)
        .map_err(DbError::query("read the meetings of a backfill"))
    }

    /// How many meetings `w` selects (its cursor ignored).
    pub async fn backfill_count(&self, w: &Window<'_>) -> Result<u64, DbError> {
        let n: i64 = crate::on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM transcript t JOIN recording r ON r.id = t.recording_id \
             LEFT JOIN room ON room.id = t.room_id \
             WHERE t.deleted_at IS NULL AND r.deleted_at IS NULL AND r.recorded_at IS NOT NULL \
             AND r.recorded_at >= $1 AND r.recorded_at < $2 \
             AND ($3 = '' OR room.name = $3 OR t.room_id = $3)"
        )
        .bind(w.since)
        .bind(w.until)
        .bind(w.room.unwrap_or(""))
        .fetch_one(pool)
        .await)
        .map_err(DbError::query("count the meetings of a backfill"))?;
        Ok(n.max(0) as u64)
    }
}
