//! The worker's side of memoized runs (`workflow::interpreter::memo`): the `memo_plan` and
//! `memo_store` local activities, and the store they share.
//!
//! Layout, in the transcript bucket:
//! - `pipeline-memo/{key[..2]}/{key}.json`: one memo per key ([`Memo`]): the step's result,
//!   the objects it names, what computing it cost, the transcript and run that computed it.
//!   Outside any transcript's prefix, so another run (a shadow, a backfill) can find it.
//! - `{transcript_id}/pipeline/memo/index.json`: for each step, the key whose objects and
//!   effects the transcript holds now. A memo is reused only while the transcript's index
//!   names it and every object it names exists: a run that recomputes a step may overwrite
//!   the same object keys, so `memo_plan` removes the steps it will run from the index before
//!   any of them starts, and `memo_store` puts the new keys in when they are done.
//! - `pipeline-memo/sources/{sha256(store url + key)}.json`: a source track's content hash,
//!   kept with its size (read again when the size changes).
//! - `{transcript_id}/pipeline/memo/ledger.json`: every memo key a run of the transcript
//!   stored, so that [`purge`] (consent denied, transcript deleted) finds them all
//!   ([`crate::memo_purge`]).
//!
//! A run that recomputes anything also starts a new checkpoint generation
//! ([`Checkpoints::new_epoch`]): the activities it runs compute afresh instead of answering
//! from a checkpoint of an earlier run, whose objects may have been overwritten since; within
//! the run (retries, a reset) their checkpoints work as before.

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tokio::io::AsyncReadExt;
use workflow::interpreter::memo::{
    self, KeyContext, Plan, PlanRequest, Saved, StoreEntry, StoreRequest,
};
use workflow::pipeline::fingerprint::{Fingerprints, StepKey};
use workflow::{Catalog, Pipeline, catalog::Cost};

use crate::checkpoint::Checkpoints;
use crate::error::ActivityFailure;
use crate::storage::{Storage, StorageError};
use crate::usage::Usage;
use crate::versions::Versions;

/// One stored result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memo {
    /// Step id.
    pub step: String,
    /// Its memo key.
    pub key: String,
    /// The transcript whose run computed it.
    pub transcript_id: String,
    /// That run.
    pub workflow_id: String,
    /// The version it ran on (`Name vN`).
    pub pipeline: String,
    /// The result (null when skipped).
    pub output: Value,
    /// Its `when:` was false.
    #[serde(default)]
    pub skipped: bool,
    /// The objects the result names (it is valid only while they all exist).
    #[serde(default)]
    pub objects: Vec<String>,
    /// What computing it cost.
    #[serde(default)]
    pub paid: Saved,
}

/// Key of a memo.
pub fn memo_key(key: &str) -> String {
    format!("pipeline-memo/{}/{key}.json", &key[..2.min(key.len())])
}

/// Key of a transcript's memo index.
pub fn index_key(transcript_id: &str) -> String {
    format!("{transcript_id}/pipeline/memo/index.json")
}

/// The object keys a result names: every string under a field whose name ends in `_key`, and
/// every string of an array under one ending in `_keys`, at any depth. A memo keeps those in
/// its transcript's prefix (what the run wrote; the source tracks' keys are covered by their
/// content hashes).
pub fn objects_of(v: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match v {
                        Value::String(s) if k.ends_with("_key") && !s.is_empty() => {
                            out.insert(s.clone());
                        }
                        Value::Array(items) if k.ends_with("_keys") => {
                            out.extend(items.iter().filter_map(|i| i.as_str()).map(str::to_owned));
                        }
                        other => walk(other, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut out);
    out.into_iter().collect()
}

/// What a result says it cost (every `usage` in it, checkpoint hits excluded).
pub fn paid_of(v: &Value) -> Saved {
    fn walk(v: &Value, out: &mut Saved) {
        match v {
            Value::Object(m) => {
                if let Some(u) = m
                    .get("usage")
                    .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok())
                    && !u.from_checkpoint
                {
                    out.transcription_s += u.audio_s;
                    out.llm_tokens += u.prompt_tokens + u.completion_tokens;
                }
                m.iter()
                    .filter(|(k, _)| *k != "usage")
                    .for_each(|(_, v)| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Saved::default();
    walk(v, &mut out);
    out
}

/// What [`MemoActivities::decide`] found: the plan, and the sets it was made from.
struct Decision {
    plan: Plan,
    /// Steps reused (bookkeeping steps included: they do not stop their readers' reuse).
    reuse: BTreeSet<String>,
    /// Bookkeeping steps (they run every time).
    free: BTreeSet<String>,
    /// The transcript's index as read.
    index: BTreeMap<String, String>,
    /// Every main-graph step, in declared order.
    steps: Vec<String>,
}

/// What a run would do, computed without starting it ([`MemoActivities::preview`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    /// Steps that would run (bookkeeping steps included), in declared order.
    pub run: Vec<String>,
    /// Steps that would be taken from a memo, in declared order.
    pub reused: Vec<String>,
    /// What the reused results cost when computed.
    pub saved: Saved,
    /// For steps that would run: what they cost when last computed for this transcript.
    pub previous: BTreeMap<String, Saved>,
}

/// The memo store and the local activities that plan and store.
pub struct MemoActivities {
    versions: Versions,
    catalog: Arc<Catalog>,
    /// Backend identity by activity type (transcription and LLM steps).
    identities: BTreeMap<String, Value>,
    storage: Storage,
    recordings: Storage,
}

impl MemoActivities {
    /// Memos in `storage`; sources read from `recordings`; `asr` and `llm` are the backends'
    /// identities (what about them changes a result), given to every step of that cost.
    pub fn new(
        versions: Versions,
        catalog: Arc<Catalog>,
        storage: Storage,
        recordings: Storage,
        asr: Value,
        llm: Value,
    ) -> Self {
        let identities = catalog
            .activity_names()
            .filter_map(|name| {
                let entry = catalog.get_activity(name)?;
                let id = match entry.cost {
                    Cost::Transcription => asr.clone(),
                    Cost::Llm { .. } => {
                        json!({"llm": llm, "prompts": crate::llm::prompts::VERSION})
                    }
                    _ => return None,
                };
                Some((name.to_owned(), id))
            })
            .collect();
        MemoActivities {
            versions,
            catalog,
            identities,
            storage,
            recordings,
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, ActivityFailure> {
        match self.storage.get(key).await {
            Ok(b) => Ok(serde_json::from_slice(&b).ok()),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_json<T: Serialize>(&self, key: &str, v: &T) -> Result<(), ActivityFailure> {
        let body = serde_json::to_vec(v).expect("memo values serialize");
        Ok(self.storage.put(key, Bytes::from(body)).await?)
    }

    async fn pipeline(
        &self,
        r: &workflow::pipeline::PipelineRef,
    ) -> Result<Arc<Pipeline>, ActivityFailure> {
        self.versions
            .get(&r.hash)
            .await
            .map_err(ActivityFailure::from)?
            .filter(|p| r.names(p))
            .ok_or_else(|| ActivityFailure::InvalidInput(format!("pipeline {r} is not registered")))
    }

    /// The content hash of each source track of `input` (`tracks[*].s3_key` in
    /// `bucket_name`, or the recordings store).
    async fn sources(&self, input: &Value) -> Result<BTreeMap<String, String>, ActivityFailure> {
        let store = self
            .recordings
            .in_bucket(input["bucket_name"].as_str().filter(|b| !b.is_empty()));
        let mut out = BTreeMap::new();
        for key in input["tracks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["s3_key"].as_str())
        {
            out.insert(key.to_owned(), self.source_hash(&store, key).await?);
        }
        Ok(out)
    }

    async fn source_hash(&self, store: &Storage, key: &str) -> Result<String, ActivityFailure> {
        let Some(size) = store.size(key).await? else {
            return Ok("missing".into());
        };
        let cache = format!(
            "pipeline-memo/sources/{}.json",
            hex::encode(Sha256::digest(format!("{}\n{key}", store.url())))
        );
        if let Some(c) = self.json::<Value>(&cache).await?
            && c["size"].as_u64() == Some(size)
            && let Some(h) = c["sha256"].as_str()
        {
            return Ok(h.to_owned());
        }
        let mut reader = store.reader(key).await?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| ActivityFailure::Transient(format!("reading {key}: {e}")))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
        }
        let h = hex::encode(hash.finalize());
        self.put_json(&cache, &json!({"size": size, "sha256": h}))
            .await?;
        Ok(h)
    }

    /// Whether a step only does bookkeeping (every activity it runs costs nothing: a database
    /// write, a deletion, a notification), so it does not read the content of what it is given.
    fn free(&self, step: &workflow::pipeline::Step, pipeline: &Pipeline) -> bool {
        memo::activities_of(step, &pipeline.children)
            .into_iter()
            .all(|a| {
                self.catalog
                    .get_activity(a)
                    .is_some_and(|e| matches!(e.cost, Cost::Free))
            })
    }

    /// Whether every object `m` names exists.
    async fn intact(&self, m: &Memo) -> Result<bool, ActivityFailure> {
        for o in &m.objects {
            if !self.storage.exists(o).await? {
                tracing::info!(step = %m.step, missing = %o, "memo names a missing object; the step runs");
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// What a run asked as `r` would reuse and run, read only: the store is not changed (the
    /// plan and `reflow backfill --dry-run` share it).
    async fn decide(&self, r: &PlanRequest) -> Result<Decision, ActivityFailure> {
        let pipeline = self.pipeline(&r.reference).await?;
        let graph = &pipeline.main;
        let fps = Fingerprints::of(&pipeline, &self.catalog);
        let mut cx = KeyContext {
            input: memo::content_input(&r.input, &r.transcript_id),
            sources: self.sources(&r.input).await?,
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            ..KeyContext::default()
        };
        for step in &graph.steps {
            let key = StepKey {
                graph: graph.name.clone(),
                step: step.id.clone(),
            };
            if let Some(fp) = fps.step(&key) {
                cx.fingerprints.insert(step.id.clone(), fp.to_owned());
            }
            let ids: BTreeMap<&str, &Value> = memo::activities_of(step, &pipeline.children)
                .into_iter()
                .filter_map(|a| self.identities.get(a).map(|i| (a, i)))
                .collect();
            if !ids.is_empty() {
                cx.identities.insert(step.id.clone(), json!(ids));
            }
        }
        if r.rerun.fresh {
            cx.forced = graph.steps.iter().map(|s| s.id.clone()).collect();
        } else if let Some(from) = &r.rerun.from {
            if graph.step(from).is_none() {
                return Err(ActivityFailure::InvalidInput(format!(
                    "--from {from}: {} has no such step",
                    graph.name
                )));
            }
            cx.forced = memo::downstream(graph, from);
        }
        let keys = memo::memo_keys(graph, &cx);
        let index: BTreeMap<String, String> = self
            .json(&index_key(&r.transcript_id))
            .await?
            .unwrap_or_default();
        let mut found: BTreeMap<String, Memo> = BTreeMap::new();
        let mut incomplete: BTreeSet<String> = BTreeSet::new();
        for (step, key) in &keys {
            // Another transcript's memo only for a shadow, and while still that transcript's.
            let shared = index.get(step) != Some(key);
            if shared && r.rerun.shadow.is_none() {
                continue;
            }
            if let Some(m) = self.json::<Memo>(&memo_key(key)).await?
                && m.key == *key
                && (!shared || crate::memo_shadow::still_owned(&self.storage, &m).await?)
            {
                if !self.intact(&m).await? {
                    incomplete.insert(step.clone());
                }
                found.insert(step.clone(), m);
            }
        }
        // Bookkeeping steps (`Free`: the status, the participants, consent, notifications) run
        // again every time: they cost nothing, and what they do depends on the database as it
        // is now (a consent denied since). They do not stop their readers' reuse: their output
        // is what the recording is (its duration, its tracks), not something computed.
        let free: BTreeSet<String> = graph
            .steps
            .iter()
            .filter(|s| self.free(s, &pipeline))
            .map(|s| s.id.clone())
            .collect();
        let mut valid: BTreeSet<String> = found.keys().chain(&free).cloned().collect();
        let mut reuse = memo::reusable(graph, &valid);
        // A memo whose objects are gone (the padded tracks `finalize` deletes) stands for its
        // readers as long as none of the steps that run reads them; one that does (a step that
        // computes from content: not `Free`) makes it run again, and so everything after it.
        loop {
            let needed: BTreeSet<String> = graph
                .steps
                .iter()
                .filter(|s| !reuse.contains(&s.id) && !self.free(s, &pipeline))
                .flat_map(|s| memo::reads(graph, s))
                .filter(|r| reuse.contains(r) && incomplete.contains(r))
                .collect();
            if needed.is_empty() {
                break;
            }
            valid.retain(|s| !needed.contains(s));
            reuse = memo::reusable(graph, &valid);
        }
        let mut plan = Plan {
            keys: keys.clone(),
            ..Plan::default()
        };
        for step in reuse.difference(&free) {
            let m = &found[step];
            plan.saved.transcription_s += m.paid.transcription_s;
            plan.saved.llm_tokens += m.paid.llm_tokens;
            plan.saved.children.extend(m.paid.children.iter().cloned());
            if !m.skipped {
                plan.reused.insert(step.clone(), m.output.clone());
            }
        }
        Ok(Decision {
            plan,
            reuse,
            free,
            index,
            steps: graph.steps.iter().map(|s| s.id.clone()).collect(),
        })
    }

    /// What a run asked as `r` would reuse and run, without changing anything (`reflow
    /// backfill --dry-run`): the decision of [`Self::plan`], and for each step that would run,
    /// what computing it cost the last time (the memo the transcript's index names for it).
    pub async fn preview(&self, r: &PlanRequest) -> Result<Preview, ActivityFailure> {
        let d = self.decide(r).await?;
        let mut previous = BTreeMap::new();
        for step in d.steps.iter().filter(|s| !d.reuse.contains(*s)) {
            if let Some(key) = d.index.get(step)
                && let Some(m) = self.json::<Memo>(&memo_key(key)).await?
            {
                previous.insert(step.clone(), m.paid);
            }
        }
        Ok(Preview {
            run: d
                .steps
                .iter()
                .filter(|s| !d.reuse.contains(*s) || d.free.contains(*s))
                .cloned()
                .collect(),
            reused: d
                .steps
                .iter()
                .filter(|s| d.reuse.contains(*s) && !d.free.contains(*s))
                .cloned()
                .collect(),
            saved: d.plan.saved,
            previous,
        })
    }

    /// The plan of a run (see the module documentation).
    pub async fn plan(&self, r: &PlanRequest) -> Result<Plan, ActivityFailure> {
        if let Some(shadow) = r.rerun.shadow.as_ref().filter(|s| !s.no_wait)
            && crate::memo_shadow::live_computing(self.versions.db(), shadow).await?
        {
            return Ok(Plan {
                wait: true,
                ..Plan::default()
            });
        }
        let Decision {
            plan,
            reuse,
            free,
            mut index,
            steps,
        } = self.decide(r).await?;
        let index_key = index_key(&r.transcript_id);
        // What runs may overwrite what the index vouches for: out of it before anything runs.
        let before = index.len();
        index.retain(|step, _| reuse.contains(step) && !free.contains(step));
        if index.len() != before {
            self.put_json(&index_key, &index).await?;
        }
        if let Some(shadow) = &r.rerun.shadow {
            let pipeline = self.pipeline(&r.reference).await?;
            crate::memo_shadow::adopt(
                self.versions.db(),
                &self.catalog,
                &pipeline,
                &plan.reused,
                &r.transcript_id,
                shadow,
            )
            .await?;
        }
        if reuse.union(&free).count() < steps.len() {
            Checkpoints::new(self.storage.clone())
                .new_epoch(&r.transcript_id)
                .await?;
        }
        tracing::info!(
            transcript_id = %r.transcript_id,
            pipeline = %r.reference,
            reused = plan.reused.len(),
            steps = steps.len(),
            from = ?r.rerun.from,
            fresh = r.rerun.fresh,
            "memo plan"
        );
        Ok(plan)
    }

    /// Store what a run computed and point the transcript's index at it.
    pub async fn store(&self, r: &StoreRequest) -> Result<usize, ActivityFailure> {
        let r = &crate::memo_shadow::own_entries(self.versions.db(), &self.storage, r).await?;
        if crate::memo_purge::forgotten(self.versions.db(), &r.transcript_id).await? {
            // Deleted, or consent denied (perhaps by this very run's cleanup): keep nothing.
            purge(&self.storage, &r.transcript_id).await?;
            return Ok(0);
        }
        crate::memo_purge::record(
            &self.storage,
            &r.transcript_id,
            r.entries.iter().map(|e| e.key.as_str()),
        )
        .await?;
        let index_key = index_key(&r.transcript_id);
        let mut index: BTreeMap<String, String> = self.json(&index_key).await?.unwrap_or_default();
        for StoreEntry {
            step,
            key,
            output,
            skipped,
            children,
        } in &r.entries
        {
            let mut paid = paid_of(output);
            paid.children.clone_from(children);
            let m = Memo {
                step: step.clone(),
                key: key.clone(),
                transcript_id: r.transcript_id.clone(),
                workflow_id: r.workflow_id.clone(),
                pipeline: r.reference.short(),
                objects: objects_of(output)
                    .into_iter()
                    .filter(|o| o.starts_with(&format!("{}/", r.transcript_id)))
                    .collect(),
                output: output.clone(),
                skipped: *skipped,
                paid,
            };
            self.put_json(&memo_key(key), &m).await?;
            index.insert(step.clone(), key.clone());
        }
        self.put_json(&index_key, &index).await?;
        Ok(r.entries.len())
    }
}

pub use crate::memo_purge::purge;

#[activities]
impl MemoActivities {
    /// A run's memo keys and the results it reuses (a local activity of its first task).
    #[activity(name = "memo_plan")]
    pub async fn memo_plan(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: PlanRequest,
    ) -> Result<Plan, ActivityError> {
        self.plan(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// Store the steps a run computed (a local activity of its last task).
    #[activity(name = "memo_store")]
    pub async fn memo_store(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: StoreRequest,
    ) -> Result<usize, ActivityError> {
        self.store(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }
}

#[cfg(test)]
mod tests;
