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
//! Outside a step's scope (benchmarks, unit tests) calls are not checkpointed.

use std::future::Future;

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
    let (answer, origin) = calls
        .checkpoints
        .checkpointed(
            &calls.transcript_id,
            CALL_SLOT,
            &question,
            &calls.identity,
            |_: &(String, Usage)| Vec::new(),
            ask,
        )
        .await?;
    Ok(match origin {
        Origin::Computed => answer,
        Origin::Stored => {
            tracing::info!(step = %calls.step, "LLM answer taken from its checkpoint");
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

    #[tokio::test]
    async fn a_retried_step_asks_only_the_calls_it_has_no_answer_for() {
        let dir = tempfile::tempdir().unwrap();
        let calls = StepCalls {
            checkpoints: Checkpoints::new(
                Storage::open(&StorageConfig::from_vars(
                    &format!("file://{}", dir.path().display()),
                    &|_| None,
                ))
                .unwrap(),
            ),
            transcript_id: "t1".into(),
            step: "generate_detailed_summary".into(),
            identity: json!({"llm": "openai:m"}),
        };
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
