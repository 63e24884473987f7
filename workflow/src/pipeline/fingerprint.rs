//! Static fingerprints of a definition, from definitions only (no run, no history): what
//! `reflow plan` compares to say which steps of a new version a re-run could reuse.
//!
//! - An activity's contract fingerprint: its catalog entry (events, cost, input and output
//!   JSON Schemas) as canonical JSON, hashed. A code change that changes what a step takes or
//!   returns changes it even when no YAML changed.
//! - The catalog's fingerprint: every activity's, and the workflow types, hashed together;
//!   a registered version records the one it was checked against.
//! - A step's fingerprint: its canonical JSON, what it runs (the activity's contract, or for a
//!   child step the child graph: its declared inputs, output and every step's fingerprint),
//!   the declared inputs of its graph (which `${input.…}` reads, defaults included), and the
//!   fingerprints of the steps it `needs`. Equal fingerprints mean the step and everything
//!   upstream of it are unchanged, so its result can be reused.
//!
//! Canonical JSON sorts object keys, so reordering keys of `with:` changes nothing.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Graph, Pipeline, Run, Step};
use crate::catalog::{ActivityEntry, Catalog};

/// Key under which the `on_failure` hook is fingerprinted (not a step id: no step can take it).
pub const ON_FAILURE: &str = "on_failure";

/// A step of a definition: its graph (workflow type) and id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StepKey {
    /// The graph (the main one's name, or a child's).
    pub graph: String,
    /// The step id ([`ON_FAILURE`] for the failure hook).
    pub step: String,
}

impl StepKey {
    /// The key as stored (`Graph/step`).
    pub fn stored(&self) -> String {
        format!("{}/{}", self.graph, self.step)
    }

    /// The key of a stored form (`Graph/step`).
    pub fn parse(stored: &str) -> Option<StepKey> {
        let (graph, step) = stored.split_once('/')?;
        Some(StepKey {
            graph: graph.to_owned(),
            step: step.to_owned(),
        })
    }
}

impl fmt::Display for StepKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.graph, self.step)
    }
}

/// The fingerprints of one definition against one catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprints {
    /// The whole catalog's contract fingerprint.
    pub catalog: String,
    /// Every step's (main graph, children, the failure hook), by [`StepKey::stored`].
    pub steps: BTreeMap<String, String>,
    /// The contract fingerprint of every activity the definition runs, by activity type
    /// (`-` when the catalog does not know it).
    pub contracts: BTreeMap<String, String>,
}

impl Fingerprints {
    /// The fingerprints of `pipeline` checked against `catalog`.
    pub fn of(pipeline: &Pipeline, catalog: &Catalog) -> Fingerprints {
        let mut out = Fingerprints {
            catalog: catalog_fingerprint(catalog),
            ..Fingerprints::default()
        };
        let mut graphs: BTreeMap<&str, String> = BTreeMap::new();
        // Children first: a child step's fingerprint includes its graph's.
        for (name, graph) in &pipeline.children {
            let fp = graph_steps(graph, catalog, &BTreeMap::new(), &mut out);
            graphs.insert(name, fp);
        }
        graph_steps(&pipeline.main, catalog, &graphs, &mut out);
        if let Some(hook) = &pipeline.on_failure {
            let key = StepKey {
                graph: pipeline.main.name.clone(),
                step: ON_FAILURE.into(),
            };
            let fp = step_fingerprint(hook, &pipeline.main, catalog, &graphs, &[], &mut out);
            out.steps.insert(key.stored(), fp);
        }
        out
    }

    /// The fingerprint of a step, if the definition has it.
    pub fn step(&self, key: &StepKey) -> Option<&str> {
        self.steps.get(&key.stored()).map(String::as_str)
    }
}

/// Fingerprint every step of `graph` into `out`; returns the graph's own fingerprint (its
/// inputs, output and steps).
fn graph_steps(
    graph: &Graph,
    catalog: &Catalog,
    children: &BTreeMap<&str, String>,
    out: &mut Fingerprints,
) -> String {
    let mut by_id: BTreeMap<&str, String> = BTreeMap::new();
    // Validation guarantees `needs` name earlier-declared steps? Not necessarily: resolve in
    // dependency order, each step once its needs are known.
    let mut pending: Vec<&Step> = graph.steps.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|step| {
            let needs: Option<Vec<String>> = step
                .needs
                .iter()
                .map(|n| by_id.get(n.as_str()).cloned())
                .collect();
            let Some(needs) = needs else { return true };
            let fp = step_fingerprint(step, graph, catalog, children, &needs, out);
            by_id.insert(&step.id, fp);
            false
        });
        if pending.len() == before {
            // A cycle or an unknown need (validation refuses both): fingerprint without them.
            for step in pending.drain(..) {
                let fp = step_fingerprint(step, graph, catalog, children, &[], out);
                by_id.insert(&step.id, fp);
            }
        }
    }
    for (id, fp) in &by_id {
        out.steps.insert(
            StepKey {
                graph: graph.name.clone(),
                step: (*id).to_owned(),
            }
            .stored(),
            fp.clone(),
        );
    }
    let steps: Vec<&String> = graph.steps.iter().map(|s| &by_id[s.id.as_str()]).collect();
    digest(&json!({
        "inputs": canonical(&serde_json::to_value(&graph.inputs).unwrap_or(Value::Null)),
        "output": canonical(&graph.output),
        "steps": steps,
    }))
}

fn step_fingerprint(
    step: &Step,
    graph: &Graph,
    catalog: &Catalog,
    children: &BTreeMap<&str, String>,
    needs: &[String],
    out: &mut Fingerprints,
) -> String {
    let runs = match &step.run {
        Run::Activity(name) => {
            let fp = catalog
                .get_activity(name)
                .map_or_else(|| "-".to_owned(), activity_fingerprint);
            out.contracts.insert(name.clone(), fp.clone());
            fp
        }
        Run::Child(name) => children.get(name.as_str()).cloned().unwrap_or_default(),
    };
    let mut needs = needs.to_vec();
    needs.sort();
    digest(&json!({
        "step": canonical(&serde_json::to_value(step).unwrap_or(Value::Null)),
        "runs": runs,
        "inputs": canonical(&serde_json::to_value(&graph.inputs).unwrap_or(Value::Null)),
        "needs": needs,
    }))
}

/// The contract fingerprint of one activity's catalog entry.
pub fn activity_fingerprint(entry: &ActivityEntry) -> String {
    digest(&json!({
        "emits": entry.emits,
        "cost": format!("{:?}", entry.cost),
        "input": entry.input.as_ref().map(canonical),
        "output": entry.output.as_ref().map(canonical),
    }))
}

/// The fingerprint of a whole catalog: every activity's contract and the workflow types.
pub fn catalog_fingerprint(catalog: &Catalog) -> String {
    let activities: BTreeMap<&str, String> = catalog
        .activity_names()
        .filter_map(|n| {
            catalog
                .get_activity(n)
                .map(|e| (n, activity_fingerprint(e)))
        })
        .collect();
    let workflows: Vec<&str> = catalog.workflow_type_names().collect();
    digest(&json!({"activities": activities, "workflows": workflows}))
}

/// `v` with every object's keys sorted.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            let mut out = serde_json::Map::new();
            for (k, v) in sorted {
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
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

    fn catalog() -> Catalog {
        Catalog::new()
            .activity("a", &[])
            .activity("b", &[])
            .workflow_type("Main")
            .workflow_type("Kid")
    }

    const YAML: &str = "name: Main\nversion: 1\ninputs: {xs: {type: array}}\n\
        defaults: {start_to_close: 10s}\n\
        steps:\n  - {id: first, activity: a, with: {x: 1, y: 2}}\n\
          \x20 - {id: second, activity: b, needs: [first]}\n\
          \x20 - {id: other, activity: b}\n\
          \x20 - {id: each, child: Kid, needs: [second], for_each: '${input.xs}', with: {x: '${item}'}}\n\
        children:\n  Kid: {inputs: {x: {type: string}}, steps: [{id: work, activity: b}]}\n";

    fn fps(yaml: &str) -> Fingerprints {
        let p = crate::parse_and_validate("t.yaml", yaml, &catalog()).unwrap();
        Fingerprints::of(&p, &catalog())
    }

    fn key(graph: &str, step: &str) -> StepKey {
        StepKey {
            graph: graph.into(),
            step: step.into(),
        }
    }

    #[test]
    fn a_change_reaches_the_step_and_everything_downstream_only() {
        let before = fps(YAML);
        assert_eq!(before.steps.len(), 5);
        let after = fps(&YAML.replace(
            "id: second, activity: b,",
            "id: second, activity: b, start_to_close: 20s,",
        ));
        let same = |k: StepKey| before.step(&k) == after.step(&k);
        assert!(same(key("Main", "first")) && same(key("Main", "other")));
        assert!(same(key("Kid", "work")));
        assert!(!same(key("Main", "second")) && !same(key("Main", "each")));
    }

    #[test]
    fn a_child_graph_change_reaches_the_step_that_starts_it_and_key_order_does_not_matter() {
        let before = fps(YAML);
        let reordered = fps(&YAML.replace("with: {x: 1, y: 2}", "with: {y: 2, x: 1}"));
        assert_eq!(before, reordered);
        let after = fps(&YAML.replace(
            "steps: [{id: work, activity: b}]",
            "steps: [{id: work, activity: a}]",
        ));
        assert_ne!(
            before.step(&key("Kid", "work")),
            after.step(&key("Kid", "work"))
        );
        assert_ne!(
            before.step(&key("Main", "each")),
            after.step(&key("Main", "each"))
        );
        assert_eq!(
            before.step(&key("Main", "second")),
            after.step(&key("Main", "second"))
        );
    }

    #[test]
    fn an_activity_contract_change_is_seen_without_a_definition_change() {
        let p = crate::parse_and_validate("t.yaml", YAML, &catalog()).unwrap();
        let before = Fingerprints::of(&p, &catalog());
        let changed = catalog().activity("a", &[crate::event::Event::Status]);
        let after = Fingerprints::of(&p, &changed);
        assert_ne!(before.catalog, after.catalog);
        assert_ne!(before.contracts["a"], after.contracts["a"]);
        assert_eq!(before.contracts["b"], after.contracts["b"]);
        assert_ne!(
            before.step(&key("Main", "first")),
            after.step(&key("Main", "first"))
        );
        assert_eq!(
            before.step(&key("Main", "other")),
            after.step(&key("Main", "other"))
        );
    }

    #[test]
    fn step_keys_round_trip() {
        let k = key("Main", "first");
        assert_eq!(StepKey::parse(&k.stored()), Some(k.clone()));
        assert_eq!(k.to_string(), "Main.first");
    }
}
