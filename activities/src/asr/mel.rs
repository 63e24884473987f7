//! Whisper's log-mel front end, as OpenAI's `log_mel_spectrogram` computes it.
//!
//! 16 kHz mono samples, one 30 s window at a time (zero-padded when shorter): a reflect-padded,
//! centred STFT (n_fft 400, hop 160, periodic Hann), power spectrum, Slaney-normalised mel
//! filters (librosa's `htk=False, norm="slaney"`), `log10(max(x, 1e-10))`, clamped at the
//! window's maximum minus 8, then `(x + 4) / 4`. The last STFT frame is dropped, so a window is
//! exactly [`FRAMES`] frames. Models were trained on exactly these features; ct2rs's own front
//! end normalises per frame, which is why it is not used.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// Whisper's sample rate.
pub const SAMPLE_RATE: usize = 16_000;
/// FFT size.
pub const N_FFT: usize = 400;
/// Samples between frames (10 ms).
pub const HOP: usize = 160;
/// Samples in one 30 s window.
pub const WINDOW_SAMPLES: usize = 30 * SAMPLE_RATE;
/// Mel frames in one window.
pub const FRAMES: usize = WINDOW_SAMPLES / HOP;

const BINS: usize = N_FFT / 2 + 1;

/// A reusable log-mel computer for one mel count (80 for tiny/base, 128 for large-v3).
pub struct LogMel {
    n_mels: usize,
    /// `n_mels × BINS`, row-major.
    filters: Vec<f32>,
    hann: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl LogMel {
    /// Filters and FFT plan for `n_mels` mel bands.
    pub fn new(n_mels: usize) -> Self {
        let hann = (0..N_FFT)
            .map(|n| {
                0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos() as f32
            })
            .collect();
        LogMel {
            n_mels,
            filters: slaney_filters(n_mels),
            hann,
            fft: RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT),
        }
    }

    /// Number of mel bands.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Features of one window, `n_mels × FRAMES` row-major (the layout the encoder takes as
    /// `[1, n_mels, 3000]`). `samples` longer than a window are cut, shorter ones zero-padded.
    pub fn window(&self, samples: &[f32]) -> Vec<f32> {
        let mut audio = vec![0.0f32; WINDOW_SAMPLES];
        let n = samples.len().min(WINDOW_SAMPLES);
        audio[..n].copy_from_slice(&samples[..n]);

        // Reflect padding by n_fft/2 on both sides (torch.stft(center=True, pad_mode="reflect")).
        let half = N_FFT / 2;
        let mut padded = Vec::with_capacity(WINDOW_SAMPLES + N_FFT);
        padded.extend((1..=half).rev().map(|i| audio[i]));
        padded.extend_from_slice(&audio);
        padded.extend((1..=half).map(|i| audio[WINDOW_SAMPLES - 1 - i]));

        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f32; BINS];
        let mut mel = vec![0.0f32; self.n_mels * FRAMES];
        for frame in 0..FRAMES {
            let start = frame * HOP;
            for (i, x) in input.iter_mut().enumerate() {
                *x = padded[start + i] * self.hann[i];
            }
            self.fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .expect("buffers come from the plan");
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for m in 0..self.n_mels {
                let row = &self.filters[m * BINS..(m + 1) * BINS];
                let energy: f32 = row.iter().zip(&power).map(|(w, p)| w * p).sum();
                mel[m * FRAMES + frame] = energy.max(1e-10).log10();
            }
        }
        let max = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for x in &mut mel {
            *x = (x.max(max - 8.0) + 4.0) / 4.0;
        }
        mel
    }
}

/// librosa.filters.mel(sr=16000, n_fft=400, n_mels, htk=False, norm="slaney").
fn slaney_filters(n_mels: usize) -> Vec<f32> {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    let hz_to_mel = |f: f64| {
        if f < MIN_LOG_HZ {
            f / F_SP
        } else {
            MIN_LOG_MEL + (f / MIN_LOG_HZ).ln() / logstep
        }
    };
    let mel_to_hz = |m: f64| {
        if m < MIN_LOG_MEL {
            F_SP * m
        } else {
            MIN_LOG_HZ * (logstep * (m - MIN_LOG_MEL)).exp()
        }
    };
    let top = hz_to_mel(SAMPLE_RATE as f64 / 2.0);
    let points: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(top * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut filters = vec![0.0f32; n_mels * BINS];
    for m in 0..n_mels {
        let (lo, mid, hi) = (points[m], points[m + 1], points[m + 2]);
        let norm = 2.0 / (hi - lo);
        for k in 0..BINS {
            let f = k as f64 * SAMPLE_RATE as f64 / N_FFT as f64;
            let lower = (f - lo) / (mid - lo);
            let upper = (hi - f) / (hi - mid);
            filters[m * BINS + k] = (lower.min(upper).max(0.0) * norm) as f32;
        }
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_librosa_at_known_points() {
        // Row 0 spans 0–74.48 Hz (peak at 37.24 Hz); bin 1 (40 Hz) is on its falling edge:
        // (74.48 − 40) / 37.24 × 2 / 74.48 = 0.02486. Every row is non-negative and non-empty.
        let f = slaney_filters(80);
        assert!((f[1] - 0.024_862_59).abs() < 1e-5, "row 0 bin 1 = {}", f[1]);
        for m in 0..80 {
            let row = &f[m * BINS..(m + 1) * BINS];
            assert!(row.iter().all(|w| *w >= 0.0));
            assert!(row.iter().any(|w| *w > 0.0), "mel band {m} is empty");
        }
    }

    #[test]
    fn silence_is_flat_and_a_tone_lights_its_band() {
        let mel = LogMel::new(80);
        let silent = mel.window(&[]);
        assert_eq!(silent.len(), 80 * FRAMES);
        assert!(silent.iter().all(|x| (*x - silent[0]).abs() < 1e-6));

        let tone: Vec<f32> = (0..SAMPLE_RATE)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / SAMPLE_RATE as f32).sin())
            .collect();
        let feats = mel.window(&tone);
        // 440 Hz sits in mel band ~ 440 / 66.7 / (max_mel / 81) ≈ band 14; the loudest band of
        // frame 50 must be near it, and frames after the tone ends are at the floor.
        let frame = 50;
        let loudest = (0..80)
            .max_by(|a, b| feats[a * FRAMES + frame].total_cmp(&feats[b * FRAMES + frame]))
            .unwrap();
        assert!((10..=18).contains(&loudest), "loudest band {loudest}");
        let floor = feats.iter().copied().fold(f32::INFINITY, f32::min);
        assert!((feats[14 * FRAMES + 2000] - floor).abs() < 1e-6);
        let max = feats.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert!(
            (max - floor - 2.0).abs() < 1e-4,
            "clamped to max − 8 (÷4 = 2)"
        );
    }
}
