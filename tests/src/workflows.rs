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

/// Whether [`TaskFailsOnce`] has failed its workflow task yet (per test process).
static TASK_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A workflow whose first workflow task panics (once per process) and whose retry completes:
/// it makes SDK Core export `temporal_workflow_task_execution_failed`, which alerts read, in a
/// test that scrapes every metric the dashboards and rules name.
#[temporalio_macros::workflow]
#[derive(Default)]
pub struct TaskFailsOnce;

#[temporalio_macros::workflow_methods]
impl TaskFailsOnce {
    /// Panic the first time, complete the second.
    #[run]
    pub async fn run(
        _ctx: &mut temporalio_workflow::WorkflowContext<Self>,
        _input: serde_json::Value,
    ) -> temporalio_workflow::WorkflowResult<serde_json::Value> {
        if !TASK_FAILED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            panic!("a deliberate workflow task failure (test)");
        }
        Ok(serde_json::json!("recovered"))
    }
}
