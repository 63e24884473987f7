//! Which transcription backend runs, from the environment: the embedded Whisper model (its
//! directory, threads and voice-activity detector) or an HTTP service (`gpu-url`, `openai`),
//! and what about it goes into the checkpoint hash.

use std::path::PathBuf;
use std::time::Duration;

use super::embedded::EmbeddedConfig;
use super::remote::{Api, RemoteAsr};
use super::vad;
use crate::error::ActivityFailure;

/// Version of reflow's Whisper front end; part of the checkpoint hash.
const EMBEDDED_FRONT_END: &str = "reflow-whisper-1";

/// The configured backend.
#[derive(Debug, Clone)]
pub enum AsrConfig {
    /// In-process Whisper.
    Embedded(EmbeddedConfig),
    /// An HTTP service.
    Remote(RemoteAsr),
}

impl AsrConfig {
    /// From the environment: `TRANSCRIPT_BACKEND` (`embedded` | `gpu-url` | `openai`),
    /// `TRANSCRIPT_URL`, `TRANSCRIPT_MODAL_API_KEY` (or `TRANSCRIPT_API_KEY`),
    /// `TRANSCRIPT_MODEL`, `TRANSCRIPT_FILE_TIMEOUT` (seconds); for `embedded`,
    /// `TRANSCRIPT_MODEL` is `base` (default), `tiny.en` or a model directory, found under
    /// `REFLOW_MODELS_DIR` (default `$REFLOW_CACHE_DIR/models`, `~/.cache/reflow/models`),
    /// with `WHISPER_THREADS` threads and `TRANSCRIPT_VAD` (`energy`, the default, or `off`:
    /// only digital silence is skipped).
    pub fn from_vars(vars: crate::config::Vars<'_>) -> Result<Self, ActivityFailure> {
        let var = |k: &str| crate::config::non_empty(vars, k);
        let backend = var("TRANSCRIPT_BACKEND").unwrap_or_else(|| "embedded".into());
        let model = var("TRANSCRIPT_MODEL");
        match backend.as_str() {
            "embedded" => Ok(AsrConfig::Embedded(EmbeddedConfig {
                model_dir: model_dir_in(
                    crate::models::dir_in(vars),
                    model.as_deref().unwrap_or("base"),
                ),
                threads: match var("WHISPER_THREADS") {
                    Some(t) => t.parse().map_err(|_| {
                        ActivityFailure::Config(format!("WHISPER_THREADS={t} is not a number"))
                    })?,
                    None => 0,
                },
                detector: match var("TRANSCRIPT_VAD") {
                    Some(v) => vad::Detector::parse(&v).ok_or_else(|| {
                        ActivityFailure::Config(format!(
                            "TRANSCRIPT_VAD={v}: expected energy or off"
                        ))
                    })?,
                    None => vad::Detector::default(),
                },
            })),
            "gpu-url" | "openai" => {
                let url = var("TRANSCRIPT_URL").ok_or_else(|| {
                    ActivityFailure::Config(format!(
                        "TRANSCRIPT_URL is required by the {backend} backend"
                    ))
                })?;
                let timeout = match var("TRANSCRIPT_FILE_TIMEOUT") {
                    Some(t) => Some(Duration::from_secs_f64(t.parse().map_err(|_| {
                        ActivityFailure::Config(format!(
                            "TRANSCRIPT_FILE_TIMEOUT={t} is not a number of seconds"
                        ))
                    })?)),
                    None => None,
                };
                Ok(AsrConfig::Remote(RemoteAsr {
                    api: if backend == "openai" {
                        Api::OpenAi
                    } else {
                        Api::GpuUrl
                    },
                    url: url.trim_end_matches('/').to_owned(),
                    api_key: var("TRANSCRIPT_MODAL_API_KEY").or_else(|| var("TRANSCRIPT_API_KEY")),
                    model,
                    timeout,
                }))
            }
            other => Err(ActivityFailure::Config(format!(
                "TRANSCRIPT_BACKEND={other}: expected embedded, gpu-url or openai"
            ))),
        }
    }

    /// What about the backend changes its output (never secrets): part of the checkpoint hash.
    pub fn identity(&self) -> serde_json::Value {
        match self {
            AsrConfig::Embedded(c) => serde_json::json!({
                "backend": "embedded",
                "model": c.model_dir.file_name().map(|n| n.to_string_lossy().into_owned()),
                "front_end": EMBEDDED_FRONT_END,
                "vad": c.detector.name(),
            }),
            AsrConfig::Remote(r) => serde_json::json!({
                "backend": match r.api { Api::GpuUrl => "gpu-url", Api::OpenAi => "openai" },
                "url": r.url,
                "model": r.model,
            }),
        }
    }
}

/// The directory of an embedded model named `name` (`base`, `tiny.en`, or a path), under the
/// model directory of the process environment ([`crate::models::dir`]).
pub fn embedded_model_dir(name: &str) -> PathBuf {
    model_dir_in(crate::models::dir(), name)
}

/// The directory of the embedded model `name` under `models`.
fn model_dir_in(models: PathBuf, name: &str) -> PathBuf {
    let path = PathBuf::from(name);
    if path.components().count() > 1 || path.is_absolute() {
        return path;
    }
    models.join(format!("whisper-{name}"))
}
