//! Where the embedded models live (Whisper for transcription, the GGUF weights for the LLM):
//! one directory, which `just setup` (scripts/setup-models.sh) fills, checksummed.
//!
//! The worker resolves it from its settings ([`dir_in`], `REFLOW_MODELS_DIR`, else
//! `$REFLOW_CACHE_DIR/models`, else `~/.cache/reflow/models` — the variables the setup script
//! reads too); [`dir`] is the same rule over the process environment, for tools and tests.

use std::path::PathBuf;

use crate::config::Vars;

/// Where `just setup` installs the embedded models, by the settings in `vars`.
pub fn dir_in(vars: Vars<'_>) -> PathBuf {
    if let Some(dir) = crate::config::non_empty(vars, "REFLOW_MODELS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = crate::config::non_empty(vars, "REFLOW_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| vars("HOME").map(|h| PathBuf::from(h).join(".cache/reflow")))
        .unwrap_or_else(|| PathBuf::from(".cache/reflow"));
    cache.join("models")
}

/// [`dir_in`] over the process environment (benchmarks, tests, tools).
pub fn dir() -> PathBuf {
    dir_in(&|k| std::env::var(k).ok())
}
