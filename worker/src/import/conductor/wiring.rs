//! A skeleton task's input, wired by name.
//!
//! A Conductor task without `inputParameters` gets an empty input; a definition written that
//! way (the seed's) says which activities run in which order and leaves the data flow out.
//! For such a task the import fills the step's `with:` from its activity's input contract,
//! field by field, taking the first of:
//!
//! 1. a declared input of that name: `${input.f}`;
//! 2. the nearest upstream step whose output has the field: `${step.f}` (a fan-out whose
//!    members' output has `x` gives a list field `xs`: `${step[*].x}`);
//! 3. for a required field, a field of `workflow` (`started_at`, …): `${workflow.f}`;
//! 4. for a required field, a new declared input — only when the definition lists no
//!    `inputParameters` (it names no inputs, so they are inferred) and every upstream step's
//!    output is known (otherwise the field may well come from the step whose output is not).
//!
//! A required field found nowhere is left out and named; optional ones are simply left out.

use std::collections::BTreeSet;

use serde_json::Value;
use workflow::catalog::ActivityEntry;

/// The fields of `${workflow.…}` (`workflow::interpreter`).
const WORKFLOW_FIELDS: [&str; 6] = ["id", "pipeline", "graph", "version", "hash", "started_at"];

/// What a step's output is known to have.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Output {
    /// An activity's or child's output fields.
    Known(BTreeSet<String>),
    /// A fan-out: its members' output fields.
    Members(BTreeSet<String>),
    /// Not known (an activity that is not registered, a fan-out whose member is unknown).
    Unknown,
}

/// An upstream step, as wiring sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Upstream<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its output.
    pub output: &'a Output,
}

/// The wired input.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Wired {
    /// Field and expression, in field order.
    pub entries: Vec<(String, Value)>,
    /// Inputs to declare: name and JSON type.
    pub declare: Vec<(String, String)>,
    /// Required fields left out, with why.
    pub missing: Vec<(String, String)>,
}

/// Wire `entry`'s input contract (`None`: the activity has no object contract).
/// `upstream` is nearest first; `may_declare` is rule 4's first condition.
pub(super) fn by_name(
    entry: &ActivityEntry,
    declared: &BTreeSet<String>,
    upstream: &[Upstream<'_>],
    may_declare: bool,
) -> Option<Wired> {
    let (fields, required) = entry.input_fields()?;
    let unknown: Vec<&str> = upstream
        .iter()
        .filter(|u| *u.output == Output::Unknown)
        .map(|u| u.id)
        .collect();
    let mut declared = declared.clone();
    let mut out = Wired::default();
    for f in &fields {
        let needed = required.contains(f);
        let from_upstream = || {
            upstream.iter().find_map(|u| match u.output {
                Output::Known(o) if o.contains(f) => Some(format!("${{{}.{f}}}", u.id)),
                Output::Members(o) => f
                    .strip_suffix('s')
                    .filter(|one| o.contains(*one))
                    .map(|one| format!("${{{}[*].{one}}}", u.id)),
                _ => None,
            })
        };
        let source = if declared.contains(f) {
            Some(format!("${{input.{f}}}"))
        } else if let Some(e) = from_upstream() {
            Some(e)
        } else if needed && WORKFLOW_FIELDS.contains(&f.as_str()) {
            Some(format!("${{workflow.{f}}}"))
        } else if needed && may_declare && unknown.is_empty() {
            declared.insert(f.clone());
            out.declare.push((f.clone(), json_type(entry, f)));
            Some(format!("${{input.{f}}}"))
        } else {
            None
        };
        match source {
            Some(e) => out.entries.push((f.clone(), Value::String(e))),
            None if needed => {
                let why = if unknown.is_empty() {
                    "no declared input and no upstream step's output has this name".to_owned()
                } else {
                    let whose = match unknown.as_slice() {
                        [one] => format!("the output of {one} is"),
                        many => format!("the outputs of {} are", many.join(", ")),
                    };
                    format!(
                        "no declared input and no upstream step's known output has this name \
                         ({whose} not known)"
                    )
                };
                out.missing.push((f.clone(), why));
            }
            None => {}
        }
    }
    Some(out)
}

/// The JSON type of an input field, from the contract's schema (`any` when it says nothing
/// simple).
fn json_type(entry: &ActivityEntry, field: &str) -> String {
    let t = entry
        .input
        .as_ref()
        .and_then(|s| s.get("properties"))
        .and_then(|p| p.get(field))
        .and_then(|f| f.get("type"));
    let name = match t {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).find(|s| *s != "null"),
        _ => None,
    };
    match name {
        Some(n @ ("string" | "integer" | "number" | "boolean" | "array" | "object")) => n.into(),
        _ => "any".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(props: Value, required: &[&str]) -> ActivityEntry {
        ActivityEntry {
            input: Some(json!({"type": "object", "properties": props, "required": required})),
            ..ActivityEntry::default()
        }
    }

    fn fields(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn import_by_name_inputs_then_nearest_upstream_then_workflow_then_new_inputs() {
        let e = entry(
            json!({"transcript_id": {"type": "string"}, "mtg_session_id": {"type": ["string", "null"]},
                   "tracks": {"type": "array"}, "started_at": {"type": "string"},
                   "padded_keys": {"type": "array"}, "chunking": {"type": "string"}}),
            &["transcript_id", "tracks", "started_at", "padded_keys"],
        );
        let rec = Output::Known(fields(&["mtg_session_id", "duration_s"]));
        let older = Output::Known(fields(&["mtg_session_id"]));
        let pad = Output::Members(fields(&["padded_key"]));
        let up = [
            Upstream {
                id: "pad",
                output: &pad,
            },
            Upstream {
                id: "get_recording",
                output: &rec,
            },
            Upstream {
                id: "older",
                output: &older,
            },
        ];
        let w = by_name(&e, &fields(&["transcript_id"]), &up, true).unwrap();
        assert_eq!(
            w.entries,
            vec![
                (
                    "mtg_session_id".into(),
                    json!("${get_recording.mtg_session_id}")
                ),
                ("padded_keys".into(), json!("${pad[*].padded_key}")),
                ("started_at".into(), json!("${workflow.started_at}")),
                ("tracks".into(), json!("${input.tracks}")),
                ("transcript_id".into(), json!("${input.transcript_id}")),
            ]
        );
        assert_eq!(w.declare, vec![("tracks".into(), "array".into())]);
        assert!(w.missing.is_empty());
    }

    #[test]
    fn import_by_name_declares_nothing_behind_an_unknown_output_or_when_inputs_are_listed() {
        let e = entry(json!({"padded_keys": {"type": "array"}}), &["padded_keys"]);
        let fork = Output::Unknown;
        let up = [Upstream {
            id: "fork_padding",
            output: &fork,
        }];
        let w = by_name(&e, &BTreeSet::new(), &up, true).unwrap();
        assert!(w.entries.is_empty() && w.declare.is_empty());
        assert_eq!(w.missing.len(), 1);
        assert!(
            w.missing[0]
                .1
                .contains("the output of fork_padding is not known")
        );
        let w = by_name(&e, &BTreeSet::new(), &[], false).unwrap();
        assert_eq!(
            w.missing,
            vec![(
                "padded_keys".into(),
                "no declared input and no upstream step's output has this name".into()
            )]
        );
        assert!(by_name(&ActivityEntry::default(), &BTreeSet::new(), &[], true).is_none());
    }
}
