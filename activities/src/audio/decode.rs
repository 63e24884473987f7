//! Streaming decode of an audio file to interleaved `f32` chunks.
//!
//! The first track with a decodable codec is read packet by packet; each decoded packet is
//! handed to the caller and dropped, so memory does not grow with the file. Packets the
//! decoder rejects are skipped and counted (a damaged frame must not sink a meeting); a file
//! where *every* packet is rejected is corrupt. A file with no audio frames at all decodes to
//! zero samples: silence, not an error.

use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::AudioError;

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

/// Decode `path` (named `source_name` in errors), calling `on_chunk(samples, channels, rate)`
/// with interleaved samples for every decoded packet.
pub fn decode_file(
    path: &Path,
    source_name: &str,
    mut on_chunk: impl FnMut(&[f32], usize, u32),
) -> Result<DecodeStats, AudioError> {
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
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions {
                enable_gapless: true,
                ..Default::default()
            },
            &MetadataOptions::default(),
        )
        .map_err(|e| AudioError::Unsupported {
            source_name: source_name.to_owned(),
            message: e.to_string(),
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::Unsupported {
            source_name: source_name.to_owned(),
            message: "no audio track".into(),
        })?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| AudioError::Unsupported {
            source_name: source_name.to_owned(),
            message: e.to_string(),
        })?;
    let mut stats = DecodeStats {
        sample_rate: track.codec_params.sample_rate.unwrap_or(0),
        channels: track.codec_params.channels.map_or(0, |c| c.count()),
        ..Default::default()
    };
    let mut buffer: Option<SampleBuffer<f32>> = None;
    let mut last_error = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => {
                // A truncated or damaged container: keep what decoded so far if anything did.
                last_error = Some(e.to_string());
                break;
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(decoded) => {
                let spec = *decoded.spec();
                let frames = decoded.frames();
                if frames == 0 {
                    continue;
                }
                let buf = match &mut buffer {
                    Some(b) if b.capacity() >= decoded.capacity() * spec.channels.count() => b,
                    _ => buffer.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
                };
                buf.copy_interleaved_ref(decoded);
                stats.sample_rate = spec.rate;
                stats.channels = spec.channels.count();
                stats.frames += frames as u64;
                on_chunk(buf.samples(), stats.channels, stats.sample_rate);
            }
            Err(SymphoniaError::DecodeError(e)) => {
                stats.skipped_packets += 1;
                last_error = Some(e.to_owned());
            }
            Err(e) => {
                return Err(AudioError::Corrupt {
                    source_name: source_name.to_owned(),
                    message: e.to_string(),
                });
            }
        }
    }
    if stats.frames == 0
        && let Some(message) = last_error
    {
        return Err(AudioError::Corrupt {
            source_name: source_name.to_owned(),
            message,
        });
    }
    Ok(stats)
}
