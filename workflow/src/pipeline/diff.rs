//! What changed from one version of a definition to another, step by step: the steps added,
//! removed and changed (and for a changed step which of its fields), the definition's own
//! fields that changed, and which steps of the new version a re-run could reuse because the
//! step and everything upstream of it are unchanged ([`super::fingerprint`]). `reflow plan`
//! prints it; everything here is pure.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use super::fingerprint::{Fingerprints, ON_FAILURE, StepKey};
use super::{Graph, Pipeline, Run, Step};

/// A step's change between two versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepChange {
    /// Only the new version has it.
    Added(StepKey),
    /// Only the old version has it.
    Removed(StepKey),
    /// Both have it, with these fields different (`with (+language, ~tracks)`, `needs`,
    /// `timeouts (start_to_close 60s → 90s)`, `retry`, `queue (a → b)`, `condition`, `activity
    /// contract`, …).
    Changed(StepKey, Vec<String>),
}

impl fmt::Display for StepChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepChange::Added(k) => write!(f, "+ step {k}"),
            StepChange::Removed(k) => write!(f, "- step {k}"),
            StepChange::Changed(k, fields) => write!(f, "~ step {k}: {}", fields.join(", ")),
        }
    }
}

/// The change from one version to another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Changes of the definition's own fields (`inputs`, `output`, `progress`, …).
    pub fields: Vec<String>,
    /// Step changes, main graph first, then children by name, in declared order.
    pub steps: Vec<StepChange>,
    /// Steps of the new version whose fingerprint is the old one's: reusable by a re-run.
    pub reusable: Vec<StepKey>,
}

/// The change from `old` (fingerprinted `old_fp` when it was registered) to `new` (`new_fp`
/// against today's catalog).
pub fn diff(old: &Pipeline, old_fp: &Fingerprints, new: &Pipeline, new_fp: &Fingerprints) -> Diff {
    let mut out = Diff {
        fields: pipeline_fields(old, new),
        ..Diff::default()
    };
    let graphs = |p: &Pipeline| -> Vec<(String, Graph)> {
        std::iter::once((
            p.main.name.clone(),
            with_hook(&p.main, p.on_failure.as_ref()),
        ))
        .chain(p.children.iter().map(|(n, g)| (n.clone(), g.clone())))
        .collect()
    };
    let (old_graphs, new_graphs) = (graphs(old), graphs(new));
    for (name, g) in &new_graphs {
        let before = old_graphs.iter().find(|(n, _)| n == name).map(|(_, g)| g);
        for step in &g.steps {
            let key = StepKey {
                graph: name.clone(),
                step: step.id.clone(),
            };
            match before.and_then(|b| b.step(&step.id)) {
                None => out.steps.push(StepChange::Added(key.clone())),
                Some(was) => {
                    let mut fields = step_fields(was, step);
                    if let Run::Activity(a) = &step.run
                        && old_fp.contracts.get(a) != new_fp.contracts.get(a)
                        && was.run == step.run
                    {
                        fields.push("activity contract".into());
                    }
                    if !fields.is_empty() {
                        out.steps.push(StepChange::Changed(key.clone(), fields));
                    }
                }
            }
            if old_fp.step(&key).is_some() && old_fp.step(&key) == new_fp.step(&key) {
                out.reusable.push(key);
            }
        }
    }
    for (name, g) in &old_graphs {
        let now = new_graphs.iter().find(|(n, _)| n == name).map(|(_, g)| g);
        for step in &g.steps {
            if now.and_then(|n| n.step(&step.id)).is_none() {
                out.steps.push(StepChange::Removed(StepKey {
                    graph: name.clone(),
                    step: step.id.clone(),
                }));
            }
        }
    }
    out
}

/// The main graph with the failure hook as a step named [`ON_FAILURE`], so it is compared
/// like one.
fn with_hook(main: &Graph, hook: Option<&Step>) -> Graph {
    let mut g = main.clone();
    if let Some(h) = hook {
        let mut h = h.clone();
        h.id = ON_FAILURE.into();
        g.steps.push(h);
    }
    g
}

fn pipeline_fields(old: &Pipeline, new: &Pipeline) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, a: Value, b: Value| {
        if a != b {
            out.push(name.to_owned());
        }
    };
    check("description", v(&old.description), v(&new.description));
    check(
        "task_queue",
        v(&old.main.task_queue),
        v(&new.main.task_queue),
    );
    check("inputs", v(&old.main.inputs), v(&new.main.inputs));
    check("output", v(&old.main.output), v(&new.main.output));
    check("progress", v(&old.progress), v(&new.progress));
    check(
        "search_attributes",
        v(&old.search_attributes),
        v(&new.search_attributes),
    );
    let names = |p: &Pipeline| p.children.keys().cloned().collect::<BTreeSet<_>>();
    for name in names(old).union(&names(new)) {
        match (old.children.get(name), new.children.get(name)) {
            (None, Some(_)) => out.push(format!("+ child {name}")),
            (Some(_), None) => out.push(format!("- child {name}")),
            (Some(a), Some(b)) => {
                let mut diffs = Vec::new();
                for (field, x, y) in [
                    ("inputs", v(&a.inputs), v(&b.inputs)),
                    ("output", v(&a.output), v(&b.output)),
                    ("task_queue", v(&a.task_queue), v(&b.task_queue)),
                ] {
                    if x != y {
                        diffs.push(field);
                    }
                }
                if !diffs.is_empty() {
                    out.push(format!("~ child {name}: {}", diffs.join(", ")));
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// A field as JSON, to compare.
fn v<T: serde::Serialize>(x: &T) -> Value {
    serde_json::to_value(x).unwrap_or(Value::Null)
}

/// Which fields of a step differ, as `reflow plan` names them.
fn step_fields(old: &Step, new: &Step) -> Vec<String> {
    let mut out = Vec::new();
    if old.run != new.run {
        let name = |r: &Run| match r {
            Run::Activity(a) => format!("activity {a}"),
            Run::Child(c) => format!("child {c}"),
        };
        out.push(format!("runs ({} → {})", name(&old.run), name(&new.run)));
    }
    if old.with != new.with {
        out.push(with_change(&old.with, &new.with));
    }
    if old.needs != new.needs {
        let (a, b): (BTreeSet<_>, BTreeSet<_>) =
            (old.needs.iter().collect(), new.needs.iter().collect());
        let mut parts: Vec<String> = b.difference(&a).map(|n| format!("+{n}")).collect();
        parts.extend(a.difference(&b).map(|n| format!("-{n}")));
        out.push(if parts.is_empty() {
            "needs (order)".into()
        } else {
            format!("needs ({})", parts.join(", "))
        });
    }
    let (o, n) = (&old.options, &new.options);
    let mut timeouts = Vec::new();
    for (name, a, b) in [
        ("start_to_close", o.start_to_close_ms, n.start_to_close_ms),
        (
            "schedule_to_close",
            o.schedule_to_close_ms,
            n.schedule_to_close_ms,
        ),
        ("heartbeat", o.heartbeat_ms, n.heartbeat_ms),
    ] {
        if a != b {
            timeouts.push(format!("{name} {} → {}", ms(a), ms(b)));
        }
    }
    if o.start_to_close_formula != n.start_to_close_formula {
        timeouts.push("start_to_close formula".into());
    }
    if !timeouts.is_empty() {
        out.push(format!("timeouts ({})", timeouts.join(", ")));
    }
    if o.retry != n.retry {
        out.push("retry".into());
    }
    if o.task_queue != n.task_queue {
        out.push(format!("queue ({} → {})", o.task_queue, n.task_queue));
    }
    if old.when != new.when {
        out.push("condition".into());
    }
    for (name, differs) in [
        ("for_each", old.for_each != new.for_each),
        ("concurrency", old.concurrency != new.concurrency),
        ("optional", old.optional != new.optional),
        ("emits", old.emits != new.emits),
        ("local", old.local != new.local),
        ("child_id", old.child_id != new.child_id),
        ("activity_id", old.activity_id != new.activity_id),
        ("summary", old.summary != new.summary),
        ("conductor", old.conductor != new.conductor),
    ] {
        if differs {
            out.push(name.into());
        }
    }
    out
}

/// `with (+added, -removed, ~changed)` over the top-level keys (`with` when it is not an
/// object on both sides).
fn with_change(old: &Value, new: &Value) -> String {
    let (Value::Object(a), Value::Object(b)) = (old, new) else {
        return "with".into();
    };
    let mut parts: Vec<String> = b
        .keys()
        .filter(|k| !a.contains_key(*k))
        .map(|k| format!("+{k}"))
        .collect();
    parts.extend(
        a.keys()
            .filter(|k| !b.contains_key(*k))
            .map(|k| format!("-{k}")),
    );
    parts.extend(
        a.iter()
            .filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v))
            .map(|(k, _)| format!("~{k}")),
    );
    if parts.is_empty() {
        "with (order)".into()
    } else {
        format!("with ({})", parts.join(", "))
    }
}

fn ms(v: Option<u64>) -> String {
    match v {
        None => "none".into(),
        Some(ms) if ms % 1000 == 0 => format!("{}s", ms / 1000),
        Some(ms) => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalog;

    fn catalog() -> Catalog {
        Catalog::new()
            .activity("a", &[])
            .activity("b", &[])
            .workflow_type("Main")
            .workflow_type("Kid")
    }

    const V1: &str = "name: Main\nversion: 1\ninputs: {xs: {type: array}}\n\
        defaults: {start_to_close: 10s}\n\
        steps:\n  - {id: first, activity: a, with: {x: 1, y: 2}}\n\
          \x20 - {id: second, activity: b, needs: [first]}\n\
          \x20 - {id: other, activity: b}\n\
          \x20 - {id: gone, activity: b}\n\
          \x20 - {id: each, child: Kid, needs: [second], for_each: '${input.xs}', with: {x: '${item}'}}\n\
        children:\n  Kid: {inputs: {x: {type: string}}, steps: [{id: work, activity: b}]}\n";

    fn load(yaml: &str) -> (Pipeline, Fingerprints) {
        let p = crate::parse_and_validate("t.yaml", yaml, &catalog()).unwrap();
        let f = Fingerprints::of(&p, &catalog());
        (p, f)
    }

    #[test]
    fn changed_added_and_removed_steps_with_their_fields_and_the_reusable_ones() {
        let (old, old_fp) = load(V1);
        let v2 = V1
            .replace("version: 1", "version: 2")
            .replace(
                "{id: second, activity: b, needs: [first]}",
                "{id: second, activity: b, needs: [first, other], start_to_close: 20s, task_queue: q2}",
            )
            .replace("with: {x: 1, y: 2}", "with: {x: 1, y: 3, z: 4}")
            .replace("  - {id: gone, activity: b}\n", "  - {id: new, activity: a, when: '${input.xs}'}\n");
        let (new, new_fp) = load(&v2);
        let d = diff(&old, &old_fp, &new, &new_fp);
        let lines: Vec<String> = d.steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "~ step Main.first: with (+z, ~y)",
                "~ step Main.second: needs (+other), timeouts (start_to_close 10s → 20s), queue (reflow → q2)",
                "+ step Main.new",
                "- step Main.gone",
            ]
        );
        assert!(d.fields.is_empty(), "{:?}", d.fields);
        let reusable: Vec<String> = d.reusable.iter().map(ToString::to_string).collect();
        assert_eq!(reusable, ["Main.other", "Kid.work"]);
    }

    #[test]
    fn a_contract_change_is_named_and_breaks_reuse_downstream() {
        let (p, old_fp) = load(V1);
        let changed = catalog().activity("a", &[crate::catalog::Event::Status]);
        let new_fp = Fingerprints::of(&p, &changed);
        let d = diff(&p, &old_fp, &p, &new_fp);
        assert_eq!(
            d.steps,
            [StepChange::Changed(
                StepKey {
                    graph: "Main".into(),
                    step: "first".into()
                },
                vec!["activity contract".into()]
            )]
        );
        let reusable: Vec<String> = d.reusable.iter().map(ToString::to_string).collect();
        assert_eq!(reusable, ["Main.other", "Main.gone", "Kid.work"]);
    }
}
