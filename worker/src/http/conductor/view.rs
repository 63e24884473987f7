//! A run (and its children) as the Conductor Workflow JSON (docs/contracts/conductor-status.md §2,
//! §3.2), assembled from a run's rows (its unit tests are in `view/tests.rs`).
//!
//! - The run's own steps become SIMPLE rows ([`super::rows`]), less the `on_failure` hook
//!   (`mark_failed` is internal).
//! - Each fan-out becomes FORK, its members, JOIN, with the refs its step declares
//!   (`conductor: {fork, join}` in the pipeline, default `fork_{id}`/`join_{id}`). An activity
//!   fan-out's members are its `{id}_{i}` activities; a child fan-out gives one group per step
//!   of the child pipeline (`pad_track_{i}` of every track under `fork_track_padding`), its
//!   members taken from every child, and one member expected from each child.
//! - A JOIN is `IN_PROGRESS` until every member it waits for is terminal (a child that has not
//!   yet scheduled its step, or an activity fan-out whose successors have not started, keeps
//!   it open), then `COMPLETED` if all succeeded, else `FAILED`; `CANCELED` when the run closed
//!   with members unfinished.
//! - Steps skipped by `when:` (their successors ran, or the run completed without them) are
//!   SKIPPED rows, as are fan-outs with no members.
//! - Rows are sorted by scheduled time; a FORK goes right before its first member and its JOIN
//!   right after its last one.
//!
//! This file assembles the view from a run; its parts are modules: the FORK/JOIN groups and
//! the rows' order (`fork_join`), the rows of steps that did not run (`skipped`) and the
//! `workflowDefinition` (`definition`). The rows are in [`super::rows`], the JSON types in
//! [`super::model`].

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
use workflow::pipeline::{Graph, Pipeline, Run as StepRun, Step as StepDef};

use super::model::{Task, TaskStatus, Workflow, WorkflowStatus};
use super::rows::{Owner, step_rows};
use crate::history::ChildOutcome;
use crate::history::Run;
use crate::history::{declared, declared_as};
use activities::db::attempts::AttemptRow;

mod definition;
mod fork_join;
mod skipped;

use definition::definition;
pub(super) use fork_join::latest_per_ref;
use fork_join::{Group, order};
use skipped::skipped_rows;

/// A run with its `step_attempt` rows.
pub struct Loaded {
    /// The run.
    pub run: Run,
    /// Its attempts.
    pub attempts: Vec<AttemptRow>,
}

/// The transcript a run belongs to.
pub fn correlation_id(run: &Run) -> Option<String> {
    run.pipeline_input()["transcript_id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The Conductor status of a run (§5.1).
pub fn status(run: &Run) -> WorkflowStatus {
    match run.status {
        WorkflowExecutionStatus::Running
            if !run.pending.is_empty() && run.pending.iter().all(|p| p.paused) =>
        {
            WorkflowStatus::Paused
        }
        WorkflowExecutionStatus::Completed => WorkflowStatus::Completed,
        WorkflowExecutionStatus::Failed => WorkflowStatus::Failed,
        WorkflowExecutionStatus::TimedOut => WorkflowStatus::TimedOut,
        WorkflowExecutionStatus::Terminated | WorkflowExecutionStatus::Canceled => {
            WorkflowStatus::Terminated
        }
        _ => WorkflowStatus::Running,
    }
}

/// `output`: the result of a completed run, else `{}`.
pub fn output(run: &Run) -> Value {
    match (&run.result, run.status) {
        (Value::Object(_), WorkflowExecutionStatus::Completed) => run.result.clone(),
        (Value::Null, _) => json!({}),
        (v, WorkflowExecutionStatus::Completed) => json!({ "result": v }),
        _ => json!({}),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The Workflow JSON of `main` (its children's rows included when it has any).
pub fn workflow(main: &Loaded, children: &[Loaded], include_tasks: bool) -> Workflow {
    let run = &main.run;
    let pipeline = run.pipeline();
    let tasks = tasks(main, children, pipeline.as_ref());
    let failed: Vec<&Task> = latest_per_ref(&tasks)
        .into_iter()
        .filter(|t| t.status.is_failure() && !matches!(t.task_type.as_str(), "FORK" | "JOIN"))
        .collect();
    let status = status(run);
    let reason = match status {
        WorkflowStatus::Failed | WorkflowStatus::TimedOut => failed
            .iter()
            .min_by_key(|t| t.end_time)
            .map(|t| {
                format!(
                    "step {} failed: {}",
                    t.reference_task_name,
                    t.reason_for_incompletion.as_deref().unwrap_or("failed")
                )
            })
            .or_else(|| run.reason.clone()),
        WorkflowStatus::Terminated => run.reason.clone(),
        _ => None,
    };
    let mut input = run.pipeline_input().clone();
    if let (Value::Object(m), Some(p)) = (&mut input, &pipeline) {
        m.insert("pipeline_hash".into(), json!(p.hash));
    }
    Workflow {
        workflow_id: run.workflow_id.clone(),
        workflow_name: run.workflow_type.clone(),
        workflow_version: pipeline.as_ref().map_or(1, |p| p.version),
        correlation_id: correlation_id(run),
        status,
        create_time: run.start_ms,
        start_time: run.start_ms,
        // The newest change the view shows: a child's step heartbeating moves its parent too,
        // a local step's attempt (recorded before its marker) too.
        update_time: children
            .iter()
            .map(|c| c.run.update_ms)
            .chain(tasks.iter().map(|t| t.update_time))
            .fold(run.update_ms, i64::max),
        end_time: run.close_ms,
        input: if input.is_object() { input } else { json!({}) },
        output: output(run),
        reason_for_incompletion: reason,
        failed_reference_task_names: failed
            .iter()
            .map(|t| t.reference_task_name.clone())
            .collect(),
        // Each name once: Conductor's `failedTaskNames` is a set (two tracks failing in one step
        // name it once).
        failed_task_names: failed.iter().fold(Vec::new(), |mut names, t| {
            if !names.contains(&t.task_def_name) {
                names.push(t.task_def_name.clone());
            }
            names
        }),
        parent_workflow_id: run.parent_id.clone(),
        priority: 0,
        variables: Map::new(),
        task_to_domain: Map::new(),
        last_retried_time: run.retried_ms,
        workflow_definition: definition(pipeline.as_ref(), &run.workflow_type),
        tasks: if include_tasks { tasks } else { Vec::new() },
    }
}

/// Every task row of `main` and its children, ordered, `seq` set.
fn tasks(main: &Loaded, children: &[Loaded], pipeline: Option<&Pipeline>) -> Vec<Task> {
    let run = &main.run;
    let owner = Owner {
        run,
        correlation_id: correlation_id(run),
        now_ms: now_ms(),
    };
    let graph = pipeline.and_then(|p| p.graph(&run.workflow_type));
    let hook = pipeline
        .and_then(|p| p.on_failure.as_ref())
        .filter(|_| graph.is_some_and(|g| pipeline.is_some_and(|p| g.name == p.main.name)));
    let mut plain: Vec<Task> = Vec::new();
    // Step id → its group.
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let unfinished = unfinished_local_steps(run, pipeline, &main.attempts);
    for step in run.steps.iter().chain(&unfinished) {
        if hook.is_some_and(|h| h.id == step.activity_id) {
            continue;
        }
        let def = pipeline.and_then(|p| declared(p, &run.workflow_type, step));
        let rows = step_rows(&owner, step, def, &main.attempts);
        match def.filter(|d| d.for_each.is_some()) {
            Some(d) => {
                let (fork, join) = d.fork_join();
                let g = groups.entry(d.id.clone()).or_insert_with(|| Group {
                    fork,
                    join,
                    expected: Vec::new(),
                    complete: !run.is_running() || successors_started(graph, &d.id, run),
                    members: Vec::new(),
                    at: step.scheduled_ms,
                });
                if !g.expected.contains(&step.activity_id) {
                    g.expected.push(step.activity_id.clone());
                }
                g.members.extend(rows);
            }
            None => plain.extend(rows),
        }
    }
    // Child fan-outs: per step of the child pipeline, one member from every child.
    if let (Some(p), Some(graph)) = (pipeline, graph) {
        for fan_out in graph.steps.iter().filter(|s| s.for_each.is_some()) {
            let StepRun::Child(child_type) = &fan_out.run else {
                continue;
            };
            let Some(child_graph) = p.graph(child_type) else {
                continue;
            };
            let started: Vec<&crate::history::Child> = run
                .children
                .iter()
                .filter(|c| c.workflow_type == *child_type)
                .collect();
            for inner in &child_graph.steps {
                let (fork, join) = inner.fork_join();
                let mut g = Group {
                    fork,
                    join,
                    expected: Vec::new(),
                    complete: true,
                    members: Vec::new(),
                    at: started.iter().map(|c| c.initiated_ms).min().unwrap_or(0),
                };
                for c in &started {
                    let loaded = children.iter().find(|l| l.run.workflow_id == c.workflow_id);
                    let expected = member_ref(inner, &c.input);
                    let mut found = false;
                    if let Some(l) = loaded {
                        let child_owner = Owner {
                            run: &l.run,
                            correlation_id: owner.correlation_id.clone(),
                            now_ms: owner.now_ms,
                        };
                        for step in &l.run.steps {
                            if declared(p, child_type, step).is_some_and(|d| d.id == inner.id) {
                                found = true;
                                if !g.expected.contains(&step.activity_id) {
                                    g.expected.push(step.activity_id.clone());
                                }
                                for mut row in
                                    step_rows(&child_owner, step, Some(inner), &l.attempts)
                                {
                                    // The parent closed first: the child is being
                                    // terminated with it.
                                    if !run.is_running() && !row.status.is_terminal() {
                                        row.status = TaskStatus::Canceled;
                                        row.executed = true;
                                        row.end_time = run.close_ms;
                                    }
                                    if let Value::Object(m) = &mut row.input_data {
                                        m.insert(
                                            "track_workflow_id".into(),
                                            json!(l.run.workflow_id),
                                        );
                                    }
                                    g.members.push(row);
                                }
                            }
                        }
                    }
                    if let (false, Some(ChildOutcome::StartFailed(cause)), Some(r)) =
                        (found, &c.outcome, &expected)
                    {
                        // The child never started (§5.2): its members failed for good.
                        let mut row = owner.row(
                            &inner_activity(inner),
                            r,
                            1,
                            TaskStatus::FailedWithTerminalError,
                        );
                        row.scheduled_time = c.initiated_ms;
                        row.end_time = c.initiated_ms;
                        row.update_time = c.initiated_ms;
                        row.workflow_instance_id = c.workflow_id.clone();
                        row.reason_for_incompletion = Some(format!("child start failed: {cause}"));
                        row.workflow_task.kind = "SIMPLE".into();
                        g.expected.push(r.clone());
                        g.members.push(row);
                    } else if !found {
                        // The child has not scheduled it (yet): the JOIN waits for it.
                        g.complete = false;
                        if let Some(r) = expected
                            && !g.expected.contains(&r)
                        {
                            g.expected.push(r);
                        }
                    }
                }
                if !started.is_empty() {
                    groups.insert(format!("{}/{}", fan_out.id, inner.id), g);
                }
            }
        }
        let (skipped, empty) = skipped_rows(&owner, p, graph, hook, &plain, &groups);
        plain.extend(skipped);
        groups.extend(empty);
    }
    order(&owner, plain, groups.into_values().collect())
}

/// The `local: true` steps of the run that have attempts recorded but no marker yet (a local
/// activity's marker is written when it finishes): running, or between attempts.
fn unfinished_local_steps(
    run: &Run,
    pipeline: Option<&Pipeline>,
    attempts: &[AttemptRow],
) -> Vec<crate::history::Step> {
    let Some(p) = pipeline else {
        return Vec::new();
    };
    let mut out: Vec<crate::history::Step> = Vec::new();
    for a in attempts.iter().filter(|a| a.run_id == run.run_id) {
        if run.steps.iter().any(|s| s.activity_id == a.activity_id)
            || out.iter().any(|s| s.activity_id == a.activity_id)
        {
            continue;
        }
        let Some(d) = declared_as(p, &run.workflow_type, &a.activity_id, &a.activity_type)
            .filter(|d| d.local)
        else {
            continue;
        };
        out.push(crate::history::Step {
            activity_id: a.activity_id.clone(),
            activity_type: a.activity_type.clone(),
            task_queue: String::new(),
            scheduled_ms: super::rows::ms(Some(&a.started_at)),
            input: json!({}),
            start_to_close_s: 0,
            heartbeat_s: 0,
            max_attempts: i32::try_from(d.options.retry.maximum_attempts).unwrap_or(0),
            started: None,
            close: None,
            scheduled_by: 0,
            local: true,
        });
    }
    out
}

/// The activity type a step runs (for a child step, its child graph's name).
fn inner_activity(inner: &StepDef) -> String {
    match &inner.run {
        StepRun::Activity(a) | StepRun::Child(a) => a.clone(),
    }
}

/// The ref a child's member of `inner` will have: its `activity_id` template rendered on the
/// child's input, or the step id.
fn member_ref(inner: &StepDef, child_input: &Value) -> Option<String> {
    let Some(template) = &inner.activity_id else {
        return Some(inner.id.clone());
    };
    let mut scope = workflow::expr::Scope::new();
    scope.insert("input".into(), child_input["input"].clone());
    match workflow::expr::render(&Value::String(template.clone()), &scope).ok()? {
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// Whether a step that (directly or not) needs `id` has been scheduled.
fn successors_started(graph: Option<&Graph>, id: &str, run: &Run) -> bool {
    let Some(graph) = graph else { return false };
    let mut after: BTreeSet<&str> = BTreeSet::from([id]);
    let mut changed = true;
    while changed {
        changed = false;
        for s in &graph.steps {
            if !after.contains(s.id.as_str()) && s.needs.iter().any(|n| after.contains(n.as_str()))
            {
                after.insert(&s.id);
                changed = true;
            }
        }
    }
    after.remove(id);
    run.steps.iter().any(|s| {
        after
            .iter()
            .any(|a| s.activity_id == *a || s.activity_id.starts_with(&format!("{a}_")))
    }) || (!run.children.is_empty()
        && graph
            .steps
            .iter()
            .any(|s| after.contains(s.id.as_str()) && matches!(s.run, StepRun::Child(_))))
}

#[cfg(test)]
mod tests;
