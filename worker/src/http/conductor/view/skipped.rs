//! Rows of the steps that did not run although the run went past them: reused by a memoized
//! run (COMPLETED, marked `reused`), skipped by `when:` (SKIPPED), or fan-outs over nothing (a
//! FORK and a COMPLETED JOIN joining nothing).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
use workflow::pipeline::{Graph, Pipeline, Run as StepRun, Step as StepDef};

use super::{Group, inner_activity, successors_started};
use crate::http::conductor::model::{Task, TaskStatus};
use crate::http::conductor::rows::Owner;

/// COMPLETED rows of the steps a memoized run reused (`outputData` their stored result with
/// `"reused": true`), SKIPPED rows of the main graph's steps that never ran although the run
/// went past them (a `when:` that was false), and the FORK/JOIN groups of fan-outs that had
/// nothing to fan out over (§3.2: a FORK and a COMPLETED JOIN with an empty `joinOn`), keyed as
/// [`tasks`] keys
/// groups.
pub(super) fn skipped_rows(
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
            let mut row = owner.row(&inner_activity(s), &s.id, 1, TaskStatus::Completed);
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
        let mut row = owner.row(&inner_activity(s), &s.id, 1, TaskStatus::Skipped);
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
