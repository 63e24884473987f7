//! Accounting of what the paid steps consume: transcription audio seconds and backend time,
//! LLM calls and tokens.
//!
//! Every transcription and LLM activity returns a [`Usage`] in its result (what producing that
//! result cost, and whether this attempt paid it or took it from a checkpoint), and adds what
//! it really spent to the process-wide [`Ledger`], which the metrics endpoint exports and tests
//! read. A result served from a checkpoint adds nothing: that is the point of checkpoints.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// What producing one result cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Usage {
    /// `embedded:whisper-base`, `openai:gpt-4o-mini`, `extractive`…
    pub backend: String,
    /// Backend calls (HTTP requests or model runs).
    pub calls: u64,
    /// Audio seconds transcribed.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub audio_s: f64,
    /// Prompt tokens sent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prompt_tokens: u64,
    /// Completion tokens received.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub completion_tokens: u64,
    /// Wall time spent in the backend, ms.
    pub backend_ms: u64,
    /// True when this attempt took the result from a checkpoint (nothing was spent now).
    #[serde(default)]
    pub from_checkpoint: bool,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

impl Usage {
    /// Add `other`'s consumption to this one (the backend name is kept if set).
    pub fn add(&mut self, other: &Usage) {
        if self.backend.is_empty() {
            self.backend = other.backend.clone();
        }
        self.calls += other.calls;
        self.audio_s += other.audio_s;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.backend_ms += other.backend_ms;
    }
}

/// Process-wide totals of what was really spent, per kind.
#[derive(Debug, Default)]
pub struct Ledger {
    asr_calls: AtomicU64,
    asr_audio_ms: AtomicU64,
    llm_calls: AtomicU64,
    llm_prompt_tokens: AtomicU64,
    llm_completion_tokens: AtomicU64,
    checkpoint_hits: AtomicU64,
    per_step: Mutex<Vec<(String, u64)>>,
}

/// A copy of the ledger's totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Transcription backend calls.
    pub asr_calls: u64,
    /// Audio transcribed, ms.
    pub asr_audio_ms: u64,
    /// LLM calls.
    pub llm_calls: u64,
    /// LLM prompt tokens.
    pub llm_prompt_tokens: u64,
    /// LLM completion tokens.
    pub llm_completion_tokens: u64,
    /// Paid-step results served from checkpoints.
    pub checkpoint_hits: u64,
    /// Backend calls per step name.
    pub calls_per_step: Vec<(String, u64)>,
}

static LEDGER: Ledger = Ledger {
    asr_calls: AtomicU64::new(0),
    asr_audio_ms: AtomicU64::new(0),
    llm_calls: AtomicU64::new(0),
    llm_prompt_tokens: AtomicU64::new(0),
    llm_completion_tokens: AtomicU64::new(0),
    checkpoint_hits: AtomicU64::new(0),
    per_step: Mutex::new(Vec::new()),
};

/// The process's ledger.
pub fn ledger() -> &'static Ledger {
    &LEDGER
}

impl Ledger {
    /// Record transcription spending by `step`.
    pub fn asr(&self, step: &str, usage: &Usage) {
        self.asr_calls.fetch_add(usage.calls, Ordering::Relaxed);
        self.asr_audio_ms
            .fetch_add((usage.audio_s * 1000.0) as u64, Ordering::Relaxed);
        crate::metrics::asr_audio(&usage.backend, usage.audio_s);
        self.step(step, usage.calls);
    }

    /// Record LLM spending by `step`.
    pub fn llm(&self, step: &str, usage: &Usage) {
        self.llm_calls.fetch_add(usage.calls, Ordering::Relaxed);
        self.llm_prompt_tokens
            .fetch_add(usage.prompt_tokens, Ordering::Relaxed);
        self.llm_completion_tokens
            .fetch_add(usage.completion_tokens, Ordering::Relaxed);
        crate::metrics::llm_requests("2xx", usage.calls);
        crate::metrics::llm_tokens(usage.prompt_tokens, usage.completion_tokens);
        self.step(step, usage.calls);
    }

    /// Record a result served from a checkpoint.
    pub fn checkpoint_hit(&self) {
        self.checkpoint_hits.fetch_add(1, Ordering::Relaxed);
        crate::metrics::checkpoint_hit();
    }

    fn step(&self, step: &str, calls: u64) {
        let mut per_step = self.per_step.lock().expect("ledger lock");
        match per_step.iter_mut().find(|(s, _)| s == step) {
            Some((_, n)) => *n += calls,
            None => per_step.push((step.to_owned(), calls)),
        }
    }

    /// The totals so far.
    pub fn totals(&self) -> Totals {
        Totals {
            asr_calls: self.asr_calls.load(Ordering::Relaxed),
            asr_audio_ms: self.asr_audio_ms.load(Ordering::Relaxed),
            llm_calls: self.llm_calls.load(Ordering::Relaxed),
            llm_prompt_tokens: self.llm_prompt_tokens.load(Ordering::Relaxed),
            llm_completion_tokens: self.llm_completion_tokens.load(Ordering::Relaxed),
            checkpoint_hits: self.checkpoint_hits.load(Ordering::Relaxed),
            calls_per_step: self.per_step.lock().expect("ledger lock").clone(),
        }
    }
}
