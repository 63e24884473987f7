//! Where the embedded models live (Whisper for transcription, the GGUF weights for the LLM):
//! one directory, which `just setup` (scripts/setup-models.sh) fills, checksummed.

use std::path::PathBuf;

/// Where `just setup` installs the embedded models.
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("REFLOW_MODELS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("REFLOW_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/reflow")))
        .unwrap_or_else(|| PathBuf::from(".cache/reflow"));
    cache.join("models")
}
