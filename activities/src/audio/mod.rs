//! Audio: decoding (symphonia), and what the pipeline computes from decoded audio.
//!
//! [`decode`] streams any supported file (WAV, FLAC, MP3, OGG/Vorbis, WebM/Matroska with
//! Vorbis, FLAC or Opus — the last through libopus, [`opus`]) as
//! interleaved `f32` chunks, so memory stays constant whatever the length. [`waveform`]
//! computes the 255-peak waveform of docs/contracts/pipeline.md §4.6. Decoding is CPU work:
//! activities run it on a blocking thread.

pub mod activities;
pub mod decode;
pub mod guard;
pub mod limiter;
pub mod mix;
pub mod mono;
pub mod opus;
pub mod pad;
pub mod waveform;

/// Why audio could not be decoded: a problem of the input, never retried.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file could not be opened or read.
    #[error("{source_name}: cannot read: {message}")]
    Read {
        /// The track key or file.
        source_name: String,
        /// What happened.
        message: String,
    },
    /// Not audio, or a format/codec this build does not decode.
    #[error("{source_name}: not a supported audio file: {message}")]
    Unsupported {
        /// The track key or file.
        source_name: String,
        /// What the probe said.
        message: String,
    },
    /// The result could not be encoded or written (local disk): retried.
    #[error("writing {message}")]
    Output {
        /// What failed.
        message: String,
    },
    /// The stream is corrupt beyond what decoding can skip.
    #[error("{source_name}: corrupt audio: {message}")]
    Corrupt {
        /// The track key or file.
        source_name: String,
        /// What the decoder said.
        message: String,
    },
    /// The step was cancelled while the audio was being processed.
    #[error("stopped: the step was cancelled")]
    Stopped,
}

impl From<AudioError> for crate::ActivityFailure {
    fn from(e: AudioError) -> Self {
        match e {
            AudioError::Stopped => crate::ActivityFailure::Cancelled,
            // A file that cannot be read locally is an I/O fault a retry may fix.
            AudioError::Read { .. } | AudioError::Output { .. } => {
                crate::ActivityFailure::Transient(e.to_string())
            }
            _ => crate::ActivityFailure::AudioDecode(e.to_string()),
        }
    }
}
