//! `reflow backfill`: re-run the meetings recorded since a date (optionally in one room) on a
//! version, memoized, at most N at a time, as one Temporal workflow
//! ([`workflow::backfill::Backfill`]), or show what that would do (`--dry-run`, [`preview`]).
//!
//! This module holds the worker's side: the backfill workflow's three activities (the page of
//! meetings, a meeting's run built by the rerun routine, what a finished run reused), the
//! selection and version every caller shares, and starting and following a backfill. Each
//! meeting's run is what `reflow rerun` would start ([`crate::rerun::prepare`]), notifications
//! left out (a re-run notifies only when asked, and a backfill never asks).

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

pub mod preview;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use activities::ActivityFailure;
use activities::db::Db;
use activities::db::backfill::Window;
use activities::events::Events;
use temporalio_client::{Client, UntypedQuery, UntypedWorkflow, WorkflowQueryOptions};
use temporalio_common::data_converters::RawValue;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use workflow::backfill::{
    BackfillInput, BackfillProgress, MeetingRef, Page, PageRequest, PrepareRequest, Prepared,
    Selection, SettleRequest, Settled,
};

use crate::intake::Intake;
use crate::rerun::{self, RerunError};

/// The task queue the backfill workflow and its activities run on: the meeting pipeline's
/// main queue, which every worker of the meeting pipeline serves.
pub const QUEUE: &str = "reflow";
/// The pipeline a backfill re-runs.
pub const PIPELINE: &str = "DiarizationPipeline";
/// Meetings per backfill run before it continues as new.
pub const BATCH: u32 = 100;

/// Why a backfill could not be planned or started.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// `--since` is not a date.
    #[error("--since {0:?} is not a date (YYYY-MM-DD or RFC 3339)")]
    Since(String),
    /// No version to run.
    #[error("{0}")]
    Version(String),
    /// The database.
    #[error(transparent)]
    Db(#[from] activities::db::DbError),
    /// The memo store.
    #[error("{0}")]
    Memo(String),
    /// Temporal.
    #[error("{0}")]
    Temporal(String),
}

/// The selection `since` (a date or an RFC 3339 time) to now, in `room`.
///
/// The bounds are compared with the stored times as text, which are RFC 3339 with
/// milliseconds (`db::now`) or whole seconds (a Daily folder's stamp). The lower bound is
/// written with milliseconds so that both forms of the same second compare at or after it
/// (`…05.123Z` is before `…05Z` as text); the upper bound, now, with whole seconds.
pub fn selection(since: &str, room: Option<String>) -> Result<Selection, BackfillError> {
    let at = humantime::parse_rfc3339_weak(since)
        .or_else(|_| humantime::parse_rfc3339_weak(&format!("{since} 00:00:00")))
        .map_err(|_| BackfillError::Since(since.to_owned()))?;
    Ok(Selection {
        since: humantime::format_rfc3339_millis(at).to_string(),
        until: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        room,
    })
}

/// The window a selection and cursor read.
fn window<'a>(s: &'a Selection, after: Option<&'a workflow::backfill::Cursor>) -> Window<'a> {
    Window {
        since: &s.since,
        until: &s.until,
        room: s.room.as_deref(),
        after: after.map(|c| (c.recorded_at.as_str(), c.transcript_id.as_str())),
    }
}

/// The version a backfill runs: the one named, else the rollout's `current`, else the latest
/// registered version of the meeting pipeline.
pub async fn version(db: &Db, named: Option<u32>) -> Result<u32, BackfillError> {
    if let Some(v) = named {
        return Ok(v);
    }
    if let Some(r) = db.pipeline_rollout(PIPELINE).await? {
        return Ok(r.current);
    }
    db.pipeline_versions(Some(PIPELINE))
        .await?
        .iter()
        .filter_map(|v| u32::try_from(v.version).ok())
        .max()
        .ok_or_else(|| {
            BackfillError::Version(format!(
                "{PIPELINE} has no registered version: run `reflow apply`"
            ))
        })
}

/// The request the rerun routine gets for a backfilled meeting: a new run on `version`,
/// memoized, without notifications (the request's default: a re-run notifies only when asked,
/// and a backfill never asks).
pub fn request(version: u32) -> rerun::Request {
    rerun::Request {
        version: Some(version),
        ..rerun::Request::default()
    }
}

/// The workflow's activities.
pub struct BackfillActivities {
    intake: Option<Arc<Intake>>,
    events: Events,
}

impl BackfillActivities {
    /// Runs are built with `intake`'s Temporal client (`None`: the activities fail with
    /// `ConfigError`, as a worker without a client cannot start runs).
    pub fn new(intake: Option<Arc<Intake>>, events: Events) -> Self {
        BackfillActivities { intake, events }
    }

    fn intake(&self) -> Result<&Intake, ActivityFailure> {
        self.intake.as_deref().ok_or_else(|| {
            ActivityFailure::Config("this worker has no Temporal client for backfills".into())
        })
    }

    async fn page(&self, r: &PageRequest) -> Result<Page, ActivityFailure> {
        let rows = self
            .events
            .db()
            .backfill_meetings(&window(&r.selection, r.after.as_ref()), r.limit)
            .await?;
        Ok(Page {
            meetings: rows
                .into_iter()
                .map(|m| MeetingRef {
                    transcript_id: m.transcript_id,
                    recorded_at: m.recorded_at,
                })
                .collect(),
        })
    }

    async fn prepare(&self, r: &PrepareRequest) -> Result<Prepared, ActivityFailure> {
        let intake = self.intake()?;
        let db = self.events.db();
        let Some(t) = db.find_transcript(&r.transcript_id).await? else {
            return Ok(skip("no such transcript"));
        };
        let version = match r.version {
            Some(v) => v,
            None => version(db, None)
                .await
                .map_err(|e| ActivityFailure::Config(e.to_string()))?,
        };
        match rerun::prepare(&intake.client, db, Some(intake), &t, &request(version)).await {
            Ok(rerun::Prepared::New(n)) => {
                let input = crate::runs::run_input(&n.pipeline, n.input, &n.workflow_id);
                Ok(Prepared::Ready {
                    workflow_type: n.pipeline.name.clone(),
                    task_queue: n.pipeline.main.task_queue.clone(),
                    pipeline: n.pipeline.reference().short(),
                    input: serde_json::to_value(input).expect("run inputs serialize"),
                    workflow_id: n.workflow_id,
                })
            }
            // A version is always named, so a failed run gets a new one rather than a resume.
            Ok(rerun::Prepared::Resume { .. }) => Ok(skip("its last run is to be resumed")),
            Err(
                e @ (RerunError::Locked
                | RerunError::InProgress
                | RerunError::NothingToProcess
                | RerunError::UnknownStep { .. }
                | RerunError::NotRegistered(_)),
            ) => Ok(skip(&e.to_string())),
            Err(RerunError::Db(e)) => Err(e.into()),
            Err(e) => Err(ActivityFailure::Transient(e.to_string())),
        }
    }

    async fn settle(&self, r: &SettleRequest) -> Result<Settled, ActivityFailure> {
        let intake = self.intake()?;
        let db = self.events.db();
        db.set_workflow(&r.transcript_id, &r.workflow_id, &r.run_id)
            .await?;
        if !r.completed {
            return Ok(Settled::default());
        }
        let outcome = rerun::Outcome::Ok {
            workflow_id: r.workflow_id.clone(),
            run_id: r.run_id.clone(),
            pipeline: String::new(),
        };
        let s = rerun::summarize(&intake.client, db, &r.transcript_id, &outcome, true)
            .await
            .map_err(|e| ActivityFailure::Transient(format!("{e:#}")))?;
        Ok(Settled {
            steps_reused: s.steps_reused.len() as u64,
            steps_run: s.steps_run.len() as u64,
            transcription_s_saved: s.transcription_s_saved,
            llm_tokens_saved: s.llm_tokens_saved,
        })
    }
}

fn skip(reason: &str) -> Prepared {
    Prepared::Skip {
        reason: reason.to_owned(),
    }
}

#[activities]
impl BackfillActivities {
    /// The next page of a backfill's meetings.
    #[activity(name = "backfill_page")]
    pub async fn backfill_page(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: PageRequest,
    ) -> Result<Page, ActivityError> {
        self.page(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// The new run of one meeting, as the rerun routine builds it (not started).
    #[activity(name = "backfill_prepare")]
    pub async fn backfill_prepare(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: PrepareRequest,
    ) -> Result<Prepared, ActivityError> {
        self.prepare(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// What a finished run reused and ran; the transcript names the run.
    #[activity(name = "backfill_settle")]
    pub async fn backfill_settle(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: SettleRequest,
    ) -> Result<Settled, ActivityError> {
        self.settle(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }
}

/// What to backfill.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The meetings.
    pub selection: Selection,
    /// The version.
    pub version: u32,
    /// At most this many at once.
    pub concurrency: u32,
    /// Meetings per run before it continues as new.
    pub batch: u32,
}

/// Start a backfill: its workflow id and how many meetings it selected.
pub async fn start(client: &Client, db: &Db, plan: &Plan) -> Result<(String, u64), BackfillError> {
    let total = db.backfill_count(&window(&plan.selection, None)).await?;
    let workflow_id = format!(
        "backfill-{}-{}",
        &plan.selection.since[..10.min(plan.selection.since.len())],
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut memo = temporalio_common::MemoValues::new();
    memo.insert(workflow::backfill::MEMO_KIND, "backfill".to_owned());
    memo.insert("since", plan.selection.since.clone());
    memo.insert("room", plan.selection.room.clone().unwrap_or_default());
    memo.insert("pipeline", PIPELINE.to_owned());
    memo.insert("pipeline_version", plan.version);
    let opts = temporalio_client::WorkflowStartOptions::new(QUEUE, workflow_id.clone())
        .id_conflict_policy(temporalio_client::WorkflowIdConflictPolicy::Fail)
        .memo(memo)
        .static_summary(format!(
            "backfill: {total} meetings since {}{} on {PIPELINE} v{}, {} at a time",
            plan.selection.since,
            plan.selection
                .room
                .as_deref()
                .map(|r| format!(" in {r}"))
                .unwrap_or_default(),
            plan.version,
            plan.concurrency
        ))
        .build();
    let input = BackfillInput {
        selection: plan.selection.clone(),
        version: Some(plan.version),
        concurrency: plan.concurrency.max(1),
        batch: plan.batch.max(1),
        after: None,
        progress: BackfillProgress {
            total,
            ..BackfillProgress::default()
        },
    };
    client
        .start_workflow(
            UntypedWorkflow::new(workflow::backfill::BACKFILL_WORKFLOW),
            workflow::payload::to_raw(&input),
            opts,
        )
        .await
        .map_err(|e| BackfillError::Temporal(crate::runs::chain(&e)))?;
    tracing::info!(%workflow_id, total, version = plan.version, "backfill started");
    Ok((workflow_id, total))
}

/// The backfill's progress now (`None` while no worker answers).
pub async fn progress(client: &Client, workflow_id: &str) -> Option<BackfillProgress> {
    let raw = client
        .get_workflow_handle::<UntypedWorkflow>(workflow_id)
        .query(
            UntypedQuery::new("progress"),
            RawValue::new(Vec::new()),
            WorkflowQueryOptions::default(),
        )
        .await
        .ok()?;
    serde_json::from_value(workflow::payload::from_raw(&raw).ok()?).ok()
}

/// Follow a backfill until it ends, calling `seen` with every progress that differs from the
/// last; its final progress (the workflow's result).
pub async fn follow(
    client: &Client,
    workflow_id: &str,
    mut seen: impl FnMut(&BackfillProgress),
) -> Result<BackfillProgress, BackfillError> {
    let ended = crate::runs::wait(client, workflow_id);
    let mut ended = std::pin::pin!(ended);
    let mut last: Option<BackfillProgress> = None;
    loop {
        tokio::select! {
            out = &mut ended => {
                let value = out.map_err(|e| BackfillError::Temporal(e.to_string()))?;
                let p: BackfillProgress = serde_json::from_value(value)
                    .map_err(|e| BackfillError::Temporal(e.to_string()))?;
                seen(&p);
                return Ok(p);
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if let Some(p) = progress(client, workflow_id).await
                    && last.as_ref() != Some(&p)
                {
                    seen(&p);
                    last = Some(p);
                }
            }
        }
    }
}

/// `done D, running R, failed F, skipped S of T`.
pub fn line(p: &BackfillProgress) -> String {
    format!(
        "{} done, {} running, {} failed, {} skipped of {}",
        p.done,
        p.running.len(),
        p.failed,
        p.skipped,
        p.total
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_stored_in_the_second_the_window_opens_is_inside_it() {
        let s = selection("2026-12-07T16:10:05Z", None).unwrap();
        assert_eq!(s.since, "2026-12-07T16:10:05.000Z");
        for stored in ["2026-12-07T16:10:05.123Z", "2026-12-07T16:10:05Z"] {
            assert!(stored >= s.since.as_str(), "{stored} is inside");
        }
        assert!("2026-12-07T16:10:04.999Z" < s.since.as_str());
        assert_eq!(
            selection("2026-12-07", None).unwrap().since,
            "2026-12-07T00:00:00.000Z"
        );
    }
}
