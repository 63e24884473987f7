//! `PIPELINE_PROGRESS` from a real run: the workflow reports each step's state through the
//! `report_progress` local activity; the frontend sees in_progress → (retry) → completed per
//! step index, fan-outs counted, pending only in the stored catch-up, each state naming the
//! run's pipeline version; every attempt recorded in `step_attempt`.

use std::time::Duration;

use activities::events::Message;
use reflow::runs;
use reflow_tests::{journal, started};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_a_retried_step_reports_every_transition_in_order() {
    let (q, tp, _worker, c) = started("progress", "progress.yaml").await;
    let j = journal(q);
    reflow_tests::transcript("t-progress").await;
    let mut rx = reflow_tests::hub().subscribe();
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": j, "transcript_id": "t-progress"}),
        "progress-1",
    )
    .await
    .unwrap();
    runs::wait(&c, "progress-1").await.unwrap();

    // Everything broadcast for this transcript, in order, until the fan-out completed.
    let mut seen: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen
        .iter()
        .any(|d| d["step_index"] == 3 && d["step_status"] == "completed")
    {
        let m = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("progress events arrive")
            .unwrap();
        if let Message::Transcript(e) = &*m
            && e.transcript_id == "t-progress"
        {
            assert_eq!(e.event, "PIPELINE_PROGRESS");
            assert_eq!(e.seq, 0, "progress is broadcast, not stored");
            seen.push(e.data.clone());
        }
    }
    let brief: Vec<(u64, String, u64, Option<String>)> = seen
        .iter()
        .map(|d| {
            (
                d["step_index"].as_u64().unwrap(),
                d["step_status"].as_str().unwrap().to_owned(),
                d["attempt"].as_u64().unwrap(),
                d["message"].as_str().map(str::to_owned),
            )
        })
        .collect();
    // Per index, the states come in order and never go back.
    let of = |i: u64| {
        brief
            .iter()
            .filter(|b| b.0 == i)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of(1).iter().map(|b| b.1.as_str()).collect::<Vec<_>>(),
        ["in_progress", "completed"]
    );
    let flaky = of(2);
    assert_eq!(
        flaky.first().map(|b| (b.1.as_str(), b.2)),
        Some(("in_progress", 1)),
        "{brief:?}"
    );
    let retry = flaky
        .iter()
        .find(|b| b.2 == 2)
        .unwrap_or_else(|| panic!("attempt 2 is visible: {brief:?}"));
    assert_eq!(retry.1, "in_progress");
    assert!(
        retry
            .3
            .as_deref()
            .is_some_and(|m| m.contains("attempt 1") && m.contains("retrying")),
        "the previous failure is in the message: {retry:?}"
    );
    assert_eq!(
        flaky.last().map(|b| (b.1.as_str(), b.2)),
        Some(("completed", 2))
    );
    let fan = of(3);
    assert_eq!(fan.last().unwrap().1, "completed");
    assert!(
        fan.iter()
            .any(|b| b.3.as_deref().is_some_and(|m| m.ends_with("/2 done"))),
        "fan-out progress is counted: {fan:?}"
    );
    assert!(
        brief.iter().all(|b| b.1 != "pending"),
        "pending is never broadcast live"
    );
    let first = &seen[0];
    for field in [
        "workflow_id",
        "current_step",
        "total_steps",
        "max_attempts",
        "started_at",
    ] {
        assert!(first.get(field).is_some(), "{field} in {first}");
    }
    assert_eq!(
        (first["workflow_id"].as_str(), first["total_steps"].as_u64()),
        (Some("progress-1"), Some(3))
    );
    assert!(
        seen.iter()
            .all(|d| d["pipeline_version"] == json!(tp.pipeline.version)),
        "every state names the run's pipeline version: {seen:?}"
    );

    // The stored latest state per index, for sockets that connect later.
    let stored = reflow_tests::db()
        .progress_events("t-progress")
        .await
        .unwrap();
    let states: Vec<(u64, &str)> = stored
        .iter()
        .map(|d| {
            (
                d["step_index"].as_u64().unwrap(),
                d["step_status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [(1, "completed"), (2, "completed"), (3, "completed")]
    );
    assert_eq!(stored[1]["attempt"], 2);
    assert_eq!(stored[1]["pipeline_version"], json!(tp.pipeline.version));

    // Every attempt has its step_attempt row (the status API's source); the local progress
    // reports are internal and not among them.
    let attempts = reflow_tests::db().attempts("progress-1").await.unwrap();
    let rows: Vec<(&str, i64, &str)> = attempts
        .iter()
        .map(|a| (a.activity_id.as_str(), a.attempt, a.status.as_str()))
        .collect();
    assert_eq!(
        rows.iter()
            .filter(|r| r.0 == "flaky")
            .copied()
            .collect::<Vec<_>>(),
        [("flaky", 1, "failed"), ("flaky", 2, "completed")]
    );
    assert!(rows.contains(&("first", 1, "completed")) && rows.contains(&("fan_1", 1, "completed")));
    assert!(
        attempts
            .iter()
            .all(|a| a.activity_type != "report_progress")
    );
    let failed = attempts.iter().find(|a| a.status == "failed").unwrap();
    assert!(
        failed.failure_message.is_some() && failed.ended_at.is_some(),
        "{failed:?}"
    );
    assert!(
        failed
            .worker_identity
            .as_deref()
            .is_some_and(|w| w.contains('@'))
    );
}
