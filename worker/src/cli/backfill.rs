//! `reflow backfill [--version V] --since DATE [--room R] [--concurrency N] [--dry-run]`:
//! re-run the meetings recorded since DATE memoized, as one Temporal workflow, printing its
//! progress and a summary (`crate::backfill`); with `--dry-run`, list the meetings with the
//! steps that would run and be reused and the cost estimate, starting nothing.

use std::process::ExitCode;
use std::sync::Arc;

use activities::memo::MemoActivities;
use activities::versions::Versions;

use super::connect::connect_with_db;
use crate::backfill::{self, preview};
use crate::registry::{Registry, Services};
use crate::settings::Settings;

/// The options of the command.
pub struct Options {
    /// `--version`.
    pub version: Option<u32>,
    /// `--since`.
    pub since: String,
    /// `--room`.
    pub room: Option<String>,
    /// `--concurrency`.
    pub concurrency: u32,
    /// `--batch`.
    pub batch: u32,
    /// `--dry-run`.
    pub dry_run: bool,
}

/// `reflow backfill`.
pub(super) async fn backfill(
    settings: &Settings,
    registry: &Registry,
    o: Options,
) -> anyhow::Result<ExitCode> {
    let (client, db) = connect_with_db(settings).await?;
    let selection = backfill::selection(&o.since, o.room)?;
    let version = backfill::version(&db, o.version).await?;
    if o.dry_run {
        let services = Services::from_settings(settings, registry).await?;
        let planner = planner(&services, registry);
        let plan = preview::dry_run(&client, &db, &planner, &selection, version).await?;
        println!("{}", render(&plan));
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(ExitCode::SUCCESS);
    }
    let plan = backfill::Plan {
        selection,
        version,
        concurrency: o.concurrency,
        batch: o.batch,
    };
    let (workflow_id, total) = backfill::start(&client, &db, &plan).await?;
    eprintln!(
        "{workflow_id}: backfill of {total} meetings on {} v{version}, {} at a time (cancel it in the Web UI or with `temporal workflow cancel -w {workflow_id}`)",
        backfill::PIPELINE,
        plan.concurrency
    );
    let end = backfill::follow(&client, &workflow_id, |p| {
        eprintln!("{workflow_id}: {}", backfill::line(p));
    })
    .await?;
    println!(
        "{workflow_id}: {} done, {} failed, {} skipped of {}; {} steps reused, {} run; not paid again: {:.1} s of transcription, {} LLM tokens",
        end.done,
        end.failed,
        end.skipped,
        end.total,
        end.steps_reused,
        end.steps_run,
        end.transcription_s_saved,
        end.llm_tokens_saved
    );
    println!("{}", serde_json::to_string_pretty(&end)?);
    Ok(if end.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The memo planner the workers run (`memo_plan`), with these settings' backends.
pub fn planner(services: &Services, registry: &Registry) -> MemoActivities {
    MemoActivities::new(
        Versions::of(services.db()),
        Arc::new(registry.catalog().clone()),
        services.storage.clone(),
        services.recordings.clone(),
        services.transcriber.config().identity(),
        services.llm.config().identity(),
    )
}

/// One line per meeting and a total.
pub fn render(plan: &preview::DryRun) -> String {
    let mut out = String::new();
    for m in &plan.meetings {
        let what = match &m.skipped {
            Some(why) => format!("left alone: {why}"),
            None => format!(
                "{}: run {} ({}), reuse {}, not run {}; estimate {:.1} s of transcription, {} LLM tokens",
                m.pipeline,
                m.run.len(),
                m.run.join(", "),
                m.reused.len(),
                m.not_run.join(", "),
                m.estimate.transcription_s,
                m.estimate.llm_tokens
            ),
        };
        out.push_str(&format!(
            "{} {} {}: {what}\n",
            m.recorded_at,
            m.room.as_deref().unwrap_or("-"),
            m.transcript_id
        ));
    }
    out.push_str(&format!(
        "{} meetings on v{}: estimate {:.1} s of transcription, {} LLM tokens; not paid again: {:.1} s, {} tokens",
        plan.meetings.len(),
        plan.version,
        plan.estimate.transcription_s,
        plan.estimate.llm_tokens,
        plan.saved.transcription_s,
        plan.saved.llm_tokens
    ));
    out
}
