//! Every operator command of `docs/runbook.md` ("Operator commands", the blocks marked
//! `<!-- tested: … -->`) run exactly as written, through `bash`, against the real dev server,
//! with the outcome it promises checked: a run found by its recording id, the failing step and
//! its cause shown, a step in a one-hour backoff retried at once, failed runs listed by where
//! they stopped, a failed run resumed from its failed step (earlier steps not re-run), a run
//! re-run from a named step, and a run cancelled.

use std::path::Path;
use std::time::Duration;

use reflow::runs;
use reflow_tests::runbook::bin_dir;
use reflow_tests::{events, journal, read_journal, started, wait_for};
use serde_json::json;
use temporalio_client::{UntypedWorkflow, WorkflowDescribeOptions};

/// Run the block `name` with `vars` against the suite's server; its stdout.
async fn run(bin: &Path, name: &str, vars: &[(&str, &str)]) -> String {
    let mut all = vec![("TEMPORAL_ADDRESS", reflow_tests::server().address.as_str())];
    all.extend_from_slice(vars);
    reflow_tests::runbook::run(bin, name, &all).await
}

/// Run the block until its output contains `needle` (visibility is eventually consistent).
async fn run_until(bin: &Path, name: &str, vars: &[(&str, &str)], needle: &str) -> String {
    let mut last = String::new();
    for _ in 0..40 {
        last = run(bin, name, vars).await;
        if last.contains(needle) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("block {name} never showed {needle:?}; last output:\n{last}")
}

fn count(j: &Path, key: &str, event: &str) -> usize {
    events(&read_journal(j), key, event).len()
}

async fn status(c: &temporalio_client::Client, id: &str) -> String {
    let d = c
        .get_workflow_handle::<UntypedWorkflow>(id)
        .describe(WorkflowDescribeOptions::default())
        .await
        .unwrap();
    format!("{:?}", d.status())
}

async fn wait_status(c: &temporalio_client::Client, id: &str, want: &str) {
    wait_for(&format!("{id} {want}"), Duration::from_secs(60), || async {
        (status(c, id).await == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_runbook_command_does_what_the_runbook_says() {
    let (_q, tp, _worker, c) = started("runbook", "operator.yaml").await;
    let bin = bin_dir();
    let j = journal("runbook");
    let id = "runbook-op-1";
    let rec = "rec-runbook-1";
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": j, "recording_id": rec}),
        id,
    )
    .await
    .unwrap();
    let vars = [("WORKFLOW_ID", id), ("RECORDING_ID", rec)];

    // Find the run by its recording id.
    run_until(&bin, "find-run", &vars, id).await;

    // The latch failed once and now waits an hour: describe shows the step and its cause.
    wait_for("latch failed once", Duration::from_secs(30), || async {
        (count(&j, "latch", "fail") == 1).then_some(())
    })
    .await;
    let described = run_until(&bin, "describe", &vars, "is not ready").await;
    assert!(described.contains("latch"), "{described}");

    // The cause is fixed; the step is retried now instead of in an hour.
    std::fs::write(format!("{}.latch.open", j.display()), "").unwrap();
    let mut v = vars.to_vec();
    v.push(("ACTIVITY_ID", "latch"));
    run(&bin, "activity-reset", &v).await;
    wait_for("latch done", Duration::from_secs(30), || async {
        (count(&j, "latch", "end") == 1).then_some(())
    })
    .await;

    // The gate fails for good: the run fails, found by where it stopped.
    wait_status(&c, id, "Failed").await;
    let mut v = vars.to_vec();
    v.push(("STEP", "gate"));
    let listed = run_until(&bin, "failed-runs", &v, id).await;
    assert_eq!(
        listed.matches(id).count(),
        2,
        "both queries list it:\n{listed}"
    );
    let described = run(&bin, "describe", &vars).await;
    assert!(
        described.contains(r#"step \"gate\" failed"#)
            || described.contains(r#"step "gate" failed"#),
        "{described}"
    );

    // Resume from the failed step once it is fixed: first and latch are not run again.
    std::fs::write(format!("{}.gate.open", j.display()), "").unwrap();
    run(&bin, "workflow-reset", &vars).await;
    wait_status(&c, id, "Completed").await;
    assert_eq!(count(&j, "first", "start"), 1, "first kept");
    assert_eq!(
        count(&j, "latch", "start"),
        2,
        "latch kept (its two attempts)"
    );
    assert_eq!(count(&j, "gate", "end"), 1);

    // Re-run from the latch: it and the gate run again, first does not.
    let mut v = vars.to_vec();
    v.push(("STEP", "latch"));
    run(&bin, "rerun-from-step", &v).await;
    wait_for("latch re-run", Duration::from_secs(30), || async {
        (count(&j, "gate", "end") == 2).then_some(())
    })
    .await;
    wait_status(&c, id, "Completed").await;
    assert_eq!(count(&j, "first", "start"), 1);
    assert_eq!(count(&j, "latch", "start"), 3);

    // Cancel a run whose latch waits out its backoff.
    let j2 = journal("runbook-cancel");
    let id2 = "runbook-op-2";
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": j2, "recording_id": "rec-runbook-2"}),
        id2,
    )
    .await
    .unwrap();
    wait_for("latch failed once", Duration::from_secs(30), || async {
        (count(&j2, "latch", "fail") == 1).then_some(())
    })
    .await;
    run(&bin, "cancel", &[("WORKFLOW_ID", id2)]).await;
    wait_status(&c, id2, "Canceled").await;
}
