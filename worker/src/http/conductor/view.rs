//! A run (and its children) as the Conductor Workflow JSON (docs/contracts/conductor-status.md §2,
//! §3.2). One concept, one file: the assembly of that JSON from a run's rows (its unit tests are in
//! `view/tests.rs`).
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
//! One concept, one file: assembling the view from a run (the rows are in [`super::rows`], the
//! JSON types in [`super::model`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
use workflow::pipeline::{Graph, Pipeline, Run as StepRun, Step as StepDef};

use super::model::{Definition, Task, TaskStatus, Workflow, WorkflowStatus, WorkflowTask};
use super::rows::{Owner, step_rows};
use crate::history::ChildOutcome;
use crate::history::Run;
use crate::history::{declared, declared_as};
use activities::db::attempts::AttemptRow;

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

/// One FORK/JOIN group under construction.
struct Group {
    fork: String,
    join: String,
    /// Member refs the JOIN waits for, in order (known before their rows exist).
    expected: Vec<String>,
    /// Every member is known (no more will be scheduled).
    complete: bool,
    members: Vec<Task>,
    /// When the fan-out started (its first child initiated, or when a fan-out over nothing
    /// was decided): the FORK's time while no member has a row.
    at: i64,
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

/// The activity type a child pipeline's step runs.
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

/// COMPLETED rows of the steps a memoized run reused (`outputData` their stored result with
/// `"reused": true`), SKIPPED rows of the main graph's steps that never ran although the run
/// went past them (a `when:` that was false), and the FORK/JOIN groups of fan-outs that had
/// nothing to fan out over (§3.2: a FORK and a COMPLETED JOIN with an empty `joinOn`), keyed as
/// [`tasks`] keys
/// groups.
fn skipped_rows(
    owner: &Owner<'_>,
    pipeline: &Pipeline,
    graph: &Graph,
    hook: Option<&StepDef>,
    plain: &[Task],
    groups: &BTreeMap<String, Group>,
) -> (Vec<Task>, Vec<(String, Group)>) {
    let run = owner.run;
    let ran = |id: &str| {
        run.steps
            .iter()
            .any(|s| s.activity_id == id || s.activity_id.starts_with(&format!("{id}_")))
            || groups.contains_key(id)
            || groups.keys().any(|k| k.starts_with(&format!("{id}/")))
    };
    let mut out = Vec::new();
    let mut empty = Vec::new();
    for s in &graph.steps {
        if hook.is_some_and(|h| h.id == s.id) || ran(&s.id) {
            continue;
        }
        let went_past = run.status == WorkflowExecutionStatus::Completed
            || successors_started(Some(graph), &s.id, run);
        if !went_past {
            continue;
        }
        // Decided when its last dependency ended.
        let at = plain
            .iter()
            .chain(groups.values().flat_map(|g| g.members.iter()))
            .filter(|t| {
                s.needs.iter().any(|n| {
                    t.reference_task_name == *n
                        || t.reference_task_name.starts_with(&format!("{n}_"))
                })
            })
            .map(|t| t.end_time)
            .max()
            .unwrap_or(run.start_ms);
        if let Some(output) = run.memo_plan.get("reused").and_then(|r| r.get(&s.id)) {
            // Reused by a memoized run (docs/architecture.md, "Memoized re-runs"): nothing ran;
            // COMPLETED with the stored result, marked.
            let kind = match &s.run {
                StepRun::Activity(a) | StepRun::Child(a) => a.clone(),
            };
            let mut row = owner.row(&kind, &s.id, 1, TaskStatus::Completed);
            row.scheduled_time = at;
            row.start_time = at;
            row.first_start_time = at;
            row.end_time = at;
            row.update_time = at;
            row.output_data = match output {
                Value::Object(m) => {
                    let mut m = m.clone();
                    m.insert("reused".into(), Value::Bool(true));
                    Value::Object(m)
                }
                other => json!({"reused": true, "output": other}),
            };
            row.workflow_task.kind = "SIMPLE".into();
            row.workflow_task.optional = s.optional;
            out.push(row);
            continue;
        }
        if s.for_each.is_some() && s.when.is_none() {
            // A fan-out over nothing: its FORK and its JOIN, joining nothing.
            let inner: Vec<&StepDef> = match &s.run {
                StepRun::Activity(_) => vec![s],
                StepRun::Child(c) => pipeline
                    .graph(c)
                    .map(|g| g.steps.iter().collect())
                    .unwrap_or_default(),
            };
            for d in inner {
                let (fork, join) = d.fork_join();
                empty.push((
                    format!("{}/{}", s.id, d.id),
                    Group {
                        fork,
                        join,
                        expected: Vec::new(),
                        complete: true,
                        members: Vec::new(),
                        at,
                    },
                ));
            }
            continue;
        }
        let why = match &s.when {
            Some(w) => format!("skipped: `when: {w}` was false"),
            None => "skipped: no items to fan out over".to_owned(),
        };
        let kind = match &s.run {
            StepRun::Activity(a) | StepRun::Child(a) => a.clone(),
        };
        let mut row = owner.row(&kind, &s.id, 1, TaskStatus::Skipped);
        row.scheduled_time = at;
        row.end_time = at;
        row.update_time = at;
        row.reason_for_incompletion = Some(why);
        row.workflow_task.kind = "SIMPLE".into();
        row.workflow_task.optional = s.optional;
        out.push(row);
    }
    (out, empty)
}

/// The numeric suffix of a ref (`pad_track_10` → 10), for a natural order of members.
fn natural(reference: &str) -> (String, u64) {
    match reference.rsplit_once('_') {
        Some((head, n)) if n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() => {
            (head.to_owned(), n.parse().unwrap_or(0))
        }
        _ => (reference.to_owned(), 0),
    }
}

/// Sort the rows, wrap each group in its FORK and JOIN, number them. A group with no member
/// row yet (its children not started on it, or nothing to fan out over) is its FORK and JOIN,
/// side by side, at the time the fan-out started.
fn order(owner: &Owner<'_>, plain: Vec<Task>, groups: Vec<Group>) -> Vec<Task> {
    let key = |t: &Task| {
        (
            t.scheduled_time,
            natural(&t.reference_task_name),
            t.retry_count,
        )
    };
    let mut all: Vec<(Task, Option<usize>)> = plain.into_iter().map(|t| (t, None)).collect();
    let mut joins: Vec<(Task, Task)> = Vec::new();
    // A memberless group's FORK row index in `all` → its JOIN.
    let mut lone: Vec<(String, Task)> = Vec::new();
    for (gi, g) in groups.into_iter().enumerate() {
        let (fork, join) = fork_join(owner, &g);
        if g.members.is_empty() {
            lone.push((fork.task_id.clone(), join.clone()));
            all.push((fork.clone(), None));
        }
        joins.push((fork, join));
        all.extend(g.members.into_iter().map(|t| (t, Some(gi))));
    }
    all.sort_by_key(|a| key(&a.0));
    let mut first: BTreeMap<usize, usize> = BTreeMap::new();
    let mut last: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, (_, g)) in all.iter().enumerate() {
        if let Some(g) = g {
            first.entry(*g).or_insert(i);
            last.insert(*g, i);
        }
    }
    let mut out = Vec::new();
    let mut joins: Vec<Option<(Task, Task)>> = joins.into_iter().map(Some).collect();
    let mut pending_joins: Vec<(usize, Task)> = Vec::new();
    for (i, (t, g)) in all.into_iter().enumerate() {
        if let Some(g) = g
            && first.get(&g) == Some(&i)
            && let Some((fork, join)) = joins[g].take()
        {
            out.push(fork);
            pending_joins.push((g, join));
        }
        let lone_join = match (&g, t.task_type.as_str()) {
            (None, "FORK") => lone
                .iter()
                .position(|(id, _)| *id == t.task_id)
                .map(|pos| lone.remove(pos).1),
            _ => None,
        };
        out.push(t);
        out.extend(lone_join);
        if let Some(g) = g
            && last.get(&g) == Some(&i)
            && let Some(pos) = pending_joins.iter().position(|(pg, _)| *pg == g)
        {
            out.push(pending_joins.remove(pos).1);
        }
    }
    for (i, t) in out.iter_mut().enumerate() {
        t.seq = i + 1;
    }
    out
}

/// The last row of every ref, in first-seen order.
pub(super) fn latest_per_ref(rows: &[Task]) -> Vec<&Task> {
    let mut latest: Vec<&Task> = Vec::new();
    for r in rows {
        match latest
            .iter_mut()
            .find(|l| l.reference_task_name == r.reference_task_name)
        {
            Some(l) if l.retry_count < r.retry_count => *l = r,
            Some(_) => {}
            None => latest.push(r),
        }
    }
    latest
}

/// The FORK and JOIN rows of a group (§3.2).
fn fork_join(owner: &Owner<'_>, g: &Group) -> (Task, Task) {
    let latest = latest_per_ref(&g.members);
    let first = g
        .members
        .iter()
        .map(|m| m.scheduled_time)
        .min()
        .unwrap_or(g.at);
    let waiting = g
        .expected
        .iter()
        .any(|r| !latest.iter().any(|m| m.reference_task_name == *r));
    let all_terminal = !waiting && g.complete && latest.iter().all(|m| m.status.is_terminal());
    // A member that failed for good fails the JOIN; members cancelled with the run (and none
    // failed) cancel it.
    let any_failed = latest.iter().any(|m| m.status.is_failure());
    let status = if all_terminal && latest.iter().all(|m| m.status.is_successful()) {
        TaskStatus::Completed
    } else if !all_terminal && owner.run.is_running() {
        TaskStatus::InProgress
    } else if any_failed {
        TaskStatus::Failed
    } else {
        TaskStatus::Canceled
    };
    let end = if status.is_terminal() {
        latest.iter().map(|m| m.end_time).max().unwrap_or(first)
    } else {
        0
    };
    let defs: Vec<Value> = g
        .expected
        .iter()
        .map(|r| {
            latest
                .iter()
                .find(|m| m.reference_task_name == *r)
                .map_or(json!({"taskReferenceName": r}), |m| {
                    serde_json::to_value(&m.workflow_task).unwrap_or_default()
                })
        })
        .collect();
    let mut fork = owner.row("FORK", &g.fork, 1, TaskStatus::Completed);
    fork.scheduled_time = first;
    fork.start_time = first;
    fork.end_time = first;
    fork.update_time = first;
    fork.first_start_time = first;
    fork.input_data = json!({"forkedTasks": g.expected, "forkedTaskDefs": defs});
    let mut join = owner.row("JOIN", &g.join, 1, status);
    join.scheduled_time = first;
    join.start_time = first;
    join.end_time = end;
    join.update_time = end
        .max(first)
        .max(latest.iter().map(|m| m.update_time).max().unwrap_or(0));
    join.first_start_time = first;
    join.input_data = json!({"joinOn": g.expected});
    join.output_data = Value::Object(
        latest
            .iter()
            .map(|m| (m.reference_task_name.clone(), m.output_data.clone()))
            .collect(),
    );
    (fork, join)
}

/// `workflowDefinition` from the pinned pipeline: SIMPLE steps, and a FORK_JOIN_DYNAMIC plus
/// its JOIN for each fan-out (one pair per step of a child pipeline).
fn definition(pipeline: Option<&Pipeline>, workflow_type: &str) -> Definition {
    let Some(p) = pipeline else {
        return Definition {
            name: workflow_type.to_owned(),
            version: 1,
            schema_version: 2,
            timeout_seconds: 0,
            tasks: Vec::new(),
        };
    };
    let graph = p.graph(workflow_type).unwrap_or(&p.main);
    let task = |name: &str, reference: &str, kind: &str, s: &StepDef| WorkflowTask {
        name: name.to_owned(),
        task_reference_name: reference.to_owned(),
        kind: kind.to_owned(),
        input_parameters: Map::new(),
        optional: s.optional,
        retry_count: (i64::from(s.options.retry.maximum_attempts) - 1).max(0),
        dynamic_fork_tasks_param: None,
        dynamic_fork_tasks_input_param_name: None,
    };
    let mut tasks = Vec::new();
    for s in &graph.steps {
        // A dynamic fork is named by its fork ref, as Conductor's are; its members come from
        // `dynamicTasks` (the step's `for_each`), their inputs from `dynamicTasksInput`.
        let fan_out = |tasks: &mut Vec<WorkflowTask>, s: &StepDef, items: Option<&str>| {
            let (fork, join) = s.fork_join();
            let mut f = task(&fork, &fork, "FORK_JOIN_DYNAMIC", s);
            f.dynamic_fork_tasks_param = Some("dynamicTasks".into());
            f.dynamic_fork_tasks_input_param_name = Some("dynamicTasksInput".into());
            if let Some(items) = items {
                f.input_parameters
                    .insert("dynamicTasks".into(), json!(items));
            }
            tasks.push(f);
            tasks.push(task("JOIN", &join, "JOIN", s));
        };
        match (&s.run, s.for_each.is_some()) {
            (StepRun::Activity(_), true) => fan_out(&mut tasks, s, s.for_each.as_deref()),
            (StepRun::Activity(a), false) => tasks.push(task(a, &s.id, "SIMPLE", s)),
            (StepRun::Child(c), true) => {
                for inner in p.graph(c).map(|g| g.steps.as_slice()).unwrap_or_default() {
                    if let StepRun::Activity(_) = &inner.run {
                        fan_out(&mut tasks, inner, s.for_each.as_deref());
                    }
                }
            }
            (StepRun::Child(c), false) => tasks.push(task(c, &s.id, "SUB_WORKFLOW", s)),
        }
    }
    Definition {
        name: graph.name.clone(),
        version: p.version,
        schema_version: 2,
        timeout_seconds: 0,
        tasks,
    }
}

#[cfg(test)]
mod tests;
