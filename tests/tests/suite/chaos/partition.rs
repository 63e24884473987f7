//! A network partition (issue 41 §5): a `reflow worker` process serving every queue of the
//! meeting pipeline, with the embedded Whisper (tiny.en), runs in a network namespace of its
//! own ([`reflow_tests::netns`]) and reaches the Temporal dev server over a veth pair (the
//! server on loopback here, relayed on this end's address). Its other services stay reachable
//! all along: the
//! database is a SQLite file, and S3 and the stand-ins are relayed on the namespace's own
//! loopback, so a cut of the pair cuts only Temporal.
//!
//! One meeting of one talking track (`REFLOW_CHAOS_PARTITION_TALK_S`, default 75 s of espeak
//! speech) is cut off for `REFLOW_CHAOS_PARTITION_S` (default 60) twice: once in the middle
//! of its transcription (a window heartbeated, more to come), once in the middle of the
//! workflow-task burst of the LLM steps (at the LLM stand-in's first call). Then the meeting
//! completes, no workflow of the server failed or timed out, at most one ASR window was
//! transcribed twice (the worker's `window transcribed` lines), and the worker's log has one
//! `Temporal server unreachable` and one `Temporal server reachable again` line per cut
//! (reflow's own connectivity probe, `reflow::worker`). With `REFLOW_CHAOS_RESULTS` set, the
//! numbers are appended to that file as their own section.
//!
//! Needs root and about three minutes (two 60 s cuts), so `just chaos` runs it and `just test`
//! does not.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use reflow::temporal::{DevServer, DevServerOptions};
use reflow_tests::meetings::{
    Backends, QUEUES, Stack, WorkerProcess, short_timeouts, talking, transcription_progress,
};
use reflow_tests::netns::{NetNs, loopback_ports};
use temporalio_client::{UntypedWorkflow, WorkflowFetchHistoryOptions};
use temporalio_common::protos::temporal::api::enums::v1::EventType;

use super::{ASR_LATENCY, env_number, re_spent_seconds};

/// The worker's log lines of its connectivity probe (`reflow::worker::watch_server`).
const LOST: &str = "Temporal server unreachable";
const BACK: &str = "Temporal server reachable again";

/// One cut: when, where in the meeting, and what came after.
struct Cut {
    what: &'static str,
    cut: SystemTime,
    restored: SystemTime,
}

/// Windows transcribed more than once: every `window transcribed` line of a
/// (transcript, track, from, to) seen before.
fn windows_twice(log: &str) -> usize {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for line in log.lines().filter(|l| l.contains("window transcribed")) {
        let key: Vec<&str> = line
            .split_whitespace()
            .filter(|w| {
                ["transcript=", "track=", "from_s=", "done_s="]
                    .iter()
                    .any(|p| w.starts_with(p))
            })
            .collect();
        *seen.entry(key.join(" ")).or_default() += 1;
    }
    seen.values().map(|n| n - 1).sum()
}

/// The first step the worker finished (a workflow task or an activity completed) after `at`,
/// in the histories of `ids`: when the meeting moved again.
async fn first_completion_after(
    client: &temporalio_client::Client,
    ids: &[String],
    at: SystemTime,
) -> Option<Duration> {
    let mut first: Option<Duration> = None;
    for id in ids {
        let events = client
            .get_workflow_handle::<UntypedWorkflow>(id)
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .into_events()
            .await
            .unwrap_or_default();
        for e in events {
            let kind = EventType::try_from(e.event_type).unwrap_or(EventType::Unspecified);
            if !matches!(
                kind,
                EventType::WorkflowTaskCompleted | EventType::ActivityTaskCompleted
            ) {
                continue;
            }
            let Some(t) = e.event_time.and_then(|t| SystemTime::try_from(t).ok()) else {
                continue;
            };
            if let Ok(after) = t.duration_since(at) {
                first = Some(first.map_or(after, |f| f.min(after)));
            }
        }
    }
    first
}

async fn count(client: &temporalio_client::Client, query: &str) -> u64 {
    client
        .count_workflows(query, temporalio_client::WorkflowCountOptions::default())
        .await
        .map_or(u64::MAX, |n| n.count() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root (a network namespace) and about three minutes: `just chaos` runs it"]
async fn a_worker_cut_from_the_server_for_a_minute_finishes_its_meeting_paying_a_window_twice_at_most()
 {
    let cut_for = Duration::from_secs(env_number("REFLOW_CHAOS_PARTITION_S", 60));
    let talk_s = env_number("REFLOW_CHAOS_PARTITION_TALK_S", 75) as u32;
    let dir = tempfile::Builder::new()
        .prefix("reflow-chaos-partition-")
        .tempdir()
        .unwrap()
        .keep();
    let mut ns = NetNs::create().unwrap_or_else(|e| panic!("the network namespace: {e}"));
    eprintln!(
        "partition: logs in {}, namespace {} ({} here, {} there)",
        dir.display(),
        ns.name,
        ns.host_ip,
        ns.ns_ip
    );
    let server = DevServer::start(DevServerOptions {
        cli: reflow_tests::temporal_cli(),
        port: reflow::temporal::free_port().unwrap(),
        ui_port: None,
        db_file: Some(dir.join("temporal.db")),
        log_file: dir.join("temporal.log"),
    })
    .await
    .expect("the dev server starts");
    let port = server.address.rsplit(':').next().unwrap().parse().unwrap();
    let temporal = ns
        .relay_to_loopback(port)
        .await
        .expect("offer the server on the pair's address");
    let client = reflow::temporal::connect(&server.address, "default", Duration::from_secs(20))
        .await
        .expect("connect");
    let stack = Stack::start(
        &format!("sqlite://{}/reflow.db", dir.display()),
        client.clone(),
        Backends::start(ASR_LATENCY).await,
        false,
        short_timeouts(),
    )
    .await;
    let mut env = stack.embedded_asr_worker_env(&temporal, &dir.join("worker"));
    for (k, v) in &mut env {
        if k == "RUST_LOG" {
            v.push_str(",reflow::worker=info");
        }
    }
    let receiver = stack.backends.receiver.url.clone();
    // Everything on loopback the worker talks to but Temporal (which it reaches on the pair).
    ns.relay_loopback(&loopback_ports(
        env.iter()
            .filter(|(k, _)| k != "TEMPORAL_ADDRESS")
            .map(|(_, v)| v.as_str())
            .chain([receiver.as_str()]),
    ))
    .expect("relay the stand-ins into the namespace");
    let log = dir.join("worker.log");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_reflow-test-worker"));
    let worker = WorkerProcess::spawn_with(&ns.exec_prefix(), &binary, &QUEUES, &env, &log);

    let track = talking(&dir, talk_s);
    let m = stack
        .meeting("partition", 0, std::slice::from_ref(&track))
        .await;
    let tid = stack.deliver(&m).await;
    let started = Instant::now();
    let mut cuts = Vec::new();

    // 1. In the middle of the transcription: a window done and heartbeated, more to come.
    let (_, before) = reflow_tests::wait_for(
        "a window of the track transcribed",
        Duration::from_secs(300),
        || async {
            transcription_progress(&client, &m.workflow_id, 0)
                .await
                .filter(|(_, p)| p.phase == "transcribing" && p.done_s > 0.0)
        },
    )
    .await;
    eprintln!(
        "partition: cut during the transcription ({:.1} of {:.1} s heartbeated)",
        before.done_s, before.total_s
    );
    let cut = SystemTime::now();
    ns.cut();
    tokio::time::sleep(cut_for).await;
    ns.restore();
    cuts.push(Cut {
        what: "transcription",
        cut,
        restored: SystemTime::now(),
    });
    eprintln!("partition: restored");

    // 2. In the middle of the workflow-task burst of the LLM steps (each answer a task).
    reflow_tests::wait_for("the first LLM call", Duration::from_secs(300), || async {
        (!stack.backends.llm_calls().is_empty()).then_some(())
    })
    .await;
    eprintln!("partition: cut during the LLM steps' burst");
    let cut = SystemTime::now();
    ns.cut();
    let llm_at_cut = stack.backends.llm_calls().len();
    tokio::time::sleep(cut_for).await;
    ns.restore();
    cuts.push(Cut {
        what: "workflow-task burst (LLM steps)",
        cut,
        restored: SystemTime::now(),
    });
    eprintln!("partition: restored ({llm_at_cut} prompts sent before the cut)");

    let out = tokio::time::timeout(
        Duration::from_secs(600),
        reflow::runs::wait(&client, &m.workflow_id),
    )
    .await
    .expect("the run closes within 10 minutes of the last cut");
    let total = started.elapsed();
    let status = stack
        .db
        .transcript(&tid)
        .await
        .map(|t| t.status)
        .unwrap_or_default();
    let failed = count(
        &client,
        "ExecutionStatus = 'Failed' OR ExecutionStatus = 'TimedOut' OR ExecutionStatus = 'Terminated'",
    )
    .await;
    let completed = count(&client, "ExecutionStatus = 'Completed'").await;
    let run = reflow::history::load(&client, &m.workflow_id)
        .await
        .expect("the run's history");
    let mut ids = vec![m.workflow_id.clone()];
    ids.extend(run.children.iter().map(|c| c.workflow_id.clone()));
    let mut recovered = Vec::new();
    for c in &cuts {
        recovered.push(first_completion_after(&client, &ids, c.restored).await);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let twice = windows_twice(&text);
    let re_spent = re_spent_seconds(&text);
    let windows = text.matches("window transcribed").count();
    let lost_lines: Vec<&str> = text.lines().filter(|l| l.contains(LOST)).collect();
    let back_lines: Vec<&str> = text.lines().filter(|l| l.contains(BACK)).collect();
    let sdk_warnings = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("temporalio_"))
        .count();
    // Results the worker computed but could not report (the SDK gives up on a completion after
    // its retries): the step's next attempt takes its stored checkpoint.
    let lost_completions = text
        .matches("Network error while completing activity")
        .count();
    let resumed = text.matches("resuming the transcription").count();
    let llm = stack.backends.llm_calls();
    let llm_calls: usize = llm.values().map(Vec::len).sum();

    let mut section = format!(
        "\n## A network partition\n\n\
         One meeting of one {:.0}-second talking track (espeak), transcribed by the embedded \
         Whisper (tiny.en) on a `reflow worker` process serving every queue from a network \
         namespace of its own; a veth pair to the Temporal dev server, the namespace's end set \
         down for {} s twice (database SQLite, S3 and stand-ins relayed on the namespace's \
         loopback, so only Temporal was cut; timeouts shortened: heartbeat 15 s, \
         start-to-close 90 s) (tests/tests/suite/chaos/partition.rs, {}, {} cores, {}).\n\n\
         partition_completed: {}/1\n\
         partition_windows_twice: {twice} of {windows} windows transcribed \
         ({re_spent:.1} audio seconds again)\n\
         partition_failed_runs: {failed} ({completed} workflows completed)\n\
         partition_llm_calls: {llm_calls} for {} prompts\n\
         partition_lost_completions: {lost_completions} (results the worker could not report; \
         the next attempt took the step's stored checkpoint)\n\
         partition_resumed_transcriptions: {resumed} (attempts that continued from a heartbeat)\n\
         partition_meeting_s: {:.0} (delivery to completion, {} s of it cut off)\n",
        track.end_s,
        cut_for.as_secs(),
        humantime::format_rfc3339_seconds(SystemTime::now()),
        std::thread::available_parallelism().map_or(0, usize::from),
        std::env::consts::ARCH,
        u8::from(out.is_ok() && status == "ended"),
        llm.len(),
        total.as_secs_f64(),
        2 * cut_for.as_secs(),
    );
    for (c, r) in cuts.iter().zip(&recovered) {
        section.push_str(&format!(
            "partition_recovery_s: {} (the {}: link back to the worker's next completed task or \
             step{})\n",
            r.map_or("none".to_owned(), |r| format!("{:.1}", r.as_secs_f64())),
            c.what,
            if c.restored.duration_since(c.cut).unwrap_or_default()
                > cut_for + Duration::from_secs(5)
            {
                ", the cut overran"
            } else {
                ""
            },
        ));
    }
    section.push_str(&format!(
        "partition_log_lines: {} `{LOST}`, {} `{BACK}`; {sdk_warnings} SDK warnings\n",
        lost_lines.len(),
        back_lines.len(),
    ));
    eprintln!("{section}");
    for l in lost_lines.iter().chain(&back_lines) {
        eprintln!("partition: worker log: {l}");
    }
    if let Ok(path) = std::env::var("REFLOW_CHAOS_RESULTS") {
        // This section replaces the one an earlier run wrote, where it was.
        let mut report = std::fs::read_to_string(&path).unwrap_or_default();
        match report.find("\n## A network partition") {
            Some(at) => {
                let end = report[at + 1..]
                    .find("\n## ")
                    .map_or(report.len(), |n| at + 1 + n);
                report.replace_range(at..end, &section);
            }
            None => report.push_str(&section),
        }
        std::fs::write(&path, report).expect("write the chaos results");
    }

    assert!(out.is_ok(), "the run: {out:?}");
    assert_eq!(status, "ended", "the transcript's status");
    assert_eq!(failed, 0, "no workflow failed, timed out or was terminated");
    assert!(twice <= 1, "{twice} windows transcribed twice");
    assert_eq!(
        lost_lines.len(),
        cuts.len(),
        "one line per cut: {lost_lines:#?}"
    );
    assert_eq!(
        back_lines.len(),
        cuts.len(),
        "one line per return: {back_lines:#?}"
    );
    drop(worker);
    server.stop().await;
}

#[test]
fn windows_twice_counts_each_window_done_again() {
    let log = "\
x DEBUG activities::asr: window transcribed transcript=t1 track=0 from_s=0.0 done_s=29.56 words=78
x DEBUG activities::asr: window transcribed transcript=t1 track=0 from_s=29.56 done_s=58.88 words=80
x DEBUG activities::asr: window transcribed transcript=t1 track=0 from_s=29.56 done_s=58.88 words=80
x DEBUG activities::asr: window transcribed transcript=t2 track=0 from_s=0.0 done_s=29.56 words=78
";
    assert_eq!(windows_twice(log), 1);
}
