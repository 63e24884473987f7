//! The interpreter against a real Temporal dev server: parallelism, fan-out, retries,
//! failures, heartbeats, a killed worker, reset, and pinned definitions.
//!
//! All tests share the binary's dev server; each uses its own task queue and journal.

use std::time::Duration;

use reflow::runs;
use reflow_tests::{
    InProcessWorker, TestPipeline, client, events, journal, read_journal, started, wait_for,
};
use serde_json::{Value, json};
use workflow::StepStatus;
use workflow::progress::RunStatus;

fn interval(entries: &[reflow_tests::Entry], key: &str) -> (f64, f64) {
    let start = events(entries, key, "start");
    let end = events(entries, key, "end");
    assert_eq!(start.len(), 1, "{key} started once: {entries:?}");
    assert_eq!(end.len(), 1, "{key} ended once");
    (start[0].t_ms, end[0].t_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_steps_and_fan_out_members_run_concurrently_with_outputs_in_item_order() {
    let (q, tp, _worker, c) = started("parallel", "parallel.yaml").await;
    let j = journal(q);
    let items: Vec<String> = (0..8).map(|i| format!("item{i}")).collect();
    let id = "parallel-1";
    runs::start(&c, &tp.pipeline, json!({"journal": j, "items": items}), id)
        .await
        .unwrap();
    let out = runs::wait(&c, id).await.unwrap();

    assert_eq!(
        out["fan"],
        json!(items),
        "child outputs come back in item order"
    );
    let entries = read_journal(&j);
    let (l0, l1) = interval(&entries, "left");
    let (r0, r1) = interval(&entries, "right");
    assert!(
        l0 < r1 && r0 < l1,
        "left [{l0}, {l1}] and right [{r0}, {r1}] overlap"
    );
    let members: Vec<(f64, f64)> = items.iter().map(|k| interval(&entries, k)).collect();
    let last_start = members.iter().map(|m| m.0).fold(f64::MIN, f64::max);
    let first_end = members.iter().map(|m| m.1).fold(f64::MAX, f64::min);
    assert!(
        last_start < first_end,
        "all 8 members were running at the same moment: {members:?}"
    );
    let first_start = members.iter().map(|m| m.0).fold(f64::MAX, f64::min);
    assert!(first_start >= l1.max(r1), "fan-out waited for its needs");

    // The parent's `progress` query includes each child's own table, as the child reported it.
    let progress = runs::query_progress(&c, id).await.unwrap();
    let fan = &progress.steps[2];
    assert_eq!(fan.members.len(), 8);
    let child_ids: Vec<_> = fan
        .members
        .iter()
        .map(|m| m.child_workflow_id.clone().unwrap())
        .collect();
    assert_eq!(child_ids[3], "parallel-1-item-3");
    for m in &fan.members {
        let child = m.child.as_ref().expect("the child reported its table");
        assert_eq!(
            (child.pipeline.as_str(), child.status),
            ("EngineChild", RunStatus::Completed)
        );
        let work = &child.steps[0];
        assert_eq!(
            (work.id.as_str(), work.status, work.attempt),
            ("work", StepStatus::Completed, 1)
        );
    }
    let text = runs::render(id, &progress);
    assert!(
        text.contains("  fan[7]") && text.contains("    work"),
        "{text}"
    );

    // What the Web UI shows: the pipeline's own names as workflow types, children linked to
    // their parent, activities under their step's activity name and id.
    use temporalio_client::{
        UntypedWorkflow, WorkflowDescribeOptions, WorkflowFetchHistoryOptions,
    };
    use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
    let parent = c
        .get_workflow_handle::<UntypedWorkflow>(id)
        .describe(WorkflowDescribeOptions::default())
        .await
        .unwrap();
    assert_eq!(parent.workflow_type(), "EngineTest");
    let child = c.get_workflow_handle::<UntypedWorkflow>("parallel-1-item-3");
    let described = child
        .describe(WorkflowDescribeOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (described.workflow_type(), described.parent_id()),
        ("EngineChild", Some(id))
    );
    let scheduled: Vec<(String, String)> = child
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.attributes {
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => Some((
                a.activity_type.map(|t| t.name).unwrap_or_default(),
                a.activity_id,
            )),
            _ => None,
        })
        .collect();
    reflow_tests::replay_live(&c, &[id, "parallel-1-item-3"]).await;
    assert_eq!(
        scheduled,
        [("test_sleep".to_owned(), "work_item3".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_with_a_concurrency_cap_never_has_more_members_in_flight() {
    let (q, tp, _worker, c) = started("capped", "capped.yaml").await;
    let j = journal(q);
    let items: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": j, "items": items}),
        "capped-1",
    )
    .await
    .unwrap();
    let out = runs::wait(&c, "capped-1").await.unwrap();
    let keys: Vec<&str> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, items, "outputs in item order");

    // Sweep the journal: +1 at each start, -1 at each end; the peak is the concurrency.
    let entries = read_journal(&j);
    let mut edges: Vec<(f64, i32)> = entries
        .iter()
        .filter_map(|e| match e.event.as_str() {
            "start" => Some((e.t_ms, 1)),
            "end" => Some((e.t_ms, -1)),
            _ => None,
        })
        .collect();
    edges.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let peak = edges
        .iter()
        .scan(0, |n, (_, d)| {
            *n += d;
            Some(*n)
        })
        .max()
        .unwrap();
    assert_eq!(
        peak, 2,
        "two members at a time, and the cap was used: {edges:?}"
    );
    let starts: Vec<&str> = entries
        .iter()
        .filter(|e| e.event == "start")
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(starts.len(), 6);
    assert!(
        starts[..2].iter().all(|k| ["m0", "m1"].contains(k)),
        "members start in item order: {starts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_failing_twice_succeeds_on_attempt_3_and_progress_shows_the_retry() {
    let (q, tp, _worker, c) = started("retry", "retry.yaml").await;
    let j = journal(q);
    let id = "retry-1";
    runs::start(&c, &tp.pipeline, json!({"journal": j}), id)
        .await
        .unwrap();

    let seen = wait_for(
        "the progress query to show attempt 2",
        Duration::from_secs(30),
        || {
            let c = c.clone();
            async move {
                let p = runs::query_progress(&c, id).await.ok()?;
                // Empty until the run's first task has resolved its definition.
                let row = p.steps.first()?.clone();
                (row.attempt == 2 && row.status == StepStatus::Running).then_some(row)
            }
        },
    )
    .await;
    // The row names the last failure it heard of (attempt 1's, or attempt 2's if that one
    // already failed by the time the query ran).
    let error = seen.error.unwrap_or_default();
    assert!(error.contains("Flaky: flaky failure on attempt"), "{error}");

    let out = runs::wait(&c, id).await.unwrap();
    assert_eq!(out["attempt"], 3);
    reflow_tests::replay_live(&c, &[id]).await;
    let entries = read_journal(&j);
    let starts: Vec<f64> = events(&entries, "flaky", "start")
        .iter()
        .map(|e| e.t_ms)
        .collect();
    assert_eq!(starts.len(), 3);
    let (gap1, gap2) = (starts[1] - starts[0], starts[2] - starts[1]);
    assert!(
        gap2 > gap1,
        "the second backoff ({gap2} ms) is longer than the first ({gap1} ms)"
    );
    let p = runs::query_progress(&c, id).await.unwrap();
    assert_eq!(
        (p.steps[0].status, p.steps[0].attempt),
        (StepStatus::Completed, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_errors_fail_on_attempt_1_and_optional_failures_do_not_fail_the_run() {
    let (_, tp, _worker, c) = started("failures", "failures.yaml").await;

    // Optional step fails; the run completes, and the step that needs it still runs.
    let j = journal("failures-optional");
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": j, "fail_required": false}),
        "optional-1",
    )
    .await
    .unwrap();
    let out = runs::wait(&c, "optional-1").await.unwrap();
    assert_eq!(out, json!({"broken": null, "after": "ran", "boom": null}));
    let p = runs::query_progress(&c, "optional-1").await.unwrap();
    let status: Vec<_> = p
        .steps
        .iter()
        .map(|r| (r.id.as_str(), r.status, r.attempt))
        .collect();
    assert_eq!(
        status,
        [
            ("broken", StepStatus::Failed, 1),
            ("after", StepStatus::Completed, 1),
            ("boom", StepStatus::Skipped, 0)
        ]
    );
    assert_eq!(
        p.steps[0].error.as_deref(),
        Some("TestFatal: broken cannot work")
    );
    assert_eq!(
        events(&read_journal(&j), "broken", "start").len(),
        1,
        "a non-retryable failure is not retried"
    );

    // Required step fails: the run fails on attempt 1, naming the step and the cause.
    let j = journal("failures-required");
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": j, "fail_required": true}),
        "required-1",
    )
    .await
    .unwrap();
    let err = runs::wait(&c, "required-1").await.unwrap_err().to_string();
    assert!(
        err.contains(r#"step "boom" failed: TestFatal: boom cannot work"#),
        "{err}"
    );
    assert_eq!(events(&read_journal(&j), "boom", "start").len(), 1);
    reflow_tests::replay_live(&c, &["optional-1", "required-1"]).await;
    let p = runs::query_progress(&c, "required-1").await.unwrap();
    assert_eq!(p.status, RunStatus::Failed);
    assert_eq!(
        (p.steps[2].status, p.steps[2].attempt),
        (StepStatus::Failed, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_activity_is_caught_by_its_heartbeat_timeout_and_retried() {
    let (q, tp, _worker, c) = started("hang", "hang.yaml").await;
    let j = journal(q);
    runs::start(&c, &tp.pipeline, json!({"journal": j}), "hang-1")
        .await
        .unwrap();
    let out = runs::wait(&c, "hang-1").await.unwrap();
    assert_eq!(out["attempt"], 2);
    let entries = read_journal(&j);
    let first: Vec<_> = entries
        .iter()
        .filter(|e| e.attempt == 1)
        .map(|e| e.event.as_str())
        .collect();
    assert!(
        first.contains(&"hang") && !first.contains(&"end"),
        "attempt 1 hung: {first:?}"
    );
    assert_eq!(events(&entries, "stuck", "end").len(), 1);
    let p = runs::query_progress(&c, "hang-1").await.unwrap();
    assert_eq!(
        (p.steps[0].status, p.steps[0].attempt),
        (StepStatus::Completed, 2)
    );
}

/// A worker process, killed with SIGKILL when dropped if still running.
struct WorkerProcess(std::process::Child);

impl WorkerProcess {
    fn spawn(queue: &str) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"))
            .args(["worker", "--queues", queue])
            .env("TEMPORAL_ADDRESS", &reflow_tests::server().address)
            // The database the test registered its pipeline in.
            .env("DATABASE_URL", reflow_tests::db_url())
            .env(
                "REFLOW_DATA_DIR",
                std::env::temp_dir().join(format!("reflow-worker-{queue}")),
            )
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawn the test worker");
        WorkerProcess(child)
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    fn kill(&mut self) {
        let _ = self.0.kill(); // SIGKILL: no drain, no goodbye.
        let _ = self.0.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_replaced_and_no_completed_activity_runs_again() {
    let q = "kill";
    let tp = TestPipeline::load("chain.yaml", q);
    let c = client().await;
    let j = journal(q);
    let mut first = WorkerProcess::spawn(q);
    runs::start(&c, &tp.pipeline, json!({"journal": j}), "kill-1")
        .await
        .unwrap();
    wait_for("the slow step to start", Duration::from_secs(60), || {
        let j = j.clone();
        async move { (!events(&read_journal(&j), "slow", "start").is_empty()).then_some(()) }
    })
    .await;
    let killed = first.pid();
    first.kill();

    let second = WorkerProcess::spawn(q);
    let out = tokio::time::timeout(Duration::from_secs(120), runs::wait(&c, "kill-1"))
        .await
        .expect("run finishes")
        .unwrap();
    assert_eq!(out["items"], json!([10, 20, 30]));

    let entries = read_journal(&j);
    for key in ["first", "item0", "item1", "item2", "last"] {
        assert_eq!(
            events(&entries, key, "start").len(),
            1,
            "{key} ran exactly once"
        );
    }
    let slow: Vec<(u32, u32)> = events(&entries, "slow", "start")
        .iter()
        .map(|e| (e.attempt, e.pid))
        .collect();
    assert_eq!(
        slow,
        [(1, killed), (2, second.pid())],
        "the interrupted step ran again, on the new worker only"
    );
    assert_eq!(events(&entries, "last", "start")[0].pid, second.pid());
    reflow_tests::replay_live(&c, &["kill-1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_to_an_earlier_workflow_task_runs_the_rest_again() {
    use temporalio_client::{UntypedWorkflow, WorkflowFetchHistoryOptions};
    use temporalio_common::protos::temporal::api::enums::v1::EventType;

    let (q, tp, _worker, c) = started("reset", "chain.yaml").await;
    let j = journal(q);
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": j, "slow_ms": 300}),
        "reset-1",
    )
    .await
    .unwrap();
    let before = runs::wait(&c, "reset-1").await.unwrap();

    // The workflow task completed right after `first` completed.
    let events_ = c
        .get_workflow_handle::<UntypedWorkflow>("reset-1")
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .unwrap();
    let kind = |e: &temporalio_common::protos::temporal::api::history::v1::HistoryEvent| {
        EventType::try_from(e.event_type).unwrap()
    };
    let first_done = events_
        .iter()
        .position(|e| kind(e) == EventType::ActivityTaskCompleted)
        .unwrap();
    let reset_to = events_[first_done..]
        .iter()
        .find(|e| kind(e) == EventType::WorkflowTaskCompleted)
        .unwrap()
        .event_id;

    let status = std::process::Command::new(reflow_tests::temporal_cli())
        .args([
            "workflow",
            "reset",
            "--address",
            &reflow_tests::server().address,
            "--namespace",
            "default",
        ])
        .args([
            "--workflow-id",
            "reset-1",
            "--event-id",
            &reset_to.to_string(),
            "--reason",
            "engine test",
        ])
        .status()
        .unwrap();
    assert!(status.success());

    wait_for("the reset run to complete", Duration::from_secs(60), || {
        let (c, j) = (c.clone(), j.clone());
        async move {
            let p = runs::query_progress(&c, "reset-1").await.ok()?;
            (p.status == RunStatus::Completed
                && events(&read_journal(&j), "last", "start").len() == 2)
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        runs::wait(&c, "reset-1").await.unwrap(),
        before,
        "the new run produced the same result"
    );
    let entries = read_journal(&j);
    assert_eq!(
        events(&entries, "first", "start").len(),
        1,
        "steps before the reset point are not re-run"
    );
    for key in ["item0", "slow", "last"] {
        assert_eq!(
            events(&entries, key, "start").len(),
            2,
            "{key} ran again after the reset"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_a_definition_does_not_change_a_run_that_already_started() {
    let q = "pinned";
    let _worker = InProcessWorker::start(&[q.to_owned()]);
    let c = client().await;
    let j = journal(q);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pinned.yaml");
    let v1 = format!(
        "name: EngineTest\nversion: 1\ntask_queue: {q}\ninputs:\n  journal: {{type: string}}\ndefaults:\n  start_to_close: 30s\nsteps:\n  - id: first\n    activity: test_sleep\n    with:\n      journal: ${{input.journal}}\n      key: first-${{workflow.version}}\n      ms: 2000\n  - id: second\n    activity: test_echo\n    needs: [first]\n    with:\n      journal: ${{input.journal}}\n      key: second\n      value: v1\noutput: ${{second}}\n"
    );
    std::fs::write(&file, &v1).unwrap();
    let catalog = reflow_tests::registry();
    let p1 = runs::load_pipeline(&file, catalog.catalog()).unwrap();
    reflow_tests::register(&p1);
    runs::start(&c, &p1, json!({"journal": j}), "pinned-1")
        .await
        .unwrap();
    wait_for(
        "the first run to be in its first step",
        Duration::from_secs(30),
        || {
            let j = j.clone();
            async move { (!events(&read_journal(&j), "first-1", "start").is_empty()).then_some(()) }
        },
    )
    .await;

    // Edit the file while run 1 is in flight: new version, new output, one more step.
    let v2 = v1.replace("version: 1", "version: 2").replace("value: v1", "value: v2").replace(
        "output: ${second}",
        "  - id: third\n    activity: test_echo\n    needs: [second]\n    with:\n      journal: ${input.journal}\n      key: third\n      value: new\noutput: ${second}",
    );
    std::fs::write(&file, &v2).unwrap();
    let p2 = runs::load_pipeline(&file, catalog.catalog()).unwrap();
    reflow_tests::register(&p2);
    assert_ne!(p1.hash, p2.hash);
    runs::start(&c, &p2, json!({"journal": j}), "pinned-2")
        .await
        .unwrap();

    assert_eq!(runs::wait(&c, "pinned-1").await.unwrap(), Value::from("v1"));
    assert_eq!(runs::wait(&c, "pinned-2").await.unwrap(), Value::from("v2"));
    let (t1, t2) = (
        runs::query_progress(&c, "pinned-1").await.unwrap(),
        runs::query_progress(&c, "pinned-2").await.unwrap(),
    );
    assert_eq!(
        (t1.version, t1.steps.len(), t1.pipeline_hash.as_str()),
        (1, 2, p1.hash.as_str())
    );
    assert_eq!(
        (t2.version, t2.steps.len(), t2.pipeline_hash.as_str()),
        (2, 3, p2.hash.as_str())
    );
    let memo = c
        .get_workflow_handle::<temporalio_client::UntypedWorkflow>("pinned-1")
        .describe(temporalio_client::WorkflowDescribeOptions::default())
        .await
        .unwrap()
        .memo()
        .get::<String>("pipeline_hash")
        .unwrap();
    assert_eq!(
        memo.as_deref(),
        Some(p1.hash.as_str()),
        "the memo carries the pinned definition's hash"
    );
    assert!(
        events(&read_journal(&j), "third", "start").len() == 1,
        "only the new run has the new step"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_steps_run_inside_the_workflow_task_with_retries_and_failures_like_queued_ones() {
    let (q, tp, _worker, c) = started("local", "local.yaml").await;
    let j = journal(q);
    let id = "local-1";
    runs::start(&c, &tp.pipeline, json!({"journal": j}), id)
        .await
        .unwrap();
    let out = runs::wait(&c, id).await.unwrap();
    assert_eq!(out["first"], "one");
    assert_eq!(out["flaky"]["attempt"], 3, "retried until it succeeded");
    assert_eq!(
        out["broken"],
        Value::Null,
        "the optional failure gives null"
    );
    assert_eq!(
        out["queued"], "one",
        "a queued step reads a local step's output"
    );

    let entries = read_journal(&j);
    assert_eq!(events(&entries, "flaky", "start").len(), 3);
    assert_eq!(
        events(&entries, "broken", "start").len(),
        1,
        "a non-retryable failure is not retried"
    );

    // Local steps leave markers, not scheduled activities; the queued one is scheduled.
    let run = reflow::history::load(&c, id).await.unwrap();
    let scheduled: Vec<&str> = run
        .steps
        .iter()
        .filter(|s| !s.local)
        .map(|s| s.activity_id.as_str())
        .collect();
    let markers: Vec<&reflow::history::Step> = run.steps.iter().filter(|s| s.local).collect();
    assert_eq!(scheduled, ["queued"]);
    assert_eq!(markers.len(), 3, "one marker per local step: {markers:#?}");

    let p = runs::query_progress(&c, id).await.unwrap();
    let rows: Vec<_> = p.steps.iter().map(|r| (r.id.as_str(), r.status)).collect();
    assert_eq!(
        rows,
        [
            ("first", StepStatus::Completed),
            ("flaky", StepStatus::Completed),
            ("broken", StepStatus::Failed),
            ("queued", StepStatus::Completed),
        ]
    );
    assert_eq!(
        p.steps[2].error.as_deref(),
        Some("TestFatal: broken cannot work"),
        "the failed local step names its cause"
    );
    reflow_tests::replay_live(&c, &[id]).await;
}
