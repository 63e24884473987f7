//! The waveform of docs/contracts/pipeline.md §4.6: exactly 255 peaks, scaled to 0..=128.
//!
//! With `S` interleaved samples, segment `k` covers `[⌊k·S/255⌋, ⌊(k+1)·S/255⌋)` and its peak
//! is the largest `|sample|` in it; peaks are scaled by `128 / max(peak)` and floored (all
//! zeros for silence). `S` must be known before the first segment closes: it is taken from
//! the container when it announces the length (checked against the decoded count afterwards),
//! otherwise the file is decoded twice (count, then peaks). Memory stays constant.

use std::ops::ControlFlow;
use std::path::Path;

use super::AudioError;
use super::decode::decode_file_while;

/// Number of peaks.
pub const PEAKS: usize = 255;
/// Largest value of a peak.
pub const SCALE: f32 = 128.0;

/// Peaks of `S` samples delivered in chunks.
pub struct PeakMeter {
    total: u64,
    seen: u64,
    segment: usize,
    end: u64,
    peaks: [f32; PEAKS],
}

impl PeakMeter {
    /// A meter for `total` interleaved samples.
    pub fn new(total: u64) -> Self {
        PeakMeter {
            total,
            seen: 0,
            segment: 0,
            end: Self::boundary(total, 1),
            peaks: [0.0; PEAKS],
        }
    }

    fn boundary(total: u64, k: usize) -> u64 {
        (k as u128 * total as u128 / PEAKS as u128) as u64
    }

    /// Feed the next samples.
    pub fn feed(&mut self, samples: &[f32]) {
        for &s in samples {
            while self.seen >= self.end && self.segment < PEAKS - 1 {
                self.segment += 1;
                self.end = Self::boundary(self.total, self.segment + 1);
            }
            if self.seen >= self.total {
                return;
            }
            let a = s.abs();
            if a > self.peaks[self.segment] {
                self.peaks[self.segment] = a;
            }
            self.seen += 1;
        }
    }

    /// The scaled peaks.
    pub fn finish(&self) -> Vec<u8> {
        let max = self.peaks.iter().copied().fold(0.0f32, f32::max);
        if max <= 0.0 {
            return vec![0; PEAKS];
        }
        self.peaks
            .iter()
            .map(|p| (p * SCALE / max).floor().clamp(0.0, SCALE) as u8)
            .collect()
    }
}

/// The waveform of an audio file (one decoding pass when the file announces its length, two
/// otherwise). `proceed` is asked between packets; `Break` stops the work
/// ([`AudioError::Stopped`]).
pub fn waveform_of_file(
    path: &Path,
    source_name: &str,
    proceed: impl Fn() -> ControlFlow<()>,
) -> Result<Vec<u8>, AudioError> {
    // One pass when the container announces its length (our MP3s carry a LAME/Xing tag);
    // the count is checked against what was decoded, and a mismatch falls back to counting.
    if let Some(announced) = super::decode::announced_samples(path) {
        let mut meter = PeakMeter::new(announced);
        let mut decoded = 0u64;
        decode_file_while(path, source_name, |s, _, _| {
            decoded += s.len() as u64;
            meter.feed(s);
            proceed()
        })?;
        if decoded == announced {
            return Ok(meter.finish());
        }
    }
    let mut total = 0u64;
    decode_file_while(path, source_name, |s, _, _| {
        total += s.len() as u64;
        proceed()
    })?;
    let mut meter = PeakMeter::new(total);
    decode_file_while(path, source_name, |s, _, _| {
        meter.feed(s);
        proceed()
    })?;
    Ok(meter.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_the_spec_formula_and_scale_to_128() {
        // 510 samples: two per segment; segment k's peak is k (as a fraction of 254).
        let samples: Vec<f32> = (0..510)
            .map(|i| (i / 2) as f32 / 254.0 * if i % 2 == 0 { 1.0 } else { -0.5 })
            .collect();
        let mut m = PeakMeter::new(samples.len() as u64);
        for chunk in samples.chunks(7) {
            m.feed(chunk);
        }
        let w = m.finish();
        assert_eq!(w.len(), 255);
        assert_eq!((w[0], w[127], w[254]), (0, 64, 128));
    }

    #[test]
    fn uneven_lengths_short_files_and_silence() {
        let mut m = PeakMeter::new(1000);
        m.feed(&[0.25; 999]);
        m.feed(&[-1.0]);
        let w = m.finish();
        assert_eq!(w.len(), 255);
        assert_eq!(w[254], 128, "the last sample lands in the last segment");
        assert_eq!(w[0], 32);
        let mut few = PeakMeter::new(3);
        few.feed(&[0.5, -1.0, 0.25]);
        assert_eq!(
            few.finish().iter().filter(|p| **p > 0).count(),
            3,
            "fewer samples than segments"
        );
        assert_eq!(PeakMeter::new(0).finish(), vec![0; 255]);
        let mut silent = PeakMeter::new(100);
        silent.feed(&[0.0; 100]);
        assert_eq!(silent.finish(), vec![0; 255]);
    }
}
