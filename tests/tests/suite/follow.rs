//! `reflow status <id> --follow` against a real run: it waits while the run works and ends
//! with the final table once the run is done.

use std::time::Instant;

use reflow::runs;
use reflow_tests::{journal, started};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_waits_for_the_run_and_prints_its_final_table() {
    let (q, tp, _worker, c) = started("follow", "parallel.yaml").await;
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": journal(q), "items": ["a", "b"]}),
        "follow-1",
    )
    .await
    .unwrap();
    let begun = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"))
        .args(["status", "follow-1", "--follow"])
        .env("TEMPORAL_ADDRESS", &reflow_tests::server().address)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The run takes 0.8 s + 1.5 s of sleeps: following returned only after it ended.
    assert!(
        begun.elapsed().as_millis() >= 1500,
        "returned after {:?}",
        begun.elapsed()
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("follow-1") && table.contains("Completed"),
        "{table}"
    );
    assert!(table.contains("work_a") || table.contains("fan"), "{table}");
    let p = runs::query_progress(&c, "follow-1").await.unwrap();
    assert_eq!(p.status, workflow::progress::RunStatus::Completed);
}
