//! Padding of one participant's track to recording t = 0 (docs/contracts/pipeline.md §4.3.1).
//!
//! 1. Offset, first source that works: the timestamp of the first audio block of a WebM file
//!    (Cluster timestamp + block offset — symphonia's packet timestamp, scaled by the
//!    TimestampScale); else the Daily filename's `(track_start − recording_start) / 1000`;
//!    else 0.
//! 2. Decode (Opus through libopus), downmix to mono, resample to 48 kHz ([`MonoStream`]).
//! 3. Prepend `floor(offset × 1000)` ms of silence.
//! 4. Fill gaps from the packet timestamps (Daily skips frames while a participant is muted).
//! 5. Encode Opus, 48 kHz mono, 64 kbps, 20 ms frames, complexity [`PADDED_COMPLEXITY`], into
//!    WebM (libwebm's muxer, with cues).
//!
//! Everything streams: one Opus frame and one decoded packet are in memory at a time.

use std::io::BufWriter;
use std::ops::ControlFlow;
use std::path::Path;

use webm::mux::{AudioCodecId, Segment, SegmentBuilder, SegmentMode, Writer};

use super::AudioError;
use super::mono::{GapStats, MonoStream, RATE};

/// Bit rate of padded tracks (mono speech).
pub const PADDED_BITRATE: i32 = 64_000;
/// libopus encoder complexity of padded tracks (0–10; libopus defaults to 10). Measured on
/// this project's 2-core machine (8 speech tracks of 69 s): complexity 5 pads 25–30 % faster
/// than 10, and the embedded Whisper models' WER on the padded meeting minute of
/// `just bench-asr` stayed within a word or two of complexity 10's (that benchmark transcribes
/// the padded track next to its source, so the choice stays checked).
pub const PADDED_COMPLEXITY: i32 = 5;
/// Frames per Opus packet: 20 ms at 48 kHz.
const FRAME: usize = 960;
/// Largest Opus packet we accept from the encoder.
const MAX_PACKET: usize = 4_000;

/// Where a track's offset came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OffsetSource {
    /// The first audio block's timestamp in the WebM file.
    Container,
    /// The Daily filename's timestamps.
    Filename,
    /// Declared by a local source (`recording.json`): wins over the container.
    Declared,
    /// Neither was available: the track starts with the recording.
    None,
}

/// What padding produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PadStats {
    /// Silence prepended, in ms (`floor(offset × 1000)`).
    pub offset_ms: u64,
    /// Where the offset came from.
    pub offset_source: OffsetSource,
    /// Frames of the padded track at 48 kHz (offset included).
    pub frames: u64,
    /// Gap filling.
    pub gaps: GapStats,
    /// Sample rate of the source.
    pub source_rate: u32,
}

impl PadStats {
    /// Length of the padded track in ms.
    pub fn duration_ms(&self) -> u64 {
        self.frames * 1000 / u64::from(RATE)
    }
}

/// Pad `input` (named `source_name` in errors) into an Opus/WebM file at `out`.
/// `filename_offset_s` is the Daily filename's offset, used when the container has none.
/// `progress` gets the decoded source length in ms after every block; `Break` stops the work
/// ([`AudioError::Stopped`]).
pub fn pad_to_webm(
    input: &Path,
    source_name: &str,
    filename_offset_s: Option<f64>,
    out: &Path,
    progress: impl FnMut(u64) -> ControlFlow<()>,
) -> Result<PadStats, AudioError> {
    pad_to_webm_at(input, source_name, None, filename_offset_s, out, progress)
}

/// [`pad_to_webm`] with an offset a local source declares (`recording.json`), which wins
/// over the container's: a file exported from an editor starts at 0 whatever the meeting.
pub fn pad_to_webm_at(
    input: &Path,
    source_name: &str,
    declared_offset_s: Option<f64>,
    filename_offset_s: Option<f64>,
    out: &Path,
    mut progress: impl FnMut(u64) -> ControlFlow<()>,
) -> Result<PadStats, AudioError> {
    let mut stream = MonoStream::open(input, source_name, true)?;
    // Decode the first packet to learn where the track starts.
    stream.fill(1)?;
    let container = stream
        .first_packet_time()
        .filter(|t| stream.reader().is_matroska() && t.is_finite() && *t >= 0.0);
    let declared = declared_offset_s.filter(|t| t.is_finite() && *t >= 0.0);
    let (offset_s, offset_source) = match (container, filename_offset_s) {
        _ if declared.is_some() => (declared.unwrap_or_default(), OffsetSource::Declared),
        (Some(t), _) => (t, OffsetSource::Container),
        (None, Some(t)) if t.is_finite() && t >= 0.0 => (t, OffsetSource::Filename),
        _ => (0.0, OffsetSource::None),
    };
    if offset_s > super::mono::MAX_TRACK_S {
        return Err(AudioError::Corrupt {
            source_name: source_name.to_owned(),
            message: format!(
                "the track would start {offset_s:.0} s ({:?}) after the recording, over {} h \
                 (corrupt timestamps)",
                offset_source,
                super::mono::MAX_TRACK_S / 3600.0
            ),
        });
    }
    let offset_ms = (offset_s * 1000.0).floor() as u64;

    let mut encoder = OpusWebm::create(out)?;
    let mut frame = [0f32; FRAME];
    let mut filled = 0;
    // The prepended silence, then the track.
    let mut silence = offset_ms * u64::from(RATE) / 1000;
    let mut frames = silence;
    loop {
        while filled < FRAME && silence > 0 {
            let n = (FRAME - filled).min(silence as usize);
            frame[filled..filled + n].fill(0.0);
            filled += n;
            silence -= n as u64;
        }
        if filled < FRAME {
            stream.fill(FRAME - filled)?;
            let n = stream.queue.len().min(FRAME - filled);
            for (dst, src) in frame[filled..filled + n]
                .iter_mut()
                .zip(stream.queue.drain(..n))
            {
                *dst = src;
            }
            filled += n;
            frames += n as u64;
        }
        if filled < FRAME {
            break; // the track ended
        }
        encoder.encode(&frame)?;
        filled = 0;
        if encoder.packets % 50 == 0
            && progress(stream.source_frames() * 1000 / u64::from(stream.source_rate().max(1)))
                .is_break()
        {
            return Err(AudioError::Stopped);
        }
    }
    encoder.finish(&mut frame, filled, frames)?;
    // The last report cannot stop anything: the work is done.
    let _ = progress(stream.source_frames() * 1000 / u64::from(stream.source_rate().max(1)));
    Ok(PadStats {
        offset_ms,
        offset_source,
        frames,
        gaps: stream.gaps(),
        source_rate: stream.source_rate(),
    })
}

/// An Opus encoder feeding a WebM muxer.
struct OpusWebm {
    encoder: opus::Encoder,
    segment: Segment<BufWriter<std::fs::File>>,
    track: webm::mux::AudioTrack,
    packet: Vec<u8>,
    packets: u64,
    lookahead: usize,
    path: String,
}

impl OpusWebm {
    fn create(out: &Path) -> Result<Self, AudioError> {
        let path = out.display().to_string();
        let err = |what: &str, e: &dyn std::fmt::Display| AudioError::Output {
            message: format!("{path}: {what}: {e}"),
        };
        let mut encoder = opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Audio)
            .map_err(|e| err("opus encoder", &e))?;
        encoder
            .set_bitrate(opus::Bitrate::Bits(PADDED_BITRATE))
            .map_err(|e| err("opus bitrate", &e))?;
        encoder
            .set_complexity(PADDED_COMPLEXITY)
            .map_err(|e| err("opus complexity", &e))?;
        let lookahead = encoder
            .get_lookahead()
            .map_err(|e| err("opus lookahead", &e))?
            .max(0) as usize;
        let file = std::fs::File::create(out).map_err(|e| err("create", &e))?;
        let writer = Writer::new(BufWriter::with_capacity(1 << 16, file));
        let builder = SegmentBuilder::new(writer)
            .and_then(|b| b.set_mode(SegmentMode::File))
            .and_then(|b| b.set_writing_app("reflow"))
            .map_err(|e| err("webm segment", &e))?;
        let (builder, track) = builder
            .add_audio_track(RATE, 1, AudioCodecId::Opus, None)
            .map_err(|e| err("webm track", &e))?;
        let segment = builder
            .set_codec_private(track, &opus_head(lookahead as u16))
            .map_err(|e| err("webm codec private", &e))?
            .build();
        Ok(OpusWebm {
            encoder,
            segment,
            track,
            packet: vec![0; MAX_PACKET],
            packets: 0,
            lookahead,
            path,
        })
    }

    fn encode(&mut self, frame: &[f32; FRAME]) -> Result<(), AudioError> {
        let n = self
            .encoder
            .encode_float(frame, &mut self.packet)
            .map_err(|e| AudioError::Output {
                message: format!("{}: opus encode: {e}", self.path),
            })?;
        // 20 ms per packet, in ns.
        let ts = self.packets * 20_000_000;
        self.segment
            .add_frame(self.track, &self.packet[..n], ts, true)
            .map_err(|e| AudioError::Output {
                message: format!("{}: webm frame: {e}", self.path),
            })?;
        self.packets += 1;
        Ok(())
    }

    /// Encode the last partial frame plus the encoder's lookahead (so the final real samples
    /// come out), then write the cues and the duration.
    fn finish(
        mut self,
        frame: &mut [f32; FRAME],
        filled: usize,
        frames: u64,
    ) -> Result<(), AudioError> {
        let mut tail = filled + self.lookahead;
        frame[filled..].fill(0.0);
        loop {
            if tail == 0 && self.packets > 0 {
                break;
            }
            self.encode(frame)?;
            frame.fill(0.0);
            tail = tail.saturating_sub(FRAME);
        }
        let duration_ms = frames * 1000 / u64::from(RATE);
        let path = self.path.clone();
        let writer = self
            .segment
            .finalize(Some(duration_ms))
            .map_err(|_| AudioError::Output {
                message: format!("{path}: webm finalize failed"),
            })?;
        let mut file = writer.into_inner();
        std::io::Write::flush(&mut file).map_err(|e| AudioError::Output {
            message: format!("{path}: {e}"),
        })?;
        Ok(())
    }
}

/// The `OpusHead` identification header (RFC 7845 §5.1): mono, 48 kHz, no gain, family 0.
fn opus_head(pre_skip: u16) -> [u8; 19] {
    let mut h = [0u8; 19];
    h[..8].copy_from_slice(b"OpusHead");
    h[8] = 1; // version
    h[9] = 1; // channels
    h[10..12].copy_from_slice(&pre_skip.to_le_bytes());
    h[12..16].copy_from_slice(&RATE.to_le_bytes());
    // output gain 0, mapping family 0
    h
}
