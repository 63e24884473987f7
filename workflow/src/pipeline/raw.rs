//! The serde model of a pipeline file exactly as a user writes it in `pipelines/*.yaml`.
//!
//! Nothing here is checked beyond its shape: unknown keys are rejected
//! (`deny_unknown_fields`), everything else is left to [`super::validate`], which turns a
//! [`RawPipeline`] into a [`super::Pipeline`]. The field docs are the user documentation of
//! the format; `pipelines/README.md` mirrors them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A whole pipeline file: the main pipeline plus the named sub-pipelines its steps may start
/// as child workflows.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// Workflow type of the main pipeline, shown as such in the Temporal UI
    /// (e.g. `DiarizationPipeline`).
    pub name: String,
    /// Definition version, an integer bumped on every change that matters to a reader.
    pub version: u32,
    /// Free text shown by `reflow plan` and in the docs.
    #[serde(default)]
    pub description: Option<String>,
    /// Task queue the workflow itself (and its children, unless they say otherwise) runs on.
    #[serde(default)]
    pub task_queue: Option<String>,
    /// Declared inputs of the main pipeline: `${input.<name>}` may only name these.
    #[serde(default)]
    pub inputs: BTreeMap<String, RawInput>,
    /// Options every step inherits unless it sets its own.
    #[serde(default)]
    pub defaults: RawOptions,
    /// The steps of the main pipeline, in declared order (which is also scheduling order).
    pub steps: Vec<RawStep>,
    /// The workflow result: a value template over inputs and step outputs. Default: `null`.
    #[serde(default)]
    pub output: Option<Value>,
    /// Named sub-pipelines (key = workflow type), started by steps with `child:`.
    #[serde(default)]
    pub children: BTreeMap<String, RawChild>,
    /// Frontend progress reporting (`PIPELINE_PROGRESS`), if the pipeline does it.
    #[serde(default)]
    pub progress: Option<RawProgress>,
    /// A step run once when a non-optional step of the main pipeline fails for good, before
    /// the run fails (docs/contracts/pipeline.md §5: `mark_failed`). Its expressions may read
    /// `input`, `workflow` and `failure` (`step`, `type`, `message`); it has no `needs`, no
    /// `for_each`.
    #[serde(default)]
    pub on_failure: Option<RawStep>,
    /// Search attributes every run (and its children) carries, by name: templates over the
    /// main pipeline's inputs, e.g. `RecordingId: ${input.recording_id}`. Only the names
    /// [`crate::search::DECLARABLE`] lists; the pipeline's name, version, hash and current
    /// step are set by the interpreter.
    #[serde(default)]
    pub search_attributes: BTreeMap<String, String>,
}

/// `progress:` — which transcript's channel gets `PIPELINE_PROGRESS`, and under which
/// `step_index` each activity type (in this pipeline or its children) is reported.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawProgress {
    /// Template naming the transcript (`${input.transcript_id}`).
    pub transcript_id: String,
    /// `total_steps` of every report.
    pub total_steps: u32,
    /// Activity type → `step_index` (1..=total_steps).
    pub steps: BTreeMap<String, u32>,
}

/// A sub-pipeline run as a child workflow.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawChild {
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Task queue of the child workflow; default: the parent's.
    #[serde(default)]
    pub task_queue: Option<String>,
    /// Declared inputs (the parent step's `with` must provide the required ones).
    #[serde(default)]
    pub inputs: BTreeMap<String, RawInput>,
    /// Options the child's steps inherit; merged over the file's top-level `defaults`.
    #[serde(default)]
    pub defaults: RawOptions,
    /// The child's steps.
    pub steps: Vec<RawStep>,
    /// The child's result template.
    #[serde(default)]
    pub output: Option<Value>,
}

/// A duration as written: `90s`, `5m`, `1h 30m`, or a bare number of seconds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawDuration {
    /// A bare integer: seconds.
    Seconds(u64),
    /// Human text parsed by `humantime` (`720s`, `5m`, `1h 30m`, `500ms`).
    Text(String),
}

/// One declared input.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    /// JSON type: `string`, `integer`, `number`, `boolean`, `array`, `object` or `any`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Whether a run without it is rejected (default `true`).
    #[serde(default)]
    pub required: Option<bool>,
    /// Value used when the input is absent.
    #[serde(default)]
    pub default: Option<Value>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// Timeouts, retries and queue: what `defaults` and each step may set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOptions {
    /// Task queue the activity is scheduled on.
    #[serde(default)]
    pub task_queue: Option<String>,
    /// Whole budget of the activity including retries (`10m`, `90s`).
    #[serde(default)]
    pub schedule_to_close: Option<RawDuration>,
    /// Budget of one attempt.
    #[serde(default)]
    pub start_to_close: Option<RawDuration>,
    /// Longest silence between heartbeats before the attempt is timed out.
    #[serde(default)]
    pub heartbeat: Option<RawDuration>,
    /// Retry policy; fields not set fall back to `defaults.retry`.
    #[serde(default)]
    pub retry: Option<RawRetry>,
}

/// A retry policy as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Delay before the second attempt (`5s`).
    #[serde(default)]
    pub initial_interval: Option<RawDuration>,
    /// Multiplier applied to the delay after each attempt (≥ 1.0).
    #[serde(default)]
    pub backoff_coefficient: Option<f64>,
    /// Cap on the delay.
    #[serde(default)]
    pub maximum_interval: Option<RawDuration>,
    /// Attempts in all, the first included; `0` means unlimited.
    #[serde(default)]
    pub maximum_attempts: Option<u32>,
    /// Failure types (`ApplicationFailure` type names) that are never retried.
    #[serde(default)]
    pub non_retryable_error_types: Option<Vec<String>>,
}

/// One step of a pipeline.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Unique within its pipeline; other steps refer to it in `needs` and `${id.…}`.
    pub id: String,
    /// Registered activity type to run. Exactly one of `activity` and `child`.
    #[serde(default)]
    pub activity: Option<String>,
    /// Sub-pipeline (a key of `children`) to start as a child workflow.
    #[serde(default)]
    pub child: Option<String>,
    /// Steps that must complete first. `${step.…}` references add nothing implicitly: every
    /// step referenced in `with`/`for_each`/`when` must be listed here (so the DAG is visible).
    #[serde(default)]
    pub needs: Vec<String>,
    /// The activity input (or the child's input): a value template.
    #[serde(default)]
    pub with: Option<Value>,
    /// Fan-out: an expression yielding an array; one activity or child per item, with
    /// `${item}` and `${index}` in scope.
    #[serde(default)]
    pub for_each: Option<String>,
    /// At most this many fan-out members in flight at once (default: all).
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Child workflow id pattern: `{workflow_id}`, `{step}` and `{index}` are replaced.
    /// Default `{workflow_id}-{step}-{index}` (or `{workflow_id}-{step}` without `for_each`).
    #[serde(default)]
    pub child_id: Option<String>,
    /// Activity id template (e.g. `pad_track_${input.track_index}`). Default: the step id,
    /// or `{id}_{index}` for fan-out members.
    #[serde(default)]
    pub activity_id: Option<String>,
    /// Condition: the step runs only when this expression is truthy; otherwise it is skipped
    /// and its output is `null`.
    #[serde(default)]
    pub when: Option<String>,
    /// A final failure is recorded but does not fail the run; the output is `null`.
    #[serde(default)]
    pub optional: bool,
    /// Frontend event names the step may publish.
    #[serde(default)]
    pub emits: Vec<String>,
    /// Run the activity as a Temporal *local activity*: inside the workflow task, on the
    /// worker running the workflow, with no task queue round trip (a few ms instead of a
    /// dispatch through the server). For short activities only (seconds, no heartbeats):
    /// not allowed with `heartbeat`, a `task_queue` other than the workflow's, or `child:`.
    #[serde(default)]
    pub local: bool,
    /// Task queue of the activity (children: of the child workflow).
    #[serde(default)]
    pub task_queue: Option<String>,
    /// Whole budget of the activity including retries.
    #[serde(default)]
    pub schedule_to_close: Option<RawDuration>,
    /// Budget of one attempt.
    #[serde(default)]
    pub start_to_close: Option<RawDuration>,
    /// Longest silence between heartbeats.
    #[serde(default)]
    pub heartbeat: Option<RawDuration>,
    /// Retry policy; unset fields fall back to the defaults' policy.
    #[serde(default)]
    pub retry: Option<RawRetry>,
    /// The label the Temporal Web UI shows for the activity or child (a string template, e.g.
    /// `transcribe track ${input.track_index} (${input.name})`). Default: the step id, with
    /// `i/N` for fan-out members.
    #[serde(default)]
    pub summary: Option<String>,
    /// The refs of the FORK and JOIN rows the Conductor status view draws around this step's
    /// members (docs/contracts/conductor-status.md §3.2), e.g. `{fork: fork_transcription, join:
    /// join_transcription}`. For a fan-out step, or a step of a child pipeline started by one
    /// (its members are the children's activities). Default: `fork_{id}` / `join_{id}`.
    #[serde(default)]
    pub conductor: Option<RawForkJoin>,
}

/// `conductor:` of a step: the refs of its FORK and JOIN rows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawForkJoin {
    /// Ref of the FORK row.
    pub fork: String,
    /// Ref of the JOIN row.
    pub join: String,
}

impl RawStep {
    /// The step's own options, in the shape `defaults` uses (serde cannot combine
    /// `flatten` with `deny_unknown_fields`, so the fields are repeated on the step).
    pub fn options(&self) -> RawOptions {
        RawOptions {
            task_queue: self.task_queue.clone(),
            schedule_to_close: self.schedule_to_close.clone(),
            start_to_close: self.start_to_close.clone(),
            heartbeat: self.heartbeat.clone(),
            retry: self.retry.clone(),
        }
    }
}
