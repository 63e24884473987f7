//! Pipeline definitions: the raw YAML model, its validation, and the validated value the
//! interpreter runs.
//!
//! `RawPipeline` ([`raw`]) mirrors what a user typed; [`validate()`] checks it against a
//! [`Catalog`](crate::catalog::Catalog) (the activities, workflow types and events a worker
//! knows) and returns a [`Pipeline`], in which every default is already merged and every
//! duration is in milliseconds. A `Pipeline` is registered as an immutable version, which a run's
//! input names ([`PipelineRef`]), so a run is pinned to the definition it started with;
//! [`Pipeline::hash`] identifies it.
//! Everything here is pure: no files, no network, no clock.

mod checks;
pub mod diff;
pub mod effects;
pub mod error;
pub mod fingerprint;
mod options;
pub mod raw;
mod reference;
pub mod rollout;
mod shape;
pub mod store;
mod validate;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use error::{PipelineError, Problem, ValidationReport};
pub use reference::PipelineRef;
pub use validate::{parse_and_validate, validate};

/// The task queue used when neither the pipeline nor a step names one.
pub const DEFAULT_TASK_QUEUE: &str = "reflow";

/// A validated pipeline file: the main graph and its child graphs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// Workflow type of the main graph.
    pub name: String,
    /// Definition version.
    pub version: u32,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Hex sha256 of the canonical JSON of this value with `hash` empty.
    pub hash: String,
    /// The main pipeline.
    pub main: Graph,
    /// Child pipelines by workflow type.
    pub children: BTreeMap<String, Graph>,
    /// Frontend progress reporting, if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressSpec>,
    /// Run when a non-optional step of the main graph fails for good (see
    /// [`raw::RawPipeline::on_failure`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Step>,
    /// Declared search attributes (name → template over the main inputs).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub search_attributes: BTreeMap<String, String>,
}

/// Validated `progress:` section (see [`raw::RawProgress`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressSpec {
    /// Template naming the transcript.
    pub transcript_id: String,
    /// `total_steps`.
    pub total_steps: u32,
    /// Activity type → `step_index`.
    pub steps: BTreeMap<String, u32>,
}

impl Pipeline {
    /// The graph a workflow of type `name` runs (the main one or a child).
    pub fn graph(&self, name: &str) -> Option<&Graph> {
        if name == self.main.name {
            Some(&self.main)
        } else {
            self.children.get(name)
        }
    }

    /// Every task queue a worker must poll to run this pipeline: the workflows' queues and
    /// every step's, sorted and deduplicated.
    pub fn task_queues(&self) -> Vec<String> {
        let mut queues: Vec<String> = std::iter::once(&self.main)
            .chain(self.children.values())
            .flat_map(|g| {
                std::iter::once(g.task_queue.clone())
                    .chain(g.steps.iter().map(|s| s.options.task_queue.clone()))
            })
            .collect();
        queues.sort();
        queues.dedup();
        queues
    }

    /// Sha256 of the canonical JSON form, `hash` left empty.
    pub fn compute_hash(&self) -> String {
        use sha2::Digest;
        let mut copy = self.clone();
        copy.hash.clear();
        let bytes = serde_json::to_vec(&copy).expect("a pipeline always serializes");
        hex::encode(sha2::Sha256::digest(bytes))
    }
}

/// One pipeline (main or child): declared inputs, steps in declared order, output template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// Workflow type.
    pub name: String,
    /// Task queue of the workflow itself.
    pub task_queue: String,
    /// Declared inputs.
    pub inputs: BTreeMap<String, InputSpec>,
    /// Steps, in declared order.
    pub steps: Vec<Step>,
    /// Result template (`null` when not declared).
    pub output: Value,
}

impl Pipeline {
    /// What a child workflow running graph `name` is given of this definition: that graph
    /// (under `children`), the definition's identity (name, version, hash) and its search
    /// attribute templates; the main graph without steps, inputs or output, no other child, no
    /// progress section or failure hook. A meeting starts one child per track, and each child's
    /// input is written to history twice (initiated and started), so this keeps a 64-track
    /// history small (bench/results/pipeline.md, "History size").
    pub fn for_child(&self, name: &str) -> Pipeline {
        let mut main = self.main.clone();
        main.steps.clear();
        main.inputs.clear();
        main.output = Value::Null;
        Pipeline {
            name: self.name.clone(),
            version: self.version,
            description: None,
            hash: self.hash.clone(),
            main,
            children: self
                .children
                .get(name)
                .map(|g| BTreeMap::from([(name.to_owned(), g.clone())]))
                .unwrap_or_default(),
            progress: None,
            on_failure: None,
            search_attributes: self.search_attributes.clone(),
        }
    }
}

impl Graph {
    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// A declared input, with defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Expected JSON type (`any` accepts everything).
    pub kind: InputKind,
    /// A run without it is rejected.
    pub required: bool,
    /// Used when absent.
    pub default: Option<Value>,
}

/// JSON types an input may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// A JSON string.
    String,
    /// A JSON number without fraction.
    Integer,
    /// Any JSON number.
    Number,
    /// `true` / `false`.
    Boolean,
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
    /// Anything.
    Any,
}

impl InputKind {
    /// Whether `v` has this type.
    pub fn accepts(self, v: &Value) -> bool {
        match self {
            InputKind::String => v.is_string(),
            InputKind::Integer => v.is_i64() || v.is_u64(),
            InputKind::Number => v.is_number(),
            InputKind::Boolean => v.is_boolean(),
            InputKind::Array => v.is_array(),
            InputKind::Object => v.is_object(),
            InputKind::Any => true,
        }
    }
}

/// What a step runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Run {
    /// An activity by its registered type name.
    Activity(String),
    /// A child pipeline by workflow type.
    Child(String),
}

/// A validated step: defaults merged, durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Unique id within the graph.
    pub id: String,
    /// Activity or child pipeline.
    pub run: Run,
    /// Direct dependencies.
    pub needs: Vec<String>,
    /// Input template (`null` when not declared).
    pub with: Value,
    /// Fan-out expression, if any.
    pub for_each: Option<String>,
    /// Cap on fan-out members in flight.
    pub concurrency: Option<u32>,
    /// Child workflow id pattern.
    pub child_id: Option<String>,
    /// Activity id template.
    pub activity_id: Option<String>,
    /// Run condition.
    pub when: Option<String>,
    /// A final failure does not fail the run.
    pub optional: bool,
    /// Events the step may publish.
    pub emits: Vec<String>,
    /// Runs as a local activity (in the workflow task, no task queue dispatch). Left out of
    /// the serialized form when false, so definitions without it keep their hash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
    /// Queue, timeouts, retry policy.
    pub options: StepOptions,
    /// Web UI label template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// FORK and JOIN refs of the step's members in the Conductor view (left out of the
    /// serialized form when unset, so definitions without it keep their hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conductor: Option<raw::RawForkJoin>,
}

impl Step {
    /// The refs of the FORK and JOIN rows around this step's members.
    pub fn fork_join(&self) -> (String, String) {
        match &self.conductor {
            Some(c) => (c.fork.clone(), c.join.clone()),
            None => (format!("fork_{}", self.id), format!("join_{}", self.id)),
        }
    }
}

/// Activity options of a step, every default applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOptions {
    /// Task queue of the activity, or of the child workflow.
    pub task_queue: String,
    /// Schedule-to-close timeout in ms.
    pub schedule_to_close_ms: Option<u64>,
    /// Start-to-close timeout in ms.
    pub start_to_close_ms: Option<u64>,
    /// Start-to-close computed per run ([`crate::formula`]); wins over `start_to_close_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_to_close_formula: Option<String>,
    /// Heartbeat timeout in ms.
    pub heartbeat_ms: Option<u64>,
    /// Retry policy.
    pub retry: Retry,
}

impl StepOptions {
    /// Start-to-close as a `Duration`.
    pub fn start_to_close(&self) -> Option<Duration> {
        self.start_to_close_ms.map(Duration::from_millis)
    }
    /// Schedule-to-close as a `Duration`.
    pub fn schedule_to_close(&self) -> Option<Duration> {
        self.schedule_to_close_ms.map(Duration::from_millis)
    }
    /// Heartbeat timeout as a `Duration`.
    pub fn heartbeat(&self) -> Option<Duration> {
        self.heartbeat_ms.map(Duration::from_millis)
    }
}

/// A retry policy, every default applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    /// Delay before attempt 2, ms.
    pub initial_interval_ms: u64,
    /// Delay multiplier.
    pub backoff_coefficient: f64,
    /// Delay cap, ms.
    pub maximum_interval_ms: Option<u64>,
    /// Attempts in all; 0 = unlimited.
    pub maximum_attempts: u32,
    /// Failure types never retried.
    pub non_retryable_error_types: Vec<String>,
}

impl Default for Retry {
    /// reflow's defaults (docs/contracts/pipeline.md §6.2): 5 s, ×2, capped at 60 s, unlimited
    /// attempts.
    fn default() -> Self {
        Retry {
            initial_interval_ms: 5_000,
            backoff_coefficient: 2.0,
            maximum_interval_ms: Some(60_000),
            maximum_attempts: 0,
            non_retryable_error_types: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_child_is_given_its_own_graph_and_the_definitions_identity() {
        let catalog = crate::Catalog::new()
            .activity("a", &[])
            .activity("b", &[])
            .workflow_type("Main")
            .workflow_type("Kid")
            .workflow_type("Other");
        let yaml = "name: Main\nversion: 3\ninputs: {xs: {type: array}}\n\
            defaults: {start_to_close: 10s}\n\
            search_attributes: {RecordingId: '${input.xs}'}\n\
            steps:\n  - {id: first, activity: a}\n\
              \x20 - {id: each, child: Kid, needs: [first], for_each: '${input.xs}', with: {x: '${item}'}}\n\
              \x20 - {id: solo, child: Other, needs: [first]}\n\
            children:\n  Kid: {inputs: {x: {type: string}}, steps: [{id: work, activity: b, with: {x: '${input.x}'}}]}\n\
              \x20 Other: {steps: [{id: more, activity: b}]}\n";
        let p = crate::parse_and_validate("t.yaml", yaml, &catalog).unwrap();
        let kid = p.for_child("Kid");
        assert_eq!(
            (kid.name.as_str(), kid.version, kid.hash.as_str()),
            ("Main", 3, p.hash.as_str())
        );
        assert_eq!(kid.graph("Kid"), p.graph("Kid"));
        assert!(kid.graph("Other").is_none() && kid.main.steps.is_empty());
        assert_eq!(kid.search_attributes, p.search_attributes);
        let whole = serde_json::to_string(&p).unwrap().len();
        let given = serde_json::to_string(&kid).unwrap().len();
        assert!(given < whole, "{given} < {whole}");
    }
}
