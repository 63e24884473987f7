//! `run_backlog` (migration 0010): runs owed to transcripts, not started yet (issue 37 item 5).
//!
//! Intake writes a row before it asks Temporal for a run and deletes it once Temporal has the
//! run; a `process` request that could not reach Temporal writes one too. The worker's backlog
//! loop (`reflow::backlog`) starts what is left, oldest first, claiming each row for a while so
//! that several replicas can run the loop without starting one request twice.

use super::{Db, DbError, now};

/// [`OwedRun::kind`] of a recording's first run (Daily intake: webhook, poll, manual).
pub const INTAKE: &str = "intake";
/// [`OwedRun::kind`] of `POST /v1/transcripts/{id}/process`.
pub const PROCESS: &str = "process";

/// A `run_backlog` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OwedRun {
    /// The transcript owed a run.
    pub transcript_id: String,
    /// [`INTAKE`] or [`PROCESS`].
    pub kind: String,
    /// `process` with `force`.
    pub forced: bool,
    /// What a `process` request asked for besides `force` (JSON text written and read by the
    /// worker; migration 0013); `None` for intake rows and a plain `process`.
    pub options: Option<String>,
    /// When it was asked for (RFC 3339): the backlog's order.
    pub requested_at: String,
    /// Attempts that failed.
    pub attempts: i64,
    /// The last failure.
    pub last_error: Option<String>,
    /// When the next attempt is due (RFC 3339).
    pub next_attempt_at: String,
}

const COLUMNS: &str =
    "transcript_id, kind, forced, options, requested_at, attempts, last_error, next_attempt_at";

impl Db {
    /// Record that `transcript_id` is owed a run of `kind`, due now, unless one is owed already
    /// (the first request keeps its place and its kind); whether a row was written.
    pub async fn owe_run(
        &self,
        transcript_id: &str,
        kind: &str,
        forced: bool,
    ) -> Result<bool, DbError> {
        self.owe_run_at(transcript_id, kind, forced, &now()).await
    }

    /// [`Db::owe_run`] of a [`PROCESS`] request with its `options` (JSON text, kept as given
    /// and handed back in [`OwedRun::options`]).
    pub async fn owe_process_run(
        &self,
        transcript_id: &str,
        forced: bool,
        options: Option<&str>,
    ) -> Result<bool, DbError> {
        self.insert_owed(transcript_id, PROCESS, forced, options, &now())
            .await
    }

    /// [`Db::owe_run`], first due at `due_at` (RFC 3339; later than now while the caller is
    /// starting the run itself).
    pub async fn owe_run_at(
        &self,
        transcript_id: &str,
        kind: &str,
        forced: bool,
        due_at: &str,
    ) -> Result<bool, DbError> {
        self.insert_owed(transcript_id, kind, forced, None, due_at)
            .await
    }

    async fn insert_owed(
        &self,
        transcript_id: &str,
        kind: &str,
        forced: bool,
        options: Option<&str>,
        due_at: &str,
    ) -> Result<bool, DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "INSERT INTO run_backlog (transcript_id, kind, forced, options, requested_at, \
             next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (transcript_id) DO NOTHING"
        )
        .bind(transcript_id)
        .bind(kind)
        .bind(forced)
        .bind(options)
        .bind(now())
        .bind(due_at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
        .map_err(DbError::query("owe a run"))
    }

    /// The run owed to `transcript_id`, if any.
    pub async fn owed_run(&self, transcript_id: &str) -> Result<Option<OwedRun>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, OwedRun>(&format!(
            "SELECT {COLUMNS} FROM run_backlog WHERE transcript_id = $1"
        ))
        .bind(transcript_id)
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read owed run"))
    }

    /// Whether a run owed before `transcript_id`'s (backlog order: request time, then
    /// transcript id) is waiting for the backlog loop at `at`: due, not one a caller is still
    /// starting itself.
    pub async fn runs_owed_before(&self, transcript_id: &str, at: &str) -> Result<bool, DbError> {
        let n = crate::on_pool!(self, |pool| sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM run_backlog b, run_backlog me WHERE me.transcript_id = $1 \
             AND b.next_attempt_at <= $2 \
             AND (b.requested_at < me.requested_at \
                  OR (b.requested_at = me.requested_at AND b.transcript_id < me.transcript_id))"
        )
        .bind(transcript_id)
        .bind(at)
        .fetch_one(pool)
        .await)
        .map_err(DbError::query("read the backlog"))?;
        Ok(n > 0)
    }

    /// Owed runs whose next attempt is due at `at`, oldest request first, at most `limit`.
    pub async fn due_runs(&self, at: &str, limit: i64) -> Result<Vec<OwedRun>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, OwedRun>(&format!(
            "SELECT {COLUMNS} FROM run_backlog WHERE next_attempt_at <= $1 \
             ORDER BY requested_at, transcript_id LIMIT $2"
        ))
        .bind(at)
        .bind(limit)
        .fetch_all(pool)
        .await)
        .map_err(DbError::query("read the backlog"))
    }

    /// Runs owed, all together.
    pub async fn owed_run_count(&self) -> Result<i64, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM run_backlog"
        )
        .fetch_one(pool)
        .await)
        .map_err(DbError::query("count the backlog"))
    }

    /// Claim `transcript_id`'s owed run for `holder` until `until` (RFC 3339), unless another
    /// holder's claim runs past `at`; whether the row is now `holder`'s (false also when the
    /// row is gone).
    pub async fn claim_owed_run(
        &self,
        transcript_id: &str,
        holder: &str,
        at: &str,
        until: &str,
    ) -> Result<bool, DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "UPDATE run_backlog SET claimed_by = $1, claimed_until = $2 WHERE transcript_id = $3 \
             AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $1)"
        )
        .bind(holder)
        .bind(until)
        .bind(transcript_id)
        .bind(at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
        .map_err(DbError::query("claim an owed run"))
    }

    /// The run owed to `transcript_id` is started (or turned out not to be needed): forget it.
    pub async fn settle_owed_run(&self, transcript_id: &str) -> Result<(), DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "DELETE FROM run_backlog WHERE transcript_id = $1"
        )
        .bind(transcript_id)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("settle an owed run"))
    }

    /// An attempt to start `transcript_id`'s owed run failed with `error`: count it, try again
    /// from `next_attempt_at` (RFC 3339), release the claim. `forced` is cleared when given
    /// `false` (an attempt that may have reached Temporal must not force a second run).
    pub async fn owed_run_failed(
        &self,
        transcript_id: &str,
        error: &str,
        next_attempt_at: &str,
        forced: bool,
    ) -> Result<(), DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "UPDATE run_backlog SET attempts = attempts + 1, last_error = $1, \
             next_attempt_at = $2, forced = (forced AND $3), claimed_by = NULL, \
             claimed_until = NULL WHERE transcript_id = $4"
        )
        .bind(error)
        .bind(next_attempt_at)
        .bind(forced)
        .bind(transcript_id)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("record a failed start"))
    }
}
