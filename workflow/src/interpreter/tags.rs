//! The run's search attributes (`RecordingId`, …, and the pipeline's name, version and hash)
//! and memo, from the pinned definition.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use temporalio_workflow::WorkflowContext;

use crate::expr::{self, Scope};
use crate::pipeline::Pipeline;
use crate::search;

/// The pipeline's declared search attributes rendered for this run; one that renders to
/// nothing (an absent optional input) or fails to render is left out.
pub(super) fn render_search_attributes(
    pipeline: &Pipeline,
    scope: &Scope,
) -> BTreeMap<String, String> {
    pipeline
        .search_attributes
        .iter()
        .filter_map(|(name, template)| {
            match expr::render(&Value::String(template.clone()), scope) {
                Ok(Value::String(s)) if !s.is_empty() => Some((name.clone(), s)),
                Ok(Value::Null) | Ok(Value::String(_)) | Err(_) => None,
                Ok(other) => Some((name.clone(), other.to_string())),
            }
        })
        .collect()
}

/// Set the run's search attributes (declared ones, pipeline name, version, hash) and memo.
pub(super) fn tag_run<W>(
    ctx: &WorkflowContext<W>,
    pipeline: &Pipeline,
    declared: &BTreeMap<String, String>,
) {
    let mut updates = vec![
        search::PIPELINE_NAME.value_set(pipeline.name.clone()),
        search::PIPELINE_VERSION.value_set(i64::from(pipeline.version)),
        search::PIPELINE_HASH.value_set(pipeline.hash.clone()),
    ];
    updates.extend(
        declared
            .iter()
            .filter_map(|(k, v)| search::declarable(k).map(|key| key.value_set(v.clone()))),
    );
    ctx.upsert_search_attributes(updates);
    let memo = [
        ("pipeline", json!(pipeline.name)),
        ("pipeline_version", json!(pipeline.version)),
        ("pipeline_hash", json!(pipeline.hash)),
    ];
    if let Err(e) = ctx
        .upsert_memo(memo.map(|(k, v)| (k, Some(temporalio_workflow::common::MemoValue::new(v)))))
        && !ctx.is_replaying()
    {
        tracing::warn!(workflow_id = ctx.workflow_id(), error = %e, "memo not set");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_attributes_render_and_absent_ones_are_left_out() {
        let mut p: Pipeline = serde_json::from_value(json!({
            "name": "P", "version": 1, "hash": "h",
            "main": {"name": "P", "task_queue": "q", "inputs": {}, "steps": [], "output": null},
            "children": {}
        }))
        .unwrap();
        p.search_attributes
            .insert("RecordingId".into(), "${input.id}".into());
        p.search_attributes
            .insert("RoomName".into(), "${input.room}".into());
        let mut scope = Scope::new();
        scope.insert("input".into(), json!({"id": "rec-1", "room": null}));
        let got = render_search_attributes(&p, &scope);
        assert_eq!(
            got,
            BTreeMap::from([("RecordingId".into(), "rec-1".into())])
        );
    }
}
