//! A run's input is bound to the run it was written for.
//!
//! With the payload codec on, a run's input is sealed, so nobody without the keys can write
//! one; but anyone who can read a history and start a workflow on the namespace can copy a
//! sealed input from one run into a new workflow and have the worker run it again (another
//! meeting's steps, webhooks and posts, under an id of their choosing). The SDK's codec cannot
//! bind a payload to its workflow: in temporalio-sdk 1.1.1 its serialization contexts are
//! empty. So the binding is the application's: whoever starts a run writes the run's own
//! workflow id into its input ([`RunInput::workflow_id`], sealed with the rest), and the
//! interpreter's first workflow task compares it with the run's id (`check`) before
//! anything else (no local activity, no step); a mismatch fails the run with a non-retryable
//! [`WORKFLOW_ID_MISMATCH`] naming both ids.
//!
//! - **Schedules**: a schedule starts each run as `{action id}-{nominal time}`
//!   (`daily-poll-2026-12-07T10:00:00Z`), so an input written for a schedule
//!   ([`RunInput::scheduled`]) is bound to the action's id and accepts that suffix only (a
//!   UTC RFC 3339 time to the second).
//! - **Children**: the parent writes the child's own id and its own id (`parent`) into the
//!   child's input; both are checked, the parent against the run's real parent (the start
//!   event's, which only the parent's own commands can set). A child's input that leaves its
//!   parent to that start event (`reflow-lean-history-3`, [`super::child_start`]) is refused in
//!   a run that has no parent. A child input from before the
//!   binding (no id: a parent of the previous build, in flight or during a rolling deploy) is
//!   accepted when its real parent is the one it names: only that parent's code can start it.
//! - **Inputs without an id**: a history from before the binding (no [`BINDING_PATCH`] marker)
//!   replays as it ran; a new run without one is refused ([`RUN_INPUT_UNBOUND`]), so a sealed
//!   input copied from such an old history cannot be started again either. The patch is only
//!   asked for in that case: a bound run records no marker, and the check itself issues no
//!   command, so histories recorded before it replay unchanged.
//!
//! What is left: an input can still run again under its own id (a reset does that on
//! purpose; a second run of a recording's id is what intake's id-reuse policy governs), and a
//! copy of a schedule's input starts one more run of that schedule's pipeline (the Daily poll:
//! an extra poll, idempotent).
//!
//! [`RunInput::workflow_id`]: super::RunInput::workflow_id
//! [`RunInput::scheduled`]: super::RunInput::scheduled

use temporalio_workflow::common::error::ApplicationFailure;
use temporalio_workflow::{WorkflowContext, WorkflowTermination};

use super::RunInput;

/// Failure type of a run whose input was written for another workflow id (non-retryable).
pub const WORKFLOW_ID_MISMATCH: &str = "WorkflowIdMismatch";

/// Failure type of a new run whose input names no workflow id (non-retryable).
pub const RUN_INPUT_UNBOUND: &str = "RunInputUnbound";

/// Patch marking runs started since inputs carry their workflow id: an input without one in
/// such a run is a new start (refused), not a history from before (replayed as it ran).
pub const BINDING_PATCH: &str = "reflow-run-binding-1";

/// The run as Temporal started it: its workflow id and, for a child, its parent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actual<'a> {
    /// The run's workflow id.
    pub workflow_id: &'a str,
    /// The parent's workflow id, for a child.
    pub parent: Option<&'a str>,
}

/// Why an input does not belong to the run it was given to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The input names another workflow id.
    #[error(
        "run input was written for workflow {bound:?}, but this run is workflow {actual:?}: an input copied from another run is refused"
    )]
    OtherWorkflow {
        /// The id the input names.
        bound: String,
        /// The run's id.
        actual: String,
    },
    /// A child's input names another parent than the run's.
    #[error(
        "run input of workflow {workflow:?} was written for a child of workflow {bound:?}, but this run's parent is {}: an input copied from another run is refused",
        actual.as_deref().map_or_else(|| "none (it was started directly)".to_owned(), |p| format!("workflow {p:?}"))
    )]
    OtherParent {
        /// The run's id.
        workflow: String,
        /// The parent the input names.
        bound: String,
        /// The run's parent.
        actual: Option<String>,
    },
    /// A child's input that leaves its parent to its start event, in a run without a parent.
    #[error(
        "run input of workflow {workflow:?} was written for a child, but this run has no parent (it was started directly): an input copied from another run is refused"
    )]
    Orphan {
        /// The run's id.
        workflow: String,
    },
    /// A new run's input names no workflow id.
    #[error(
        "run input of workflow {actual:?} names no workflow id: runs are started by reflow, which binds each input to its run; an input from before that (or written by hand) is refused"
    )]
    Unbound {
        /// The run's id.
        actual: String,
    },
}

impl Refusal {
    /// The failure type the run fails with.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::OtherWorkflow { .. }
            | Refusal::OtherParent { .. }
            | Refusal::Orphan { .. } => WORKFLOW_ID_MISMATCH,
            Refusal::Unbound { .. } => RUN_INPUT_UNBOUND,
        }
    }
}

/// What the input says against what the run is. `Ok(false)`: the input names no id and no
/// parent, which only a history from before the binding may ([`BINDING_PATCH`] decides).
pub fn compare(input: &RunInput, actual: Actual<'_>) -> Result<bool, Refusal> {
    if let Some(bound) = &input.workflow_id
        && !names(bound, input.scheduled, actual.workflow_id)
    {
        return Err(Refusal::OtherWorkflow {
            bound: bound.clone(),
            actual: actual.workflow_id.to_owned(),
        });
    }
    if let Some(bound) = &input.parent
        && actual.parent != Some(bound.as_str())
    {
        return Err(Refusal::OtherParent {
            workflow: actual.workflow_id.to_owned(),
            bound: bound.clone(),
            actual: actual.parent.map(str::to_owned),
        });
    }
    if super::child_start::leaves_to_start_event(input) && actual.parent.is_none() {
        return Err(Refusal::Orphan {
            workflow: actual.workflow_id.to_owned(),
        });
    }
    // Without an id, a child of a parent from before the binding: its real parent vouches.
    Ok(input.workflow_id.is_some() || input.parent.is_some())
}

/// Whether a run of id `actual` is the one an input bound to `bound` was written for.
fn names(bound: &str, scheduled: bool, actual: &str) -> bool {
    if actual == bound {
        return true;
    }
    scheduled
        && actual
            .strip_prefix(bound)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(is_utc_second)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the nominal time a schedule appends to its action's id.
fn is_utc_second(s: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:ddZ";
    s.len() == SHAPE.len()
        && s.bytes().zip(SHAPE).all(|(b, &want)| match want {
            b'd' => b.is_ascii_digit(),
            other => b == other,
        })
}

/// The check of the run's first workflow task: the input belongs to this run, else the run
/// fails (non-retryable, before any step). Deterministic: the run's id and parent come from
/// its start event; the patch is asked for only when the input names neither.
pub(super) fn check<W>(
    ctx: &WorkflowContext<W>,
    input: &RunInput,
) -> Result<(), WorkflowTermination> {
    let info = ctx.info();
    let parent = info.parent();
    let actual = Actual {
        workflow_id: ctx.workflow_id(),
        parent: parent.as_ref().map(|p| p.workflow_id()),
    };
    let refusal = match compare(input, actual) {
        Ok(true) => return Ok(()),
        Ok(false) if !ctx.patched(BINDING_PATCH) => return Ok(()), // recorded before
        Ok(false) => Refusal::Unbound {
            actual: actual.workflow_id.to_owned(),
        },
        Err(refusal) => refusal,
    };
    if !ctx.is_replaying() {
        tracing::warn!(workflow_id = actual.workflow_id, kind = refusal.kind(), error = %refusal, "run input refused");
    }
    Err(ApplicationFailure::builder(refusal.to_string())
        .type_name(refusal.kind().to_owned())
        .non_retryable(true)
        .build()
        .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interpreter::resolve::Pinned;
    use crate::pipeline::PipelineRef;

    fn input(workflow_id: Option<&str>, parent: Option<&str>, scheduled: bool) -> RunInput {
        RunInput {
            pinned: Pinned::Reference(PipelineRef {
                pipeline: "P".into(),
                version: 1,
                hash: "ab".into(),
            }),
            graph: None,
            input: serde_json::json!({}),
            parent: parent.map(str::to_owned),
            search_attributes: Default::default(),
            workflow_id: workflow_id.map(str::to_owned),
            scheduled,
            lean: 0,
        }
    }

    fn run(id: &str) -> Actual<'_> {
        Actual {
            workflow_id: id,
            parent: None,
        }
    }

    #[test]
    fn an_input_runs_only_under_the_id_it_names() {
        let bound = input(Some("diarization-rec-1"), None, false);
        assert_eq!(compare(&bound, run("diarization-rec-1")), Ok(true));
        let e = compare(&bound, run("attacker-1")).unwrap_err();
        assert_eq!(e.kind(), WORKFLOW_ID_MISMATCH);
        let text = e.to_string();
        assert!(
            text.contains("\"diarization-rec-1\"") && text.contains("\"attacker-1\""),
            "{text}"
        );
        // Not a schedule's input: no suffix.
        assert!(compare(&bound, run("diarization-rec-1-2026-12-07T10:00:00Z")).is_err());
    }

    #[test]
    fn a_schedule_s_input_accepts_its_nominal_time_suffix_only() {
        let s = input(Some("daily-poll"), None, true);
        assert_eq!(compare(&s, run("daily-poll")), Ok(true));
        assert_eq!(
            compare(&s, run("daily-poll-2026-12-07T10:00:00Z")),
            Ok(true)
        );
        for other in [
            "daily-poll-x",
            "daily-poll-2026-12-07T10:00:00",
            "daily-poll-2026-12-07T10:00:00+01:00",
            "daily-pollx2026-12-07T10:00:00Z",
            "daily-poll-2026-12-07T10:00:00Z-1",
            "other-2026-12-07T10:00:00Z",
        ] {
            assert!(compare(&s, run(other)).is_err(), "{other}");
        }
    }

    #[test]
    fn a_child_s_input_names_its_id_and_its_real_parent() {
        let child = input(Some("p-transcribe-0"), Some("p"), false);
        let as_child = |id, parent| Actual {
            workflow_id: id,
            parent,
        };
        assert_eq!(
            compare(&child, as_child("p-transcribe-0", Some("p"))),
            Ok(true)
        );
        // Started directly, or under another parent: refused, naming both.
        let e = compare(&child, as_child("p-transcribe-0", None)).unwrap_err();
        assert!(e.to_string().contains("started directly"), "{e}");
        let e = compare(&child, as_child("p-transcribe-0", Some("q"))).unwrap_err();
        assert!(e.to_string().contains("\"p\"") && e.to_string().contains("\"q\""));
        assert!(compare(&child, as_child("q-transcribe-0", Some("p"))).is_err());
        // From a parent of the previous build: its real parent vouches for it.
        let old = input(None, Some("p"), false);
        assert_eq!(compare(&old, as_child("p-x", Some("p"))), Ok(true));
        assert!(compare(&old, as_child("p-x", None)).is_err());
        // One that leaves its parent to its start event: refused without a parent.
        let short: RunInput = serde_json::from_value(serde_json::json!({
            "input": {}, "workflow_id": "p-transcribe-0", "lean": 3
        }))
        .unwrap();
        assert_eq!(
            compare(&short, as_child("p-transcribe-0", Some("p"))),
            Ok(true)
        );
        let e = compare(&short, as_child("p-transcribe-0", None)).unwrap_err();
        assert!(e.to_string().contains("has no parent"), "{e}");
        assert_eq!(e.kind(), WORKFLOW_ID_MISMATCH);
        let e = compare(&short, as_child("q-transcribe-0", Some("q"))).unwrap_err();
        assert!(matches!(e, Refusal::OtherWorkflow { .. }), "{e}");
    }

    #[test]
    fn an_input_naming_nothing_is_left_to_the_patch() {
        assert_eq!(compare(&input(None, None, false), run("any")), Ok(false));
        let e = Refusal::Unbound {
            actual: "any".into(),
        };
        assert_eq!(e.kind(), RUN_INPUT_UNBOUND);
    }

    #[test]
    fn the_input_reads_without_the_new_fields_and_writes_them_only_when_set() {
        let old: RunInput = serde_json::from_value(serde_json::json!({
            "pipeline": "P", "version": 1, "hash": "ab", "input": {}
        }))
        .unwrap();
        assert_eq!(old.workflow_id, None);
        assert!(!old.scheduled);
        let v = serde_json::to_value(input(Some("w"), None, false)).unwrap();
        assert_eq!(v["workflow_id"], "w");
        assert!(v.get("scheduled").is_none());
        let v = serde_json::to_value(input(Some("w"), None, true)).unwrap();
        assert_eq!(v["scheduled"], true);
    }
}
