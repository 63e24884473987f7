//! `workflowDefinition` of the view: the pinned pipeline's steps as Conductor tasks.

use serde_json::{Map, json};
use workflow::pipeline::{Pipeline, Run as StepRun, Step as StepDef};

use crate::http::conductor::model::{Definition, WorkflowTask};

/// `workflowDefinition` from the pinned pipeline: SIMPLE steps, and a FORK_JOIN_DYNAMIC plus
/// its JOIN for each fan-out (one pair per step of a child pipeline).
pub(super) fn definition(pipeline: Option<&Pipeline>, workflow_type: &str) -> Definition {
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
