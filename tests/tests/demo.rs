//! The demo meeting as a new user first meets reflow (`just demo`): `scripts/demo-meeting.py`
//! synthesizes the three-speaker meeting with espeak-ng, `reflow process` runs it on the
//! production pipeline with the embedded defaults (Whisper base, Qwen2.5-Coder-0.5B with f16
//! weights), and the recap — the first thing the user reads, printed by the command and saved
//! in `summary.md` — names the meeting's release date and its budget. The patterns are the
//! demo script's own fact list (`scripts/demo-meeting.py --facts`, which `just bench-e2e`
//! scores as `summary_fact_recall`).

use std::path::Path;
use std::process::Command;

fn demo_script(args: &[&std::ffi::OsStr]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo-meeting.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether every pattern of the fact whose text starts with `fact` matches `text`
/// (case-insensitive).
fn carries(facts: &serde_json::Value, fact: &str, text: &str) -> bool {
    let f = facts
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fact"].as_str().unwrap().starts_with(fact))
        .unwrap_or_else(|| panic!("no fact {fact:?} in the demo script"));
    f["patterns"].as_array().unwrap().iter().all(|p| {
        regex::RegexBuilder::new(p.as_str().unwrap())
            .case_insensitive(true)
            .build()
            .unwrap()
            .is_match(text)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_meetings_recap_names_the_release_date_and_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let meeting = tmp.path().join("demo-meeting");
    demo_script(&[meeting.as_os_str()]);
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
    let facts: serde_json::Value =
        serde_json::from_str(&demo_script(&["--facts".as_ref()])).unwrap();
    assert!(
        carries(&facts, "version two ships", recap),
        "the recap names the release date: {recap}"
    );
    assert!(
        carries(&facts, "the $10,000 marketing budget", recap),
        "the recap names the budget: {recap}"
    );
}
