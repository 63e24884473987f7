//! The transcript's lifecycle steps (docs/contracts/pipeline.md §4.13, §4.14, §5): `finalize`
//! (padded tracks deleted, TRANSCRIPT, status `ended`), `cleanup_consent` (raw tracks and audio
//! deleted when anyone denied consent) and `mark_failed` (the pipeline's `on_failure`: status
//! `error`, never after `ended`), plus the `processing` transition `get_recording` makes.

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::error::ActivityFailure;
use crate::events::Events;
use crate::storage::{Storage, keys};
use crate::track::TrackRef;

/// The lifecycle steps, declared (`crate::step`).
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    use crate::step::{Declare as _, Event, Step};
    catalog
        .declare(
            LifecycleActivities::finalize,
            Step::FREE.emitting(&[Event::Transcript, Event::Status]),
        )
        .declare(LifecycleActivities::cleanup_consent, Step::FREE.external())
        .declare(
            LifecycleActivities::mark_failed,
            Step::FREE.emitting(&[Event::Status]),
        )
}

/// Move the transcript to `processing` (from `idle`, or back from `error` when a run resumes)
/// and publish STATUS if it changed. An `ended` transcript being re-run goes back to
/// `processing` too: its events were cleared and are being produced again.
pub async fn processing(
    events: &Events,
    activity: &str,
    transcript_id: &str,
) -> Result<(), ActivityFailure> {
    if events
        .db()
        .set_transcript_status(transcript_id, "processing")
        .await?
    {
        events
            .publish(
                activity,
                transcript_id,
                crate::events::Event::Status,
                json!({"value": "processing"}),
            )
            .await?;
    }
    Ok(())
}

/// Input of `finalize`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinalizeInput {
    /// When the run started (RFC 3339, `${workflow.started_at}`), for the pipeline duration:
    /// required, so a step that forgets it fails `reflow validate` instead of leaving the
    /// ended-run duration unrecorded.
    pub started_at: String,
    /// The transcript.
    pub transcript_id: String,
    /// The padded tracks to delete.
    pub padded_keys: Vec<String>,
}

/// Output of `finalize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FinalizeOutput {
    /// Always `ended`.
    pub status: String,
    /// Padded tracks deleted.
    pub deleted: usize,
    /// The transcript's title, as the run left it.
    #[serde(default)]
    pub title: Option<String>,
    /// Its short summary (the recap).
    #[serde(default)]
    pub summary: Option<String>,
    /// Its duration, ms (Reflector's `transcript.duration`).
    #[serde(default)]
    pub duration: Option<f64>,
}

/// Input of `cleanup_consent`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    /// The transcript.
    pub transcript_id: String,
    /// Daily's bucket.
    #[serde(default)]
    pub bucket_name: Option<String>,
    /// The workflow input's tracks (the input wins over the recording row).
    pub tracks: Vec<TrackRef>,
}

/// Output of `cleanup_consent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConsentOutput {
    /// Someone denied consent.
    pub denied: bool,
    /// Objects deleted (raw tracks, then the MP3).
    pub deleted: Vec<String>,
    /// `transcript.audio_deleted` was set.
    pub audio_deleted: bool,
}

/// Input of `mark_failed`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailedInput {
    /// When the run started (RFC 3339, `${workflow.started_at}`), for the pipeline duration
    /// (required, as for `finalize`).
    pub started_at: String,
    /// The transcript.
    pub transcript_id: String,
    /// The step that failed for good.
    pub step: String,
    /// Its failure type.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Its failure message.
    pub message: String,
}

/// Output of `mark_failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FailedOutput {
    /// The status now stored (`error`, or `ended` when the transcript had already ended).
    pub status: String,
}

/// Lifecycle activities.
pub struct LifecycleActivities {
    storage: Storage,
    recordings: Storage,
    events: Events,
}

/// Time since `started_at` (RFC 3339), when given and in the past.
fn since(started_at: Option<&str>) -> Option<std::time::Duration> {
    let t = humantime::parse_rfc3339_weak(started_at?).ok()?;
    std::time::SystemTime::now().duration_since(t).ok()
}

impl LifecycleActivities {
    /// Activities over the transcript bucket, Daily's bucket and the event log.
    pub fn new(storage: Storage, recordings: Storage, events: Events) -> Self {
        LifecycleActivities {
            storage,
            recordings,
            events,
        }
    }

    /// Publish STATUS `value` when the transcript's status just changed to it, or when an
    /// attempt killed between the two writes left the status changed without its event (seen
    /// in the chaos suite): afterwards the last stored STATUS says `value`, once.
    async fn announce_status(
        &self,
        step: &str,
        tid: &str,
        value: &str,
        changed: bool,
    ) -> Result<(), ActivityFailure> {
        let unannounced = !changed
            && !self
                .events
                .db()
                .events(tid, 0)
                .await?
                .iter()
                .rev()
                .find(|e| e.event == "STATUS")
                .is_some_and(|e| e.data["value"] == value);
        if changed || unannounced {
            self.events
                .publish(
                    step,
                    tid,
                    crate::events::Event::Status,
                    json!({"value": value}),
                )
                .await?;
        }
        Ok(())
    }

    async fn finalize_run(&self, input: &FinalizeInput) -> Result<FinalizeOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let db = self.events.db();
        let transcript = db.transcript(tid).await?;
        // Only this transcript's own objects are deleted: a shadow run's padded tracks are the
        // live transcript's (reused), and an input naming another transcript's is never obeyed.
        let mut deleted = 0;
        for key in &input.padded_keys {
            if !key.starts_with(&format!("{tid}/pipeline/")) {
                tracing::warn!(transcript_id = %tid, %key, "not this transcript's pipeline object; left alone");
                continue;
            }
            self.storage.delete(key).await?;
            deleted += 1;
        }
        self.events
            .publish(
                "finalize",
                tid,
                crate::events::Event::Transcript,
                json!({"text": "", "translation": null}),
            )
            .await?;
        db.set_error(tid, None).await?;
        // STATUS only on change (a retried finalize finds the transcript already ended).
        let changed = db.set_transcript_status(tid, "ended").await?;
        if changed {
            crate::metrics::pipeline_run(
                &crate::attempt::current().pipeline,
                "ended",
                since(Some(&input.started_at)),
            );
        }
        self.announce_status("finalize", tid, "ended", changed)
            .await?;
        Ok(FinalizeOutput {
            status: "ended".into(),
            deleted,
            title: transcript.title,
            summary: transcript.short_summary,
            duration: transcript.duration,
        })
    }

    async fn consent(&self, input: &ConsentInput) -> Result<ConsentOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let db = self.events.db();
        let t = db.transcript(tid).await?;
        let nothing = ConsentOutput {
            denied: false,
            deleted: Vec::new(),
            audio_deleted: t.audio_deleted,
        };
        let Some(meeting) = &t.meeting_id else {
            return Ok(nothing);
        };
        if !db.consent_denied(meeting).await? {
            return Ok(nothing);
        }
        let keys: Vec<String> = input.tracks.iter().map(|t| t.s3_key.clone()).collect();
        if let Some(rid) = &t.recording_id
            && let Some(row) = db.recording(rid).await?
            && row.keys() != keys
        {
            tracing::warn!(transcript_id = %tid, recording_id = %rid, "recording.track_keys differ from the workflow input; deleting the input's tracks");
        }
        let bucket = self.recordings.in_bucket(input.bucket_name.as_deref());
        let mut deleted = Vec::new();
        let mut failed = Vec::new();
        for key in &keys {
            match bucket.delete(key).await {
                Ok(()) => deleted.push(key.clone()),
                Err(e) => failed.push(format!("{key}: {e}")),
            }
        }
        if t.audio_location == "storage" {
            let mp3 = keys::audio_mp3(tid);
            match self.storage.delete(&mp3).await {
                Ok(()) => deleted.push(mp3),
                Err(e) => failed.push(format!("{mp3}: {e}")),
            }
        }
        if !failed.is_empty() {
            // Retried; `audio_deleted` stays false until every delete succeeded.
            return Err(ActivityFailure::Transient(format!(
                "cleanup_consent {tid}: {} of {} deletions failed: {}",
                failed.len(),
                failed.len() + deleted.len(),
                failed.join("; ")
            )));
        }
        // What the runs computed from the recording goes too (memo_store keeps none from now).
        crate::memo::purge(&self.storage, tid).await?;
        db.set_audio_deleted(tid, true).await?;
        tracing::info!(transcript_id = %tid, objects = deleted.len(), "consent denied: audio and memos deleted");
        Ok(ConsentOutput {
            denied: true,
            deleted,
            audio_deleted: true,
        })
    }

    async fn failed(&self, input: &FailedInput) -> Result<FailedOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let db = self.events.db();
        if input.kind.as_deref() == Some(CANCELED) {
            return self.cancelled(input).await;
        }
        let cause = match &input.kind {
            Some(k) if !k.is_empty() && k != "StepFailed" => format!("{k}: {}", input.message),
            _ => input.message.clone(),
        };
        let text = format!("step {:?} failed: {cause}", input.step);
        let changed = db.set_transcript_status(tid, "error").await?;
        let status = db.transcript(tid).await?.status;
        if status == "error" {
            db.set_error(tid, Some(&text)).await?;
        }
        if changed {
            crate::metrics::pipeline_run(
                &crate::attempt::current().pipeline,
                "error",
                since(Some(&input.started_at)),
            );
        }
        if status == "error" {
            self.announce_status("mark_failed", tid, "error", changed)
                .await?;
        }
        tracing::error!(transcript_id = %tid, step = %input.step, error = %cause, status = %status, "pipeline failed");
        Ok(FailedOutput { status })
    }
}

impl LifecycleActivities {
    /// The run was cancelled (docs/contracts/pipeline.md §5: a cancel is not a failure): the
    /// transcript goes back to `idle`, ready to be processed again (which resumes the run), and
    /// never shows `error`. An `ended` transcript stays `ended`.
    async fn cancelled(&self, input: &FailedInput) -> Result<FailedOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let db = self.events.db();
        let before = db.transcript(tid).await?.status;
        let changed = before != "ended" && db.set_transcript_status(tid, "idle").await?;
        let status = db.transcript(tid).await?.status;
        if status == "idle" {
            self.announce_status("mark_failed", tid, "idle", changed)
                .await?;
        }
        tracing::info!(transcript_id = %tid, step = %input.step, status = %status, "pipeline cancelled");
        Ok(FailedOutput { status })
    }
}

/// The failure type of a step that stopped because its run was cancelled.
const CANCELED: &str = "Canceled";

#[activities]
impl LifecycleActivities {
    /// Delete the padded tracks, publish TRANSCRIPT and set the status `ended` (§4.13).
    #[activity(name = "finalize")]
    pub async fn finalize(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: FinalizeInput,
    ) -> Result<FinalizeOutput, ActivityError> {
        self.finalize_run(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// Delete the raw tracks and the audio if anyone denied consent (§4.14).
    #[activity(name = "cleanup_consent")]
    pub async fn cleanup_consent(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: ConsentInput,
    ) -> Result<ConsentOutput, ActivityError> {
        self.consent(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// Set the status `error` (never after `ended`) with the failed step named (§5).
    #[activity(name = "mark_failed")]
    pub async fn mark_failed(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: FailedInput,
    ) -> Result<FailedOutput, ActivityError> {
        self.failed(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }
}
