//! What a re-run reused, ran and did not pay for again ([`summarize`]): what `reflow rerun`
//! prints last and what a backfill adds up per meeting.

use activities::db::Db;
use serde::Serialize;
use workflow::StepStatus;
use workflow::interpreter::memo::Plan;

/// What `reflow rerun` prints last, as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// The transcript.
    pub transcript_id: String,
    /// The workflow.
    pub workflow_id: String,
    /// `ok` (a new run) or `retrying` (a resume).
    pub started: String,
    /// How the run ended (`completed`, `failed`…).
    pub status: String,
    /// Steps taken from a memo.
    pub steps_reused: Vec<String>,
    /// Steps that ran.
    pub steps_run: Vec<String>,
    /// Steps whose `when:` was false.
    pub steps_skipped: Vec<String>,
    /// Audio seconds of transcription not paid again.
    pub transcription_s_saved: f64,
    /// LLM tokens (prompt and completion) not paid again.
    pub llm_tokens_saved: u64,
}

/// What the run reused, ran and did not pay for again: the reused and run steps from its
/// table, the savings from its memo plan (what the reused results cost when computed) and, for
/// reused child steps, what their child workflows spent (`reflow cost`'s data).
pub async fn summarize(
    client: &temporalio_client::Client,
    db: &Db,
    transcript_id: &str,
    outcome: &super::Outcome,
    completed: bool,
) -> Result<Summary, crate::history::HistoryError> {
    let workflow_id = outcome.workflow_id();
    let run = crate::history::load(client, workflow_id).await?;
    let plan: Plan = serde_json::from_value(run.memo_plan.clone()).unwrap_or_default();
    let mut s = Summary {
        transcript_id: transcript_id.to_owned(),
        workflow_id: workflow_id.to_owned(),
        started: match outcome {
            super::Outcome::Retrying { .. } => "retrying".into(),
            super::Outcome::Ok { .. } => "ok".into(),
        },
        status: if completed {
            "completed".into()
        } else {
            format!("{:?}", run.status).to_lowercase()
        },
        transcription_s_saved: plan.saved.transcription_s,
        llm_tokens_saved: plan.saved.llm_tokens,
        ..Summary::default()
    };
    if let Ok(progress) = crate::runs::query_progress(client, workflow_id).await {
        for r in &progress.steps {
            match r.status {
                _ if r.reused => s.steps_reused.push(r.id.clone()),
                StepStatus::Completed | StepStatus::Failed => s.steps_run.push(r.id.clone()),
                StepStatus::Skipped => s.steps_skipped.push(r.id.clone()),
                _ => {}
            }
        }
    } else {
        s.steps_reused = plan.reused.keys().cloned().collect();
    }
    for child in &plan.saved.children {
        if let Ok(costs) = crate::cost::cost(client, Some(db), child).await {
            for c in costs {
                s.transcription_s_saved += c.spent.audio_s;
                s.llm_tokens_saved += c.spent.prompt_tokens + c.spent.completion_tokens;
            }
        }
    }
    Ok(s)
}
