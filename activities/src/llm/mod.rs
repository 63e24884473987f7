//! LLM calls for the summary steps (docs/contracts/pipeline.md §4.7–§4.12, §6.4).
//!
//! Two backends, chosen by `LLM_BACKEND`:
//! - `openai`: OpenAI-compatible `POST {LLM_URL}/chat/completions`, bearer `LLM_API_KEY`,
//!   model `LLM_MODEL`; structured steps send `response_format: {"type": "json_object"}` with
//!   the schema in the system message. A token bucket (`LLM_RATE_LIMIT_PER_SECOND`, default
//!   10/s) sits in front of every request, because one activity may make several calls.
//! - `embedded` (default): Qwen2.5-Coder-0.5B-Instruct in process ([`chat_model`]; `LLM_MODEL`
//!   names another GGUF, e.g. the installed SmolLM2-135M-Instruct, [`EMBEDDED_SMALL`]; the
//!   work is sized to a CPU: bounded answers, one call per subject). It is small, so every
//!   step guards its output and falls back to an extractive method ([`extractive`]) — the
//!   policy of [`guard`], which the steps of [`steps`] use without knowing the backend; the
//!   result records which method produced it. The prompts are in [`prompts`].
//!
//! One concept, one file: the LLM client (configuration, both backends, splitting, re-asks);
//! what the steps ask is in [`steps`] and [`prompts`], how answers are judged in [`guard`].
//!
//! Common to both ([`Llm`]): prompts longer than the context window (`LLM_CONTEXT_WINDOW`
//! tokens, estimated as characters/4) are split into fitting parts, notes are taken of each
//! part ([`prompts::PART_NOTES`]: the same question for every step, so a meeting's parts are
//! read once and their notes shared by every step that reads the transcript, [`calls`]), and
//! the instruction runs once over the notes; a structured reply is parsed and validated
//! and, when invalid, re-asked with the error appended, up to `LLM_PARSE_MAX_RETRIES` (3)
//! times, then fails as `LlmParseError`. HTTP timeouts stay 30 s below start-to-close.

pub mod calls;
pub mod chat_model;
pub mod commitments;
pub mod config;
pub mod extractive;
pub mod facts;
pub mod guard;
pub mod prompts;
pub mod qwen2;
pub mod steps;
mod weights;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use temporalio_sdk::activities::ActivityContext;
use tokio::sync::OnceCell;

use crate::error::ActivityFailure;
use crate::http;
use crate::usage::{Usage, ledger};
use chat_model::ChatModel;
pub use config::{EMBEDDED_DEFAULT, EMBEDDED_QWEN, EMBEDDED_SMALL, LlmBackend, LlmConfig};

/// Margin between an LLM HTTP timeout and the step's start-to-close (300 → 270 s).
pub const HTTP_MARGIN: Duration = Duration::from_secs(30);
/// Tokens kept free for the answer when fitting a prompt into the context window.
const ANSWER_RESERVE: usize = 1_000;

/// Temperature of a part's notes (the same for every step: one question, one answer).
const NOTES_TEMPERATURE: f64 = 0.2;

/// The embedded model's bound on a part's notes, in tokens: a part is about one context window
/// of transcript, and its notes are read with the other parts' in one window.
const NOTES_MAX_TOKENS: usize = 256;
/// Longest answer asked of the embedded model by `step`: the budget its declaration states
/// (`Cost::Llm` in its module under [`steps`]). A step that calls the LLM without declaring a
/// budget is a bug, refused before the model runs.
fn embedded_max_tokens(step: &str) -> Result<usize, ActivityFailure> {
    match steps::declarations().cost_of(step) {
        Some(workflow::catalog::Cost::Llm {
            embedded_max_tokens,
        }) => Ok(embedded_max_tokens as usize),
        _ => Err(ActivityFailure::Config(format!(
            "{step} calls the LLM but declares no LLM cost (its module's `declare`)"
        ))),
    }
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    /// Text.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Message {
            role: "system",
            content: content.into(),
        }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: "user",
            content: content.into(),
        }
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: "assistant",
            content: content.into(),
        }
    }
}

/// The LLM client shared by the summary activities.
pub struct Llm {
    config: LlmConfig,
    limiter: DefaultDirectRateLimiter,
    embedded: OnceCell<Arc<ChatModel>>,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("backend", &self.config.identity())
            .finish()
    }
}

impl Llm {
    /// A client for `config`; the embedded model loads on first use.
    pub fn new(config: LlmConfig) -> Self {
        let rate = NonZeroU32::new(config.rate_limit_per_second.max(1)).expect("at least 1");
        Llm {
            // No burst: requests are spaced 1/rate apart, so no 1-second window ever holds more
            // than `rate` of them (the provider's limit is per window, not on average).
            limiter: RateLimiter::direct(
                Quota::per_second(rate).allow_burst(NonZeroU32::new(1).expect("1")),
            ),
            config,
            embedded: OnceCell::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Whether this is the embedded (guarded, with extractive fallback) backend.
    pub fn is_embedded(&self) -> bool {
        matches!(self.config.backend, LlmBackend::Embedded { .. })
    }

    async fn model(&self) -> Result<Arc<ChatModel>, ActivityFailure> {
        let LlmBackend::Embedded {
            model_path,
            parallelism,
        } = &self.config.backend
        else {
            unreachable!("model() is only called for the embedded backend");
        };
        self.embedded
            .get_or_try_init(|| async {
                let (path, parallelism) = (model_path.clone(), *parallelism);
                tokio::task::spawn_blocking(move || {
                    ChatModel::load(&path, parallelism).map(Arc::new)
                })
                .await
                .map_err(|e| ActivityFailure::Transient(format!("model loading stopped: {e}")))?
                .map_err(|e| match e {
                    chat_model::ModelError::Model { .. } => ActivityFailure::Config(e.to_string()),
                    other => ActivityFailure::Transient(other.to_string()),
                })
            })
            .await
            .cloned()
    }

    /// Context window in tokens for this backend (the embedded model's own is smaller).
    async fn window(&self) -> Result<usize, ActivityFailure> {
        Ok(if self.is_embedded() {
            self.model()
                .await?
                .context_tokens()
                .min(self.config.context_window)
        } else {
            self.config.context_window
        })
    }

    /// One request: `messages` → the reply's text, checkpointed on its own inside a step
    /// ([`calls`]: a retry does not ask it again). The activity type names the caller in errors
    /// and in the usage ledger.
    pub async fn call(
        &self,
        ctx: &ActivityContext,
        messages: &[Message],
        temperature: f64,
        json_mode: bool,
    ) -> Result<(String, Usage), ActivityFailure> {
        let activity_id = ctx.info().activity_id.as_str();
        calls::checkpointed(activity_id, messages, temperature, json_mode, || {
            self.ask(ctx, messages, temperature, json_mode, None)
        })
        .await
    }

    /// [`Llm::call`] without its checkpoint: the request itself. The embedded model answers
    /// in at most `max_tokens`, else the step's declared budget.
    async fn ask(
        &self,
        ctx: &ActivityContext,
        messages: &[Message],
        temperature: f64,
        json_mode: bool,
        max_tokens: Option<usize>,
    ) -> Result<(String, Usage), ActivityFailure> {
        let step = ctx.info().activity_type.as_str();
        let started = Instant::now();
        let mut usage = Usage {
            backend: self.config.backend_name(),
            calls: 1,
            ..Usage::default()
        };
        let text = match &self.config.backend {
            LlmBackend::OpenAi {
                url,
                api_key,
                model,
            } => {
                self.limiter.until_ready().await;
                let s2c = http::start_to_close(ctx);
                let client = http::client(http::ceiling(s2c, HTTP_MARGIN, self.config.timeout));
                let mut body =
                    json!({"model": model, "messages": messages, "temperature": temperature});
                if json_mode {
                    body["response_format"] = json!({"type": "json_object"});
                }
                let what = format!(
                    "{step}: {}",
                    http::display_url(&format!("{url}/chat/completions"))
                );
                let mut request = client.post(format!("{url}/chat/completions")).json(&body);
                if let Some(k) = api_key {
                    request = request.bearer_auth(k);
                }
                let call = async {
                    let response = request
                        .send()
                        .await
                        .map_err(|e| http::transport(&what, e))?;
                    let response = http::check(&what, response).await?;
                    response
                        .json::<Value>()
                        .await
                        .map_err(|e| http::transport(&what, e))
                };
                let reply =
                    http::while_waiting(ctx, crate::heartbeat::HEARTBEAT_EVERY, call).await??;
                usage.prompt_tokens = reply["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
                usage.completion_tokens = reply["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                reply["choices"][0]["message"]["content"]
                    .as_str()
                    .ok_or_else(|| {
                        ActivityFailure::ResponseShape(format!(
                            "{what}: no choices[0].message.content"
                        ))
                    })?
                    .to_owned()
            }
            LlmBackend::Embedded { .. } => {
                let model = self.model().await?;
                let max_tokens = match max_tokens {
                    Some(n) => n,
                    None => embedded_max_tokens(step)?,
                };
                // Stop 10 s before the attempt's deadline: a timed-out attempt's generation
                // would otherwise keep the model from every later caller (retries included).
                let deadline = ctx.info().deadline.map(|d| {
                    let left = d
                        .duration_since(std::time::SystemTime::now())
                        .unwrap_or_default();
                    Instant::now() + left.saturating_sub(Duration::from_secs(10))
                });
                let turns: Vec<(String, String)> = messages
                    .iter()
                    .map(|m| (m.role.to_owned(), m.content.clone()))
                    .collect();
                // The activity cancelled (or this future dropped): generation stops at the
                // next token and the model is free for the next caller.
                let generating = Instant::now();
                let generated = crate::heartbeat::run(
                    ctx,
                    move |work| model.chat(&turns, temperature, max_tokens, deadline, work.flag()),
                    move || {
                        crate::heartbeat::Progress::of(
                            "generating",
                            generating.elapsed().as_secs_f64().floor(),
                            0.0,
                        )
                    },
                )
                .await?
                .map_err(|e| ActivityFailure::Transient(format!("{step}: {e}")))?;
                usage.prompt_tokens = generated.prompt_tokens as u64;
                usage.completion_tokens = generated.completion_tokens as u64;
                generated.text
            }
        };
        usage.backend_ms = started.elapsed().as_millis() as u64;
        ledger().llm(step, &usage);
        Ok((text, usage))
    }

    /// A plain-text answer to `instruction` over `input`; an input too long for the context
    /// window is split, answered part by part, and the partial answers answered once more.
    pub async fn text(
        &self,
        ctx: &ActivityContext,
        instruction: &str,
        input: &str,
        temperature: f64,
    ) -> Result<(String, Usage), ActivityFailure> {
        let mut usage = Usage::default();
        let input = self.condense(ctx, instruction, input, &mut usage).await?;
        let (answer, u) = self
            .call(
                ctx,
                &[Message::system(instruction), Message::user(input)],
                temperature,
                false,
            )
            .await?;
        usage.add(&u);
        Ok((answer, usage))
    }

    /// A structured answer: JSON parsed as `T` and checked by `validate`; an invalid reply is
    /// re-asked with the error, up to `LLM_PARSE_MAX_RETRIES` times (once for the embedded
    /// model, which rarely repairs its own output). `schema` describes the expected JSON in the
    /// system message. The inner `Err` is the last validation error when every answer was
    /// invalid ([`Llm::parse_failure`] turns it into `LlmParseError`); the usage counts every
    /// call made either way.
    #[allow(clippy::too_many_arguments)]
    pub async fn json<T: DeserializeOwned>(
        &self,
        ctx: &ActivityContext,
        instruction: &str,
        schema: &str,
        input: &str,
        temperature: f64,
        validate: impl Fn(&T) -> Result<(), String>,
    ) -> Result<(Result<T, String>, Usage), ActivityFailure> {
        let step = ctx.info().activity_type.as_str();
        let system = format!(
            "{instruction}\n\nAnswer with a single JSON object and nothing else, of this shape:\n{schema}"
        );
        let mut usage = Usage::default();
        let input = self.condense(ctx, &system, input, &mut usage).await?;
        let mut messages = vec![Message::system(system), Message::user(input)];
        let mut last_error = String::new();
        let retries = if self.is_embedded() {
            self.config.parse_max_retries.min(1)
        } else {
            self.config.parse_max_retries
        };
        for attempt in 0..=retries {
            let (reply, u) = self.call(ctx, &messages, temperature, true).await?;
            usage.add(&u);
            match parse_json::<T>(&reply).and_then(|v| validate(&v).map(|()| v)) {
                Ok(v) => return Ok((Ok(v), usage)),
                Err(e) => {
                    tracing::info!(step, attempt, error = %e, "LLM reply invalid; asking again");
                    last_error = e.clone();
                    messages.push(Message::assistant(reply));
                    messages.push(Message::user(format!(
                        "That answer is invalid: {e}. Reply again with only the corrected JSON object."
                    )));
                }
            }
        }
        Ok((Err(last_error), usage))
    }

    /// The `LlmParseError` for a structured answer that stayed invalid.
    pub fn parse_failure(&self, step: &str, error: &str) -> ActivityFailure {
        ActivityFailure::LlmParse(format!(
            "{step}: the LLM's answer is still invalid after {} re-asks: {error}",
            self.config.parse_max_retries
        ))
    }

    /// `input` as it will be sent: unchanged when it fits the context window with
    /// `instruction`; otherwise split on line boundaries into parts that fit with
    /// [`prompts::PART_NOTES`], notes taken of each, and the notes joined (and condensed again
    /// if needed). The parts and their question do not depend on the step, so the notes of a
    /// meeting's parts are taken once and shared ([`calls::shared`]).
    async fn condense(
        &self,
        ctx: &ActivityContext,
        instruction: &str,
        input: &str,
        usage: &mut Usage,
    ) -> Result<String, ActivityFailure> {
        let step = ctx.info().activity_type.as_str();
        let window = self.window().await?;
        let budget_chars = window.saturating_sub(ANSWER_RESERVE).max(256) * 4;
        let mut input = input.to_owned();
        for _round in 0..4 {
            if instruction.len() + input.len() <= budget_chars {
                return Ok(input);
            }
            let parts = split_to_fit(
                &input,
                budget_chars
                    .saturating_sub(prompts::PART_NOTES.len())
                    .max(1024),
            );
            tracing::info!(
                step,
                parts = parts.len(),
                chars = input.len(),
                "input exceeds the context window; taking notes of each part"
            );
            // The parts at once: the embedded model reads as many as it has sessions, a
            // hosted one as its rate limit lets it.
            let answers = futures::future::try_join_all(parts.iter().map(|part| async move {
                let messages = [
                    Message::system(prompts::PART_NOTES),
                    Message::user(part.clone()),
                ];
                calls::shared(&messages, NOTES_TEMPERATURE, || {
                    self.ask(
                        ctx,
                        &messages,
                        NOTES_TEMPERATURE,
                        false,
                        Some(NOTES_MAX_TOKENS),
                    )
                })
                .await
            }))
            .await?;
            let mut notes = Vec::new();
            for (i, (answer, u)) in answers.into_iter().enumerate() {
                usage.add(&u);
                notes.push(format!("Part {}:\n{}", i + 1, answer.trim()));
            }
            input = format!(
                "The meeting was too long to read at once; these are notes on each of its parts, in order:\n\n{}",
                notes.join("\n\n")
            );
        }
        Ok(input)
    }
}

/// Split `text` into pieces of at most `max_chars`, on line boundaries where possible.
pub fn split_to_fit(text: &str, max_chars: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        let mut line = line;
        while line.len() > max_chars {
            // A single over-long line: cut at a char boundary near the limit.
            let mut cut = max_chars;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            if !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            parts.push(line[..cut].to_owned());
            line = &line[cut..];
        }
        if current.len() + line.len() > max_chars && !current.is_empty() {
            parts.push(std::mem::take(&mut current));
        }
        current.push_str(line);
    }
    if !current.trim().is_empty() {
        parts.push(current);
    }
    parts
}

/// The JSON object in `reply` (code fences and chatter around it tolerated) as `T`.
pub fn parse_json<T: DeserializeOwned>(reply: &str) -> Result<T, String> {
    let start = reply
        .find('{')
        .ok_or("the answer contains no JSON object")?;
    let end = reply.rfind('}').ok_or("the JSON object is not closed")?;
    if end < start {
        return Err("the JSON object is not closed".into());
    }
    serde_json::from_str(&reply[start..=end]).map_err(|e| format!("not the expected JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_keeps_every_character_in_order() {
        let text: String = (0..200)
            .map(|i| format!("line {i} of the meeting\n"))
            .collect();
        let parts = split_to_fit(&text, 500);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.len() <= 500));
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn json_is_found_inside_fences() {
        #[derive(serde::Deserialize)]
        struct T {
            title: String,
        }
        let t: T = parse_json("Sure!\n```json\n{\"title\": \"Budget review\"}\n```").unwrap();
        assert_eq!(t.title, "Budget review");
        assert!(parse_json::<T>("no json here").is_err());
    }
}
