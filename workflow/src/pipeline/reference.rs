//! A reference to a registered version of a definition: what a run's input names instead of
//! carrying the definition itself. The hash identifies the content (it is computed over the
//! canonical JSON, [`Pipeline::compute_hash`]); name and version are what people read.

use serde::{Deserialize, Serialize};

use super::Pipeline;

/// A registered version of a definition, by name, version and content hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PipelineRef {
    /// The definition's name (the main graph's workflow type).
    pub pipeline: String,
    /// Its `version:`.
    pub version: u32,
    /// Hex sha256 of its canonical JSON.
    pub hash: String,
}

impl PipelineRef {
    /// `Name vN (hash…)`, the hash shortened to 12 characters.
    pub fn short(&self) -> String {
        format!(
            "{} v{} ({})",
            self.pipeline,
            self.version,
            self.hash.get(..12).unwrap_or(&self.hash)
        )
    }

    /// Whether `p` is the definition this names (name, version and hash).
    pub fn names(&self, p: &Pipeline) -> bool {
        p.name == self.pipeline && p.version == self.version && p.hash == self.hash
    }
}

impl Pipeline {
    /// The reference to this definition.
    pub fn reference(&self) -> PipelineRef {
        PipelineRef {
            pipeline: self.name.clone(),
            version: self.version,
            hash: self.hash.clone(),
        }
    }
}

impl std::fmt::Display for PipelineRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.short())
    }
}
