//! Determinism guard: histories recorded from real runs (`tests/fixtures/histories/`, written
//! by the engine tests with `REFLOW_RECORD_HISTORIES=1`) must replay against the current
//! interpreter. A change that would break runs in flight fails here, without a server.

use std::path::PathBuf;
use std::sync::Arc;

use reflow_tests::{histories_dir, replay};
use temporalio_client::WorkflowHistory;
use temporalio_common::protos::temporal::api::history::v1::History;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use workflow::interpreter::resolve::RESOLVE_PIPELINE;

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
    hold_resolved_definitions(&files);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let history = WorkflowHistory::from_json(&bytes).unwrap();
        replay(history)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

/// The definitions the recorded main runs resolved, held as a worker holds the registered
/// versions (`workflow::pipeline::store`): a child of a run that took `reflow-lean-history-2`
/// reads its graph there, not from a marker of its own, and a replaying worker holds every
/// registered version. A child whose version no recorded main run resolved fails to replay.
fn hold_resolved_definitions(files: &[PathBuf]) {
    for f in files {
        let history: History = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        for e in history.events {
            let Some(Attributes::MarkerRecordedEventAttributes(m)) = e.attributes else {
                continue;
            };
            let payload = |k: &str| {
                m.details
                    .get(k)
                    .and_then(|p| p.payloads.first())
                    .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p.data).ok())
            };
            if payload("data").is_some_and(|d| d["activity_type"] == RESOLVE_PIPELINE)
                && let Some(p) = payload("result")
                    .and_then(|v| serde_json::from_value::<workflow::Pipeline>(v).ok())
            {
                // A child's own graph does not hash to the version's hash: not held.
                workflow::pipeline::store::insert(&Arc::new(p));
            }
        }
    }
}
