//! The run's search attributes (`RecordingId`, …, and the pipeline's name, version and hash)
//! and memo, from the pinned definition.

use std::collections::BTreeMap;

use serde_json::Value;
#[cfg(test)]
use serde_json::json;
use temporalio_workflow::WorkflowContext;

use crate::expr::{self, Scope};
use crate::pipeline::Pipeline;

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
    ctx.upsert_search_attributes(super::visibility::run_attributes(pipeline, declared));
    super::visibility::set_memo(ctx, pipeline, false);
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
