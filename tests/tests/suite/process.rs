//! `reflow process <dir>` as a user runs it, interrupted: Ctrl-C in the middle of the run exits
//! within seconds with one line saying how to resume; the same command again attaches to the
//! interrupted run (the same run, nothing finished is redone, nothing paid twice) and prints
//! the result; a third time prints the finished result without running anything; `--force`
//! starts afresh.
//!
//! The process is the real CLI against the binary's dev server, with stand-in transcription
//! and LLM services that count every call, S3 on s3s-fs, and the production pipeline with
//! shortened timeouts.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reflow_tests::meetings::{Backends, Stack, short_timeouts, short_timeouts_yaml, voices};
use temporalio_client::{UntypedWorkflow, WorkflowDescribeOptions};

/// Run `reflow process` on `src` with `env`, its stderr into `log`.
fn process(
    src: &Path,
    env: &[(String, String)],
    log: &Path,
    extra: &[&str],
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"))
        .arg("process")
        .arg(src)
        .args(["--http", "127.0.0.1:0"])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

async fn run_id(client: &temporalio_client::Client, workflow_id: &str) -> Option<String> {
    client
        .get_workflow_handle::<UntypedWorkflow>(workflow_id)
        .describe(WorkflowDescribeOptions::default())
        .await
        .ok()?
        .raw_description
        .workflow_execution_info
        .and_then(|i| i.execution)
        .map(|e| e.run_id)
}

fn finish(child: std::process::Child, within: Duration) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    let mut child = child;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
            return (status, out);
        }
        assert!(
            started.elapsed() < within,
            "reflow process still running after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_local_run_resumes_where_it_stopped_and_pays_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/reflow.db", tmp.path().display());
    // Each transcription takes 3 s, so the run is interrupted while tracks are transcribed.
    let backends = Backends::start(Duration::from_secs(3)).await;
    let stack = Stack::start(
        &db_url,
        reflow_tests::client().await,
        backends,
        false,
        short_timeouts(),
    )
    .await;
    let src = tmp.path().join("meeting");
    std::fs::create_dir_all(&src).unwrap();
    for v in voices(tmp.path(), 2) {
        std::fs::copy(&v.path, src.join(v.path.file_name().unwrap())).unwrap();
    }
    let pipelines = tmp.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::write(pipelines.join("diarization.yaml"), short_timeouts_yaml()).unwrap();
    let mut env = stack.worker_env(&reflow_tests::server().address, &tmp.path().join("data"));
    env.retain(|(k, _)| k != "DAILYCO_STORAGE_AWS_BUCKET_NAME");
    env.extend([
        (
            "REFLOW_PIPELINES".to_owned(),
            pipelines.display().to_string(),
        ),
        (
            "REFLOW_RECORDINGS_URL".to_owned(),
            "s3://daily-recordings".to_owned(),
        ),
        // No Zulip for a local run.
        ("ZULIP_REALM".to_owned(), String::new()),
    ]);
    let workflow_id = reflow::local::run_of(&src).unwrap();
    let client = reflow_tests::client().await;

    // 1. Interrupted while the tracks are transcribed.
    let first = process(&src, &env, &tmp.path().join("first.log"), &[]);
    let pid = first.id();
    reflow_tests::wait_for(
        "a transcription to start",
        Duration::from_secs(90),
        || async { (!stack.backends.asr_calls().is_empty()).then_some(()) },
    )
    .await;
    let run = run_id(&client, &workflow_id)
        .await
        .expect("the run started");
    let interrupted = Instant::now();
    // SAFETY: signalling a child process this test started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid as i32, libc::SIGINT);
    }
    let (status, _) = finish(first, Duration::from_secs(30));
    let exit = interrupted.elapsed();
    let log = std::fs::read_to_string(tmp.path().join("first.log")).unwrap();
    assert!(
        !status.success(),
        "an interrupted run is not a success: {log}"
    );
    assert!(
        exit < Duration::from_secs(8),
        "Ctrl-C took {exit:?} to exit: {log}"
    );
    assert!(
        log.contains(&format!("resumes {workflow_id}")),
        "the last words say how to resume: {log}"
    );
    assert!(!log.contains("no poller"), "{log}");
    let asked_before = stack.backends.asr_call_count();
    eprintln!("interrupted after {exit:?}, {asked_before} transcription(s) asked:\n{log}");

    // 2. The same command attaches to the interrupted run and finishes it.
    let second = process(&src, &env, &tmp.path().join("second.log"), &[]);
    let (status, out) = finish(second, Duration::from_secs(240));
    let log = std::fs::read_to_string(tmp.path().join("second.log")).unwrap();
    assert!(status.success(), "{log}\n{out}");
    eprintln!("resumed:\n{log}");
    assert!(log.contains(&format!("resuming {workflow_id}")), "{log}");
    assert!(out.contains("transcript: "), "{out}");
    assert_eq!(
        run_id(&client, &workflow_id).await.as_deref(),
        Some(run.as_str()),
        "the same run completed, not a new one"
    );
    // Nothing paid twice: each track transcribed at most once more than it was in flight at the
    // interrupt, every LLM prompt asked once.
    let asr = stack.backends.asr_calls();
    assert_eq!(asr.len(), 2, "both tracks transcribed: {asr:?}");
    let total: usize = asr.values().map(Vec::len).sum();
    assert!(
        total <= 2 + asked_before,
        "only the interrupted transcriptions ran again: {asr:?} ({asked_before} before Ctrl-C)"
    );
    let llm = stack.backends.llm_calls();
    assert!(!llm.is_empty());
    assert!(
        llm.values().all(|calls| calls.len() == 1),
        "every LLM prompt asked once: {llm:?}"
    );
    let (asr_done, llm_done) = (total, llm.len());

    // 3. Again: the finished result, nothing run.
    let third = process(&src, &env, &tmp.path().join("third.log"), &[]);
    let (status, again) = finish(third, Duration::from_secs(60));
    let log = std::fs::read_to_string(tmp.path().join("third.log")).unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("was processed already"), "{log}");
    assert_eq!(again, out, "the same result, printed again");
    assert_eq!(stack.backends.asr_call_count(), asr_done);
    assert_eq!(stack.backends.llm_calls().len(), llm_done);
    assert_eq!(
        run_id(&client, &workflow_id).await.as_deref(),
        Some(run.as_str())
    );

    // 4. --force: a fresh transcript and run beside the first.
    let forced = process(&src, &env, &tmp.path().join("forced.log"), &["--force"]);
    let (status, fresh) = finish(forced, Duration::from_secs(240));
    let log = std::fs::read_to_string(tmp.path().join("forced.log")).unwrap();
    assert!(status.success(), "{log}");
    assert!(fresh.contains("transcript: "), "{fresh}");
    assert!(
        stack.backends.asr_call_count() >= asr_done + 2,
        "--force transcribes again"
    );
}
