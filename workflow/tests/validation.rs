//! Validation goldens: every file in `fixtures/invalid/` lists the errors it must produce in
//! `# expect:` lines (each the start of one reported line, no more and no fewer); every file in
//! `fixtures/valid/` must validate.

use std::path::Path;

use workflow::Catalog;
use workflow::pipeline::rollout::{ROLLOUT_FILE, Rollouts};

/// `convert`'s contract, as an activity module states it: its input and output types.
#[allow(dead_code)]
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConvertInput {
    key: String,
    #[serde(default)]
    quality: Option<u8>,
}

#[allow(dead_code)]
#[derive(serde::Serialize, schemars::JsonSchema)]
struct ConvertOutput {
    out_key: String,
    bytes: u64,
}

fn catalog() -> Catalog {
    Catalog::new()
        .activity("fetch", &[workflow::catalog::Event::Status])
        .activity("work", &[])
        .activity("publish", &[])
        .contract::<ConvertInput, ConvertOutput>(
            "convert",
            workflow::catalog::Step::FREE.emitting(&[workflow::catalog::Event::Waveform]),
        )
        .workflow_type("Main")
        .workflow_type("Child")
}

fn fixtures(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn invalid_pipelines_report_every_error_with_file_step_and_cause() {
    let files = fixtures("invalid");
    assert!(files.len() >= 10);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = format!("pipelines/{}", f.file_name().unwrap().to_string_lossy());
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        let report = workflow::parse_and_validate(&name, &text, &catalog()).expect_err(&name);
        let got: Vec<String> = report.to_string().lines().map(str::to_owned).collect();
        assert_eq!(
            got.len(),
            expected.len(),
            "{name}: expected {expected:#?}\ngot {got:#?}"
        );
        for e in &expected {
            let want = format!("{name}: {e}");
            assert!(
                got.iter().any(|g| g.starts_with(&want)),
                "{name}:\n  want {want}\n  got  {got:#?}"
            );
        }
    }
}

#[test]
fn valid_pipelines_validate_with_defaults_merged() {
    for f in fixtures("valid") {
        let text = std::fs::read_to_string(&f).unwrap();
        let p = workflow::parse_and_validate("valid.yaml", &text, &catalog())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if !f.ends_with("full.yaml") {
            continue;
        }
        let per_item = p.main.step("per_item").unwrap();
        assert_eq!(per_item.options.task_queue, "heavy");
        assert_eq!(per_item.options.start_to_close_ms, Some(720_000));
        assert_eq!(per_item.options.heartbeat_ms, Some(120_000));
        assert_eq!(
            per_item.options.retry.maximum_attempts, 2,
            "step retry overrides the default's"
        );
        assert_eq!(
            per_item.options.retry.initial_interval_ms, 2_000,
            "unset fields keep the default's"
        );
        assert_eq!(
            per_item.options.retry.non_retryable_error_types,
            ["ConfigError"]
        );
        let fetch = p.main.step("fetch").unwrap();
        assert_eq!(
            fetch.options.task_queue, "main-q",
            "the pipeline's queue is the default"
        );
        let child = &p.children["Child"];
        assert_eq!(child.task_queue, "child-q");
        assert_eq!(child.steps[0].options.schedule_to_close_ms, Some(600_000));
        assert_eq!(p.task_queues(), ["child-q", "heavy", "main-q"]);
        assert_eq!(p.hash, p.compute_hash());
    }
}

#[test]
fn the_hash_changes_with_meaning_not_with_comments() {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/full.yaml");
    let text = std::fs::read_to_string(full).unwrap();
    let a = workflow::parse_and_validate("a", &text, &catalog()).unwrap();
    let b = workflow::parse_and_validate("b", &format!("# a comment\n{text}"), &catalog()).unwrap();
    let c = workflow::parse_and_validate(
        "c",
        &text.replace("concurrency: 2", "concurrency: 3"),
        &catalog(),
    )
    .unwrap();
    assert_eq!(a.hash, b.hash);
    assert_ne!(a.hash, c.hash);
}

#[test]
fn the_example_pipelines_of_the_repository_parse() {
    // Their activities are checked against the real registry by the worker's CLI tests.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // The rollout declaration lives beside the pipelines but is not one.
        if path.file_name().is_some_and(|n| n == ROLLOUT_FILE) {
            serde_yaml_ng::from_str::<Rollouts>(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        } else {
            serde_yaml_ng::from_str::<workflow::pipeline::raw::RawPipeline>(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}
