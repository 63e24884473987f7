//! The Daily steps of the pipeline: `get_recording` (§4.1) and `get_participants` (§4.2).
//!
//! Both are cheap, idempotent calls; they are not checkpointed. A local source (`reflow
//! process <dir>`, `source_platform: "local"`) has no Daily recording: `get_recording` then
//! answers from its input, and names come from the tracks' own `name` fields.

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use super::TrackKey;
use super::client::{DailyClient, DailyConfig};
use crate::error::ActivityFailure;
use crate::events::Events;
use crate::lifecycle;
use crate::track::TrackRef;
use crate::transcript::Participant;

/// The Daily steps, declared (`crate::step`).
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    use crate::step::{Declare as _, Event, Step};
    catalog
        .declare(
            DailyActivities::get_recording,
            Step::FREE.emitting(&[Event::Status]),
        )
        .declare(
            DailyActivities::get_participants,
            Step::FREE.emitting(&[Event::Duration]),
        )
}

/// Input of `get_recording`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordingInput {
    /// The transcript.
    pub transcript_id: String,
    /// Daily's recording id.
    pub recording_id: String,
    /// `daily` (default) or `local` (no Daily recording to read).
    #[serde(default)]
    pub source_platform: Option<String>,
    /// A local source's known duration, seconds.
    #[serde(default)]
    pub duration_s: Option<f64>,
}

/// Output of `get_recording` (§4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecordingOutput {
    /// Recording id.
    pub id: String,
    /// Meeting session, if Daily knows it.
    pub mtg_session_id: Option<String>,
    /// Seconds, if Daily knows it.
    pub duration_s: Option<f64>,
    /// Daily room name.
    pub room_name: Option<String>,
    /// Epoch seconds.
    pub start_ts: Option<i64>,
}

/// Input of `get_participants`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParticipantsInput {
    /// The transcript.
    pub transcript_id: String,
    /// From `get_recording`.
    #[serde(default)]
    pub mtg_session_id: Option<String>,
    /// From `get_recording`.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// The workflow input's tracks, in order.
    pub tracks: Vec<TrackRef>,
}

/// Output of `get_participants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ParticipantsOutput {
    /// The speaker of each track `i`.
    pub speakers: Vec<i64>,
    /// The input's tracks with their speakers, for the per-track fan-out.
    pub tracks: Vec<SpeakerTrack>,
    /// Participants stored.
    pub participants: usize,
}

/// A track and the speaker its words get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SpeakerTrack {
    /// Key in the recordings bucket.
    pub s3_key: String,
    /// Speaker number.
    pub speaker: i64,
    /// The speaker's name (`Speaker {i}` when the participant is unknown).
    #[serde(default)]
    pub name: String,
    /// A local source's declared offset, seconds.
    pub offset_s: Option<f64>,
}

/// Daily activities.
pub struct DailyActivities {
    config: DailyConfig,
    events: Events,
}

impl DailyActivities {
    /// Activities reading Daily as `config` says, updating transcripts through `events`.
    pub fn new(config: DailyConfig, events: Events) -> Self {
        DailyActivities { config, events }
    }

    async fn recording(&self, input: &RecordingInput) -> Result<RecordingOutput, ActivityFailure> {
        lifecycle::processing(&self.events, "get_recording", &input.transcript_id).await?;
        if input.source_platform.as_deref() == Some("local") {
            return Ok(RecordingOutput {
                id: input.recording_id.clone(),
                mtg_session_id: None,
                duration_s: input.duration_s,
                room_name: None,
                start_ts: None,
            });
        }
        let r = DailyClient::new(&self.config)?
            .recording(&input.recording_id)
            .await?;
        Ok(RecordingOutput {
            id: r.id,
            mtg_session_id: r.mtg_session_id,
            duration_s: r.duration,
            room_name: Some(r.room_name),
            start_ts: Some(r.start_ts),
        })
    }

    async fn participants(
        &self,
        input: &ParticipantsInput,
    ) -> Result<ParticipantsOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let db = self.events.db();
        // A clean (re)run: no stored events, topics or participants from an earlier one.
        db.transcript(tid).await?;
        db.clear_events(tid).await?;
        db.set_topics(tid, &[]).await?;
        db.set_participants(tid, &[]).await?;
        if let Some(s) = input.duration_s.filter(|s| s.is_finite() && *s > 0.0) {
            let ms = s * 1000.0;
            db.set_duration(tid, ms).await?;
            self.events
                .publish(
                    "get_participants",
                    tid,
                    crate::events::Event::Duration,
                    json!({ "duration": ms }),
                )
                .await?;
        }
        let names: BTreeMap<String, (Option<String>, Option<String>)> = match &input.mtg_session_id
        {
            Some(session) => DailyClient::new(&self.config)?
                .participants(session)
                .await?
                .into_iter()
                .map(|p| (p.participant_id, (p.user_name, p.user_id)))
                .collect(),
            None => BTreeMap::new(),
        };
        let mut people: Vec<Participant> = Vec::new();
        let mut speakers = Vec::with_capacity(input.tracks.len());
        let mut track_names = Vec::with_capacity(input.tracks.len());
        for (i, track) in input.tracks.iter().enumerate() {
            let id = match (TrackKey::parse(&track.s3_key), &track.name) {
                (Some(k), _) => k.participant_id,
                (None, Some(name)) => format!("local-{i}-{name}"),
                (None, None) => {
                    tracing::warn!(track = i, key = %track.s3_key, "track key names no participant; its words keep speaker {i}");
                    speakers.push(i as i64);
                    track_names.push(format!("Speaker {i}"));
                    continue;
                }
            };
            // One speaker per participant: the index of their first track.
            if let Some(p) = people.iter().find(|p| p.id == id) {
                speakers.push(p.speaker);
                track_names.push(p.name.clone());
                continue;
            }
            let (user_name, user_id) = names.get(&id).cloned().unwrap_or_default();
            let name = user_name
                .filter(|n| !n.trim().is_empty())
                .or_else(|| track.name.clone())
                .unwrap_or_else(|| format!("Speaker {i}"));
            track_names.push(name.clone());
            people.push(Participant {
                id,
                speaker: i as i64,
                name,
                user_id,
                email: None,
            });
            speakers.push(i as i64);
        }
        db.set_participants(tid, &people).await?;
        Ok(ParticipantsOutput {
            tracks: input
                .tracks
                .iter()
                .zip(speakers.iter().zip(track_names))
                .map(|(t, (s, name))| SpeakerTrack {
                    s3_key: t.s3_key.clone(),
                    speaker: *s,
                    name,
                    offset_s: t.offset_s,
                })
                .collect(),
            speakers,
            participants: people.len(),
        })
    }
}

#[activities]
impl DailyActivities {
    /// Mark the transcript `processing` and read the recording from Daily
    /// (docs/contracts/pipeline.md §4.1).
    #[activity(name = "get_recording")]
    pub async fn get_recording(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: RecordingInput,
    ) -> Result<RecordingOutput, ActivityError> {
        self.recording(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// Reset the transcript for a clean run, store the duration and the participants
    /// (docs/contracts/pipeline.md §4.2).
    #[activity(name = "get_participants")]
    pub async fn get_participants(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: ParticipantsInput,
    ) -> Result<ParticipantsOutput, ActivityError> {
        self.participants(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }
}
