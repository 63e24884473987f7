//! The transcript event log (`transcript_event`): append-only, ordered by `seq` per
//! transcript. WebSockets replay it on connect (docs/contracts/events-and-api.md §2).

use serde_json::Value;

use super::{Db, DbError, now};

/// A stored event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredEvent {
    /// The transcript.
    pub transcript_id: String,
    /// Position in the transcript's log (1, 2, …); 0 for events that are not stored
    /// (`PIPELINE_PROGRESS`).
    pub seq: i64,
    /// `STATUS`, `DURATION`, …
    pub event: String,
    /// The event's `data`.
    pub data: Value,
}

impl StoredEvent {
    /// Reflector's envelope: `{"event": NAME, "data": {...}}`.
    pub fn envelope(&self) -> Value {
        serde_json::json!({"event": self.event, "data": self.data})
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    transcript_id: String,
    seq: i64,
    event: String,
    data: String,
}

impl TryFrom<Row> for StoredEvent {
    type Error = DbError;
    fn try_from(r: Row) -> Result<Self, DbError> {
        let data = serde_json::from_str(&r.data).map_err(|e| DbError::Corrupt {
            what: format!(
                "event {} #{} of transcript {}",
                r.event, r.seq, r.transcript_id
            ),
            message: e.to_string(),
        })?;
        Ok(StoredEvent {
            transcript_id: r.transcript_id,
            seq: r.seq,
            event: r.event,
            data,
        })
    }
}

impl Db {
    /// Append an event to a transcript's log; returns it with its `seq`.
    pub async fn append_event(
        &self,
        transcript_id: &str,
        event: &str,
        data: &Value,
    ) -> Result<StoredEvent, DbError> {
        Ok(self
            .append_event_once(transcript_id, None, event, data)
            .await?
            .expect("an event without an origin is always appended"))
    }

    /// Append an event published by `origin` (an attempt's `{workflow_id}/{run_id}/
    /// {activity_id}#{n}`, the same for every attempt of one activity); `None` when that
    /// origin's event is already in the log (a retried activity publishing again), which is
    /// left as it is.
    pub async fn append_event_once(
        &self,
        transcript_id: &str,
        origin: Option<&str>,
        event: &str,
        data: &Value,
    ) -> Result<Option<StoredEvent>, DbError> {
        if let Some(origin) = origin {
            let seen = crate::on_pool!(self, |pool| sqlx::query_scalar::<_, i64>(
                "SELECT seq FROM transcript_event WHERE transcript_id = $1 AND origin = $2",
            )
            .bind(transcript_id)
            .bind(origin)
            .fetch_optional(pool)
            .await)
            .map_err(DbError::query("append event"))?;
            if seen.is_some() {
                return Ok(None);
            }
        }
        let text = data.to_string();
        // The position comes from the transcript's own counter, so it is never reused, not
        // even after `clear_events`; the row update also serialises concurrent appenders.
        // Counter and row commit together: a worker killed between them, or a racing attempt
        // whose insert meets the unique index (one abandoned by a timeout), gives its
        // position back, so a replay's positions have no holes.
        let appended = crate::on_pool!(self, |pool| async {
            let mut tx = pool.begin().await?;
            let seq = sqlx::query_scalar::<_, i64>(
                "UPDATE transcript SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq",
            )
            .bind(transcript_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(seq) = seq else {
                return Ok(None);
            };
            let inserted = sqlx::query(
                "INSERT INTO transcript_event (transcript_id, seq, event, data, created_at, origin) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(transcript_id)
            .bind(seq)
            .bind(event)
            .bind(&text)
            .bind(now())
            .bind(origin)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok::<_, sqlx::Error>(Some((seq, inserted)))
        }
        .await)
        .map_err(DbError::query("append event"))?;
        let Some((seq, inserted)) = appended else {
            return Err(DbError::NotFound {
                what: "transcript",
                id: transcript_id.to_owned(),
            });
        };
        Ok((inserted == 1).then(|| StoredEvent {
            transcript_id: transcript_id.to_owned(),
            seq,
            event: event.to_owned(),
            data: data.clone(),
        }))
    }

    /// A transcript's events in order, from `after` (exclusive; 0 for all).
    pub async fn events(
        &self,
        transcript_id: &str,
        after: i64,
    ) -> Result<Vec<StoredEvent>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, Row>(
            "SELECT transcript_id, seq, event, data FROM transcript_event \
             WHERE transcript_id = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(transcript_id)
        .bind(after)
        .fetch_all(pool)
        .await)
        .map_err(DbError::query("read events"))?
        .into_iter()
        .map(StoredEvent::try_from)
        .collect()
    }

    /// One event by position.
    pub async fn event(
        &self,
        transcript_id: &str,
        seq: i64,
    ) -> Result<Option<StoredEvent>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, Row>(
            "SELECT transcript_id, seq, event, data FROM transcript_event \
             WHERE transcript_id = $1 AND seq = $2",
        )
        .bind(transcript_id)
        .bind(seq)
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read event"))?
        .map(StoredEvent::try_from)
        .transpose()
    }

    /// Forget a transcript's events (a clean re-run, docs/contracts/pipeline.md §4.2).
    pub async fn clear_events(&self, transcript_id: &str) -> Result<u64, DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "DELETE FROM transcript_event WHERE transcript_id = $1"
        )
        .bind(transcript_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::query("clear events"))
    }
}
