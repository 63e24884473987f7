//! `reflow import conductor`: a Conductor workflow definition and its task definitions as a
//! reflow pipeline file.
//!
//! | Conductor | pipeline |
//! |---|---|
//! | workflow `name`, `version`, `description` | `name`, `version`, `description` |
//! | `inputParameters`, `inputTemplate` | `inputs` (not required; defaults from the template) |
//! | `outputParameters` | `output` |
//! | SIMPLE task | a step running the activity of that name (id: the task's reference name) |
//! | FORK_JOIN | its branches' steps, in parallel; the JOIN is the `needs` of what follows |
//! | FORK_JOIN_DYNAMIC (+ JOIN) | a fan-out step (`for_each`) |
//! | SWITCH / DECISION, case `"true"` | the branch's steps with `when:` |
//! | SUB_WORKFLOW | a `child:` step and an entry of `children` |
//! | task definition | the step's options ([`options`], docs/contracts/pipeline.md §6.2) |
//! | `${workflow.input.x}`, `${ref.output.y}` | `${input.x}`, `${step.y}` ([`expr`]) |
//!
//! A task with no `inputParameters` at all (Conductor would hand its worker an empty input:
//! a skeleton, like the seed's) gets a `with:` wired by name from its activity's input
//! contract ([`wiring`]), every such `with:` marked `by name`. Everything that does not map
//! is written as a comment `unmapped: …` at its place and returned as a [`Finding`]; a SIMPLE
//! task with no activity of its name is written anyway, so `reflow validate` names it too.

mod expr;
pub mod model;
mod options;
mod translate;
mod wiring;

use std::collections::BTreeSet;

use workflow::Catalog;
use workflow::pipeline::Run;

pub use model::{Definitions, TaskDef, WorkflowDef, WorkflowTask};

/// Why an import could not be done at all (what merely does not map is a [`Finding`]).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read.
    #[error("{file}: {error}")]
    Read {
        /// The file.
        file: String,
        /// Why (part of the message, so not repeated as a source).
        error: std::io::Error,
    },
    /// A file is not JSON, or not Conductor's.
    #[error("{file}: not a Conductor definition: {error}")]
    Json {
        /// The file.
        file: String,
        /// The parser's message (it names the task when a task is malformed).
        error: serde_json::Error,
    },
    /// A file is JSON of the wrong shape.
    #[error("{file}: {what}")]
    Shape {
        /// The file.
        file: String,
        /// What is wrong.
        what: String,
    },
    /// A task of the workflow cannot be translated.
    #[error("task {task}: {cause}")]
    Task {
        /// Its reference name.
        task: String,
        /// What is wrong.
        cause: String,
    },
    /// A task definition cannot be translated.
    #[error("task definition {name}: {cause}")]
    TaskDef {
        /// Its name.
        name: String,
        /// What is wrong.
        cause: String,
    },
}

/// Something the import says about the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Whether something was not translated, or a remark on how something was.
    pub kind: FindingKind,
    /// Where: `pipeline`, `step <id>`, `child <name> step <id>`, `task definition <name>`.
    pub at: String,
    /// What.
    pub text: String,
}

/// The kind of a [`Finding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// Not translated: the pipeline behaves differently there, or is incomplete.
    Unmapped,
    /// Translated by a rule worth knowing (inputs wired by name, default retry delays).
    Note,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            FindingKind::Unmapped => "unmapped",
            FindingKind::Note => "note",
        };
        write!(f, "{kind}: {}: {}", self.at, self.text)
    }
}

/// What the imported pipeline is written for: the worker's catalog (activities, their
/// contracts and events, workflow types) and which of its activities heartbeat.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    catalog: &'a Catalog,
    heartbeats: BTreeSet<String>,
}

impl<'a> Target<'a> {
    /// The worker's catalog; an activity heartbeats when a built-in pipeline
    /// (`pipelines/diarization.yaml`) gives it a heartbeat timeout — the catalog does not say,
    /// and a heartbeat timeout on an activity that never heartbeats would fail every attempt.
    pub fn new(catalog: &'a Catalog) -> Self {
        let heartbeats = workflow::parse_and_validate(
            "diarization.yaml",
            crate::intake::DIARIZATION_YAML,
            catalog,
        )
        .map(|p| {
            p.main
                .steps
                .iter()
                .chain(p.children.values().flat_map(|g| g.steps.iter()))
                .filter(|s| s.options.heartbeat_ms.is_some())
                .filter_map(|s| match &s.run {
                    Run::Activity(a) => Some(a.clone()),
                    Run::Child(_) => None,
                })
                .collect()
        })
        .unwrap_or_default();
        Target {
            catalog,
            heartbeats,
        }
    }

    /// The catalog, with `heartbeats` as the activities that heartbeat.
    pub fn with_heartbeats<'n>(
        catalog: &'a Catalog,
        heartbeats: impl IntoIterator<Item = &'n str>,
    ) -> Self {
        Target {
            catalog,
            heartbeats: heartbeats.into_iter().map(str::to_owned).collect(),
        }
    }

    /// Whether a registered activity heartbeats (`None`: not registered).
    fn heartbeats(&self, activity: &str) -> Option<bool> {
        self.catalog
            .get_activity(activity)
            .map(|_| self.heartbeats.contains(activity))
    }
}

/// An imported pipeline.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The pipeline's workflow type as written.
    pub name: String,
    /// The pipeline file.
    pub yaml: String,
    /// What was not translated, and notes, in file order.
    pub findings: Vec<Finding>,
}

impl Imported {
    /// The findings of kind [`FindingKind::Unmapped`].
    pub fn unmapped(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.kind == FindingKind::Unmapped)
    }
}

/// Translate `defs` into a pipeline file for `target`.
pub fn import(defs: &Definitions, target: &Target<'_>) -> Result<Imported, ImportError> {
    translate::translate(defs, target)
}

#[cfg(test)]
mod tests;
