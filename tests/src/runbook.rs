//! The operator commands of `docs/runbook.md` (the blocks marked `<!-- tested: … -->`), run
//! exactly as written through `bash`, with `reflow` (this suite's build) and `temporal` on the
//! `PATH`.

use std::path::{Path, PathBuf};

/// This suite's build of the worker binary (`reflow-test-worker`, next to the test binaries).
pub fn reflow_test_worker() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let deps = exe.parent().expect("deps dir");
    let dir = deps.parent().unwrap_or(deps);
    dir.join("reflow-test-worker")
}

/// The command block tagged `name` in the runbook.
pub fn block(name: &str) -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runbook.md"))
            .expect("docs/runbook.md");
    let tag = format!("<!-- tested: {name} -->");
    let after = text
        .split_once(&tag)
        .unwrap_or_else(|| panic!("runbook has no block {tag}"))
        .1;
    let body = after
        .split_once("```sh\n")
        .expect("a sh block follows the tag")
        .1;
    body.split_once("```").expect("the block ends").0.to_owned()
}

/// A directory with `reflow` (this suite's build of the CLI) and `temporal`, for `PATH`.
pub fn bin_dir() -> PathBuf {
    bin_dir_with(&reflow_test_worker())
}

/// [`bin_dir`] with `reflow` being the binary at `reflow`.
pub fn bin_dir_with(reflow: &Path) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("reflow-runbook-bin-")
        .tempdir()
        .unwrap()
        .keep();
    std::os::unix::fs::symlink(reflow, dir.join("reflow")).unwrap();
    let temporal = crate::temporal_cli();
    let temporal = if temporal.is_absolute() {
        temporal
    } else {
        which(&temporal)
    };
    std::os::unix::fs::symlink(temporal, dir.join("temporal")).unwrap();
    dir
}

fn which(name: &Path) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| name.to_owned())
}

/// Run the block `name` with `vars` (`TEMPORAL_ADDRESS` among them); its stdout (panics on a
/// non-zero exit).
pub async fn run(bin: &Path, name: &str, vars: &[(&str, &str)]) -> String {
    run_in(bin, name, vars, Path::new(".")).await
}

/// [`run`] with `dir` as the working directory (the repository's root of the blocks that
/// name `pipelines/`).
pub async fn run_in(bin: &Path, name: &str, vars: &[(&str, &str)], dir: &Path) -> String {
    try_run_in(bin, name, vars, dir)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`run_in`], a failed block being an error (the block, its stdout and stderr) rather than a
/// panic.
pub async fn try_run_in(
    bin: &Path,
    name: &str,
    vars: &[(&str, &str)],
    dir: &Path,
) -> Result<String, String> {
    let script = block(name);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir)
        .env("PATH", path)
        .env("TEMPORAL_NAMESPACE", "default")
        .env("RUST_LOG", "warn")
        .envs(vars.iter().copied())
        .output()
        .await
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "runbook block {name} failed:\n{script}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
