//! The cross-reference checks of validation: expressions against steps and inputs, `with:`
//! and `${step.field}` against the activities' contracts, child inputs, the `progress:` and
//! `search_attributes:` sections, and the helpers that word their messages.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::error::Problem;
use super::raw::{RawInput, RawPipeline};
use crate::catalog::{ActivityEntry, Catalog};
use crate::expr::{self, Path};

/// `progress:` names activity types some step runs, indexes within `total_steps`, and a
/// transcript template that reads only inputs.
pub(super) fn check_progress(
    p: &super::raw::RawProgress,
    raw: &RawPipeline,
    catalog: &Catalog,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let used: BTreeSet<&str> = raw
        .steps
        .iter()
        .chain(raw.children.values().flat_map(|c| c.steps.iter()))
        .filter_map(|s| s.activity.as_deref())
        .collect();
    if p.total_steps == 0 {
        out.push(Problem::Invalid(
            "progress: total_steps must be 1 or more".into(),
        ));
    }
    for (activity, index) in &p.steps {
        if !used.contains(activity.as_str()) {
            let known: Vec<&str> = used.iter().copied().collect();
            out.push(Problem::Invalid(format!(
                "progress: no step runs activity {activity:?}{}",
                closest(activity, &known)
                    .map(|s| format!(" (did you mean {s:?}?)"))
                    .unwrap_or_default()
            )));
        } else if catalog.get_activity(activity).is_none() {
            out.push(Problem::Invalid(format!(
                "progress: unknown activity {activity:?}"
            )));
        }
        if *index == 0 || *index > p.total_steps {
            out.push(Problem::Invalid(format!(
                "progress: step_index {index} of {activity:?} is outside 1..={}",
                p.total_steps
            )));
        }
    }
    match expr::references(&Value::String(p.transcript_id.clone())) {
        Err(e) => out.push(Problem::Invalid(format!("progress: transcript_id: {e}"))),
        Ok(paths) => {
            for path in paths {
                let ok = path.root == "input"
                    && matches!(path.segments.first(), Some(expr::Segment::Field(f)) if raw.inputs.contains_key(f));
                if !ok {
                    out.push(Problem::Invalid(format!(
                        "progress: transcript_id `${{{}}}` must read a declared input",
                        path.text
                    )));
                }
            }
        }
    }
    out
}

/// `search_attributes:` names attributes a pipeline may set, with templates that read only
/// the main pipeline's declared inputs.
pub(super) fn check_search_attributes(raw: &RawPipeline) -> Vec<Problem> {
    let mut out = Vec::new();
    for (name, template) in &raw.search_attributes {
        if crate::search::declarable(name).is_none() {
            let names: Vec<&str> = crate::search::DECLARABLE.iter().map(|k| k.name()).collect();
            out.push(Problem::Invalid(format!(
                "search_attributes: {name:?} is not one a pipeline sets (known: {}{})",
                list(names.iter().copied()),
                closest(name, &names)
                    .map(|c| format!("; did you mean {c:?}?"))
                    .unwrap_or_default()
            )));
            continue;
        }
        match expr::references(&Value::String(template.clone())) {
            Err(source) => out.push(Problem::Expr {
                field: "search_attributes",
                source,
            }),
            Ok(paths) => {
                for p in paths {
                    if p.root != "input" && p.root != "workflow" {
                        out.push(Problem::Invalid(format!(
                            "search_attributes: {name}: `${{{}}}` must read a declared input",
                            p.text
                        )));
                    } else if let Some(pr) =
                        check_ref("search_attributes", &p, &[], None, &raw.inputs, false)
                    {
                        out.push(pr);
                    }
                }
            }
        }
    }
    out
}

/// `with` against the activity's input schema: every key is an input, every required input
/// is given. A `with` that is not a mapping (one expression) is checked at run time only.
pub(super) fn check_input(
    activity: &str,
    entry: &ActivityEntry,
    with: Option<&Value>,
) -> Vec<Problem> {
    let Some((all, required)) = entry.input_fields() else {
        return Vec::new();
    };
    let empty = serde_json::Map::new();
    let given = match with {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => &empty,
        Some(_) => return Vec::new(),
    };
    let mut out: Vec<Problem> = given
        .keys()
        .filter(|k| !all.contains(*k))
        .map(|k| Problem::UnknownInputField {
            activity: activity.to_owned(),
            key: k.clone(),
            known: list(all.iter().map(String::as_str)),
        })
        .collect();
    out.extend(
        required
            .iter()
            .filter(|k| !given.contains_key(*k))
            .map(|k| Problem::MissingInputField {
                activity: activity.to_owned(),
                key: k.clone(),
            }),
    );
    out
}

/// `${step.field…}` against what the step's output has (its contract, or its child
/// pipeline's `output`); fan-out indexes (`[*]`, `[n]`, `[index]`) before the field are
/// looked through.
pub(super) fn check_output_field(
    field: &'static str,
    p: &Path,
    outputs: &BTreeMap<&str, BTreeSet<String>>,
) -> Option<Problem> {
    let fields = outputs.get(p.root.as_str())?;
    let name = p.segments.iter().find_map(|s| match s {
        expr::Segment::Field(f) => Some(f),
        _ => None,
    })?;
    (!fields.contains(name)).then(|| Problem::UnknownOutputField {
        field,
        expr: p.text.clone(),
        root: p.root.clone(),
        name: name.clone(),
        known: list(fields.iter().map(String::as_str)),
    })
}

pub(super) fn check_ref(
    field: &'static str,
    p: &Path,
    ids: &[&str],
    upstream: Option<&BTreeSet<&str>>,
    inputs: &BTreeMap<String, RawInput>,
    item_ok: bool,
) -> Option<Problem> {
    if !item_ok && p.segments.contains(&expr::Segment::CurrentIndex) {
        return Some(Problem::ItemOutsideFanOut {
            field,
            expr: p.text.clone(),
        });
    }
    match p.root.as_str() {
        "input" => match p.segments.first() {
            Some(expr::Segment::Field(name)) if !inputs.contains_key(name) => {
                Some(Problem::UndeclaredInput {
                    field,
                    expr: p.text.clone(),
                    name: name.clone(),
                    declared: list(inputs.keys().map(String::as_str)),
                })
            }
            _ => None,
        },
        "workflow" => None,
        "item" | "index" => (!item_ok).then(|| Problem::ItemOutsideFanOut {
            field,
            expr: p.text.clone(),
        }),
        root if !ids.contains(&root) => Some(Problem::UnknownRef {
            field,
            expr: p.text.clone(),
            root: root.to_owned(),
            suggestion: closest(root, ids),
        }),
        // `upstream` is None only when the graph has a cycle, already reported.
        root => match upstream {
            Some(up) if !up.contains(root) => Some(Problem::RefNotUpstream {
                field,
                expr: p.text.clone(),
                root: root.to_owned(),
            }),
            _ => None,
        },
    }
}

pub(super) fn check_child_inputs(
    with: &serde_json::Map<String, Value>,
    inputs: &BTreeMap<String, RawInput>,
) -> Option<Problem> {
    let missing: Vec<&str> = inputs
        .iter()
        .filter(|(n, i)| {
            i.required.unwrap_or(true) && i.default.is_none() && !with.contains_key(*n)
        })
        .map(|(n, _)| n.as_str())
        .collect();
    let unknown: Vec<&str> = with
        .keys()
        .filter(|k| !inputs.contains_key(*k))
        .map(String::as_str)
        .collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "the child's required inputs {} are missing",
            list(missing.into_iter())
        ));
    }
    if !unknown.is_empty() {
        parts.push(format!(
            "{} are not inputs of the child",
            list(unknown.into_iter())
        ));
    }
    (!parts.is_empty()).then(|| Problem::ChildInputs(parts.join("; ")))
}

pub(super) fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) fn closest(name: &str, candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(name, c), *c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 3) && *d > 0)
        .min()
        .map(|(_, c)| c.to_owned())
}

pub(super) fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
