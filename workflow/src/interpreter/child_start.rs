//! What a child reads from its start event rather than its input.
//!
//! A run that takes [`LEAN_HISTORY_3_PATCH`] starts its children with an input that holds only
//! what the start event does not already carry: the graph's input, the child's own workflow id
//! (the binding, [`super::binding`]) and `lean: 3`. Before, each child's input also named its
//! pinned version, its graph and its parent, which Temporal writes twice per child (the parent's
//! initiated event, the child's started event) next to the same facts in the start event. The
//! child reads them back from that event, which only its parent's command wrote:
//!
//! - the pinned version: the `PipelineName`, `PipelineVersion` and `PipelineHash` search
//!   attributes its parent set on it (a lean parent always does, [`super::visibility`]);
//! - its graph: its workflow type (a `child:` step starts the graph as the workflow type of its
//!   name);
//! - its parent: the start event's parent execution. An input of this form in a run without a
//!   parent was copied and started directly: [`super::binding`] refuses it before this runs;
//! - the graph inputs a declared search attribute carries verbatim ([`carried_inputs`]: the
//!   pipeline declares `TranscriptId: ${input.transcript_id}` and the child graph requires
//!   `transcript_id`): the parent leaves such an input out when its value is the attribute's,
//!   and the child, which cannot have started without a required input, takes a missing one
//!   from the attribute.
//!
//! The history readers complete a recorded input the same way ([`complete`], given what they
//! read from the event), so the Conductor view and re-runs see the whole input.
//!
//! Replay: the input's form says which rules apply, so a child recorded with a whole input
//! replays as it ran.

use serde_json::Value;
use temporalio_workflow::WorkflowContext;
use temporalio_workflow::WorkflowTermination;

use std::collections::BTreeMap;

use super::RunInput;
use super::resolve::{PIPELINE_NOT_REGISTERED, Pinned};
use crate::pipeline::{Graph, Pipeline, PipelineRef};
use crate::search;

/// Patch marking runs whose children's inputs leave out what their start event carries (see
/// the module); it implies `reflow-lean-history-2` and `reflow-fewer-actions-1`, asked for
/// instead of them, so a run still records one patch marker.
pub const LEAN_HISTORY_3_PATCH: &str = "reflow-lean-history-3";

/// The `lean` of such an input.
pub const START_EVENT_INPUT: u8 = 3;

/// What a child's start event says, as the workflow or a history reader sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartEvent<'a> {
    /// The child's workflow type (its graph's name).
    pub workflow_type: &'a str,
    /// The parent's workflow id.
    pub parent: Option<&'a str>,
    /// The `PipelineName` search attribute.
    pub pipeline: Option<String>,
    /// The `PipelineVersion` search attribute.
    pub version: Option<i64>,
    /// The `PipelineHash` search attribute.
    pub hash: Option<String>,
}

/// Why an input of this form cannot be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incomplete {
    /// The start event has no parent.
    #[error("a child's input in a run that has no parent")]
    NoParent,
    /// The start event lacks a pipeline attribute.
    #[error(
        "a child's input names its pipeline version in its start event's search attributes, but {0} is missing or not a version"
    )]
    NoVersion(&'static str),
}

/// Whether `input` leaves its version, graph and parent to its start event.
pub fn leaves_to_start_event(input: &RunInput) -> bool {
    input.lean >= START_EVENT_INPUT && matches!(input.pinned, Pinned::StartEvent {})
}

/// Complete an input that leaves its version, graph and parent to its start event; any other
/// input is left as it is.
pub fn complete(input: &mut RunInput, start: StartEvent<'_>) -> Result<(), Incomplete> {
    if !leaves_to_start_event(input) {
        return Ok(());
    }
    let parent = start.parent.ok_or(Incomplete::NoParent)?;
    let pipeline = start
        .pipeline
        .ok_or(Incomplete::NoVersion("PipelineName"))?;
    let version = start
        .version
        .and_then(|v| u32::try_from(v).ok())
        .ok_or(Incomplete::NoVersion("PipelineVersion"))?;
    let hash = start.hash.ok_or(Incomplete::NoVersion("PipelineHash"))?;
    input.pinned = Pinned::Reference(PipelineRef {
        pipeline,
        version,
        hash,
    });
    input.graph = Some(start.workflow_type.to_owned());
    input.parent = Some(parent.to_owned());
    Ok(())
}

/// The required inputs of `graph` that a declared search attribute of `pipeline` carries
/// verbatim: `(attribute, input)` for each `K: ${input.X}` of its `search_attributes` (a
/// declarable `K`) where `graph` requires `X`.
pub fn carried_inputs<'p>(pipeline: &'p Pipeline, graph: &Graph) -> Vec<(&'p str, &'p str)> {
    pipeline
        .search_attributes
        .iter()
        .filter_map(|(attribute, template)| {
            let input = template
                .trim()
                .strip_prefix("${input.")?
                .strip_suffix('}')?;
            let required = graph.inputs.get(input)?.required;
            (required && search::declarable(attribute).is_some())
                .then_some((attribute.as_str(), input))
        })
        .collect()
}

/// `carry` on each carried input of `graph` whose attribute `declared` holds: the graph input's
/// fields, the input's name and the attribute's value.
fn for_each_carried(
    input: &mut Value,
    (pipeline, graph): (&Pipeline, &Graph),
    declared: &BTreeMap<String, String>,
    mut carry: impl FnMut(&mut serde_json::Map<String, Value>, &str, &str),
) {
    let Value::Object(fields) = input else {
        return;
    };
    for (attribute, name) in carried_inputs(pipeline, graph) {
        if let Some(value) = declared.get(attribute) {
            carry(fields, name, value);
        }
    }
}

/// The parent's side: leave out of a child's graph input each carried input whose value is the
/// attribute the child is started with (`declared`, the rendered declared attributes).
pub(super) fn leave_out_carried(
    input: &mut Value,
    pipeline: &Pipeline,
    graph: &Graph,
    declared: &BTreeMap<String, String>,
) {
    for_each_carried(input, (pipeline, graph), declared, |fields, name, value| {
        if fields.get(name).and_then(Value::as_str) == Some(value) {
            fields.remove(name);
        }
    });
}

/// The child's side: take each carried input its graph input lacks from the attribute
/// (`declared`, the declared attributes of its start event).
pub fn restore_carried(
    input: &mut Value,
    pipeline: &Pipeline,
    graph: &Graph,
    declared: &BTreeMap<String, String>,
) {
    for_each_carried(input, (pipeline, graph), declared, |fields, name, value| {
        fields
            .entry(name)
            .or_insert_with(|| Value::String(value.to_owned()));
    });
}

/// [`complete`] on a recorded input (a history reader's JSON), its carried inputs restored when
/// this process holds its version (`crate::pipeline::store`); any other value, or one that
/// cannot be completed, is left as it is. `declared`: the start event's declared attributes.
pub fn complete_recorded(
    input: &mut Value,
    start: StartEvent<'_>,
    declared: &BTreeMap<String, String>,
) {
    if input.get("lean").and_then(Value::as_u64) < Some(u64::from(START_EVENT_INPUT)) {
        return;
    }
    let Ok(mut run) = serde_json::from_value::<RunInput>(input.clone()) else {
        return;
    };
    if complete(&mut run, start).is_err() {
        return;
    }
    if let Some(pipeline) = run
        .pinned
        .reference()
        .and_then(|r| crate::pipeline::store::get(&r.hash))
        && let Some(graph) = run.graph.as_deref().and_then(|g| pipeline.graph(g))
    {
        restore_carried(&mut run.input, &pipeline, graph, declared);
    }
    if let Ok(completed) = serde_json::to_value(&run) {
        *input = completed;
    }
}

/// In the run's first workflow task: complete the run's own input from its start event
/// (deterministic: the event is in history), or fail the run (non-retryable, before any
/// step).
pub(super) fn complete_in_run<W>(
    ctx: &WorkflowContext<W>,
    input: &mut RunInput,
) -> Result<(), WorkflowTermination> {
    if !leaves_to_start_event(input) {
        return Ok(());
    }
    let info = ctx.info();
    let parent = info.parent();
    let attributes = ctx.search_attributes();
    let start = StartEvent {
        workflow_type: info.workflow_type(),
        parent: parent.as_ref().map(|p| p.workflow_id()),
        pipeline: attributes.get(&search::PIPELINE_NAME),
        version: attributes.get(&search::PIPELINE_VERSION),
        hash: attributes.get(&search::PIPELINE_HASH),
    };
    complete(input, start).map_err(|e| {
        super::resolve::refused(
            PIPELINE_NOT_REGISTERED,
            format!("workflow {:?}: {e}", ctx.workflow_id()),
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn short() -> RunInput {
        serde_json::from_value(json!({
            "input": {"track_index": 1}, "workflow_id": "m-track-1", "lean": 3
        }))
        .unwrap()
    }

    fn start(parent: Option<&str>) -> StartEvent<'_> {
        StartEvent {
            workflow_type: "TrackProcessing",
            parent,
            pipeline: Some("P".into()),
            version: Some(3),
            hash: Some("ab".into()),
        }
    }

    #[test]
    fn a_short_input_is_completed_from_its_start_event_and_written_without_its_pin() {
        let mut input = short();
        assert!(leaves_to_start_event(&input));
        assert_eq!(
            serde_json::to_value(&input).unwrap(),
            json!({"input": {"track_index": 1}, "workflow_id": "m-track-1", "lean": 3})
        );
        complete(&mut input, start(Some("m"))).unwrap();
        assert_eq!(
            input.pinned,
            Pinned::Reference(PipelineRef {
                pipeline: "P".into(),
                version: 3,
                hash: "ab".into()
            })
        );
        assert_eq!(input.graph.as_deref(), Some("TrackProcessing"));
        assert_eq!(input.parent.as_deref(), Some("m"));
        assert!(!leaves_to_start_event(&input), "completed once");
    }

    #[test]
    fn without_a_parent_or_a_version_attribute_it_is_incomplete() {
        assert_eq!(
            complete(&mut short(), start(None)),
            Err(Incomplete::NoParent)
        );
        let mut no_hash = start(Some("m"));
        no_hash.hash = None;
        assert_eq!(
            complete(&mut short(), no_hash),
            Err(Incomplete::NoVersion("PipelineHash"))
        );
        let mut negative = start(Some("m"));
        negative.version = Some(-1);
        assert_eq!(
            complete(&mut short(), negative),
            Err(Incomplete::NoVersion("PipelineVersion"))
        );
    }

    /// A pipeline declaring `TranscriptId: ${input.transcript_id}` and `RoomName:
    /// ${input.room}`, whose child `C` requires `transcript_id` and takes `room` optionally.
    fn carrying() -> Pipeline {
        let catalog = crate::Catalog::new()
            .activity("a", &[])
            .workflow_type("M")
            .workflow_type("C");
        crate::parse_and_validate(
            "t.yaml",
            "name: M\nversion: 1\ninputs: {transcript_id: {type: string}, room: {type: string, required: false}}\n\
             search_attributes: {TranscriptId: \"${input.transcript_id}\", RoomName: \"${input.room}\"}\n\
             steps: [{id: c, child: C, with: {transcript_id: \"${input.transcript_id}\", room: \"${input.room}\", n: 1}}]\n\
             children:\n  C:\n    inputs: {transcript_id: {type: string}, room: {type: string, required: false}, n: {type: integer}}\n    \
             steps: [{id: s, activity: a, start_to_close: 1s}]\n",
            &catalog,
        )
        .unwrap()
    }

    #[test]
    fn a_required_input_an_attribute_carries_is_left_out_and_taken_back_from_it() {
        let p = carrying();
        let child = p.graph("C").unwrap();
        assert_eq!(
            carried_inputs(&p, child),
            [("TranscriptId", "transcript_id")],
            "optional `room` is not carried: its absence must stay absent"
        );
        let declared: BTreeMap<String, String> = [
            ("TranscriptId".to_owned(), "t1".to_owned()),
            ("RoomName".to_owned(), "r".to_owned()),
        ]
        .into();
        let full = json!({"transcript_id": "t1", "room": "r", "n": 1});
        let mut sent = full.clone();
        leave_out_carried(&mut sent, &p, child, &declared);
        assert_eq!(sent, json!({"room": "r", "n": 1}));
        restore_carried(&mut sent, &p, child, &declared);
        assert_eq!(sent, full);
        // Another value than the attribute's stays in the input, and wins.
        let mut other = json!({"transcript_id": "t2", "n": 1});
        leave_out_carried(&mut other, &p, child, &declared);
        restore_carried(&mut other, &p, child, &declared);
        assert_eq!(other, json!({"transcript_id": "t2", "n": 1}));
    }

    #[test]
    fn a_whole_input_is_left_as_it_is_and_a_recorded_one_is_completed() {
        let whole = json!({
            "pipeline": "P", "version": 2, "hash": "cd", "graph": "TrackProcessing",
            "input": {}, "parent": "m", "workflow_id": "m-track-1", "lean": 2
        });
        let mut input: RunInput = serde_json::from_value(whole.clone()).unwrap();
        assert!(!leaves_to_start_event(&input));
        complete(&mut input, start(Some("other"))).unwrap();
        assert_eq!(serde_json::to_value(&input).unwrap(), whole);

        let mut recorded = serde_json::to_value(short()).unwrap();
        complete_recorded(&mut recorded, start(Some("m")), &BTreeMap::new());
        assert_eq!(
            (&recorded["hash"], &recorded["graph"], &recorded["parent"]),
            (&json!("ab"), &json!("TrackProcessing"), &json!("m"))
        );
        let mut unrelated = json!({"input": {}});
        complete_recorded(&mut unrelated, start(Some("m")), &BTreeMap::new());
        assert_eq!(unrelated, json!({"input": {}}));
    }
}
