//! Shadow runs at intake (`pipelines/rollout.yaml`'s `shadow:`, issue 37 item 3): the
//! migration plan's shadow phase for a change of reflow's own pipeline.
//!
//! When intake has started a recording's live run, and the rollout names a shadow version for
//! that recording ([`workflow::pipeline::rollout::Rollout::shadow_for`]: its room, or its
//! bucket under the shadow's ramp), [`start`] starts a second run, of the shadow version, as
//! `diarization-{recording_id}-shadow` (id reuse rejected: one shadow per recording), into a
//! shadow transcript (`transcript.shadow_of` = the live transcript; no owner, private; no user
//! route lists or returns it). Its input is the live run's with the shadow transcript's id and
//! `$rerun` saying:
//! - `skip`: every step that acts outside reflow, from the activity catalog
//!   ([`workflow::pipeline::effects::external_steps`]): consent cleanup, Zulip, the customer
//!   webhook are never executed;
//! - `shadow.of`: the live transcript, whose memos the shadow reuses (waiting for the live run
//!   while it computes: `activities::memo_shadow`).
//!
//! A shadow is best effort: one that cannot start is logged and never holds up the live run
//! or Daily's answer (it is started on a task of its own). `reflow compare` reports the pairs.

use activities::db::DbError;
use activities::db::transcripts::Transcript;
use serde_json::{Value, json};
use temporalio_client::WorkflowIdReusePolicy;
use workflow::interpreter::memo::{RERUN_INPUT, Rerun};
use workflow::interpreter::shadow::ShadowRun;
use workflow::pipeline::effects::{ShadowError, external_steps};

use crate::intake::Intake;
use crate::runs::{self, RunError};

/// Why a shadow run did not start.
#[derive(Debug, thiserror::Error)]
pub enum ShadowStartError {
    /// The database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Temporal.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The shadow version is not registered.
    #[error("shadow version {0} is not registered: run `reflow apply`")]
    NotRegistered(String),
    /// The shadow version cannot skip its external effects.
    #[error(transparent)]
    Unsafe(#[from] ShadowError),
}

/// The workflow id of a recording's shadow run.
pub fn workflow_id(recording_id: &str) -> String {
    format!("diarization-{recording_id}-shadow")
}

/// The `$rerun` options of a shadow run of `pipeline` beside live transcript `live`: skip
/// every step that acts outside reflow, reuse (and wait for) the live transcript's memos. A
/// new run of a shadow transcript (`reflow rerun`) gets them too.
pub fn options(pipeline: &workflow::Pipeline, live: &str) -> Result<Rerun, ShadowError> {
    Ok(Rerun {
        skip: external_steps(pipeline, crate::registry::Registry::production().catalog())?,
        shadow: Some(ShadowRun {
            of: live.to_owned(),
            no_wait: false,
        }),
        ..Rerun::default()
    })
}

/// Start the shadow run of live transcript `live` on a task of its own, if the rollout gives
/// recording `recording_id` of room `room` one; `input` is the live run's input.
pub fn spawn(
    intake: &Intake,
    live: Transcript,
    recording_id: String,
    room: Option<String>,
    input: Value,
) {
    let intake = intake.clone();
    tokio::spawn(async move {
        match start(&intake, &live, &recording_id, room.as_deref(), input).await {
            Ok(Some(t)) => {
                tracing::info!(%recording_id, live = %live.id, shadow = %t, "shadow run started")
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%recording_id, live = %live.id, error = %e, "shadow run not started")
            }
        }
    });
}

/// Start the shadow run of live transcript `live` (see the module documentation); the shadow
/// transcript's id, or `None` when the rollout gives this recording no shadow.
pub async fn start(
    intake: &Intake,
    live: &Transcript,
    recording_id: &str,
    room: Option<&str>,
    mut input: Value,
) -> Result<Option<String>, ShadowStartError> {
    let name = &intake.pipeline.name;
    let Some(version) = intake
        .db
        .pipeline_rollout(name)
        .await?
        .and_then(|r| r.shadow_for(recording_id, room))
    else {
        return Ok(None);
    };
    let pipeline = intake
        .db
        .pipeline_version_of(name, version)
        .await?
        .ok_or_else(|| ShadowStartError::NotRegistered(format!("{name} v{version}")))?
        .decode()?
        .pipeline;
    let rerun = options(&pipeline, &live.id)?;
    let shadow = intake.db.create_shadow(live).await?;
    if let Some(m) = input.as_object_mut() {
        m.insert("transcript_id".into(), json!(shadow.id));
        m.insert(
            RERUN_INPUT.into(),
            serde_json::to_value(&rerun).expect("serializes"),
        );
    }
    let workflow_id = workflow_id(recording_id);
    let run_id = match runs::start_with(
        &intake.client,
        &pipeline,
        input,
        &workflow_id,
        WorkflowIdReusePolicy::RejectDuplicate,
    )
    .await
    {
        Ok(run) => run.run_id,
        Err(RunError::AlreadyStarted { run_id, .. }) => run_id,
        Err(e) => return Err(e.into()),
    };
    if let Some(run_id) = run_id {
        intake
            .db
            .set_workflow(&shadow.id, &workflow_id, &run_id)
            .await?;
    }
    Ok(Some(shadow.id))
}
