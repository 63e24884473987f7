//! Topic detection (§4.7): `detect_topics` plans chunks of the merged words by the meeting's
//! length, `detect_chunk_topic` titles and summarises one chunk, `save_topics` stores the
//! topics on the transcript and emits one `TOPIC` event each.

use serde::{Deserialize, Serialize};
use temporalio_sdk::activities::ActivityContext;

use super::{Method, SummaryActivities, digest};
use crate::error::ActivityFailure;
use crate::llm::guard::{summary_ok, title_ok};
use crate::llm::{extractive, prompts};
use crate::transcript::{Topic, Word};
use crate::usage::Usage;

/// Chunk size bounds in words (§4.7).
const MIN_CHUNK: usize = 375;
const MAX_CHUNK: usize = 1500;
/// Older Reflector's fixed chunk size.
const FIXED_CHUNK: usize = 300;

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

/// A topic answer as the LLM may spell it.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct TopicAnswer {
    #[serde(alias = "Title")]
    title: String,
    #[serde(alias = "Summary")]
    summary: String,
}

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

/// Consecutive chunks of `size` words over `words`. A reflow decision against §4.7 ("the last
/// may be short"): a last chunk under a quarter of `size` joins the one before it. Seen on the
/// demo meeting: the last 8 of 383 words ("to hire, and faster search next month") made a
/// topic of their own, titled from half a sentence, at the price of an LLM call.
pub fn plan_chunks(words: &[Word], size: usize) -> Vec<ChunkPlan> {
    let size = size.max(1);
    let mut starts: Vec<usize> = (0..words.len()).step_by(size).collect();
    if starts.len() > 1 && words.len() - starts[starts.len() - 1] < size / 4 {
        starts.pop();
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .copied()
        .chain(std::iter::once(words.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .enumerate()
        .map(|(chunk_index, (start, end))| ChunkPlan {
            chunk_index,
            word_start: start,
            word_end: end,
            timestamp: words[start].start,
            duration: words[end - 1].end - words[start].start,
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

impl SummaryActivities {
    pub(super) async fn plan(&self, input: &PlanInput) -> Result<PlanOutput, ActivityFailure> {
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
        let key = (input, duration_s, digest(&bytes));
        let (out, _) = self
            .checkpoints
            .checkpointed(
                tid,
                SummaryActivities::detect_topics.name(),
                &key,
                &serde_json::json!({"chunking": "v2"}),
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

    pub(super) async fn chunk_topic(
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
        let key = (input, digest(&text));
        self.checkpointed(
            tid,
            SummaryActivities::detect_chunk_topic.name(),
            &key,
            || async {
                let validate = |a: &TopicAnswer| {
                    if super::clean_title(&a.title).len() < 10 {
                        return Err("`title` must have at least 10 characters".to_owned());
                    }
                    if a.summary.trim().len() < 10 {
                        return Err("`summary` must have at least 10 characters".to_owned());
                    }
                    Ok(())
                };
                let answered = self
                    .llm
                    .answer_json(
                        ctx,
                        prompts::CHUNK_TOPIC,
                        prompts::CHUNK_TOPIC_SCHEMA,
                        &text,
                        0.9,
                        validate,
                        |a: TopicAnswer| {
                            (super::clean_title(&a.title), a.summary.trim().to_owned())
                        },
                        |(title, summary)| title_ok(title, &text) && summary_ok(summary, &text),
                        || (extractive::title(&text, 8), extractive::summary(&text, 2)),
                    )
                    .await?;
                let (title, summary) = answered.value;
                Ok(ChunkTopic {
                    chunk_index: input.chunk_index,
                    title,
                    summary,
                    method: answered.method,
                    usage: answered.usage,
                })
            },
        )
        .await
    }

    pub(super) async fn save(
        &self,
        input: &SaveTopicsInput,
    ) -> Result<SaveTopicsOutput, ActivityFailure> {
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
                .publish(
                    SummaryActivities::save_topics.name(),
                    tid,
                    crate::events::Event::Topic,
                    data,
                )
                .await?;
        }
        Ok(SaveTopicsOutput {
            topic_count: topics.len(),
        })
    }
}

/// The topic steps, declared (`crate::step`): the plan is computed from the words (kept,
/// no vendor paid), each chunk's title and summary is one LLM call (a small JSON object), and
/// `save_topics` publishes one `TOPIC` per topic.
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    use crate::step::{Cost, Declare as _, Event, Step};
    catalog
        .declare(
            SummaryActivities::detect_topics,
            Step::costing(Cost::Computed),
        )
        .declare(
            SummaryActivities::detect_chunk_topic,
            Step::costing(Cost::Llm {
                embedded_max_tokens: 96,
            }),
        )
        .declare(
            SummaryActivities::save_topics,
            Step::FREE.emitting(&[Event::Topic]),
        )
}

impl super::HasUsage for ChunkTopic {
    fn usage_mut(&mut self) -> &mut Usage {
        &mut self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, start: f64) -> Word {
        Word {
            text: format!(" {text}"),
            start,
            end: start + 0.3,
            speaker: 0,
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
        let words: Vec<Word> = (0..1000).map(|i| word("w", i as f64)).collect();
        let plan = plan_chunks(&words, 375);
        assert_eq!(plan.len(), 3);
        assert_eq!((plan[2].word_start, plan[2].word_end), (750, 1000));
        assert_eq!(plan[1].timestamp, 375.0);
        assert!((plan[0].duration - 374.3).abs() < 1e-9);
        assert!(plan_chunks(&[], 375).is_empty());
        // A tail under a quarter of a chunk joins the chunk before it.
        let plan = plan_chunks(&words[..383], 375);
        assert_eq!(plan.len(), 1);
        assert_eq!((plan[0].word_start, plan[0].word_end), (0, 383));
        let plan = plan_chunks(&words[..470], 375);
        assert_eq!(plan.len(), 2);
        assert_eq!((plan[1].word_start, plan[1].word_end), (375, 470));
        assert_eq!(plan_chunks(&words[..50], 375).len(), 1);
        assert_eq!(words_text(&words[..2]), "w w");
    }
}
