//! Progress reporting while a graph runs: the main run of a pipeline with a `progress:`
//! section sends `PIPELINE_PROGRESS` states through a local activity ([`REPORT_PROGRESS`]); a
//! child signals its table to its parent. Both act once per change of the table, in order.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use temporalio_workflow::common::{RetryPolicy, UntypedActivity};
use temporalio_workflow::{LocalActivityOptions, SignalWorkflowOptions, WorkflowContext};

use super::Interpreted;
use crate::payload;
use crate::progress::{ChildProgress, Progress, StepState};
use crate::workflows::ChildProgressSignal;

/// Activity type of the progress reporter (a local activity: no task queue round trip, and
/// the order of reports is the workflow's).
pub const REPORT_PROGRESS: &str = "report_progress";

/// What [`REPORT_PROGRESS`] receives: the states that changed since the last report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgressReport {
    /// The run's workflow id.
    pub workflow_id: String,
    /// The transcript whose channel gets the events.
    pub transcript_id: String,
    /// `total_steps`.
    pub total_steps: u32,
    /// The pipeline version the run is on (`pipeline_version`; absent in reports recorded
    /// before it was sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_version: Option<u32>,
    /// Changed states, by `step_index`.
    pub states: Vec<StepState>,
}

/// Report `PIPELINE_PROGRESS` states whenever the table changes: each index's aggregate
/// (members and children included) is recomputed, and the ones that differ from the last
/// report are sent, in index order, with the run's pipeline version. A failed report is
/// dropped: progress is advisory and the next change re-sends the state. With `coalesce` (runs
/// that take `reflow-lean-history-3`), a state that only counts more members of a large
/// fan-out done waits for the next sixteenth of them
/// ([`crate::progress::only_a_count_within_a_sixteenth`]): each report is a marker in the
/// run's history, and a 64-track meeting made two per track.
pub(super) async fn report_to_frontend<W: Interpreted>(
    ctx: &WorkflowContext<W>,
    spec: crate::pipeline::ProgressSpec,
    transcript_id: String,
    coalesce: bool,
) {
    let sent = std::cell::RefCell::new(Vec::<StepState>::new());
    on_each_revision(ctx, u64::MAX, |progress| {
        let states = crate::progress::step_states(&progress, &spec.steps);
        let mut last = sent.borrow().clone();
        let changed: Vec<StepState> = states
            .iter()
            .filter(
                |s| match last.iter().find(|l| l.step_index == s.step_index) {
                    Some(l) if l == *s => false,
                    Some(l) => {
                        !(coalesce && crate::progress::only_a_count_within_a_sixteenth(l, s))
                    }
                    None => true,
                },
            )
            .cloned()
            .collect();
        for c in &changed {
            match last.iter_mut().find(|l| l.step_index == c.step_index) {
                Some(l) => *l = c.clone(),
                None => last.push(c.clone()),
            }
        }
        *sent.borrow_mut() = last;
        let report = ProgressReport {
            workflow_id: ctx.workflow_id().to_owned(),
            transcript_id: transcript_id.clone(),
            total_steps: spec.total_steps,
            // The table names the version once the graph began (it has a hash then).
            pipeline_version: (!progress.pipeline_hash.is_empty()).then_some(progress.version),
            states: changed,
        };
        async move {
            if report.states.is_empty() {
                return;
            }
            let options = LocalActivityOptions::builder()
                .schedule_to_close_timeout(Duration::from_secs(30))
                .retry_policy(
                    RetryPolicy::builder()
                        .initial_interval(Duration::from_millis(200))
                        .maximum_attempts(3)
                        .build(),
                )
                .build();
            let _ = ctx
                .execute_local_activity(
                    UntypedActivity::new(REPORT_PROGRESS.to_owned()),
                    payload::to_raw(&serde_json::to_value(&report).unwrap_or(Value::Null)),
                    options,
                )
                .await;
        }
    })
    .await;
}

/// Signal the child's table to its parent on every change. A lean child skips the tables its
/// parent infers: `started`, what the parent holds once the child started
/// ([`super::visibility::start_inferred`]; `None` in a child of a parent from before the lean
/// rules), and its final table when it is the last one completed
/// ([`super::visibility::inferable`]).
pub(super) async fn report_to_parent<W: Interpreted>(
    ctx: &WorkflowContext<W>,
    parent: String,
    started: Option<Progress>,
) {
    let me = ctx.workflow_id().to_owned();
    let lean = started.is_some();
    let last = std::cell::RefCell::new(started);
    on_each_revision(ctx, 0, |progress| {
        let skip = lean
            && last.borrow().as_ref().is_some_and(|l| {
                if progress.finished {
                    progress.status == crate::progress::RunStatus::Completed
                        && super::visibility::inferable(l, &progress)
                } else {
                    super::visibility::same_table(l, &progress)
                }
            });
        *last.borrow_mut() = Some(progress.clone());
        let report = ChildProgress {
            workflow_id: me.clone(),
            progress,
        };
        let parent = parent.clone();
        async move {
            if skip {
                return;
            }
            let handle = ctx.external_workflow(parent, None);
            let signal = handle.signal(
                ChildProgressSignal,
                report,
                SignalWorkflowOptions::default(),
            );
            // A parent that is gone cannot be told; the child's own table stays queryable.
            let _ = signal.await;
        }
    })
    .await;
}

/// Call `act` with the table each time its revision moves past the last one acted on
/// (starting from `initial`), one call at a time, until the run finished and its final
/// revision was handled (or the workflow is cancelled).
async fn on_each_revision<W, F, Fut>(ctx: &WorkflowContext<W>, initial: u64, mut act: F)
where
    W: Interpreted,
    F: FnMut(Progress) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut seen = initial;
    loop {
        if ctx
            .wait_condition(|w| w.progress().revision != seen || w.progress().finished)
            .await
            .is_err()
        {
            return; // cancelled
        }
        let (progress, revision) = ctx.state(|w| (w.progress().clone(), w.progress().revision));
        if revision != seen {
            act(progress).await;
            seen = revision;
        }
        if ctx.state(|w| w.progress().finished && w.progress().revision == seen) {
            return;
        }
    }
}
