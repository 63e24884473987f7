//! Memoized re-runs (issue 37 item 1; docs/contracts/events-and-api.md §5.5) of
//! `pipelines/diarization.yaml` on a real dev server, stand-in ASR and LLM, through the
//! production path (a signed Daily webhook, or `reflow process`'s own way of starting a run):
//!
//! - a completed meeting processed again with nothing changed reuses every step but the free
//!   bookkeeping ones (status, participants, saved topics, finalize, consent, notifications):
//!   the new run's history schedules no `pad_track` or `transcribe_track` and starts no track
//!   child, the stand-ins get no request, and the summary names what was not paid again;
//!   `--fresh` transcribes and asks the LLM again;
//! - on a new registered version whose LLM step `generate_title` has another `with:`, only that
//!   step and its dependents run;
//! - the same for a transcript made the way `reflow process` makes one (no recording row), through
//!   `POST /v1/transcripts/{id}/process` (which used to answer 400);
//! - `--from merge_transcripts` runs exactly the merge and everything downstream of it;
//! - the transcription-reuse cases on real speech (espeak-ng) transcribed by the embedded
//!   Whisper (tiny.en) in the worker: nothing changed transcribes nothing and asks the LLM
//!   nothing, a new `generate_title` runs that step and its dependents only, and both summaries
//!   count the meeting's audio as transcription not paid again.
//!
//! Every new run replays against this build's workflow code.

use std::collections::BTreeSet;
use std::time::Duration;

use reflow::rerun::{Outcome, Request};
use reflow_tests::InProcessWorker;
use reflow_tests::meetings::{Stack, talking, voices};
use workflow::interpreter::memo::Rerun;

pub(super) async fn stack() -> (Stack, InProcessWorker) {
    reflow_tests::meetings::in_process(Duration::from_millis(50), false).await
}

/// The main graph's step ids.
pub(super) fn steps(stack: &Stack) -> BTreeSet<String> {
    stack
        .intake
        .pipeline
        .main
        .steps
        .iter()
        .map(|s| s.id.clone())
        .collect()
}

pub(super) fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// The bookkeeping steps (free: status, participants, topics saved, consent, notifications),
/// which every run runs again.
pub(super) const FREE: [&str; 7] = [
    "get_recording",
    "get_participants",
    "save_topics",
    "finalize",
    "cleanup_consent",
    "post_zulip",
    "send_webhook",
];

/// The steps that ran (or were skipped by their `when:`).
fn ran(s: &reflow::rerun::Summary) -> BTreeSet<String> {
    s.steps_run
        .iter()
        .chain(&s.steps_skipped)
        .cloned()
        .collect()
}

/// Process transcript `tid` again as `req` asks, wait for the run, and return its summary
/// (what `reflow rerun` prints).
async fn rerun(stack: &Stack, tid: &str, req: &Request) -> reflow::rerun::Summary {
    let t = stack.db.transcript(tid).await.unwrap();
    let outcome = reflow::rerun::rerun(&stack.client, &stack.events, Some(&stack.intake), &t, req)
        .await
        .unwrap_or_else(|e| panic!("rerun {tid}: {e}"));
    assert!(matches!(outcome, Outcome::Ok { .. }), "{outcome:?}");
    finished(stack, tid, &outcome).await
}

async fn finished(stack: &Stack, tid: &str, outcome: &Outcome) -> reflow::rerun::Summary {
    let wf = outcome.workflow_id();
    let ended = tokio::time::timeout(
        Duration::from_secs(300),
        reflow::runs::wait(&stack.client, wf),
    )
    .await
    .unwrap_or_else(|_| panic!("{wf} does not close"));
    assert!(ended.is_ok(), "{wf}: {ended:?}");
    let summary = reflow::rerun::summarize(&stack.client, &stack.db, tid, outcome, true)
        .await
        .unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&summary).unwrap());
    reflow_tests::replay_live(&stack.client, &[wf]).await;
    summary
}

/// What the latest run of `wf` scheduled: activity types (local steps included) and the
/// child workflows it started.
async fn scheduled(stack: &Stack, wf: &str) -> (BTreeSet<String>, usize) {
    let run = reflow::history::load(&stack.client, wf).await.unwrap();
    (
        run.steps.iter().map(|s| s.activity_type.clone()).collect(),
        run.children.len(),
    )
}

fn llm_requests(stack: &Stack) -> usize {
    stack.backends.llm_calls().values().map(Vec::len).sum()
}

/// A finished meeting through Daily intake: its transcript id and workflow id.
pub(super) async fn meeting(stack: &Stack, prefix: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let tracks = voices(dir.path(), 2);
    let m = stack.meeting(prefix, 0, &tracks).await;
    let (tid, out) = stack.run(&m).await;
    assert!(out.is_ok(), "{out:?}");
    (tid, m.workflow_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_completed_meeting_processed_again_with_nothing_changed_runs_no_paid_step() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) = stack().await;
    let (tid, wf) = meeting(&stack, "rerun-same").await;
    let (asr, llm) = (stack.backends.asr_call_count(), llm_requests(&stack));
    assert!(asr > 0 && llm > 0);

    let s = rerun(&stack, &tid, &Request::default()).await;
    let (types, children) = scheduled(&stack, &wf).await;
    assert!(
        !types.contains("pad_track") && !types.contains("transcribe_track"),
        "{types:?}"
    );
    assert_eq!(children, 0, "no track child is started");
    assert!(
        types.is_subset(&set(&FREE)),
        "only bookkeeping runs: {types:?}"
    );
    assert_eq!(stack.backends.asr_call_count(), asr, "no new transcription");
    assert_eq!(llm_requests(&stack), llm, "no new LLM call");
    assert_eq!(ran(&s), set(&FREE), "{s:?}");
    let reused: BTreeSet<String> = s.steps_reused.iter().cloned().collect();
    assert_eq!(reused, &steps(&stack) - &set(&FREE), "{s:?}");
    assert!(reused.contains("process_tracks") && reused.contains("generate_title"));
    assert!(
        s.transcription_s_saved > 0.0,
        "the tracks' transcription is not paid again: {s:?}"
    );
    assert!(s.llm_tokens_saved > 0, "{s:?}");
    let t = stack.db.transcript(&tid).await.unwrap();
    assert_eq!(t.status, "ended");
    assert!(t.title.as_deref().is_some_and(|x| !x.is_empty()));
    // The Conductor view: a reused step is COMPLETED, marked in its outputData.
    let view: serde_json::Value = reqwest::get(format!("http://{}/api/workflow/{wf}", stack.api))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "COMPLETED", "{view}");
    let tasks = view["tasks"].as_array().cloned().unwrap_or_default();
    for reused in [
        "pad_track",
        "process_tracks",
        "merge_transcripts",
        "generate_title",
    ] {
        let t = tasks
            .iter()
            .find(|t| t["referenceTaskName"] == reused)
            .unwrap_or_else(|| panic!("a row for {reused}: {tasks:#?}"));
        assert_eq!(t["status"], "COMPLETED", "{t}");
        assert_eq!(t["outputData"]["reused"], true, "{t}");
    }

    // --fresh reuses nothing: the tracks are transcribed again.
    let s = rerun(
        &stack,
        &tid,
        &Request {
            rerun: Rerun {
                fresh: true,
                ..Rerun::default()
            },
            ..Request::default()
        },
    )
    .await;
    assert!(s.steps_reused.is_empty(), "{s:?}");
    assert!(stack.backends.asr_call_count() > asr, "transcribed again");
    assert!(llm_requests(&stack) > llm, "asked again");
    assert_eq!(stack.db.transcript(&tid).await.unwrap().status, "ended");
}

/// Register version 3 (generate_title's `with:` written differently), process `tid` again on
/// it, and check that only that step and its dependents ran: no padding, no transcription, no
/// track child in the history of `wf`. Its summary.
async fn on_a_new_title(stack: &Stack, tid: &str, wf: &str) -> reflow::rerun::Summary {
    reflow_tests::register_in(&stack.db, &reflow_tests::meetings::title_changed()).await;
    let s = rerun(
        stack,
        tid,
        &Request {
            version: Some(3),
            ..Request::default()
        },
    )
    .await;
    let dependents = &set(&["generate_title"]) | &set(&FREE);
    assert_eq!(ran(&s), dependents, "{s:?}");
    let reused: BTreeSet<String> = s.steps_reused.iter().cloned().collect();
    assert_eq!(reused, &steps(stack) - &dependents, "{s:?}");
    let (types, children) = scheduled(stack, wf).await;
    assert!(
        !types.contains("pad_track") && !types.contains("transcribe_track") && children == 0,
        "{types:?}"
    );
    assert!(types.contains("generate_title"), "{types:?}");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_version_with_another_llm_step_runs_only_that_step_and_its_dependents() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) = stack().await;
    let (tid, wf) = meeting(&stack, "rerun-title").await;
    let asr = stack.backends.asr_call_count();

    let s = on_a_new_title(&stack, &tid, &wf).await;
    assert_eq!(stack.backends.asr_call_count(), asr);
    assert!(s.transcription_s_saved > 0.0, "{s:?}");
    let run = reflow::history::load(&stack.client, &wf).await.unwrap();
    assert_eq!(
        run.input["version"], 3,
        "the run is on the version asked for"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn from_merge_transcripts_reruns_exactly_the_merge_and_what_follows_it() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) = stack().await;
    let (tid, wf) = meeting(&stack, "rerun-from").await;
    let asr = stack.backends.asr_call_count();
    let s = rerun(
        &stack,
        &tid,
        &Request {
            rerun: Rerun {
                from: Some("merge_transcripts".into()),
                ..Rerun::default()
            },
            ..Request::default()
        },
    )
    .await;
    let before = set(&[
        "pad_track",
        "process_tracks",
        "mixdown_tracks",
        "generate_waveform",
    ]);
    let reused: BTreeSet<String> = s.steps_reused.iter().cloned().collect();
    assert_eq!(reused, before, "{s:?}");
    assert_eq!(ran(&s), &steps(&stack) - &before, "{s:?}");
    assert!(s.steps_run.contains(&"merge_transcripts".to_owned()));
    let (types, children) = scheduled(&stack, &wf).await;
    assert!(
        types.contains("merge_transcripts")
            && !types.contains("pad_track")
            && !types.contains("transcribe_track")
            && children == 0,
        "{types:?}"
    );
    assert_eq!(stack.backends.asr_call_count(), asr);

    // An unknown step is refused before anything starts.
    let t = stack.db.transcript(&tid).await.unwrap();
    let refused = reflow::rerun::rerun(
        &stack.client,
        &stack.events,
        Some(&stack.intake),
        &t,
        &Request {
            rerun: Rerun {
                from: Some("no_such_step".into()),
                ..Rerun::default()
            },
            ..Request::default()
        },
    )
    .await;
    assert!(
        matches!(refused, Err(reflow::rerun::RerunError::UnknownStep { .. })),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transcript_made_by_reflow_process_is_processed_again_through_the_api_memoized() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) = stack().await;
    // What `reflow process <dir>` does: tracks copied to the recordings store, a transcript
    // without a recording row, a run started with the local source, the transcript naming it.
    let dir = tempfile::tempdir().unwrap();
    let tracks: Vec<reflow::local::LocalTrack> = voices(dir.path(), 2)
        .into_iter()
        .enumerate()
        .map(|(i, v)| reflow::local::LocalTrack {
            path: v.path.clone(),
            name: Some(format!("Speaker {i}")),
            offset_s: Some(v.offset_s),
        })
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let tid = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        nanos as u32,
        nanos % (1 << 48)
    );
    let recording_id = reflow::local::recording_id(&format!("rerun-{:x}", nanos));

    let input = reflow::local::prepare(
        &tracks,
        None,
        &recording_id,
        &tid,
        &stack.recordings,
        &stack.db,
    )
    .await
    .unwrap();
    let wf = reflow::local::workflow_id(&recording_id);
    let run = reflow::runs::start(&stack.client, &stack.intake.pipeline, input, &wf)
        .await
        .unwrap();
    stack
        .db
        .set_workflow(&tid, &wf, run.run_id.as_deref().unwrap_or_default())
        .await
        .unwrap();
    let first = reflow::runs::wait(&stack.client, &wf).await;
    assert!(first.is_ok(), "{first:?}");
    let t = stack.db.transcript(&tid).await.unwrap();
    assert!(t.recording_id.is_none() && t.status == "ended", "{t:?}");
    let (asr, llm) = (stack.backends.asr_call_count(), llm_requests(&stack));

    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/transcripts/{tid}/process", stack.api);
    let r = http.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["workflow_id"], wf.as_str());
    let outcome = Outcome::Ok {
        workflow_id: wf.clone(),
        run_id: answer["run_id"].as_str().unwrap().to_owned(),
        pipeline: String::new(),
    };
    let s = finished(&stack, &tid, &outcome).await;
    assert_eq!(ran(&s), set(&FREE), "{s:?}");
    let (types, children) = scheduled(&stack, &wf).await;
    assert!(types.is_subset(&set(&FREE)) && children == 0, "{types:?}");
    assert_eq!(stack.backends.asr_call_count(), asr);
    assert_eq!(llm_requests(&stack), llm);

    // `?from=` through the API: the title and what follows run again, nothing else.
    let r = http
        .post(format!("{url}?from=generate_title"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    let outcome = Outcome::Ok {
        workflow_id: wf.clone(),
        run_id: answer["run_id"].as_str().unwrap().to_owned(),
        pipeline: String::new(),
    };
    let s = finished(&stack, &tid, &outcome).await;
    assert_eq!(ran(&s), &set(&["generate_title"]) | &set(&FREE), "{s:?}");
    assert!(llm_requests(&stack) > llm, "a new title is asked for");
    let r = http
        .post(format!("{url}?from=no_such_step"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_speech_transcribed_by_the_embedded_asr_is_not_transcribed_again() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) =
        reflow_tests::meetings::in_process_with(Duration::from_millis(50), false, |s| {
            s.transcriber = reflow_tests::transcriber();
        })
        .await;
    let dir = tempfile::tempdir().unwrap();
    let tracks = [talking(dir.path(), 12), talking(dir.path(), 16)];
    let audio_s: f64 = tracks.iter().map(|v| v.end_s - v.offset_s).sum();
    let m = stack.meeting("rerun-speech", 0, &tracks).await;
    let (tid, out) = stack.run(&m).await;
    assert!(out.is_ok(), "{out:?}");
    let wf = m.workflow_id;
    let (_, children) = scheduled(&stack, &wf).await;
    assert!(children > 0, "the first run transcribes its tracks");
    assert_eq!(
        stack.backends.asr_call_count(),
        0,
        "Whisper, not the stand-in"
    );
    let vtt = stack.db.transcript(&tid).await.unwrap().webvtt;
    let vtt = vtt.unwrap_or_default().to_lowercase();
    let heard = [
        "quarterly",
        "review",
        "support",
        "ticket",
        "mobile",
        "hiring",
    ];
    assert!(
        heard.iter().filter(|w| vtt.contains(*w)).count() >= 2,
        "Whisper heard the speech: {vtt}"
    );
    let llm = llm_requests(&stack);
    assert!(llm > 0);
    // What Whisper was paid for once: the tracks' audio (within 10 %).
    let saved = |s: &reflow::rerun::Summary| {
        assert!(
            (s.transcription_s_saved - audio_s).abs() <= 0.1 * audio_s,
            "{audio_s:.1} s of audio: {s:?}"
        );
    };

    // Nothing changed: no padding, no transcription, no track child, no LLM request.
    let s = rerun(&stack, &tid, &Request::default()).await;
    let (types, children) = scheduled(&stack, &wf).await;
    assert!(
        types.is_subset(&set(&FREE)) && children == 0,
        "only bookkeeping runs: {types:?}"
    );
    assert_eq!(llm_requests(&stack), llm, "no new LLM call");
    assert_eq!(ran(&s), set(&FREE), "{s:?}");
    saved(&s);

    // generate_title's `with:` changed: that step and its dependents run, nothing is transcribed.
    let s = on_a_new_title(&stack, &tid, &wf).await;
    assert!(llm_requests(&stack) > llm, "a new title is asked for");
    saved(&s);
    println!(
        "{audio_s:.1} s of audio; not paid again: {:.1} s of transcription",
        s.transcription_s_saved
    );
}
