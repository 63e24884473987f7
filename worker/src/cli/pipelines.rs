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
    let mut loaded = Vec::new();
    for f in &files {
        match runs::load_pipeline(f, registry.catalog()) {
            Ok(p) => {
                println!(
                    "{}: ok — {} v{}, {} steps, {} child pipelines, hash {}",
                    f.display(),
                    p.name,
                    p.version,
                    p.main.steps.len(),
                    p.children.len(),
                    &p.hash[..12]
                );
                loaded.push(p);
            }
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    for dir in paths.iter().filter(|p| p.is_dir()) {
        failed |= !validate_shadows(dir, &loaded, registry)?;
    }
    Ok(if failed {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::SUCCESS
    })
}

/// The shadow rollouts `dir/rollout.yaml` declares: each shadow version found among `loaded`
/// must be safe to run as a shadow (every effect outside reflow in a main-graph step it can
/// skip: [`workflow::pipeline::effects`]); prints the steps a shadow will not execute. Whether
/// all is well.
fn validate_shadows(
    dir: &Path,
    loaded: &[workflow::Pipeline],
    registry: &Registry,
) -> anyhow::Result<bool> {
    use workflow::pipeline::rollout::{ROLLOUT_FILE, Rollouts};
    let path = dir.join(ROLLOUT_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(true);
    };
    let rollouts = match Rollouts::parse(&path.display().to_string(), &text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return Ok(false);
        }
    };
    let mut ok = true;
    for (name, r) in &rollouts.pipelines {
        let Some(shadow) = &r.shadow else { continue };
        let Some(p) = loaded
            .iter()
            .find(|p| p.name == *name && p.version == shadow.version)
        else {
            println!(
                "{}: shadow {name} v{}: not in this directory (checked when `reflow plan` finds it registered)",
                path.display(),
                shadow.version
            );
            continue;
        };
        match workflow::pipeline::effects::external_steps(p, registry.catalog()) {
            Ok(skip) => println!(
                "{}: shadow {name} v{}: ok — not executed in shadow runs: {}",
                path.display(),
                shadow.version,
                if skip.is_empty() {
                    "none".to_owned()
                } else {
                    skip.join(", ")
                }
            ),
            Err(e) => {
                ok = false;
                eprintln!("{}: {e}", path.display());
            }
        }
    }
    Ok(ok)
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
