//! Daily intake (docs/contracts/daily.md §6): the one routine the webhook, the poll and a manual
//! start share.
//!
//! It filters the raw-track keys, matches the meeting (by time, within ±168 h) and the room
//! (the Daily room name minus its timestamp), writes the `recording` and `transcript` rows
//! (unique keys make that idempotent) and starts `DiarizationPipeline` as
//! `diarization-{recording_id}` with id reuse rejected: webhook redelivery, a webhook racing
//! the poll, or two API replicas can never run the same recording twice. A run already
//! started counts as success.
//!
//! The version of the meeting pipeline a recording's run gets is decided here, once: the
//! rollout `reflow apply` applied (`pipelines/rollout.yaml`) when there is one
//! ([`Intake::pipeline_for`]).
//!
//! A recording reflow already took in never starts a run again from here, even once Temporal
//! has forgotten the workflow id (retention): its transcript's state decides
//! (docs/contracts/daily.md §3.1). A transcript that ended, was deleted, or has a run on
//! record (the first, or a reprocessing someone asked for) is [`Outcome::Ignored`] or
//! [`Outcome::AlreadyStarted`] without asking Temporal; a recording row left without its
//! transcript (the transcript was deleted outright) is ignored too. Only a transcript that
//! never got a run is started. New runs of a known recording come from
//! `POST /v1/transcripts/{id}/process` alone.
//!
//! No recording is lost while Temporal is unreachable (issue 37 item 5): the run is owed
//! (`run_backlog`, [`activities::db::backlog`]) before Temporal is asked, the start is bounded
//! by [`START_TIMEOUT`] so Daily has its answer within a second, and a start that failed or
//! never happened is left to the backlog loop ([`crate::backlog`]), which starts owed runs in
//! the order they were asked for once Temporal answers. A recording that arrives while older
//! ones wait for the loop joins the end of the queue ([`Outcome::Queued`]). A second start of the same
//! recording is refused by Temporal (id reuse rejected) and counts as done, so the loop, this
//! routine and other replicas may all try: one run per recording.

use std::path::Path;
use std::time::{Duration, SystemTime};

use activities::daily::TrackKey;
use activities::db::backlog;
use activities::db::meetings::RecordingRow;
use activities::db::transcripts::NewTranscript;
use activities::db::{Db, DbError};
use serde::Serialize;
use serde_json::json;
use temporalio_client::{Client, WorkflowIdReusePolicy};
use workflow::{Catalog, Pipeline};

use crate::runs::{self, RunError};

/// The pipeline shipped with the binary (`pipelines/diarization.yaml` at build time).
pub const DIARIZATION_YAML: &str = include_str!("../../pipelines/diarization.yaml");

/// How far a meeting's start may be from the recording's (docs/contracts/daily.md §6 step 3).
pub const MATCH_WINDOW: Duration = Duration::from_secs(168 * 3600);

/// How long intake waits for Temporal to start a run before it leaves the start to the backlog
/// loop (Daily must have its answer within a second).
pub const START_TIMEOUT: Duration = Duration::from_millis(500);

/// How long the backlog loop leaves a run intake is starting itself before it takes it over
/// (intake settles or releases it within [`START_TIMEOUT`]; longer means this process died).
pub const IN_FLIGHT: Duration = Duration::from_secs(5);

/// Why intake could not finish (the webhook answers `deferred`; the run stays owed when its
/// rows were written, and the backlog loop retries it).
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Temporal.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The pipeline intake starts is not a registered version: its runs would fail.
    #[error("pipeline {0} is not registered: run `reflow apply`")]
    NotRegistered(String),
    /// Temporal did not start the run: unreachable, failing, or no answer in time. The run is
    /// still owed.
    #[error("Temporal did not start {workflow_id}: {message}")]
    Unreachable {
        /// The workflow.
        workflow_id: String,
        /// Why.
        message: String,
    },
}

/// A recording Daily says is ready.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// Daily's recording id.
    pub recording_id: String,
    /// `{room}-{YYYYMMDDHHMMSS}`.
    pub room_name: String,
    /// Epoch seconds.
    pub start_ts: i64,
    /// Audio track keys, in the order received.
    pub track_keys: Vec<String>,
}

/// What intake did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A run was started.
    Started {
        /// The transcript.
        transcript_id: String,
        /// `diarization-{recording_id}`.
        workflow_id: String,
        /// The new run.
        run_id: Option<String>,
    },
    /// A run of this recording already exists; nothing new started.
    AlreadyStarted {
        /// The transcript.
        transcript_id: String,
        /// `diarization-{recording_id}`.
        workflow_id: String,
    },
    /// The rows are written and the run is owed, not started yet: Temporal did not answer in
    /// time, or older owed runs go first. The backlog loop starts it.
    Queued {
        /// The transcript.
        transcript_id: String,
        /// `diarization-{recording_id}`.
        workflow_id: String,
    },
    /// No key matched the raw-track pattern.
    NoTracks,
    /// No meeting of that room within ±168 h (polling retries).
    NoMeeting,
    /// No room of that name.
    NoRoom,
    /// The recording was taken in before and is settled: nothing started.
    Ignored {
        /// Its transcript, if it still exists.
        transcript_id: Option<String>,
        /// Why.
        reason: Settled,
    },
}

/// Why a known recording is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    /// Its transcript ended (a reprocessing that ended included).
    Ended,
    /// Its transcript was deleted (`deleted_at` set).
    Deleted,
    /// The recording row exists but its transcript does not: deleted outright.
    TranscriptGone,
}

/// The workflow id of a Daily recording's pipeline.
pub fn workflow_id(recording_id: &str) -> String {
    format!("diarization-{recording_id}")
}

/// Load the DiarizationPipeline from `dir/diarization.yaml` if it exists, else the copy built
/// into the binary.
pub fn load_pipeline(dir: Option<&Path>, catalog: &Catalog) -> Result<Pipeline, RunError> {
    if let Some(path) = dir
        .map(|d| d.join("diarization.yaml"))
        .filter(|p| p.exists())
    {
        return runs::load_pipeline(&path, catalog);
    }
    Ok(workflow::parse_and_validate(
        "pipelines/diarization.yaml (built in)",
        DIARIZATION_YAML,
        catalog,
    )?)
}

/// The intake routine with what it needs.
#[derive(Clone)]
pub struct Intake {
    /// Rows.
    pub db: Db,
    /// Where runs start.
    pub client: Client,
    /// The definition runs are pinned to.
    pub pipeline: Pipeline,
    /// Daily's bucket name (`DAILYCO_STORAGE_AWS_BUCKET_NAME`).
    pub bucket_name: Option<String>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("pipeline", &self.pipeline.name)
            .field("hash", &self.pipeline.hash)
            .finish_non_exhaustive()
    }
}

impl Intake {
    /// Intake one recording (docs/contracts/daily.md §6).
    pub async fn intake(&self, d: &Discovered) -> Result<Outcome, IntakeError> {
        let keys: Vec<String> = d
            .track_keys
            .iter()
            .filter(|k| TrackKey::parse(k).is_some())
            .cloned()
            .collect();
        if keys.is_empty() {
            tracing::info!(recording_id = %d.recording_id, "no cam-audio tracks; ignored");
            return Ok(Outcome::NoTracks);
        }
        let recorded_at = recorded_at(&keys[0]).unwrap_or_else(activities::db::now);
        let existing = self.db.recording(&d.recording_id).await?;
        if existing.is_some()
            && let Some(outcome) = self.settled(&d.recording_id).await?
        {
            tracing::info!(recording_id = %d.recording_id, ?outcome, "recording known; nothing started");
            return Ok(outcome);
        }
        let meeting_id = match existing.as_ref().and_then(|r| r.meeting_id.clone()) {
            Some(m) => Some(m),
            None => self.match_meeting(&d.room_name, d.start_ts).await?,
        };
        let Some(meeting_id) = meeting_id else {
            tracing::warn!(recording_id = %d.recording_id, room_name = %d.room_name, "no meeting matches the recording yet; polling will retry");
            return Ok(Outcome::NoMeeting);
        };
        let room_prefix = d
            .room_name
            .rsplit_once('-')
            .map_or(d.room_name.as_str(), |(r, _)| r);
        let Some(room) = self.db.room_by_name(room_prefix).await? else {
            tracing::error!(recording_id = %d.recording_id, room = %room_prefix, "no room of that name; ignored");
            return Ok(Outcome::NoRoom);
        };
        let bucket = self.bucket_name.clone().unwrap_or_default();
        let object_key = keys[0].rsplit_once('/').map(|(dir, _)| dir.to_owned());
        self.db
            .upsert_recording(&RecordingRow {
                id: d.recording_id.clone(),
                bucket_name: bucket.clone(),
                object_key,
                recorded_at: Some(recorded_at),
                status: "pending".into(),
                meeting_id: Some(meeting_id.clone()),
                track_keys: Some(json!(keys).to_string()),
            })
            .await?;
        let transcript = match self.db.transcript_id_of_recording(&d.recording_id).await? {
            Some(t) => self.db.transcript(&t).await?,
            None => {
                let new = NewTranscript {
                    id: uuid::Uuid::new_v4().to_string(),
                    user_id: room.user_id.clone(),
                    room_id: Some(room.id.clone()),
                    meeting_id: Some(meeting_id.clone()),
                    recording_id: Some(d.recording_id.clone()),
                    share_mode: Some("public".into()),
                    source_language: Some("en".into()),
                };
                match self.db.create_transcript(&new).await {
                    Ok(t) => t,
                    // A concurrent intake created it first (recording_id is unique).
                    Err(e) if e.is_unique_violation() => {
                        let id = self
                            .db
                            .transcript_id_of_recording(&d.recording_id)
                            .await?
                            .ok_or(e)?;
                        self.db.transcript(&id).await?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        // Owed before Temporal is asked: a start that fails, times out or never happens (this
        // process dies) leaves the row to the backlog loop, which leaves it alone meanwhile
        // (due after IN_FLIGHT). Only runs already waiting for the loop go first: recordings
        // arriving together while Temporal answers are each started here.
        let due = SystemTime::now() + IN_FLIGHT;
        self.db
            .owe_run_at(
                &transcript.id,
                backlog::INTAKE,
                false,
                &humantime::format_rfc3339_millis(due).to_string(),
            )
            .await?;
        if self
            .db
            .runs_owed_before(&transcript.id, &activities::db::now())
            .await?
        {
            tracing::info!(recording_id = %d.recording_id, transcript_id = %transcript.id, "older runs wait for the backlog loop; queued behind them");
            crate::backlog::wake();
            crate::backlog::report(&self.db).await;
            return Ok(Outcome::Queued {
                transcript_id: transcript.id,
                workflow_id: workflow_id(&d.recording_id),
            });
        }
        match self.start_owed(&transcript.id, START_TIMEOUT).await {
            Err(IntakeError::Unreachable {
                workflow_id,
                message,
            }) => {
                tracing::warn!(recording_id = %d.recording_id, transcript_id = %transcript.id, %workflow_id, error = %message, "Temporal did not start the run; queued for the backlog loop");
                self.db
                    .owed_run_failed(&transcript.id, &message, &activities::db::now(), false)
                    .await?;
                crate::backlog::wake();
                crate::backlog::report(&self.db).await;
                Ok(Outcome::Queued {
                    transcript_id: transcript.id,
                    workflow_id,
                })
            }
            Err(e) => {
                // Still owed: the backlog loop tries again later.
                let next = crate::backlog::later(1);
                self.db
                    .owed_run_failed(&transcript.id, &e.to_string(), &next, false)
                    .await?;
                Err(e)
            }
            ok => ok,
        }
    }

    /// Start the first run of a Daily transcript's recording from its rows (the recording's
    /// keys and bucket, the room, the rollout's version), waiting at most `timeout` for
    /// Temporal; the run owed to the transcript is settled once Temporal has a run of it.
    /// A transcript deleted, ended or with a run on record is settled without a start.
    pub async fn start_owed(
        &self,
        transcript_id: &str,
        timeout: Duration,
    ) -> Result<Outcome, IntakeError> {
        let Some(transcript) = self.db.find_transcript(transcript_id).await? else {
            self.db.settle_owed_run(transcript_id).await?;
            return Ok(Outcome::Ignored {
                transcript_id: None,
                reason: Settled::TranscriptGone,
            });
        };
        let Some(recording_id) = transcript.recording_id.clone() else {
            return Err(DbError::Corrupt {
                what: format!("transcript {transcript_id}"),
                message: "owed an intake run but has no recording".into(),
            }
            .into());
        };
        let workflow_id = workflow_id(&recording_id);
        let settled = if transcript.deleted_at.is_some() {
            Some(Settled::Deleted)
        } else if transcript.status == "ended" {
            Some(Settled::Ended)
        } else {
            None
        };
        if let Some(reason) = settled {
            self.db.settle_owed_run(transcript_id).await?;
            return Ok(Outcome::Ignored {
                transcript_id: Some(transcript.id),
                reason,
            });
        }
        if transcript.workflow_run_id.is_some() {
            self.db.settle_owed_run(transcript_id).await?;
            return Ok(Outcome::AlreadyStarted {
                transcript_id: transcript.id,
                workflow_id: transcript.workflow_id.unwrap_or(workflow_id),
            });
        }
        let row = self
            .db
            .recording(&recording_id)
            .await?
            .ok_or_else(|| DbError::NotFound {
                what: "recording",
                id: recording_id.clone(),
            })?;
        let room_id = transcript.room_id.clone().unwrap_or_default();
        let room_name = self.db.room_name(&room_id).await?;
        let pipeline = self
            .pipeline_for(&recording_id, room_name.as_deref().unwrap_or_default())
            .await?;
        let input = pipeline_input(
            &transcript,
            &recording_id,
            (&room_id, room_name.as_deref()),
            &row.bucket_name,
            &row.keys(),
        );
        let started = tokio::time::timeout(
            timeout,
            runs::start_with(
                &self.client,
                &pipeline,
                input.clone(),
                &workflow_id,
                WorkflowIdReusePolicy::RejectDuplicate,
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(RunError::Temporal {
                action: "start",
                workflow_id: workflow_id.clone(),
                message: format!("no answer within {} ms", timeout.as_millis()),
            })
        });
        match started {
            Ok(run) => {
                if let Some(run_id) = &run.run_id {
                    self.db
                        .set_workflow(&transcript.id, &workflow_id, run_id)
                        .await?;
                }
                self.db.settle_owed_run(&transcript.id).await?;
                tracing::info!(%recording_id, transcript_id = %transcript.id, %workflow_id, version = pipeline.version, "pipeline started");
                crate::shadow::spawn(
                    self,
                    transcript.clone(),
                    recording_id.clone(),
                    room_name,
                    input,
                );
                Ok(Outcome::Started {
                    transcript_id: transcript.id,
                    workflow_id,
                    run_id: run.run_id,
                })
            }
            Err(RunError::AlreadyStarted { run_id, .. }) => {
                if let Some(run_id) = run_id {
                    self.db
                        .set_workflow(&transcript.id, &workflow_id, &run_id)
                        .await?;
                }
                self.db.settle_owed_run(&transcript.id).await?;
                tracing::info!(%recording_id, %workflow_id, "already started; nothing new");
                Ok(Outcome::AlreadyStarted {
                    transcript_id: transcript.id,
                    workflow_id,
                })
            }
            Err(RunError::Temporal { message, .. }) => Err(IntakeError::Unreachable {
                workflow_id,
                message,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The registered version a recording's run gets: the rollout's choice for it
    /// (`pipelines/rollout.yaml` as `reflow apply` applied it: the room's override, else the
    /// candidate when the recording's bucket is under the ramp, else the current version;
    /// [`workflow::pipeline::rollout`]), else intake's own definition. Runs name a registered
    /// version; an unregistered one would fail at once, so the recording waits instead (the
    /// webhook is answered `deferred`, the poll retries).
    pub async fn pipeline_for(
        &self,
        recording_id: &str,
        room: &str,
    ) -> Result<Pipeline, IntakeError> {
        let name = &self.pipeline.name;
        let Some(rollout) = self.db.pipeline_rollout(name).await? else {
            if !activities::versions::Versions::of(&self.db)
                .contains(&self.pipeline.hash)
                .await?
            {
                return Err(IntakeError::NotRegistered(
                    self.pipeline.reference().short(),
                ));
            }
            return Ok(self.pipeline.clone());
        };
        let (version, because) = rollout.version_for(recording_id, Some(room));
        let row = self
            .db
            .pipeline_version_of(name, version)
            .await?
            .ok_or_else(|| IntakeError::NotRegistered(format!("{name} v{version}")))?;
        tracing::info!(%recording_id, %room, version, ?because, "version chosen by the rollout");
        Ok(row.decode()?.pipeline)
    }

    /// What to answer for a recording reflow has a row of, if not a start: its transcript
    /// ended, was deleted (soft or hard), or already has a run on record.
    async fn settled(&self, recording_id: &str) -> Result<Option<Outcome>, IntakeError> {
        let Some(id) = self.db.transcript_id_of_recording(recording_id).await? else {
            return Ok(Some(Outcome::Ignored {
                transcript_id: None,
                reason: Settled::TranscriptGone,
            }));
        };
        let t = self.db.transcript(&id).await?;
        let ignored = |reason| {
            Some(Outcome::Ignored {
                transcript_id: Some(t.id.clone()),
                reason,
            })
        };
        Ok(if t.deleted_at.is_some() {
            ignored(Settled::Deleted)
        } else if t.status == "ended" {
            ignored(Settled::Ended)
        } else if t.workflow_run_id.is_some() {
            Some(Outcome::AlreadyStarted {
                transcript_id: t.id.clone(),
                workflow_id: t
                    .workflow_id
                    .clone()
                    .unwrap_or_else(|| workflow_id(recording_id)),
            })
        } else {
            None
        })
    }

    /// The meeting of `room_name` whose start is closest to `start_ts` within
    /// [`MATCH_WINDOW`] (ties: smallest id).
    async fn match_meeting(
        &self,
        room_name: &str,
        start_ts: i64,
    ) -> Result<Option<String>, DbError> {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(start_ts.max(0) as u64);
        let mut best: Option<(Duration, String)> = None;
        for m in self.db.meetings_in(room_name).await? {
            let Some(start) = m
                .start_date
                .as_deref()
                .and_then(|s| humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok())
            else {
                continue;
            };
            let gap = at
                .duration_since(start)
                .or_else(|_| start.duration_since(at))
                .unwrap_or_default();
            if gap > MATCH_WINDOW {
                continue;
            }
            // Meetings come sorted by id, so a strict `<` keeps the smallest id on ties.
            if best.as_ref().is_none_or(|(g, _)| gap < *g) {
                best = Some((gap, m.id));
            }
        }
        Ok(best.map(|(_, id)| id))
    }
}

/// The DiarizationPipeline input for a Daily recording's transcript
/// (docs/contracts/pipeline.md §2).
pub fn pipeline_input(
    transcript: &activities::db::transcripts::Transcript,
    recording_id: &str,
    (room_id, room_name): (&str, Option<&str>),
    bucket: &str,
    keys: &[String],
) -> serde_json::Value {
    json!({
        "recording_id": recording_id,
        "transcript_id": transcript.id,
        "room_id": room_id,
        "room_name": room_name,
        "bucket_name": (!bucket.is_empty()).then_some(bucket),
        "source_platform": "daily",
        "tracks": keys.iter().map(|k| json!({"s3_key": k})).collect::<Vec<_>>(),
        "language": transcript.source_language.clone().unwrap_or_else(|| "en".into()),
    })
}

/// The trailing `YYYYMMDDHHMMSS` of the key's parent folder, as RFC 3339 UTC.
pub fn recorded_at(key: &str) -> Option<String> {
    let folder = key.rsplit('/').nth(1)?;
    let stamp = folder.rsplit('-').next()?;
    if stamp.len() != 14 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[8..10],
        &stamp[10..12],
        &stamp[12..14]
    );
    humantime::parse_rfc3339(&text).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests;
