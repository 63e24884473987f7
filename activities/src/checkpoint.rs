//! The checkpoint store: a step's result, kept in object storage by a hash of what produced it.
//!
//! A retry, a reset or a re-run of a step with the same input must not pay twice for
//! transcription or an LLM call (docs/contracts/pipeline.md §7). [`Checkpoints::checkpointed`]
//! hashes (activity type, canonical input JSON, backend configuration) with sha256 and looks for
//! `{scope}/pipeline/checkpoints/{step}-{hash}.json` (`scope` is the transcript id); if it is
//! there, and every object the stored result names still exists, the result is returned and
//! the work is not done. Otherwise the work runs and its result is stored. Canonical means
//! object keys sorted at every level, so field order never changes a hash. A reprocess starts
//! a new generation (`{scope}/pipeline/checkpoints/epoch`), which enters every hash after it.

use std::future::Future;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ActivityFailure;
use crate::storage::{Storage, keys};

/// A stored result.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Stored {
    step: String,
    hash: String,
    result: Value,
}

/// Whether a result came from the store or was just computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Found in the store; the work did not run.
    Stored,
    /// Computed now and stored.
    Computed,
}

/// Checkpoints in one object store.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    storage: Storage,
}

/// One step's checkpoint slot.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Object key of the checkpoint.
    pub key: String,
    /// The input hash.
    pub hash: String,
    step: String,
    scope: String,
}

impl Slot {
    /// Where the step keeps work in progress for this input (a resumable transcription's
    /// words so far): never taken as a result, only by an attempt of the same input.
    pub fn partial_key(&self) -> String {
        keys::partial(&self.scope, &self.step, &self.hash)
    }
}

impl Checkpoints {
    /// Keep checkpoints in `storage`.
    pub fn new(storage: Storage) -> Self {
        Checkpoints { storage }
    }

    /// The slot of `step` run with `input` under `config` (whatever about the backend changes
    /// the result: model, service URL, prompt version…; never secrets).
    pub fn slot<I: Serialize, C: Serialize>(
        &self,
        scope: &str,
        step: &str,
        input: &I,
        config: &C,
    ) -> Result<Slot, ActivityFailure> {
        let canonical = |v: &dyn erased::Ser| -> Result<String, ActivityFailure> {
            v.canonical().map_err(|e| {
                ActivityFailure::InvalidInput(format!("{step}: input does not serialize: {e}"))
            })
        };
        let mut h = Sha256::new();
        h.update(step.as_bytes());
        h.update(b"\n");
        h.update(canonical(input)?.as_bytes());
        h.update(b"\n");
        h.update(canonical(config)?.as_bytes());
        let hash = hex::encode(h.finalize());
        Ok(Slot {
            key: keys::checkpoint(scope, step, &hash),
            hash,
            step: step.to_owned(),
            scope: scope.to_owned(),
        })
    }

    /// The stored result of `slot`, if there is one whose `objects` all still exist.
    pub async fn load<O: DeserializeOwned>(
        &self,
        slot: &Slot,
        objects: impl Fn(&O) -> Vec<String>,
    ) -> Result<Option<O>, ActivityFailure> {
        let bytes = match self.storage.get(&slot.key).await {
            Ok(b) => b,
            Err(crate::storage::StorageError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // An unreadable checkpoint (older format, truncated) is recomputed, not fatal.
        let Ok(stored) = serde_json::from_slice::<Stored>(&bytes) else {
            tracing::warn!(key = %slot.key, "unreadable checkpoint; recomputing");
            return Ok(None);
        };
        let Ok(result) = serde_json::from_value::<O>(stored.result) else {
            tracing::warn!(key = %slot.key, "checkpoint has another shape; recomputing");
            return Ok(None);
        };
        for key in objects(&result) {
            if !self.storage.exists(&key).await? {
                tracing::info!(key = %slot.key, missing = %key, "checkpoint names a missing object; recomputing");
                return Ok(None);
            }
        }
        Ok(Some(result))
    }

    /// Store `result` in `slot`.
    pub async fn store<O: Serialize>(
        &self,
        slot: &Slot,
        result: &O,
    ) -> Result<(), ActivityFailure> {
        let stored = Stored {
            step: slot.step.clone(),
            hash: slot.hash.clone(),
            result: serde_json::to_value(result).map_err(|e| {
                ActivityFailure::InvalidInput(format!(
                    "{}: result does not serialize: {e}",
                    slot.step
                ))
            })?,
        };
        let body = serde_json::to_vec(&stored).expect("a JSON value serializes");
        Ok(self.storage.put(&slot.key, Bytes::from(body)).await?)
    }

    /// The checkpoint generation of `scope`, if a reprocess started one.
    pub async fn epoch(&self, scope: &str) -> Result<Option<String>, ActivityFailure> {
        match self.storage.get(&keys::checkpoint_epoch(scope)).await {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).trim().to_owned())),
            Err(crate::storage::StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Start a new checkpoint generation for `scope`: from now on no step reuses a result
    /// computed before (a reprocess wants new results; a resume keeps the generation).
    pub async fn new_epoch(&self, scope: &str) -> Result<String, ActivityFailure> {
        let epoch = uuid::Uuid::new_v4().simple().to_string();
        self.storage
            .put(&keys::checkpoint_epoch(scope), Bytes::from(epoch.clone()))
            .await?;
        Ok(epoch)
    }

    /// The slot of `step` for `input` under `config` in the current checkpoint generation.
    pub async fn current_slot<I: Serialize, C: Serialize>(
        &self,
        scope: &str,
        step: &str,
        input: &I,
        config: &C,
    ) -> Result<Slot, ActivityFailure> {
        match self.epoch(scope).await? {
            // A reprocess started a new generation: earlier results are not reused.
            Some(epoch) => self.slot(scope, step, input, &(config, epoch)),
            None => self.slot(scope, step, input, config),
        }
    }

    /// Return the stored result of `step` for `input` under `config`, or run `work`, store its
    /// result and return it. `objects` lists the object keys a result names; a stored result
    /// whose objects are gone is recomputed.
    pub async fn checkpointed<I, C, O, F, Fut>(
        &self,
        scope: &str,
        step: &str,
        input: &I,
        config: &C,
        objects: impl Fn(&O) -> Vec<String>,
        work: F,
    ) -> Result<(O, Origin), ActivityFailure>
    where
        I: Serialize,
        C: Serialize,
        O: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<O, ActivityFailure>>,
    {
        let slot = self.current_slot(scope, step, input, config).await?;
        if let Some(found) = self.load(&slot, &objects).await? {
            tracing::info!(step, key = %slot.key, "result taken from checkpoint");
            return Ok((found, Origin::Stored));
        }
        let result = work().await?;
        self.store(&slot, &result).await?;
        Ok((result, Origin::Computed))
    }
}

/// Canonical JSON: keys sorted at every level, no whitespace.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    fn sort(v: Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut entries: Vec<(String, Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sort).collect()),
            other => other,
        }
    }
    serde_json::to_string(&sort(serde_json::to_value(value)?))
}

mod erased {
    //! `Serialize` is not object safe; this lets `slot` hash two differently typed values
    //! through one closure.
    pub trait Ser {
        fn canonical(&self) -> Result<String, serde_json::Error>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn canonical(&self) -> Result<String, serde_json::Error> {
            super::canonical_json(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_ignores_field_order() {
        let a =
            canonical_json(&json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": null}})).unwrap();
        let b =
            canonical_json(&json!({"a": {"c": null, "d": [1, {"y": 1, "z": 0}]}, "b": 1})).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, r#"{"a":{"c":null,"d":[1,{"y":1,"z":0}]},"b":1}"#);
    }
}
