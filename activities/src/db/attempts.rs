//! `step_attempt`: one row per activity attempt, written by the worker's activity interceptor
//! (`reflow::attempts`, in the worker crate). Temporal keeps only an activity's last attempt;
//! this table keeps all of them, for the status API's task rows.

use super::{Db, DbError, now};

/// The identity of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Owning workflow.
    pub workflow_id: String,
    /// Its run.
    pub run_id: String,
    /// Activity id (`pad_track_2`).
    pub activity_id: String,
    /// 1-based.
    pub attempt: i64,
    /// Activity type.
    pub activity_type: String,
    /// Queue it ran on.
    pub task_queue: String,
    /// The worker that ran it.
    pub worker_identity: String,
}

/// A stored attempt.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AttemptRow {
    /// The run it belongs to (a reset or a reprocess makes a new run of the workflow id).
    pub run_id: String,
    /// Activity id.
    pub activity_id: String,
    /// How many activity resets (a retry of a step waiting in backoff) came before it in its
    /// run: attempts count from 1 again after each.
    pub generation: i64,
    /// 1-based (within its generation).
    pub attempt: i64,
    /// Activity type.
    pub activity_type: String,
    /// Queue.
    pub task_queue: String,
    /// `started`, `completed`, `failed`, `non_retryable`, `cancelled` or `skipped`.
    pub status: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, once ended.
    pub ended_at: Option<String>,
    /// Failure type.
    pub failure_type: Option<String>,
    /// Failure message.
    pub failure_message: Option<String>,
    /// Worker identity.
    pub worker_identity: Option<String>,
}

impl Db {
    /// Record that an attempt started; its reset generation. A re-delivered start overwrites
    /// the row; an attempt number that Temporal counts again after an activity reset (the
    /// generation already has that attempt ended, or a later one) starts a new generation, so
    /// the failed attempts before the reset keep their rows.
    pub async fn attempt_started(&self, a: &Attempt) -> Result<i64, DbError> {
        let existing = crate::on_pool!(self, |pool| sqlx::query_as::<_, (i64, i64, String)>(
            "SELECT generation, attempt, status FROM step_attempt WHERE workflow_id = $1 \
             AND run_id = $2 AND activity_id = $3"
        )
        .bind(&a.workflow_id)
        .bind(&a.run_id)
        .bind(&a.activity_id)
        .fetch_all(pool)
        .await)
        .map_err(DbError::query("read attempts of a step"))?;
        let generation = next_generation(&existing, a.attempt);
        crate::on_pool!(self, |pool| sqlx::query(
            "INSERT INTO step_attempt (workflow_id, run_id, activity_id, generation, attempt, \
             activity_type, task_queue, status, started_at, worker_identity) \
             VALUES ($1, $2, $3, $9, $4, $5, $6, 'started', $7, $8) \
             ON CONFLICT (workflow_id, run_id, activity_id, generation, attempt) DO UPDATE SET \
             status = 'started', started_at = $7, ended_at = NULL, failure_type = NULL, \
             failure_message = NULL, worker_identity = $8"
        )
        .bind(&a.workflow_id)
        .bind(&a.run_id)
        .bind(&a.activity_id)
        .bind(a.attempt)
        .bind(&a.activity_type)
        .bind(&a.task_queue)
        .bind(now())
        .bind(&a.worker_identity)
        .bind(generation)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("record attempt start"))?;
        Ok(generation)
    }

    /// Record how an attempt ended.
    pub async fn attempt_ended(
        &self,
        a: &Attempt,
        status: &str,
        failure: Option<(String, String)>,
        bytes_written: u64,
    ) -> Result<(), DbError> {
        let (kind, message) = failure.unzip();
        crate::on_pool!(self, |pool| sqlx::query(
            "UPDATE step_attempt SET status = $1, ended_at = $2, failure_type = $3, \
             failure_message = $4, bytes_written = $9 WHERE workflow_id = $5 AND run_id = $6 \
             AND activity_id = $7 AND attempt = $8 AND generation = (SELECT MAX(generation) \
             FROM step_attempt WHERE workflow_id = $5 AND run_id = $6 AND activity_id = $7)"
        )
        .bind(status)
        .bind(now())
        .bind(kind)
        .bind(message)
        .bind(&a.workflow_id)
        .bind(&a.run_id)
        .bind(&a.activity_id)
        .bind(a.attempt)
        .bind(bytes_written as i64)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("record attempt end"))
    }

    /// Record how far a running attempt is (`fraction`, 0–1).
    pub async fn attempt_progress(&self, a: &Attempt, fraction: f64) -> Result<(), DbError> {
        crate::on_pool!(self, |pool| sqlx::query(
            "UPDATE step_attempt SET progress = $1 WHERE workflow_id = $2 AND run_id = $3 \
             AND activity_id = $4 AND attempt = $5 AND generation = (SELECT MAX(generation) \
             FROM step_attempt WHERE workflow_id = $2 AND run_id = $3 AND activity_id = $4)"
        )
        .bind(fraction)
        .bind(&a.workflow_id)
        .bind(&a.run_id)
        .bind(&a.activity_id)
        .bind(a.attempt)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("record attempt progress"))
    }

    /// How far the members of step `activity_type` in `workflow_id`'s run and its child runs
    /// (ids `{workflow_id}-…`, as the pipelines name them) are, as a percentage of at least
    /// `members` members: a completed member counts whole, a running one by its last reported
    /// fraction, one not started as nothing. `None` when no running member reports one.
    pub async fn step_percent(
        &self,
        workflow_id: &str,
        activity_type: &str,
        members: usize,
    ) -> Result<Option<u8>, DbError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            workflow_id: String,
            activity_id: String,
            status: String,
            progress: Option<f64>,
            started_at: String,
        }
        let rows = crate::on_pool!(self, |pool| sqlx::query_as::<_, Row>(
            "SELECT workflow_id, activity_id, status, progress, started_at FROM step_attempt \
             WHERE activity_type = $1 AND (workflow_id = $2 OR workflow_id LIKE $3 ESCAPE '\\')"
        )
        .bind(activity_type)
        .bind(workflow_id)
        .bind(format!("{}-%", like_literal(workflow_id)))
        .fetch_all(pool)
        .await)
        .map_err(DbError::query("read step progress"))?;
        Ok(percent_of(
            rows.into_iter().map(|r| {
                (
                    r.workflow_id,
                    r.activity_id,
                    r.started_at,
                    r.status,
                    r.progress,
                )
            }),
            members,
        ))
    }

    /// Bytes written to storage per activity type by every attempt of these workflows.
    pub async fn bytes_written(
        &self,
        workflow_ids: &[String],
    ) -> Result<Vec<(String, i64)>, DbError> {
        let mut out: Vec<(String, i64)> = Vec::new();
        for id in workflow_ids {
            let rows = crate::on_pool!(self, |pool| sqlx::query_as::<_, (String, i64)>(
                "SELECT activity_type, CAST(SUM(bytes_written) AS BIGINT) FROM step_attempt \
                 WHERE workflow_id = $1 GROUP BY activity_type"
            )
            .bind(id)
            .fetch_all(pool)
            .await)
            .map_err(DbError::query("sum bytes written"))?;
            for (t, n) in rows {
                match out.iter_mut().find(|(k, _)| *k == t) {
                    Some((_, m)) => *m += n,
                    None => out.push((t, n)),
                }
            }
        }
        Ok(out)
    }

    /// Every recorded attempt of a workflow (all runs), by activity id then attempt.
    pub async fn attempts(&self, workflow_id: &str) -> Result<Vec<AttemptRow>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, AttemptRow>(
            "SELECT run_id, activity_id, generation, attempt, activity_type, task_queue, status, \
             started_at, ended_at, failure_type, failure_message, worker_identity \
             FROM step_attempt WHERE workflow_id = $1 \
             ORDER BY started_at, activity_id, generation, attempt"
        )
        .bind(workflow_id)
        .fetch_all(pool)
        .await)
        .map_err(DbError::query("read attempts"))
    }
}

/// The reset generation of a starting `attempt`, given the step's rows `(generation, attempt,
/// status)` in its run: the latest generation, unless that generation already has this attempt
/// ended without success (or a later attempt at all): Temporal counts from 1 again after an
/// activity reset, which only ever resets a step whose last attempt failed.
fn next_generation(rows: &[(i64, i64, String)], attempt: i64) -> i64 {
    let latest = rows.iter().map(|r| r.0).max().unwrap_or(0);
    let restarted = rows.iter().filter(|r| r.0 == latest).any(|(_, n, status)| {
        *n > attempt
            || (*n == attempt
                && matches!(status.as_str(), "failed" | "non_retryable" | "cancelled"))
    });
    latest + i64::from(restarted)
}

/// `text` matched literally by `LIKE … ESCAPE '\'` (a `_` or `%` in a workflow id is not a
/// wildcard).
fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The percentage of [`Db::step_percent`] from attempt rows `(workflow, activity, started_at,
/// status, progress)`: the latest attempt of each member counts.
fn percent_of(
    rows: impl Iterator<Item = (String, String, String, String, Option<f64>)>,
    members: usize,
) -> Option<u8> {
    let mut latest: std::collections::BTreeMap<(String, String), (String, String, Option<f64>)> =
        std::collections::BTreeMap::new();
    for (workflow, activity, started, status, progress) in rows {
        let entry = latest
            .entry((workflow, activity))
            .or_insert_with(|| (String::new(), String::new(), None));
        if started >= entry.0 {
            *entry = (started, status, progress);
        }
    }
    if !latest
        .values()
        .any(|(_, status, p)| status == "started" && p.is_some())
    {
        return None;
    }
    let done: f64 = latest
        .values()
        .map(|(_, status, p)| match status.as_str() {
            "completed" | "skipped" => 1.0,
            "started" => p.unwrap_or(0.0).clamp(0.0, 1.0),
            _ => 0.0,
        })
        .sum();
    let members = members.max(latest.len()).max(1);
    Some((100.0 * done / members as f64).floor().min(100.0) as u8)
}

#[cfg(test)]
mod tests {
    use super::{next_generation, percent_of};

    #[test]
    fn an_attempt_counted_again_after_a_reset_starts_a_new_generation() {
        let row = |g: i64, n: i64, s: &str| (g, n, s.to_owned());
        assert_eq!(next_generation(&[], 1), 0);
        // The next attempt of a retry, and a start delivered again: same generation.
        assert_eq!(next_generation(&[row(0, 1, "failed")], 2), 0);
        assert_eq!(next_generation(&[row(0, 1, "started")], 1), 0);
        assert_eq!(next_generation(&[row(0, 1, "completed")], 1), 0);
        // Attempt 1 again after attempt 1 failed (or after attempt 2): a reset.
        assert_eq!(next_generation(&[row(0, 1, "failed")], 1), 1);
        assert_eq!(
            next_generation(&[row(0, 1, "failed"), row(0, 2, "started")], 1),
            1
        );
        // Later resets count on from the latest generation.
        let rows = [
            row(0, 1, "failed"),
            row(1, 1, "failed"),
            row(1, 2, "failed"),
        ];
        assert_eq!(next_generation(&rows, 3), 1);
        assert_eq!(next_generation(&rows, 1), 2);
    }

    fn row(
        activity: &str,
        started: &str,
        status: &str,
        p: Option<f64>,
    ) -> (String, String, String, String, Option<f64>) {
        (
            "wf-track-0".into(),
            activity.into(),
            started.into(),
            status.into(),
            p,
        )
    }

    #[test]
    fn the_step_percentage_counts_members_by_their_latest_attempt() {
        // No running member reports a fraction: no percentage.
        assert_eq!(
            percent_of([row("t0", "1", "started", None)].into_iter(), 1),
            None
        );
        // One of three done, one half way (its first attempt failed), one not started.
        let rows = [
            row("t0", "1", "completed", None),
            row("t1", "1", "failed", Some(0.9)),
            row("t1", "2", "started", Some(0.5)),
        ];
        assert_eq!(percent_of(rows.into_iter(), 3), Some(50));
        assert_eq!(
            percent_of([row("t0", "1", "started", Some(0.426))].into_iter(), 1),
            Some(42)
        );
    }
}
