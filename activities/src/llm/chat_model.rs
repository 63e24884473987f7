//! The embedded LLM runtime: a GGUF chat model in process, CPU only, on candle's quantized
//! kernels — `qwen2` (Qwen2.5-Coder-0.5B-Instruct, the default, [`super::EMBEDDED_DEFAULT`]) or
//! `llama` (SmolLM2-135M-Instruct, [`super::EMBEDDED_SMALL`], which the tests load), told apart
//! by the GGUF's `general.architecture`.
//!
//! The tokenizer is the `tokenizer.json` next to the GGUF when one ships with it (Qwen's, from
//! npm), else rebuilt from the GGUF metadata (byte-level BPE: `tokenizer.ggml.tokens` and
//! `.merges`, with the ChatML markers as special tokens). Generation is seeded from the prompt,
//! so the same prompt always gives the same text — checkpoints and tests stay reproducible.
//!
//! **Sessions.** One answer is written at a time per KV cache. Writing one token at a time
//! does not get faster with a second thread (Qwen2.5-0.5B on 2 cores: 9.7 tokens a second on
//! one thread, 9.0 on two), but two sessions generating side by side on one thread each keep
//! both cores busy (9.8 each). So the model runs as `sessions` sessions (default: one per core,
//! at most 4), each with its own KV cache and pool of `threads` threads (default: the cores
//! shared among them), all over **one** loaded copy of the weights (Qwen2 through
//! [`super::qwen2`]; candle's llama model shares its tensors when cloned); a call takes a free
//! session or waits for one. The summary steps of a meeting (its subjects, the action items)
//! run side by side this way. A prompt is read [`PREFILL_CHUNK`] tokens per forward call.
//!
//! Weights in f16 ([`prefer_f16_weights`], what `reflow` does): candle multiplies quantized
//! weights one row at a time, so reading a prompt is as slow as writing one token per prompt
//! token (Qwen2.5-0.5B: 35 prompt tokens a second on 2 cores); dequantized once at load to f16
//! they go through a real matrix multiply (155 tokens a second, the same as llama.cpp) while
//! generation stays at 9–10 tokens a second (`bench/results/llm.md`). The price is memory:
//! 2 bytes per parameter (1 GB for the 0.5B model).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::quantized::gguf_file;

use candle_transformers::generation::{LogitsProcessor, Sampling};
use sha2::{Digest, Sha256};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use super::weights::{Loaded, Weights};

/// The longest context used, tokens (Qwen2.5 declares 32,768).
const MAX_CONTEXT: usize = 8192;

/// Prompt tokens read per forward call. Attention's scores for a call are `heads × chunk ×
/// (tokens so far)` floats, a few of them alive at once: a 7,000-token prompt read whole made
/// 14 × 7,000 × 7,000 × 4 bytes = 2.7 GB per copy (a 14-minute meeting's worker peaked at
/// 7.2 GB), read 256 at a time at most 100 MB. Prompts read as fast either way (the weights'
/// matrix multiplies are as wide at 256 rows).
const PREFILL_CHUNK: usize = 256;

/// candle's switch: quantized weights are dequantized to f16 when loaded.
const F16_SWITCH: &str = "CANDLE_DEQUANTIZE_ALL_F16";

/// Load the embedded models' weights as f16 (see the module docs), unless `LLM_WEIGHTS=quantized`
/// asks to keep them quantized (a quarter of the memory, four times slower prompts).
///
/// candle reads this from the process environment when weights are loaded, so it is set here,
/// once, by a binary's `main` **before it starts any thread** (the environment is not
/// thread-safe to change).
pub fn prefer_f16_weights() {
    let keep_quantized = std::env::var("LLM_WEIGHTS").is_ok_and(|v| v.trim() == "quantized");
    if !keep_quantized && std::env::var_os(F16_SWITCH).is_none() {
        // SAFETY: called from `main` before any other thread exists (documented above), so no
        // thread reads the environment while it changes.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var(F16_SWITCH, "1")
        };
    }
}

/// Whether weights loaded now are f16 (else quantized).
pub fn f16_weights() -> bool {
    std::env::var(F16_SWITCH).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Why the embedded LLM failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model file is missing or not a usable GGUF chat model.
    #[error("embedded LLM model {path}: {cause}")]
    Model {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        cause: String,
    },
    /// Inference failed.
    #[error("embedded LLM inference failed: {0}")]
    Inference(String),
    /// The attempt's deadline came before the answer was complete.
    #[error("embedded LLM stopped at the attempt's deadline")]
    Deadline,
    /// The caller stopped waiting (its activity was cancelled).
    #[error("embedded LLM stopped: the activity was cancelled")]
    Stopped,
}

/// One generation's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The assistant's text.
    pub text: String,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Time to read the prompt (the first forward pass, which also gives the first token).
    pub prefill: std::time::Duration,
    /// Time from then to the last token.
    pub generation: std::time::Duration,
}

/// One session: its state over the shared weights and the threads that run it.
struct Session {
    weights: Mutex<Weights>,
    pool: rayon::ThreadPool,
}

/// How many sessions generate side by side, on how many threads each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    /// Sessions (each generates one answer at a time, all over one copy of the weights).
    pub sessions: usize,
    /// Threads per copy.
    pub threads: usize,
}

impl Parallelism {
    /// `sessions` and `threads` as configured, 0 meaning the default: one session per core (at
    /// most 4; each costs its KV cache, the weights are shared), the cores shared among them.
    pub fn resolve(sessions: usize, threads: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let sessions = if sessions == 0 {
            cores.min(4)
        } else {
            sessions
        };
        let threads = if threads == 0 {
            (cores / sessions).max(1)
        } else {
            threads
        };
        Parallelism { sessions, threads }
    }
}

/// A loaded chat model.
pub struct ChatModel {
    sessions: Vec<Session>,
    /// Indices of the sessions not generating.
    free: Mutex<Vec<usize>>,
    freed: std::sync::Condvar,
    tokenizer: Tokenizer,
    stop: Vec<u32>,
    context: usize,
}

/// [`ModelError::Model`] for the model at `path`.
fn model_error(path: &Path, cause: String) -> ModelError {
    ModelError::Model {
        path: path.to_owned(),
        cause,
    }
}

impl ChatModel {
    /// Load the GGUF file at `path` once, for `parallelism.sessions` sessions.
    pub fn load(path: &Path, parallelism: Parallelism) -> Result<Self, ModelError> {
        let started = std::time::Instant::now();
        let (_, header) = Self::open(path)?;
        let (tokenizer, context) = Self::tokenizer_and_context(path, &header)?;
        let loaded = {
            let (mut file, header) = Self::open(path)?;
            Loaded::read(header, &mut file, f16_weights()).map_err(|e| model_error(path, e))?
        };
        let sessions = (0..parallelism.sessions.max(1))
            .map(|i| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(parallelism.threads.max(1))
                    .thread_name(move |t| format!("reflow-llm-{i}-{t}"))
                    .build()
                    .map_err(|e| model_error(path, e.to_string()))?;
                Ok(Session {
                    weights: Mutex::new(Weights::of(&loaded)),
                    pool,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        tracing::info!(
            model = %path.display(),
            sessions = sessions.len(),
            threads = parallelism.threads,
            f16 = f16_weights(),
            load_ms = started.elapsed().as_millis() as u64,
            "embedded LLM loaded"
        );
        let stop = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        Ok(ChatModel {
            free: Mutex::new((0..sessions.len()).rev().collect()),
            freed: std::sync::Condvar::new(),
            sessions,
            tokenizer,
            stop,
            context,
        })
    }

    /// Sessions (answers generated side by side).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The GGUF file at `path`, opened, and its header (metadata and tensor index).
    fn open(path: &Path) -> Result<(std::fs::File, gguf_file::Content), ModelError> {
        let mut file = std::fs::File::open(path).map_err(|e| {
            model_error(
                path,
                format!("{e} (run `just setup` to install the embedded models)"),
            )
        })?;
        let header =
            gguf_file::Content::read(&mut file).map_err(|e| model_error(path, e.to_string()))?;
        Ok((file, header))
    }

    /// The tokenizer (`tokenizer.json` beside the GGUF, else rebuilt from its metadata) and
    /// the context length, at most [`MAX_CONTEXT`].
    fn tokenizer_and_context(
        path: &Path,
        header: &gguf_file::Content,
    ) -> Result<(Tokenizer, usize), ModelError> {
        let beside = path.with_file_name("tokenizer.json");
        let tokenizer = if beside.exists() {
            Tokenizer::from_file(&beside)
                .map_err(|e| model_error(path, format!("{}: {e}", beside.display())))?
        } else {
            tokenizer_from_gguf(header).map_err(|e| model_error(path, e))?
        };
        let context = header
            .metadata
            .get(&format!(
                "{}.context_length",
                super::weights::architecture(header)
            ))
            .and_then(|v| v.to_u32().ok())
            .unwrap_or(2048) as usize;
        // Longer contexts than this cost more memory than a meeting's prompt needs.
        Ok((tokenizer, context.min(MAX_CONTEXT)))
    }

    /// Take a free session, waiting (and giving up when `give_up` says so) while all generate.
    fn take_session(
        &self,
        give_up: impl Fn() -> Option<ModelError>,
    ) -> Result<SessionGuard<'_>, ModelError> {
        let poisoned = || ModelError::Inference("model lock poisoned".into());
        let mut free = self.free.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(e) = give_up() {
                return Err(e);
            }
            if let Some(index) = free.pop() {
                return Ok(SessionGuard { model: self, index });
            }
            free = self
                .freed
                .wait_timeout(free, std::time::Duration::from_millis(100))
                .map_err(|_| poisoned())?
                .0;
        }
    }

    /// The model's context length, tokens.
    pub fn context_tokens(&self) -> usize {
        self.context
    }

    /// Tokens in `text`.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.len())
            .unwrap_or(text.len() / 4)
    }

    /// Generate the assistant's next reply to `messages` (`(role, content)` pairs, rendered
    /// as ChatML), at most `max_tokens` tokens, sampling at `temperature` (0 = greedy).
    /// Blocking; stops with [`ModelError::Deadline`] once `deadline` passes and with
    /// [`ModelError::Stopped`] once `stop` is set (checked before every token, also while
    /// waiting for the model), so an abandoned attempt never keeps the model from the next one.
    pub fn chat(
        &self,
        messages: &[(String, String)],
        temperature: f64,
        max_tokens: usize,
        deadline: Option<std::time::Instant>,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<Generated, ModelError> {
        let interrupted = || {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                Some(ModelError::Stopped)
            } else if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                Some(ModelError::Deadline)
            } else {
                None
            }
        };
        let mut prompt = String::new();
        for (role, content) in messages {
            prompt.push_str(&format!("<|im_start|>{role}\n{content}<|im_end|>\n"));
        }
        prompt.push_str("<|im_start|>assistant\n");
        let infer = |e: candle_core::Error| ModelError::Inference(e.to_string());
        let mut tokens = self
            .tokenizer
            .encode(prompt.as_str(), false)
            .map_err(|e| ModelError::Inference(e.to_string()))?
            .get_ids()
            .to_vec();
        // Keep the end of an over-long prompt (the instruction and the assistant marker are
        // there) and leave room for the answer.
        let budget = self.context.saturating_sub(max_tokens).max(64);
        if tokens.len() > budget {
            tokens.drain(..tokens.len() - budget);
        }
        let prompt_tokens = tokens.len();
        let seed = u64::from_le_bytes(
            Sha256::digest(prompt.as_bytes())[..8]
                .try_into()
                .expect("8 bytes"),
        );
        let sampling = if temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            Sampling::TopKThenTopP {
                k: 40,
                p: 0.9,
                temperature,
            }
        };
        let mut sampler = LogitsProcessor::from_sampling(seed, sampling);
        // A session is taken before entering its pool, never inside it: a pool thread that
        // waits inside a parallel kernel may steal another queued `install`, and that job
        // blocking on the lock its own stack holds would deadlock the pool (seen with five
        // concurrent LLM steps).
        let session = self.take_session(interrupted)?;
        let Session { weights, pool } = &self.sessions[session.index];
        let mut guard = weights
            .lock()
            .map_err(|_| ModelError::Inference("model lock poisoned".into()))?;
        let weights: &mut Weights = &mut guard;
        weights.clear();
        pool.install(move || {
            let started = std::time::Instant::now();
            let mut logits = weights.prefill(&tokens, 0, PREFILL_CHUNK, interrupted)?;
            let mut position = tokens.len();
            let prefill = started.elapsed();
            let mut generated: Vec<u32> = Vec::new();
            while generated.len() < max_tokens {
                let recent = &generated[generated.len().saturating_sub(64)..];
                let penalized =
                    candle_transformers::utils::apply_repeat_penalty(&logits, 1.15, recent)
                        .map_err(infer)?;
                let next = sampler.sample(&penalized).map_err(infer)?;
                if self.stop.contains(&next) || position >= self.context {
                    break;
                }
                generated.push(next);
                if generated.len() == max_tokens {
                    break;
                }
                logits = weights.prefill(&[next], position, 1, interrupted)?;
                position += 1;
            }
            let text = self
                .tokenizer
                .decode(&generated, true)
                .map_err(|e| ModelError::Inference(e.to_string()))?;
            Ok(Generated {
                text: text.trim().to_owned(),
                prompt_tokens,
                completion_tokens: generated.len(),
                prefill,
                generation: started.elapsed().saturating_sub(prefill),
            })
        })
    }
}

/// A session in use; returned to the free list when dropped.
struct SessionGuard<'a> {
    model: &'a ChatModel,
    index: usize,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut free) = self.model.free.lock() {
            free.push(self.index);
        }
        self.model.freed.notify_one();
    }
}

/// A byte-level BPE tokenizer from the GGUF's `tokenizer.ggml.*` metadata.
fn tokenizer_from_gguf(content: &gguf_file::Content) -> Result<Tokenizer, String> {
    let get = |k: &str| {
        content
            .metadata
            .get(k)
            .ok_or_else(|| format!("the GGUF has no {k}"))
    };
    let model = get("tokenizer.ggml.model")?
        .to_string()
        .map_err(|e| e.to_string())?;
    if model != "gpt2" {
        return Err(format!(
            "tokenizer model {model:?} is not byte-level BPE (gpt2)"
        ));
    }
    let tokens: Vec<String> = get("tokenizer.ggml.tokens")?
        .to_vec()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|v| v.to_string().cloned().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let merges: Vec<(String, String)> = get("tokenizer.ggml.merges")?
        .to_vec()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|v| {
            let m = v.to_string().map_err(|e| e.to_string())?;
            m.split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| format!("bad merge {m:?}"))
        })
        .collect::<Result<_, _>>()?;
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, false)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    let specials: Vec<AddedToken> = tokens
        .iter()
        .filter(|t| t.starts_with("<|") && t.ends_with("|>"))
        .map(|t| AddedToken::from(t.clone(), true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    Ok(tokenizer)
}
