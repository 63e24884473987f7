//! Importing workflow definitions written for other engines as reflow pipeline files.
//!
//! Teams moving to reflow bring their definitions with them. An import writes a pipeline YAML
//! (`pipelines/*.yaml`) that says, in a comment at the step concerned, everything it could not
//! translate, and prints the same list on stderr; `reflow validate` then checks the rest
//! against the worker's registry. Nothing is dropped silently: what an import cannot map is
//! either left out with a comment naming it, or written as it was so that validation names it.
//!
//! - [`conductor`]: Netflix/Orkes Conductor workflow and task definitions (`reflow import
//!   conductor`; the mapping is in `docs/conductor-import.md`).
//! - [`yaml`]: the document model the importers fill and its rendering (comments included,
//!   which serde cannot write).

pub mod conductor;
pub mod yaml;
