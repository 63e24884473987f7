//! The alert rules in `dashboards/alerts/` are valid Prometheus rules and behave as their unit
//! tests say (`promtool check rules`, `promtool test rules`; promtool comes with Debian's
//! `prometheus` package, installed by `just setup-test`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

fn promtool(args: &[&str], files: &[PathBuf], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .args(files)
        .current_dir(dir)
        .output()
        .expect("promtool is installed (just setup-test)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn alert_rules_are_valid_and_pass_their_unit_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/alerts");
    let rules = files(&dir, ".rules.yml");
    assert!(!rules.is_empty());
    let checked = promtool(&["check", "rules"], &rules, &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tests = files(&dir.join("tests"), ".test.yml");
    assert!(!tests.is_empty());
    let tested = promtool(&["test", "rules"], &tests, &dir.join("tests"));
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn step_latency_rules_are_generated_from_the_current_pipelines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let registry = reflow::registry::Registry::builtin();
    let pipelines: Vec<_> = reflow::cli::pipeline_files(&root.join("pipelines"))
        .unwrap()
        .iter()
        .map(|f| reflow::runs::load_pipeline(f, registry.catalog()).unwrap())
        .collect();
    let generated = reflow::alerts::rules(&reflow::alerts::budgets(&pipelines));
    let committed =
        std::fs::read_to_string(root.join("dashboards/alerts/steps.rules.yml")).unwrap();
    assert_eq!(
        committed, generated,
        "dashboards/alerts/steps.rules.yml is stale: run `just alerts`"
    );
}
