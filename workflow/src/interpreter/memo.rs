//! Memoized runs: which steps of a new run can take a result a previous run computed.
//!
//! A step's **memo key** is a hash of its static fingerprint
//! ([`crate::pipeline::fingerprint`]: its definition, its activity's contract or its child
//! graph, the fingerprints of what it needs), the identity of the backends it calls (model,
//! prompt version), the run's input, the content hashes of the source tracks, and the memo
//! keys of every step it reads (its `needs` and every step its expressions name). A step
//! forced by `--from` (or every step, `--fresh`) gets a fresh nonce in its key, which reaches
//! everything downstream through the keys it reads.
//!
//! The worker computes the keys and looks the stored memos up in one local activity,
//! [`MEMO_PLAN`], run once at the start of a main run (its result is recorded, so replays
//! never look again). A step is reused only when its memo is valid (every object it names
//! exists, and the transcript's index says these objects and effects are that memo's) **and
//! every step it reads was reused too**: a step that ran again may have written different
//! content under the same object key, so nothing downstream of it is taken from a memo (the
//! classic memoization bug). [`reusable`] is that rule. At the end of the run (or when it
//! fails) [`MEMO_STORE`] records the steps this run computed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::expr;
use crate::pipeline::{Graph, PipelineRef, Run, Step};

/// Patch marking runs that plan and store memos (histories from before it replay without).
pub const MEMO_PATCH: &str = "reflow-memo-1";

/// Local activity: the run's memo keys and the results it reuses ([`PlanRequest`] → [`Plan`]).
pub const MEMO_PLAN: &str = "memo_plan";

/// Local activity: store what a run computed ([`StoreRequest`]).
pub const MEMO_STORE: &str = "memo_store";

/// Key of the run input that carries a new run's [`Rerun`] options (not a declared input: the
/// interpreter takes it out before the input is checked, hashed or seen by a step).
pub const RERUN_INPUT: &str = "$rerun";

/// How a new run should use memos (`reflow rerun --from/--fresh`, `POST …/process?from=&fresh=`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rerun {
    /// Recompute this step and everything downstream of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Reuse nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fresh: bool,
    /// Main-graph steps settled as skipped, never run: effects this run must not have (a
    /// re-run's notifications unless asked for, `?notify=true`). Decided by whoever starts the
    /// run, from the catalog; the interpreter only reads the list, so replay is deterministic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<String>,
    /// This run is a shadow ([`super::shadow`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<super::shadow::ShadowRun>,
}

/// What [`MEMO_PLAN`] is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRequest {
    /// The version the run resolved.
    #[serde(flatten)]
    pub reference: PipelineRef,
    /// The transcript the run writes (the scope of its objects and effects).
    pub transcript_id: String,
    /// The run's input, defaults applied.
    pub input: Value,
    /// `--from` / `--fresh`.
    #[serde(default)]
    pub rerun: Rerun,
}

/// What [`MEMO_PLAN`] answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Every main-graph step's memo key.
    pub keys: BTreeMap<String, String>,
    /// The results reused, by step id (they are not run).
    #[serde(default)]
    pub reused: BTreeMap<String, Value>,
    /// What the reused results cost when they were computed (not paid again).
    #[serde(default)]
    pub saved: Saved,
    /// A shadow's live run is still computing what the shadow would reuse: ask again later
    /// (nothing else in the plan counts; [`super::shadow`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait: bool,
}

/// Spending a reuse avoided.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// Audio seconds transcribed.
    #[serde(default)]
    pub transcription_s: f64,
    /// LLM prompt and completion tokens.
    #[serde(default)]
    pub llm_tokens: u64,
    /// Child workflows whose work was reused (their spending is read from their histories).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
}

/// What [`MEMO_STORE`] is asked: the steps this run computed (or skipped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreRequest {
    /// The version the run resolved.
    #[serde(flatten)]
    pub reference: PipelineRef,
    /// The transcript.
    pub transcript_id: String,
    /// The run.
    pub workflow_id: String,
    /// One per step computed.
    pub entries: Vec<StoreEntry>,
}

/// One computed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreEntry {
    /// Step id.
    pub step: String,
    /// Its memo key.
    pub key: String,
    /// Its output (null when skipped).
    pub output: Value,
    /// Its `when:` was false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// Child workflows it started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
}

/// The steps `step` reads: its `needs` and every step its expressions name (`with`,
/// `for_each`, `when`, its activity id and timeout formula).
pub fn reads(graph: &Graph, step: &Step) -> BTreeSet<String> {
    let ids: BTreeSet<&str> = graph.steps.iter().map(|s| s.id.as_str()).collect();
    let mut out: BTreeSet<String> = step.needs.iter().cloned().collect();
    let mut templates = vec![step.with.clone()];
    for s in [
        &step.for_each,
        &step.when,
        &step.activity_id,
        &step.options.start_to_close_formula,
    ]
    .into_iter()
    .flatten()
    {
        templates.push(Value::String(s.clone()));
    }
    for t in &templates {
        if let Ok(paths) = expr::references(t) {
            out.extend(
                paths
                    .into_iter()
                    .filter(|p| ids.contains(p.root.as_str()) && p.root != step.id)
                    .map(|p| p.root),
            );
        }
    }
    out
}

/// The steps of `graph` in an order where every step comes after the steps it reads
/// (declared order otherwise; a cycle, which validation refuses, is broken in declared order).
pub fn ordered(graph: &Graph) -> Vec<&Step> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    let mut pending: Vec<&Step> = graph.steps.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|s| {
            if reads(graph, s).iter().all(|r| done.contains(r.as_str())) {
                done.insert(&s.id);
                out.push(*s);
                false
            } else {
                true
            }
        });
        if pending.len() == before {
            let s = pending.remove(0);
            done.insert(&s.id);
            out.push(s);
        }
    }
    out
}

/// The steps downstream of `from` (itself included): those that read it, transitively.
pub fn downstream(graph: &Graph, from: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::from([from.to_owned()]);
    for s in ordered(graph) {
        if reads(graph, s).iter().any(|r| out.contains(r)) {
            out.insert(s.id.clone());
        }
    }
    out
}

/// What the memo keys of a run depend on besides the definition.
#[derive(Debug, Clone, Default)]
pub struct KeyContext {
    /// Static fingerprint of each main-graph step, by step id.
    pub fingerprints: BTreeMap<String, String>,
    /// Identity of the backends each step calls (model, prompt version), by step id.
    pub identities: BTreeMap<String, Value>,
    /// The run's input (canonical JSON is hashed).
    pub input: Value,
    /// Content hash of each source object, by key.
    pub sources: BTreeMap<String, String>,
    /// Steps forced to run (`--from`, or all with `--fresh`), and the nonce they get.
    pub forced: BTreeSet<String>,
    /// The nonce of forced steps.
    pub nonce: String,
}

/// The run input as memo keys see it: the transcript a run writes is the scope of its objects
/// and effects, not content, so a top-level field holding its id reads `$transcript` (a shadow
/// transcript of the same recording finds the same keys as the live one).
pub fn content_input(input: &Value, transcript_id: &str) -> Value {
    match input {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) if s == transcript_id => json!("$transcript"),
                        other => other.clone(),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every step's memo key (see the module documentation).
pub fn memo_keys(graph: &Graph, cx: &KeyContext) -> BTreeMap<String, String> {
    let input = digest(&crate::pipeline::fingerprint::canonical(&cx.input));
    let sources = digest(&json!(cx.sources));
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for step in ordered(graph) {
        let reads: BTreeMap<String, Option<String>> = reads(graph, step)
            .into_iter()
            .map(|r| {
                let k = keys.get(&r).cloned();
                (r, k)
            })
            .collect();
        let key = digest(&json!({
            "fingerprint": cx.fingerprints.get(&step.id),
            "identity": cx.identities.get(&step.id),
            "input": input,
            "sources": sources,
            "reads": reads,
            "forced": cx.forced.contains(&step.id).then_some(&cx.nonce),
        }));
        keys.insert(step.id.clone(), key);
    }
    keys
}

/// The steps that may be reused: those whose memo is `valid` and every step they read
/// reusable too (a step that runs again may rewrite what its readers read under the same
/// object keys).
pub fn reusable(graph: &Graph, valid: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for step in ordered(graph) {
        if valid.contains(&step.id) && reads(graph, step).iter().all(|r| out.contains(r)) {
            out.insert(step.id.clone());
        }
    }
    out
}

/// What a run's activities are asked to compute is a function of the run: which activity
/// types a step runs (a child step: its child graph's).
pub fn activities_of<'a>(step: &'a Step, children: &'a BTreeMap<String, Graph>) -> Vec<&'a str> {
    match &step.run {
        Run::Activity(a) => vec![a.as_str()],
        Run::Child(c) => children
            .get(c)
            .map(|g| {
                g.steps
                    .iter()
                    .flat_map(|s| activities_of(s, children))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn digest(v: &Value) -> String {
    hex::encode(Sha256::digest(
        serde_json::to_vec(v).expect("JSON values serialize"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> crate::Pipeline {
        let catalog = crate::Catalog::new()
            .activity("a", &[])
            .activity("b", &[])
            .workflow_type("M");
        crate::parse_and_validate(
            "t.yaml",
            "name: M\nversion: 1\ninputs: {x: {type: string}}\n\
             defaults: {start_to_close: 10s}\nsteps:\n\
             \x20 - {id: fetch, activity: a, with: {x: '${input.x}'}}\n\
             \x20 - {id: pad, activity: a, needs: [fetch], with: {k: '${fetch.k}'}}\n\
             \x20 - {id: asr, activity: b, needs: [pad], with: {k: '${pad.k}', d: '${fetch.d}'}}\n\
             \x20 - {id: merge, activity: b, needs: [asr]}\n\
             \x20 - {id: title, activity: b, needs: [merge]}\n\
             \x20 - {id: mix, activity: a, needs: [pad]}\n",
            &catalog,
        )
        .unwrap()
    }

    fn cx() -> KeyContext {
        let g = graph();
        KeyContext {
            fingerprints: g
                .main
                .steps
                .iter()
                .map(|s| (s.id.clone(), format!("fp-{}", s.id)))
                .collect(),
            input: json!({"x": "1"}),
            sources: BTreeMap::from([("t0".into(), "h0".into())]),
            nonce: "n".into(),
            ..KeyContext::default()
        }
    }

    #[test]
    fn reads_include_expression_roots_beyond_needs() {
        let g = graph();
        let asr = g.main.step("asr").unwrap();
        assert_eq!(
            reads(&g.main, asr),
            BTreeSet::from(["pad".to_owned(), "fetch".to_owned()])
        );
        assert_eq!(
            downstream(&g.main, "merge"),
            BTreeSet::from(["merge".to_owned(), "title".to_owned()])
        );
    }

    #[test]
    fn a_change_or_a_forced_step_changes_its_key_and_everything_downstream_only() {
        let g = graph();
        let before = memo_keys(&g.main, &cx());
        assert_eq!(before, memo_keys(&g.main, &cx()));
        let mut changed = cx();
        changed
            .fingerprints
            .insert("merge".into(), "fp-merge-2".into());
        let after = memo_keys(&g.main, &changed);
        for s in ["fetch", "pad", "asr", "mix"] {
            assert_eq!(before[s], after[s], "{s}");
        }
        for s in ["merge", "title"] {
            assert_ne!(before[s], after[s], "{s}");
        }
        let mut forced = cx();
        forced.forced = downstream(&g.main, "asr");
        let after = memo_keys(&g.main, &forced);
        assert_eq!(before["mix"], after["mix"]);
        assert_ne!(before["title"], after["title"]);
        let mut source = cx();
        source.sources.insert("t0".into(), "h1".into());
        let after = memo_keys(&g.main, &source);
        assert!(before.iter().all(|(s, k)| after[s] != *k));
    }

    #[test]
    fn the_transcript_a_run_writes_is_not_content() {
        let g = graph();
        let a = json!({"x": "1", "transcript_id": "t-live"});
        let b = json!({"x": "1", "transcript_id": "t-shadow"});
        let keys = |input: &Value, t: &str| {
            memo_keys(
                &g.main,
                &KeyContext {
                    input: content_input(input, t),
                    ..cx()
                },
            )
        };
        assert_eq!(keys(&a, "t-live"), keys(&b, "t-shadow"));
        assert_ne!(
            keys(&a, "t-live"),
            keys(&json!({"x": "2", "transcript_id": "t-live"}), "t-live")
        );
    }

    #[test]
    fn nothing_downstream_of_a_step_that_runs_again_is_reused_even_with_a_valid_memo() {
        let g = graph();
        let all: BTreeSet<String> = g.main.steps.iter().map(|s| s.id.clone()).collect();
        assert_eq!(reusable(&g.main, &all), all);
        // pad's memo is gone (its padded object was deleted): pad runs again, and so does
        // everything that reads it, directly or not, though their memos are still there.
        let mut valid = all.clone();
        valid.remove("pad");
        assert_eq!(
            reusable(&g.main, &valid),
            BTreeSet::from(["fetch".to_owned()])
        );
    }
}
