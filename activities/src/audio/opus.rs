//! Opus (what Daily's raw tracks contain) through libopus, as a symphonia decoder.
//!
//! symphonia demuxes WebM/Matroska and hands Opus packets (`A_OPUS`) to whatever decoder the
//! codec registry names; [`codecs`] is symphonia's default registry plus [`OpusDecoder`].
//! libopus always decodes at 48 kHz here. The `OpusHead` pre-skip (the encoder's priming
//! samples, usually 6.5 ms) is dropped, so sample 0 is the first real sample — padding
//! offsets depend on it.

use std::sync::OnceLock;

use symphonia::core::audio::{
    AsAudioBufferRef, AudioBuffer, AudioBufferRef, Channels, Signal, SignalSpec,
};
use symphonia::core::codecs::{
    CODEC_TYPE_OPUS, CodecDescriptor, CodecParameters, CodecRegistry, Decoder, DecoderOptions,
    FinalizeResult,
};
use symphonia::core::errors::{Error, Result};
use symphonia::core::formats::Packet;
use symphonia::core::support_codec;

/// Rate libopus decodes at.
pub const OPUS_RATE: u32 = 48_000;
/// Largest Opus frame: 120 ms at 48 kHz.
const MAX_FRAME: usize = 5_760;

/// symphonia's codecs plus Opus.
pub fn codecs() -> &'static CodecRegistry {
    static REGISTRY: OnceLock<CodecRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut r = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut r);
        r.register_all::<OpusDecoder>();
        r
    })
}

/// A libopus decoder behind symphonia's `Decoder` trait.
pub struct OpusDecoder {
    // symphonia wants decoders `Sync`; libopus state is only `Send`. Never contended.
    inner: std::sync::Mutex<opus::Decoder>,
    params: CodecParameters,
    channels: usize,
    pcm: Vec<f32>,
    buf: AudioBuffer<f32>,
    skip: usize,
    pre_skip: usize,
}

/// The pre-skip of an `OpusHead` (RFC 7845 §5.1), if the header is one.
pub(crate) fn pre_skip(extra: Option<&[u8]>) -> usize {
    match extra {
        Some(h) if h.len() >= 12 && &h[..8] == b"OpusHead" => {
            usize::from(u16::from_le_bytes([h[10], h[11]]))
        }
        _ => 0,
    }
}

impl Decoder for OpusDecoder {
    fn try_new(params: &CodecParameters, _options: &DecoderOptions) -> Result<Self> {
        let channels = params.channels.map_or(1, |c| c.count());
        let layout = match channels {
            1 => opus::Channels::Mono,
            2 => opus::Channels::Stereo,
            n => {
                return Err(Error::Unsupported(if n == 0 {
                    "opus: no channels"
                } else {
                    "opus: more than 2 channels"
                }));
            }
        };
        let inner = opus::Decoder::new(OPUS_RATE, layout)
            .map_err(|_| Error::Unsupported("opus: libopus refused the stream"))?;
        let spec_channels = if channels == 1 {
            Channels::FRONT_LEFT
        } else {
            Channels::FRONT_LEFT | Channels::FRONT_RIGHT
        };
        let skip = pre_skip(params.extra_data.as_deref());
        let mut params = params.clone();
        params.sample_rate = Some(OPUS_RATE);
        Ok(OpusDecoder {
            inner: std::sync::Mutex::new(inner),
            params,
            channels,
            pcm: vec![0.0; MAX_FRAME * channels],
            buf: AudioBuffer::new(MAX_FRAME as u64, SignalSpec::new(OPUS_RATE, spec_channels)),
            skip,
            pre_skip: skip,
        })
    }

    fn supported_codecs() -> &'static [CodecDescriptor] {
        &[support_codec!(CODEC_TYPE_OPUS, "opus", "Opus (libopus)")]
    }

    fn reset(&mut self) {
        if let Ok(mut d) = self.inner.lock() {
            let _ = d.reset_state();
        }
        self.skip = self.pre_skip;
    }

    fn codec_params(&self) -> &CodecParameters {
        &self.params
    }

    fn decode(&mut self, packet: &Packet) -> Result<AudioBufferRef<'_>> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| Error::DecodeError("opus: decoder poisoned"))?;
        let frames = inner
            .decode_float(&packet.data, &mut self.pcm, false)
            .map_err(|_| Error::DecodeError("opus: invalid packet"))?;
        drop(inner);
        let skipped = self.skip.min(frames);
        self.skip -= skipped;
        let keep = frames - skipped;
        self.buf.clear();
        self.buf.render_reserved(Some(keep));
        for c in 0..self.channels {
            let out = self.buf.chan_mut(c);
            for (i, s) in out.iter_mut().enumerate() {
                *s = self.pcm[(skipped + i) * self.channels + c];
            }
        }
        Ok(self.buf.as_audio_buffer_ref())
    }

    fn finalize(&mut self) -> FinalizeResult {
        FinalizeResult::default()
    }

    fn last_decoded(&self) -> AudioBufferRef<'_> {
        self.buf.as_audio_buffer_ref()
    }
}
