//! `reflow import conductor`: write a pipeline file from a Conductor workflow definition
//! ([`crate::import::conductor`]), print on stderr what did not map, and check the result as
//! `reflow validate` would.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::import::conductor::{self, Definitions, Target};
use crate::registry::Registry;

/// Where a definition to import comes from.
#[derive(Debug, Subcommand)]
pub enum ImportFrom {
    /// A Netflix/Orkes Conductor workflow definition (JSON, as `GET /api/metadata/workflow`
    /// returns it, or `{"workflow": …, "taskDefs": […]}`). Writes a pipeline YAML with a
    /// comment at every step for what did not map, lists it on stderr, then checks the file
    /// against this worker's registry. Mapping: docs/conductor-import.md.
    Conductor {
        /// The workflow definition.
        workflow: PathBuf,
        /// Task definitions (a JSON array, or `{"taskDefs": […]}`): timeouts and retries.
        #[arg(long)]
        task_defs: Option<PathBuf>,
        /// The pipeline file to write (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Overwrite `--output` when it exists.
        #[arg(long)]
        force: bool,
    },
}

/// `reflow import …`: exit 0 once the file is written, whatever it could not map.
pub(super) fn import(from: ImportFrom, registry: &Registry) -> anyhow::Result<ExitCode> {
    let ImportFrom::Conductor {
        workflow,
        task_defs,
        output,
        force,
    } = from;
    let defs = Definitions::load(&workflow, task_defs.as_deref())?;
    let imported = conductor::import(&defs, &Target::new(registry.catalog()))?;
    for f in &imported.findings {
        eprintln!("{f}");
    }
    let label = match &output {
        Some(path) => {
            if path.exists() && !force {
                anyhow::bail!("{} exists (--force overwrites it)", path.display());
            }
            std::fs::write(path, &imported.yaml)
                .with_context(|| format!("writing {}", path.display()))?;
            path.display().to_string()
        }
        None => {
            std::io::stdout().write_all(imported.yaml.as_bytes())?;
            format!("{}.yaml", imported.name)
        }
    };
    let unmapped = imported.unmapped().count();
    match workflow::parse_and_validate(&label, &imported.yaml, registry.catalog()) {
        Ok(p) => eprintln!(
            "{label}: {unmapped} things not mapped; validates ({} v{}, {} steps)",
            p.name,
            p.version,
            p.main.steps.len()
        ),
        Err(report) => {
            eprintln!("{label}: {unmapped} things not mapped; `reflow validate` says:\n{report}")
        }
    }
    Ok(ExitCode::SUCCESS)
}
