//! The summary activities (docs/contracts/pipeline.md §4.7–§4.12), one module per step family:
//! [`topics`] (`detect_topics`, `detect_chunk_topic`, `save_topics`), [`title`]
//! (`generate_title`), [`subjects`] (`extract_subjects`, `generate_detailed_summary`),
//! [`recap`] (`generate_recap`) and [`actions`] (`identify_action_items`).
//!
//! Each reads what it needs by key or from the transcript row, so payloads stay small; each
//! result is checkpointed by (step, input, LLM identity, prompt version), so a retry, reset
//! or re-run never pays for the same call twice. Database writes and events happen after the
//! checkpoint, on every run (they are idempotent, and a re-run starts from an empty log).
//!
//! The prompts are in [`super::prompts`]. Every answer goes through the guard-and-fallback
//! policy of [`super::guard`]: a step states its guard and its extractive fallback and never
//! asks which backend answered; the result's `method` says what produced it.

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

pub mod actions;
pub mod recap;
pub mod subjects;
pub mod title;
pub mod topics;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

pub use self::actions::{ActionItemsInput, ActionItemsOutput};
pub use self::recap::{RecapInput, RecapOutput, SubjectParagraph, long_summary};
pub use self::subjects::{SubjectInput, SubjectSummary, SubjectsOutput, summary_input};
pub use self::title::{TitleOutput, clean_title};
pub use self::topics::{
    ChunkInput, ChunkPlan, ChunkTopic, PlanInput, PlanOutput, SaveTopicsInput, SaveTopicsOutput,
    chunk_words, plan_chunks, words_text,
};
pub use super::guard::{Method, grounded};
use super::{Llm, prompts};
use crate::checkpoint::{Checkpoints, Origin};
use crate::error::ActivityFailure;
use crate::events::Events;
use crate::storage::Storage;
use crate::transcript::{Participant, Topic, Word};
use crate::usage::{Usage, ledger};

/// The summary steps, declared (`crate::step`): each module declares its own steps (events,
/// cost, and for an LLM step the embedded model's answer budget).
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    [
        topics::declare,
        title::declare,
        subjects::declare,
        recap::declare,
        actions::declare,
    ]
    .into_iter()
    .fold(catalog, |c, declare| declare(c))
}

/// The summary steps' declarations alone (what [`super::Llm`] reads an LLM step's budget
/// from), built once.
pub fn declarations() -> &'static workflow::Catalog {
    static CATALOG: std::sync::LazyLock<workflow::Catalog> =
        std::sync::LazyLock::new(|| declare(workflow::Catalog::new()));
    &CATALOG
}

/// Input of the steps that work from the transcript row alone (`generate_title`,
/// `extract_subjects`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TranscriptInput {
    /// The transcript.
    pub transcript_id: String,
}

/// The summary activities.
pub struct SummaryActivities {
    storage: Storage,
    checkpoints: Checkpoints,
    events: Events,
    llm: Arc<Llm>,
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
        json!({"llm": self.llm.config().identity(), "prompts": prompts::VERSION})
    }

    async fn words(&self, key: &str) -> Result<Vec<Word>, ActivityFailure> {
        serde_json::from_slice(&self.storage.get(key).await?)
            .map_err(|e| ActivityFailure::InvalidInput(format!("{key} is not a word list: {e}")))
    }

    /// A stored text (the summary input) and its digest, which checkpoint keys include: new
    /// text under the same key is a new question.
    async fn text(&self, key: &str) -> Result<(String, String), ActivityFailure> {
        let text = String::from_utf8_lossy(&self.storage.get(key).await?).into_owned();
        let digest = digest(&text);
        Ok((text, digest))
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

    /// Run `work` through the checkpoint store, each of its LLM calls checkpointed on its own
    /// ([`crate::llm::calls`]); a stored result counts as a checkpoint hit and its usage is
    /// marked as not spent now.
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
        // Each LLM call of the work is checkpointed too (`llm::calls`).
        let calls = crate::llm::calls::StepCalls {
            checkpoints: self.checkpoints.clone(),
            transcript_id: tid.to_owned(),
            step: step.to_owned(),
            identity: self.identity(),
        };
        let (mut out, origin) = crate::llm::calls::in_step(
            calls,
            self.checkpoints.checkpointed(
                tid,
                step,
                input,
                &self.identity(),
                |_: &O| Vec::new(),
                work,
            ),
        )
        .await?;
        if origin == Origin::Stored {
            ledger().checkpoint_hit();
            out.usage_mut().from_checkpoint = true;
        }
        Ok(out)
    }
}

/// Hex SHA-256 of `bytes`.
fn digest(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(sha2::Sha256::digest(bytes.as_ref()))
}

/// Results that carry a [`Usage`] (each step module implements it for its results).
trait HasUsage {
    fn usage_mut(&mut self) -> &mut Usage;
}

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
