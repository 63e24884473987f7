//! Where speech starts in a window of one participant's track, so that Whisper runs on speech
//! and not on the minutes a participant listens.
//!
//! A Daily track holds one microphone: while its participant listens it carries room noise
//! (or, with noise suppression, near silence), tens of decibels below their speech. The
//! [`Detector::Energy`] detector measures each 10 ms frame's RMS level, takes the window's
//! noise floor as the 10th percentile of those levels, and calls a frame speech when it is
//! [`ABOVE_NOISE_DB`] over the floor (the threshold kept between [`MIN_THRESHOLD_DB`] and
//! [`MAX_THRESHOLD_DB`]); speech starts at the first frame where three of five consecutive
//! frames are speech, which ignores clicks. [`Detector::Silence`] is the older rule: any
//! sample above −54 dBFS (digital silence only). Times stay exact: a window only ever starts
//! later, at a frame boundary, and words keep their offsets.

use super::mel::HOP;

/// Level over the window's noise floor that counts as speech.
pub const ABOVE_NOISE_DB: f32 = 12.0;
/// The speech threshold never goes below this (frames quieter than it are never speech).
pub const MIN_THRESHOLD_DB: f32 = -50.0;
/// …nor above this, so that a window full of speech (whose 10th percentile is speech too)
/// still finds its soft onsets.
pub const MAX_THRESHOLD_DB: f32 = -38.0;
/// The digital-silence rule's peak (−54 dBFS).
const SILENCE_PEAK: f32 = 0.002;
/// Frames looked at together, and how many of them must be speech.
const RUN: usize = 5;
const RUN_SPEECH: usize = 3;

/// How speech is found in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detector {
    /// Frame energy over the window's noise floor (the default).
    #[default]
    Energy,
    /// Any sample above −54 dBFS: skips digital silence only.
    Silence,
}

impl Detector {
    /// From `TRANSCRIPT_VAD`: `energy` (default) or `off` (digital silence only).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "energy" => Some(Detector::Energy),
            "off" => Some(Detector::Silence),
            _ => None,
        }
    }

    /// Its name in configuration and checkpoint hashes.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Energy => "energy",
            Detector::Silence => "off",
        }
    }

    /// The first 10 ms frame of `window` (16 kHz) where speech starts, if any.
    pub fn onset(self, window: &[f32]) -> Option<usize> {
        match self {
            Detector::Silence => window
                .chunks(HOP)
                .position(|frame| frame.iter().any(|x| x.abs() >= SILENCE_PEAK)),
            Detector::Energy => energy_onset(window),
        }
    }
}

fn level_db(frame: &[f32]) -> f32 {
    let power = frame.iter().map(|x| x * x).sum::<f32>() / frame.len().max(1) as f32;
    10.0 * power.max(1e-12).log10()
}

fn energy_onset(window: &[f32]) -> Option<usize> {
    let levels: Vec<f32> = window.chunks(HOP).map(level_db).collect();
    if levels.is_empty() {
        return None;
    }
    let mut sorted = levels.clone();
    sorted.sort_by(f32::total_cmp);
    let floor = sorted[sorted.len() / 10];
    let threshold = (floor + ABOVE_NOISE_DB).clamp(MIN_THRESHOLD_DB, MAX_THRESHOLD_DB);
    let speech: Vec<bool> = levels.iter().map(|l| *l >= threshold).collect();
    (0..speech.len()).find(|&i| {
        speech[i]
            && speech[i..(i + RUN).min(speech.len())]
                .iter()
                .filter(|s| **s)
                .count()
                >= RUN_SPEECH.min(speech.len() - i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise at about `db` dBFS RMS.
    fn noise(n: usize, db: f32, seed: &mut u64) -> Vec<f32> {
        let amp = 10f32.powf(db / 20.0) * 3f32.sqrt();
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                ((*seed % 20_001) as f32 / 10_000.0 - 1.0) * amp
            })
            .collect()
    }

    fn tone(n: usize, db: f32) -> Vec<f32> {
        let amp = 10f32.powf(db / 20.0) * 2f32.sqrt();
        (0..n)
            .map(|i| amp * (i as f32 * 2.0 * std::f32::consts::PI * 220.0 / 16_000.0).sin())
            .collect()
    }

    #[test]
    fn speech_over_room_noise_starts_where_it_starts() {
        let mut seed = 42;
        // 12.3 s of room noise at −48 dBFS, then a voice at −22 dBFS over it.
        let mut w = noise(12_300 * 16, -48.0, &mut seed);
        let voice = tone(5_000 * 16, -22.0);
        let bed = noise(voice.len(), -48.0, &mut seed);
        w.extend(voice.iter().zip(&bed).map(|(v, n)| v + n));
        w.extend(noise(12_700 * 16, -48.0, &mut seed));
        let at = Detector::Energy.onset(&w).expect("speech found");
        assert!((1229..=1231).contains(&at), "onset at frame {at}");
        // The digital-silence rule hears the noise as sound from the first frame.
        assert_eq!(Detector::Silence.onset(&w), Some(0));
    }

    #[test]
    fn a_window_of_room_noise_or_silence_has_no_speech() {
        let mut seed = 7;
        assert_eq!(
            Detector::Energy.onset(&noise(30 * 16_000, -45.0, &mut seed)),
            None
        );
        assert_eq!(Detector::Energy.onset(&vec![0.0; 30 * 16_000]), None);
        // A click is not speech.
        let mut w = vec![0.0; 30 * 16_000];
        w[16_000] = 0.5;
        assert_eq!(Detector::Energy.onset(&w), None);
    }

    #[test]
    fn a_window_full_of_speech_starts_at_once() {
        let mut w = tone(2_000 * 16, -24.0);
        w.extend(tone(28_000 * 16, -30.0));
        assert_eq!(Detector::Energy.onset(&w), Some(0));
    }
}
