//! Workflow types of the test pipelines (`tests/pipelines/*.yaml`).

// `pipeline_workflow!` expands to undocumented marker constants.
#![allow(missing_docs)]

workflow::pipeline_workflow!(
    /// Main graph of every engine test pipeline.
    pub EngineTest
);
workflow::pipeline_workflow!(
    /// Child graph of the engine test pipelines.
    pub EngineChild
);
