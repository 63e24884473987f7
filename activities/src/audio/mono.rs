//! One audio file as a stream of 48 kHz mono samples, pulled block by block.
//!
//! Channels are averaged to mono and any other rate is resampled with rubato, so memory is one
//! packet plus one resampler block whatever the file's length. With gap filling on (padding of
//! Daily tracks, docs/contracts/pipeline.md §4.3.1 step 4) the container's packet timestamps are
//! authoritative: a packet that starts later than the running position gets silence in front
//! of it, one that starts earlier loses its overlapping samples — what `aresample async=1`
//! does. Differences within [`GAP_TOLERANCE_S`] are timestamp rounding and left alone. The
//! silence of a gap is handed out block by block as it is pulled (a participant muted for an
//! hour costs no memory), and a gap that would carry the track past [`MAX_TRACK_S`] is taken
//! as corrupt timestamps: [`AudioError::Corrupt`].

use std::collections::VecDeque;
use std::path::Path;

use rubato::{FftFixedIn, Resampler};

use super::AudioError;
use super::decode::AudioReader;

/// Rate of everything downstream of decoding (padding, mixdown).
pub const RATE: u32 = 48_000;

/// Timestamp jitter ignored by gap filling: WebM stores milliseconds, so a 20 ms Opus packet's
/// timestamp is off by up to 1 ms; 2 ms leaves room for rounding on both sides.
pub const GAP_TOLERANCE_S: f64 = 0.002;

/// The longest track reflow accepts, offset and gaps included (reflow decision: no meeting
/// lasts a day; a track that would is corrupt timestamps, and padding it would write hours of
/// silence for nothing).
pub const MAX_TRACK_S: f64 = 86_400.0;

/// Source sample rates reflow reads, 1 kHz to 384 kHz (telephony to studio masters). The
/// resampler's buffers grow with the rate over its common divisor with 48 kHz: a header claiming
/// 4,291,501,888 Hz had it allocate gigabytes (found by fuzzing), so other rates are refused.
pub const SOURCE_RATES: std::ops::RangeInclusive<u32> = 1_000..=384_000;

/// Silence handed on per step while a gap is filled, in source frames.
const SILENCE_BLOCK: u64 = 4_800;

/// What gap filling did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GapStats {
    /// Source frames of silence inserted where packets were missing.
    pub filled_frames: u64,
    /// Source frames dropped where packets overlapped.
    pub dropped_frames: u64,
    /// Number of gaps filled.
    pub gaps: u64,
}

/// One track as a 48 kHz mono sample queue, refilled on demand.
pub struct MonoStream {
    reader: AudioReader,
    resampler: Option<FftFixedIn<f32>>,
    pending: Vec<f32>,
    /// Samples ready to be taken.
    pub queue: VecDeque<f32>,
    /// Resampler output frames still to drop (its delay).
    skip: usize,
    /// Source frames handed on (after gap filling) and 48 kHz frames emitted, to cut the
    /// resampler's tail exactly.
    frames_in: u64,
    frames_out: u64,
    rate: u32,
    eof: bool,
    name: String,
    gap_fill: bool,
    first_time: Option<f64>,
    gaps: GapStats,
    /// Source frames of gap silence still to hand on, then the packet that came after it.
    silence_due: u64,
    held: Option<(Vec<f32>, usize)>,
}

impl MonoStream {
    /// Open `path` (named `name` in errors); `gap_fill` turns on timestamp-driven gap filling.
    pub fn open(path: &Path, name: &str, gap_fill: bool) -> Result<Self, AudioError> {
        Ok(Self::new(AudioReader::open(path, name)?, name, gap_fill))
    }

    /// The stream of a decoder already open (an [`AudioReader::from_bytes`], say).
    pub fn new(reader: AudioReader, name: &str, gap_fill: bool) -> Self {
        MonoStream {
            reader,
            resampler: None,
            pending: Vec::new(),
            queue: VecDeque::with_capacity(9_600),
            skip: 0,
            frames_in: 0,
            frames_out: 0,
            rate: 0,
            eof: false,
            name: name.to_owned(),
            gap_fill,
            first_time: None,
            gaps: GapStats::default(),
            silence_due: 0,
            held: None,
        }
    }

    /// The decoder underneath (container facts: Matroska or not, pre-skip).
    pub fn reader(&self) -> &AudioReader {
        &self.reader
    }

    /// Container time of the first decoded packet, once one was decoded.
    pub fn first_packet_time(&self) -> Option<f64> {
        self.first_time
    }

    /// What gap filling did so far.
    pub fn gaps(&self) -> GapStats {
        self.gaps
    }

    /// The source's name, as errors give it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source's sample rate (0 before the first packet).
    pub fn source_rate(&self) -> u32 {
        self.rate
    }

    /// Source frames decoded so far, including inserted silence.
    pub fn source_frames(&self) -> u64 {
        self.frames_in
    }

    /// Whether the source is exhausted (the queue may still hold samples).
    pub fn ended(&self) -> bool {
        self.eof
    }

    /// Pull packets until `want` frames are queued or the track ends.
    pub fn fill(&mut self, want: usize) -> Result<(), AudioError> {
        let mut mono: Vec<f32> = Vec::new();
        while self.queue.len() < want && !self.eof {
            if self.silence_due > 0 {
                let n = self.silence_due.min(SILENCE_BLOCK);
                self.silence_due -= n;
                self.push_source(std::iter::repeat_n(0.0, n as usize))?;
                continue;
            }
            if let Some((chunk, start)) = self.held.take() {
                self.push_source(chunk[start..].iter().copied())?;
                mono = chunk;
                continue;
            }
            let Some((samples, channels, rate)) = self.reader.next_chunk()? else {
                self.eof = true;
                self.flush_resampler()?;
                break;
            };
            let channels = channels.max(1);
            if self.rate == 0 {
                if !SOURCE_RATES.contains(&rate) {
                    return Err(AudioError::Unsupported {
                        source_name: self.name.clone(),
                        message: format!(
                            "a sample rate of {rate} Hz (reflow reads {} to {} Hz)",
                            SOURCE_RATES.start(),
                            SOURCE_RATES.end()
                        ),
                    });
                }
                self.rate = rate;
                if rate != RATE {
                    let r = FftFixedIn::<f32>::new(rate as usize, RATE as usize, 1024, 2, 1)
                        .map_err(|e| resample_err(&self.name, rate, e))?;
                    self.skip = r.output_delay();
                    self.resampler = Some(r);
                }
            }
            // Downmix to mono: the mean of the channels.
            mono.clear();
            mono.extend(
                samples
                    .chunks(channels)
                    .map(|f| f.iter().sum::<f32>() / channels as f32),
            );
            let time = self.reader.packet_time();
            let mut start = 0;
            if self.first_time.is_none() {
                self.first_time = time;
            } else if self.gap_fill
                && let (Some(t), Some(t0)) = (time, self.first_time)
            {
                // Where this packet belongs, in source frames since the first real sample:
                // the first packet's own decoded output started `pre_skip` frames late.
                let expected = (t - t0) * f64::from(rate) - self.reader.pre_skip() as f64;
                let diff = expected - self.frames_in as f64;
                let tolerance = GAP_TOLERANCE_S * f64::from(rate);
                if diff > tolerance {
                    if expected > MAX_TRACK_S * f64::from(rate) {
                        return Err(AudioError::Corrupt {
                            source_name: self.name.clone(),
                            message: format!(
                                "a packet at {:.0} s after a gap of {:.0} s: the track would \
                                 last over {} h (corrupt timestamps)",
                                t - t0,
                                diff / f64::from(rate),
                                MAX_TRACK_S / 3600.0
                            ),
                        });
                    }
                    let n = diff.round() as u64;
                    self.gaps.filled_frames += n;
                    self.gaps.gaps += 1;
                    self.silence_due = n;
                    self.held = Some((std::mem::take(&mut mono), 0));
                    continue;
                } else if diff < -tolerance {
                    let n = ((-diff).round() as usize).min(mono.len());
                    self.gaps.dropped_frames += n as u64;
                    start = n;
                }
            }
            let chunk = std::mem::take(&mut mono);
            self.push_source(chunk[start..].iter().copied())?;
            mono = chunk;
        }
        Ok(())
    }

    /// Hand source-rate mono frames on: straight to the queue, or through the resampler.
    fn push_source(&mut self, frames: impl Iterator<Item = f32>) -> Result<(), AudioError> {
        if self.resampler.is_none() {
            let before = self.queue.len();
            self.queue.extend(frames);
            let n = (self.queue.len() - before) as u64;
            self.frames_in += n;
            self.frames_out += n;
            return Ok(());
        }
        let before = self.pending.len();
        self.pending.extend(frames);
        self.frames_in += (self.pending.len() - before) as u64;
        loop {
            let r = self.resampler.as_mut().expect("checked above");
            let need = r.input_frames_next();
            if self.pending.len() < need {
                break;
            }
            let out = r
                .process(&[&self.pending[..need]], None)
                .map_err(|e| resample_err(&self.name, self.rate, e))?;
            self.pending.drain(..need);
            self.emit(&out[0]);
        }
        Ok(())
    }

    fn flush_resampler(&mut self) -> Result<(), AudioError> {
        let Some(mut r) = self.resampler.take() else {
            return Ok(());
        };
        if !self.pending.is_empty() {
            let out = r
                .process_partial(Some(&[&self.pending[..]]), None)
                .map_err(|e| resample_err(&self.name, self.rate, e))?;
            self.pending.clear();
            self.emit(&out[0]);
        }
        // Push zeros through until the delayed tail is out.
        for _ in 0..4 {
            let out = r
                .process_partial::<&[f32]>(None, None)
                .map_err(|e| resample_err(&self.name, self.rate, e))?;
            self.emit(&out[0]);
        }
        Ok(())
    }

    fn emit(&mut self, out: &[f32]) {
        let expected = self.frames_in * u64::from(RATE) / u64::from(self.rate.max(1));
        let skip = self.skip.min(out.len());
        self.skip -= skip;
        for &s in &out[skip..] {
            if self.frames_out >= expected && self.eof {
                break;
            }
            self.queue.push_back(s);
            self.frames_out += 1;
        }
    }
}

fn resample_err(name: &str, rate: u32, e: impl std::fmt::Display) -> AudioError {
    AudioError::Corrupt {
        source_name: name.to_owned(),
        message: format!("resampling from {rate} Hz: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mono 16-bit PCM WAV file of `frames` frames of a square wave, its header claiming `rate`.
    fn wav(rate: u32, frames: u32) -> Vec<u8> {
        let mut w = Vec::new();
        let data = frames * 2;
        w.extend_from_slice(b"RIFF");
        w.extend_from_slice(&(36 + data).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes()); // PCM
        w.extend_from_slice(&1u16.to_le_bytes()); // mono
        w.extend_from_slice(&rate.to_le_bytes());
        w.extend_from_slice(&rate.wrapping_mul(2).to_le_bytes());
        w.extend_from_slice(&2u16.to_le_bytes());
        w.extend_from_slice(&16u16.to_le_bytes());
        w.extend_from_slice(b"data");
        w.extend_from_slice(&data.to_le_bytes());
        for i in 0..frames {
            let s: i16 = if i % 16 < 8 { 8_000 } else { -8_000 };
            w.extend_from_slice(&s.to_le_bytes());
        }
        w
    }

    fn stream(bytes: Vec<u8>) -> MonoStream {
        let reader = AudioReader::from_bytes(bytes, Some("wav"), "t.wav").unwrap();
        MonoStream::new(reader, "t.wav", true)
    }

    /// The `webm_opus` fuzz target's out-of-memory input (fuzz/, bench/results/fuzz.md): a WAV
    /// header claiming 4,291,501,888 Hz made the resampler allocate over 2 GB.
    #[test]
    fn a_sample_rate_outside_what_reflow_reads_is_refused_before_resampling() {
        for rate in [4_291_501_888, 999, 384_001] {
            let e = stream(wav(rate, 800)).fill(960).unwrap_err();
            assert!(
                matches!(e, AudioError::Unsupported { .. })
                    && e.to_string().contains(&format!("{rate} Hz")),
                "{e}"
            );
        }
        // Rates inside the range are resampled to 48 kHz as before.
        for rate in [8_000, 44_100, 384_000] {
            let mut s = stream(wav(rate, rate / 10));
            s.fill(1 << 20).unwrap();
            assert!(s.ended());
            assert_eq!(s.source_rate(), rate);
            let got = s.queue.len() as i64;
            assert!(
                (got - 4_800).abs() <= 1,
                "{rate} Hz: {got} frames for 100 ms"
            );
        }
    }
}
