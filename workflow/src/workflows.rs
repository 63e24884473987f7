//! Named workflow types: thin shells that delegate to the interpreter.
//!
//! Temporal shows a workflow by its type name, and the Rust SDK registers a type under the
//! name its definition carries, so every pipeline name needs its own Rust type.
//! [`pipeline_workflow!`](crate::pipeline_workflow) stamps one out: the struct holding the
//! progress table, `run` (delegating to [`crate::interpreter::run`]), the `progress` query and
//! the `step_attempt` signal. This module declares the types of reflow's own pipelines; tests
//! declare theirs with the same macro.

// `#[workflow_methods]` generates one undocumented marker constant per method, outside the
// impl block the macro sees, so the lint is silenced for the module that expands the macro.
#![allow(missing_docs)]

/// Declare a workflow type named `$name` that runs pipeline graphs of that name.
///
/// The expanding module needs `#![allow(missing_docs)]` (see the top of this module) and the
/// crates `temporalio-macros`, `temporalio-workflow` and `serde_json` as dependencies.
#[macro_export]
macro_rules! pipeline_workflow {
    ($(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        #[::temporalio_macros::workflow]
        #[derive(Default)]
        $vis struct $name {
            progress: $crate::progress::Progress,
        }

        impl $crate::interpreter::Interpreted for $name {
            fn progress(&self) -> &$crate::progress::Progress {
                &self.progress
            }
            fn progress_mut(&mut self) -> &mut $crate::progress::Progress {
                // Every change is a new revision, which a child reports to its parent.
                self.progress.revision += 1;
                &mut self.progress
            }
        }

        #[::temporalio_macros::workflow_methods]
        impl $name {
            /// Interpret the pinned pipeline graph named like this type.
            #[run]
            pub async fn run(
                ctx: &mut ::temporalio_workflow::WorkflowContext<Self>,
                input: $crate::interpreter::RunInput,
            ) -> ::temporalio_workflow::WorkflowResult<::serde_json::Value> {
                $crate::interpreter::run(ctx, input).await
            }

            /// The step table.
            #[query]
            pub fn progress(
                &self,
                _ctx: &::temporalio_workflow::WorkflowContextView,
            ) -> $crate::progress::Progress {
                self.progress.clone()
            }

            /// An attempt started or failed (sent by the worker's activity interceptor).
            #[signal]
            pub fn step_attempt(
                &mut self,
                _ctx: &mut ::temporalio_workflow::SyncWorkflowContext<Self>,
                report: $crate::progress::AttemptReport,
            ) {
                self.progress.record_attempt(&report);
            }

            /// A retry was accepted for this running run (sent by the worker's retry after it
            /// reset the activities waiting in backoff): history keeps when, which the
            /// Conductor view shows as `lastRetriedTime`. Nothing else changes.
            #[signal]
            pub fn retried(
                &mut self,
                _ctx: &mut ::temporalio_workflow::SyncWorkflowContext<Self>,
                _reason: ::std::string::String,
            ) {
            }

            /// A child workflow's table changed (sent by the child's interpreter).
            #[signal]
            pub fn child_progress(
                &mut self,
                _ctx: &mut ::temporalio_workflow::SyncWorkflowContext<Self>,
                report: $crate::progress::ChildProgress,
            ) {
                self.progress.record_child(report);
            }
        }
    };
}

/// Name of the query every pipeline workflow answers with its [`crate::progress::Progress`].
pub const PROGRESS_QUERY: &str = "progress";
/// Name of the signal carrying [`crate::progress::AttemptReport`]s.
pub const STEP_ATTEMPT_SIGNAL: &str = "step_attempt";
/// Name of the signal recording that a retry was accepted for a running run.
pub const RETRIED_SIGNAL: &str = "retried";
/// Name of the signal carrying [`crate::progress::ChildProgress`] from a child to its parent.
pub const CHILD_PROGRESS_SIGNAL: &str = "child_progress";

/// The `child_progress` signal, addressed to a parent of any pipeline workflow type.
pub struct ChildProgressSignal;

impl temporalio_workflow::common::SignalDefinition for ChildProgressSignal {
    type Workflow = temporalio_workflow::common::UntypedWorkflow;
    type Input = crate::progress::ChildProgress;
    fn name(&self) -> &str {
        CHILD_PROGRESS_SIGNAL
    }
}

crate::pipeline_workflow!(
    /// The meeting pipeline (`pipelines/diarization.yaml`).
    pub DiarizationPipeline
);
crate::pipeline_workflow!(
    /// One track of a meeting (`pipelines/diarization.yaml`'s child): transcribe its padded
    /// audio (the parent's `pad_track` step pads every track first).
    pub TrackProcessing
);
crate::pipeline_workflow!(
    /// The Daily polling backup (`pipelines/daily-poll.yaml`), started by the `daily-poll`
    /// schedule.
    pub PollDailyRecordings
);
crate::pipeline_workflow!(
    /// The example pipeline (`pipelines/digest.yaml`): checksum every file of a directory.
    pub DirectoryDigest
);
crate::pipeline_workflow!(
    /// One file of the example pipeline.
    pub FileDigest
);

/// Names of the workflow types this crate declares.
pub const WORKFLOW_TYPES: &[&str] = &[
    "DiarizationPipeline",
    "TrackProcessing",
    "PollDailyRecordings",
    "DirectoryDigest",
    "FileDigest",
];
