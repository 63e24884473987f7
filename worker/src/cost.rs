//! `reflow cost <workflow-id>`: a run's time and spending per step.
//!
//! Every paid step returns a `usage` object in its result (activities::usage::Usage). This
//! reads the run's history — and its children's, recursively — and adds up per activity type:
//! the time its activities took (scheduled → closed, retries and backoff included), the usage
//! of every completed one (calls, audio seconds, prompt and completion tokens, backend time),
//! how many results came from a checkpoint (they cost nothing this time), and — from the
//! `step_attempt` table, when a database is given — the bytes its attempts wrote to storage.

use std::collections::BTreeMap;

use activities::usage::Usage;
use serde::Serialize;
use temporalio_client::Client;

use crate::history::ChildOutcome;
use crate::history::Close;

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
    /// Seconds its activities took, scheduled to closed (summed over fan-out members).
    pub time_s: f64,
    /// Bytes its attempts wrote to object storage.
    pub bytes_written: u64,
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
pub async fn cost(
    client: &Client,
    db: Option<&activities::db::Db>,
    workflow_id: &str,
) -> Result<Vec<StepCost>, CostError> {
    let mut steps: BTreeMap<String, StepCost> = BTreeMap::new();
    let mut pending = vec![workflow_id.to_owned()];
    let mut visited = Vec::new();
    while let Some(id) = pending.pop() {
        visited.push(id.clone());
        let run = crate::history::load(client, &id)
            .await
            .map_err(|e| CostError {
                workflow_id: id.clone(),
                message: e.to_string(),
            })?;
        for s in &run.steps {
            let Some(close) = &s.close else { continue };
            let entry = steps
                .entry(s.activity_type.clone())
                .or_insert_with(|| StepCost {
                    step: s.activity_type.clone(),
                    ..StepCost::default()
                });
            entry.time_s += (close.at_ms() - s.scheduled_ms).max(0) as f64 / 1000.0;
            let Close::Completed { result, .. } = close else {
                continue;
            };
            let Ok(usage) = serde_json::from_value::<Usage>(result["usage"].clone()) else {
                continue;
            };
            entry.results += 1;
            if usage.from_checkpoint {
                entry.from_checkpoint += 1;
            } else {
                entry.spent.add(&usage);
            }
        }
        pending.extend(
            run.children
                .iter()
                .filter(|c| !matches!(c.outcome, Some(ChildOutcome::StartFailed(_))))
                .map(|c| c.workflow_id.clone()),
        );
    }
    if let Some(db) = db {
        let written = db.bytes_written(&visited).await.map_err(|e| CostError {
            workflow_id: workflow_id.to_owned(),
            message: e.to_string(),
        })?;
        for (step, n) in written {
            if n > 0 {
                steps
                    .entry(step.clone())
                    .or_insert_with(|| StepCost {
                        step,
                        ..StepCost::default()
                    })
                    .bytes_written += n as u64;
            }
        }
    }
    Ok(steps.into_values().collect())
}

/// A table of `costs`, with a total line.
pub fn render(workflow_id: &str, costs: &[StepCost]) -> String {
    let mut out = format!(
        "{workflow_id}\n{:<28} {:>8} {:>7} {:>6} {:>6} {:>9} {:>10} {:>11} {:>10} {:>10}\n",
        "step",
        "time s",
        "results",
        "cached",
        "calls",
        "audio s",
        "prompt tk",
        "complete tk",
        "backend s",
        "written"
    );
    let mut total = StepCost {
        step: "total".into(),
        ..StepCost::default()
    };
    for c in costs {
        total.spent.add(&c.spent);
        total.time_s += c.time_s;
        total.results += c.results;
        total.from_checkpoint += c.from_checkpoint;
        total.bytes_written += c.bytes_written;
        out.push_str(&row(c));
    }
    out.push_str(&row(&total));
    out
}

fn row(c: &StepCost) -> String {
    format!(
        "{:<28} {:>8.1} {:>7} {:>6} {:>6} {:>9.1} {:>10} {:>11} {:>10.1} {:>10}\n",
        c.step,
        c.time_s,
        c.results,
        c.from_checkpoint,
        c.spent.calls,
        c.spent.audio_s,
        c.spent.prompt_tokens,
        c.spent.completion_tokens,
        c.spent.backend_ms as f64 / 1000.0,
        bytes(c.bytes_written)
    )
}

/// `n` bytes in B / kB / MB.
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{n} B"),
    }
}
