//! The frontend events reflow publishes (docs/contracts/events-and-api.md §3), as one enum: a step
//! declares the events its activity may publish with these values, `reflow validate` checks a
//! pipeline's `emits:` against their names, and the event log stores their names.
//!
//! What the frontend does with each (stored in the transcript's log or only broadcast,
//! echoed to the owner's user channel) is a property of the event, stated here once.

use std::fmt;
use std::str::FromStr;

/// One frontend event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Event {
    /// The transcript's status changed (`processing`, `ended`, `error`, …).
    Status,
    /// The recording's duration is known.
    Duration,
    /// The waveform is ready.
    Waveform,
    /// The merged transcript is ready.
    Transcript,
    /// One topic of the meeting.
    Topic,
    /// The meeting's title.
    FinalTitle,
    /// The quick recap.
    FinalShortSummary,
    /// The long summary.
    FinalLongSummary,
    /// Decisions and next steps.
    ActionItems,
    /// A step's state changed (never stored: the latest state per step is).
    PipelineProgress,
}

impl Event {
    /// Every event, in the order of the catalogue.
    pub const ALL: [Event; 10] = [
        Event::Status,
        Event::Duration,
        Event::Waveform,
        Event::Transcript,
        Event::Topic,
        Event::FinalTitle,
        Event::FinalShortSummary,
        Event::FinalLongSummary,
        Event::ActionItems,
        Event::PipelineProgress,
    ];

    /// Its name on the wire and in pipelines (`FINAL_TITLE`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Event::Status => "STATUS",
            Event::Duration => "DURATION",
            Event::Waveform => "WAVEFORM",
            Event::Transcript => "TRANSCRIPT",
            Event::Topic => "TOPIC",
            Event::FinalTitle => "FINAL_TITLE",
            Event::FinalShortSummary => "FINAL_SHORT_SUMMARY",
            Event::FinalLongSummary => "FINAL_LONG_SUMMARY",
            Event::ActionItems => "ACTION_ITEMS",
            Event::PipelineProgress => "PIPELINE_PROGRESS",
        }
    }

    /// Whether it is appended to the transcript's event log (every event but
    /// `PIPELINE_PROGRESS`, whose latest state per step is kept instead).
    pub const fn is_stored(self) -> bool {
        !matches!(self, Event::PipelineProgress)
    }

    /// Whether it is also sent to the owner's user channel as `TRANSCRIPT_{NAME}`
    /// (docs/contracts/events-and-api.md §1).
    pub const fn is_echoed_to_owner(self) -> bool {
        matches!(self, Event::Status | Event::FinalTitle | Event::Duration)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of reflow's events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event {0:?}")]
pub struct UnknownEvent(pub String);

impl FromStr for Event {
    type Err = UnknownEvent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Event::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEvent(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_reads_back_from_its_name() {
        for e in Event::ALL {
            assert_eq!(e.as_str().parse::<Event>(), Ok(e));
        }
        assert_eq!(
            "FINAL_TITEL".parse::<Event>(),
            Err(UnknownEvent("FINAL_TITEL".into()))
        );
    }

    #[test]
    fn only_progress_is_unstored_and_three_events_reach_the_owner() {
        let unstored: Vec<_> = Event::ALL.into_iter().filter(|e| !e.is_stored()).collect();
        assert_eq!(unstored, [Event::PipelineProgress]);
        let echoed: Vec<_> = Event::ALL
            .into_iter()
            .filter(|e| e.is_echoed_to_owner())
            .map(Event::as_str)
            .collect();
        assert_eq!(echoed, ["STATUS", "DURATION", "FINAL_TITLE"]);
    }
}
