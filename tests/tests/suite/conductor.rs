//! The Conductor-compatible status API over real runs: a completed run with a retried step and
//! an activity fan-out, a failed run with an optional failure, a child fan-out flattened under
//! FORK/JOIN, an attempt cut by its heartbeat timeout, a running run, an unknown id, a new
//! start of a failed id (only its own rows); every field name and enum checked against
//! docs/contracts/conductor-status.md.

use std::collections::BTreeSet;

use reflow::http::ApiState;
use reflow::runs;
use reflow_tests::{journal, started};
use serde_json::{Value, json};

const WORKFLOW_FIELDS: [&str; 21] = [
    "workflowId",
    "workflowName",
    "workflowVersion",
    "status",
    "createTime",
    "startTime",
    "updateTime",
    "endTime",
    "input",
    "output",
    "tasks",
    "failedReferenceTaskNames",
    "failedTaskNames",
    "priority",
    "variables",
    "taskToDomain",
    "lastRetriedTime",
    "workflowDefinition",
    "correlationId",
    "reasonForIncompletion",
    "parentWorkflowId",
];
const TASK_FIELDS: [&str; 30] = [
    "taskId",
    "taskType",
    "taskDefName",
    "referenceTaskName",
    "status",
    "seq",
    "retryCount",
    "retried",
    "executed",
    "scheduledTime",
    "startTime",
    "endTime",
    "updateTime",
    "firstStartTime",
    "queueWaitTime",
    "startDelayInSeconds",
    "callbackAfterSeconds",
    "pollCount",
    "responseTimeoutSeconds",
    "inputData",
    "outputData",
    "workflowInstanceId",
    "workflowType",
    "workflowTask",
    "callbackFromWorker",
    "loopOverTask",
    "workflowPriority",
    "iteration",
    "rateLimitPerFrequency",
    "rateLimitFrequencyInSeconds",
];
const TASK_STATUSES: [&str; 9] = [
    "SCHEDULED",
    "IN_PROGRESS",
    "COMPLETED",
    "COMPLETED_WITH_ERRORS",
    "FAILED",
    "FAILED_WITH_TERMINAL_ERROR",
    "TIMED_OUT",
    "CANCELED",
    "SKIPPED",
];

async fn api() -> String {
    let state = ApiState {
        temporal: Some(reflow_tests::client().await),
        ..ApiState::new(reflow_tests::services().events, reflow_tests::storage())
    };
    format!(
        "http://{}/api/workflow",
        reflow_tests::serve_api(state).await
    )
}

async fn get(url: String) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Field names and enums of a Workflow JSON, per the spec; optional fields may be absent.
fn check_shape(w: &Value) {
    let known: BTreeSet<&str> = WORKFLOW_FIELDS.into_iter().collect();
    for k in w.as_object().unwrap().keys() {
        assert!(known.contains(k.as_str()), "unexpected workflow field {k}");
    }
    for k in &WORKFLOW_FIELDS[..19] {
        if *k != "correlationId" {
            assert!(w.get(*k).is_some(), "workflow field {k} missing");
        }
    }
    assert!(
        [
            "RUNNING",
            "COMPLETED",
            "FAILED",
            "TIMED_OUT",
            "TERMINATED",
            "PAUSED"
        ]
        .contains(&w["status"].as_str().unwrap())
    );
    for (i, t) in w["tasks"].as_array().unwrap().iter().enumerate() {
        assert_eq!(t["seq"], i + 1);
        let keys: BTreeSet<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
        for k in TASK_FIELDS {
            assert!(keys.contains(k), "task field {k} missing in {t}");
        }
        let extra = [
            "retriedTaskId",
            "workerId",
            "reasonForIncompletion",
            "correlationId",
        ];
        for k in keys {
            assert!(
                TASK_FIELDS.contains(&k) || extra.contains(&k),
                "unexpected task field {k}"
            );
        }
        assert!(
            TASK_STATUSES.contains(&t["status"].as_str().unwrap()),
            "{t}"
        );
        assert!(
            t["scheduledTime"].as_i64().unwrap() > 1_600_000_000_000,
            "epoch ms: {t}"
        );
        for k in [
            "name",
            "taskReferenceName",
            "type",
            "inputParameters",
            "optional",
            "retryCount",
        ] {
            assert!(t["workflowTask"].get(k).is_some(), "workflowTask.{k}");
        }
    }
}

fn refs(w: &Value) -> Vec<(String, String, i64)> {
    w["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["referenceTaskName"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap().to_owned(),
                t["retryCount"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_run_with_a_retry_and_a_fan_out() {
    let (q, tp, _worker, c) = started("conductor-ok", "progress.yaml").await;
    reflow_tests::transcript("t-conductor").await;
    let base = api().await;
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": journal(q), "transcript_id": "t-conductor"}),
        "cond-ok",
    )
    .await
    .unwrap();
    runs::wait(&c, "cond-ok").await.unwrap();

    let (s, w) = get(format!("{base}/cond-ok?includeTasks=true")).await;
    assert_eq!(s, 200, "{w}");
    check_shape(&w);
    assert_eq!(
        (w["status"].as_str(), w["correlationId"].as_str()),
        (Some("COMPLETED"), Some("t-conductor"))
    );
    assert!(w["endTime"].as_i64().unwrap() >= w["startTime"].as_i64().unwrap());
    assert_eq!(w["input"]["transcript_id"], "t-conductor");
    assert!(
        w["input"]["pipeline_hash"]
            .as_str()
            .is_some_and(|h| h.len() == 64)
    );
    assert!(
        w["input"].get("pipeline").is_none(),
        "the definition is not echoed"
    );
    assert_eq!(
        refs(&w),
        [
            ("first", "COMPLETED", 0),
            ("flaky", "FAILED", 0),
            ("flaky", "COMPLETED", 1),
            ("fork_fan", "COMPLETED", 0),
            ("fan_0", "COMPLETED", 0),
            ("fan_1", "COMPLETED", 0),
            ("join_fan", "COMPLETED", 0),
        ]
        .map(|(a, b, n)| (a.to_owned(), b.to_owned(), n))
    );
    let tasks = w["tasks"].as_array().unwrap();
    assert_eq!(tasks[1]["retried"], true);
    assert_eq!(
        tasks[2]["retriedTaskId"], tasks[1]["taskId"],
        "a retry points at the row it replaced"
    );
    assert!(
        tasks[1]["reasonForIncompletion"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert_eq!(
        tasks[3]["inputData"]["forkedTasks"],
        json!(["fan_0", "fan_1"])
    );
    assert_eq!(tasks[6]["inputData"]["joinOn"], json!(["fan_0", "fan_1"]));
    assert_eq!(w["failedReferenceTaskNames"], json!([]));
    // Stable ids across polls.
    let (_, again) = get(format!("{base}/cond-ok")).await;
    assert_eq!(again["tasks"][2]["taskId"], tasks[2]["taskId"]);
    let (_, none) = get(format!("{base}/cond-ok?includeTasks=false")).await;
    assert_eq!(none["tasks"], json!([]));

    let (_, st) = get(format!("{base}/cond-ok/status")).await;
    assert_eq!(
        st,
        json!({"workflowId": "cond-ok", "correlationId": "t-conductor", "status": "COMPLETED"})
    );
    let (_, st) = get(format!(
        "{base}/cond-ok/status?includeOutput=true&includeVariables=true"
    ))
    .await;
    assert!(st.get("output").is_some() && st["variables"] == json!({}));

    let (s, e) = get(format!("{base}/no-such-run")).await;
    assert_eq!(
        (s, e["status"].as_i64(), e["message"].as_str()),
        (
            404,
            Some(404),
            Some("No such workflow found by id: no-such-run")
        )
    );
    assert_eq!(e["retryable"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_run_names_its_step_and_optional_failures_complete_with_errors() {
    let (q, tp, _worker, c) = started("conductor-fail", "failures.yaml").await;
    let base = api().await;
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": journal(q), "fail_required": true}),
        "cond-fail",
    )
    .await
    .unwrap();
    assert!(runs::wait(&c, "cond-fail").await.is_err());
    let (_, w) = get(format!("{base}/cond-fail")).await;
    check_shape(&w);
    assert_eq!(w["status"], "FAILED");
    assert_eq!(
        w["reasonForIncompletion"], "step boom failed: TestFatal: boom cannot work",
        "§2: step {{ref}} failed: {{type}}: {{message}}"
    );
    let r = refs(&w);
    assert!(
        r.contains(&("broken".into(), "COMPLETED_WITH_ERRORS".into(), 0)),
        "{r:?}"
    );
    assert!(r.contains(&("after".into(), "COMPLETED".into(), 0)));
    assert!(
        r.contains(&("boom".into(), "FAILED_WITH_TERMINAL_ERROR".into(), 0)),
        "{r:?}"
    );
    assert_eq!(w["failedReferenceTaskNames"], json!(["boom"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_fan_outs_are_flattened_under_fork_and_join() {
    let (q, tp, _worker, c) = started("conductor-child", "parallel.yaml").await;
    let base = api().await;
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": journal(q), "items": ["a", "b"]}),
        "cond-child",
    )
    .await
    .unwrap();
    // While it runs, the shim shows a RUNNING workflow.
    let (_, w) = get(format!("{base}/cond-child")).await;
    assert_eq!(w["status"], "RUNNING");
    check_shape(&w);
    runs::wait(&c, "cond-child").await.unwrap();
    let (_, w) = get(format!("{base}/cond-child")).await;
    check_shape(&w);
    let r: Vec<String> = refs(&w).into_iter().map(|r| r.0).collect();
    // Members in scheduled order (the children run concurrently), between FORK and JOIN,
    // named after the child's step (`fork_{id}` without a `conductor:` in the pipeline).
    assert_eq!(
        (r[2].as_str(), r[5].as_str()),
        ("fork_work", "join_work"),
        "{r:?}"
    );
    let members: BTreeSet<&str> = r[3..5].iter().map(String::as_str).collect();
    assert_eq!(members, BTreeSet::from(["work_a", "work_b"]));
    let tasks = w["tasks"].as_array().unwrap();
    let member = tasks
        .iter()
        .find(|t| t["referenceTaskName"] == "work_a")
        .unwrap();
    assert_eq!(member["workflowInstanceId"], "cond-child-item-0");
    assert_eq!(
        member["inputData"]["track_workflow_id"],
        "cond-child-item-0"
    );
    assert_eq!(tasks[5]["status"], "COMPLETED");
    assert_eq!(
        tasks[5]["outputData"]["work_b"]["key"], "b",
        "JOIN maps refs to outputs"
    );
    let (_, child) = get(format!("{base}/cond-child-item-1")).await;
    assert_eq!(child["parentWorkflowId"], "cond-child");
    assert_eq!(child["workflowName"], "EngineChild");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_resets_to_the_failed_step_without_redoing_completed_ones() {
    let (q, tp, _worker, c) = started("conductor-retry", "gate.yaml").await;
    let base = api().await;
    let j = journal(q);
    runs::start(&c, &tp.pipeline, json!({"journal": j}), "cond-retry")
        .await
        .unwrap();
    assert!(
        runs::wait(&c, "cond-retry").await.is_err(),
        "the gate is closed"
    );
    let (_, w) = get(format!("{base}/cond-retry")).await;
    assert_eq!(w["failedReferenceTaskNames"], json!(["gate"]));
    let http = reqwest::Client::new();

    // The operator fixes the cause, then asks Conductor-style for a retry.
    std::fs::write(
        reflow_tests::activities::gate_path(&reflow_tests::Probe {
            journal: j.display().to_string(),
            key: "gate".into(),
            ..Default::default()
        }),
        b"",
    )
    .unwrap();
    let r = http
        .post(format!("{base}/cond-retry/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    let out = reflow_tests::wait_for(
        "the retried run to complete",
        std::time::Duration::from_secs(30),
        || async { runs::wait(&c, "cond-retry").await.ok() },
    )
    .await;
    assert_eq!(out, json!({"key": "gate"}));

    // Completed steps were not executed again; the gate ran twice (failed, then passed).
    let entries = reflow_tests::read_journal(&j);
    assert_eq!(
        reflow_tests::events(&entries, "first", "start").len(),
        1,
        "{entries:?}"
    );
    assert_eq!(reflow_tests::events(&entries, "second", "start").len(), 1);
    assert_eq!(reflow_tests::events(&entries, "gate", "start").len(), 2);
    let (_, w) = get(format!("{base}/cond-retry")).await;
    assert_eq!(w["status"], "COMPLETED");
    // A completed run with nothing failed has nothing to retry.
    let r = http
        .post(format!("{base}/cond-retry/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "There are no retryable tasks");
    let r = http
        .post(format!("{base}/nope/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// A new start of a failed workflow id (not a retry: a chain of its own) lists only its own
/// rows; the failed run's attempts are not its retries (§4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_start_of_a_failed_id_lists_only_its_own_rows() {
    let (q, tp, _worker, c) = started("conductor-restart", "gate.yaml").await;
    let base = api().await;
    let j = journal(q);
    runs::start(&c, &tp.pipeline, json!({"journal": j}), "cond-restart")
        .await
        .unwrap();
    assert!(
        runs::wait(&c, "cond-restart").await.is_err(),
        "the gate is closed"
    );
    let (_, failed) = get(format!("{base}/cond-restart")).await;
    assert_eq!(failed["failedReferenceTaskNames"], json!(["gate"]));
    let old: BTreeSet<String> = failed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskId"].as_str().unwrap().to_owned())
        .collect();
    std::fs::write(
        reflow_tests::activities::gate_path(&reflow_tests::Probe {
            journal: j.display().to_string(),
            key: "gate".into(),
            ..Default::default()
        }),
        b"",
    )
    .unwrap();
    runs::start(&c, &tp.pipeline, json!({"journal": j}), "cond-restart")
        .await
        .unwrap();
    runs::wait(&c, "cond-restart").await.unwrap();
    let (_, w) = get(format!("{base}/cond-restart")).await;
    check_shape(&w);
    assert_eq!(w["status"], "COMPLETED");
    assert_eq!(
        refs(&w),
        [
            ("first".into(), "COMPLETED".into(), 0),
            ("second".into(), "COMPLETED".into(), 0),
            ("gate".into(), "COMPLETED".into(), 0),
        ]
    );
    for t in w["tasks"].as_array().unwrap() {
        assert!(t.get("retriedTaskId").is_none(), "{t}");
        assert!(!old.contains(t["taskId"].as_str().unwrap()), "{t}");
        assert!(
            t["firstStartTime"].as_i64() >= w["startTime"].as_i64(),
            "{t}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_of_a_running_run_resets_the_step_waiting_in_backoff() {
    let (q, tp, _worker, c) = started("conductor-backoff", "backoff.yaml").await;
    let base = api().await;
    let j = journal(q);
    runs::start(&c, &tp.pipeline, json!({"journal": j}), "cond-backoff")
        .await
        .unwrap();
    let http = reqwest::Client::new();
    // Attempt 1 failed; the next one is an hour away.
    reflow_tests::wait_for(
        "the first failure",
        std::time::Duration::from_secs(20),
        || {
            let j = j.clone();
            async move {
                reflow_tests::read_journal(&j)
                    .iter()
                    .any(|e| e.event == "fail")
                    .then_some(())
            }
        },
    )
    .await;
    std::fs::write(
        reflow_tests::activities::gate_path(&reflow_tests::Probe {
            journal: j.display().to_string(),
            key: "latch".into(),
            ..Default::default()
        }),
        b"",
    )
    .unwrap();
    // The failure is journalled before the server hears of it: wait until the server shows
    // the step waiting for attempt 2 (before that, 409 "still running" is the right answer).
    reflow_tests::wait_for(
        "attempt 2 scheduled",
        std::time::Duration::from_secs(20),
        || {
            let c = c.clone();
            async move {
                let d = c
                    .get_workflow_handle::<temporalio_client::UntypedWorkflow>("cond-backoff")
                    .describe(temporalio_client::WorkflowDescribeOptions::default())
                    .await
                    .ok()?;
                let raw = serde_json::to_value(&d.raw_description).ok()?;
                raw["pending_activities"]
                    .as_array()?
                    .iter()
                    .any(|p| p["attempt"].as_i64() > Some(1))
                    .then_some(())
            }
        },
    )
    .await;
    let r = http
        .post(format!("{base}/cond-backoff/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    let out = reflow_tests::wait_for(
        "the reset step to succeed (not in an hour)",
        std::time::Duration::from_secs(30),
        || async { runs::wait(&c, "cond-backoff").await.ok() },
    )
    .await;
    assert_eq!(out["key"], "latch");
    assert_eq!(out["attempt"], 1, "the reset put the attempt back to 1");
    let (_, w) = get(format!("{base}/cond-backoff")).await;
    assert!(
        w["lastRetriedTime"].as_i64() > w["startTime"].as_i64(),
        "the accepted retry is recorded: {}",
        w["lastRetriedTime"]
    );
    // Nothing left to retry now.
    let r = http
        .post(format!("{base}/cond-backoff/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_cut_by_its_heartbeat_timeout_is_timed_out_by_heartbeat() {
    let (q, tp, _worker, c) = started("conductor-hang", "hang.yaml").await;
    let base = api().await;
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": journal(q)}),
        "cond-hang",
    )
    .await
    .unwrap();
    runs::wait(&c, "cond-hang").await.unwrap();
    let (_, w) = get(format!("{base}/cond-hang")).await;
    check_shape(&w);
    assert_eq!(w["status"], "COMPLETED");
    let rows: Vec<(i64, &str, &str)> = w["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["referenceTaskName"] == "stuck")
        .map(|t| {
            (
                t["retryCount"].as_i64().unwrap(),
                t["status"].as_str().unwrap(),
                t["reasonForIncompletion"].as_str().unwrap_or(""),
            )
        })
        .collect();
    // The hung first attempt never reported an end; Temporal's record of why it ended
    // (the heartbeat timeout) names it.
    assert_eq!(
        rows,
        [(0, "TIMED_OUT", "timeout: HEARTBEAT"), (1, "COMPLETED", "")],
        "{}",
        w["tasks"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_steps_are_tasks_with_their_attempts_input_output_and_failure() {
    let (q, tp, _worker, c) = started("conductor-local", "local.yaml").await;
    let base = api().await;
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": journal(q)}),
        "cond-local",
    )
    .await
    .unwrap();
    runs::wait(&c, "cond-local").await.unwrap();
    let (_, w) = get(format!("{base}/cond-local")).await;
    check_shape(&w);
    assert_eq!(w["status"], "COMPLETED");
    assert_eq!(
        refs(&w),
        [
            ("first".into(), "COMPLETED".into(), 0),
            ("flaky".into(), "FAILED".into(), 0),
            ("flaky".into(), "FAILED".into(), 1),
            ("flaky".into(), "COMPLETED".into(), 2),
            ("broken".into(), "COMPLETED_WITH_ERRORS".into(), 0),
            ("queued".into(), "COMPLETED".into(), 0),
        ]
    );
    let tasks = w["tasks"].as_array().unwrap();
    let first = &tasks[0];
    assert_eq!(
        first["inputData"]["key"], "first",
        "the marker keeps the input"
    );
    assert_eq!(first["outputData"]["result"], "one");
    assert_eq!(first["responseTimeoutSeconds"], 30);
    assert_eq!(
        first["workflowTask"]["retryCount"], 4,
        "5 attempts declared"
    );
    assert!(
        tasks[1]["reasonForIncompletion"]
            .as_str()
            .unwrap_or_default()
            .contains("Flaky: flaky failure on attempt 1"),
        "{}",
        tasks[1]
    );
    assert_eq!(tasks[3]["outputData"]["attempt"], 3);
    assert_eq!(
        tasks[4]["reasonForIncompletion"],
        "TestFatal: broken cannot work"
    );
    for t in tasks {
        let (s, e) = (
            t["startTime"].as_i64().unwrap(),
            t["endTime"].as_i64().unwrap(),
        );
        assert!(
            s > 0 && e >= s,
            "times of {}: {s}..{e}",
            t["referenceTaskName"]
        );
    }
}
