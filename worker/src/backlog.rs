//! The backlog loop (issue 37 item 5): start the runs owed to transcripts (`run_backlog`,
//! [`activities::db::backlog`]) that Temporal did not start when they were asked for — a Daily
//! webhook or poll result taken in while the Temporal frontend was unreachable, a process that
//! died between writing the rows and the start, a `POST /v1/transcripts/{id}/process` that
//! could not reach Temporal.
//!
//! Every reflow process that runs workers runs the loop ([`crate::app::App::run`]). A pass
//! takes the owed runs that are due, oldest request first, and for each claims its row for
//! [`LEASE`] (a conditional update: one replica at a time per row; a row another replica holds
//! ends the pass, so the queue is drained in order by one replica at a time), then starts it:
//!
//! - `intake`: [`Intake::start_owed`], the workflow id `diarization-{recording_id}` with id
//!   reuse rejected, so a start Temporal already has (an earlier attempt answered too late, or
//!   another replica) is a no-op counted as done;
//! - `process`: the route's own logic (`http::transcripts::process_owed`) with the options
//!   the request was kept with (`from`, `fresh`, `notify`), not forced again once an attempt
//!   may have reached Temporal.
//!
//! A start Temporal does not answer (or one whose pipeline is not registered, which every owed
//! recording shares) ends the pass (later rows keep their place behind it), and the loop tries
//! again after a backoff from [`MIN_BACKOFF`] doubling to [`MAX_BACKOFF`]; any other failure is
//! that row's alone (it is retried on its own backoff and the pass goes on).
//! The `reflow_run_backlog` gauge is the database's count after every pass and after intake
//! queues a run.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use activities::db::Db;
use activities::db::backlog::{INTAKE, OwedRun, PROCESS};
use axum::http::StatusCode;
use tokio::sync::Notify;

use crate::http::ApiState;
use crate::intake::{Intake, IntakeError};

/// How long a replica holds a row it is starting.
pub const LEASE: Duration = Duration::from_secs(60);
/// How long the loop waits for Temporal to start one owed run.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait after a pass Temporal did not answer.
pub const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between passes while Temporal does not answer: how late, at most, the
/// backlog starts after Temporal is back.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often an idle loop looks for runs owed by other processes (this process's own wake it).
pub const IDLE_POLL: Duration = Duration::from_secs(3);
/// Rows read per pass.
const BATCH: i64 = 100;

fn notify() -> &'static Notify {
    static WAKE: OnceLock<Notify> = OnceLock::new();
    WAKE.get_or_init(Notify::new)
}

/// Wake this process's loop (a run was just owed).
pub fn wake() {
    notify().notify_one();
}

/// Set the `reflow_run_backlog` gauge to the database's count.
pub async fn report(db: &Db) {
    // Installed on first use (an API-only process has no worker that installed it yet).
    crate::metrics::reflow_handle();
    match db.owed_run_count().await {
        Ok(n) => activities::metrics::run_backlog(n),
        Err(e) => tracing::warn!(error = %e, "cannot count the run backlog"),
    }
}

/// The RFC 3339 time a row that failed `attempts` times is tried again: 2^attempts seconds
/// from now, at most 10 minutes.
pub fn later(attempts: i64) -> String {
    let secs = 1u64 << attempts.clamp(0, 10);
    at(SystemTime::now() + Duration::from_secs(secs.min(600)))
}

fn at(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// What a pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Nothing due, or every due row handled.
    Done,
    /// Another replica holds the next row.
    Busy,
    /// Temporal did not start the next row.
    Blocked,
}

/// The loop of one process.
pub struct Backlog {
    intake: Arc<Intake>,
    api: Option<ApiState>,
    holder: String,
}

impl Backlog {
    /// A loop starting intake's runs, and `process` requests through `api` (without it, this
    /// process leaves those to another).
    pub fn new(intake: Arc<Intake>, api: Option<ApiState>) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "reflow".into());
        let holder = format!("{host}:{}:{}", std::process::id(), uuid::Uuid::new_v4());
        Backlog {
            intake,
            api,
            holder,
        }
    }

    /// Run until `stop` resolves.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut backoff = MIN_BACKOFF;
        loop {
            let pass = self.pass().await;
            report(&self.intake.db).await;
            let blocked = pass.as_ref().is_ok_and(|p| *p == Pass::Blocked);
            let wait = match pass {
                Ok(Pass::Done | Pass::Busy) => {
                    backoff = MIN_BACKOFF;
                    IDLE_POLL
                }
                Ok(Pass::Blocked) => {
                    let w = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    w
                }
                Err(e) => {
                    tracing::warn!(error = %e, "run backlog: database unavailable");
                    let w = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    w
                }
            };
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(wait) => {}
                // While Temporal does not answer, a new owed run changes nothing.
                () = notify().notified(), if !blocked => {}
            }
        }
    }

    /// One pass over the due rows, in order.
    async fn pass(&self) -> Result<Pass, activities::db::DbError> {
        let db = &self.intake.db;
        let now = SystemTime::now();
        let due = db.due_runs(&at(now), BATCH).await?;
        for row in due {
            let now = SystemTime::now();
            if !db
                .claim_owed_run(&row.transcript_id, &self.holder, &at(now), &at(now + LEASE))
                .await?
            {
                return Ok(Pass::Busy);
            }
            match self.start(&row).await {
                Started::Done(what) => {
                    db.settle_owed_run(&row.transcript_id).await?;
                    tracing::info!(transcript_id = %row.transcript_id, kind = %row.kind, waited_since = %row.requested_at, %what, "owed run started");
                }
                Started::Unreachable(error) => {
                    tracing::warn!(transcript_id = %row.transcript_id, kind = %row.kind, owed_since = %row.requested_at, %error, "owed runs cannot start yet");
                    // Due again at once: the loop's backoff paces the next pass.
                    db.owed_run_failed(&row.transcript_id, &error, &at(now), false)
                        .await?;
                    return Ok(Pass::Blocked);
                }
                Started::Failed(error) => {
                    tracing::error!(transcript_id = %row.transcript_id, kind = %row.kind, attempts = row.attempts + 1, %error, "owed run not started; retried later");
                    db.owed_run_failed(&row.transcript_id, &error, &later(row.attempts + 1), true)
                        .await?;
                }
                Started::Refused(error) => {
                    tracing::error!(transcript_id = %row.transcript_id, kind = %row.kind, %error, "owed run refused for good; dropped");
                    db.settle_owed_run(&row.transcript_id).await?;
                }
                Started::NotHere => {
                    db.owed_run_failed(
                        &row.transcript_id,
                        "no API in this process to process it",
                        &at(now),
                        true,
                    )
                    .await?;
                }
            }
        }
        Ok(Pass::Done)
    }

    async fn start(&self, row: &OwedRun) -> Started {
        match row.kind.as_str() {
            INTAKE => match self
                .intake
                .start_owed(&row.transcript_id, START_TIMEOUT)
                .await
            {
                Ok(outcome) => Started::Done(format!("{outcome:?}")),
                Err(IntakeError::Unreachable { message, .. }) => Started::Unreachable(message),
                // Every owed recording needs the same pipeline: the queue waits for
                // `reflow apply` (in order) rather than skipping ahead.
                Err(e @ IntakeError::NotRegistered(_)) => Started::Unreachable(e.to_string()),
                Err(e) => Started::Failed(e.to_string()),
            },
            PROCESS => {
                let Some(api) = &self.api else {
                    return Started::NotHere;
                };
                match crate::http::transcripts::process_owed(api, row).await {
                    Ok(answer) => Started::Done(answer.to_string()),
                    // A run is in progress: what was asked for.
                    Err(e) if e.status == StatusCode::CONFLICT => Started::Done(e.detail),
                    Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => {
                        Started::Unreachable(e.detail)
                    }
                    Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
                        Started::Failed(e.detail)
                    }
                    Err(e) => Started::Refused(format!("{}: {}", e.status, e.detail)),
                }
            }
            other => Started::Refused(format!("unknown kind {other:?}")),
        }
    }
}

enum Started {
    Done(String),
    Unreachable(String),
    Failed(String),
    Refused(String),
    NotHere,
}
