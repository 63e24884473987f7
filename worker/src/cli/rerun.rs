//! `reflow rerun <transcript-id|workflow-id> [--version V] [--from STEP] [--fresh] [--force]`:
//! process a transcript again (`crate::rerun`), wait for the run, and say what it reused.

use std::process::ExitCode;

use activities::events::{EventHub, Events};
use workflow::interpreter::memo::Rerun;

use super::connect::connect_with_db;
use crate::registry::Registry;
use crate::settings::Settings;

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
    let summary = crate::rerun::summarize(&client, &db, &t.id, &outcome, ended.is_ok()).await?;
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
