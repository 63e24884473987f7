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

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, Decoder, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::units::TimeBase;

use super::AudioError;
use super::guard::{self, Container, Refusal};

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
    decoder: Box<dyn Decoder>,
    track_id: u32,
    buffer: Option<SampleBuffer<f32>>,
    stats: DecodeStats,
    last_error: Option<String>,
    done: bool,
    matroska: bool,
    time_base: Option<TimeBase>,
    pre_skip: u64,
    last_ts: Option<u64>,
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
    /// Open `path`, named `source_name` in errors (the track's object key). The file's header
    /// is checked first ([`guard`]): only the container at its start is probed, and a length
    /// there that symphonia would trust without room for it refuses the file.
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
        let source = Window::new(file, checked.start).map_err(|e| AudioError::Read {
            source_name: source_name.to_owned(),
            message: e.to_string(),
        })?;
        let extension = path.extension().and_then(|e| e.to_str());
        Self::from_source(Box::new(source), checked.container, extension, source_name)
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
        let source = Window::new(std::io::Cursor::new(bytes), checked.start).map_err(|e| {
            AudioError::Read {
                source_name: source_name.to_owned(),
                message: e.to_string(),
            }
        })?;
        Self::from_source(Box::new(source), checked.container, extension, source_name)
    }

    fn from_source(
        source: Box<dyn MediaSource>,
        container: Container,
        extension: Option<&str>,
        source_name: &str,
    ) -> Result<Self, AudioError> {
        let mss = MediaSourceStream::new(source, Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = extension {
            hint.with_extension(ext);
        }
        // symphonia's MKV reader panics on some damaged headers (a truncated EBML header):
        // that is bad input, not a crash.
        let probed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            guard::probe(container).format(
                &hint,
                mss,
                &FormatOptions {
                    enable_gapless: true,
                    ..Default::default()
                },
                &MetadataOptions::default(),
            )
        }))
        .map_err(|_| AudioError::Unsupported {
            source_name: source_name.to_owned(),
            message: "the container is damaged (its header cannot be read)".into(),
        })?
        .map_err(|e| AudioError::Unsupported {
            source_name: source_name.to_owned(),
            message: e.to_string(),
        })?;
        let format = probed.format;
        let track = format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or_else(|| AudioError::Unsupported {
                source_name: source_name.to_owned(),
                message: "no audio track".into(),
            })?;
        let decoder = super::opus::codecs()
            .make(&track.codec_params, &DecoderOptions::default())
            .map_err(|e| AudioError::Unsupported {
                source_name: source_name.to_owned(),
                message: e.to_string(),
            })?;
        let stats = DecodeStats {
            sample_rate: track.codec_params.sample_rate.unwrap_or(0),
            channels: track.codec_params.channels.map_or(0, |c| c.count()),
            ..Default::default()
        };
        let pre_skip = match track.codec_params.codec {
            symphonia::core::codecs::CODEC_TYPE_OPUS => {
                super::opus::pre_skip(track.codec_params.extra_data.as_deref()) as u64
            }
            _ => 0,
        };
        Ok(AudioReader {
            name: source_name.to_owned(),
            track_id: track.id,
            matroska: container == Container::Matroska,
            time_base: track.codec_params.time_base,
            pre_skip,
            last_ts: None,
            format,
            decoder,
            buffer: None,
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
        Some(ts as f64 * f64::from(tb.numer) / f64::from(tb.denom))
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
                Ok(p) => p,
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
            if packet.track_id() != self.track_id {
                continue;
            }
            match self.decoder.decode(&packet) {
                Ok(decoded) => {
                    let spec = *decoded.spec();
                    let frames = decoded.frames();
                    if frames == 0 {
                        continue;
                    }
                    let needed = decoded.capacity() * spec.channels.count();
                    if self.buffer.as_ref().is_none_or(|b| b.capacity() < needed) {
                        self.buffer = Some(SampleBuffer::new(decoded.capacity() as u64, spec));
                    }
                    let buf = self.buffer.as_mut().expect("just set");
                    buf.copy_interleaved_ref(decoded);
                    self.stats.sample_rate = spec.rate;
                    self.stats.channels = spec.channels.count();
                    self.stats.frames += frames as u64;
                    self.last_ts = Some(packet.ts());
                    let samples = self.buffer.as_ref().expect("just set").samples();
                    return Ok(Some((samples, self.stats.channels, self.stats.sample_rate)));
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

/// What a file's container announces without decoding: (frames, channels, sample rate).
fn announced(path: &Path) -> Option<(u64, u64, u32)> {
    let reader = AudioReader::open(path, "probe").ok()?;
    let track = reader
        .format
        .tracks()
        .iter()
        .find(|t| t.id == reader.track_id)?;
    let p = &track.codec_params;
    Some((p.n_frames?, p.channels?.count() as u64, p.sample_rate?))
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
