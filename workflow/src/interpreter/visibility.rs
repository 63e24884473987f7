//! What a run shows the Temporal server's visibility (search attributes and memo), and the
//! action-saving rules of runs that took [`LEAN_PATCH`] (issue 41: Temporal Cloud bills every
//! upsert, memo change and signal as an action).
//!
//! A lean run:
//! - asks for one patch, [`LEAN_PATCH`], in its first workflow task, and takes the older
//!   patches it implies ([`super::SEARCH_ATTRIBUTES_PATCH`], the memo and cancelled-hook
//!   patches) as given, so it records one patch marker (each costs a `TemporalChangeVersion`
//!   upsert) instead of several;
//! - sets its search attributes and its first `CurrentStep` in one upsert, and later moves
//!   `CurrentStep` once per workflow task at most: only when no local step is in flight
//!   (local steps run inside the workflow task; the next queued step shows instead), after
//!   every step that finished in the same activation was settled, and not when the run
//!   completes (a closed run has no step in flight; its status says it ended);
//! - leaves the memo as the run's start set it when it already names the pipeline;
//! - starts its children with their search attributes (the parent's, the pipeline's,
//!   `CurrentStep` as the child's first steps) in the start command, so a child sets none
//!   itself; a child asks for no patch: the attributes its start event carries say that its
//!   parent took the patch (a parent from before it started its children with none);
//! - infers a child's first table when the child has started ([`start_inferred`]: its root
//!   activities running) and its final table when it completes ([`finish_inferred`]), so a
//!   child whose table is exactly what its parent infers does not signal it ([`inferable`]):
//!   a track child sends no `child_progress` signal at all.
//!
//! Runs recorded before the patch replay as they ran: every rule here is off for them.

use std::collections::BTreeMap;

use serde_json::json;
use temporalio_workflow::WorkflowContext;
use temporalio_workflow::common::MemoValue;
use temporalio_workflow::common::search_attributes::{SearchAttributeUpdate, SearchAttributes};

use crate::expr::Scope;
use crate::pipeline::{Graph, Pipeline, Run, Step};
use crate::progress::{Progress, RunStatus, StepRow, StepStatus};
use crate::search;

/// Patch marking runs that spend fewer Temporal actions (see the module's rules).
pub const LEAN_PATCH: &str = "reflow-fewer-actions-1";

/// Patch marking runs that also write less history (issue 41): a run that takes it follows
/// every rule of [`LEAN_PATCH`] (it asks for this patch instead, so it still records one
/// patch marker) and starts its children with a smaller input ([`Lean::history`]).
pub const LEAN_HISTORY_PATCH: &str = "reflow-lean-history-2";

/// The rules a run follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Lean {
    /// The action-saving rules of [`LEAN_PATCH`] (this module's).
    pub actions: bool,
    /// The history-saving rules of [`LEAN_HISTORY_PATCH`]: its children are started with
    /// `lean: 2` in their input and without their declared search attributes there (they
    /// read them from their start event, where the parent set them), and such a child takes
    /// its graph from the process's registered definitions by the hash its input names
    /// (`resolve`: no `resolve_pipeline` marker in its history).
    pub history: bool,
    /// The rules of [`super::child_start::LEAN_HISTORY_3_PATCH`]: its children are started
    /// with an input that leaves their version, graph and parent to their start event.
    pub start_event: bool,
}

/// The rules a run follows: a child, the lean rules when it started with search attributes
/// (a lean parent set them; deterministic: they are in its start event) and the history rules
/// when its input says `lean: 2` or more (a child starts no children of its own); a run
/// without a parent, as its history's patch marker says (`reflow-lean-history-3`, else
/// [`LEAN_HISTORY_PATCH`], else [`LEAN_PATCH`]; asked for here, in its first task).
pub(super) fn rules<W>(ctx: &WorkflowContext<W>, input: &super::RunInput) -> Lean {
    if input.parent.is_some() {
        let actions = ctx.search_attributes().contains_key(&search::PIPELINE_NAME);
        Lean {
            actions,
            history: actions && input.lean >= 2,
            start_event: false,
        }
    } else if ctx.patched(super::child_start::LEAN_HISTORY_3_PATCH) {
        Lean {
            actions: true,
            history: true,
            start_event: true,
        }
    } else if ctx.patched(LEAN_HISTORY_PATCH) {
        Lean {
            actions: true,
            history: true,
            start_event: false,
        }
    } else {
        Lean {
            actions: ctx.patched(LEAN_PATCH),
            history: false,
            start_event: false,
        }
    }
}

/// The declared search attributes a lean-history child reads from its start event (its
/// parent set them there and left them out of its input).
pub(super) fn inherited<W>(
    ctx: &WorkflowContext<W>,
    pipeline: &Pipeline,
) -> BTreeMap<String, String> {
    let attributes = ctx.search_attributes();
    pipeline
        .search_attributes
        .keys()
        .filter_map(|k| Some((k.clone(), attributes.get(&search::declarable(k)?)?)))
        .collect()
}

/// `patched(id)`, taken as given in a lean run (its one patch implies the older ones).
pub(super) fn patched<W>(ctx: &WorkflowContext<W>, lean: bool, id: &str) -> bool {
    lean || ctx.patched(id)
}

/// The `CurrentStep` value of the steps in flight: their ids, comma-separated; a lean run
/// leaves local steps out.
pub(super) fn label<'s>(running: impl Iterator<Item = &'s Step>, lean: bool) -> String {
    running
        .filter(|s| !(lean && s.local))
        .map(|s| s.id.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The `CurrentStep` a lean child starts with: the queued steps that need nothing and have no
/// condition, which its first task starts (the parent sets it; the child corrects it if its
/// first task starts something else).
pub(super) fn first_steps(graph: &Graph) -> String {
    label(
        graph
            .steps
            .iter()
            .filter(|s| s.needs.is_empty() && s.when.is_none()),
        true,
    )
}

/// The run's search attributes (declared ones, pipeline name, version, hash).
pub(super) fn run_attributes(
    pipeline: &Pipeline,
    declared: &BTreeMap<String, String>,
) -> Vec<SearchAttributeUpdate> {
    let mut updates = vec![
        search::PIPELINE_NAME.value_set(pipeline.name.clone()),
        search::PIPELINE_VERSION.value_set(i64::from(pipeline.version)),
        search::PIPELINE_HASH.value_set(pipeline.hash.clone()),
    ];
    updates.extend(
        declared
            .iter()
            .filter_map(|(k, v)| search::declarable(k).map(|key| key.value_set(v.clone()))),
    );
    updates
}

/// What a lean parent starts a child with: the run's attributes and the child's first steps.
pub(super) fn child_attributes(
    pipeline: &Pipeline,
    declared: &BTreeMap<String, String>,
    child: &Graph,
) -> SearchAttributes {
    let mut updates = run_attributes(pipeline, declared);
    let first = first_steps(child);
    if !first.is_empty() {
        updates.push(search::CURRENT_STEP.value_set(first));
    }
    SearchAttributes::new(updates)
}

/// Set the memo (pipeline name, version, hash); a lean run skips it when the start already
/// set the same values (`reflow`'s starts do).
pub(super) fn set_memo<W>(ctx: &WorkflowContext<W>, pipeline: &Pipeline, lean: bool) {
    let memo = [
        ("pipeline", json!(pipeline.name)),
        ("pipeline_version", json!(pipeline.version)),
        ("pipeline_hash", json!(pipeline.hash)),
    ];
    if lean {
        let current = ctx.memo();
        let same = memo.iter().all(|(k, v)| {
            current
                .get::<serde_json::Value>(k)
                .ok()
                .flatten()
                .is_some_and(|c| &c == v)
        });
        if same {
            return;
        }
    }
    if let Err(e) = ctx.upsert_memo(memo.map(|(k, v)| (k, Some(MemoValue::new(v)))))
        && !ctx.is_replaying()
    {
        tracing::warn!(workflow_id = ctx.workflow_id(), error = %e, "memo not set");
    }
}

/// The table a lean parent infers for a child of graph `graph` (of `pipeline`) started with
/// `input`, once it started: every step pending but the roots (no `needs`, no `when:`),
/// running their first attempt since `now`. `None` when a root is not a plain queued activity
/// or its activity id does not render from the input alone: the child's first signal says.
/// The child computes the same to know whether to signal its first table.
pub fn start_inferred(
    pipeline: &Pipeline,
    graph: &Graph,
    input: &serde_json::Value,
    now: Option<&String>,
) -> Option<Progress> {
    let args = super::inputs::resolve_inputs(graph, input.clone()).ok()?;
    let mut scope = Scope::new();
    scope.insert("input".into(), args);
    let mut steps: Vec<StepRow> = graph.steps.iter().map(super::step::initial_row).collect();
    for (step, row) in graph.steps.iter().zip(steps.iter_mut()) {
        if !(step.needs.is_empty() && step.when.is_none()) {
            continue;
        }
        if step.local || step.for_each.is_some() || !matches!(step.run, Run::Activity(_)) {
            return None;
        }
        let activity_id = match &step.activity_id {
            None => step.id.clone(),
            Some(t) => {
                match crate::expr::render(&serde_json::Value::String(t.clone()), &scope).ok()? {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                }
            }
        };
        row.status = StepStatus::Running;
        row.attempt = 1;
        row.activity_id = Some(activity_id);
        row.started_at = now.cloned();
    }
    Some(Progress {
        pipeline: graph.name.clone(),
        version: pipeline.version,
        pipeline_hash: pipeline.hash.clone(),
        status: RunStatus::Running,
        steps,
        revision: 0,
        finished: false,
    })
}

/// Whether `now` (a child's table) is `inferred` (what its parent holds for it), times of
/// starting and completion aside.
pub fn same_table(inferred: &Progress, now: &Progress) -> bool {
    strip(inferred) == strip(now)
}

fn strip(p: &Progress) -> Progress {
    fn times(r: &mut StepRow) {
        r.started_at = None;
        r.finished_at = None;
        r.members.iter_mut().for_each(times);
    }
    let mut p = p.clone();
    p.revision = 0;
    p.finished = false;
    p.steps.iter_mut().for_each(times);
    p
}

/// The table a parent infers for a child that completed: every row (and member) still
/// running completed at `now`, the run completed and finished. A lean child does not signal
/// a final table that equals this inference of the table it last signalled.
pub fn finish_inferred(p: &mut Progress, now: Option<&String>) {
    fn finish(r: &mut StepRow, now: Option<&String>) {
        if r.status == StepStatus::Running {
            r.status = StepStatus::Completed;
            r.finished_at = now.cloned();
        }
        for m in r.members.iter_mut() {
            finish(m, now);
        }
    }
    for r in p.steps.iter_mut() {
        finish(r, now);
    }
    p.status = RunStatus::Completed;
    p.finished = true;
}

/// Whether `last` (the table a child last signalled) completed by [`finish_inferred`] is
/// `now` (its final table), times aside.
pub fn inferable(last: &Progress, now: &Progress) -> bool {
    let mut inferred = last.clone();
    finish_inferred(&mut inferred, None);
    same_table(&inferred, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, status: StepStatus) -> StepRow {
        let mut r: StepRow = serde_json::from_value(json!({
            "id": id, "runs": id, "status": "pending", "attempt": 1, "max_attempts": 4,
            "optional": false, "members": []
        }))
        .unwrap();
        r.status = status;
        r
    }

    fn table(status: RunStatus, rows: Vec<StepRow>) -> Progress {
        Progress {
            pipeline: "TrackProcessing".into(),
            version: 2,
            pipeline_hash: "h".into(),
            status,
            steps: rows,
            revision: 7,
            finished: false,
        }
    }

    #[test]
    fn a_child_that_completed_what_it_ran_need_not_say_so() {
        let last = table(
            RunStatus::Running,
            vec![row("transcribe_track", StepStatus::Running)],
        );
        let mut done = row("transcribe_track", StepStatus::Completed);
        done.finished_at = Some("2026-12-07T15:00:00.000Z".into());
        let now = table(RunStatus::Completed, vec![done]);
        assert!(inferable(&last, &now));
        let mut parent_view = last.clone();
        finish_inferred(&mut parent_view, Some(&"t".to_owned()));
        assert_eq!(parent_view.steps[0].status, StepStatus::Completed);
        assert_eq!(parent_view.steps[0].finished_at.as_deref(), Some("t"));
        assert_eq!(parent_view.status, RunStatus::Completed);
    }

    #[test]
    fn a_skipped_step_a_failure_or_a_new_step_is_signalled() {
        let last = table(
            RunStatus::Running,
            vec![row("a", StepStatus::Running), row("b", StepStatus::Pending)],
        );
        let skipped = table(
            RunStatus::Completed,
            vec![row("a", StepStatus::Skipped), row("b", StepStatus::Pending)],
        );
        assert!(!inferable(&last, &skipped));
        let ran_more = table(
            RunStatus::Completed,
            vec![
                row("a", StepStatus::Completed),
                row("b", StepStatus::Completed),
            ],
        );
        assert!(!inferable(&last, &ran_more));
        let failed = table(
            RunStatus::Failed,
            vec![row("a", StepStatus::Failed), row("b", StepStatus::Skipped)],
        );
        assert!(!inferable(&last, &failed));
    }

    /// A pipeline `M` of the activities `a`, `b`, `merge` and `mix`, validated.
    fn parsed(yaml: &str) -> Pipeline {
        let catalog = crate::Catalog::new()
            .activity("a", &[])
            .activity("b", &[])
            .activity("merge", &[])
            .activity("mix", &[])
            .workflow_type("M");
        crate::parse_and_validate("t.yaml", yaml, &catalog).unwrap()
    }

    #[test]
    fn a_started_child_is_inferred_with_its_roots_running_unless_a_root_is_not_plain() {
        let yaml = "name: M\nversion: 3\ninputs:\n  n: {type: integer}\nsteps:\n  - {id: first, activity: a, activity_id: \"a_${input.n}\", start_to_close: 1s}\n  - {id: then, activity: b, needs: [first], start_to_close: 1s}\n";
        let p = parsed(yaml);
        let at = "2026-12-07T15:00:00.000Z".to_owned();
        let t = start_inferred(&p, &p.main, &json!({"n": 2}), Some(&at)).unwrap();
        assert_eq!((t.version, t.status), (3, RunStatus::Running));
        assert_eq!(t.steps[0].status, StepStatus::Running);
        assert_eq!(t.steps[0].activity_id.as_deref(), Some("a_2"));
        assert_eq!(t.steps[0].started_at.as_ref(), Some(&at));
        assert_eq!(t.steps[1].status, StepStatus::Pending);
        // The child's own table differs in its times only: the same.
        let mut child = t.clone();
        child.steps[0].started_at = Some("2026-12-07T15:00:00.004Z".into());
        child.revision = 3;
        assert!(same_table(&t, &child));
        child.steps[0].attempt = 2;
        assert!(!same_table(&t, &child));
        // An input the graph refuses, or a local root: nothing inferred.
        assert!(start_inferred(&p, &p.main, &json!({}), None).is_none());
        let local = parsed(&yaml.replace("{id: first,", "{id: first, local: true,"));
        assert!(start_inferred(&local, &local.main, &json!({"n": 2}), None).is_none());
    }

    #[test]
    fn local_steps_are_left_out_of_a_lean_label_and_a_child_starts_with_its_roots() {
        let p = parsed(
            "name: M\nversion: 1\nsteps:\n  - {id: merge, activity: merge, local: true, start_to_close: 1s}\n  - {id: mix, activity: mix, start_to_close: 1s}\n  - {id: late, activity: mix, needs: [mix], start_to_close: 1s}\n",
        );
        let steps = &p.main.steps;
        assert_eq!(label(steps.iter(), true), "mix,late");
        assert_eq!(label(steps.iter(), false), "merge,mix,late");
        assert_eq!(first_steps(&p.main), "mix");
    }
}
