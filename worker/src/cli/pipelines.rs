//! The commands that only read pipeline files, never a cluster: `reflow validate`,
//! `reflow graph` and `reflow alerts`, and the listing of a pipeline directory they share with
//! the commands that serve its queues.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::EXIT_CONFIG;
use crate::registry::Registry;
use crate::runs;
use crate::settings::Settings;

/// `reflow validate`: check every file (every `*.yaml` of a directory); exit [`EXIT_CONFIG`]
/// when one is invalid.
pub(super) fn validate(paths: &[PathBuf], registry: &Registry) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(pipeline_files(p)?);
        } else {
            files.push(p.clone());
        }
    }
    let mut failed = false;
    for f in &files {
        match runs::load_pipeline(f, registry.catalog()) {
            Ok(p) => println!(
                "{}: ok — {} v{}, {} steps, {} child pipelines, hash {}",
                f.display(),
                p.name,
                p.version,
                p.main.steps.len(),
                p.children.len(),
                &p.hash[..12]
            ),
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::SUCCESS
    })
}

/// `reflow graph`: draw a pipeline's declared DAG ([`crate::graph`]).
pub(super) fn graph(
    pipeline: &Path,
    format: crate::graph::Format,
    registry: &Registry,
) -> anyhow::Result<ExitCode> {
    let p = runs::load_pipeline(pipeline, registry.catalog())?;
    print!("{}", crate::graph::render(&p, format));
    Ok(ExitCode::SUCCESS)
}

/// `reflow alerts`: the per-step latency rules of the directory's pipelines
/// ([`crate::alerts`]).
pub(super) fn alerts(
    settings: &Settings,
    registry: &Registry,
    pipelines: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let dir = pipelines.unwrap_or_else(|| settings.pipelines_dir.clone());
    let mut all = Vec::new();
    for f in pipeline_files(&dir)? {
        all.push(runs::load_pipeline(&f, registry.catalog())?);
    }
    print!("{}", crate::alerts::rules(&crate::alerts::budgets(&all)));
    Ok(ExitCode::SUCCESS)
}

/// The pipeline files of a directory: its `*.yaml` / `*.yml` files but the rollout
/// (`rollout.yaml`, which says which versions runs get), sorted.
pub fn pipeline_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading pipeline directory {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .filter(|p| !p.ends_with(workflow::pipeline::rollout::ROLLOUT_FILE))
        .collect();
    files.sort();
    Ok(files)
}
