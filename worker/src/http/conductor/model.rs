//! The Conductor JSON shapes (docs/contracts/conductor-status.md §2 and §3), as typed serde
//! structs: camelCase keys, epoch-millisecond times, optional fields left out when unset.

use serde::Serialize;
use serde_json::{Map, Value};

/// Workflow status (§2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkflowStatus {
    /// Not terminal.
    Running,
    /// Terminal, successful.
    Completed,
    /// Terminal, unsuccessful.
    Failed,
    /// Terminal, unsuccessful.
    TimedOut,
    /// Terminal, unsuccessful (also a cancelled Temporal run).
    Terminated,
    /// Every pending activity is paused.
    Paused,
}

/// Task status (§3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Waiting for a worker (or for its retry backoff).
    Scheduled,
    /// An attempt runs.
    InProgress,
    /// Done.
    Completed,
    /// An optional step that failed for good.
    CompletedWithErrors,
    /// The attempt failed.
    Failed,
    /// The attempt failed and is not retried.
    FailedWithTerminalError,
    /// The attempt timed out.
    TimedOut,
    /// Cancelled (one L, as Conductor spells it).
    Canceled,
    /// Not run.
    Skipped,
}

impl TaskStatus {
    /// Nothing more will happen to the row.
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskStatus::Scheduled | TaskStatus::InProgress)
    }

    /// Terminal and successful (what a JOIN waits for).
    pub fn is_successful(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::CompletedWithErrors | TaskStatus::Skipped
        )
    }

    /// A failure that names the task in `failedReferenceTaskNames`.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            TaskStatus::Failed | TaskStatus::FailedWithTerminalError | TaskStatus::TimedOut
        )
    }
}

/// A task's definition (`workflowTask`, and the entries of `workflowDefinition.tasks`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowTask {
    /// Task definition name (the activity type, or `FORK`/`JOIN`).
    pub name: String,
    /// The ref.
    pub task_reference_name: String,
    /// `SIMPLE`, `FORK`, `JOIN`, `FORK_JOIN_DYNAMIC`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `{}` (inputs are in `inputData`).
    pub input_parameters: Map<String, Value>,
    /// An optional step.
    pub optional: bool,
    /// `maximum_attempts − 1`.
    pub retry_count: i64,
    /// A `FORK_JOIN_DYNAMIC`'s input parameter holding the members to fork (`dynamicTasks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_fork_tasks_param: Option<String>,
    /// A `FORK_JOIN_DYNAMIC`'s input parameter holding each member's input
    /// (`dynamicTasksInput`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_fork_tasks_input_param_name: Option<String>,
}

/// One task row (§3).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// The step name, or `FORK`/`JOIN`.
    pub task_type: String,
    /// Same as `task_type`.
    pub task_def_name: String,
    /// The activity id (`pad_track_2`) or the fork/join ref.
    pub reference_task_name: String,
    /// UUIDv5 of `{run_id}/{ref}/{attempt}/{reset generation}`, hyphenated.
    pub task_id: String,
    /// Its status.
    pub status: TaskStatus,
    /// 1-based position.
    pub seq: usize,
    /// `attempt − 1`.
    pub retry_count: i64,
    /// The previous attempt's row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retried_task_id: Option<String>,
    /// A later attempt replaced this row.
    pub retried: bool,
    /// Terminal.
    pub executed: bool,
    /// When the attempt was scheduled.
    pub scheduled_time: i64,
    /// When it started (0: not yet).
    pub start_time: i64,
    /// When it ended (0: not yet).
    pub end_time: i64,
    /// The newest change.
    pub update_time: i64,
    /// Start of attempt 1.
    pub first_start_time: i64,
    /// `startTime − scheduledTime`.
    pub queue_wait_time: i64,
    /// Seconds until the next attempt, in retry backoff.
    pub start_delay_in_seconds: i64,
    /// Same.
    pub callback_after_seconds: i64,
    /// 1 once started.
    pub poll_count: i64,
    /// Heartbeat timeout, else start-to-close.
    pub response_timeout_seconds: i64,
    /// Temporal worker identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// The activity input.
    pub input_data: Value,
    /// The result, or `{"heartbeat": …}` while running.
    pub output_data: Value,
    /// Why it did not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_for_incompletion: Option<String>,
    /// The owning workflow.
    pub workflow_instance_id: String,
    /// Its type.
    pub workflow_type: String,
    /// The transcript id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Its definition.
    pub workflow_task: WorkflowTask,
    /// `true`.
    pub callback_from_worker: bool,
    /// `false`.
    pub loop_over_task: bool,
    /// `0`.
    pub workflow_priority: i64,
    /// `0`.
    pub iteration: i64,
    /// `0`.
    pub rate_limit_per_frequency: i64,
    /// `0`.
    pub rate_limit_frequency_in_seconds: i64,
}

/// `workflowDefinition`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Definition {
    /// The workflow type.
    pub name: String,
    /// The pipeline version.
    pub version: u32,
    /// `2`.
    pub schema_version: u32,
    /// `0`.
    pub timeout_seconds: u64,
    /// Its tasks.
    pub tasks: Vec<WorkflowTask>,
}

/// The Workflow JSON (§2).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    /// The Temporal workflow id.
    pub workflow_id: String,
    /// `DiarizationPipeline` or `TrackProcessing`.
    pub workflow_name: String,
    /// The pinned pipeline version.
    pub workflow_version: u32,
    /// The transcript id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Its status.
    pub status: WorkflowStatus,
    /// Start.
    pub create_time: i64,
    /// Start.
    pub start_time: i64,
    /// The newest event or heartbeat.
    pub update_time: i64,
    /// Close (0 while running).
    pub end_time: i64,
    /// The pipeline input plus `pipeline_hash`.
    pub input: Value,
    /// `{transcript_id, title, summary, duration, word_count}` when completed, else `{}`.
    pub output: Value,
    /// Why it did not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_for_incompletion: Option<String>,
    /// Refs whose last row failed.
    pub failed_reference_task_names: Vec<String>,
    /// Their task names.
    pub failed_task_names: Vec<String>,
    /// For a child, its parent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_workflow_id: Option<String>,
    /// `0`.
    pub priority: i64,
    /// `{}`.
    pub variables: Map<String, Value>,
    /// `{}`.
    pub task_to_domain: Map<String, Value>,
    /// When a retry last reset the run (0: never).
    pub last_retried_time: i64,
    /// From the pinned pipeline.
    pub workflow_definition: Definition,
    /// The rows, ordered.
    pub tasks: Vec<Task>,
}

/// `GET /api/workflow/{id}/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusBody {
    /// The workflow id.
    pub workflow_id: String,
    /// The transcript id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// With `includeOutput=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// With `includeVariables=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variables: Option<Map<String, Value>>,
    /// Its status.
    pub status: WorkflowStatus,
}
