//! `reflow cost <workflow-id>`: what a run spent on transcription and LLM calls.
//!
//! Every paid step returns a `usage` object in its result (activities::usage::Usage). This
//! reads the run's history — and its children's, recursively — and adds up the usage of every
//! completed activity per activity type: calls, audio seconds, prompt and completion tokens,
//! backend time, and how many results came from a checkpoint (they cost nothing this time).

use std::collections::BTreeMap;

use activities::usage::Usage;
use serde::Serialize;
use serde_json::Value;
use temporalio_client::{Client, UntypedWorkflow, WorkflowFetchHistoryOptions};

/// Spending of one activity type in a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepCost {
    /// Activity type.
    pub step: String,
    /// Completed activities that reported usage.
    pub results: u64,
    /// Of those, served from a checkpoint (nothing spent on this run).
    pub from_checkpoint: u64,
    /// Spent on this run (checkpoint hits excluded).
    pub spent: Usage,
}

/// Why the cost could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cost of {workflow_id}: {message}")]
pub struct CostError {
    /// The workflow.
    pub workflow_id: String,
    /// What failed.
    pub message: String,
}

/// The run's spending per activity type (children included), in type order.
pub async fn cost(client: &Client, workflow_id: &str) -> Result<Vec<StepCost>, CostError> {
    let mut steps: BTreeMap<String, StepCost> = BTreeMap::new();
    let mut pending = vec![workflow_id.to_owned()];
    while let Some(id) = pending.pop() {
        let history = client
            .get_workflow_handle::<UntypedWorkflow>(&id)
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await
            .map_err(|e| CostError {
                workflow_id: id.clone(),
                message: e.to_string(),
            })?;
        let history: Value = serde_json::from_slice(&history).unwrap_or(Value::Null);
        let mut types: BTreeMap<i64, String> = BTreeMap::new();
        for e in history["events"].as_array().into_iter().flatten() {
            let Some((kind, a)) = e["attributes"].as_object().and_then(|m| m.iter().next()) else {
                continue;
            };
            match kind.as_str() {
                "ActivityTaskScheduledEventAttributes" => {
                    let name = a["activity_type"]["name"].as_str().unwrap_or_default();
                    types.insert(e["event_id"].as_i64().unwrap_or(0), name.to_owned());
                }
                "ActivityTaskCompletedEventAttributes" => {
                    let Some(step) = a["scheduled_event_id"].as_i64().and_then(|s| types.get(&s))
                    else {
                        continue;
                    };
                    let result = crate::http::conductor::payload(&a["result"]);
                    let Ok(usage) = serde_json::from_value::<Usage>(result["usage"].clone()) else {
                        continue;
                    };
                    let entry = steps.entry(step.clone()).or_insert_with(|| StepCost {
                        step: step.clone(),
                        ..StepCost::default()
                    });
                    entry.results += 1;
                    if usage.from_checkpoint {
                        entry.from_checkpoint += 1;
                    } else {
                        entry.spent.add(&usage);
                    }
                }
                "ChildWorkflowExecutionStartedEventAttributes" => {
                    let execution = &a["workflow_execution"];
                    if let Some(child) = execution["workflowId"]
                        .as_str()
                        .or(execution["workflow_id"].as_str())
                    {
                        pending.push(child.to_owned());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(steps.into_values().collect())
}

/// A table of `costs`, with a total line.
pub fn render(workflow_id: &str, costs: &[StepCost]) -> String {
    let mut out = format!(
        "{workflow_id}\n{:<28} {:>7} {:>6} {:>6} {:>9} {:>10} {:>11} {:>10}\n",
        "step", "results", "cached", "calls", "audio s", "prompt tk", "complete tk", "backend s"
    );
    let mut total = Usage::default();
    for c in costs {
        total.add(&c.spent);
        out.push_str(&format!(
            "{:<28} {:>7} {:>6} {:>6} {:>9.1} {:>10} {:>11} {:>10.1}\n",
            c.step,
            c.results,
            c.from_checkpoint,
            c.spent.calls,
            c.spent.audio_s,
            c.spent.prompt_tokens,
            c.spent.completion_tokens,
            c.spent.backend_ms as f64 / 1000.0
        ));
    }
    out.push_str(&format!(
        "{:<28} {:>7} {:>6} {:>6} {:>9.1} {:>10} {:>11} {:>10.1}\n",
        "total",
        costs.iter().map(|c| c.results).sum::<u64>(),
        costs.iter().map(|c| c.from_checkpoint).sum::<u64>(),
        total.calls,
        total.audio_s,
        total.prompt_tokens,
        total.completion_tokens,
        total.backend_ms as f64 / 1000.0
    ));
    out
}
