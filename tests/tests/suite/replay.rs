//! Determinism guard: histories recorded from real runs (`tests/fixtures/histories/`, written
//! by the engine tests with `REFLOW_RECORD_HISTORIES=1`) must replay against the current
//! interpreter. A change that would break runs in flight fails here, without a server.

use reflow_tests::{histories_dir, replay};
use temporalio_client::WorkflowHistory;

#[tokio::test]
async fn recorded_histories_replay_against_the_current_interpreter() {
    let mut files: Vec<_> = std::fs::read_dir(histories_dir())
        .expect("fixture directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "recorded histories are present: {files:?}"
    );
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let history = WorkflowHistory::from_json(&bytes).unwrap();
        replay(history)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}
