//! The Conductor view of `pipelines/diarization.yaml` itself (docs/contracts/conductor-status.md,
//! field by field), on meetings that go through the whole production path: a signed Daily webhook,
//! the production definition with shortened timeouts, stand-in backends.
//!
//! - a completed 3-track meeting: every ref the spec's fork/join table names, members
//!   `{step}_{i}` also inside the track children, JOINs over all members, the workflow output
//!   `{transcript_id, title, summary, duration, word_count}`, the child's own view;
//! - a track whose transcription fails once: two rows, `retriedTaskId` linked, the JOIN
//!   `IN_PROGRESS` while the retry waits; the mix and the waveform done before the last
//!   transcription (the seed's DAG);
//! - a transcription refused for good: the FAILED task, `reasonForIncompletion`,
//!   `failedReferenceTaskNames` (also with `includeTasks=false`), no internal `mark_failed`;
//! - a silent meeting without Zulip: the LLM steps skipped by `when:` and the Zulip post
//!   skipped for missing configuration are SKIPPED rows, and PIPELINE_PROGRESS agrees;
//! - a cancelled meeting, one of whose transcriptions an operator paused first: PAUSED with
//!   the operator's reason, then TERMINATED with its rows and JOIN CANCELED;
//! - a track waiting out a retry backoff, retried through `POST …/retry` (an activity reset:
//!   Temporal counts from attempt 1 again): the FAILED attempt keeps its row and its `taskId`,
//!   the new attempt is a row of its own chained to it; the transcript reprocessed afterwards
//!   (a new run under the same id) lists only the new run's rows;
//! - track children started on a queue no worker serves yet: the transcription FORK and an
//!   IN_PROGRESS JOIN before any member has a row; then `merge_transcripts` (a local step) with
//!   a row while it runs and while it waits to retry, before its marker is in the history.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reflow_tests::meetings::{Stack, voices};
use reflow_tests::standins::Reply;
use serde_json::Value;

async fn get(stack: &Stack, path: &str) -> Value {
    reqwest::get(format!("http://{}/api/workflow/{path}", stack.api))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `GET /api/workflow/{id}/graph.svg`: each drawn step's state, by (graph, step id).
async fn graph_states(
    stack: &Stack,
    id: &str,
) -> std::collections::BTreeMap<(String, String), String> {
    let r = reqwest::get(format!("http://{}/api/workflow/{id}/graph.svg", stack.api))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'"),
        "nothing in the drawing may run"
    );
    let svg = r.text().await.unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    doc.descendants()
        .filter(|n| n.attribute("class") == Some("step") && n.attribute("data-graph").is_some())
        .map(|n| {
            (
                (
                    n.attribute("data-graph").unwrap().to_owned(),
                    n.attribute("data-step").unwrap().to_owned(),
                ),
                n.attribute("data-state").unwrap_or("none").to_owned(),
            )
        })
        .collect()
}

fn tasks(w: &Value) -> Vec<Value> {
    w["tasks"].as_array().cloned().unwrap_or_default()
}

fn refs(w: &Value) -> Vec<String> {
    tasks(w)
        .iter()
        .map(|t| t["referenceTaskName"].as_str().unwrap().to_owned())
        .collect()
}

fn rows_of<'a>(tasks: &'a [Value], reference: &str) -> Vec<&'a Value> {
    tasks
        .iter()
        .filter(|t| t["referenceTaskName"] == reference)
        .collect()
}

/// The FORK, members and JOIN of a fan-out: FORK right before its first member, JOIN right
/// after its last, `forkedTasks` = `joinOn` = `members` (in order); the JOIN's status.
fn fan_out(w: &Value, fork: &str, join: &str, members: &[String]) -> String {
    let refs = refs(w);
    let tasks = tasks(w);
    let at = |r: &str| {
        refs.iter()
            .position(|x| x == r)
            .unwrap_or_else(|| panic!("no row {r} in {refs:?}"))
    };
    let positions: Vec<usize> = refs
        .iter()
        .enumerate()
        .filter(|(_, r)| members.contains(r))
        .map(|(i, _)| i)
        .collect();
    assert!(!positions.is_empty(), "no member of {fork}: {refs:?}");
    assert_eq!(
        at(fork) + 1,
        positions[0],
        "{fork} right before its first member: {refs:?}"
    );
    assert_eq!(
        at(join),
        positions.last().unwrap() + 1,
        "{join} right after its last member: {refs:?}"
    );
    let f = &tasks[at(fork)];
    let j = &tasks[at(join)];
    assert_eq!(
        (f["taskType"].as_str(), f["status"].as_str()),
        (Some("FORK"), Some("COMPLETED"))
    );
    assert_eq!(f["taskDefName"], "FORK");
    assert_eq!(j["taskType"], "JOIN");
    assert_eq!(
        f["inputData"]["forkedTasks"],
        serde_json::json!(members),
        "{f}"
    );
    assert_eq!(
        f["inputData"]["forkedTaskDefs"].as_array().map(Vec::len),
        Some(members.len())
    );
    assert_eq!(j["inputData"]["joinOn"], serde_json::json!(members), "{j}");
    let first = members
        .iter()
        .flat_map(|m| rows_of(&tasks, m))
        .filter_map(|r| r["scheduledTime"].as_i64())
        .min();
    assert_eq!(
        f["scheduledTime"].as_i64(),
        first,
        "a FORK's time is its first member's"
    );
    j["status"].as_str().unwrap().to_owned()
}

/// A meeting of `tracks` synthesized tracks on an in-process stack whose transcription
/// stand-in answers after `asr_latency` (hold the guard for the whole test).
async fn meeting(
    prefix: &str,
    tracks: usize,
    asr_latency: Duration,
) -> (
    tokio::sync::MutexGuard<'static, ()>,
    Stack,
    reflow_tests::InProcessWorker,
    reflow_tests::meetings::Meeting,
) {
    let one = reflow_tests::meetings::exclusive().await;
    let (stack, worker) = reflow_tests::meetings::in_process(asr_latency, false).await;
    let dir = tempfile::tempdir().unwrap().keep();
    let m = stack.meeting(prefix, 0, &voices(&dir, tracks)).await;
    (one, stack, worker, m)
}

/// The status of the transcription JOIN over `n` tracks (with [`fan_out`]'s checks).
fn transcriptions(w: &Value, n: usize) -> String {
    fan_out(
        w,
        "fork_transcription",
        "join_transcription",
        &indexed("transcribe_track", n),
    )
}

fn indexed(step: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{step}_{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_completed_three_track_meeting_reads_as_the_spec_draws_it() {
    let (_one, stack, _worker, m) = meeting("conductor", 3, Duration::from_millis(50)).await;
    let (tid, out) = stack.run(&m).await;
    out.unwrap_or_else(|e| panic!("the meeting fails: {e}"));
    let wf = &m.workflow_id;
    let w = get(&stack, wf).await;
    let t = stack.db.transcript(&tid).await.unwrap();

    // The run's graph: every step of the pinned definition drawn completed, the child's too.
    let states = graph_states(&stack, wf).await;
    assert_eq!(
        states.len(),
        20,
        "19 steps and the child's transcription: {states:?}"
    );
    assert!(states.values().all(|s| s == "completed"), "{states:?}");
    assert_eq!(
        states[&("TrackProcessing".to_owned(), "transcribe_track".to_owned())],
        "completed"
    );

    // The workflow (§2).
    assert_eq!(w["workflowId"], wf.as_str());
    assert_eq!(w["workflowName"], "DiarizationPipeline");
    assert_eq!(w["workflowVersion"], 2);
    assert_eq!(w["correlationId"], tid.as_str());
    assert_eq!(w["status"], "COMPLETED");
    assert!(w["endTime"].as_i64() >= w["startTime"].as_i64() && w["startTime"].as_i64() > Some(0));
    assert_eq!(w["createTime"], w["startTime"]);
    assert_eq!(w["input"]["recording_id"], m.recording_id.as_str());
    assert!(
        w["input"]["pipeline_hash"]
            .as_str()
            .is_some_and(|h| h.len() >= 16),
        "{}",
        w["input"]
    );
    assert!(
        w["input"].get("pipeline").is_none(),
        "the definition is not repeated in input"
    );
    let output = &w["output"];
    assert_eq!(
        output.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "transcript_id",
            "title",
            "summary",
            "duration",
            "word_count"
        ],
        "{output}"
    );
    assert_eq!(output["transcript_id"], tid.as_str());
    assert_eq!(output["title"].as_str(), t.title.as_deref());
    assert!(
        output["title"]
            .as_str()
            .is_some_and(|x| x.contains("Release")),
        "{output}"
    );
    assert_eq!(output["summary"].as_str(), t.short_summary.as_deref());
    assert!(output["word_count"].as_u64() > Some(30), "{output}");
    assert_eq!(w["failedReferenceTaskNames"], serde_json::json!([]));
    assert_eq!(w["failedTaskNames"], serde_json::json!([]));
    assert!(w.get("reasonForIncompletion").is_none());
    assert!(w.get("parentWorkflowId").is_none());
    assert_eq!(w["lastRetriedTime"], 0);
    assert_eq!(
        (w["priority"].clone(), w["variables"].clone()),
        (0.into(), serde_json::json!({}))
    );

    // The rows (§3): the spec's refs, every member indexed, nothing internal.
    let refs = refs(&w);
    let simple = [
        "get_recording",
        "get_participants",
        "merge_transcripts",
        "mixdown_tracks",
        "generate_waveform",
        "detect_topics",
        "save_topics",
        "generate_title",
        "extract_subjects",
        "generate_recap",
        "identify_action_items",
        "finalize",
        "cleanup_consent",
        "post_zulip",
        "send_webhook",
    ];
    let chunks: Vec<String> = refs
        .iter()
        .filter(|r| r.starts_with("detect_chunk_topic_"))
        .cloned()
        .collect();
    let subjects: Vec<String> = refs
        .iter()
        .filter(|r| r.starts_with("generate_detailed_summary_"))
        .cloned()
        .collect();
    assert_eq!(chunks, indexed("detect_chunk_topic", chunks.len()));
    assert_eq!(
        subjects,
        indexed("generate_detailed_summary", 2),
        "two subjects from the stand-in"
    );
    let mut expected: BTreeSet<String> = simple.iter().map(|s| s.to_string()).collect();
    expected.extend(indexed("pad_track", 3));
    expected.extend(indexed("transcribe_track", 3));
    expected.extend(chunks.iter().cloned());
    expected.extend(subjects.iter().cloned());
    for r in [
        "fork_track_padding",
        "join_padding",
        "fork_transcription",
        "join_transcription",
        "fork_topic_chunks",
        "join_topic_chunks",
        "fork_subjects",
        "join_subjects",
    ] {
        expected.insert(r.to_owned());
    }
    assert_eq!(
        refs.iter().cloned().collect::<BTreeSet<_>>(),
        expected,
        "{refs:?}"
    );
    assert_eq!(refs.len(), expected.len(), "one row per ref: {refs:?}");
    assert_eq!(&refs[..2], ["get_recording", "get_participants"]);
    assert_eq!(
        fan_out(
            &w,
            "fork_track_padding",
            "join_padding",
            &indexed("pad_track", 3)
        ),
        "COMPLETED"
    );
    assert_eq!(transcriptions(&w, 3), "COMPLETED");
    assert_eq!(
        fan_out(&w, "fork_topic_chunks", "join_topic_chunks", &chunks),
        "COMPLETED"
    );
    assert_eq!(
        fan_out(&w, "fork_subjects", "join_subjects", &subjects),
        "COMPLETED"
    );

    let tasks = tasks(&w);
    let mut last_time = 0;
    for (i, t) in tasks.iter().enumerate() {
        let r = t["referenceTaskName"].as_str().unwrap();
        assert_eq!(t["seq"], i + 1);
        assert_eq!(t["status"], "COMPLETED", "{t}");
        assert_eq!(
            (t["retryCount"].clone(), t["retried"].clone()),
            (0.into(), false.into()),
            "{r}"
        );
        assert_eq!(t["executed"], true);
        assert_eq!(
            t["workflowType"],
            if r.starts_with("transcribe_track") {
                "TrackProcessing"
            } else {
                "DiarizationPipeline"
            }
        );
        assert_eq!(t["correlationId"], tid.as_str(), "{r}");
        if t["taskType"] == "JOIN" {
            continue;
        }
        // Sorted by scheduled time (a JOIN sits after its last member instead).
        let scheduled = t["scheduledTime"].as_i64().unwrap();
        assert!(scheduled >= last_time, "{r} out of order: {refs:?}");
        last_time = scheduled;
        if t["taskType"] == "FORK" {
            continue;
        }
        let start = t["startTime"].as_i64().unwrap();
        assert!(
            start >= scheduled && t["endTime"].as_i64().unwrap() >= start,
            "{t}"
        );
        assert_eq!(t["firstStartTime"], start, "attempt 1 starts the step: {r}");
        assert_eq!(t["queueWaitTime"], start - scheduled);
        assert_eq!(t["pollCount"], 1);
        assert!(t["workerId"].as_str().is_some_and(|w| !w.is_empty()), "{r}");
        assert!(t["responseTimeoutSeconds"].as_i64() > Some(0), "{r}");
        assert_eq!(t["workflowTask"]["taskReferenceName"], r);
        assert_eq!(t["workflowTask"]["type"], "SIMPLE");
        assert_eq!(t["taskType"], t["taskDefName"]);
        assert!(
            t["outputData"].is_object() && t["inputData"].is_object(),
            "{r}"
        );
    }
    // Padding runs in the run itself; transcription in one child per track, whose rows carry
    // it. Members are indexed by track; the activity type is the step's.
    for i in 0..3 {
        let pad = rows_of(&tasks, &format!("pad_track_{i}"))[0];
        assert_eq!(pad["taskType"], "pad_track");
        assert_eq!(pad["inputData"]["track_index"], i);
        assert_eq!(pad["workflowInstanceId"], wf.as_str());
        let row = rows_of(&tasks, &format!("transcribe_track_{i}"))[0];
        assert_eq!(row["taskType"], "transcribe_track");
        assert_eq!(row["inputData"]["track_index"], i);
        assert_eq!(
            row["inputData"]["padded_key"],
            pad["outputData"]["padded_key"]
        );
        assert_eq!(
            row["inputData"]["track_workflow_id"],
            format!("{wf}-track-{i}")
        );
        assert_eq!(row["workflowInstanceId"], format!("{wf}-track-{i}"));
    }
    // The mix needs the padded tracks only (the seed's DAG): it is scheduled after
    // join_padding, not after the transcriptions.
    let pads_done = (0..3)
        .map(|i| {
            rows_of(&tasks, &format!("pad_track_{i}"))[0]["endTime"]
                .as_i64()
                .unwrap()
        })
        .max()
        .unwrap();
    let mix = rows_of(&tasks, "mixdown_tracks")[0];
    assert!(mix["scheduledTime"].as_i64().unwrap() >= pads_done);
    let webhook = rows_of(&tasks, "send_webhook")[0];
    assert_eq!(webhook["workflowTask"]["retryCount"], 30, "31 attempts");
    assert_eq!(webhook["workflowTask"]["optional"], true);
    assert_eq!(webhook["outputData"]["action"], "delivered");
    let join = rows_of(&tasks, "join_transcription")[0];
    for i in 0..3 {
        assert!(
            join["outputData"][format!("transcribe_track_{i}")]["words_key"].is_string(),
            "{join}"
        );
    }
    let def: Vec<&str> = w["workflowDefinition"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskReferenceName"].as_str().unwrap())
        .collect();
    for r in [
        "get_recording",
        "fork_track_padding",
        "join_padding",
        "fork_transcription",
        "join_transcription",
        "fork_subjects",
        "send_webhook",
    ] {
        assert!(def.contains(&r), "{r} in the definition: {def:?}");
    }
    assert!(!def.contains(&"mark_failed") && !refs.contains(&"mark_failed".to_owned()));

    // A track child shows its row, the same as in the parent's view, with its parent.
    let child = get(&stack, &format!("{wf}-track-1")).await;
    assert_eq!(child["workflowName"], "TrackProcessing");
    assert_eq!(child["parentWorkflowId"], wf.as_str());
    assert_eq!(child["correlationId"], tid.as_str());
    assert_eq!(child["status"], "COMPLETED");
    assert_eq!(refs_of(&child), ["transcribe_track_1"]);
    for row in tasks_of(&child) {
        let mut mine = row.clone();
        let mut parents = rows_of(&tasks, row["referenceTaskName"].as_str().unwrap())[0].clone();
        mine["seq"] = 0.into();
        parents["seq"] = 0.into();
        parents["inputData"]
            .as_object_mut()
            .unwrap()
            .remove("track_workflow_id");
        assert_eq!(mine, parents);
    }

    // The status route.
    let s = get(&stack, &format!("{wf}/status?includeOutput=true")).await;
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(s["output"], *output);
    assert!(s.get("variables").is_none());

    // PIPELINE_PROGRESS of the same run: every one of the 13 steps completed.
    let progress = stack.db.progress_events(&tid).await.unwrap();
    let done: Vec<i64> = progress
        .iter()
        .filter(|p| p["step_status"] == "completed")
        .map(|p| p["step_index"].as_i64().unwrap())
        .collect();
    assert_eq!(done, (1..=13).collect::<Vec<_>>(), "{progress:#?}");

    // The replay guard: these histories replay against this build (and are the committed
    // fixtures, recorded by `just record-histories`).
    reflow_tests::replay_live(&stack.client, &[wf, &format!("{wf}-track-0")]).await;
}

fn refs_of(w: &Value) -> Vec<String> {
    refs(w)
}

fn tasks_of(w: &Value) -> Vec<Value> {
    tasks(w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_track_failing_once_reads_as_two_rows_and_the_join_waits_for_it() {
    // Transcriptions take 3 s, so the other tracks still run while the failed one retries.
    let (_one, stack, _worker, m) = meeting("conductor-retry", 3, Duration::from_secs(3)).await;
    stack.backends.asr.then(Reply::status(503));
    let tid = stack.deliver(&m).await;
    let wf = m.workflow_id.clone();

    // Watch the view while the meeting runs.
    let mut waited = 0;
    let mut finished = false;
    for _ in 0..600 {
        let w = get(&stack, &wf).await;
        let tasks = tasks(&w);
        let failed_first = tasks.iter().any(|t| {
            t["referenceTaskName"]
                .as_str()
                .is_some_and(|r| r.starts_with("transcribe_track_"))
                && t["status"] == "FAILED"
                && t["retryCount"] == 0
        });
        let join = rows_of(&tasks, "join_transcription")
            .first()
            .map(|j| j["status"].clone());
        let members_done = (0..3).all(|i| {
            rows_of(&tasks, &format!("transcribe_track_{i}"))
                .last()
                .is_some_and(|r| r["status"] == "COMPLETED")
        });
        if let Some(join) = &join {
            if !members_done {
                assert_eq!(join, "IN_PROGRESS", "a member still runs: {tasks:#?}");
            }
            if failed_first && !members_done {
                waited += 1;
            }
        }
        if w["status"] != "RUNNING" {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(finished, "the meeting ends");
    assert!(
        waited > 0,
        "the view showed the failed attempt while the JOIN waited"
    );

    let w = get(&stack, &wf).await;
    assert_eq!(w["status"], "COMPLETED", "{}", w["reasonForIncompletion"]);
    assert_eq!(w["failedReferenceTaskNames"], serde_json::json!([]));
    let tasks = tasks(&w);
    let retried: Vec<String> = (0..3)
        .map(|i| format!("transcribe_track_{i}"))
        .filter(|r| rows_of(&tasks, r).len() == 2)
        .collect();
    assert_eq!(retried.len(), 1, "one track was retried: {:?}", refs(&w));
    let rows = rows_of(&tasks, &retried[0]);
    let (first, second) = (rows[0], rows[1]);
    assert_eq!(first["status"], "FAILED", "{first}");
    assert_eq!(first["retried"], true);
    assert_eq!(first["retryCount"], 0);
    assert!(
        first["reasonForIncompletion"]
            .as_str()
            .is_some_and(|r| r.contains("503")),
        "{first}"
    );
    assert!(first["endTime"].as_i64() > Some(0));
    assert_eq!(second["status"], "COMPLETED");
    assert_eq!(second["retryCount"], 1);
    assert_eq!(second["retried"], false);
    assert_eq!(second["retriedTaskId"], first["taskId"]);
    assert_ne!(second["taskId"], first["taskId"]);
    assert_eq!(
        second["firstStartTime"], first["startTime"],
        "the step first started with attempt 1"
    );
    assert!(second["scheduledTime"].as_i64() >= first["endTime"].as_i64());
    assert_eq!(transcriptions(&w, 3), "COMPLETED");
    let t = stack.db.transcript(&tid).await.unwrap();
    assert_eq!(t.status, "ended");

    // The mix and the waveform ran while tracks were still being transcribed (3 s each).
    let last_transcription = (0..3)
        .flat_map(|i| rows_of(&tasks, &format!("transcribe_track_{i}")))
        .filter_map(|r| r["endTime"].as_i64())
        .max()
        .unwrap();
    for step in ["mixdown_tracks", "generate_waveform"] {
        let row = rows_of(&tasks, step)[0];
        assert!(
            row["endTime"].as_i64().unwrap() < last_transcription,
            "{step} ended before the last transcription: {row}"
        );
    }
    let child = rows_of(&tasks, &retried[0])[0]["workflowInstanceId"]
        .as_str()
        .unwrap()
        .to_owned();
    reflow_tests::replay_live(&stack.client, &[&wf]).await;
    reflow_tests::replay_live_as(&stack.client, &child, "diarization-conductor-retry-track").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transcription_refused_for_good_names_the_failed_task() {
    let (_one, stack, _worker, m) = meeting("conductor-fail", 3, Duration::from_secs(2)).await;
    stack.backends.asr.then(Reply::status(401));
    let (tid, out) = stack.run(&m).await;
    assert!(out.is_err(), "the meeting fails");
    let wf = &m.workflow_id;
    let w = get(&stack, wf).await;
    let tasks = tasks(&w);
    assert_eq!(w["status"], "FAILED");
    let failed: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["status"] == "FAILED_WITH_TERMINAL_ERROR")
        .collect();
    assert_eq!(failed.len(), 1, "{tasks:#?}");
    let task = failed[0];
    let reference = task["referenceTaskName"].as_str().unwrap().to_owned();
    let reference = reference.as_str();
    assert!(reference.starts_with("transcribe_track_"), "{reference}");
    let reason = task["reasonForIncompletion"].as_str().unwrap();
    assert!(reason.contains("401"), "{reason}");
    assert_eq!(
        w["failedReferenceTaskNames"],
        serde_json::json!([reference])
    );
    assert_eq!(
        w["failedTaskNames"],
        serde_json::json!(["transcribe_track"])
    );
    assert_eq!(
        w["reasonForIncompletion"],
        format!("step {reference} failed: {reason}")
    );
    assert_eq!(transcriptions(&w, 3), "FAILED");
    // Drawn the same: the refused track's step and the fan-out that started it failed.
    let states = graph_states(&stack, wf).await;
    let state = |g: &str, s: &str| states[&(g.to_owned(), s.to_owned())].as_str();
    assert_eq!(
        state("TrackProcessing", "transcribe_track"),
        "failed",
        "{states:?}"
    );
    assert_eq!(
        state("DiarizationPipeline", "process_tracks"),
        "failed",
        "{states:?}"
    );
    assert_eq!(state("DiarizationPipeline", "get_recording"), "completed");
    // The other tracks finished or were cancelled with the run; nothing after the fan-out ran;
    // the failure hook is internal.
    for t in &tasks {
        let r = t["referenceTaskName"].as_str().unwrap();
        if r.starts_with("transcribe_track_") && r != reference {
            assert!(
                matches!(t["status"].as_str(), Some("COMPLETED" | "CANCELED")),
                "{t}"
            );
        }
        assert!(
            t["status"].as_str() != Some("IN_PROGRESS")
                && t["status"].as_str() != Some("SCHEDULED"),
            "{t}"
        );
    }
    let refs = refs(&w);
    for r in ["merge_transcripts", "finalize", "mark_failed"] {
        assert!(!refs.contains(&r.to_owned()), "{r}: {refs:?}");
    }
    let bare = get(&stack, &format!("{wf}?includeTasks=false")).await;
    assert_eq!(bare["tasks"], serde_json::json!([]));
    assert_eq!(
        bare["failedReferenceTaskNames"],
        w["failedReferenceTaskNames"]
    );
    assert_eq!(bare["reasonForIncompletion"], w["reasonForIncompletion"]);
    // The transcript says the same.
    let t = stack.db.transcript(&tid).await.unwrap();
    assert_eq!(t.status, "error");
    assert!(t.error.unwrap_or_default().contains("401"));
    reflow_tests::replay_live_as(&stack.client, wf, "diarization-conductor-fail-failed").await;

    // A retry (§4) resets the run to before the failed track's child; the rest answers from
    // checkpoints, the track is transcribed again (the stand-in now accepts), the run ends.
    // Tracks cut off when the run failed had no result to keep: they are transcribed again too.
    let cut_off = tasks
        .iter()
        .filter(|t| t["taskType"] == "transcribe_track" && t["status"] == "CANCELED")
        .count();
    let asked = stack.backends.asr_call_count();
    let started = w["startTime"].clone();
    let answer = reqwest::Client::new()
        .post(format!("http://{}/api/workflow/{wf}/retry", stack.api))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        reflow::runs::wait(&stack.client, wf),
    )
    .await
    .expect("the retried run ends");
    out.unwrap_or_else(|e| panic!("the retried run fails: {e}"));
    let w = get(&stack, wf).await;
    assert_eq!(w["status"], "COMPLETED", "{}", w["reasonForIncompletion"]);
    // The run started when the meeting was first processed, not at the reset (seen equal to
    // lastRetriedTime when the description's start time was taken).
    assert_eq!(w["startTime"], started);
    assert!(
        w["lastRetriedTime"].as_i64() > w["startTime"].as_i64(),
        "{w}"
    );
    assert_eq!(w["failedReferenceTaskNames"], serde_json::json!([]));
    // The failed attempt stays in the list; the retried one follows it (§4).
    let after = tasks_of(&w);
    let rows = rows_of(&after, reference);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[0]["status"], "FAILED_WITH_TERMINAL_ERROR");
    assert_eq!(rows[0]["retried"], true);
    assert!(
        rows[0]["reasonForIncompletion"]
            .as_str()
            .is_some_and(|r| r.contains("401"))
    );
    assert_eq!(rows[1]["status"], "COMPLETED");
    assert_eq!(rows[1]["retriedTaskId"], rows[0]["taskId"]);
    assert_eq!(rows[1]["retryCount"], 1);
    // A track cut off after its transcription was stored (its answer reached the stand-in
    // while the run was being failed; the row reads CANCELED) is served from its checkpoint:
    // so at most the cut-off tracks, and at least the refused one, are transcribed again.
    let again = stack.backends.asr_call_count() - asked;
    assert!(
        (1..=1 + cut_off).contains(&again),
        "only the refused track (and tracks cut off) are transcribed again: {again} calls, \
         {cut_off} cut off"
    );
    let t = stack.db.transcript(&tid).await.unwrap();
    assert_eq!((t.status.as_str(), t.error.as_deref()), ("ended", None));
    reflow_tests::replay_live_as(&stack.client, wf, "diarization-conductor-fail-reset").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_meeting_is_terminated_with_its_rows_cancelled() {
    // Transcriptions take a minute: the run is cancelled while they run.
    let (_one, stack, _worker, m) = meeting("conductor-cancel", 2, Duration::from_secs(60)).await;
    stack.deliver(&m).await;
    let wf = m.workflow_id.clone();
    reflow_tests::wait_for("transcriptions run", Duration::from_secs(60), || async {
        let w = get(&stack, &wf).await;
        tasks(&w)
            .iter()
            .any(|t| t["taskType"] == "transcribe_track" && t["status"] == "IN_PROGRESS")
            .then_some(())
    })
    .await;
    // An operator pauses track 0's transcription (§5.3): that child, whose only activity it
    // is, reads PAUSED, and the row names the operator's reason, in both views.
    {
        use temporalio_client::NamespacedClient;
        use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
        use temporalio_common::protos::temporal::api::workflowservice::v1::{
            PauseActivityRequest, pause_activity_request,
        };
        let request = PauseActivityRequest {
            namespace: stack.client.namespace(),
            execution: Some(WorkflowExecution {
                workflow_id: format!("{wf}-track-0"),
                run_id: String::new(),
            }),
            identity: "operator".into(),
            activity: Some(pause_activity_request::Activity::Id(
                "transcribe_track_0".into(),
            )),
            reason: "ASR down".into(),
            ..Default::default()
        };
        stack
            .client
            .connection()
            .workflow_service()
            .pause_activity(tonic::Request::new(request))
            .await
            .unwrap();
    }
    let child = reflow_tests::wait_for("the pause shows", Duration::from_secs(30), || async {
        let c = get(&stack, &format!("{wf}-track-0")).await;
        (c["status"] == "PAUSED").then_some(c)
    })
    .await;
    let row = &tasks(&child)[0];
    assert_eq!(row["reasonForIncompletion"], "paused: ASR down", "{row}");
    let parent = get(&stack, &wf).await;
    assert_eq!(parent["status"], "RUNNING", "track 1 still runs");
    assert_eq!(
        rows_of(&tasks(&parent), "transcribe_track_0")[0]["reasonForIncompletion"],
        "paused: ASR down"
    );
    stack
        .client
        .get_workflow_handle::<temporalio_client::UntypedWorkflow>(&wf)
        .cancel(temporalio_client::WorkflowCancelOptions::default())
        .await
        .unwrap();
    assert!(reflow::runs::wait(&stack.client, &wf).await.is_err());
    let w = reflow_tests::wait_for("the rows settle", Duration::from_secs(30), || async {
        let w = get(&stack, &wf).await;
        tasks(&w)
            .iter()
            .all(|t| !matches!(t["status"].as_str(), Some("IN_PROGRESS" | "SCHEDULED")))
            .then_some(w)
    })
    .await;
    assert_eq!(w["status"], "TERMINATED");
    assert!(
        w["reasonForIncompletion"]
            .as_str()
            .is_some_and(|r| r.starts_with("canceled")),
        "{w}"
    );
    let tasks = tasks(&w);
    for i in 0..2 {
        let rows = rows_of(&tasks, &format!("transcribe_track_{i}"));
        assert_eq!(rows.last().unwrap()["status"], "CANCELED", "{rows:?}");
    }
    assert_eq!(transcriptions(&w, 2), "CANCELED");
    assert_eq!(w["failedReferenceTaskNames"], serde_json::json!([]));
    // Drawn: what ran before the cancel completed, the transcriptions cancelled, the steps
    // after them never run.
    let states = graph_states(&stack, &wf).await;
    let state = |g: &str, s: &str| states[&(g.to_owned(), s.to_owned())].as_str();
    assert_eq!(state("DiarizationPipeline", "get_recording"), "completed");
    assert_eq!(state("DiarizationPipeline", "pad_track"), "completed");
    assert_eq!(
        state("TrackProcessing", "transcribe_track"),
        "cancelled",
        "{states:?}"
    );
    assert_eq!(state("DiarizationPipeline", "finalize"), "skipped");
    reflow_tests::replay_live(&stack.client, &[&wf]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skipped_steps_are_skipped_rows_and_progress_agrees() {
    let _one = reflow_tests::meetings::exclusive().await;
    let dir = tempfile::Builder::new()
        .prefix("reflow-skip-db-")
        .tempdir()
        .unwrap();
    let db_url = format!("sqlite://{}/reflow.db", dir.path().display());
    let backends = reflow_tests::meetings::Backends::start(Duration::from_millis(50)).await;
    let stack = Stack::start(
        &db_url,
        reflow_tests::client().await,
        backends,
        false,
        reflow_tests::meetings::short_timeouts(),
    )
    .await;
    // No Zulip realm: `post_zulip` has nothing to do.
    let mut services = stack.services(100);
    services.zulip.realm = None;
    let queues: Vec<String> = reflow_tests::meetings::QUEUES
        .iter()
        .map(|q| q.to_string())
        .collect();
    let _worker = reflow_tests::InProcessWorker::start_with(&queues, services);
    // Both tracks are silent: no words, so no topics and no LLM step.
    for _ in 0..2 {
        stack
            .backends
            .asr
            .then(Reply::Json(reflow_tests::standins::transcription(&[])));
    }
    let tracks = tempfile::tempdir().unwrap();
    let m = stack
        .meeting("conductor-skip", 0, &voices(tracks.path(), 2))
        .await;
    let (tid, out) = stack.run(&m).await;
    let out = out.unwrap_or_else(|e| panic!("the meeting fails: {e}"));
    assert_eq!(out["word_count"], 0, "{out}");
    let w = get(&stack, &m.workflow_id).await;
    assert_eq!(w["status"], "COMPLETED");
    let tasks = tasks(&w);
    // No chunk to fan out over (§3.2): the FORK and a COMPLETED JOIN joining nothing.
    let refs_now = refs(&w);
    let fork = refs_now
        .iter()
        .position(|r| r == "fork_topic_chunks")
        .unwrap_or_else(|| panic!("{refs_now:?}"));
    assert_eq!(refs_now[fork + 1], "join_topic_chunks", "{refs_now:?}");
    let (f, j) = (&tasks[fork], &tasks[fork + 1]);
    assert_eq!(
        (f["taskType"].as_str(), f["status"].as_str()),
        (Some("FORK"), Some("COMPLETED"))
    );
    assert_eq!(f["inputData"]["forkedTasks"], serde_json::json!([]));
    assert_eq!(
        (j["taskType"].as_str(), j["status"].as_str()),
        (Some("JOIN"), Some("COMPLETED"))
    );
    assert_eq!(j["inputData"]["joinOn"], serde_json::json!([]));
    assert!(
        !refs_now.iter().any(|r| r.starts_with("detect_chunk_topic")),
        "{refs_now:?}"
    );
    for step in [
        "generate_title",
        "extract_subjects",
        "generate_detailed_summary",
        "generate_recap",
        "identify_action_items",
    ] {
        let rows = rows_of(&tasks, step);
        assert_eq!(rows.len(), 1, "{step}: {:?}", refs(&w));
        assert_eq!(rows[0]["status"], "SKIPPED", "{}", rows[0]);
        assert_eq!(rows[0]["executed"], true);
        assert!(
            rows[0]["reasonForIncompletion"]
                .as_str()
                .is_some_and(|r| r.starts_with("skipped: ")),
            "{}",
            rows[0]
        );
    }
    let zulip = rows_of(&tasks, "post_zulip");
    assert_eq!(zulip[0]["status"], "SKIPPED", "{}", zulip[0]);
    assert_eq!(
        zulip[0]["reasonForIncompletion"],
        "skipped: ZULIP_REALM is not set"
    );
    assert_eq!(rows_of(&tasks, "send_webhook")[0]["status"], "COMPLETED");
    assert_eq!(w["failedReferenceTaskNames"], serde_json::json!([]));
    // Sorted: a skipped step sits where it was decided, after what it needed.
    let refs = refs(&w);
    let at = |r: &str| refs.iter().position(|x| x == r).unwrap();
    assert!(
        at("save_topics") < at("generate_title") && at("generate_title") < at("finalize"),
        "{refs:?}"
    );

    // PIPELINE_PROGRESS: the skipped steps report `completed` with `skipped`
    // (docs/contracts/events-and-api.md §4): topics (8, nothing to do), title and summaries (9),
    // Zulip (12).
    let progress = stack.db.progress_events(&tid).await.unwrap();
    for index in [9, 12] {
        let p = progress
            .iter()
            .find(|p| p["step_index"] == index)
            .unwrap_or_else(|| panic!("step {index}: {progress:#?}"));
        assert_eq!(p["step_status"], "completed", "{p}");
        assert_eq!(p["message"], "skipped", "{p}");
    }
}

/// `pipelines/diarization.yaml` with the tests' short timeouts, `edit`ed.
fn variant(edit: impl Fn(String) -> String) -> workflow::Pipeline {
    let yaml = edit(reflow_tests::meetings::short_timeouts_yaml());
    workflow::parse_and_validate(
        "diarization.yaml",
        &yaml,
        reflow_tests::registry().catalog(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A stack whose intake starts `pipeline` (S3 behind a fault proxy when `proxy`), and a worker
/// serving the meeting queues.
async fn stack_with(
    pipeline: workflow::Pipeline,
    proxy: bool,
) -> (Stack, reflow_tests::InProcessWorker) {
    let dir = tempfile::Builder::new()
        .prefix("reflow-conductor-db-")
        .tempdir()
        .unwrap()
        .keep();
    let db_url = format!("sqlite://{}/reflow.db", dir.display());
    let backends = reflow_tests::meetings::Backends::start(Duration::from_millis(50)).await;
    let stack = Stack::start(
        &db_url,
        reflow_tests::client().await,
        backends,
        proxy,
        pipeline,
    )
    .await;
    let queues: Vec<String> = reflow_tests::meetings::QUEUES
        .iter()
        .map(|q| q.to_string())
        .collect();
    let worker = reflow_tests::InProcessWorker::start_with(&queues, stack.services(100));
    (stack, worker)
}

/// A hyphenated UUID (§3's `taskId`).
fn is_uuid(id: &Value) -> bool {
    id.as_str().is_some_and(|s| {
        s.len() == 36
            && s.char_indices().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            })
    })
}

/// What every view must satisfy: hyphenated task ids, an IN_PROGRESS row's `outputData` without
/// a `null` heartbeat, the workflow's `updateTime` at least every row's.
fn invariants(w: &Value) {
    let newest = tasks(w)
        .iter()
        .map(|t| t["updateTime"].as_i64().unwrap())
        .max()
        .unwrap_or(0);
    assert!(
        w["updateTime"].as_i64().unwrap() >= newest,
        "updateTime {} < {newest}",
        w["updateTime"]
    );
    for t in tasks(w) {
        assert!(is_uuid(&t["taskId"]), "{t}");
        if let Some(h) = t["outputData"].get("heartbeat") {
            assert!(!h.is_null(), "a null heartbeat: {t}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_track_retried_in_backoff_keeps_its_failed_attempt_and_a_reprocess_starts_afresh() {
    let _one = reflow_tests::meetings::exclusive().await;
    // The transcription's next attempt is 10 minutes away: only a retry brings it sooner.
    let pipeline = variant(|y| {
        assert!(y.contains("        task_queue: reflow-asr\n"));
        y.replace(
            "        task_queue: reflow-asr\n",
            "        task_queue: reflow-asr\n        retry: {initial_interval: 600s, maximum_interval: 600s}\n",
        )
    });
    let (stack, _worker) = stack_with(pipeline, false).await;
    let dir = tempfile::tempdir().unwrap().keep();
    let m = stack.meeting("conductor-reset", 0, &voices(&dir, 2)).await;
    stack.backends.asr.then(Reply::status(503));
    let tid = stack.deliver(&m).await;
    let wf = m.workflow_id.clone();

    // Attempt 1 FAILED, attempt 2 SCHEDULED with the backoff's delay (§3.3).
    let (reference, failed_id) = reflow_tests::wait_for(
        "a transcription waiting to retry",
        Duration::from_secs(120),
        || async {
            let w = get(&stack, &wf).await;
            invariants(&w);
            let tasks = tasks(&w);
            (0..2).find_map(|i| {
                let r = format!("transcribe_track_{i}");
                let rows = rows_of(&tasks, &r);
                (rows.len() == 2
                    && rows[0]["status"] == "FAILED"
                    && rows[1]["status"] == "SCHEDULED"
                    && rows[1]["callbackAfterSeconds"].as_i64() > Some(0))
                .then(|| {
                    assert_eq!(rows[1]["retriedTaskId"], rows[0]["taskId"]);
                    assert_eq!(rows[1]["retryCount"], 1);
                    assert_eq!(
                        rows[1]["startDelayInSeconds"],
                        rows[1]["callbackAfterSeconds"]
                    );
                    assert!(
                        rows[1]["callbackAfterSeconds"].as_i64() > Some(500),
                        "{}",
                        rows[1]
                    );
                    (r, rows[0]["taskId"].clone())
                })
            })
        },
    )
    .await;

    // The retry resets the waiting activity (§4): Temporal's attempt count is 1 again.
    let answer = reqwest::Client::new()
        .post(format!("http://{}/api/workflow/{wf}/retry", stack.api))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let mut seen = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let w = loop {
        let w = get(&stack, &wf).await;
        invariants(&w);
        let tasks = tasks(&w);
        let rows = rows_of(&tasks, &reference);
        assert_eq!(rows.len(), 2, "{rows:#?}");
        assert_eq!(
            rows[0]["taskId"], failed_id,
            "the failed attempt keeps its row"
        );
        assert_eq!(
            (rows[0]["status"].as_str(), rows[0]["retryCount"].as_i64()),
            (Some("FAILED"), Some(0))
        );
        assert_eq!(rows[0]["retried"], true);
        assert!(
            rows[0]["reasonForIncompletion"]
                .as_str()
                .is_some_and(|r| r.contains("503")),
            "{}",
            rows[0]
        );
        assert_eq!(rows[1]["retriedTaskId"], failed_id, "{}", rows[1]);
        assert_eq!(rows[1]["retryCount"], 1);
        let status = rows[1]["status"].as_str().unwrap().to_owned();
        assert!(
            matches!(status.as_str(), "SCHEDULED" | "IN_PROGRESS" | "COMPLETED"),
            "{}",
            rows[1]
        );
        if status == "SCHEDULED" {
            assert!(
                rows[1]["callbackAfterSeconds"].as_i64() < Some(5),
                "no backoff now: {}",
                rows[1]
            );
        }
        seen.insert(status);
        if w["status"] != "RUNNING" {
            break w;
        }
        assert!(std::time::Instant::now() < deadline, "the retried run ends");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(w["status"], "COMPLETED", "{}", w["reasonForIncompletion"]);
    assert!(seen.contains("COMPLETED"), "{seen:?}");
    let tasks_after = tasks(&w);
    let rows = rows_of(&tasks_after, &reference);
    assert_eq!(rows[1]["status"], "COMPLETED");
    assert_ne!(rows[1]["taskId"], rows[0]["taskId"]);
    assert_eq!(rows[1]["firstStartTime"], rows[0]["startTime"]);
    assert_eq!(transcriptions(&w, 2), "COMPLETED");
    assert_eq!(w["failedReferenceTaskNames"], serde_json::json!([]));
    // Two rows in the table: the failed attempt and the attempt after the reset.
    let child_id = rows[0]["workflowInstanceId"].as_str().unwrap().to_owned();
    let recorded: Vec<(i64, i64, String)> = stack
        .db
        .attempts(&child_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.activity_id == reference)
        .map(|a| (a.generation, a.attempt, a.status))
        .collect();
    assert_eq!(
        recorded,
        [(0, 1, "failed".to_owned()), (1, 1, "completed".to_owned())]
    );
    // The child's own view says the same.
    let child = get(&stack, &child_id).await;
    let own: Vec<(Value, Value)> = tasks(&child)
        .iter()
        .map(|t| (t["taskId"].clone(), t["status"].clone()))
        .collect();
    assert_eq!(
        own,
        [
            (failed_id.clone(), "FAILED".into()),
            (rows[1]["taskId"].clone(), "COMPLETED".into())
        ]
    );

    // A reprocess: a new run under the same workflow id, a chain of its own (§4). Only its
    // rows are listed: each ref once, nothing retried, nothing from the run before.
    let before: BTreeSet<String> = tasks_after
        .iter()
        .map(|t| t["taskId"].as_str().unwrap().to_owned())
        .collect();
    // `fresh`: a new run that reuses nothing (a plain reprocess is memoized and would start no
    // track child; tests/tests/suite/rerun.rs); `notify`: it posts again (else its notification
    // steps are SKIPPED; tests/tests/suite/rerun_effects.rs).
    let answer = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/transcripts/{tid}/process?fresh=true&notify=true",
            stack.api
        ))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        reflow::runs::wait(&stack.client, &wf),
    )
    .await
    .expect("the reprocess ends");
    out.unwrap_or_else(|e| panic!("the reprocess fails: {e}"));
    let again = get(&stack, &wf).await;
    invariants(&again);
    assert_eq!(again["status"], "COMPLETED");
    assert!(
        again["startTime"].as_i64() > w["endTime"].as_i64(),
        "a new run"
    );
    let refs_again = refs(&again);
    assert_eq!(
        refs_again.iter().collect::<BTreeSet<_>>().len(),
        refs_again.len(),
        "one row per ref: {refs_again:?}"
    );
    for t in tasks(&again) {
        assert_eq!(t["status"], "COMPLETED", "{t}");
        assert_eq!(t["retryCount"], 0, "{t}");
        assert!(t.get("retriedTaskId").is_none(), "{t}");
        assert!(!before.contains(t["taskId"].as_str().unwrap()), "{t}");
        assert!(
            t["firstStartTime"].as_i64() >= again["startTime"].as_i64(),
            "{t}"
        );
    }
    let child = get(&stack, &child_id).await;
    assert_eq!(refs(&child), std::slice::from_ref(&reference));
    assert_eq!(tasks(&child)[0]["retryCount"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fan_out_and_a_local_step_have_rows_from_their_start() {
    let _one = reflow_tests::meetings::exclusive().await;
    // The track children run on a queue of their own, served only later.
    let pipeline = variant(|y| {
        let line = "    description: One participant's track — transcribe its padded audio.\n";
        assert!(y.contains(line));
        y.replace(line, &format!("{line}    task_queue: reflow-tracks\n"))
    });
    let (stack, _worker) = stack_with(pipeline, true).await;
    let dir = tempfile::tempdir().unwrap().keep();
    let m = stack.meeting("conductor-early", 0, &voices(&dir, 2)).await;
    stack.deliver(&m).await;
    let wf = m.workflow_id.clone();

    // The children are started, nothing runs them: FORK and an IN_PROGRESS JOIN over the
    // members to come, side by side, and no member row (§3.2).
    let w = reflow_tests::wait_for("the track children", Duration::from_secs(120), || async {
        let w = get(&stack, &wf).await;
        invariants(&w);
        refs(&w)
            .contains(&"fork_transcription".to_owned())
            .then_some(w)
    })
    .await;
    let r = refs(&w);
    assert!(
        !r.iter().any(|r| r.starts_with("transcribe_track_")),
        "{r:?}"
    );
    let at = r.iter().position(|x| x == "fork_transcription").unwrap();
    assert_eq!(r[at + 1], "join_transcription", "{r:?}");
    let t = tasks(&w);
    let members = serde_json::json!(indexed("transcribe_track", 2));
    assert_eq!(
        (t[at]["taskType"].as_str(), t[at]["status"].as_str()),
        (Some("FORK"), Some("COMPLETED"))
    );
    assert_eq!(t[at]["inputData"]["forkedTasks"], members);
    assert_eq!(t[at + 1]["status"], "IN_PROGRESS");
    assert_eq!(t[at + 1]["inputData"]["joinOn"], members);
    assert!(t[at]["scheduledTime"].as_i64() > Some(0));
    // The definition names the dynamic forks by their fork refs (§2).
    for fork in ["fork_track_padding", "fork_transcription"] {
        let def = w["workflowDefinition"]["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["taskReferenceName"] == fork)
            .unwrap_or_else(|| panic!("{fork} in the definition"))
            .clone();
        assert_eq!(
            (
                def["name"].as_str(),
                def["type"].as_str(),
                def["dynamicForkTasksParam"].as_str()
            ),
            (Some(fork), Some("FORK_JOIN_DYNAMIC"), Some("dynamicTasks")),
            "{def}"
        );
    }
    // A query parameter that does not parse: Conductor's error body (§1).
    for path in [
        format!("{wf}?includeTasks=maybe"),
        format!("{wf}/status?includeOutput=2"),
    ] {
        let r = reqwest::get(format!("http://{}/api/workflow/{path}", stack.api))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.expect("a JSON body");
        assert_eq!(body["status"], 400, "{body}");
        assert_eq!(body["retryable"], false, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(body.get("instance").is_some(), "{body}");
    }

    // The merged words' write is slow and refused once, then slow and let through: the local
    // step `merge_transcripts` runs 4 s, fails, waits 1 s, runs 4 s again.
    let writes = Arc::new(AtomicUsize::new(0));
    let seen_writes = writes.clone();
    stack.s3_proxy.as_ref().unwrap().set_default(move |r| {
        if r.method == "PUT" && r.path.ends_with("/pipeline/words.json") {
            match seen_writes.fetch_add(1, Ordering::SeqCst) {
                0 => Reply::After(Duration::from_secs(4), Box::new(Reply::status(400))),
                1 => Reply::After(Duration::from_secs(4), Box::new(Reply::Forward)),
                _ => Reply::Forward,
            }
        } else {
            Reply::Forward
        }
    });
    let _tracks = reflow_tests::InProcessWorker::start_with(
        &["reflow-tracks".to_owned()],
        stack.services(100),
    );
    let mut states: Vec<Vec<(String, i64)>> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let w = loop {
        let w = get(&stack, &wf).await;
        invariants(&w);
        let t = tasks(&w);
        let rows = rows_of(&t, "merge_transcripts");
        for (n, row) in rows.iter().enumerate() {
            assert_eq!(row["retryCount"], n, "{row}");
            if n > 0 {
                assert_eq!(row["retriedTaskId"], rows[n - 1]["taskId"], "{row}");
            }
        }
        let state: Vec<(String, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r["status"].as_str().unwrap().to_owned(),
                    r["retryCount"].as_i64().unwrap(),
                )
            })
            .collect();
        if states.last() != Some(&state) {
            states.push(state);
        }
        if w["status"] != "RUNNING" {
            break w;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the meeting ends: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    assert_eq!(w["status"], "COMPLETED", "{}", w["reasonForIncompletion"]);
    assert_eq!(
        writes.load(Ordering::SeqCst),
        2,
        "the merged words written twice"
    );
    let s = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
        v.iter().map(|(a, b)| (a.to_string(), *b)).collect()
    };
    // Running before anything about it is in the history; failed and waiting; running again.
    assert!(states.contains(&s(&[("IN_PROGRESS", 0)])), "{states:?}");
    assert!(
        states.contains(&s(&[("FAILED", 0), ("IN_PROGRESS", 1)]))
            || states.contains(&s(&[("FAILED", 0), ("SCHEDULED", 1)])),
        "{states:?}"
    );
    assert_eq!(
        states.last().unwrap(),
        &s(&[("FAILED", 0), ("COMPLETED", 1)]),
        "{states:?}"
    );
    assert_eq!(transcriptions(&w, 2), "COMPLETED");
}
