//! `poll_daily_recordings` (docs/contracts/daily.md §4), the one step of `PollDailyRecordings`:
//! list Daily's recent recordings and hand every finished raw-tracks recording without a
//! `recording` row to intake (which starts nothing twice). When `DAILY_WEBHOOK_UUID` is set it also
//! reads the webhook's state, so a webhook Daily disabled is visible in the output and the logs.
//!
//! It lives in the worker crate because intake starts workflows (it needs the Temporal
//! client), which activities of the `activities` crate never do.

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use activities::ActivityFailure;
use activities::daily::client::{DailyClient, DailyConfig, Recording};
use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::intake::{Discovered, Intake, Outcome};

/// Pages read at most per poll.
pub const MAX_PAGES: usize = 10;
/// Recordings per page.
pub const PAGE: usize = 100;
/// Older recordings stop the paging.
pub const RECENT: Duration = Duration::from_secs(168 * 3600);

/// Input of `poll_daily_recordings` (nothing: the schedule passes none).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PollInput {}

/// Output of `poll_daily_recordings`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PollOutput {
    /// Recordings listed.
    pub seen: usize,
    /// Pages read.
    pub pages: usize,
    /// Recording ids whose pipeline this poll started.
    pub started: Vec<String>,
    /// Raw-tracks recordings still waiting for their meeting (retried next poll).
    pub waiting: Vec<String>,
    /// The webhook's state (`ACTIVE`/`FAILED`) and failed count, when watched.
    pub webhook: Option<(String, u64)>,
}

/// `poll_daily_recordings`, declared (`activities::step`).
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    use activities::step::{Declare as _, Step};
    catalog.declare(PollActivities::poll_daily_recordings, Step::FREE)
}

/// The poll activity.
pub struct PollActivities {
    daily: DailyConfig,
    intake: Option<Arc<Intake>>,
}

impl PollActivities {
    /// Poll Daily as `daily` says, taking recordings in through `intake` (`None`: the activity
    /// fails with `ConfigError`, as a worker without a Temporal client cannot start runs).
    pub fn new(daily: DailyConfig, intake: Option<Arc<Intake>>) -> Self {
        PollActivities { daily, intake }
    }

    async fn poll(&self) -> Result<PollOutput, ActivityFailure> {
        let intake = self.intake.as_ref().ok_or_else(|| {
            ActivityFailure::Config("this worker has no intake (no Temporal client)".into())
        })?;
        let daily = DailyClient::new(&self.daily)?;
        let mut out = PollOutput::default();
        let mut after: Option<String> = None;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut candidates: Vec<Recording> = Vec::new();
        while out.pages < MAX_PAGES {
            let page = daily.recordings(PAGE, after.as_deref()).await?;
            out.pages += 1;
            out.seen += page.data.len();
            let mut all_new_and_recent = !page.data.is_empty();
            for r in &page.data {
                let known = intake
                    .db
                    .recording(&r.id)
                    .await
                    .map_err(|e| ActivityFailure::Transient(e.to_string()))?
                    .is_some();
                let recent = now - r.start_ts < RECENT.as_secs() as i64;
                all_new_and_recent &= !known && recent;
                if !known {
                    candidates.push(r.clone());
                }
            }
            after = page.data.last().map(|r| r.id.clone());
            if !all_new_and_recent || page.data.len() < PAGE {
                break;
            }
        }
        for r in candidates {
            let finished = r.status.as_deref() == Some("finished") && r.duration.is_some();
            if !finished || r.tracks.is_empty() {
                // In progress, a cloud recording (s3key only), or a failed one.
                continue;
            }
            let discovered = Discovered {
                recording_id: r.id.clone(),
                room_name: r.room_name.clone(),
                start_ts: r.start_ts,
                track_keys: r.audio_keys(),
            };
            match intake
                .intake(&discovered)
                .await
                .map_err(|e| ActivityFailure::Transient(e.to_string()))?
            {
                Outcome::Started { .. } => out.started.push(r.id),
                Outcome::NoMeeting => out.waiting.push(r.id),
                _ => {}
            }
        }
        if let Some(uuid) = &self.daily.webhook_uuid {
            let w = daily.webhook(uuid).await?;
            activities::metrics::daily_webhook_state(w.state != "ACTIVE", w.failed_count);
            if w.state != "ACTIVE" {
                tracing::error!(webhook = %uuid, state = %w.state, failed_count = w.failed_count, "Daily webhook is not active: recreate it (polling covers the gap)");
            }
            out.webhook = Some((w.state, w.failed_count));
        }
        tracing::info!(
            seen = out.seen,
            started = out.started.len(),
            waiting = out.waiting.len(),
            "Daily polled"
        );
        Ok(out)
    }
}

#[activities]
impl PollActivities {
    /// Take in every finished raw-tracks recording Daily lists that reflow does not know.
    #[activity(name = "poll_daily_recordings")]
    pub async fn poll_daily_recordings(
        self: Arc<Self>,
        _ctx: ActivityContext,
        _input: Option<PollInput>,
    ) -> Result<PollOutput, ActivityError> {
        self.poll()
            .await
            .map_err(ActivityFailure::into_activity_error)
    }
}
