//! `reflow backfill --dry-run`: the meetings a backfill would re-run and, for each, the steps
//! that would run and be reused, and what the running ones would cost — without starting or
//! changing anything.
//!
//! Each meeting's run is built by the rerun routine ([`crate::rerun::prepare`], as the
//! backfill's activity builds it), its memo plan request as the run's first task would make it
//! ([`workflow::interpreter::preview::plan_request`]), and the plan by `memo_plan`'s own
//! planning, read only ([`activities::memo::MemoActivities::preview`]). The estimate of a step
//! that would run is what it cost when last computed for that transcript: its memo's usage plus
//! `reflow cost`'s data of the child workflows it started, else `reflow cost`'s data of the
//! transcript's last run for the step's activity types.
//!
//! The memo keys include the backends' identity, so run it with the workers' transcription
//! and LLM settings (`TRANSCRIPT_*`, `LLM_*`).

use std::collections::BTreeMap;

use activities::db::Db;
use activities::memo::{MemoActivities, Preview};
use serde::Serialize;
use temporalio_client::Client;
use workflow::backfill::Selection;
use workflow::interpreter::memo::{Saved, activities_of};

use super::{BackfillError, request, window};
use crate::rerun::{self, RerunError};

/// Transcription seconds and LLM tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spend {
    /// Audio seconds transcribed.
    pub transcription_s: f64,
    /// LLM prompt and completion tokens.
    pub llm_tokens: u64,
}

impl Spend {
    fn add(&mut self, other: &Spend) {
        self.transcription_s += other.transcription_s;
        self.llm_tokens += other.llm_tokens;
    }
}

/// One meeting of a dry run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MeetingPlan {
    /// Its transcript.
    pub transcript_id: String,
    /// Its recording.
    pub recording_id: String,
    /// When it was recorded.
    pub recorded_at: String,
    /// Its room.
    pub room: Option<String>,
    /// The version it would run (`Name vN`).
    pub pipeline: String,
    /// Steps that would run (bookkeeping steps included), in declared order.
    pub run: Vec<String>,
    /// Steps that would be reused.
    pub reused: Vec<String>,
    /// Steps the run would settle as skipped without running them (the notifications).
    pub not_run: Vec<String>,
    /// What the steps that run would cost (what they cost last time).
    pub estimate: Spend,
    /// What the reused steps cost when computed (not paid again).
    pub saved: Spend,
    /// Why the backfill would leave it alone, if it would.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// What a dry run found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DryRun {
    /// The version.
    pub version: u32,
    /// The meetings, in the order the backfill takes them.
    pub meetings: Vec<MeetingPlan>,
    /// The estimate over all of them.
    pub estimate: Spend,
    /// Not paid again, over all of them.
    pub saved: Spend,
}

/// What a backfill of `selection` on `version` would do.
pub async fn dry_run(
    client: &Client,
    db: &Db,
    planner: &MemoActivities,
    selection: &Selection,
    version: u32,
) -> Result<DryRun, BackfillError> {
    let mut out = DryRun {
        version,
        ..DryRun::default()
    };
    let mut after: Option<workflow::backfill::Cursor> = None;
    loop {
        let page = db
            .backfill_meetings(&window(selection, after.as_ref()), super::BATCH)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(workflow::backfill::Cursor {
            recorded_at: last.recorded_at.clone(),
            transcript_id: last.transcript_id.clone(),
        });
        for m in page {
            let mut plan = MeetingPlan {
                transcript_id: m.transcript_id,
                recording_id: m.recording_id,
                recorded_at: m.recorded_at,
                room: m.room,
                ..MeetingPlan::default()
            };
            meeting(client, db, planner, version, &mut plan).await?;
            out.estimate.add(&plan.estimate);
            out.saved.add(&plan.saved);
            out.meetings.push(plan);
        }
    }
    Ok(out)
}

/// Fill `plan` in for its transcript.
async fn meeting(
    client: &Client,
    db: &Db,
    planner: &MemoActivities,
    version: u32,
    plan: &mut MeetingPlan,
) -> Result<(), BackfillError> {
    let Some(t) = db.find_transcript(&plan.transcript_id).await? else {
        plan.skipped = Some("no such transcript".into());
        return Ok(());
    };
    let new = match rerun::prepare(client, db, None, &t, &request(version)).await {
        Ok(rerun::Prepared::New(n)) => n,
        Ok(rerun::Prepared::Resume { .. }) => {
            plan.skipped = Some("its last run is to be resumed".into());
            return Ok(());
        }
        Err(RerunError::Db(e)) => return Err(e.into()),
        Err(RerunError::Temporal(e)) => return Err(BackfillError::Temporal(e)),
        Err(e) => {
            plan.skipped = Some(e.to_string());
            return Ok(());
        }
    };
    plan.pipeline = new.pipeline.reference().short();
    let Some(req) = workflow::interpreter::preview::plan_request(&new.pipeline, new.input)
        .map_err(BackfillError::Memo)?
    else {
        plan.run = new
            .pipeline
            .main
            .steps
            .iter()
            .map(|s| s.id.clone())
            .collect();
        return Ok(());
    };
    let preview: Preview = planner
        .preview(&req)
        .await
        .map_err(|e| BackfillError::Memo(e.to_string()))?;
    plan.saved = spend(client, db, &preview.saved).await;
    // `reflow cost`'s data of the transcript's last run, by activity type (read once, when a
    // step that runs has no memo to say what it cost).
    let mut last_run: Option<BTreeMap<String, Spend>> = None;
    for step in preview.run.iter().filter(|s| !req.rerun.skip.contains(s)) {
        let cost = match preview.previous.get(step) {
            Some(paid) => spend(client, db, paid).await,
            None => {
                if last_run.is_none() {
                    last_run = Some(by_activity(client, db, &new.workflow_id).await);
                }
                let costs = last_run.as_ref().expect("just read");
                let mut s = Spend::default();
                if let Some(def) = new.pipeline.main.step(step) {
                    for a in activities_of(def, &new.pipeline.children) {
                        if let Some(c) = costs.get(a) {
                            s.add(c);
                        }
                    }
                }
                s
            }
        };
        plan.estimate.add(&cost);
    }
    let (not_run, run) = preview
        .run
        .into_iter()
        .partition(|s| req.rerun.skip.contains(s));
    plan.run = run;
    plan.not_run = not_run;
    plan.reused = preview.reused;
    Ok(())
}

/// A memo's usage plus `reflow cost`'s data of the child workflows it names.
async fn spend(client: &Client, db: &Db, paid: &Saved) -> Spend {
    let mut s = Spend {
        transcription_s: paid.transcription_s,
        llm_tokens: paid.llm_tokens,
    };
    for child in &paid.children {
        for c in crate::cost::cost(client, Some(db), child)
            .await
            .unwrap_or_default()
        {
            s.transcription_s += c.spent.audio_s;
            s.llm_tokens += c.spent.prompt_tokens + c.spent.completion_tokens;
        }
    }
    s
}

/// `reflow cost`'s data of a workflow's latest run, by activity type (empty when unreadable).
async fn by_activity(client: &Client, db: &Db, workflow_id: &str) -> BTreeMap<String, Spend> {
    crate::cost::cost(client, Some(db), workflow_id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            (
                c.step,
                Spend {
                    transcription_s: c.spent.audio_s,
                    llm_tokens: c.spent.prompt_tokens + c.spent.completion_tokens,
                },
            )
        })
        .collect()
}
