//! The summary activities (pipeline.md §4.7–§4.12): `detect_topics` (the chunk plan),
//! `detect_chunk_topic` (one per chunk), `save_topics`, `generate_title`, `extract_subjects`,
//! `generate_detailed_summary` (one per subject), `generate_recap`, `identify_action_items`.
//!
//! Each reads what it needs by key or from the transcript row, so payloads stay small; each
//! result is checkpointed by (step, input, LLM identity, prompt version), so a retry, reset
//! or re-run never pays for the same call twice. Database writes and events happen after the
//! checkpoint, on every run (they are idempotent, and a re-run starts from an empty log).
//!
//! With the embedded model, every answer passes a guard before it is used — length, words
//! taken from the input rather than invented, no echo of the input — and a failed guard (or an
//! unparseable answer) falls back to the extractive method of [`super::extractive`]. The
//! result's `method` says which produced it (`llm` or `extractive`).

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use super::{Llm, extractive};
use crate::checkpoint::{Checkpoints, Origin};
use crate::error::ActivityFailure;
use crate::events::Events;
use crate::storage::{Storage, keys};
use crate::transcript::{Participant, Topic, Word};
use crate::usage::{Usage, ledger};

/// Version of the prompts and guards below; part of every checkpoint hash.
const PROMPTS: &str = "reflow-prompts-1";
/// Chunk size bounds in words (§4.7).
const MIN_CHUNK: usize = 375;
const MAX_CHUNK: usize = 1500;
/// Older Reflector's fixed chunk size.
const FIXED_CHUNK: usize = 300;
/// Subjects kept (§4.9).
const MAX_SUBJECTS: usize = 6;

/// The contracts of the summary activities, for the catalog: input and output types (their
/// JSON Schemas are what `reflow validate` checks steps against) and the events each publishes.
pub fn contracts(catalog: workflow::Catalog) -> workflow::Catalog {
    type S = SummaryActivities;
    catalog
        .contract::<PlanInput, PlanOutput>(S::detect_topics.name(), &[])
        .contract::<ChunkInput, ChunkTopic>(S::detect_chunk_topic.name(), &[])
        .contract::<SaveTopicsInput, SaveTopicsOutput>(S::save_topics.name(), &["TOPIC"])
        .contract::<TranscriptInput, TitleOutput>(S::generate_title.name(), &["FINAL_TITLE"])
        .contract::<TranscriptInput, SubjectsOutput>(S::extract_subjects.name(), &[])
        .contract::<SubjectInput, SubjectSummary>(S::generate_detailed_summary.name(), &[])
        .contract::<RecapInput, RecapOutput>(
            S::generate_recap.name(),
            &["FINAL_SHORT_SUMMARY", "FINAL_LONG_SUMMARY"],
        )
        .contract::<ActionItemsInput, ActionItemsOutput>(
            S::identify_action_items.name(),
            &["ACTION_ITEMS"],
        )
}

/// Which method produced a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The LLM's answer (validated, and guarded for the embedded model).
    Llm,
    /// Computed from the input by [`extractive`], after the embedded model's answer failed
    /// its guard.
    Extractive,
    /// Nothing to do (no words, no topics).
    None,
}

// ---------------------------------------------------------------------------------------
// Payloads

/// Input of `detect_topics`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    /// The transcript.
    pub transcript_id: String,
    /// The merged words (`{transcript_id}/pipeline/words.json`).
    pub words_key: String,
    /// Meeting length in seconds; read from the transcript (ms) when absent.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// `duration` (default) or `fixed`.
    #[serde(default)]
    pub chunking: Option<String>,
}

/// One chunk of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChunkPlan {
    /// Position.
    pub chunk_index: usize,
    /// First word (inclusive).
    pub word_start: usize,
    /// Last word (exclusive).
    pub word_end: usize,
    /// First word's start, seconds.
    pub timestamp: f64,
    /// Last word's end − first word's start.
    pub duration: f64,
}

/// Output of `detect_topics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlanOutput {
    /// The words the chunks index.
    pub words_key: String,
    /// Words in the meeting.
    pub word_count: usize,
    /// Chunk size chosen, words.
    pub chunk_words: usize,
    /// Number of chunks (K).
    pub chunk_count: usize,
    /// The chunks, in order.
    pub chunks: Vec<ChunkPlan>,
}

/// Input of `detect_chunk_topic`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChunkInput {
    /// The transcript.
    pub transcript_id: String,
    /// The merged words.
    pub words_key: String,
    /// Chunk position.
    pub chunk_index: usize,
    /// First word (inclusive).
    pub word_start: usize,
    /// Last word (exclusive).
    pub word_end: usize,
}

/// Output of `detect_chunk_topic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChunkTopic {
    /// Chunk position.
    pub chunk_index: usize,
    /// Cleaned title.
    pub title: String,
    /// At most two sentences.
    pub summary: String,
    /// What produced it.
    pub method: Method,
    /// What it cost.
    pub usage: Usage,
}

/// Input of `save_topics`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveTopicsInput {
    /// The transcript.
    pub transcript_id: String,
    /// The merged words.
    pub words_key: String,
    /// The plan's chunks.
    pub chunks: Vec<ChunkPlan>,
    /// One topic per chunk (any order; matched by `chunk_index`).
    pub topics: Vec<ChunkTopic>,
}

/// Output of `save_topics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SaveTopicsOutput {
    /// Topics saved.
    pub topic_count: usize,
}

/// Input of the steps that work from the transcript row alone.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TranscriptInput {
    /// The transcript.
    pub transcript_id: String,
}

/// Output of `generate_title`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TitleOutput {
    /// The generated title (cleaned).
    pub title: String,
    /// What produced it.
    pub method: Method,
    /// What it cost.
    pub usage: Usage,
}

/// Output of `extract_subjects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubjectsOutput {
    /// `{transcript_id}/pipeline/summary_input.md`.
    pub summary_input_key: String,
    /// At most six subjects.
    pub subjects: Vec<String>,
    /// What produced them.
    pub method: Method,
    /// What it cost.
    pub usage: Usage,
}

/// Input of `generate_detailed_summary`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectInput {
    /// The transcript.
    pub transcript_id: String,
    /// The summary input.
    pub summary_input_key: String,
    /// Position of the subject.
    pub subject_index: usize,
    /// The subject.
    pub subject: String,
}

/// Output of `generate_detailed_summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubjectSummary {
    /// Position of the subject.
    pub subject_index: usize,
    /// One paragraph.
    pub paragraph: String,
    /// What produced it.
    pub method: Method,
    /// What it cost.
    pub usage: Usage,
}

/// Input of `generate_recap`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecapInput {
    /// The transcript.
    pub transcript_id: String,
    /// The subjects, in order.
    pub subjects: Vec<String>,
    /// One paragraph per subject (matched by `subject_index`).
    pub summaries: Vec<SubjectParagraph>,
}

/// A subject's paragraph, as `generate_recap` needs it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubjectParagraph {
    /// Position of the subject.
    pub subject_index: usize,
    /// The paragraph.
    pub paragraph: String,
}

/// Output of `generate_recap`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecapOutput {
    /// Characters in the recap (the text is on the transcript).
    pub short_summary_chars: usize,
    /// Characters in the long summary.
    pub long_summary_chars: usize,
    /// What produced the recap.
    pub method: Method,
    /// What it cost.
    pub usage: Usage,
}

/// Input of `identify_action_items`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionItemsInput {
    /// The transcript.
    pub transcript_id: String,
    /// The summary input.
    pub summary_input_key: String,
}

/// Output of `identify_action_items`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ActionItemsOutput {
    /// Decisions found.
    pub decisions: usize,
    /// Next steps found.
    pub next_steps: usize,
    /// What produced them.
    pub method: Method,
    /// What it cost.
    pub usage: Usage,
    /// The items themselves (small; saved on the transcript as well).
    pub action_items: Value,
}

// ---------------------------------------------------------------------------------------
// Pure rules

/// The chunk size of §4.7 for `word_count` words over `duration_s` seconds.
pub fn chunk_words(word_count: usize, duration_s: Option<f64>, fixed: bool) -> usize {
    if fixed {
        return FIXED_CHUNK;
    }
    match duration_s {
        Some(d) if d > 0.0 => {
            let minutes = d / 60.0;
            let target = (0.833 * minutes.powf(0.723)).clamp(2.0, 50.0).round() as usize;
            (word_count / target).clamp(MIN_CHUNK, MAX_CHUNK)
        }
        _ => MIN_CHUNK,
    }
}

/// Consecutive chunks of `size` words over `words`.
pub fn plan_chunks(words: &[Word], size: usize) -> Vec<ChunkPlan> {
    (0..words.len())
        .step_by(size.max(1))
        .enumerate()
        .map(|(chunk_index, start)| {
            let end = (start + size).min(words.len());
            ChunkPlan {
                chunk_index,
                word_start: start,
                word_end: end,
                timestamp: words[start].start,
                duration: words[end - 1].end - words[start].start,
            }
        })
        .collect()
}

/// Word texts concatenated and trimmed, single spaces.
pub fn words_text(words: &[Word]) -> String {
    words
        .iter()
        .map(|w| w.text.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The title cleaning of §4.8: first non-empty line; whitespace, quotes, markdown markers and
/// a leading `Title:` stripped; no trailing period; spaces collapsed.
pub fn clean_title(raw: &str) -> String {
    let line = raw
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut t = line
        .trim_start_matches(['#', '*', '-', '>', ' '])
        .to_owned();
    if t.len() >= 6 && t[..6].eq_ignore_ascii_case("title:") {
        t = t[6..].to_owned();
    }
    let t = t
        .trim()
        .trim_matches(['"', '\'', '“', '”', '‘', '’', '`', '*', '_'])
        .trim()
        .trim_end_matches('.')
        .trim();
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The summary input of §4.9: per topic, segments split at speaker changes or after a
/// sentence end once over 120 characters, as `{name}: {text}` lines; then the participants.
pub fn summary_input(topics: &[Topic], participants: &[Participant]) -> String {
    let name = |speaker: i64| {
        participants
            .iter()
            .find(|p| p.speaker == speaker)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| format!("Speaker {speaker}"))
    };
    let mut lines = Vec::new();
    for topic in topics {
        let mut current: Option<(i64, String)> = None;
        for w in &topic.words {
            let text = w.text.trim();
            if text.is_empty() {
                continue;
            }
            match &mut current {
                Some((s, seg)) if *s == w.speaker => {
                    seg.push(' ');
                    seg.push_str(text);
                }
                _ => {
                    if let Some((s, seg)) = current.take() {
                        lines.push(format!("{}: {seg}", name(s)));
                    }
                    current = Some((w.speaker, text.to_owned()));
                }
            }
            if let Some((s, seg)) = &current
                && seg.len() > 120
                && text.ends_with(['.', ';', ':', '?', '!', '…'])
            {
                lines.push(format!("{}: {seg}", name(*s)));
                current = None;
            }
        }
        if let Some((s, seg)) = current {
            lines.push(format!("{}: {seg}", name(s)));
        }
    }
    let mut sorted: Vec<&Participant> = participants.iter().collect();
    sorted.sort_by_key(|p| p.speaker);
    let mut out = lines.join("\n");
    out.push_str("\n\n# Participants\n\n");
    for p in sorted {
        out.push_str(&format!("- {}\n", p.name));
    }
    out
}

/// The participant instruction every summary prompt carries (§4.9.2).
fn participant_instruction(participants: &[Participant]) -> String {
    if participants.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = participants.iter().map(|p| p.name.as_str()).collect();
    format!(
        "\n\nThe participants are: {}. Refer to people by these names; never use generic labels such as \"Speaker 1\".",
        names.join(", ")
    )
}

/// The long summary of §4.11.
pub fn long_summary(recap: &str, subjects: &[String], paragraphs: &[String]) -> String {
    let mut out = format!("# Quick recap\n\n{recap}\n\n# Summary\n\n");
    for (s, p) in subjects.iter().zip(paragraphs) {
        out.push_str(&format!("**{s}**\n{p}\n\n"));
    }
    out
}

/// A participant id for `name`: case-insensitive exact match, else null (§4.12).
fn participant_id(participants: &[Participant], name: Option<&str>) -> Value {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Value::Null;
    };
    participants
        .iter()
        .find(|p| p.name.trim().eq_ignore_ascii_case(name))
        .map_or(Value::Null, |p| json!(p.id))
}

// ---------------------------------------------------------------------------------------
// Guards for the embedded model

fn content_words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            let w: String = w
                .trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase();
            w.strip_suffix('s')
                .filter(|s| s.len() > 3)
                .map(str::to_owned)
                .unwrap_or(w)
        })
        .filter(|w| w.len() > 3)
        .collect()
}

/// Share of `output`'s content words that occur in `source`; 0.0 when `output` has none (an
/// answer like "OK." or "..." says nothing of the meeting, so it must fail every guard).
pub fn grounded(output: &str, source: &str) -> f64 {
    let source: HashSet<String> = content_words(source).into_iter().collect();
    let words = content_words(output);
    if words.is_empty() {
        return 0.0;
    }
    words.iter().filter(|w| source.contains(*w)).count() as f64 / words.len() as f64
}

/// Whether `output` copies a run of `run` or more consecutive words of `source`.
pub fn echoes(output: &str, source: &str, run: usize) -> bool {
    let norm = |s: &str| -> Vec<String> {
        s.split_whitespace()
            .map(|w| {
                w.trim_matches(|c: char| !c.is_alphanumeric())
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect()
    };
    let (out, src) = (norm(output), norm(source));
    if out.len() < run {
        return false;
    }
    let source_runs: HashSet<&[String]> = src.windows(run).collect();
    out.windows(run).any(|w| source_runs.contains(w))
}

/// Whether `output` says the same run of `run` words twice (a small model's stutter).
pub fn repeats(output: &str, run: usize) -> bool {
    let words: Vec<String> = output
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let mut seen: HashSet<&[String]> = HashSet::new();
    words.windows(run).any(|w| !seen.insert(w))
}

/// A title the embedded model may keep: 2–10 words, mostly from the input, not an echo, no
/// word said twice in a row of three.
fn title_ok(title: &str, source: &str) -> bool {
    let n = title.split_whitespace().count();
    (2..=10).contains(&n)
        && grounded(title, source) >= 0.5
        && !echoes(title, source, 6)
        && !repeats(title, 3)
}

/// A summary the embedded model may keep: 40–600 characters, mostly words of the input,
/// not a copy of it, not repeating itself.
fn summary_ok(summary: &str, source: &str) -> bool {
    (40..=600).contains(&summary.len())
        && grounded(summary, source) >= 0.6
        && !echoes(summary, source, 12)
        && !repeats(summary, 4)
}

// ---------------------------------------------------------------------------------------
// Activities

/// The summary activities.
pub struct SummaryActivities {
    storage: Storage,
    checkpoints: Checkpoints,
    events: Events,
    llm: Arc<Llm>,
}

/// A topic answer as the LLM may spell it.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct TopicAnswer {
    #[serde(alias = "Title")]
    title: String,
    #[serde(alias = "Summary")]
    summary: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SubjectsAnswer {
    subjects: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ActionAnswer {
    #[serde(default)]
    decisions: Vec<Value>,
    #[serde(default)]
    next_steps: Vec<Value>,
}

impl SummaryActivities {
    /// Activities over `storage`, writing through `events` (and its database), calling `llm`.
    pub fn new(storage: Storage, events: Events, llm: Arc<Llm>) -> Self {
        SummaryActivities {
            checkpoints: Checkpoints::new(storage.clone()),
            storage,
            events,
            llm,
        }
    }

    fn identity(&self) -> Value {
        json!({"llm": self.llm.config().identity(), "prompts": PROMPTS})
    }

    async fn words(&self, key: &str) -> Result<Vec<Word>, ActivityFailure> {
        serde_json::from_slice(&self.storage.get(key).await?)
            .map_err(|e| ActivityFailure::InvalidInput(format!("{key} is not a word list: {e}")))
    }

    async fn topics(&self, tid: &str) -> Result<Vec<Topic>, ActivityFailure> {
        let t = self.events.db().transcript(tid).await?;
        serde_json::from_str(&t.topics)
            .map_err(|e| ActivityFailure::InvalidInput(format!("transcript {tid} topics: {e}")))
    }

    async fn participants(&self, tid: &str) -> Result<Vec<Participant>, ActivityFailure> {
        let t = self.events.db().transcript(tid).await?;
        serde_json::from_str(&t.participants).map_err(|e| {
            ActivityFailure::InvalidInput(format!("transcript {tid} participants: {e}"))
        })
    }

    /// Run `work` through the checkpoint store; a stored result counts as a checkpoint hit
    /// and its usage is marked as not spent now.
    async fn checkpointed<I, O, F, Fut>(
        &self,
        tid: &str,
        step: &str,
        input: &I,
        work: F,
    ) -> Result<O, ActivityFailure>
    where
        I: Serialize,
        O: Serialize + serde::de::DeserializeOwned + HasUsage,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<O, ActivityFailure>>,
    {
        let (mut out, origin) = self
            .checkpoints
            .checkpointed(tid, step, input, &self.identity(), |_: &O| Vec::new(), work)
            .await?;
        if origin == Origin::Stored {
            ledger().checkpoint_hit();
            if let Some(u) = out.usage_mut() {
                u.from_checkpoint = true;
            }
        }
        Ok(out)
    }

    async fn plan(&self, input: &PlanInput) -> Result<PlanOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let duration_s = match input.duration_s {
            Some(d) => Some(d),
            None => self
                .events
                .db()
                .find_transcript(tid)
                .await?
                .and_then(|t| t.duration)
                .map(|ms| ms / 1000.0),
        };
        let fixed = match input.chunking.as_deref() {
            None | Some("duration") => false,
            Some("fixed") => true,
            Some(other) => {
                return Err(ActivityFailure::InvalidInput(format!(
                    "detect_topics: chunking {other:?} is not `duration` or `fixed`"
                )));
            }
        };
        let bytes = self.storage.get(&input.words_key).await?;
        let digest = hex::encode(sha2::Sha256::digest(&bytes));
        let key = (input, duration_s, &digest);
        let (out, _) = self
            .checkpoints
            .checkpointed(
                tid,
                "detect_topics",
                &key,
                &json!({"chunking": "v1"}),
                |_: &PlanOutput| Vec::new(),
                || async {
                    let words: Vec<Word> = serde_json::from_slice(&bytes).map_err(|e| {
                        ActivityFailure::InvalidInput(format!(
                            "{} is not a word list: {e}",
                            input.words_key
                        ))
                    })?;
                    let size = chunk_words(words.len(), duration_s, fixed);
                    let chunks = plan_chunks(&words, size);
                    Ok(PlanOutput {
                        words_key: input.words_key.clone(),
                        word_count: words.len(),
                        chunk_words: size,
                        chunk_count: chunks.len(),
                        chunks,
                    })
                },
            )
            .await?;
        Ok(out)
    }

    async fn chunk_topic(
        &self,
        ctx: &ActivityContext,
        input: &ChunkInput,
    ) -> Result<ChunkTopic, ActivityFailure> {
        let tid = &input.transcript_id;
        let words = self.words(&input.words_key).await?;
        let slice = words.get(input.word_start..input.word_end).ok_or_else(|| {
            ActivityFailure::InvalidInput(format!(
                "detect_chunk_topic {}: words {}..{} outside the {} words of {}",
                input.chunk_index,
                input.word_start,
                input.word_end,
                words.len(),
                input.words_key
            ))
        })?;
        let text = words_text(slice);
        // The chunk's text is part of the key: new words under the same key are a new question.
        let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        self.checkpointed(tid, "detect_chunk_topic", &(input, &digest), || async {
            let instruction = "You read an excerpt of a meeting transcript. Find the main topic \
                of the excerpt and ignore small talk. Give it a specific, descriptive, professional \
                title, and a summary of at most two sentences on what was discussed or decided.";
            let schema = r#"{"title": "a specific title of at least 10 characters", "summary": "one or two sentences, at least 10 characters"}"#;
            let validate = |a: &TopicAnswer| {
                if clean_title(&a.title).len() < 10 {
                    return Err("`title` must have at least 10 characters".to_owned());
                }
                if a.summary.trim().len() < 10 {
                    return Err("`summary` must have at least 10 characters".to_owned());
                }
                Ok(())
            };
            let answer = self.llm.json::<TopicAnswer>(ctx, "detect_chunk_topic", instruction, schema, &text, 0.9, validate).await;
            let (answer, usage) = answer?;
            let (title, summary, method, usage) = match answer {
                Ok(a) => {
                    let (title, summary) = (clean_title(&a.title), a.summary.trim().to_owned());
                    if !self.llm.is_embedded() || (title_ok(&title, &text) && summary_ok(&summary, &text)) {
                        (title, summary, Method::Llm, usage)
                    } else {
                        tracing::info!(chunk = input.chunk_index, %title, "embedded answer failed its guard; using the extractive topic");
                        (extractive::title(&text, 8), extractive::summary(&text, 2), Method::Extractive, usage)
                    }
                }
                Err(e) if self.llm.is_embedded() => {
                    tracing::info!(chunk = input.chunk_index, error = %e, "embedded answer unparseable; using the extractive topic");
                    (extractive::title(&text, 8), extractive::summary(&text, 2), Method::Extractive, usage)
                }
                Err(e) => return Err(self.llm.parse_failure("detect_chunk_topic", &e)),
            };
            Ok(ChunkTopic { chunk_index: input.chunk_index, title, summary, method, usage })
        })
        .await
    }

    async fn save(&self, input: &SaveTopicsInput) -> Result<SaveTopicsOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let words = self.words(&input.words_key).await?;
        let mut topics = Vec::new();
        for chunk in &input.chunks {
            let found = input
                .topics
                .iter()
                .find(|t| t.chunk_index == chunk.chunk_index)
                .ok_or_else(|| {
                    ActivityFailure::InvalidInput(format!(
                        "save_topics: no topic for chunk {}",
                        chunk.chunk_index
                    ))
                })?;
            let slice = words.get(chunk.word_start..chunk.word_end).ok_or_else(|| {
                ActivityFailure::InvalidInput(format!(
                    "save_topics: chunk {} is outside the words",
                    chunk.chunk_index
                ))
            })?;
            let id = uuid::Uuid::new_v5(
                &uuid::Uuid::parse_str(tid).unwrap_or(uuid::Uuid::NAMESPACE_OID),
                chunk.chunk_index.to_string().as_bytes(),
            );
            topics.push(Topic {
                id: id.to_string(),
                title: found.title.clone(),
                summary: found.summary.clone(),
                timestamp: chunk.timestamp,
                duration: Some(chunk.duration),
                transcript: words_text(slice),
                words: slice.to_vec(),
            });
        }
        self.events.db().set_topics(tid, &topics).await?;
        for t in &topics {
            let data = serde_json::to_value(t).expect("a topic serializes");
            self.events
                .publish("save_topics", tid, "TOPIC", data)
                .await?;
        }
        Ok(SaveTopicsOutput {
            topic_count: topics.len(),
        })
    }

    async fn title(
        &self,
        ctx: &ActivityContext,
        input: &TranscriptInput,
    ) -> Result<TitleOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let topics = self.topics(tid).await?;
        let out = self
            .checkpointed(tid, "generate_title", &(input, topic_titles(&topics)), || async {
                if topics.is_empty() {
                    return Ok(TitleOutput { title: String::new(), method: Method::None, usage: Usage::default() });
                }
                let list = topic_titles(&topics).iter().map(|t| format!("- {t}")).collect::<Vec<_>>().join("\n");
                let instruction = "These are the topics of a meeting. Write a single-line title \
                    for the meeting, at most 10 words, built from noun phrases. Avoid generic terms \
                    such as \"meeting\" or \"discussion\"; name the most significant topic, or a \
                    compound of the top ones. Answer with the title only.";
                let (raw, usage) = self.llm.text(ctx, "generate_title", instruction, &list, 0.5).await?;
                let title = clean_title(&raw);
                let source = topics.iter().map(|t| format!("{} {}", t.title, t.transcript)).collect::<Vec<_>>().join("\n");
                if self.llm.is_embedded() && !title_ok(&title, &source) {
                    tracing::info!(%title, "embedded title failed its guard; using key phrases");
                    let titles = topic_titles(&topics).join(". ");
                    return Ok(TitleOutput { title: extractive::title(&format!("{titles}. {source}"), 10), method: Method::Extractive, usage });
                }
                Ok(TitleOutput { title, method: Method::Llm, usage })
            })
            .await?;
        if !out.title.is_empty() {
            let stored = self.events.db().set_title_if_empty(tid, &out.title).await?;
            self.events
                .publish(
                    "generate_title",
                    tid,
                    "FINAL_TITLE",
                    json!({"title": stored}),
                )
                .await?;
        }
        Ok(out)
    }

    async fn subjects(
        &self,
        ctx: &ActivityContext,
        input: &TranscriptInput,
    ) -> Result<SubjectsOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let topics = self.topics(tid).await?;
        let participants = self.participants(tid).await?;
        let text = summary_input(&topics, &participants);
        let key = keys::summary_input(tid);
        self.storage.put(&key, Bytes::from(text.clone())).await?;
        let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        self.checkpointed(tid, "extract_subjects", &(input, &digest), || async {
            let instruction = format!(
                "You read a meeting transcript. List the main subjects discussed, as short noun \
                 phrases; skip subjects only mentioned briefly.{}",
                participant_instruction(&participants)
            );
            let schema = r#"{"subjects": ["a short noun phrase", "..."]}"#;
            let validate = |a: &SubjectsAnswer| {
                if a.subjects.iter().any(|s| s.trim().is_empty()) {
                    return Err("a subject is empty".to_owned());
                }
                Ok(())
            };
            let answer = self
                .llm
                .json::<SubjectsAnswer>(
                    ctx,
                    "extract_subjects",
                    &instruction,
                    schema,
                    &text,
                    0.4,
                    validate,
                )
                .await;
            let fallback = || extractive::subjects(&text, 4);
            let (answer, usage) = answer?;
            let (subjects, method, usage) = match answer {
                Ok(a) => {
                    let subjects: Vec<String> = a
                        .subjects
                        .iter()
                        .map(|s| clean_title(s))
                        .take(MAX_SUBJECTS)
                        .collect();
                    let ok = !subjects.is_empty()
                        && subjects.iter().all(|s| {
                            s.split_whitespace().count() <= 8 && grounded(s, &text) >= 0.5
                        });
                    if !self.llm.is_embedded() || ok {
                        (subjects, Method::Llm, usage)
                    } else {
                        (fallback(), Method::Extractive, usage)
                    }
                }
                Err(_) if self.llm.is_embedded() => (fallback(), Method::Extractive, usage),
                Err(e) => return Err(self.llm.parse_failure("extract_subjects", &e)),
            };
            Ok(SubjectsOutput {
                summary_input_key: key.clone(),
                subjects,
                method,
                usage,
            })
        })
        .await
    }

    async fn detailed(
        &self,
        ctx: &ActivityContext,
        input: &SubjectInput,
    ) -> Result<SubjectSummary, ActivityFailure> {
        let tid = &input.transcript_id;
        let text = String::from_utf8_lossy(&self.storage.get(&input.summary_input_key).await?)
            .into_owned();
        let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        let participants = self.participants(tid).await?;
        self.checkpointed(tid, "generate_detailed_summary", &(input, &digest), || async {
            let people = participant_instruction(&participants);
            let analyse = format!(
                "You read a meeting transcript. Write a detailed analysis of one subject of it: \
                 \"{}\". Cover the positions and arguments, the decisions and their rationale, \
                 action items with owners and deadlines, and open questions. Name the people \
                 involved.{people}",
                input.subject
            );
            let (detail, mut usage) = self.llm.text(ctx, "generate_detailed_summary", &analyse, &text, 0.4).await?;
            let condense = format!(
                "Condense this analysis of the subject \"{}\" into one paragraph.{people}",
                input.subject
            );
            let (paragraph, u) = self.llm.text(ctx, "generate_detailed_summary", &condense, &detail, 0.4).await?;
            usage.add(&u);
            let paragraph = paragraph.trim().to_owned();
            if self.llm.is_embedded() && !summary_ok(&paragraph, &text) {
                tracing::info!(subject = %input.subject, "embedded paragraph failed its guard; using extracted sentences");
                let mut extracted = extractive::about(&text, &input.subject, 3);
                if extracted.is_empty() {
                    extracted = extractive::summary(&text, 2);
                }
                return Ok(SubjectSummary { subject_index: input.subject_index, paragraph: extracted, method: Method::Extractive, usage });
            }
            Ok(SubjectSummary { subject_index: input.subject_index, paragraph, method: Method::Llm, usage })
        })
        .await
    }

    async fn recap(
        &self,
        ctx: &ActivityContext,
        input: &RecapInput,
    ) -> Result<RecapOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let mut paragraphs = Vec::new();
        for i in 0..input.subjects.len() {
            let p = input
                .summaries
                .iter()
                .find(|s| s.subject_index == i)
                .ok_or_else(|| {
                    ActivityFailure::InvalidInput(format!(
                        "generate_recap: no paragraph for subject {i}"
                    ))
                })?;
            paragraphs.push(p.paragraph.clone());
        }
        let blocks = input
            .subjects
            .iter()
            .zip(&paragraphs)
            .map(|(s, p)| format!("{s}: {p}"))
            .collect::<Vec<_>>()
            .join("\n\n");
        let participants = self.participants(tid).await?;
        let (recap, out) = {
            let out = self
                .checkpointed(tid, "generate_recap", input, || async {
                    let instruction = format!(
                        "These are summaries of the subjects of a meeting. Write a single high-level \
                         paragraph recapping the meeting, without decisions or action items. Do not \
                         open with \"During the meeting\".{}",
                        participant_instruction(&participants)
                    );
                    let (recap, usage) = self.llm.text(ctx, "generate_recap", &instruction, &blocks, 0.4).await?;
                    let recap = strip_opening(recap.trim());
                    let (recap, method) = if self.llm.is_embedded() && !summary_ok(&recap, &blocks) {
                        (extractive::summary(&paragraphs.join("\n"), 2), Method::Extractive)
                    } else {
                        (recap, Method::Llm)
                    };
                    Ok(RecapResult { recap, method, usage })
                })
                .await?;
            (out.recap.clone(), out)
        };
        let long = long_summary(&recap, &input.subjects, &paragraphs);
        self.events.db().set_summaries(tid, &recap, &long).await?;
        self.events
            .publish(
                "generate_recap",
                tid,
                "FINAL_SHORT_SUMMARY",
                json!({"short_summary": recap}),
            )
            .await?;
        self.events
            .publish(
                "generate_recap",
                tid,
                "FINAL_LONG_SUMMARY",
                json!({"long_summary": long}),
            )
            .await?;
        Ok(RecapOutput {
            short_summary_chars: recap.chars().count(),
            long_summary_chars: long.chars().count(),
            method: out.method,
            usage: out.usage,
        })
    }

    async fn action_items(
        &self,
        ctx: &ActivityContext,
        input: &ActionItemsInput,
    ) -> Result<ActionItemsOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let text = String::from_utf8_lossy(&self.storage.get(&input.summary_input_key).await?)
            .into_owned();
        let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        let participants = self.participants(tid).await?;
        let out = self
            .checkpointed(tid, "identify_action_items", &(input, &digest), || async {
                let instruction = format!(
                    "You read a meeting transcript. List the decisions made (with their rationale \
                     and who decided) and the next steps (the task, who it is assigned to, the \
                     deadline and context). Use null for what the transcript does not say; empty \
                     lists are fine.{}",
                    participant_instruction(&participants)
                );
                let schema = r#"{"decisions": [{"decision": "...", "rationale": "... or null", "decided_by": "a name or null"}], "next_steps": [{"task": "...", "assigned_to": "a name or null", "deadline": "... or null", "context": "... or null"}]}"#;
                let validate = |a: &ActionAnswer| {
                    if a.decisions.iter().any(|d| d["decision"].as_str().is_none_or(|s| s.trim().is_empty())) {
                        return Err("every decision needs a `decision` text".to_owned());
                    }
                    if a.next_steps.iter().any(|d| d["task"].as_str().is_none_or(|s| s.trim().is_empty())) {
                        return Err("every next step needs a `task` text".to_owned());
                    }
                    Ok(())
                };
                let answer = self.llm.json::<ActionAnswer>(ctx, "identify_action_items", &instruction, schema, &text, 0.4, validate).await;
                let (answer, usage) = answer?;
                let (decisions, next_steps, method, usage) = match answer {
                    Ok(a) => {
                        let grounded_all = a.decisions.iter().map(|d| d["decision"].as_str().unwrap_or(""))
                            .chain(a.next_steps.iter().map(|t| t["task"].as_str().unwrap_or("")))
                            .all(|s| grounded(s, &text) >= 0.6);
                        if !self.llm.is_embedded() || grounded_all {
                            (a.decisions, a.next_steps, Method::Llm, usage)
                        } else {
                            let (d, n) = extracted_actions(&text);
                            (d, n, Method::Extractive, usage)
                        }
                    }
                    Err(_) if self.llm.is_embedded() => {
                        let (d, n) = extracted_actions(&text);
                        (d, n, Method::Extractive, usage)
                    }
                    Err(e) => return Err(self.llm.parse_failure("identify_action_items", &e)),
                };
                let decisions: Vec<Value> = decisions
                    .into_iter()
                    .map(|d| {
                        let by = d["decided_by"].as_str().map(str::to_owned);
                        json!({
                            "decision": d["decision"], "rationale": d.get("rationale").cloned().unwrap_or(Value::Null),
                            "decided_by": by, "decided_by_participant_id": participant_id(&participants, by.as_deref()),
                        })
                    })
                    .collect();
                let next_steps: Vec<Value> = next_steps
                    .into_iter()
                    .map(|t| {
                        let to = t["assigned_to"].as_str().map(str::to_owned);
                        json!({
                            "task": t["task"], "assigned_to": to,
                            "assigned_to_participant_id": participant_id(&participants, to.as_deref()),
                            "deadline": t.get("deadline").cloned().unwrap_or(Value::Null),
                            "context": t.get("context").cloned().unwrap_or(Value::Null),
                        })
                    })
                    .collect();
                Ok(ActionItemsOutput {
                    decisions: decisions.len(),
                    next_steps: next_steps.len(),
                    method,
                    usage,
                    action_items: json!({"decisions": decisions, "next_steps": next_steps}),
                })
            })
            .await?;
        self.events
            .db()
            .set_action_items(tid, &out.action_items)
            .await?;
        self.events
            .publish(
                "identify_action_items",
                tid,
                "ACTION_ITEMS",
                json!({"action_items": out.action_items}),
            )
            .await?;
        Ok(out)
    }
}

/// The recap's checkpointed part.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct RecapResult {
    recap: String,
    method: Method,
    usage: Usage,
}

/// Results that carry a [`Usage`].
trait HasUsage {
    fn usage_mut(&mut self) -> Option<&mut Usage>;
}

macro_rules! has_usage {
    ($($t:ty),*) => {$(impl HasUsage for $t { fn usage_mut(&mut self) -> Option<&mut Usage> { Some(&mut self.usage) } })*};
}
has_usage!(
    ChunkTopic,
    TitleOutput,
    SubjectsOutput,
    SubjectSummary,
    RecapResult,
    ActionItemsOutput
);

fn topic_titles(topics: &[Topic]) -> Vec<String> {
    topics.iter().map(|t| t.title.clone()).collect()
}

/// A recap must not open with "During the meeting" (§4.11).
fn strip_opening(recap: &str) -> String {
    let lower = recap.to_lowercase();
    for opening in ["during the meeting,", "during the meeting"] {
        if lower.starts_with(opening) {
            return extractive::capitalised(recap[opening.len()..].trim_start());
        }
    }
    recap.to_owned()
}

fn extracted_actions(text: &str) -> (Vec<Value>, Vec<Value>) {
    let (decisions, tasks) = extractive::action_cues(text);
    (
        decisions
            .into_iter()
            .map(|c| json!({"decision": c.sentence, "rationale": null, "decided_by": c.speaker}))
            .collect(),
        tasks
            .into_iter()
            .map(|c| json!({"task": c.sentence, "assigned_to": c.speaker, "deadline": null, "context": null}))
            .collect(),
    )
}

use sha2::Digest as _;

#[activities]
impl SummaryActivities {
    /// Plan the topic chunks of the merged words (§4.7 step 1).
    #[activity(name = "detect_topics")]
    pub async fn detect_topics(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: PlanInput,
    ) -> Result<PlanOutput, ActivityError> {
        self.plan(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// Title and summary of one chunk (§4.7 step 2).
    #[activity(name = "detect_chunk_topic")]
    pub async fn detect_chunk_topic(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ChunkInput,
    ) -> Result<ChunkTopic, ActivityError> {
        self.chunk_topic(&ctx, &input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// Persist the topics, rebuild the WebVTT, emit TOPIC × K (§4.7 step 3).
    #[activity(name = "save_topics")]
    pub async fn save_topics(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: SaveTopicsInput,
    ) -> Result<SaveTopicsOutput, ActivityError> {
        self.save(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// The meeting's title (§4.8).
    #[activity(name = "generate_title")]
    pub async fn generate_title(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: TranscriptInput,
    ) -> Result<TitleOutput, ActivityError> {
        self.title(&ctx, &input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// The summary input and the main subjects (§4.9).
    #[activity(name = "extract_subjects")]
    pub async fn extract_subjects(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: TranscriptInput,
    ) -> Result<SubjectsOutput, ActivityError> {
        self.subjects(&ctx, &input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// One subject's paragraph (§4.10).
    #[activity(name = "generate_detailed_summary")]
    pub async fn generate_detailed_summary(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: SubjectInput,
    ) -> Result<SubjectSummary, ActivityError> {
        self.detailed(&ctx, &input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// The recap and the long summary (§4.11).
    #[activity(name = "generate_recap")]
    pub async fn generate_recap(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: RecapInput,
    ) -> Result<RecapOutput, ActivityError> {
        self.recap(&ctx, &input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// Decisions and next steps (§4.12).
    #[activity(name = "identify_action_items")]
    pub async fn identify_action_items(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ActionItemsInput,
    ) -> Result<ActionItemsOutput, ActivityError> {
        self.action_items(&ctx, &input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, start: f64, speaker: i64) -> Word {
        Word {
            text: format!(" {text}"),
            start,
            end: start + 0.3,
            speaker,
        }
    }

    #[test]
    fn chunk_sizes_follow_the_duration_curve() {
        assert_eq!(chunk_words(1000, None, false), 375);
        assert_eq!(chunk_words(1000, Some(0.0), false), 375);
        assert_eq!(chunk_words(1000, Some(3600.0), true), 300);
        // 60 min: target = round(0.833 · 60^0.723) = 16; 9000 words / 16 = 562.
        assert_eq!(chunk_words(9000, Some(3600.0), false), 562);
        // Short meetings are bounded below by 375, long ones above by 1500.
        assert_eq!(chunk_words(500, Some(300.0), false), 375);
        assert_eq!(chunk_words(200_000, Some(7200.0), false), 1500);
    }

    #[test]
    fn chunks_cover_every_word_once() {
        let words: Vec<Word> = (0..1000).map(|i| word("w", i as f64, 0)).collect();
        let plan = plan_chunks(&words, 375);
        assert_eq!(plan.len(), 3);
        assert_eq!((plan[2].word_start, plan[2].word_end), (750, 1000));
        assert_eq!(plan[1].timestamp, 375.0);
        assert!((plan[0].duration - 374.3).abs() < 1e-9);
        assert!(plan_chunks(&[], 375).is_empty());
    }

    #[test]
    fn titles_are_cleaned() {
        assert_eq!(
            clean_title("\n  **Title: \"Q3 Budget  Review.\"**\nmore"),
            "Q3 Budget Review"
        );
        assert_eq!(
            clean_title("# Hiring plan for support"),
            "Hiring plan for support"
        );
    }

    #[test]
    fn the_summary_input_names_speakers_and_lists_participants() {
        let topic = Topic {
            id: "t".into(),
            title: "x".into(),
            summary: "y".into(),
            timestamp: 0.0,
            duration: None,
            transcript: String::new(),
            words: vec![
                word("Hello", 0.0, 0),
                word("there.", 0.5, 0),
                word("Hi", 1.0, 1),
            ],
        };
        let people = vec![Participant {
            id: "p1".into(),
            speaker: 1,
            name: "Ben".into(),
            user_id: None,
            email: None,
        }];
        let text = summary_input(&[topic], &people);
        assert_eq!(
            text,
            "Speaker 0: Hello there.\nBen: Hi\n\n# Participants\n\n- Ben\n"
        );
    }

    #[test]
    fn the_long_summary_has_two_sections() {
        let long = long_summary(
            "All good.",
            &["Budget".into(), "Hiring".into()],
            &["Cut 5%.".into(), "Two roles.".into()],
        );
        assert_eq!(
            long,
            "# Quick recap\n\nAll good.\n\n# Summary\n\n**Budget**\nCut 5%.\n\n**Hiring**\nTwo roles.\n\n"
        );
    }

    #[test]
    fn guards_catch_invention_and_echo() {
        let source = "the quarterly budget review covers hiring plans for the support team and travel spending";
        assert!(grounded("Quarterly budget review", source) > 0.9);
        assert!(grounded("Launch of the Mars rocket programme", source) < 0.3);
        // Nothing of the meeting in it: not grounded (the doc and the guards rely on 0.0).
        assert_eq!(grounded("OK.", source), 0.0);
        assert_eq!(grounded("", source), 0.0);
        assert!(echoes(
            "covers hiring plans for the support team",
            source,
            6
        ));
        assert!(!echoes("Budget review and hiring", source, 6));
        assert!(repeats(
            "a fix for slow search is planned. slow search is planned for next month.",
            4
        ));
        assert!(!repeats(
            "Slow search gets an incremental index next month.",
            4
        ));
        assert_eq!(
            strip_opening("During the meeting, the team agreed."),
            "The team agreed."
        );
    }

    #[test]
    fn names_map_to_participants_case_insensitively() {
        let people = vec![Participant {
            id: "p1".into(),
            speaker: 0,
            name: "Ana Lima".into(),
            user_id: None,
            email: None,
        }];
        assert_eq!(participant_id(&people, Some("ana lima")), json!("p1"));
        assert_eq!(participant_id(&people, Some("Ana")), Value::Null);
        assert_eq!(participant_id(&people, None), Value::Null);
    }
}
