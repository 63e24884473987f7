//! What a memoized re-run (issue 37 item 1) must not do, on `pipelines/diarization.yaml`
//! meetings through Daily intake (a real dev server, S3, stand-in backends, Zulip and the
//! customer's webhook receiver):
//!
//! - a re-run posts nothing to Zulip and calls no customer webhook unless asked
//!   (`Request::notify`, `reflow rerun --notify`, `?notify=true`): those steps are skipped;
//!   asked, each stand-in gets exactly one request;
//! - memoized results do not outlive the transcript: `DELETE /v1/transcripts/{id}` purges every
//!   memo its runs stored (the index and the ledger too), and a run afterwards reuses nothing
//!   and stores nothing; a consent denial does the same through the run's `cleanup_consent`;
//!   a transcript deleted or denied consent outside reflow (Reflector writes the same
//!   database) has its memos purged by the workers' sweep (`reflow::memo_sweep`), once.
//!
//! And what it must show: the steps it reused are reused on the progress page's table
//! (`PIPELINE_PROGRESS`: completed, message `reused`, the tracks' transcription included though
//! no track child ran) and on the run's graph (`graph.svg`: completed, `data-reused`, "reused
//! from an earlier run").

use std::time::Duration;

use activities::memo::{Memo, index_key};
use activities::memo_purge::ledger_key;
use reflow::rerun::{Outcome, Request};
use reflow_tests::meetings::Stack;
use serde_json::Value;

use super::rerun::{meeting, stack};

/// Start a new run of `tid` as `req` asks and wait for it to close; whether it completed.
async fn rerun(stack: &Stack, tid: &str, req: &Request) -> Result<Value, String> {
    let t = stack.db.transcript(tid).await.unwrap();
    let outcome = reflow::rerun::rerun(&stack.client, &stack.events, Some(&stack.intake), &t, req)
        .await
        .unwrap_or_else(|e| panic!("rerun {tid}: {e}"));
    assert!(matches!(outcome, Outcome::Ok { .. }), "{outcome:?}");
    let wf = outcome.workflow_id();
    let ended = tokio::time::timeout(
        Duration::from_secs(300),
        reflow::runs::wait(&stack.client, wf),
    )
    .await
    .unwrap_or_else(|_| panic!("{wf} does not close"));
    reflow_tests::replay_live(&stack.client, &[wf]).await;
    ended.map_err(|e| e.to_string())
}

/// The steps the latest run of `wf` took from a memo (its memo plan, from its history).
async fn reused(stack: &Stack, wf: &str) -> Vec<String> {
    let run = reflow::history::load(&stack.client, wf).await.unwrap();
    let plan: workflow::interpreter::memo::Plan =
        serde_json::from_value(run.memo_plan.clone()).unwrap_or_default();
    plan.reused.into_keys().collect()
}

/// The memos in the store that a run of `tid` computed.
async fn memos_of(stack: &Stack, tid: &str) -> usize {
    let mut n = 0;
    for key in stack.storage.list("pipeline-memo/").await.unwrap() {
        if key.starts_with("pipeline-memo/sources/") {
            continue;
        }
        let body = stack.storage.get(&key).await.unwrap();
        if serde_json::from_slice::<Memo>(&body).is_ok_and(|m| m.transcript_id == tid) {
            n += 1;
        }
    }
    n
}

/// Whether the transcript's memo index or ledger exists.
async fn indexed(stack: &Stack, tid: &str) -> (bool, bool) {
    (
        stack.storage.exists(&index_key(tid)).await.unwrap(),
        stack.storage.exists(&ledger_key(tid)).await.unwrap(),
    )
}

/// Requests the Zulip stand-in and the webhook receiver got so far.
fn notified(stack: &Stack) -> (usize, usize) {
    (
        stack.backends.zulip.count(),
        stack.backends.receiver.count(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rerun_notifies_zulip_and_the_webhook_again_only_when_asked() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) = stack().await;
    let (tid, wf) = meeting(&stack, "rerun-quiet").await;
    let first = notified(&stack);
    assert!(
        first.0 >= 1 && first.1 >= 1,
        "the first run notified: {first:?}"
    );

    // Not asked: both notification steps are skipped, and the stand-ins hear nothing.
    rerun(&stack, &tid, &Request::default()).await.unwrap();
    assert_eq!(notified(&stack), first, "a re-run notifies no one");
    let run = reflow::history::load(&stack.client, &wf).await.unwrap();
    let types: Vec<&str> = run.steps.iter().map(|s| s.activity_type.as_str()).collect();
    assert!(
        !types.contains(&"post_zulip") && !types.contains(&"send_webhook"),
        "{types:?}"
    );
    assert!(
        types.contains(&"cleanup_consent"),
        "consent still runs: {types:?}"
    );
    let status: Value = reqwest::get(format!("http://{}/api/workflow/{wf}", stack.api))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for step in ["post_zulip", "send_webhook"] {
        let row = status["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["referenceTaskName"] == step)
            .unwrap_or_else(|| panic!("a row for {step}"));
        assert_eq!(row["status"], "SKIPPED", "{row}");
    }

    // Asked: one request each (Zulip updates the message it posted; one delivery).
    rerun(
        &stack,
        &tid,
        &Request {
            notify: true,
            ..Request::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(notified(&stack), (first.0 + 1, first.1 + 1));
    let hooks = stack.backends.webhooks();
    assert_eq!(hooks[&tid].1, 2, "two signed deliveries in all: {hooks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_transcript_purges_its_memos_and_nothing_reuses_them() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) = stack().await;
    let (tid, wf) = meeting(&stack, "purge-delete").await;
    // A second run from generate_title leaves memos the index no longer names (the ledger does).
    rerun(
        &stack,
        &tid,
        &Request {
            rerun: workflow::interpreter::memo::Rerun {
                from: Some("generate_title".into()),
                ..Default::default()
            },
            ..Request::default()
        },
    )
    .await
    .unwrap();
    let stored = memos_of(&stack, &tid).await;
    let index: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&stack.storage.get(&index_key(&tid)).await.unwrap()).unwrap();
    assert!(
        stored > index.len(),
        "{stored} memos, {} indexed",
        index.len()
    );
    assert_eq!(indexed(&stack, &tid).await, (true, true));

    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/transcripts/{tid}", stack.api);
    let answer = http.delete(&url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        serde_json::json!({"status": "ok"})
    );
    assert_eq!(http.get(&url).send().await.unwrap().status(), 404);
    assert_eq!(memos_of(&stack, &tid).await, 0, "every memo of it is gone");
    assert_eq!(indexed(&stack, &tid).await, (false, false));

    // A run afterwards (an operator's `reflow rerun`) has nothing to reuse, and keeps nothing.
    let asr = stack.backends.asr_call_count();
    rerun(&stack, &tid, &Request::default()).await.unwrap();
    assert_eq!(reused(&stack, &wf).await, Vec::<String>::new());
    assert!(stack.backends.asr_call_count() > asr, "transcribed again");
    assert_eq!(memos_of(&stack, &tid).await, 0);
    assert_eq!(indexed(&stack, &tid).await, (false, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consent_denial_purges_the_memos_and_nothing_reuses_them() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) = stack().await;
    let (tid, wf) = meeting(&stack, "purge-consent").await;
    assert!(memos_of(&stack, &tid).await > 0);
    let t = stack.db.transcript(&tid).await.unwrap();
    assert!(!t.audio_deleted);

    // A participant denies consent; the next run's cleanup deletes the audio and the memos,
    // and the run (which reused them before the cleanup) stores none.
    let meeting_id = t.meeting_id.clone().expect("a Daily meeting");
    stack
        .db
        .add_consent(&meeting_id, Some("u-9"), false)
        .await
        .unwrap();
    rerun(&stack, &tid, &Request::default()).await.unwrap();
    assert!(
        !reused(&stack, &wf).await.is_empty(),
        "it reused before the cleanup"
    );
    assert!(stack.db.transcript(&tid).await.unwrap().audio_deleted);
    assert_eq!(memos_of(&stack, &tid).await, 0, "every memo of it is gone");
    assert_eq!(indexed(&stack, &tid).await, (false, false));

    // A later run reuses nothing (its tracks are gone too: it cannot transcribe them).
    let later = rerun(&stack, &tid, &Request::default()).await;
    assert_eq!(reused(&stack, &wf).await, Vec::<String>::new(), "{later:?}");
    assert_eq!(memos_of(&stack, &tid).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reused_steps_show_as_reused_on_the_progress_table_and_the_graph() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) = stack().await;
    let (tid, wf) = meeting(&stack, "rerun-shown").await;
    rerun(&stack, &tid, &Request::default()).await.unwrap();
    assert!(
        reused(&stack, &wf)
            .await
            .contains(&"process_tracks".to_owned())
    );

    // PIPELINE_PROGRESS as the page gets it (the latest state per step index).
    let progress = stack.db.progress_events(&tid).await.unwrap();
    let state = |index: u64| {
        let e = progress
            .iter()
            .find(|e| e["step_index"] == index)
            .unwrap_or_else(|| panic!("index {index}: {progress:#?}"));
        (
            e["step_status"].as_str().unwrap_or_default().to_owned(),
            e["message"].as_str().map(str::to_owned),
        )
    };
    let reused_state = ("completed".to_owned(), Some("reused".to_owned()));
    for (index, what) in [(3, "pad_track"), (6, "transcribe_track"), (9, "LLM steps")] {
        assert_eq!(state(index), reused_state, "{what}");
    }
    assert_eq!(state(10), ("completed".to_owned(), None), "finalize ran");
    assert_eq!(
        state(12),
        ("completed".to_owned(), Some("skipped".to_owned())),
        "post_zulip"
    );

    // The graph: reused nodes completed and marked, the tracks' child graph included.
    let svg = reqwest::get(format!("http://{}/api/workflow/{wf}/graph.svg", stack.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let node = |step: &str| -> String {
        svg.split("<g class=\"step")
            .find(|g| g.contains(&format!("data-step=\"{step}\"")))
            .unwrap_or_else(|| panic!("a node {step}"))
            .split("</g>")
            .next()
            .unwrap()
            .to_owned()
    };
    for step in [
        "pad_track",
        "process_tracks",
        "transcribe_track",
        "merge_transcripts",
        "generate_title",
    ] {
        let n = node(step);
        assert!(
            n.contains("data-state=\"completed\"")
                && n.contains("data-reused=\"true\"")
                && n.contains("reused from an earlier run"),
            "{step}: {n}"
        );
    }
    let finalize = node("finalize");
    assert!(
        finalize.contains("data-state=\"completed\"") && !finalize.contains("data-reused"),
        "{finalize}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_purges_the_memos_of_transcripts_deleted_or_denied_outside_reflow() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) = stack().await;
    let (deleted, _) = meeting(&stack, "sweep-deleted").await;
    let (denied, _) = meeting(&stack, "sweep-denied").await;
    let (kept, _) = meeting(&stack, "sweep-kept").await;
    for tid in [&deleted, &denied, &kept] {
        assert!(memos_of(&stack, tid).await > 0, "{tid}");
    }
    assert_eq!(reflow::memo_sweep::pass(&stack.db, &stack.storage).await, 0);

    // As Reflector's API does it (the same soft delete; reflow's route would also purge).
    assert!(stack.db.delete_transcript(&deleted).await.unwrap());
    let meeting_id = stack
        .db
        .transcript(&denied)
        .await
        .unwrap()
        .meeting_id
        .unwrap();
    stack
        .db
        .add_consent(&meeting_id, Some("u-9"), false)
        .await
        .unwrap();
    assert_eq!(reflow::memo_sweep::pass(&stack.db, &stack.storage).await, 2);
    for tid in [&deleted, &denied] {
        assert_eq!(memos_of(&stack, tid).await, 0, "{tid}");
        assert_eq!(indexed(&stack, tid).await, (false, false), "{tid}");
    }
    assert!(memos_of(&stack, &kept).await > 0, "the others keep theirs");
    assert_eq!(indexed(&stack, &kept).await, (true, true));
    assert_eq!(
        reflow::memo_sweep::pass(&stack.db, &stack.storage).await,
        0,
        "each once"
    );
}
