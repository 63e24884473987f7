//! `Backfill`: re-run many meetings memoized, at most N at a time (`reflow backfill`).
//!
//! The workflow takes the meetings a page at a time (activity [`BACKFILL_PAGE`]: transcripts
//! with a recording since a date, optionally in one room, in `(recorded_at, transcript id)`
//! order), and for each asks the worker for the run the rerun routine would start
//! ([`BACKFILL_PREPARE`]: the input is built in an activity, so this code stays a function of
//! its history), starts it as a child under the meeting's own workflow id (so the transcript,
//! the Conductor view and later re-runs find it where they always do), waits for it, and asks
//! what it reused ([`BACKFILL_SETTLE`]). At most `concurrency` meetings are in flight. After a
//! page of `batch` meetings has settled, the run continues as new with a cursor and the totals,
//! so a backfill of thousands of meetings keeps each history to one page's events; children
//! never outlive the run that started them (every page is finished before continuing).
//!
//! Cancelling the backfill (Web UI, `temporal workflow cancel`) starts nothing more and
//! cancels the runs in flight (their own cancel leaves their transcripts `idle`). A worker
//! killed mid-way loses nothing: the children and the activities are in history, and the
//! next worker replays to where it was. The `progress` query answers done, running, failed,
//! skipped of the total, and what was reused.

// `#[workflow_methods]` generates one undocumented marker constant per method.
#![allow(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::future::select_all;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use temporalio_workflow::common::{RetryPolicy, UntypedActivity, UntypedWorkflow};
use temporalio_workflow::{
    ActivityOptions, ChildWorkflowOptions, ContinueAsNewOptions, ParentClosePolicy,
    WorkflowContext, WorkflowContextView, WorkflowIdReusePolicy, WorkflowResult,
    WorkflowTermination,
};

use crate::payload;

/// The workflow type.
pub const BACKFILL_WORKFLOW: &str = "Backfill";
/// Activity: the next page of meetings ([`PageRequest`] → [`Page`]).
pub const BACKFILL_PAGE: &str = "backfill_page";
/// Activity: the new run of one meeting ([`PrepareRequest`] → [`Prepared`]).
pub const BACKFILL_PREPARE: &str = "backfill_prepare";
/// Activity: what a finished run reused ([`SettleRequest`] → [`Settled`]).
pub const BACKFILL_SETTLE: &str = "backfill_settle";
/// The memo entry (`kind: backfill`) that names a run as a backfill in the Web UI.
pub const MEMO_KIND: &str = "kind";
/// How many failures the progress keeps (the latest).
const FAILURES_KEPT: usize = 20;

/// Which meetings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Recorded at or after (RFC 3339).
    pub since: String,
    /// Recorded before (RFC 3339; the backfill's start, so meetings arriving meanwhile, which
    /// run on the current version anyway, are left out).
    pub until: String,
    /// Only this room (its name or id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

/// Where a page ends: the last meeting taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Its recording time.
    pub recorded_at: String,
    /// Its transcript.
    pub transcript_id: String,
}

/// One meeting of a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingRef {
    /// Its transcript.
    pub transcript_id: String,
    /// Its recording time.
    pub recorded_at: String,
}

/// What [`BACKFILL_PAGE`] is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Which meetings.
    pub selection: Selection,
    /// After this one.
    pub after: Option<Cursor>,
    /// At most this many.
    pub limit: u32,
}

/// What [`BACKFILL_PAGE`] answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// In order.
    pub meetings: Vec<MeetingRef>,
}

/// What [`BACKFILL_PREPARE`] is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareRequest {
    /// The meeting's transcript.
    pub transcript_id: String,
    /// The version to run (`None`: what the rerun routine picks).
    pub version: Option<u32>,
}

/// What [`BACKFILL_PREPARE`] answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Prepared {
    /// Start this run.
    Ready {
        /// The meeting's workflow id.
        workflow_id: String,
        /// Its workflow type (the pipeline's name).
        workflow_type: String,
        /// Its task queue.
        task_queue: String,
        /// The run's input (a `RunInput` bound to `workflow_id`).
        input: Value,
        /// The version (`Name vN`).
        pipeline: String,
    },
    /// Not this meeting (locked, a run in progress, nothing to rebuild an input from).
    Skip {
        /// Why.
        reason: String,
    },
}

/// What [`BACKFILL_SETTLE`] is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettleRequest {
    /// The meeting's transcript.
    pub transcript_id: String,
    /// Its workflow.
    pub workflow_id: String,
    /// The run the backfill started.
    pub run_id: String,
    /// Whether it completed.
    pub completed: bool,
}

/// What [`BACKFILL_SETTLE`] answers: what the run reused and ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settled {
    /// Steps taken from a memo.
    pub steps_reused: u64,
    /// Steps that ran.
    pub steps_run: u64,
    /// Audio seconds of transcription not paid again.
    pub transcription_s_saved: f64,
    /// LLM tokens not paid again.
    pub llm_tokens_saved: u64,
}

/// The backfill's state: the `progress` query's answer and the workflow's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackfillProgress {
    /// Meetings selected (as counted when the backfill started).
    pub total: u64,
    /// Re-run and completed.
    pub done: u64,
    /// Re-run and failed (or could not be started).
    pub failed: u64,
    /// Left alone (locked, a run in progress, nothing to process).
    pub skipped: u64,
    /// The meetings' workflows running now.
    #[serde(default)]
    pub running: Vec<String>,
    /// Steps reused, over the completed runs.
    pub steps_reused: u64,
    /// Steps run, over the completed runs.
    pub steps_run: u64,
    /// Audio seconds of transcription not paid again.
    pub transcription_s_saved: f64,
    /// LLM tokens not paid again.
    pub llm_tokens_saved: u64,
    /// The latest failures and skips (`transcript: why`), at most 20.
    #[serde(default)]
    pub problems: Vec<String>,
    /// Runs of the backfill so far (continue-as-new).
    pub runs: u64,
}

impl BackfillProgress {
    /// Whether every selected meeting is settled.
    pub fn settled(&self) -> u64 {
        self.done + self.failed + self.skipped
    }

    fn problem(&mut self, transcript_id: &str, why: &str) {
        self.problems.push(format!("{transcript_id}: {why}"));
        if self.problems.len() > FAILURES_KEPT {
            self.problems.remove(0);
        }
    }
}

/// The backfill's input (and, with the cursor and totals, each continued run's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillInput {
    /// Which meetings.
    pub selection: Selection,
    /// The version to run.
    pub version: Option<u32>,
    /// Meetings in flight at most.
    pub concurrency: u32,
    /// Meetings per run before continuing as new.
    pub batch: u32,
    /// Where the previous run stopped.
    #[serde(default)]
    pub after: Option<Cursor>,
    /// The totals so far.
    #[serde(default)]
    pub progress: BackfillProgress,
}

/// How one meeting ended.
enum Outcome {
    Done(Settled),
    Failed(String),
    Skipped(String),
}

#[temporalio_macros::workflow]
#[derive(Default)]
pub struct Backfill {
    progress: BackfillProgress,
}

#[temporalio_macros::workflow_methods]
impl Backfill {
    /// Re-run the selected meetings (see the module documentation).
    #[run(name = "Backfill")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: BackfillInput,
    ) -> WorkflowResult<BackfillProgress> {
        backfill(ctx, input).await
    }

    /// Done, running, failed and skipped of the total, and what was reused.
    #[query]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> BackfillProgress {
        self.progress.clone()
    }

    /// An activity attempt was retried (the worker's interceptor tells every workflow whose
    /// activities retry); the backfill has no step table, so nothing changes.
    #[signal]
    pub fn step_attempt(
        &mut self,
        _ctx: &mut temporalio_workflow::SyncWorkflowContext<Self>,
        _report: crate::progress::AttemptReport,
    ) {
    }
}

type Running = Pin<Box<dyn Future<Output = (String, Outcome)>>>;

async fn backfill(
    ctx: &WorkflowContext<Backfill>,
    mut input: BackfillInput,
) -> WorkflowResult<BackfillProgress> {
    input.progress.runs += 1;
    input.progress.running.clear();
    let start = input.progress.clone();
    ctx.state_mut(|w| w.progress = start);
    let page: Page = call(
        ctx,
        BACKFILL_PAGE,
        &PageRequest {
            selection: input.selection.clone(),
            after: input.after.clone(),
            limit: input.batch.max(1),
        },
    )
    .await
    .map_err(|e| failure("BackfillPageFailed", e))?;
    let mut pending = page.meetings.iter();
    let mut running: Vec<Running> = Vec::new();
    let cap = input.concurrency.max(1) as usize;
    loop {
        while running.len() < cap && !ctx.cancellation_token().is_cancelled() {
            let Some(m) = pending.next() else { break };
            running.push(Box::pin(one(ctx.clone(), m.clone(), input.version)));
        }
        if running.is_empty() {
            break;
        }
        let ((transcript_id, outcome), _, rest) = select_all(running).await;
        running = rest;
        ctx.state_mut(|w| {
            let p = &mut w.progress;
            match outcome {
                Outcome::Done(s) => {
                    p.done += 1;
                    p.steps_reused += s.steps_reused;
                    p.steps_run += s.steps_run;
                    p.transcription_s_saved += s.transcription_s_saved;
                    p.llm_tokens_saved += s.llm_tokens_saved;
                }
                Outcome::Failed(why) => {
                    p.failed += 1;
                    p.problem(&transcript_id, &why);
                }
                Outcome::Skipped(why) => {
                    p.skipped += 1;
                    p.problem(&transcript_id, &why);
                }
            }
        });
    }
    if ctx.cancellation_token().is_cancelled() {
        return Err(WorkflowTermination::cancelled());
    }
    let progress = ctx.state(|w| w.progress.clone());
    let Some(last) = page.meetings.last() else {
        return Ok(progress);
    };
    if page.meetings.len() < input.batch.max(1) as usize {
        return Ok(progress);
    }
    input.after = Some(Cursor {
        recorded_at: last.recorded_at.clone(),
        transcript_id: last.transcript_id.clone(),
    });
    input.progress = progress;
    ctx.continue_as_new(input, ContinueAsNewOptions::default())?;
    unreachable!("continue_as_new always returns Err")
}

/// One meeting: its run prepared, started as a child, awaited, and accounted.
async fn one(
    ctx: WorkflowContext<Backfill>,
    m: MeetingRef,
    version: Option<u32>,
) -> (String, Outcome) {
    let tid = m.transcript_id.clone();
    let request = PrepareRequest {
        transcript_id: tid.clone(),
        version,
    };
    let prepared: Prepared = match call(&ctx, BACKFILL_PREPARE, &request).await {
        Ok(p) => p,
        Err(e) => return (tid, Outcome::Failed(e)),
    };
    let (workflow_id, workflow_type, task_queue, input, pipeline) = match prepared {
        Prepared::Skip { reason } => return (tid, Outcome::Skipped(reason)),
        Prepared::Ready {
            workflow_id,
            workflow_type,
            task_queue,
            input,
            pipeline,
        } => (workflow_id, workflow_type, task_queue, input, pipeline),
    };
    let opts = ChildWorkflowOptions::builder()
        .workflow_id(workflow_id.clone())
        .task_queue(task_queue)
        // A cancelled backfill cancels its runs (their transcripts go back to `idle`).
        .parent_close_policy(ParentClosePolicy::RequestCancel)
        .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicate)
        .static_summary(format!("{pipeline} (backfill)"))
        .build();
    let started = match ctx
        .start_child_workflow(
            UntypedWorkflow::new(workflow_type),
            payload::to_raw(&input),
            opts,
        )
        .await
    {
        Ok(s) => s,
        Err(e) => return (tid, Outcome::Failed(format!("not started: {e}"))),
    };
    let run_id = started.run_id.clone();
    ctx.state_mut(|w| w.progress.running.push(workflow_id.clone()));
    let result = started.result().await;
    let settle = SettleRequest {
        transcript_id: tid.clone(),
        workflow_id: workflow_id.clone(),
        run_id,
        completed: result.is_ok(),
    };
    let settled: Result<Settled, String> = call(&ctx, BACKFILL_SETTLE, &settle).await;
    // Running until settled, so the progress never shows a meeting as neither.
    ctx.state_mut(|w| w.progress.running.retain(|r| r != &workflow_id));
    match (result, settled) {
        (Ok(_), Ok(s)) => (tid, Outcome::Done(s)),
        // Completed, but what it reused could not be read: counted, without its figures.
        (Ok(_), Err(_)) => (tid, Outcome::Done(Settled::default())),
        (Err(e), _) => (tid, Outcome::Failed(e.to_string())),
    }
}

/// Run activity `name` with `request` and decode its answer.
async fn call<T: serde::de::DeserializeOwned>(
    ctx: &WorkflowContext<Backfill>,
    name: &str,
    request: &impl Serialize,
) -> Result<T, String> {
    let opts = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(120))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(30))
                .maximum_attempts(10)
                .build(),
        )
        .build();
    let raw = ctx
        .execute_activity(
            UntypedActivity::new(name.to_owned()),
            payload::to_raw(request),
            opts,
        )
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    let value = payload::from_raw(&raw).map_err(|e| format!("{name}: {e}"))?;
    serde_json::from_value(value).map_err(|e| format!("{name}: {e}"))
}

fn failure(kind: &str, message: String) -> WorkflowTermination {
    temporalio_workflow::common::error::ApplicationFailure::builder(message)
        .type_name(kind.to_owned())
        .non_retryable(true)
        .build()
        .into()
}
