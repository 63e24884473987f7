//! Streaming mixdown (pipeline.md §4.5): decode every track, bring it to 48 kHz mono, sum,
//! soft-limit, and encode MP3 (LAME, 48 kHz, stereo, 128 kbps CBR) — block by block, so
//! memory is O(tracks × block), whatever the meeting's length.
//!
//! The mix lasts as long as the longest track; shorter tracks contribute silence. There is no
//! gain normalisation (Reflector's `amix normalize=0`); the limiter keeps the sum from clipping.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

use mp3lame_encoder::{Bitrate, Builder, DualPcm, FlushNoGap, Quality};
use rubato::{FftFixedIn, Resampler};

use super::AudioError;
use super::decode::AudioReader;
use super::limiter::soft_limit;

/// Rate of the mix.
pub const MIX_RATE: u32 = 48_000;
/// Frames mixed per block (100 ms).
pub const BLOCK: usize = 4_800;

/// What a mixdown produced.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MixStats {
    /// Frames of the mix at 48 kHz.
    pub frames: u64,
    /// Largest |sample| of the sum before limiting.
    pub peak_in: f32,
    /// Largest |sample| handed to the encoder.
    pub peak_out: f32,
    /// Bytes of MP3 written.
    pub bytes: u64,
}

impl MixStats {
    /// Length of the mix in ms.
    pub fn duration_ms(&self) -> u64 {
        self.frames * 1000 / u64::from(MIX_RATE)
    }
}

/// One track as a 48 kHz mono sample queue, refilled on demand.
struct MonoStream {
    reader: AudioReader,
    resampler: Option<FftFixedIn<f32>>,
    pending: Vec<f32>,
    queue: VecDeque<f32>,
    /// Resampler output frames still to drop (its delay).
    skip: usize,
    /// Input frames seen and output frames emitted, to cut the resampler's tail exactly.
    frames_in: u64,
    frames_out: u64,
    rate: u32,
    eof: bool,
    name: String,
}

impl MonoStream {
    fn open(path: &Path, name: &str) -> Result<Self, AudioError> {
        let reader = AudioReader::open(path, name)?;
        Ok(MonoStream {
            reader,
            resampler: None,
            pending: Vec::new(),
            queue: VecDeque::with_capacity(BLOCK * 2),
            skip: 0,
            frames_in: 0,
            frames_out: 0,
            rate: 0,
            eof: false,
            name: name.to_owned(),
        })
    }

    /// Pull packets until `want` frames are queued or the track ends.
    fn fill(&mut self, want: usize) -> Result<(), AudioError> {
        while self.queue.len() < want && !self.eof {
            let Some((samples, channels, rate)) = self.reader.next_chunk()? else {
                self.eof = true;
                self.flush_resampler()?;
                break;
            };
            let channels = channels.max(1);
            if self.rate == 0 {
                self.rate = rate;
                if rate != MIX_RATE {
                    let r = FftFixedIn::<f32>::new(rate as usize, MIX_RATE as usize, 1024, 2, 1)
                        .map_err(|e| resample_err(&self.name, rate, e))?;
                    self.skip = r.output_delay();
                    self.resampler = Some(r);
                }
            }
            // Downmix to mono: the mean of the channels.
            let mono = samples
                .chunks(channels)
                .map(|f| f.iter().sum::<f32>() / channels as f32);
            self.frames_in += (samples.len() / channels) as u64;
            if self.resampler.is_none() {
                self.queue.extend(mono);
                continue;
            }
            self.pending.extend(mono);
            loop {
                let r = self.resampler.as_mut().expect("set above");
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
        let expected = self.frames_in * u64::from(MIX_RATE) / u64::from(self.rate.max(1));
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

/// Mix `tracks` (local files, each with the name errors use) into an MP3 at `out`. `progress`
/// is called after every block with the mixed length in ms.
pub fn mix_to_mp3(
    tracks: &[(PathBuf, String)],
    out: &Path,
    mut progress: impl FnMut(u64),
) -> Result<MixStats, AudioError> {
    let output_err = |e: &dyn std::fmt::Display| AudioError::Output {
        message: format!("{}: {e}", out.display()),
    };
    let mut streams = tracks
        .iter()
        .map(|(p, n)| MonoStream::open(p, n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut encoder = Builder::new()
        .ok_or_else(|| output_err(&"LAME could not start"))?
        .with_num_channels(2)
        .and_then(|b| b.with_sample_rate(MIX_RATE))
        .and_then(|b| b.with_brate(Bitrate::Kbps128))
        .and_then(|b| b.with_quality(Quality::Good))
        // The LAME/Xing tag records the encoder delay and padding: decoders that honour it
        // (symphonia's gapless mode, ffmpeg, browsers) start the audio at t = 0 exactly.
        .and_then(|b| b.with_to_write_vbr_tag(true))
        .and_then(|b| b.build())
        .map_err(|e| output_err(&e))?;
    let file = std::fs::File::create(out).map_err(|e| output_err(&e))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut stats = MixStats::default();
    let mut mix = vec![0f32; BLOCK];
    let mut mp3 = Vec::with_capacity(mp3lame_encoder::max_required_buffer_size(BLOCK));
    loop {
        for s in &mut streams {
            s.fill(BLOCK)?;
        }
        let n = streams
            .iter()
            .map(|s| s.queue.len().min(BLOCK))
            .max()
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        mix[..n].fill(0.0);
        for s in &mut streams {
            let take = s.queue.len().min(n);
            for (m, v) in mix[..take].iter_mut().zip(s.queue.drain(..take)) {
                *m += v;
            }
        }
        for m in &mut mix[..n] {
            stats.peak_in = stats.peak_in.max(m.abs());
            *m = soft_limit(*m);
            stats.peak_out = stats.peak_out.max(m.abs());
        }
        mp3.clear();
        encoder
            .encode_to_vec(
                DualPcm {
                    left: &mix[..n],
                    right: &mix[..n],
                },
                &mut mp3,
            )
            .map_err(|e| output_err(&e))?;
        writer.write_all(&mp3).map_err(|e| output_err(&e))?;
        stats.bytes += mp3.len() as u64;
        stats.frames += n as u64;
        progress(stats.duration_ms());
    }
    mp3.clear();
    mp3.reserve(mp3lame_encoder::max_required_buffer_size(BLOCK));
    encoder
        .flush_to_vec::<FlushNoGap>(&mut mp3)
        .map_err(|e| output_err(&e))?;
    writer.write_all(&mp3).map_err(|e| output_err(&e))?;
    stats.bytes += mp3.len() as u64;
    writer.flush().map_err(|e| output_err(&e))?;
    // The tag frame was reserved as the first frame; fill it in now that the totals are known.
    let mut tag = Vec::with_capacity(4096);
    if encoder.lame_tag_encode_to_vec(&mut tag).is_some() {
        use std::io::Seek;
        let file = writer.get_mut();
        file.seek(std::io::SeekFrom::Start(encoder.id3v2_tag_size() as u64))
            .map_err(|e| output_err(&e))?;
        file.write_all(&tag).map_err(|e| output_err(&e))?;
        file.flush().map_err(|e| output_err(&e))?;
    }
    Ok(stats)
}
