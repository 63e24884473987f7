//! The `reflow` binary's commands that need no server: `validate` on the repository's
//! pipelines and on broken copies, and the error for commands that need Temporal.

use std::path::Path;
use std::process::Command;

fn reflow() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_reflow"));
    c.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    c.env_remove("TEMPORAL_ADDRESS").env("RUST_LOG", "warn");
    c
}

#[test]
fn the_repository_pipelines_validate_against_the_worker_registry() {
    let out = reflow().args(["validate", "pipelines/"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("pipelines/digest.yaml: ok — DirectoryDigest v1"),
        "{stdout}"
    );
}

#[test]
fn a_broken_copy_fails_naming_the_file_the_steps_and_the_causes() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/digest.yaml"),
    )
    .unwrap();
    let broken = text
        .replace("needs: [list]\n", "needs: [list, report]\n")
        .replace("needs: [digest]\n", "needs: [digest, sumary]\n");
    let file = dir.path().join("digest.yaml");
    std::fs::write(&file, broken).unwrap();

    let out = reflow().arg("validate").arg(&file).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(78),
        "invalid configuration exits with EX_CONFIG"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let f = file.display();
    assert!(
        stderr.contains(&format!(
            r#"{f}: step "report": needs "sumary", which is not a step"#
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            r#"{f}: step "digest": cycle: digest -> report -> digest"#
        )),
        "{stderr}"
    );
}

#[test]
fn commands_that_need_temporal_say_how_to_get_one() {
    let out = reflow().args(["status", "some-run"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TEMPORAL_ADDRESS is not set") && stderr.contains("reflow dev"),
        "{stderr}"
    );
}
