//! A rolling upgrade with meetings in flight (issue 26), on a dev server of its own (Worker
//! Deployments and the routing of the suite's task queues are per server): build `a` runs two
//! meetings; build `b`, whose interpreter cannot replay `a`'s histories, starts beside it;
//! the runbook's upgrade block makes `b` current and waits until `a` is drained; a meeting
//! delivered after the switch runs on `b`; SIGTERM stops `a` within its grace. Every meeting
//! completes on the build that started it, none with a nondeterminism error, and no
//! transcription is paid twice.

use std::path::PathBuf;
use std::time::Duration;

use reflow::deployment;
use reflow::temporal::{DevServer, DevServerOptions};
use reflow_tests::blows;
use reflow_tests::meetings::{Backends, QUEUES, Stack, WorkerProcess, short_timeouts, voices};
use reflow_tests::wait_for;
use temporalio_client::{UntypedWorkflow, WorkflowFetchHistoryOptions, WorkflowHistory};
use temporalio_common::protos::temporal::api::enums::v1::VersioningBehavior;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

const DEPLOYMENT: &str = "reflow";

/// Build ids of the workers that completed each workflow task of `id`, their versioning
/// behaviours, and whether the run started a timer (the "next release" interpreter does).
async fn who_ran(
    client: &temporalio_client::Client,
    id: &str,
) -> (Vec<String>, Vec<i32>, bool, Vec<u8>) {
    let fetch = || {
        client
            .get_workflow_handle::<UntypedWorkflow>(id)
            .fetch_history(WorkflowFetchHistoryOptions::default())
    };
    let json = fetch().to_json().await.expect("history");
    let events = fetch().into_events().await.expect("history");
    let mut builds = Vec::new();
    let mut behaviours = Vec::new();
    let mut timer = false;
    for e in events {
        match &e.attributes {
            Some(Attributes::WorkflowTaskCompletedEventAttributes(a)) => {
                builds.push(
                    a.deployment_version
                        .as_ref()
                        .map(|v| v.build_id.clone())
                        .unwrap_or_default(),
                );
                behaviours.push(a.versioning_behavior);
            }
            Some(Attributes::TimerStartedEventAttributes(_)) => timer = true,
            _ => {}
        }
    }
    (builds, behaviours, timer, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_upgrade_finishes_every_meeting_on_the_build_that_started_it() {
    let dir = tempfile::Builder::new()
        .prefix("reflow-upgrade-")
        .tempdir()
        .unwrap();
    let server = DevServer::start(DevServerOptions {
        cli: reflow_tests::temporal_cli(),
        port: reflow::temporal::free_port().unwrap(),
        ui_port: None,
        db_file: None,
        log_file: dir.path().join("temporal.log"),
    })
    .await
    .expect("dev server");
    let address = server.address.clone();
    let client = reflow::temporal::connect(&address, "default", Duration::from_secs(20))
        .await
        .expect("connect");
    // Transcriptions take 6 s: the first meetings are in flight when `b` arrives.
    let backends = Backends::start(Duration::from_secs(6)).await;
    let db_url = format!("sqlite://{}/reflow.db", dir.path().display());
    let stack = Stack::start(&db_url, client.clone(), backends, false, short_timeouts()).await;
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_reflow-test-worker"));
    let env = |build: &str, next: bool| {
        let mut env = stack.worker_env(&address, &dir.path().join(build));
        env.push(("REFLOW_DEPLOYMENT_NAME".into(), DEPLOYMENT.into()));
        env.push(("REFLOW_BUILD_ID".into(), build.into()));
        env.push(("REFLOW_SHUTDOWN_GRACE".into(), "6".into()));
        if next {
            env.push(("REFLOW_TEST_NEXT_INTERPRETER".into(), "1".into()));
        }
        env
    };
    let log_a = dir.path().join("a.log");
    let mut a = WorkerProcess::spawn(&binary, &QUEUES, &env("a", false), &log_a);
    // The first version to poll becomes current by itself.
    blows::wait_current(&client, DEPLOYMENT, "a", Duration::from_secs(120)).await;

    let tracks = voices(dir.path(), 2);
    let mut old = Vec::new();
    for i in 0..2 {
        let m = stack.meeting("upgrade", i, &tracks).await;
        stack.deliver(&m).await;
        old.push(m);
    }
    wait_for(
        "transcriptions in flight",
        Duration::from_secs(60),
        || async { (stack.backends.asr_call_count() >= 4).then_some(()) },
    )
    .await;

    let log_b = dir.path().join("b.log");
    let _b = WorkerProcess::spawn(&binary, &QUEUES, &env("b", true), &log_b);
    blows::wait_polling(&client, DEPLOYMENT, "b", Duration::from_secs(60)).await;
    // Polling is not current: new meetings still start on `a`.
    let d = deployment::describe(&client, DEPLOYMENT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.current.as_deref(), Some("a"), "{d:?}");

    // `reflow plan` with the new build's settings shows the switch; `reflow apply` makes it.
    let bin = reflow_tests::runbook::bin_dir();
    let repo_pipelines = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let apply_data = tempfile::tempdir().unwrap();
    let reflow = |command: &'static str| {
        let out = std::process::Command::new(bin.join("reflow"))
            .arg(command)
            .env("TEMPORAL_ADDRESS", &address)
            .env("REFLOW_DEPLOYMENT_NAME", DEPLOYMENT)
            .env("REFLOW_BUILD_ID", "b")
            // The repository's pipelines, registered in a database of this test's own.
            .env("REFLOW_PIPELINES", repo_pipelines.as_os_str())
            .env("REFLOW_DATA_DIR", apply_data.path())
            .env("RUST_LOG", "warn")
            .output()
            .expect("reflow runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "reflow {command}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let plan = reflow("plan");
    assert!(
        plan.contains("~ worker deployment reflow: update (current version: a → b"),
        "{plan}"
    );
    let applied = reflow("apply");
    assert!(applied.contains("current version: a → b"), "{applied}");
    assert!(
        reflow("plan").contains("  worker deployment reflow: unchanged"),
        "applied once, nothing more to change"
    );
    // The runbook's upgrade, as written (setting `b` current again is a no-op), then wait
    // until `a` is drained.
    let upgrade = tokio::spawn({
        let (bin, address) = (bin.clone(), address.clone());
        async move {
            blows::make_current_and_drain(&bin, &address, DEPLOYMENT, "b", "a")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    });
    blows::wait_current(&client, DEPLOYMENT, "b", Duration::from_secs(60)).await;
    let new = stack.meeting("upgrade", 2, &tracks).await;
    stack.deliver(&new).await;

    // `a` drains once its two meetings completed; then SIGTERM stops it within its grace.
    let said = match tokio::time::timeout(Duration::from_secs(120), upgrade).await {
        Ok(said) => said.expect("the block ran"),
        Err(_) => {
            let mut why = String::new();
            for m in &old {
                let run = reflow::history::load(&client, &m.workflow_id).await;
                why.push_str(&format!(
                    "{}: {:?}\n",
                    m.workflow_id,
                    run.map(|r| (r.status, r.pending.len(), r.steps.len()))
                ));
            }
            let v = std::process::Command::new(reflow_tests::temporal_cli())
                .args([
                    "worker",
                    "deployment",
                    "describe-version",
                    "--address",
                    &address,
                ])
                .args([
                    "--deployment-name",
                    DEPLOYMENT,
                    "--build-id",
                    "a",
                    "-o",
                    "json",
                ])
                .output()
                .unwrap();
            panic!(
                "build a never drained:\n{why}{}\nlogs in {}",
                String::from_utf8_lossy(&v.stdout),
                dir.keep().display()
            );
        }
    };
    assert!(said.contains("a drained"), "{said}");
    for m in &old {
        let out = reflow::runs::wait(&client, &m.workflow_id).await;
        out.unwrap_or_else(|e| panic!("{} fails: {e}", m.workflow_id));
    }
    let stopped = std::time::Instant::now();
    a.signal(libc::SIGTERM);
    while !a.try_wait() {
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "build a never exits"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exit = stopped.elapsed();
    eprintln!("build a: SIGTERM to exit {exit:?}");
    assert!(exit < Duration::from_secs(6), "within its grace: {exit:?}");

    let out = tokio::time::timeout(
        Duration::from_secs(180),
        reflow::runs::wait(&client, &new.workflow_id),
    )
    .await
    .expect("the new meeting ends");
    out.unwrap_or_else(|e| panic!("the meeting started on b fails: {e}"));

    // Each meeting (and its track children) ran on one build, pinned.
    let pinned = VersioningBehavior::Pinned as i32;
    let mut histories = Vec::new();
    for (m, build, next) in old
        .iter()
        .map(|m| (m, "a", false))
        .chain([(&new, "b", true)])
    {
        let run = reflow::history::load(&client, &m.workflow_id)
            .await
            .unwrap();
        let ids: Vec<String> = std::iter::once(m.workflow_id.clone())
            .chain(run.children.iter().map(|c| c.workflow_id.clone()))
            .collect();
        assert_eq!(ids.len(), 3, "a meeting of two tracks: {ids:?}");
        for id in ids {
            let (builds, behaviours, timer, history) = who_ran(&client, &id).await;
            assert!(
                builds.iter().all(|b| b == build),
                "{id} ran on {builds:?}, not only {build}"
            );
            assert!(
                behaviours.iter().all(|b| *b == pinned),
                "{id}: {behaviours:?}"
            );
            assert_eq!(timer, next, "{id}: the interpreter of build {build}");
            if id == m.workflow_id {
                histories.push(history);
            }
        }
    }
    // Nothing paid twice: one transcription per track.
    assert_eq!(stack.backends.asr_call_count(), 6);
    for log in [&log_a, &log_b] {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            !text.to_lowercase().contains("nondetermin"),
            "{}: {text}",
            log.display()
        );
    }

    // And the builds really are incompatible: each fails to replay the other's history.
    let history = |json: &Vec<u8>| WorkflowHistory::from_json(json).expect("history JSON");
    let (old_history, new_history) = (&histories[0], &histories[2]);
    reflow_tests::replay(history(old_history))
        .await
        .expect("this build replays a's history");
    let e = reflow_tests::replay(history(new_history))
        .await
        .expect_err("a's interpreter cannot replay b's history");
    assert!(e.to_lowercase().contains("nondetermin"), "{e}");
    let e = reflow_tests::next_release::replay(history(old_history))
        .await
        .expect_err("b's interpreter cannot replay a's history");
    assert!(e.to_lowercase().contains("nondetermin"), "{e}");
    reflow_tests::next_release::replay(history(new_history))
        .await
        .expect("b replays its own history");
    server.stop().await;
}
