//! Which transcripts must lose their memoized results (deleted, or a participant of their
//! meeting denied consent) and have not yet: what the memo sweep works through
//! (`reflow::memo_sweep`), and its record of what it did (`memo_purge`).

use super::{Db, DbError, now};

impl Db {
    /// Up to `limit` transcripts that are deleted or whose meeting has a consent denial and
    /// whose memos were not purged yet, oldest id first.
    pub async fn unpurged(&self, limit: i64) -> Result<Vec<String>, DbError> {
        crate::on_pool!(self, |pool| {
            sqlx::query_scalar::<_, String>(
                "SELECT t.id FROM transcript t \
                 WHERE (t.deleted_at IS NOT NULL OR EXISTS (SELECT 1 FROM meeting_consent c \
                        WHERE c.meeting_id = t.meeting_id AND c.consent_given = FALSE)) \
                   AND NOT EXISTS (SELECT 1 FROM memo_purge p WHERE p.transcript_id = t.id) \
                 ORDER BY t.id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
        })
        .map_err(DbError::query("read transcripts to purge"))
    }

    /// Record that `transcript_id`'s memos were purged (again is a no-op).
    pub async fn set_purged(&self, transcript_id: &str) -> Result<(), DbError> {
        crate::on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO memo_purge (transcript_id, purged_at) VALUES ($1, $2) \
                 ON CONFLICT (transcript_id) DO NOTHING",
            )
            .bind(transcript_id)
            .bind(now())
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(DbError::query("record a memo purge"))
    }
}
