//! The registered definitions this process holds, by hash: where a child of a run that took
//! `reflow-lean-history-2` reads its graph (`interpreter::resolve`).
//!
//! A hash names one content forever (the sha256 of the definition's canonical JSON, checked
//! here on every insert), so reading a definition by its hash is as deterministic as reading a
//! constant: a replay on any worker sees the same graph. What the store cannot promise is
//! that a hash is present. The worker fills it before it polls (every registered version,
//! `activities::versions`), and again whenever it resolves or loads a version; a version
//! registered after the worker started and not yet seen by it is a miss. A miss asks the
//! loader the worker installed ([`set_loader`]) to read it from the database in the
//! background, and the caller fails its workflow task, which Temporal retries.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use super::Pipeline;

type Loader = Arc<dyn Fn(&str) + Send + Sync>;

fn entries() -> &'static RwLock<HashMap<String, Arc<Pipeline>>> {
    static ENTRIES: OnceLock<RwLock<HashMap<String, Arc<Pipeline>>>> = OnceLock::new();
    ENTRIES.get_or_init(Default::default)
}

fn loader() -> &'static RwLock<Option<Loader>> {
    static LOADER: OnceLock<RwLock<Option<Loader>>> = OnceLock::new();
    LOADER.get_or_init(Default::default)
}

/// Keep `pipeline` under its hash; `false` (and nothing kept) when it does not hash to it.
pub fn insert(pipeline: &Arc<Pipeline>) -> bool {
    if entries()
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains_key(&pipeline.hash)
    {
        return true;
    }
    if pipeline.compute_hash() != pipeline.hash {
        return false;
    }
    entries()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(pipeline.hash.clone(), pipeline.clone());
    true
}

/// The definition that hashes to `hash`, if this process holds it.
pub fn get(hash: &str) -> Option<Arc<Pipeline>> {
    entries()
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(hash)
        .cloned()
}

/// What the worker runs on a miss: it reads `hash` from the database in the background and
/// [`insert`]s it (the last installed loader is used).
pub fn set_loader(load: impl Fn(&str) + Send + Sync + 'static) {
    *loader()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(load));
}

/// Ask the installed loader for `hash` (nothing happens without one).
pub fn request(hash: &str) {
    let load = loader()
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(load) = load {
        load(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_is_kept_only_under_the_hash_it_has() {
        let catalog = crate::Catalog::new().activity("a", &[]).workflow_type("S");
        let p = crate::parse_and_validate(
            "t.yaml",
            "name: S\nversion: 1\nsteps: [{id: s, activity: a, start_to_close: 1s}]\n",
            &catalog,
        )
        .unwrap();
        let mut forged = p.clone();
        forged.version = 9;
        assert!(!insert(&Arc::new(forged)));
        assert!(get(&p.hash).is_none());
        assert!(insert(&Arc::new(p.clone())));
        assert_eq!(get(&p.hash).as_deref(), Some(&p));
    }
}
