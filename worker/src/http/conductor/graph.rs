//! `GET /api/workflow/{id}/graph.svg`: the run's graph, each step drawn with what the
//! Conductor view of the same run says of it (one source for both): its rows' states,
//! attempts, failure types and times, a fan-out's members, and the critical path once the run
//! ended. The failure *type* is all the drawing shows of a failure, so it says the same to
//! every viewer the route admits (the redacted JSON keeps the type too).

use serde_json::Value;
use workflow::pipeline::{Pipeline, Run as StepRun};

use super::model::{Task, TaskStatus, Workflow};
use crate::graph::{Attempt, Member, NodeRun, NodeState, Runs};
use crate::history::Run;
use crate::history::{ChildOutcome, declared_as};

/// The drawing of `view` (the Conductor view of `main` and its `children`) on `pipeline`.
pub fn svg(pipeline: &Pipeline, main: &Run, children: &[Run], view: &Workflow) -> String {
    let mut runs = node_runs(pipeline, main, children, view);
    crate::graph::critical_path(pipeline, &mut runs);
    crate::graph::svg_of_run(pipeline, &runs)
}

/// Each declared step's part in the run.
pub fn node_runs(pipeline: &Pipeline, main: &Run, children: &[Run], view: &Workflow) -> Runs {
    use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
    let ended = |r: &Run| r.status != WorkflowExecutionStatus::Running;
    let rows = super::view::latest_per_ref(&view.tasks);
    let mut runs = Runs::new();
    for g in std::iter::once(&pipeline.main).chain(pipeline.children.values()) {
        // A child pipeline's steps are over when every child is (or the run is).
        let graph_ended = if g.name == pipeline.main.name {
            ended(main)
        } else {
            ended(main) || {
                let mine: Vec<&Run> = children
                    .iter()
                    .filter(|c| c.workflow_type == g.name)
                    .collect();
                !mine.is_empty() && mine.iter().all(|c| ended(c))
            }
        };
        for step in &g.steps {
            let (members, fan_out) = match &step.run {
                StepRun::Child(name) => (child_members(main, children, name), true),
                StepRun::Activity(_) => {
                    let members: Vec<Member> = rows
                        .iter()
                        .filter(|t| {
                            !matches!(t.task_type.as_str(), "FORK" | "JOIN")
                                && t.workflow_type == g.name
                                && declared_as(
                                    pipeline,
                                    &g.name,
                                    &t.reference_task_name,
                                    &t.task_type,
                                )
                                .is_some_and(|d| d.id == step.id)
                        })
                        .map(|t| {
                            member(
                                t,
                                &view.tasks,
                                step.options.retry.maximum_attempts,
                                graph_ended,
                            )
                        })
                        .collect();
                    // A fan-out (its own, or one member per child run).
                    let fan_out = step.for_each.is_some() || g.name != pipeline.main.name;
                    (members, fan_out)
                }
            };
            // A fan-out over nothing is over once its JOIN completed joining nothing (§3.2).
            let over_nothing = members.is_empty()
                && step.for_each.is_some()
                && view.tasks.iter().any(|t| {
                    t.task_type == "JOIN"
                        && t.reference_task_name == step.fork_join().1
                        && t.status == TaskStatus::Completed
                        && t.input_data["joinOn"].as_array().is_some_and(Vec::is_empty)
                });
            runs.insert(
                (g.name.clone(), step.id.clone()),
                NodeRun::new(members, fan_out, graph_ended || over_nothing),
            );
        }
    }
    mark_reused(pipeline, main, &mut runs);
    runs
}

/// The steps `main` (a memoized run) reused, from its memo plan: completed without running,
/// and, for a reused child step, every step of its child graph with it (no child ran).
fn mark_reused(pipeline: &Pipeline, main: &Run, runs: &mut Runs) {
    let Some(reused) = main.memo_plan.get("reused").and_then(Value::as_object) else {
        return;
    };
    for step in pipeline
        .main
        .steps
        .iter()
        .filter(|s| reused.contains_key(&s.id))
    {
        let mut keys = vec![(pipeline.main.name.clone(), step.id.clone())];
        if let StepRun::Child(c) = &step.run
            && let Some(g) = pipeline.graph(c)
        {
            keys.extend(g.steps.iter().map(|s| (g.name.clone(), s.id.clone())));
        }
        for k in keys {
            if let Some(r) = runs.get_mut(&k) {
                r.mark_reused();
            }
        }
    }
}

/// A member from its latest row; its times span all its rows, its error is the last failed
/// attempt's type.
fn member(latest: &Task, all: &[Task], max_attempts: u32, ended: bool) -> Member {
    let rows: Vec<&Task> = all
        .iter()
        .filter(|t| t.reference_task_name == latest.reference_task_name)
        .collect();
    let attempt = u32::try_from(latest.retry_count + 1).unwrap_or(1);
    let state = match latest.status {
        TaskStatus::Scheduled if attempt > 1 => NodeState::Retrying,
        TaskStatus::Scheduled | TaskStatus::InProgress if ended => NodeState::Cancelled,
        TaskStatus::Scheduled | TaskStatus::InProgress => NodeState::Running,
        TaskStatus::Completed => NodeState::Completed,
        TaskStatus::Skipped => NodeState::Skipped,
        TaskStatus::CompletedWithErrors
        | TaskStatus::Failed
        | TaskStatus::FailedWithTerminalError
        | TaskStatus::TimedOut => NodeState::Failed,
        TaskStatus::Canceled => NodeState::Cancelled,
    };
    let error = rows
        .iter()
        .rev()
        .filter(|t| t.status.is_failure() || t.status == TaskStatus::CompletedWithErrors)
        .find_map(|t| t.reason_for_incompletion.as_deref())
        .map(crate::http::redact::failure_type);
    let percent = (latest.status == TaskStatus::InProgress)
        .then(|| heartbeat_percent(&latest.output_data))
        .flatten();
    Member {
        label: latest.reference_task_name.clone(),
        state,
        attempt: Some(Attempt {
            n: attempt,
            of: max_attempts,
        }),
        error,
        percent,
        start_ms: rows
            .iter()
            .map(|t| t.start_time)
            .filter(|t| *t > 0)
            .min()
            .unwrap_or(0),
        end_ms: if latest.status.is_terminal() {
            latest.end_time
        } else {
            0
        },
    }
}

/// Percent done from a running row's heartbeat (`{"heartbeat": {done_s, total_s}}`).
fn heartbeat_percent(output: &Value) -> Option<u32> {
    let h = &output["heartbeat"];
    let (done, total) = (h["done_s"].as_f64()?, h["total_s"].as_f64()?);
    (total > 0.0).then(|| ((done / total).clamp(0.0, 1.0) * 100.0).round() as u32)
}

/// The child runs of type `name` the run started, as members of the step that started them.
fn child_members(main: &Run, children: &[Run], name: &str) -> Vec<Member> {
    main.children
        .iter()
        .filter(|c| c.workflow_type == name)
        .map(|c| {
            let run = children.iter().find(|r| r.workflow_id == c.workflow_id);
            let (state, error) = match &c.outcome {
                None if main.status
                    != temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus::Running =>
                {
                    (NodeState::Cancelled, None)
                }
                None => (NodeState::Running, None),
                Some(ChildOutcome::Completed) => (NodeState::Completed, None),
                Some(ChildOutcome::Canceled) => (NodeState::Cancelled, None),
                Some(ChildOutcome::Failed(f)) => (
                    NodeState::Failed,
                    Some(if f.kind.is_empty() {
                        "error".to_owned()
                    } else {
                        f.kind.clone()
                    }),
                ),
                Some(ChildOutcome::TimedOut) => (NodeState::Failed, Some("timeout".to_owned())),
                Some(ChildOutcome::StartFailed(cause)) => (NodeState::Failed, Some(cause.clone())),
            };
            let label = c
                .workflow_id
                .strip_prefix(&main.workflow_id)
                .map(|s| s.trim_start_matches(['-', '_', '/']))
                .filter(|s| !s.is_empty())
                .unwrap_or(&c.workflow_id)
                .to_owned();
            Member {
                label,
                state,
                attempt: None,
                error,
                percent: None,
                start_ms: run.map_or(c.initiated_ms, |r| r.start_ms),
                end_ms: run.map_or(0, |r| r.close_ms),
            }
        })
        .collect()
}
