//! Which LLM a worker talks to (`LLM_*` settings): an OpenAI-compatible service or the
//! embedded CPU model, with the timeouts, limits and identity that checkpoint keys include.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::chat_model;
use crate::error::ActivityFailure;

/// The default embedded model, under the model directory (`just setup` installs it):
/// Qwen2.5-Coder-0.5B-Instruct, chosen by `just bench-llm` and `just bench-e2e`
/// (`bench/results/llm.md`, `e2e.md`): it carries a meeting's decisions into its summaries,
/// which SmolLM2 never did, and with f16 weights reads prompts fast enough to finish within
/// the meeting's length on 2 cores.
pub const EMBEDDED_DEFAULT: &str = EMBEDDED_QWEN;

/// SmolLM2-135M-Instruct, under the model directory: fast and weak. It stays for the tests of
/// the embedded chain (a 270 MB model in every test binary instead of 1 GB).
pub const EMBEDDED_SMALL: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Qwen2.5-Coder-0.5B-Instruct, under the model directory (with its `tokenizer.json`).
pub const EMBEDDED_QWEN: &str = "qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct.gguf";

/// The configured backend.
#[derive(Clone, PartialEq)]
pub enum LlmBackend {
    /// An OpenAI-compatible service.
    OpenAi {
        /// `LLM_URL` (no trailing slash), e.g. `https://api.openai.com/v1`.
        url: String,
        /// `LLM_API_KEY`.
        api_key: Option<String>,
        /// `LLM_MODEL`.
        model: String,
    },
    /// The in-process model.
    Embedded {
        /// The GGUF file.
        model_path: PathBuf,
        /// Copies of the model generating side by side (`LLM_SESSIONS`, 0 = one per core, at
        /// most 4) and threads per copy (`LLM_THREADS`, 0 = the cores shared among them).
        parallelism: chat_model::Parallelism,
    },
}

impl std::fmt::Debug for LlmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LlmBackend::OpenAi {
                url,
                api_key,
                model,
            } => f
                .debug_struct("OpenAi")
                .field("url", url)
                .field("api_key", &crate::redacted::Redacted(api_key))
                .field("model", model)
                .finish(),
            LlmBackend::Embedded {
                model_path,
                parallelism,
            } => f
                .debug_struct("Embedded")
                .field("model_path", model_path)
                .field("parallelism", parallelism)
                .finish(),
        }
    }
}

/// LLM configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    /// Which backend.
    pub backend: LlmBackend,
    /// Context window, tokens (`LLM_CONTEXT_WINDOW`, default 16000).
    pub context_window: usize,
    /// Re-asks of an invalid structured reply (`LLM_PARSE_MAX_RETRIES`, default 3).
    pub parse_max_retries: u32,
    /// Requests per second per process (`LLM_RATE_LIMIT_PER_SECOND`, default 10).
    pub rate_limit_per_second: u32,
    /// `LLM_TIMEOUT` seconds, capped below start-to-close.
    pub timeout: Option<Duration>,
}

impl LlmConfig {
    /// From the settings (see the module docs for the variables).
    pub fn from_vars(vars: crate::config::Vars<'_>) -> Result<Self, ActivityFailure> {
        let var = |k: &str| crate::config::non_empty(vars, k);
        fn number<T: std::str::FromStr>(
            k: &str,
            v: Option<String>,
            default: T,
        ) -> Result<T, ActivityFailure> {
            match v {
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| ActivityFailure::Config(format!("{k}={v} is not a number"))),
                None => Ok(default),
            }
        }
        let backend = match var("LLM_BACKEND").as_deref().unwrap_or("embedded") {
            "embedded" => LlmBackend::Embedded {
                model_path: var("LLM_MODEL")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| crate::models::dir_in(vars).join(EMBEDDED_DEFAULT)),
                parallelism: chat_model::Parallelism::resolve(
                    number("LLM_SESSIONS", var("LLM_SESSIONS"), 0)?,
                    number("LLM_THREADS", var("LLM_THREADS"), 0)?,
                ),
            },
            "openai" => LlmBackend::OpenAi {
                url: var("LLM_URL")
                    .ok_or_else(|| {
                        ActivityFailure::Config("LLM_URL is required by the openai backend".into())
                    })?
                    .trim_end_matches('/')
                    .to_owned(),
                api_key: var("LLM_API_KEY"),
                model: var("LLM_MODEL").ok_or_else(|| {
                    ActivityFailure::Config("LLM_MODEL is required by the openai backend".into())
                })?,
            },
            other => {
                return Err(ActivityFailure::Config(format!(
                    "LLM_BACKEND={other}: expected embedded or openai"
                )));
            }
        };
        Ok(LlmConfig {
            backend,
            context_window: number("LLM_CONTEXT_WINDOW", var("LLM_CONTEXT_WINDOW"), 16_000)?,
            parse_max_retries: number("LLM_PARSE_MAX_RETRIES", var("LLM_PARSE_MAX_RETRIES"), 3)?,
            rate_limit_per_second: number(
                "LLM_RATE_LIMIT_PER_SECOND",
                var("LLM_RATE_LIMIT_PER_SECOND"),
                10,
            )?,
            timeout: number::<f64>("LLM_TIMEOUT", var("LLM_TIMEOUT"), 0.0)
                .map(|s| (s > 0.0).then(|| Duration::from_secs_f64(s)))?,
        })
    }

    /// The backend's name for usage records and checkpoint hashes (`openai:gpt-4o-mini`,
    /// `embedded:qwen2.5-coder-0.5b-instruct` for the default).
    pub fn backend_name(&self) -> String {
        match &self.backend {
            LlmBackend::OpenAi { model, .. } => format!("openai:{model}"),
            LlmBackend::Embedded { model_path, .. } => format!(
                "embedded:{}",
                model_path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
        }
    }

    /// What changes the answers (never secrets): part of every LLM checkpoint hash.
    pub fn identity(&self) -> Value {
        match &self.backend {
            LlmBackend::OpenAi { url, model, .. } => {
                json!({"backend": "openai", "url": url, "model": model})
            }
            LlmBackend::Embedded { .. } => json!({"backend": self.backend_name()}),
        }
    }
}
