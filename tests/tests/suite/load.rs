//! Load (issue: reliability suites), CI-sized: `REFLOW_LOAD_PIPELINES` (default 12)
//! synthesized 2-track meetings delivered at once to one in-process worker on the embedded
//! defaults (SQLite, a directory store). Every run must end with its transcript complete, no
//! queue may run more activities at once than its slots, and the meetings must really share
//! the worker (transcriptions of different meetings overlapping). `just bench-pipeline` runs
//! 50 and reports the wall time and slot usage (bench/results/load.md).

use std::time::Duration;

use reflow_tests::meetings::{self, voices};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_meetings_all_end_within_the_slots() {
    let n: usize = std::env::var("REFLOW_LOAD_PIPELINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let _one = meetings::exclusive().await;
    let (stack, _worker) = meetings::in_process(Duration::from_millis(500), false).await;
    let dir = tempfile::tempdir().unwrap();
    let tracks = voices(dir.path(), 2);
    let mut all = Vec::new();
    for i in 0..n {
        all.push(stack.meeting("load", i, &tracks).await);
    }
    let runs = all.iter().map(|m| async {
        let (tid, out) = stack.run(m).await;
        (m.workflow_id.clone(), tid, out)
    });
    let done = futures::future::join_all(runs).await;
    let mut failed = Vec::new();
    for (id, tid, out) in &done {
        if let Err(e) = out {
            failed.push(format!("{id}: {e}"));
        }
        let t = stack.db.transcript(tid).await.unwrap();
        if t.status != "ended" || t.title.is_none() || t.long_summary.is_none() {
            failed.push(format!("{id}: transcript {} {:?}", t.status, t.error));
        }
    }
    assert!(failed.is_empty(), "every run ends: {failed:#?}");

    let ids: Vec<String> = all.iter().map(|m| m.workflow_id.clone()).collect();
    let spans = meetings::activity_spans(&stack.client, &ids).await;
    let peaks = meetings::peak_concurrency(&spans);
    eprintln!("{n} meetings: peak activities per queue {peaks:?}");
    for (queue, peak) in &peaks {
        let slots = reflow::worker::activity_slots(queue, None);
        assert!(*peak <= slots, "{queue}: {peak} at once with {slots} slots");
    }
    let transcriptions = spans
        .iter()
        .filter(|s| s.activity == "transcribe_track")
        .count();
    assert_eq!(transcriptions, 2 * n, "each track transcribed once");
    assert!(
        peaks.get("reflow-asr").is_some_and(|p| *p >= 2)
            && peaks.get("reflow-llm").is_some_and(|p| *p >= 2),
        "transcriptions and LLM steps of different meetings ran at once: {peaks:?}"
    );
}
