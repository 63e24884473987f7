//! The pipeline version a run is on, carried to each of its activities in a header.
//!
//! A step's metrics compare versions during a rollout (`reflow_step_*`'s `version` label:
//! the candidate's latency and failure rate next to the current version's), but an activity
//! only knows its workflow's id and type, not the version the run resolved. The workflow
//! interceptor [`interceptor`] reads the version from the run's input ([`RunInput`], a
//! reference or, in a history from before references, the definition itself; a child whose
//! input leaves it to its start event, from its `PipelineVersion` search attribute) and stamps it
//! on every activity and local activity the run schedules as the header [`VERSION_HEADER`];
//! the worker's activity interceptor reads it back with [`version_of`].
//!
//! Replay: Temporal compares a scheduled activity's id and type with history, never its
//! headers, so runs recorded without the header replay unchanged (their activities then carry
//! no version, and their metrics an empty `version`). The interceptor reads only the run's
//! input and start event: deterministic.

use std::cell::Cell;
use std::collections::HashMap;

use temporalio_workflow::common::protos::temporal::api::common::v1::Payload;
use temporalio_workflow::workflow_interceptors::{
    CancellableWorkflowOutboundFuture, ExecuteWorkflowInput, ExecuteWorkflowResult,
    ScheduleActivityInput, ScheduleActivityResult, ScheduleLocalActivityInput, WorkflowInterceptor,
    WorkflowInterceptorConstructor, WorkflowInterceptorContext, WorkflowInterceptorFuture,
    WorkflowNext,
};

use crate::interpreter::RunInput;
use crate::interpreter::resolve::Pinned;
use crate::search;

/// The header naming the pipeline version of the run that scheduled an activity: a payload
/// holding the version number as JSON (since `reflow-lean-history-3`'s builds without the
/// `encoding` metadata, which nothing reads: 24 bytes less per activity in history).
pub const VERSION_HEADER: &str = "reflow-pipeline-version";

/// The interceptor of every pipeline workflow (one instance per run; install it on each
/// worker that runs pipeline workflows).
pub fn interceptor() -> WorkflowInterceptorConstructor {
    WorkflowInterceptorConstructor::new(|_| VersionHeader::default())
}

/// The version `headers` name ([`VERSION_HEADER`]), if any.
pub fn version_of(headers: &HashMap<String, Payload>) -> Option<u32> {
    serde_json::from_slice(&headers.get(VERSION_HEADER)?.data).ok()
}

/// The header's payload for `version`.
fn header(version: u32) -> Payload {
    Payload {
        data: version.to_string().into_bytes(),
        ..Payload::default()
    }
}

/// The version of one run, once its input is known.
#[derive(Default)]
struct VersionHeader {
    version: Cell<Option<u32>>,
}

impl VersionHeader {
    fn stamp(&self, headers: &mut HashMap<String, Payload>) {
        if let Some(v) = self.version.get() {
            headers.insert(VERSION_HEADER.to_owned(), header(v));
        }
    }
}

impl WorkflowInterceptor for VersionHeader {
    fn execute<'a>(
        &'a self,
        ctx: WorkflowInterceptorContext,
        input: ExecuteWorkflowInput,
        next: WorkflowNext<
            'a,
            ExecuteWorkflowInput,
            WorkflowInterceptorFuture<'a, ExecuteWorkflowResult>,
        >,
    ) -> WorkflowInterceptorFuture<'a, ExecuteWorkflowResult> {
        let version = input
            .input_ref::<RunInput>()
            .and_then(|run| match &run.pinned {
                Pinned::Reference(r) => Some(r.version),
                Pinned::Inline { pipeline } => Some(pipeline.version),
                // A child whose start event names its version (`interpreter::child_start`).
                Pinned::StartEvent {} => ctx
                    .search_attributes()
                    .get(&search::PIPELINE_VERSION)
                    .and_then(|v| u32::try_from(v).ok()),
            });
        self.version.set(version);
        next.run(input)
    }

    fn schedule_activity(
        &self,
        _ctx: WorkflowInterceptorContext,
        mut input: ScheduleActivityInput,
        next: WorkflowNext<
            'static,
            ScheduleActivityInput,
            CancellableWorkflowOutboundFuture<ScheduleActivityResult>,
        >,
    ) -> CancellableWorkflowOutboundFuture<ScheduleActivityResult> {
        self.stamp(input.headers_mut());
        next.run(input)
    }

    fn schedule_local_activity(
        &self,
        _ctx: WorkflowInterceptorContext,
        mut input: ScheduleLocalActivityInput,
        next: WorkflowNext<
            'static,
            ScheduleLocalActivityInput,
            CancellableWorkflowOutboundFuture<ScheduleActivityResult>,
        >,
    ) -> CancellableWorkflowOutboundFuture<ScheduleActivityResult> {
        self.stamp(input.headers_mut());
        next.run(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_carries_the_version_and_anything_else_is_no_version() {
        let mut headers = HashMap::new();
        assert_eq!(version_of(&headers), None);
        VersionHeader {
            version: Cell::new(Some(3)),
        }
        .stamp(&mut headers);
        assert_eq!(version_of(&headers), Some(3));
        headers.insert(VERSION_HEADER.to_owned(), Payload::default());
        assert_eq!(version_of(&headers), None, "not a number");
        let mut none = HashMap::new();
        VersionHeader::default().stamp(&mut none);
        assert!(
            none.is_empty(),
            "a run whose input is unknown stamps nothing"
        );
    }
}
