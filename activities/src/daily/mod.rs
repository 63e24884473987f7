//! Daily.co contracts (docs/contracts/daily.md): raw-track keys, the REST client ([`client`]),
//! webhook signatures ([`signature`]) and the Daily steps of the pipeline ([`activities`]).
//!
//! A raw audio track's key is `{domain}/{room}/{recording_start_ms}-{participant}-cam-audio-{track_start_ms}`
//! (docs/contracts/daily.md §5); [`TrackKey::parse`] reads it, and [`TrackKey::offset_s`] is the
//! filename offset padding falls back to when the WebM carries none.

pub mod activities;
pub mod client;
pub mod signature;

/// The parts of a Daily raw-track key's basename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackKey {
    /// When the recording started, epoch ms.
    pub recording_start_ms: u64,
    /// The participant's id (a UUID).
    pub participant_id: String,
    /// When this track's stream started, epoch ms.
    pub track_start_ms: u64,
}

impl TrackKey {
    /// Parse the basename of a `-cam-audio-` key (`^(\d{13,})-([0-9a-fA-F-]{36})-cam-audio-(\d{13,})(\.webm)?$`);
    /// `None` for anything else.
    pub fn parse(key: &str) -> Option<TrackKey> {
        let base = key.rsplit('/').next()?;
        let base = base.strip_suffix(".webm").unwrap_or(base);
        let (head, track_start) = base.split_once("-cam-audio-")?;
        let (recording_start, participant) = head.split_once('-')?;
        let digits = |s: &str| s.len() >= 13 && s.bytes().all(|b| b.is_ascii_digit());
        let uuid = |s: &str| s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        if !digits(recording_start) || !digits(track_start) || !uuid(participant) {
            return None;
        }
        Some(TrackKey {
            recording_start_ms: recording_start.parse().ok()?,
            participant_id: participant.to_owned(),
            track_start_ms: track_start.parse().ok()?,
        })
    }

    /// `(track_start − recording_start) / 1000`, in seconds (negative clamps to 0).
    pub fn offset_s(&self) -> f64 {
        self.track_start_ms.saturating_sub(self.recording_start_ms) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::TrackKey;

    #[test]
    fn daily_track_keys_parse_and_give_the_filename_offset() {
        let key = "acme/standup-20260110042117/1768018896877-890c0eae-1d2f-4c3b-9a8e-0f1e2d3c4b5a-cam-audio-1768018914565";
        let t = TrackKey::parse(key).unwrap();
        assert_eq!(t.participant_id, "890c0eae-1d2f-4c3b-9a8e-0f1e2d3c4b5a");
        assert!((t.offset_s() - 17.688).abs() < 1e-9);
        assert_eq!(TrackKey::parse(&format!("{key}.webm")), Some(t));
        for bad in [
            "acme/room/1768018896877-890c0eae-1d2f-4c3b-9a8e-0f1e2d3c4b5a-cam-video-1768018914565",
            "acme/room/176801889687-890c0eae-1d2f-4c3b-9a8e-0f1e2d3c4b5a-cam-audio-1768018914565",
            "acme/room/1768018896877-not-a-uuid-cam-audio-1768018914565",
            "track.webm",
        ] {
            assert_eq!(TrackKey::parse(bad), None, "{bad}");
        }
    }
}
