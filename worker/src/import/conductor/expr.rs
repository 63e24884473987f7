//! Conductor's `${…}` references as reflow expressions.
//!
//! | Conductor | reflow |
//! |---|---|
//! | `${workflow.input.x…}` | `${input.x…}` |
//! | `${workflow.workflowId}` / `.workflowType` / `.workflowVersion` | `${workflow.id}` / `.pipeline` / `.version` |
//! | `${ref.output.y…}` (an earlier task) | `${step.y…}` (its step) |
//! | `${join.output.ref.y…}` (a FORK_JOIN's JOIN) | `${step.y…}` |
//! | `[n]`, `[*]` | the same |
//!
//! Anything else does not map: JSONPath (`$.x`, `..y`, filters), a task's `input`, a dynamic
//! fork's JOIN output, other `workflow` fields, tasks that are not imported or come later.
//! [`map_value`] says which expression and why.

use std::collections::BTreeMap;

use serde_json::Value;
use workflow::expr::{self, Segment};

/// What a Conductor reference name stands for in the imported pipeline.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ref {
    /// A step with that id.
    Step(String),
    /// A dynamic fork or its JOIN: the fan-out step with that id.
    FanOut(String),
    /// A FORK_JOIN: no step.
    StaticFork,
    /// A FORK_JOIN's JOIN: member ref → step id.
    StaticJoin(BTreeMap<String, String>),
    /// Not imported (why).
    Gone(String),
}

/// An expression that does not map, and why.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Unmappable {
    /// The Conductor expression, `${…}` included.
    pub expr: String,
    /// Why it does not map.
    pub reason: String,
}

/// A template with every expression mapped, or the first one that does not map.
pub(super) fn map_value(v: &Value, refs: &BTreeMap<String, Ref>) -> Result<Value, Unmappable> {
    Ok(match v {
        Value::String(s) => Value::String(map_string(s, refs)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| map_value(i, refs))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), map_value(v, refs)?)))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// A string with each `${…}` mapped (text around them is kept).
pub(super) fn map_string(s: &str, refs: &BTreeMap<String, Ref>) -> Result<String, Unmappable> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(Unmappable {
                expr: rest[start..].to_owned(),
                reason: "`${` without `}`".into(),
            });
        };
        let inner = &after[..end];
        let mapped = map_path(inner, refs).map_err(|reason| Unmappable {
            expr: format!("${{{inner}}}"),
            reason,
        })?;
        out.push_str("${");
        out.push_str(&mapped);
        out.push('}');
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn map_path(inner: &str, refs: &BTreeMap<String, Ref>) -> Result<String, String> {
    let text = inner.trim();
    let root_name = text.split(['.', '[']).next().unwrap_or_default().to_owned();
    if text.starts_with('$') || text.contains("..") || text.contains('?') || text.contains('@') {
        let hint = match refs.get(&root_name) {
            Some(Ref::FanOut(id)) => format!(
                "; the members' outputs are `${{{id}}}` in reflow (one field of each: \
                 `${{{id}[*].field}}`)"
            ),
            _ => String::new(),
        };
        return Err(format!(
            "a JSONPath expression: reflow reads plain paths only{hint}"
        ));
    }
    let path = expr::parse_single(&format!("${{{text}}}"))
        .map_err(|e| format!("not a path reflow reads: {e}"))?;
    let field = |i: usize| match path.segments.get(i) {
        Some(Segment::Field(f)) => Some(f.as_str()),
        _ => None,
    };
    let (root, rest): (String, &[Segment]) = match path.root.as_str() {
        "workflow" => match field(0) {
            Some("input") => ("input".into(), &path.segments[1..]),
            Some(f @ ("workflowId" | "workflowType" | "workflowVersion"))
                if path.segments.len() == 1 =>
            {
                let mapped = match f {
                    "workflowId" => "workflow.id",
                    "workflowType" => "workflow.pipeline",
                    _ => "workflow.version",
                };
                return Ok(mapped.into());
            }
            _ => {
                return Err(format!(
                    "`${{{text}}}` has no counterpart (reflow's workflow fields: id, pipeline, \
                     graph, version, hash, started_at)"
                ));
            }
        },
        r => match refs.get(r) {
            None => return Err(format!("`{r}` names no task before this one")),
            Some(Ref::Gone(why)) => return Err(format!("task {r} is not imported ({why})")),
            Some(Ref::StaticFork) => return Err(format!("{r} is a FORK: it has no output")),
            Some(Ref::FanOut(id)) => {
                return Err(format!(
                    "{r} is a dynamic fork (or its JOIN), whose output maps member refs to \
                     outputs; in reflow `${{{id}}}` is the list of the members' outputs"
                ));
            }
            Some(Ref::Step(id)) => match field(0) {
                Some("output") => (id.clone(), &path.segments[1..]),
                Some("input") => {
                    return Err(format!(
                        "reads task {r}'s input: reflow expressions read step outputs only"
                    ));
                }
                _ => return Err(format!("only `{r}.output…` maps to step {id}")),
            },
            Some(Ref::StaticJoin(members)) => match (field(0), field(1)) {
                (Some("output"), Some(m)) if members.contains_key(m) => {
                    (members[m].clone(), &path.segments[2..])
                }
                _ => {
                    return Err(format!(
                        "only `{r}.output.<joined ref>…` maps (joined: {})",
                        members.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            },
        },
    };
    if rest.contains(&Segment::CurrentIndex) {
        return Err("`[index]` means nothing in Conductor".into());
    }
    let mut out = root;
    for s in rest {
        match s {
            Segment::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            Segment::Index(i) => {
                let _ = std::fmt::Write::write_fmt(&mut out, format_args!("[{i}]"));
            }
            Segment::Each => out.push_str("[*]"),
            Segment::CurrentIndex => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs() -> BTreeMap<String, Ref> {
        BTreeMap::from([
            ("get_rec".into(), Ref::Step("get_recording".into())),
            ("fork_pad".into(), Ref::FanOut("pad_track".into())),
            ("join_pad".into(), Ref::FanOut("pad_track".into())),
            ("fork_gen".into(), Ref::StaticFork),
            (
                "join_gen".into(),
                Ref::StaticJoin(BTreeMap::from([("title".into(), "generate_title".into())])),
            ),
            ("ping".into(), Ref::Gone("an HTTP task".into())),
        ])
    }

    fn ok(s: &str) -> String {
        map_string(s, &refs()).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    fn why(s: &str) -> String {
        let e = map_string(s, &refs()).unwrap_err();
        format!("{}: {}", e.expr, e.reason)
    }

    #[test]
    fn import_expressions_that_map() {
        assert_eq!(
            ok("${workflow.input.recording_id}"),
            "${input.recording_id}"
        );
        assert_eq!(ok("${workflow.input}"), "${input}");
        assert_eq!(
            ok("${workflow.input.tracks[0].key}"),
            "${input.tracks[0].key}"
        );
        assert_eq!(
            ok("${get_rec.output.mtg_session_id}"),
            "${get_recording.mtg_session_id}"
        );
        assert_eq!(ok("${get_rec.output}"), "${get_recording}");
        assert_eq!(
            ok("${get_rec.output.tracks[*].s3_key}"),
            "${get_recording.tracks[*].s3_key}"
        );
        assert_eq!(
            ok("${join_gen.output.title.title}"),
            "${generate_title.title}"
        );
        assert_eq!(ok("${workflow.workflowId}"), "${workflow.id}");
        assert_eq!(
            ok("pad-${workflow.input.id}-${get_rec.output.n}.webm"),
            "pad-${input.id}-${get_recording.n}.webm"
        );
        assert_eq!(ok("no expression"), "no expression");
        assert_eq!(
            map_value(
                &json!({"a": ["${workflow.input.x}", 3], "b": true}),
                &refs()
            )
            .unwrap(),
            json!({"a": ["${input.x}", 3], "b": true})
        );
    }

    #[test]
    fn import_expressions_that_do_not_map_say_why() {
        let deep = why("${join_pad.output..padded_url}");
        assert!(
            deep.starts_with("${join_pad.output..padded_url}: a JSONPath"),
            "{deep}"
        );
        assert!(deep.contains("`${pad_track[*].field}`"), "{deep}");
        assert!(why("${$.x}").contains("JSONPath"));
        assert!(why("${get_rec.output.list[?(@.a)]}").contains("JSONPath"));
        assert!(why("${get_rec.input.recording_id}").contains("reads task get_rec's input"));
        assert!(why("${later.output.x}").contains("`later` names no task before this one"));
        assert!(why("${workflow.correlationId}").contains("has no counterpart"));
        assert!(why("${ping.output.x}").contains("not imported (an HTTP task)"));
        assert!(why("${fork_gen.output}").contains("FORK"));
        assert!(why("${join_pad.output}").contains("dynamic fork"));
        assert!(why("${join_gen.output.other}").contains("joined: title"));
        assert!(why("${get_rec.output['a b']}").contains("not a path"));
        assert!(why("x ${unclosed").contains("without `}`"));
        let e = map_value(&json!({"k": ["${ok}", "${workflow.input.a}"]}), &refs()).unwrap_err();
        assert_eq!(e.expr, "${ok}");
    }
}
