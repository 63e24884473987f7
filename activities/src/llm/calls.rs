//! Each LLM call of a step, checkpointed on its own.
//!
//! A summary step checkpoints its result when it ends, but many steps ask several questions on
//! the way: a transcript too long for the context window is condensed part by part, a detailed
//! summary asks once per subject, an invalid answer is asked again. A retry after the third
//! call failed (a vendor's 503, a worker killed) used to ask the first two again, and the
//! vendor was paid twice for them: the soak counted 19 such calls in 1,820
//! (bench/results/soak.md). Inside a step's checkpointed work ([`in_step`], which
//! `SummaryActivities::checkpointed` sets around it), every call is checkpointed too: by its
//! activity id (the same for every attempt; two activities of one step asking the same
//! question at once, as parallel subject summaries condensing one transcript do, must not
//! write one object together), step, messages, temperature and JSON mode, under `llm-call`
//! (a short name: keys stay well inside what every object store takes) and the LLM's identity,
//! in the transcript's checkpoint generation (a reprocess asks anew). A
//! retry takes the answers it already has and asks only the rest; an answer taken from a
//! checkpoint spends nothing.
//!
//! The notes a long transcript's parts are condensed into ([`shared`]) are one question for
//! every step, so they are checkpointed without the step: under `llm-notes`, by their messages
//! and temperature alone, and asked at most once at a time in a process (a second step asking
//! the same part waits for the first one's answer instead of reading the part again). An hour's
//! transcript is then read once, where five steps used to read it five times.
//!
//! Outside a step's scope (benchmarks, unit tests) calls are not checkpointed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::{Value, json};

use super::Message;
use crate::checkpoint::{Checkpoints, Origin};
use crate::error::ActivityFailure;
use crate::usage::Usage;

/// Where the calls of one step attempt are checkpointed.
#[derive(Debug, Clone)]
pub struct StepCalls {
    /// The checkpoint store.
    pub checkpoints: Checkpoints,
    /// The transcript (the checkpoints' scope).
    pub transcript_id: String,
    /// The step (activity type).
    pub step: String,
    /// The LLM identity and prompt version the step's own checkpoint is keyed by.
    pub identity: Value,
}

/// The checkpoint name of every call (`{transcript}/pipeline/checkpoints/llm-call-{hash}.json`).
const CALL_SLOT: &str = "llm-call";

/// The checkpoint name of a part's notes, shared by the steps (`llm-notes-{hash}.json`).
const NOTES_SLOT: &str = "llm-notes";

/// The notes being asked in this process, by transcript and question: one at a time.
static ASKING: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Mutex::default);

tokio::task_local! {
    static STEP_CALLS: StepCalls;
}

/// Run `work` (a step's checkpointed work) with each of its LLM calls checkpointed in `calls`.
pub async fn in_step<F: Future>(calls: StepCalls, work: F) -> F::Output {
    STEP_CALLS.scope(calls, work).await
}

/// The answer to one call of the activity `activity_id`: stored, or asked with `ask` and
/// stored.
pub(super) async fn checkpointed<F, Fut>(
    activity_id: &str,
    messages: &[Message],
    temperature: f64,
    json_mode: bool,
    ask: F,
) -> Result<(String, Usage), ActivityFailure>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(String, Usage), ActivityFailure>>,
{
    let Ok(calls) = STEP_CALLS.try_with(Clone::clone) else {
        return ask().await;
    };
    let question = json!({
        "step": calls.step, "activity": activity_id, "messages": messages,
        "temperature": temperature, "json": json_mode
    });
    kept(&calls, CALL_SLOT, &question, &calls.identity, ask).await
}

/// The answer to a question every step of a transcript asks alike (a part's notes): stored
/// under the transcript, or asked with `ask` (by one caller at a time in this process) and
/// stored. Outside a step's scope it is just asked.
pub(super) async fn shared<F, Fut>(
    messages: &[Message],
    temperature: f64,
    ask: F,
) -> Result<(String, Usage), ActivityFailure>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(String, Usage), ActivityFailure>>,
{
    let Ok(calls) = STEP_CALLS.try_with(Clone::clone) else {
        return ask().await;
    };
    let question = json!({"messages": messages, "temperature": temperature});
    let key = format!(
        "{}/{}",
        calls.transcript_id,
        crate::checkpoint::canonical_json(&question).unwrap_or_default()
    );
    let lock = ASKING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key.clone())
        .or_default()
        .clone();
    let answer = {
        let _one_at_a_time = lock.lock().await;
        kept(&calls, NOTES_SLOT, &question, &calls.identity["llm"], ask).await
    };
    // The last one out forgets the question.
    let mut asking = ASKING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if Arc::strong_count(&lock) == 2 {
        asking.remove(&key);
    }
    drop(asking);
    answer
}

/// The answer to `question` kept in `slot` under `config` in the transcript's checkpoints, or
/// asked with `ask` and kept; a kept answer spends nothing now.
async fn kept<F, Fut>(
    calls: &StepCalls,
    slot: &str,
    question: &Value,
    config: &Value,
    ask: F,
) -> Result<(String, Usage), ActivityFailure>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(String, Usage), ActivityFailure>>,
{
    let (answer, origin) = calls
        .checkpoints
        .checkpointed(
            &calls.transcript_id,
            slot,
            question,
            config,
            |_: &(String, Usage)| Vec::new(),
            ask,
        )
        .await?;
    let step = calls.step.as_str();
    Ok(match origin {
        Origin::Computed => answer,
        Origin::Stored => {
            tracing::info!(step, "LLM answer taken from its checkpoint");
            let (text, usage) = answer;
            (
                text,
                Usage {
                    backend: usage.backend,
                    from_checkpoint: true,
                    ..Usage::default()
                },
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::storage::{Storage, StorageConfig};

    fn usage() -> Usage {
        Usage {
            backend: "openai:m".into(),
            calls: 1,
            prompt_tokens: 10,
            ..Usage::default()
        }
    }

    fn step_calls(dir: &std::path::Path, step: &str) -> StepCalls {
        StepCalls {
            checkpoints: Checkpoints::new(
                Storage::open(&StorageConfig::from_vars(
                    &format!("file://{}", dir.display()),
                    &|_| None,
                ))
                .unwrap(),
            ),
            transcript_id: "t1".into(),
            step: step.into(),
            identity: json!({"llm": "openai:m", "prompts": step}),
        }
    }

    #[tokio::test]
    async fn a_part_s_notes_are_asked_once_for_every_step_even_at_the_same_time() {
        let dir = tempfile::tempdir().unwrap();
        let asked = AtomicU32::new(0);
        let ask = || async {
            asked.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Ok(("notes".to_owned(), usage()))
        };
        let part = [Message::system("notes of"), Message::user("part 1")];
        let (a, b) = tokio::join!(
            in_step(
                step_calls(dir.path(), "extract_subjects"),
                shared(&part, 0.2, ask)
            ),
            in_step(
                step_calls(dir.path(), "identify_action_items"),
                shared(&part, 0.2, ask)
            ),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(asked.load(Ordering::SeqCst), 1, "asked once");
        assert_eq!((a.0.as_str(), b.0.as_str()), ("notes", "notes"));
        assert_ne!(a.1.from_checkpoint, b.1.from_checkpoint, "one of them paid");
        let later = in_step(
            step_calls(dir.path(), "generate_detailed_summary"),
            shared(&part, 0.2, ask),
        )
        .await
        .unwrap();
        assert!(later.1.from_checkpoint && later.1.calls == 0);
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert!(ASKING.lock().unwrap().is_empty(), "nothing left behind");
    }

    #[tokio::test]
    async fn a_retried_step_asks_only_the_calls_it_has_no_answer_for() {
        let dir = tempfile::tempdir().unwrap();
        let calls = step_calls(dir.path(), "generate_detailed_summary");
        let asked = AtomicU32::new(0);
        let ask = |n: u32| {
            let asked = &asked;
            move || async move {
                asked.fetch_add(1, Ordering::SeqCst);
                if n == 2 {
                    Err(ActivityFailure::Transient("503".into()))
                } else {
                    Ok((format!("answer {n}"), usage()))
                }
            }
        };
        let q = |n: u32| [Message::user(format!("question {n}"))];
        // The first attempt: its first call answered, its second refused (a 503).
        let first = in_step(calls.clone(), async {
            checkpointed("a1", &q(1), 0.2, false, ask(1)).await?;
            checkpointed("a1", &q(2), 0.2, false, ask(2)).await
        })
        .await;
        assert!(first.is_err());
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        // The retry: the first answer comes from its checkpoint, spending nothing.
        let (text, u) = in_step(calls.clone(), checkpointed("a1", &q(1), 0.2, false, ask(1)))
            .await
            .unwrap();
        assert_eq!(
            (text.as_str(), u.calls, u.from_checkpoint),
            ("answer 1", 0, true)
        );
        assert_eq!(asked.load(Ordering::SeqCst), 2, "not asked again");
        // Another temperature, or another activity of the step, is another question; outside
        // a step nothing is kept.
        in_step(calls.clone(), checkpointed("a1", &q(1), 0.9, false, ask(1)))
            .await
            .unwrap();
        in_step(calls, checkpointed("a2", &q(1), 0.2, false, ask(1)))
            .await
            .unwrap();
        checkpointed("a1", &q(1), 0.2, false, ask(1)).await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 5);
    }
}
