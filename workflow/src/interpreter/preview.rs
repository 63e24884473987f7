//! The memo plan request a run would make, computed outside a workflow (`reflow backfill
//! --dry-run`): the same input handling as the run's first task — the rerun options taken out,
//! the input checked against the main graph with its defaults applied, the transcript named by
//! the pipeline's `progress:` section — so a preview asks `memo_plan`'s planning exactly what
//! the run would.

use serde_json::Value;

use super::memo::PlanRequest;
use super::{inputs, memoized};
use crate::expr::{self, Scope};
use crate::pipeline::Pipeline;

/// The [`PlanRequest`] a new main run of `pipeline` with `input` would send; `None` when such
/// a run plans no memos (its pipeline reports no transcript's progress).
pub fn plan_request(pipeline: &Pipeline, input: Value) -> Result<Option<PlanRequest>, String> {
    let mut input = input;
    let rerun = memoized::take_rerun(&mut input);
    let args = inputs::resolve_inputs(&pipeline.main, input)?;
    let Some(spec) = &pipeline.progress else {
        return Ok(None);
    };
    let mut scope = Scope::new();
    scope.insert("input".into(), args.clone());
    match expr::render(&Value::String(spec.transcript_id.clone()), &scope) {
        Ok(Value::String(transcript_id)) if !transcript_id.is_empty() => Ok(Some(PlanRequest {
            reference: pipeline.reference(),
            transcript_id,
            input: args,
            rerun,
        })),
        _ => Ok(None),
    }
}
