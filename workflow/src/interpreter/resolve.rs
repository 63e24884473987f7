//! What a run is pinned to, and how its definition reaches the workflow.
//!
//! A run's input names a registered version (`{pipeline, version, hash}`, a
//! [`PipelineRef`]); its first workflow task runs the local activity [`RESOLVE_PIPELINE`],
//! which returns the definition registered under that hash (the worker keeps registered
//! versions in a content-addressed cache, loaded from reflow's database and hash-checked on
//! load). Its result is recorded in history as a marker, so:
//!
//! - the workflow stays deterministic: the definition is a recorded result, never a lookup
//!   the workflow code makes (a version registered or a cache reloaded between the first
//!   execution and a replay cannot change what a replay sees);
//! - a replay is self-contained: the replayer, history readers (the Conductor view, retries)
//!   and a worker that never loaded that version read the definition from the marker;
//! - a hash that is not registered fails the run at its first workflow task with a
//!   non-retryable [`PIPELINE_NOT_REGISTERED`] naming the hash, before any step.
//!
//! The cost is one marker per workflow: the definition once in the main run's history, and
//! only its own graph in a child's ([`Pipeline::for_child`]), where the child's input used to
//! carry that graph twice (initiated and started events).
//!
//! Histories recorded before references carry the definition inline (`"pipeline": {…}`);
//! they replay as they ran. A new run with an inline definition is refused
//! ([`INLINE_REFUSED`]): anyone who can start a workflow on the namespace could otherwise run
//! a definition of their own on the worker's credentials. The one exception is a child of a
//! run started before references (its parent, still in flight, gives it the definition
//! inline): it is resolved by the inline definition's hash like a reference, so only a
//! registered definition runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_workflow::common::error::ApplicationFailure;
use temporalio_workflow::common::{RetryPolicy, UntypedActivity};
use temporalio_workflow::{LocalActivityOptions, WorkflowContext, WorkflowTermination};

use super::failure::{StepFailure, decode, failed};
use crate::payload;
use crate::pipeline::{Pipeline, PipelineRef};

/// Activity type of the resolver (a local activity of the first workflow task).
pub const RESOLVE_PIPELINE: &str = "resolve_pipeline";

/// Failure type of a run whose hash is not registered (non-retryable).
pub const PIPELINE_NOT_REGISTERED: &str = "PipelineNotRegistered";

/// Failure type of a new run that carries its definition inline (non-retryable).
pub const INLINE_REFUSED: &str = "InlineDefinitionRefused";

/// Patch marking runs started since references: an inline definition in such a run is a new
/// start (refused), not a history from before (replayed as it ran).
pub const REFERENCE_PATCH: &str = "reflow-pipeline-reference-1";

/// What a run is pinned to, as its input carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Pinned {
    /// A registered version: `{"pipeline": "Name", "version": 2, "hash": "…"}`.
    Reference(PipelineRef),
    /// The definition itself, `{"pipeline": {…}}`: histories from before references only.
    Inline {
        /// The whole definition (a child's: its own graph, [`Pipeline::for_child`]).
        pipeline: Box<Pipeline>,
    },
    /// Nothing in the input: a child's start event names the version
    /// ([`super::child_start`]); completed from it before anything reads the pin.
    StartEvent {},
}

impl Pinned {
    /// The version this names (an inline definition's own name, version and hash); `None`
    /// for an input that leaves it to its start event and was not completed.
    pub fn reference(&self) -> Option<PipelineRef> {
        match self {
            Pinned::Reference(r) => Some(r.clone()),
            Pinned::Inline { pipeline } => Some(pipeline.reference()),
            Pinned::StartEvent {} => None,
        }
    }
}

/// What [`RESOLVE_PIPELINE`] is asked: a version, and which graph of it the run runs (a
/// child is given only its own graph).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolveRequest {
    /// The version.
    #[serde(flatten)]
    pub reference: PipelineRef,
    /// The child graph the run runs; `None` for the main graph (the whole definition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<String>,
}

impl ResolveRequest {
    /// What the resolver returns for a registered `pipeline`: the whole definition for the
    /// main graph, the child's own graph ([`Pipeline::for_child`]) for a child.
    pub fn answer(&self, pipeline: &Pipeline) -> Pipeline {
        match &self.graph {
            Some(g) if *g != pipeline.main.name => pipeline.for_child(g),
            _ => pipeline.clone(),
        }
    }
}

/// The definition of a run, and the registered version it was resolved from: inline (and no
/// version) in a history from before references; otherwise resolved by the
/// [`RESOLVE_PIPELINE`] local activity and checked to be the version asked for.
pub(super) async fn definition<W>(
    ctx: &WorkflowContext<W>,
    pinned: &Pinned,
    graph: Option<&str>,
    (is_child, stored): (bool, bool),
) -> Result<(Pipeline, Option<PipelineRef>), WorkflowTermination> {
    let reference = match pinned {
        Pinned::Inline { pipeline } => {
            if !ctx.patched(REFERENCE_PATCH) {
                // Recorded before references: replay it as it ran.
                return Ok(((**pipeline).clone(), None));
            }
            if !is_child {
                return Err(refused(
                    INLINE_REFUSED,
                    format!(
                        "a run must name a registered pipeline version ({{pipeline, version, hash}}), not carry a definition: {} was given inline; register it with `reflow apply` and start it by reference",
                        pipeline.reference()
                    ),
                ));
            }
            pipeline.reference()
        }
        Pinned::Reference(r) => r.clone(),
        Pinned::StartEvent {} => {
            return Err(refused(
                PIPELINE_NOT_REGISTERED,
                "the run's input names no pipeline version (only a child's start event can)".into(),
            ));
        }
    };
    let request = ResolveRequest {
        reference: reference.clone(),
        graph: graph.map(str::to_owned),
    };
    if stored && let Pinned::Reference(_) = pinned {
        return from_store(&request).map(|p| (p, Some(reference)));
    }
    let options = LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(30))
                .non_retryable_error_types(vec![PIPELINE_NOT_REGISTERED.to_owned()])
                .build(),
        )
        .build();
    let resolved = ctx
        .execute_local_activity(
            UntypedActivity::new(RESOLVE_PIPELINE.to_owned()),
            payload::to_raw(&request),
            options,
        )
        .await
        .map_err(|e| failed(e.failure(), "PayloadError", &e))
        .and_then(decode)
        .and_then(|v| {
            serde_json::from_value::<Pipeline>(v)
                .map_err(|e| StepFailure::new("PayloadError", e.to_string()))
        });
    match resolved {
        Ok(p) if reference.names(&p) => Ok((p, Some(reference))),
        Ok(p) => Err(refused(
            PIPELINE_NOT_REGISTERED,
            format!(
                "pipeline {reference} resolved to {}, not the version asked for",
                p.reference()
            ),
        )),
        Err(f) if f.kind == PIPELINE_NOT_REGISTERED => {
            Err(refused(PIPELINE_NOT_REGISTERED, f.message))
        }
        Err(f) => Err(refused(
            PIPELINE_NOT_REGISTERED,
            format!("pipeline {reference} could not be resolved: {}", f.text()),
        )),
    }
}

/// The definition `request` names, from the registered definitions this process holds
/// ([`crate::pipeline::store`]), for a child of a run that took `reflow-lean-history-2`: its
/// parent resolved that version (the whole definition is in the parent's history), so the
/// child records no marker of its own. The hash fixes the content, so a replay on any worker
/// reads the same graph. A hash this process does not hold yet fails the workflow task (a
/// panic, which the SDK reports as a task failure and Temporal retries) after asking the
/// worker to load it; one held under another name or version fails the run, as a resolution
/// would.
fn from_store(request: &ResolveRequest) -> Result<Pipeline, WorkflowTermination> {
    let reference = &request.reference;
    let Some(p) = crate::pipeline::store::get(&reference.hash) else {
        crate::pipeline::store::request(&reference.hash);
        panic!(
            "pipeline {reference} is not loaded in this worker yet; the workflow task is retried once it is"
        );
    };
    if !reference.names(&p) {
        return Err(refused(
            PIPELINE_NOT_REGISTERED,
            format!(
                "pipeline {reference} resolved to {}, not the version asked for",
                p.reference()
            ),
        ));
    }
    Ok(request.answer(&p))
}

/// A non-retryable failure of the run, before any step.
pub(super) fn refused(kind: &str, message: String) -> WorkflowTermination {
    ApplicationFailure::builder(message)
        .type_name(kind.to_owned())
        .non_retryable(true)
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_input_shapes_read_and_a_reference_writes_name_version_and_hash() {
        let r: Pinned =
            serde_json::from_value(json!({"pipeline": "P", "version": 2, "hash": "ab"})).unwrap();
        assert_eq!(
            r,
            Pinned::Reference(PipelineRef {
                pipeline: "P".into(),
                version: 2,
                hash: "ab".into()
            })
        );
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"pipeline": "P", "version": 2, "hash": "ab"})
        );
        let catalog = crate::Catalog::new().activity("a", &[]).workflow_type("M");
        let p = crate::parse_and_validate(
            "t.yaml",
            "name: M\nversion: 1\nsteps: [{id: s, activity: a, start_to_close: 1s}]\n",
            &catalog,
        )
        .unwrap();
        let inline: Pinned =
            serde_json::from_value(json!({"pipeline": serde_json::to_value(&p).unwrap()})).unwrap();
        assert_eq!(inline.reference(), Some(p.reference()));
        assert!(matches!(inline, Pinned::Inline { .. }));
    }
}
