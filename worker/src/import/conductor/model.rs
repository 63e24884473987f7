//! Conductor's JSON, as much of it as the import reads: `WorkflowDef`, `WorkflowTask` and
//! `TaskDef` (conductor-oss/conductor, `common/.../metadata/workflow/WorkflowDef.java`,
//! `WorkflowTask.java`, `metadata/tasks/TaskDef.java`). Field names are Conductor's
//! (camelCase); every field Conductor has and the import does not read is ignored.
//!
//! The files an import accepts ([`Definitions::parse`]): a workflow definition as
//! `GET /api/metadata/workflow/{name}` returns it, or one object holding
//! `{"workflow": {…}, "taskDefs": […]}` (the seed's shape, `tests/fixtures/conductor/`); task
//! definitions as an array (`GET /api/metadata/taskdefs`), `{"taskDefs": […]}` or one object.
//! A task list may name a task by a bare string (`"forkTasks": [["generate_title"]]`): a
//! SIMPLE task whose reference name is its name.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::ImportError;

/// A Conductor workflow definition.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowDef {
    /// The workflow's name (its type).
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Definition version (Conductor's default: 1).
    #[serde(default)]
    pub version: Option<u32>,
    /// The tasks, run in order.
    #[serde(deserialize_with = "task_list")]
    pub tasks: Vec<WorkflowTask>,
    /// Names of the workflow's inputs (documentation in Conductor; declared inputs here).
    #[serde(default)]
    pub input_parameters: Option<Vec<String>>,
    /// Default values of inputs.
    #[serde(default)]
    pub input_template: Map<String, Value>,
    /// The workflow's output: a template over inputs and task outputs.
    #[serde(default)]
    pub output_parameters: Option<Map<String, Value>>,
    /// Workflow execution timeout (0: none).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// A workflow started when this one fails.
    #[serde(default)]
    pub failure_workflow: Option<String>,
}

/// One task of a workflow definition.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowTask {
    /// The task definition's name (for SIMPLE tasks: the worker's task type).
    #[serde(default)]
    pub name: String,
    /// The task's reference name, unique in the workflow (default here: `name`).
    #[serde(default)]
    pub task_reference_name: Option<String>,
    /// `SIMPLE` (the default), `FORK_JOIN`, `FORK_JOIN_DYNAMIC`, `JOIN`, `SWITCH`, `DECISION`,
    /// `SUB_WORKFLOW`, …
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The task's input: a template over workflow inputs and earlier tasks' outputs. `None`
    /// (the key absent) is not the same as `{}` for the import: see `conductor::wiring`.
    #[serde(default)]
    pub input_parameters: Option<Map<String, Value>>,
    /// A failure does not fail the workflow.
    #[serde(default)]
    pub optional: bool,
    /// FORK_JOIN: the parallel branches, each a task list run in order.
    #[serde(default, deserialize_with = "branch_lists")]
    pub fork_tasks: Vec<Vec<WorkflowTask>>,
    /// JOIN: the references it waits for.
    #[serde(default)]
    pub join_on: Vec<String>,
    /// FORK_JOIN_DYNAMIC: the input parameter holding the tasks to fork.
    #[serde(default)]
    pub dynamic_fork_tasks_param: Option<String>,
    /// FORK_JOIN_DYNAMIC: the input parameter holding each forked task's input.
    #[serde(default)]
    pub dynamic_fork_tasks_input_param_name: Option<String>,
    /// DECISION: the input parameter whose value picks the case.
    #[serde(default)]
    pub case_value_param: Option<String>,
    /// DECISION: a JavaScript expression picking the case.
    #[serde(default)]
    pub case_expression: Option<String>,
    /// SWITCH: `value-param`, `javascript` or `graaljs`.
    #[serde(default)]
    pub evaluator_type: Option<String>,
    /// SWITCH: the input parameter (value-param) or script that picks the case.
    #[serde(default)]
    pub expression: Option<String>,
    /// SWITCH / DECISION: case value → task list.
    #[serde(default, deserialize_with = "case_lists")]
    pub decision_cases: BTreeMap<String, Vec<WorkflowTask>>,
    /// SWITCH / DECISION: the tasks run when no case matches.
    #[serde(default, deserialize_with = "task_list")]
    pub default_case: Vec<WorkflowTask>,
    /// DO_WHILE: the loop's tasks (not imported; named).
    #[serde(default, deserialize_with = "task_list")]
    pub loop_over: Vec<WorkflowTask>,
    /// SUB_WORKFLOW: which workflow to start.
    #[serde(default)]
    pub sub_workflow_param: Option<SubWorkflowParams>,
}

/// `subWorkflowParam` of a SUB_WORKFLOW task.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubWorkflowParams {
    /// The sub-workflow's name.
    pub name: String,
    /// Its version.
    #[serde(default)]
    pub version: Option<u32>,
    /// An inline definition (Conductor also accepts a string expression here: not imported).
    #[serde(default)]
    pub workflow_definition: Option<Value>,
}

/// A Conductor task definition: the timeouts and retry policy of every task of that name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDef {
    /// The task type it defines.
    pub name: String,
    /// Budget of one attempt (0: none).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Longest silence from the worker before the attempt is timed out.
    #[serde(default)]
    pub response_timeout_seconds: Option<u64>,
    /// Retries after the first attempt (Conductor's default: 3).
    #[serde(default)]
    pub retry_count: Option<u32>,
    /// `FIXED` (Conductor's default), `EXPONENTIAL_BACKOFF` or `LINEAR_BACKOFF`.
    #[serde(default)]
    pub retry_logic: Option<String>,
    /// Delay before a retry.
    #[serde(default)]
    pub retry_delay_seconds: Option<u64>,
    /// Cap on the delay (0: none).
    #[serde(default)]
    pub max_retry_delay_seconds: Option<u64>,
    /// LINEAR_BACKOFF's multiplier.
    #[serde(default)]
    pub backoff_scale_factor: Option<u64>,
    /// Budget of the task including retries (0: none).
    #[serde(default)]
    pub total_timeout_seconds: Option<u64>,
    /// Longest wait in the queue (0: none).
    #[serde(default)]
    pub poll_timeout_seconds: Option<u64>,
    /// `TIME_OUT_WF`, `RETRY` or `ALERT_ONLY`.
    #[serde(default)]
    pub timeout_policy: Option<String>,
    /// Rate limit: executions per `rateLimitFrequencyInSeconds`.
    #[serde(default)]
    pub rate_limit_per_frequency: Option<u64>,
    /// At most this many executions at once.
    #[serde(default)]
    pub concurrent_exec_limit: Option<u64>,
}

impl WorkflowTask {
    /// A SIMPLE task named `name` (a bare string in a task list).
    fn named(name: &str) -> Self {
        WorkflowTask {
            name: name.to_owned(),
            ..WorkflowTask::default()
        }
    }

    /// The reference name (`name` when unset).
    pub fn reference(&self) -> &str {
        self.task_reference_name
            .as_deref()
            .filter(|r| !r.is_empty())
            .unwrap_or(&self.name)
    }

    /// The task type (`SIMPLE` when unset).
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("SIMPLE")
    }

    /// The value of an input parameter.
    pub fn input(&self, name: &str) -> Option<&Value> {
        self.input_parameters.as_ref()?.get(name)
    }

    /// Every task name this task runs itself or through its branches (FORK, SWITCH, DO_WHILE,
    /// the `forkTaskName` of a dynamic fork), in order.
    pub fn task_names(&self) -> Vec<String> {
        let mut out = vec![self.name.clone()];
        if let Some(Value::String(member)) = self.input("forkTaskName") {
            out.push(member.clone());
        }
        let nested = self
            .fork_tasks
            .iter()
            .flatten()
            .chain(self.decision_cases.values().flatten())
            .chain(&self.default_case)
            .chain(&self.loop_over);
        for t in nested {
            out.extend(t.task_names());
        }
        out
    }
}

/// A workflow definition and the task definitions it is imported with.
#[derive(Debug, Clone)]
pub struct Definitions {
    /// The workflow.
    pub workflow: WorkflowDef,
    /// Task definitions by name.
    pub task_defs: BTreeMap<String, TaskDef>,
}

impl Definitions {
    /// Parse a workflow file (`file` names it in errors) and, optionally, a task definitions
    /// file; task definitions in both are merged, the second file's winning.
    pub fn parse(
        file: &str,
        text: &str,
        task_defs: Option<(&str, &str)>,
    ) -> Result<Definitions, ImportError> {
        let json = |file: &str, text: &str| {
            serde_json::from_str::<Value>(text).map_err(|error| ImportError::Json {
                file: file.to_owned(),
                error,
            })
        };
        let mut value = json(file, text)?;
        let (workflow, mut defs) = match value.as_object_mut() {
            Some(o) if o.contains_key("workflow") => {
                let w = o.remove("workflow").unwrap_or_default();
                let d = o.remove("taskDefs").unwrap_or(Value::Array(Vec::new()));
                (w, parse_task_defs(file, d)?)
            }
            Some(o) if o.contains_key("tasks") => (value, Vec::new()),
            _ => {
                return Err(ImportError::Shape {
                    file: file.to_owned(),
                    what: "neither a workflow definition (with `tasks`) nor \
                           `{\"workflow\": …, \"taskDefs\": […]}`"
                        .into(),
                });
            }
        };
        let workflow: WorkflowDef =
            serde_json::from_value(workflow).map_err(|error| ImportError::Json {
                file: file.to_owned(),
                error,
            })?;
        if let Some((file, text)) = task_defs {
            defs.extend(parse_task_defs(file, json(file, text)?)?);
        }
        Ok(Definitions {
            workflow,
            task_defs: defs.into_iter().map(|d| (d.name.clone(), d)).collect(),
        })
    }

    /// [`Definitions::parse`] on files.
    pub fn load(
        workflow: &std::path::Path,
        task_defs: Option<&std::path::Path>,
    ) -> Result<Definitions, ImportError> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|error| ImportError::Read {
                file: p.display().to_string(),
                error,
            })
        };
        let text = read(workflow)?;
        let defs = match task_defs {
            Some(p) => Some((p.display().to_string(), read(p)?)),
            None => None,
        };
        Definitions::parse(
            &workflow.display().to_string(),
            &text,
            defs.as_ref().map(|(f, t)| (f.as_str(), t.as_str())),
        )
    }
}

fn parse_task_defs(file: &str, value: Value) -> Result<Vec<TaskDef>, ImportError> {
    let list = match value {
        Value::Array(items) => items,
        Value::Object(mut o) if o.contains_key("taskDefs") => match o.remove("taskDefs") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(ImportError::Shape {
                    file: file.to_owned(),
                    what: "`taskDefs` is not an array".into(),
                });
            }
        },
        one @ Value::Object(_) => vec![one],
        _ => {
            return Err(ImportError::Shape {
                file: file.to_owned(),
                what: "task definitions are an array, `{\"taskDefs\": […]}` or one object".into(),
            });
        }
    };
    list.into_iter()
        .enumerate()
        .map(|(i, d)| {
            serde_json::from_value(d).map_err(|e| ImportError::Shape {
                file: file.to_owned(),
                what: format!("task definition #{}: {e}", i + 1),
            })
        })
        .collect()
}

/// A task in a list: an object, or a bare name.
fn task(i: usize, v: Value) -> Result<WorkflowTask, String> {
    match v {
        Value::String(name) => Ok(WorkflowTask::named(&name)),
        other => {
            let label = other
                .get("taskReferenceName")
                .or_else(|| other.get("name"))
                .and_then(Value::as_str)
                .map_or_else(|| format!("#{}", i + 1), str::to_owned);
            serde_json::from_value(other).map_err(|e| format!("task {label}: {e}"))
        }
    }
}

fn tasks_of(items: Vec<Value>) -> Result<Vec<WorkflowTask>, String> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| task(i, v))
        .collect()
}

fn task_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<WorkflowTask>, D::Error> {
    let items = Option::<Vec<Value>>::deserialize(d)?.unwrap_or_default();
    tasks_of(items).map_err(serde::de::Error::custom)
}

fn branch_lists<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<WorkflowTask>>, D::Error> {
    let branches = Option::<Vec<Vec<Value>>>::deserialize(d)?.unwrap_or_default();
    branches
        .into_iter()
        .map(tasks_of)
        .collect::<Result<_, _>>()
        .map_err(serde::de::Error::custom)
}

fn case_lists<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<WorkflowTask>>, D::Error> {
    let cases = Option::<BTreeMap<String, Vec<Value>>>::deserialize(d)?.unwrap_or_default();
    cases
        .into_iter()
        .map(|(k, v)| tasks_of(v).map(|t| (k, t)))
        .collect::<Result<_, _>>()
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_shape_holds_the_workflow_and_its_task_definitions() {
        let text = include_str!("../../../../tests/fixtures/conductor/seed-workflow.json");
        let d = Definitions::parse("seed-workflow.json", text, None).unwrap();
        assert_eq!(d.workflow.name, "daily_diarization_pipeline");
        assert_eq!(d.workflow.tasks.len(), 13);
        let fork = &d.workflow.tasks[8];
        assert_eq!(fork.kind(), "FORK_JOIN");
        assert_eq!(fork.fork_tasks[1][0].reference(), "generate_summary");
        assert_eq!(fork.fork_tasks[1][0].kind(), "SIMPLE");
        assert_eq!(d.task_defs.len(), 15);
        assert_eq!(d.task_defs["send_webhook"].retry_count, Some(30));
    }

    #[test]
    fn a_workflow_file_and_a_task_definitions_file_in_conductor_s_own_shapes() {
        let wf = r#"{"name": "w", "version": 2, "ownerEmail": "a@b.c", "schemaVersion": 2,
            "tasks": [{"name": "a", "taskReferenceName": "a1", "type": "SIMPLE",
                       "inputParameters": {"x": "${workflow.input.x}"}, "startDelay": 0}]}"#;
        let defs = r#"[{"name": "a", "timeoutSeconds": 10, "ownerEmail": "a@b.c"}]"#;
        let d = Definitions::parse("w.json", wf, Some(("defs.json", defs))).unwrap();
        assert_eq!(d.workflow.tasks[0].reference(), "a1");
        assert_eq!(d.task_defs["a"].timeout_seconds, Some(10));
        let one = r#"{"name": "a", "timeoutSeconds": 11}"#;
        let d = Definitions::parse("w.json", wf, Some(("one.json", one))).unwrap();
        assert_eq!(d.task_defs["a"].timeout_seconds, Some(11));
    }

    #[test]
    fn a_malformed_task_is_named() {
        let wf = r#"{"name": "w", "tasks": [{"name": "a", "taskReferenceName": "a1",
            "forkTasks": "not a list"}]}"#;
        let err = Definitions::parse("w.json", wf, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("w.json") && err.contains("task a1"), "{err}");
        let err = Definitions::parse("w.json", "{\"name\": \"w\"}", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("neither a workflow definition"), "{err}");
    }
}
