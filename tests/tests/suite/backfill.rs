//! Backfills (issue 37 item 4): `reflow backfill` on `pipelines/diarization.yaml` runs, on the
//! shared dev server with stand-in backends.
//!
//! - Six meetings processed, then a version whose LLM step `generate_title` changed: a backfill
//!   at most 2 at a time, 4 meetings per workflow run (so it continues as new once), during
//!   which the worker process is SIGKILLed and started again, ends with 6 done, never more
//!   than 2 meetings' runs open at once (from the runs' start and close times), every run a
//!   child of the backfill, no transcription asked again (the stand-in counts its requests),
//!   no Zulip post and no customer webhook.
//! - A dry run lists the meetings of the window (and of one room), and for each the steps that
//!   would run and be reused — the memo plan the run would make — with the estimate of the
//!   LLM step that would run, and changes nothing.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reflow::backfill::{self, preview};
use reflow_tests::meetings::{QUEUES, Stack, WorkerProcess, voices};
use temporalio_client::UntypedWorkflow;

use super::rerun::{FREE, set, steps};

/// Version 3, whose `generate_title` changed (nothing else but bookkeeping runs again on it),
/// registered.
async fn title_changed(stack: &Stack) -> u32 {
    let v3 = reflow_tests::meetings::title_changed();
    reflow_tests::register_in(&stack.db, &v3).await;
    v3.version
}

/// Process `n` meetings of rooms `{prefix}0…`, all at once; their transcript ids.
async fn meetings(stack: &Stack, prefix: &str, n: usize) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let tracks = voices(dir.path(), 2);
    let mut started = Vec::new();
    for i in 0..n {
        let m = stack.meeting(prefix, i, &tracks).await;
        started.push((stack.deliver(&m).await, m.workflow_id));
    }
    for (_, wf) in &started {
        let out = tokio::time::timeout(
            Duration::from_secs(600),
            reflow::runs::wait(&stack.client, wf),
        )
        .await
        .unwrap_or_else(|_| panic!("{wf} does not close"));
        assert!(out.is_ok(), "{wf}: {out:?}");
    }
    started.into_iter().map(|(t, _)| t).collect()
}

/// Start and close of the latest run of `wf`, and its parent's workflow id.
async fn span(client: &temporalio_client::Client, wf: &str) -> (i64, i64, Option<String>) {
    let d = client
        .get_workflow_handle::<UntypedWorkflow>(wf)
        .describe(temporalio_client::WorkflowDescribeOptions::default())
        .await
        .unwrap();
    let info = d.raw_description.workflow_execution_info.unwrap();
    let ms = |t: Option<(i64, i32)>| {
        t.map(|(s, n)| s * 1000 + i64::from(n) / 1_000_000)
            .unwrap_or(i64::MAX)
    };
    (
        ms(info.start_time.map(|t| (t.seconds, t.nanos))),
        ms(info.close_time.map(|t| (t.seconds, t.nanos))),
        info.parent_execution.map(|p| p.workflow_id),
    )
}

/// The most spans open at one moment.
fn peak(spans: &[(i64, i64)]) -> usize {
    let mut edges: Vec<(i64, i32)> = spans
        .iter()
        .flat_map(|(s, e)| [(*s, 1), (*e, -1)])
        .collect();
    edges.sort(); // a close and a start at the same instant: the close first
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    peak as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backfill_of_six_meetings_survives_a_worker_kill_and_transcribes_nothing_again() {
    let _one = reflow_tests::meetings::exclusive().await;
    let dir = tempfile::Builder::new()
        .prefix("reflow-backfill-")
        .tempdir()
        .unwrap()
        .keep();
    let db_url = format!("sqlite://{}/reflow.db", dir.display());
    let backends = reflow_tests::meetings::Backends::start(Duration::from_millis(200)).await;
    let stack = Stack::start(
        &db_url,
        reflow_tests::client().await,
        backends.clone(),
        false,
        reflow_tests::meetings::short_timeouts(),
    )
    .await;
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_reflow-test-worker"));
    let env = stack.worker_env_with_pipelines(&reflow_tests::server().address, &dir);
    let log = dir.join("worker.log");
    eprintln!("backfill: logs in {}", dir.display());
    let mut worker = WorkerProcess::spawn(&binary, &QUEUES, &env, &log);

    let prefix = format!("bf{}", std::process::id());
    let transcripts = meetings(&stack, &prefix, 6).await;
    let version = title_changed(&stack).await;
    let asr = backends.asr_call_count();
    let (zulip, hooks) = (backends.zulip_posts(), backends.webhooks());
    assert!(asr > 0);

    let plan = backfill::Plan {
        selection: backfill::selection("2026-01-01", None).unwrap(),
        version,
        concurrency: 2,
        batch: 4,
    };
    let (id, total) = backfill::start(&stack.client, &stack.db, &plan)
        .await
        .unwrap();
    assert_eq!(total, 6);
    let follower = {
        let (client, id) = (stack.client.clone(), id.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let end = backfill::follow(&client, &id, |p| {
                eprintln!("{id}: {}", backfill::line(p));
                seen.push(p.clone());
            })
            .await;
            (end, seen)
        })
    };
    // Kill the worker while meetings are in flight, then start another.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let p = backfill::progress(&stack.client, &id).await;
        if p.as_ref().is_some_and(|p| !p.running.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "no meeting starts: {p:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("backfill: SIGKILL worker {}", worker.pid());
    worker.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _worker = WorkerProcess::spawn(&binary, &QUEUES, &env, &log);

    let (end, seen) = tokio::time::timeout(Duration::from_secs(600), follower)
        .await
        .expect("the backfill ends within 10 minutes")
        .unwrap();
    let end = end.unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&end).unwrap());
    assert_eq!((end.done, end.failed, end.skipped), (6, 0, 0), "{end:?}");
    assert_eq!(end.total, 6);
    assert!(
        end.runs >= 2,
        "it continued as new after 4 meetings: {end:?}"
    );
    assert!(seen.iter().all(|p| p.running.len() <= 2), "{seen:?}");
    assert_eq!(
        backends.asr_call_count(),
        asr,
        "no transcription is asked again"
    );
    assert!(end.transcription_s_saved > 0.0, "{end:?}");
    // Per meeting: the title and bookkeeping ran (notifications skipped), the rest reused.
    let steps = stack.intake.pipeline.main.steps.len() as u64;
    assert_eq!(
        end.steps_reused,
        6 * (steps - 1 - FREE.len() as u64),
        "{end:?}"
    );
    assert!(end.steps_run >= 6 && end.steps_run <= 6 * 6, "{end:?}");
    assert_eq!(backends.zulip_posts(), zulip, "no Zulip post");
    assert_eq!(backends.webhooks(), hooks, "no customer webhook");

    // At most 2 runs open at once, each a child of the backfill, each on version 3.
    let mut spans = Vec::new();
    let mut workflows = Vec::new();
    for tid in &transcripts {
        let t = stack.db.transcript(tid).await.unwrap();
        assert_eq!(t.status, "ended", "{t:?}");
        let wf = t.workflow_id.clone().unwrap();
        let (start, close, parent) = span(&stack.client, &wf).await;
        assert_eq!(parent.as_deref(), Some(id.as_str()), "{wf}");
        assert!(close != i64::MAX, "{wf} closed");
        let run = reflow::history::load(&stack.client, &wf).await.unwrap();
        assert_eq!(run.input["version"], 3, "{wf}");
        assert!(
            !run.steps
                .iter()
                .any(|s| s.activity_type == "transcribe_track" || s.activity_type == "pad_track"),
            "{wf}"
        );
        spans.push((start, close));
        workflows.push(wf);
    }
    assert!(peak(&spans) <= 2, "{spans:?}");
    // The backfill's last run and the meetings' runs replay against this build.
    let mut ids = vec![id.as_str()];
    ids.extend(workflows.iter().map(String::as_str));
    reflow_tests::replay_live(&stack.client, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_lists_the_meetings_and_the_steps_that_would_run_and_changes_nothing() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) =
        reflow_tests::meetings::in_process(Duration::from_millis(50), false).await;
    let prefix = format!("dry{}-", std::process::id());
    let transcripts = meetings(&stack, &prefix, 2).await;
    let version = title_changed(&stack).await;
    let planner = reflow::cli::backfill::planner(&stack.services(100), &reflow_tests::registry());
    let index = |t: &str| activities::memo::index_key(t);
    let mut before = Vec::new();
    for t in &transcripts {
        before.push(stack.storage.get(&index(t)).await.unwrap());
    }
    let asr = stack.backends.asr_call_count();
    let all = backfill::selection("2026-01-01", None).unwrap();

    let plan = preview::dry_run(&stack.client, &stack.db, &planner, &all, version)
        .await
        .unwrap();
    eprintln!("{}", reflow::cli::backfill::render(&plan));
    let listed: BTreeSet<String> = plan
        .meetings
        .iter()
        .map(|m| m.transcript_id.clone())
        .collect();
    assert_eq!(listed, transcripts.iter().cloned().collect::<BTreeSet<_>>());
    let steps = steps(&stack);
    let notifications = set(&["post_zulip", "send_webhook"]);
    let runs = &(&set(&["generate_title"]) | &set(&FREE)) - &notifications;
    for m in &plan.meetings {
        assert_eq!(m.skipped, None, "{m:?}");
        assert!(m.pipeline.starts_with("DiarizationPipeline v3 "), "{m:?}");
        assert_eq!(
            m.run.iter().cloned().collect::<BTreeSet<_>>(),
            runs,
            "{m:?}"
        );
        assert_eq!(
            m.not_run.iter().cloned().collect::<BTreeSet<_>>(),
            notifications,
            "a re-run notifies no one: {m:?}"
        );
        assert_eq!(
            m.reused.iter().cloned().collect::<BTreeSet<_>>(),
            &(&steps - &runs) - &notifications,
            "{m:?}"
        );
        assert!(m.estimate.llm_tokens > 0, "the title's tokens: {m:?}");
        assert_eq!(m.estimate.transcription_s, 0.0, "{m:?}");
        assert!(m.saved.transcription_s > 0.0, "{m:?}");
        assert!(m.room.as_deref().is_some_and(|r| r.starts_with(&prefix)));
    }
    // On the version the meetings ran, only bookkeeping would run, at no cost.
    let same = preview::dry_run(&stack.client, &stack.db, &planner, &all, 2)
        .await
        .unwrap();
    for m in &same.meetings {
        assert_eq!(
            m.run.iter().cloned().collect::<BTreeSet<_>>(),
            &set(&FREE) - &notifications
        );
        assert_eq!(m.estimate, preview::Spend::default(), "{m:?}");
    }
    // One room; a window after the meetings.
    let room = format!("{prefix}1");
    let one = backfill::selection("2026-01-01", Some(room.clone())).unwrap();
    let plan = preview::dry_run(&stack.client, &stack.db, &planner, &one, version)
        .await
        .unwrap();
    assert_eq!(plan.meetings.len(), 1);
    assert_eq!(plan.meetings[0].room.as_deref(), Some(room.as_str()));
    assert_eq!(plan.meetings[0].transcript_id, transcripts[1]);
    let later = backfill::selection("2026-06-01", None).unwrap();
    let plan = preview::dry_run(&stack.client, &stack.db, &planner, &later, version)
        .await
        .unwrap();
    assert!(plan.meetings.is_empty(), "{plan:?}");

    // Nothing changed: the memo indexes, no transcription, no new run.
    for (t, b) in transcripts.iter().zip(&before) {
        assert_eq!(&stack.storage.get(&index(t)).await.unwrap(), b);
        let tr = stack.db.transcript(t).await.unwrap();
        let run = reflow::history::load(&stack.client, tr.workflow_id.as_deref().unwrap())
            .await
            .unwrap();
        assert_eq!(run.input["version"], 2);
    }
    assert_eq!(stack.backends.asr_call_count(), asr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_backfill_starts_nothing_more_and_ends_cancelled() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) =
        reflow_tests::meetings::in_process(Duration::from_millis(50), false).await;
    let prefix = format!("bfc{}-", std::process::id());
    let transcripts = meetings(&stack, &prefix, 4).await;
    let version = title_changed(&stack).await;
    let plan = backfill::Plan {
        selection: backfill::selection("2026-01-01", None).unwrap(),
        version,
        concurrency: 1,
        batch: 100,
    };
    let (id, total) = backfill::start(&stack.client, &stack.db, &plan)
        .await
        .unwrap();
    assert_eq!(total, 4);
    let deadline = Instant::now() + Duration::from_secs(120);
    let first = loop {
        if let Some(p) = backfill::progress(&stack.client, &id).await
            && let Some(wf) = p.running.first()
        {
            break wf.clone();
        }
        assert!(Instant::now() < deadline, "no meeting starts");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // What the Web UI's Cancel does.
    reflow::runs::cancel(&stack.client, &id, "operator stopped the backfill")
        .await
        .unwrap();
    let ended = tokio::time::timeout(
        Duration::from_secs(120),
        reflow::runs::wait(&stack.client, &id),
    )
    .await
    .expect("the cancelled backfill closes");
    assert!(
        matches!(&ended, Err(reflow::runs::RunError::Failed { message, .. }) if message.to_lowercase().contains("cancel")),
        "{ended:?}"
    );
    // Only the run in flight was started: the other meetings' last runs are their first.
    let mut children = 0;
    for tid in &transcripts {
        let t = stack.db.transcript(tid).await.unwrap();
        let wf = t.workflow_id.clone().unwrap();
        let (_, _, parent) = span(&stack.client, &wf).await;
        if parent.as_deref() == Some(id.as_str()) {
            children += 1;
            assert_eq!(wf, first);
        }
        assert_ne!(t.status, "error", "{t:?}");
    }
    assert_eq!(children, 1, "one meeting was started, then nothing more");
    reflow_tests::replay_live(&stack.client, &[id.as_str()]).await;
}

/// `reflow backfill …` as an operator runs it, with a worker's environment; its stdout and
/// stderr.
async fn command(stack: &Stack, dir: &std::path::Path, args: &[&str]) -> (String, String) {
    let env = stack.worker_env(&reflow_tests::server().address, dir);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"))
        .arg("backfill")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .expect("run reflow backfill");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// The JSON document that ends a command's output.
fn last_json(stdout: &str) -> serde_json::Value {
    let start = stdout.find("\n{").map_or(0, |i| i + 1);
    serde_json::from_str(&stdout[start..]).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_command_line_plans_then_backfills_and_prints_progress_and_a_summary() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) =
        reflow_tests::meetings::in_process(Duration::from_millis(50), false).await;
    let prefix = format!("bfcli{}-", std::process::id());
    let transcripts = meetings(&stack, &prefix, 2).await;
    title_changed(&stack).await;
    let dir = tempfile::tempdir().unwrap();
    let asr = stack.backends.asr_call_count();

    let (out, _) = command(
        &stack,
        dir.path(),
        &["--since", "2026-01-01", "--version", "3", "--dry-run"],
    )
    .await;
    eprintln!("{out}");
    let plan = last_json(&out);
    let meetings = plan["meetings"].as_array().unwrap();
    assert_eq!(meetings.len(), 2, "{plan}");
    for m in meetings {
        assert!(
            transcripts.iter().any(|t| m["transcript_id"] == t.as_str()),
            "{m}"
        );
        let run: BTreeSet<String> = serde_json::from_value(m["run"].clone()).unwrap();
        let expected = &set(&["generate_title"]) | &set(&FREE);
        assert_eq!(
            run,
            &expected - &set(&["post_zulip", "send_webhook"]),
            "{m}"
        );
    }
    assert!(out.contains("2 meetings on v3"), "{out}");

    let (out, err) = command(
        &stack,
        dir.path(),
        &[
            "--since",
            "2026-01-01",
            "--version",
            "3",
            "--concurrency",
            "2",
        ],
    )
    .await;
    eprintln!("{err}{out}");
    let end = last_json(&out);
    assert_eq!(
        (end["done"].as_u64(), end["total"].as_u64()),
        (Some(2), Some(2)),
        "{end}"
    );
    assert!(err.contains("of 2"), "progress lines: {err}");
    assert!(out.contains("2 done, 0 failed, 0 skipped of 2"), "{out}");
    assert!(
        end["transcription_s_saved"].as_f64().unwrap() > 0.0,
        "{end}"
    );
    assert_eq!(stack.backends.asr_call_count(), asr);
}
