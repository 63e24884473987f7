//! Shadow transcripts (migration 0014): what a shadow run writes beside a recording's live
//! transcript. A shadow row has `shadow_of` set to the live transcript's id, no owner, no
//! recording id (the recording's is unique to its live transcript), `private` sharing, and the
//! live one's room and meeting (so `reflow compare --room` finds it). No user route lists or
//! returns it.

use super::transcripts::{NewTranscript, Transcript};
use super::{Db, DbError};

/// Transcript columns a step's events stand for ([`Db::adopt_columns`]): what a shadow takes
/// from the live transcript when it reuses the step that wrote them there.
pub const ADOPTABLE: [&str; 5] = [
    "title",
    "short_summary",
    "long_summary",
    "action_items",
    "duration",
];

impl Db {
    /// The shadow transcript of live transcript `live`, if it has one.
    pub async fn shadow_of(&self, live: &str) -> Result<Option<Transcript>, DbError> {
        let id: Option<String> = crate::on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT id FROM transcript WHERE shadow_of = $1 ORDER BY created_at LIMIT 1"
        )
        .bind(live)
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read shadow transcript"))?;
        match id {
            Some(id) => self.find_transcript(&id).await,
            None => Ok(None),
        }
    }

    /// The shadow transcript of `live`: the one it has, else a new one (idempotent).
    pub async fn create_shadow(&self, live: &Transcript) -> Result<Transcript, DbError> {
        if let Some(t) = self.shadow_of(&live.id).await? {
            return Ok(t);
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.create_transcript(&NewTranscript {
            id: id.clone(),
            user_id: None,
            room_id: live.room_id.clone(),
            meeting_id: live.meeting_id.clone(),
            recording_id: None,
            share_mode: Some("private".into()),
            source_language: live.source_language.clone(),
        })
        .await?;
        crate::on_pool!(self, |pool| sqlx::query(
            "UPDATE transcript SET shadow_of = $1, change_seq = change_seq + 1 WHERE id = $2"
        )
        .bind(&live.id)
        .bind(&id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::query("mark shadow transcript"))?;
        self.transcript(&id).await
    }

    /// Every (live, shadow) pair whose shadow was created at or after `since` (RFC 3339), of
    /// room `room` (by name) when given, oldest first.
    pub async fn shadow_pairs(
        &self,
        since: &str,
        room: Option<&str>,
    ) -> Result<Vec<(Transcript, Transcript)>, DbError> {
        let rows: Vec<(String, String)> = crate::on_pool!(self, |pool| sqlx::query_as(
            "SELECT shadow_of, id FROM transcript WHERE shadow_of IS NOT NULL \
             AND created_at >= $1 AND ($2 IS NULL OR room_id IN \
             (SELECT id FROM room WHERE name = $2)) ORDER BY created_at, id"
        )
        .bind(since)
        .bind(room)
        .fetch_all(pool)
        .await)
        .map_err(DbError::query("list shadow transcripts"))?;
        let mut out = Vec::with_capacity(rows.len());
        for (live, shadow) in rows {
            out.push((
                self.transcript(&live).await?,
                self.transcript(&shadow).await?,
            ));
        }
        Ok(out)
    }

    /// Copy `columns` (among [`ADOPTABLE`]; others are ignored) of transcript `from` onto
    /// transcript `to`.
    pub async fn adopt_columns(
        &self,
        to: &str,
        from: &str,
        columns: &[&str],
    ) -> Result<(), DbError> {
        for c in columns.iter().filter(|c| ADOPTABLE.contains(c)) {
            crate::on_pool!(self, |pool| sqlx::query(&format!(
                "UPDATE transcript SET {c} = (SELECT {c} FROM transcript WHERE id = $1), \
                 change_seq = change_seq + 1 WHERE id = $2"
            ))
            .bind(from)
            .bind(to)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
            .map_err(DbError::query("adopt transcript column"))?;
        }
        Ok(())
    }
}
