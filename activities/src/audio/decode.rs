//! Streaming decode of an audio file to interleaved `f32` chunks.
//!
//! The first track with a decodable codec is read packet by packet; each decoded packet is
//! handed to the caller and dropped, so memory does not grow with the file. Packets the
//! decoder rejects are skipped and counted (a damaged frame must not sink a meeting); a file
//! where *every* packet is rejected is corrupt. A file with no audio frames at all decodes to
//! zero samples: silence, not an error.

use std::io::{Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::Path;

use symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS;
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::units::TimeBase;

use super::AudioError;
use super::guard::{self, Checked, Container, Refusal, Source};

/// What a decode saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeStats {
    /// Sample rate of the stream.
    pub sample_rate: u32,
    /// Channels of the stream.
    pub channels: usize,
    /// Frames decoded (samples per channel).
    pub frames: u64,
    /// Packets skipped as undecodable.
    pub skipped_packets: u64,
}

/// One decoded packet: interleaved samples, channel count, sample rate.
pub type Chunk<'a> = (&'a [f32], usize, u32);

/// A pull decoder over one file: each call to [`AudioReader::next_chunk`] decodes the next
/// packet of the first audio track.
pub struct AudioReader {
    name: String,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    /// The last decoded packet, interleaved.
    buffer: Vec<f32>,
    stats: DecodeStats,
    last_error: Option<String>,
    done: bool,
    matroska: bool,
    time_base: Option<TimeBase>,
    pre_skip: u64,
    /// Ticks of the track's Matroska `CodecDelay` that symphonia took off every block's
    /// timestamp, added back: [`AudioReader::packet_time`] is the block's own timestamp.
    delay_ticks: i64,
    last_ts: Option<i64>,
}

/// A [`guard::Refusal`] as the error of the track `source_name`.
fn refused(refusal: Refusal, source_name: &str) -> AudioError {
    let source_name = source_name.to_owned();
    match refusal {
        Refusal::Unsupported(message) => AudioError::Unsupported {
            source_name,
            message,
        },
        Refusal::Corrupt(message) => AudioError::Corrupt {
            source_name,
            message,
        },
        Refusal::Read(message) => AudioError::Read {
            source_name,
            message,
        },
    }
}

/// A seekable source from byte `start` on (the ID3v2 tags [`guard::check`] skipped are not
/// handed to symphonia): position 0 is `start` of the inner source.
struct Window<S> {
    inner: S,
    start: u64,
    len: u64,
}

impl<S: Read + Seek> Window<S> {
    fn new(mut inner: S, start: u64) -> std::io::Result<Self> {
        let end = inner.seek(SeekFrom::End(0))?;
        inner.seek(SeekFrom::Start(start))?;
        Ok(Window {
            inner,
            start,
            len: end.saturating_sub(start),
        })
    }
}

impl<S: Read> Read for Window<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl<S: Seek> Seek for Window<S> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let to = match pos {
            SeekFrom::Start(n) => self.start.checked_add(n),
            SeekFrom::Current(d) => self.inner.stream_position()?.checked_add_signed(d),
            SeekFrom::End(d) => (self.start + self.len).checked_add_signed(d),
        }
        .filter(|&to| to >= self.start)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the audio",
            )
        })?;
        Ok(self.inner.seek(SeekFrom::Start(to))? - self.start)
    }
}

impl<S: Read + Seek + Send + Sync> MediaSource for Window<S> {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len)
    }
}

impl AudioReader {
    /// Open `path`, named `source_name` in errors (the track's object key). Only the container
    /// whose magic starts the file (after any ID3v2 tags, skipped) is probed ([`guard`]).
    pub fn open(path: &Path, source_name: &str) -> Result<Self, AudioError> {
        let file = std::fs::File::open(path).map_err(|e| AudioError::Read {
            source_name: source_name.to_owned(),
            message: e.to_string(),
        })?;
        if file.metadata().map(|m| m.len() == 0).unwrap_or(false) {
            return Err(AudioError::Unsupported {
                source_name: source_name.to_owned(),
                message: "the file is empty".into(),
            });
        }
        let checked = guard::check(&file).map_err(|e| refused(e, source_name))?;
        let delays = codec_delays(&file, checked).map_err(|e| refused(e, source_name))?;
        let source = Window::new(file, checked.start).map_err(|e| AudioError::Read {
            source_name: source_name.to_owned(),
            message: e.to_string(),
        })?;
        let extension = path.extension().and_then(|e| e.to_str());
        Self::from_source(Box::new(source), checked, &delays, extension, source_name)
    }

    /// [`AudioReader::open`] on bytes held in memory, `extension` being the file's (a hint):
    /// what the `webm_opus` fuzz target (`fuzz/`) decodes.
    pub fn from_bytes(
        bytes: Vec<u8>,
        extension: Option<&str>,
        source_name: &str,
    ) -> Result<Self, AudioError> {
        if bytes.is_empty() {
            return Err(AudioError::Unsupported {
                source_name: source_name.to_owned(),
                message: "the file is empty".into(),
            });
        }
        let checked = guard::check(&bytes[..]).map_err(|e| refused(e, source_name))?;
        let delays = codec_delays(&bytes[..], checked).map_err(|e| refused(e, source_name))?;
        let source = Window::new(std::io::Cursor::new(bytes), checked.start).map_err(|e| {
            AudioError::Read {
                source_name: source_name.to_owned(),
                message: e.to_string(),
            }
        })?;
        Self::from_source(Box::new(source), checked, &delays, extension, source_name)
    }

    fn from_source(
        source: Box<dyn MediaSource>,
        checked: Checked,
        codec_delays: &[(u64, u64)],
        extension: Option<&str>,
        source_name: &str,
    ) -> Result<Self, AudioError> {
        let unsupported = |message: String| AudioError::Unsupported {
            source_name: source_name.to_owned(),
            message,
        };
        let mss = MediaSourceStream::new(source, Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = extension {
            hint.with_extension(ext);
        }
        // symphonia's readers panic on some damaged headers: that is bad input, not a crash.
        let format = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            guard::probe(checked.container).probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
        }))
        .map_err(|_| unsupported("the container is damaged (its header cannot be read)".into()))?
        .map_err(|e| unsupported(e.to_string()))?;
        let track = format
            .first_track_known_codec(TrackType::Audio)
            .ok_or_else(|| unsupported("no audio track".into()))?;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| unsupported("no audio track".into()))?;
        // Gapless (the decoder trims what the container marks as priming or padding).
        let decoder = super::opus::codecs()
            .make_audio_decoder(params, &AudioDecoderOptions::default())
            .map_err(|e| unsupported(e.to_string()))?;
        let stats = DecodeStats {
            sample_rate: params.sample_rate.unwrap_or(0),
            channels: params.channels.as_ref().map_or(0, |c| c.count()),
            ..Default::default()
        };
        let pre_skip = match params.codec {
            CODEC_ID_OPUS => super::opus::pre_skip(params.extra_data.as_deref()) as u64,
            _ => 0,
        };
        let time_base = track.time_base;
        // symphonia-format-mkv subtracts `CodecDelay` (ns) in whole ticks, rounded down.
        let delay_ticks = codec_delays
            .iter()
            .find(|&&(number, _)| number == u64::from(track.id))
            .zip(time_base)
            .map_or(0, |(&(_, ns), tb)| {
                let tick_ns = 1_000_000_000 * u64::from(tb.numer.get()) / u64::from(tb.denom.get());
                i64::try_from(ns / tick_ns.max(1)).unwrap_or(i64::MAX)
            });
        Ok(AudioReader {
            name: source_name.to_owned(),
            track_id: track.id,
            matroska: checked.container == Container::Matroska,
            time_base,
            pre_skip,
            delay_ticks,
            last_ts: None,
            format,
            decoder,
            buffer: Vec::new(),
            stats,
            last_error: None,
            done: false,
        })
    }

    /// What was decoded so far (rate and channels are known after opening).
    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    /// Whether the file is Matroska/WebM, whose block timestamps are absolute (Daily's raw
    /// tracks: the first block's timestamp is the track's start in the recording).
    pub fn is_matroska(&self) -> bool {
        self.matroska
    }

    /// Priming frames the decoder drops at the start (Opus pre-skip; 0 for other codecs).
    pub fn pre_skip(&self) -> u64 {
        self.pre_skip
    }

    /// The container timestamp, in seconds, of the packet whose samples
    /// [`AudioReader::next_chunk`] returned last (`None` before the first, or without a time
    /// base).
    pub fn packet_time(&self) -> Option<f64> {
        let tb = self.time_base?;
        let ts = self.last_ts?;
        Some(ts as f64 * f64::from(tb.numer.get()) / f64::from(tb.denom.get()))
    }

    /// The next packet's interleaved samples with their channel count and rate; `None` at
    /// the end of the stream.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk<'_>>, AudioError> {
        while !self.done {
            let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.format.next_packet()
            }))
            .unwrap_or(Err(SymphoniaError::DecodeError(
                "the container is damaged (the demuxer gave up)",
            )));
            let packet = match next {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(SymphoniaError::IoError(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    break;
                }
                Err(SymphoniaError::ResetRequired) => break,
                Err(e) => {
                    // A truncated or damaged container: keep what decoded so far, if anything.
                    self.last_error = Some(e.to_string());
                    break;
                }
            };
            if packet.track_id != self.track_id {
                continue;
            }
            match self.decoder.decode(&packet) {
                Ok(decoded) => {
                    let frames = decoded.frames();
                    if frames == 0 {
                        continue;
                    }
                    let (rate, channels) =
                        (decoded.spec().rate(), decoded.spec().channels().count());
                    decoded.copy_to_vec_interleaved(&mut self.buffer);
                    self.stats.sample_rate = rate;
                    self.stats.channels = channels;
                    self.stats.frames += frames as u64;
                    self.last_ts = Some(packet.pts.get().saturating_add(self.delay_ticks));
                    return Ok(Some((&self.buffer, channels, rate)));
                }
                Err(SymphoniaError::DecodeError(e)) => {
                    self.stats.skipped_packets += 1;
                    self.last_error = Some(e.to_owned());
                }
                Err(e) => {
                    return Err(AudioError::Corrupt {
                        source_name: self.name.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
        self.done = true;
        if self.stats.frames == 0
            && let Some(message) = self.last_error.take()
        {
            return Err(AudioError::Corrupt {
                source_name: self.name.clone(),
                message,
            });
        }
        Ok(None)
    }
}

/// The Matroska tracks' `CodecDelay`s, (track number, ns); none for other containers.
fn codec_delays<S: Source + ?Sized>(src: &S, checked: Checked) -> Result<Vec<(u64, u64)>, Refusal> {
    match checked.container {
        Container::Matroska => guard::matroska::codec_delays(src, checked.start),
        _ => Ok(Vec::new()),
    }
}

/// What a file's container announces without decoding: (frames, channels, sample rate).
fn announced(path: &Path) -> Option<(u64, u64, u32)> {
    let reader = AudioReader::open(path, "probe").ok()?;
    let track = reader
        .format
        .tracks()
        .iter()
        .find(|t| t.id == reader.track_id)?;
    let p = track.codec_params.as_ref()?.audio()?;
    Some((
        track.num_frames?,
        p.channels.as_ref()?.count() as u64,
        p.sample_rate?,
    ))
}

/// The number of interleaved samples a file's container announces (frames × channels).
pub fn announced_samples(path: &Path) -> Option<u64> {
    announced(path).map(|(frames, channels, _)| frames * channels)
}

/// The duration a file's container announces, in ms.
pub fn announced_ms(path: &Path) -> Option<u64> {
    announced(path).map(|(frames, _, rate)| frames * 1000 / u64::from(rate))
}

/// Decode `path` (named `source_name` in errors), calling `on_chunk(samples, channels, rate)`
/// with interleaved samples for every decoded packet.
pub fn decode_file(
    path: &Path,
    source_name: &str,
    mut on_chunk: impl FnMut(&[f32], usize, u32),
) -> Result<DecodeStats, AudioError> {
    decode_file_while(path, source_name, |samples, channels, rate| {
        on_chunk(samples, channels, rate);
        ControlFlow::Continue(())
    })
}

/// [`decode_file`] whose `on_chunk` may stop the decoding (`Break`: [`AudioError::Stopped`]).
pub fn decode_file_while(
    path: &Path,
    source_name: &str,
    mut on_chunk: impl FnMut(&[f32], usize, u32) -> ControlFlow<()>,
) -> Result<DecodeStats, AudioError> {
    let mut reader = AudioReader::open(path, source_name)?;
    while let Some((samples, channels, rate)) = reader.next_chunk()? {
        if on_chunk(samples, channels, rate).is_break() {
            return Err(AudioError::Stopped);
        }
    }
    Ok(reader.stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// symphonia 0.6 takes a WebM track's `CodecDelay` off every block timestamp; the packet
    /// time is the block's own (the padding offset of docs/contracts/pipeline.md §4.3.1).
    #[test]
    fn a_webm_packet_time_is_its_block_timestamp_codec_delay_included() {
        let dir = tempfile::tempdir().unwrap();
        // ffmpeg writes CodecDelay 6.5 ms (the Opus pre-skip) and, with the offset, the first
        // block at 2493 ms; without it, at 0 (where symphonia says -6 ms).
        for (offset, first_block) in [("2.5", 2.493), ("0", 0.0)] {
            let path = dir.path().join(format!("t{offset}.webm"));
            let out = std::process::Command::new("ffmpeg")
                .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
                .arg("sine=frequency=440:duration=1:sample_rate=48000")
                .args(["-c:a", "libopus", "-output_ts_offset", offset])
                .arg(&path)
                .output()
                .expect("ffmpeg is installed (just setup-test)");
            assert!(out.status.success());
            let file = std::fs::File::open(&path).unwrap();
            assert_eq!(
                guard::matroska::codec_delays(&file, 0).unwrap(),
                vec![(1, 6_500_000)]
            );
            let mut reader = AudioReader::open(&path, "t.webm").unwrap();
            assert!(reader.next_chunk().unwrap().is_some());
            let t = reader.packet_time().unwrap();
            assert!((t - first_block).abs() < 1e-9, "{offset}: {t}");
        }
    }
}
