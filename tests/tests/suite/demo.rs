//! The demo meeting as a new user first meets reflow (`just demo`): `scripts/demo-meeting.py`
//! synthesizes the three-speaker meeting with espeak-ng, `reflow process` runs it on the
//! production pipeline with the embedded defaults (Whisper base, Qwen2.5-Coder-0.5B with f16
//! weights), and the recap — the first thing the user reads, printed by the command and saved
//! in `summary.md` — names the meeting's release date and its budget. The patterns are the
//! demo script's own fact list (`scripts/demo-meeting.py --facts`, which `just bench-e2e`
//! scores as `summary_fact_recall`).

use std::path::Path;
use std::process::Command;

use reflow_tests::demo::{Fact, demo_meeting};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_meetings_recap_names_the_release_date_and_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let meeting = tmp.path().join("demo-meeting");
    demo_meeting(&[&meeting]).unwrap();
    let out = tmp.path().join("out");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"))
        .current_dir(&root)
        .arg("process")
        .arg(&meeting)
        .args(["--http", "127.0.0.1:0", "--out"])
        .arg(&out)
        .env("TEMPORAL_ADDRESS", &reflow_tests::server().address)
        .env("REFLOW_DATA_DIR", tmp.path().join("data"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "reflow process failed: {printed}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    eprintln!("{summary}");
    let recap = summary
        .split("# Quick recap")
        .nth(1)
        .and_then(|r| r.split("# Summary").next())
        .unwrap_or_else(|| panic!("summary.md has no quick recap: {summary}"))
        .trim();
    assert!(
        printed.contains(recap),
        "the command prints the recap: {printed}"
    );
    for (fact, what) in [
        ("version two ships", "the release date"),
        ("the $10,000 marketing budget", "the budget"),
    ] {
        let fact = Fact::of_demo_starting(fact).unwrap();
        assert!(
            fact.carried_by(recap).unwrap(),
            "the recap names {what}: {recap}"
        );
    }

    // Written by the model, not the extractive fallback (which could carry the same facts
    // by copying the subject paragraphs): the run's own record of the step says so.
    let workflow_id = reflow::local::run_of(&meeting).unwrap();
    let run = reflow::history::load(&reflow_tests::client().await, &workflow_id)
        .await
        .unwrap();
    let recap = run
        .steps
        .iter()
        .find_map(|s| match &s.close {
            Some(reflow::history::Close::Completed { result, .. })
                if s.activity_type == "generate_recap" =>
            {
                Some(result.clone())
            }
            _ => None,
        })
        .expect("the run completed generate_recap");
    assert_eq!(recap["method"], "llm", "the recap step's result: {recap}");
}
