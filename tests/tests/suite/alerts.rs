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

/// Every query of the dashboards in `dashboards/`, Grafana's variables given example values.
fn dashboard_queries() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut out = Vec::new();
    for path in files(&dir, ".json") {
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in dash["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "5m")
                    .replace("$pipeline", "DiarizationPipeline")
                    .replace("$current", "2")
                    .replace("$candidate", "3")
                    .replace("${datasource}", "prometheus");
                out.push((panel["title"].as_str().unwrap().to_owned(), expr));
            }
        }
    }
    out
}

/// `queries` as the recording rules `q0`, `q1`, … of a rules file.
fn recording_rules(queries: &[&str]) -> String {
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: q{i}\n        expr: {}\n",
            serde_json::to_string(q).unwrap()
        ));
    }
    rules
}

/// The dashboards' queries are valid PromQL, and the per-version panels (issue 36: compare a
/// rollout's candidate with the current version) read the steps' `version` label: on series of
/// two versions, the candidate's p95 over the current one's and each version's failure rate
/// come out as the numbers say.
#[test]
fn dashboard_queries_are_valid_and_the_per_version_panels_compare_the_candidate_with_current() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");
    let tmp = tempfile::tempdir().unwrap();
    let all: Vec<&str> = queries.iter().map(|(_, q)| q.as_str()).collect();
    std::fs::write(tmp.path().join("all.rules.yml"), recording_rules(&all)).unwrap();
    let checked = promtool(
        &["check", "rules"],
        &[tmp.path().join("all.rules.yml")],
        tmp.path(),
    );
    assert!(checked.contains("SUCCESS"), "{checked}");

    let of = |title: &str| -> Vec<&str> {
        let q: Vec<&str> = queries
            .iter()
            .filter(|(t, _)| t == title)
            .map(|(_, q)| q.as_str())
            .collect();
        assert!(!q.is_empty(), "a panel {title:?}");
        q
    };
    let ratio = of("Step latency p95, candidate ÷ current")[0];
    let failures = of("Step failure rate: candidate vs current");
    std::fs::write(
        tmp.path().join("versions.rules.yml"),
        recording_rules(&[
            &format!("round({ratio}, 0.01)"),
            &format!("round({}, 0.001)", failures[0]),
            &format!("round({}, 0.001)", failures[1]),
        ]),
    )
    .unwrap();
    // v2 (current): every generate_title attempt within 1 s, one in four fails; v3
    // (candidate): within 10 s, one in two fails. Another pipeline's v3 is not counted.
    let series = |labels: &str, per_minute: u32| {
        format!("      - series: 'reflow_{labels}'\n        values: '0+{per_minute}x30'\n")
    };
    let step = |v: &str| {
        format!("pipeline=\"DiarizationPipeline\", version=\"{v}\", step=\"generate_title\"")
    };
    let mut input = String::new();
    for (v, le_fast, le_slow) in [("2", 4, 4), ("3", 0, 4)] {
        for (le, n) in [("1", le_fast), ("10", le_slow), ("+Inf", le_slow)] {
            input += &series(
                &format!(
                    "step_duration_seconds_bucket{{{}, outcome=\"success\", le=\"{le}\"}}",
                    step(v)
                ),
                n,
            );
        }
    }
    input += &series(
        &format!("step_attempts_total{{{}, outcome=\"success\"}}", step("2")),
        3,
    );
    input += &series(
        &format!(
            "step_attempts_total{{{}, outcome=\"retryable_failure\"}}",
            step("2")
        ),
        1,
    );
    input += &series(
        &format!("step_attempts_total{{{}, outcome=\"success\"}}", step("3")),
        2,
    );
    input += &series(
        &format!(
            "step_attempts_total{{{}, outcome=\"non_retryable_failure\"}}",
            step("3")
        ),
        2,
    );
    input += &series(
        "step_attempts_total{pipeline=\"TrackProcessing\", version=\"3\", step=\"generate_title\", outcome=\"non_retryable_failure\"}",
        100,
    );
    let expect = |rule: &str, value: &str| {
        format!(
            "          - expr: {rule}\n            eval_time: 20m\n            exp_samples:\n              - labels: '{rule}{{step=\"generate_title\"}}'\n                value: {value}\n"
        )
    };
    // p95 within the first bucket: 0.95 s on v2; on v3 linear within 1–10 s, 1 + 9 × 0.95 =
    // 9.55 s: 9.55 / 0.95 ≈ 10.05 (rounded, like the failure rates, for an exact comparison).
    let test = format!(
        "rule_files:\n  - versions.rules.yml\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{input}    promql_expr_test:\n{}{}{}",
        expect("q0", "10.05"),
        expect("q1", "0.5"),
        expect("q2", "0.25"),
    );
    std::fs::write(tmp.path().join("versions.test.yml"), test).unwrap();
    let tested = promtool(
        &["test", "rules"],
        &[tmp.path().join("versions.test.yml")],
        tmp.path(),
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
}
