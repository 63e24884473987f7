//! `reflow rerun <transcript-id|workflow-id> [--version V] [--from STEP] [--fresh] [--force]`:
//! process a transcript again (`crate::rerun`), wait for the run, and say what it reused.

use std::process::ExitCode;

use activities::db::Db;
use activities::events::{EventHub, Events};
use serde::Serialize;
use workflow::StepStatus;
use workflow::interpreter::memo::{Plan, Rerun};

use super::connect::connect_with_db;
use crate::registry::Registry;
use crate::settings::Settings;

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

/// The options of the command.
pub struct Options {
    /// Transcript or workflow id.
    pub id: String,
    /// `--version`.
    pub version: Option<u32>,
    /// `--from`.
    pub from: Option<String>,
    /// `--fresh`.
    pub fresh: bool,
    /// `--force`.
    pub force: bool,
    /// `--notify`.
    pub notify: bool,
}

/// `reflow rerun`.
pub(super) async fn rerun(
    settings: &Settings,
    registry: &Registry,
    o: Options,
) -> anyhow::Result<ExitCode> {
    let (client, db) = connect_with_db(settings).await?;
    let t = match db.find_transcript(&o.id).await? {
        Some(t) => t,
        None => db.transcript_of_run(&o.id).await?.ok_or_else(|| {
            anyhow::anyhow!("no transcript and no run of a transcript is {}", o.id)
        })?,
    };
    let events = Events::new(db.clone(), EventHub::default(), registry.emits());
    let request = crate::rerun::Request {
        force: o.force,
        version: o.version,
        rerun: Rerun {
            from: o.from,
            fresh: o.fresh,
            ..Rerun::default()
        },
        notify: o.notify,
    };
    let outcome = crate::rerun::rerun(&client, &events, None, &t, &request).await?;
    let workflow_id = outcome.workflow_id().to_owned();
    eprintln!(
        "{workflow_id}: {}",
        match &outcome {
            crate::rerun::Outcome::Retrying { .. } => "resumed from its failed step".to_owned(),
            crate::rerun::Outcome::Ok { pipeline, .. } => format!("new run on {pipeline}"),
        }
    );
    let ended = crate::runs::wait(&client, &workflow_id).await;
    let summary = summarize(&client, &db, &t.id, &outcome, ended.is_ok()).await?;
    println!(
        "{workflow_id}: {}: {} steps reused, {} run; not paid again: {:.1} s of transcription, {} LLM tokens",
        summary.status,
        summary.steps_reused.len(),
        summary.steps_run.len(),
        summary.transcription_s_saved,
        summary.llm_tokens_saved
    );
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if let Err(e) = ended {
        eprintln!("{e}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What the run reused, ran and did not pay for again: the reused and run steps from its
/// table, the savings from its memo plan (what the reused results cost when computed) and, for
/// reused child steps, what their child workflows spent (`reflow cost`'s data).
pub async fn summarize(
    client: &temporalio_client::Client,
    db: &Db,
    transcript_id: &str,
    outcome: &crate::rerun::Outcome,
    completed: bool,
) -> anyhow::Result<Summary> {
    let workflow_id = outcome.workflow_id();
    let run = crate::history::load(client, workflow_id).await?;
    let plan: Plan = serde_json::from_value(run.memo_plan.clone()).unwrap_or_default();
    let mut s = Summary {
        transcript_id: transcript_id.to_owned(),
        workflow_id: workflow_id.to_owned(),
        started: match outcome {
            crate::rerun::Outcome::Retrying { .. } => "retrying".into(),
            crate::rerun::Outcome::Ok { .. } => "ok".into(),
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
