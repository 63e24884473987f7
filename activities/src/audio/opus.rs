//! Opus (what Daily's raw tracks contain) through libopus, as a symphonia (0.6) audio decoder.
//!
//! symphonia demuxes WebM/Matroska and hands Opus packets (`A_OPUS`) to whatever decoder the
//! codec registry names; [`codecs`] is symphonia's default registry plus [`OpusDecoder`].
//! libopus always decodes at 48 kHz here. The `OpusHead` pre-skip (the encoder's priming
//! samples, usually 6.5 ms) is dropped, so sample 0 is the first real sample — padding
//! offsets depend on it.

use std::sync::OnceLock;

use symphonia::core::audio::{
    AsGenericAudioBufferRef, AudioBuffer, AudioMut, AudioSpec, Channels, GenericAudioBufferRef,
    Position,
};
use symphonia::core::codecs::CodecInfo;
use symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS;
use symphonia::core::codecs::audio::{
    AudioCodecParameters, AudioDecoder, AudioDecoderOptions, FinalizeResult,
};
use symphonia::core::codecs::registry::{
    CodecRegistry, RegisterableAudioDecoder, SupportedAudioCodec,
};
use symphonia::core::errors::{Error, Result};
use symphonia::core::packet::PacketRef;

/// Rate libopus decodes at.
pub const OPUS_RATE: u32 = 48_000;
/// Largest Opus frame: 120 ms at 48 kHz.
const MAX_FRAME: usize = 5_760;

/// What the registry knows the decoder by.
const SUPPORTED: [SupportedAudioCodec; 1] = [SupportedAudioCodec {
    id: CODEC_ID_OPUS,
    info: CodecInfo {
        short_name: "opus",
        long_name: "Opus (libopus)",
        profiles: &[],
    },
}];

/// symphonia's codecs plus Opus.
pub fn codecs() -> &'static CodecRegistry {
    static REGISTRY: OnceLock<CodecRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut r = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut r);
        r.register_audio_decoder::<OpusDecoder>();
        r
    })
}

/// A libopus decoder behind symphonia's `AudioDecoder` trait.
pub struct OpusDecoder {
    // symphonia wants decoders `Sync`; libopus state is only `Send`. Never contended.
    inner: std::sync::Mutex<opus::Decoder>,
    params: AudioCodecParameters,
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

impl OpusDecoder {
    /// A decoder for the stream `params` describe (mono or stereo).
    pub fn try_new(params: &AudioCodecParameters) -> Result<Self> {
        let channels = params.channels.as_ref().map_or(1, |c| c.count());
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
        let spec_channels = Channels::Positioned(if channels == 1 {
            Position::FRONT_LEFT
        } else {
            Position::FRONT_LEFT | Position::FRONT_RIGHT
        });
        let skip = pre_skip(params.extra_data.as_deref());
        let mut params = params.clone();
        params.sample_rate = Some(OPUS_RATE);
        Ok(OpusDecoder {
            inner: std::sync::Mutex::new(inner),
            params,
            channels,
            pcm: vec![0.0; MAX_FRAME * channels],
            buf: AudioBuffer::new(AudioSpec::new(OPUS_RATE, spec_channels), MAX_FRAME),
            skip,
            pre_skip: skip,
        })
    }
}

impl RegisterableAudioDecoder for OpusDecoder {
    fn try_registry_new(
        params: &AudioCodecParameters,
        _options: &AudioDecoderOptions,
    ) -> Result<Box<dyn AudioDecoder>> {
        Ok(Box::new(Self::try_new(params)?))
    }

    fn supported_codecs() -> &'static [SupportedAudioCodec] {
        &SUPPORTED
    }
}

impl AudioDecoder for OpusDecoder {
    fn reset(&mut self) {
        if let Ok(mut d) = self.inner.lock() {
            let _ = d.reset_state();
        }
        self.skip = self.pre_skip;
    }

    fn codec_info(&self) -> &CodecInfo {
        &SUPPORTED[0].info
    }

    fn codec_params(&self) -> &AudioCodecParameters {
        &self.params
    }

    fn decode_ref(&mut self, packet: &PacketRef<'_>) -> Result<GenericAudioBufferRef<'_>> {
        self.buf.clear();
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| Error::DecodeError("opus: decoder poisoned"))?;
        let frames = inner
            .decode_float(packet.data, &mut self.pcm, false)
            .map_err(|_| Error::DecodeError("opus: invalid packet"))?;
        drop(inner);
        let skipped = self.skip.min(frames);
        self.skip -= skipped;
        self.buf.render_uninit(Some(frames - skipped));
        self.buf.copy_from_slice_interleaved(
            &&self.pcm[skipped * self.channels..frames * self.channels],
        );
        Ok(self.buf.as_generic_audio_buffer_ref())
    }

    fn finalize(&mut self) -> FinalizeResult {
        FinalizeResult::default()
    }

    fn last_decoded(&self) -> GenericAudioBufferRef<'_> {
        self.buf.as_generic_audio_buffer_ref()
    }
}
