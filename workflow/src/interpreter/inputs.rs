//! What a graph may start with and when a step may start: the input checked against the
//! declared inputs (defaults applied), and a step's readiness (every `needs` completed,
//! skipped or failed-optional).

use serde_json::Value;

use super::State;
use crate::expr;
use crate::pipeline::{Graph, Step};

pub(super) fn needs_met(graph: &Graph, states: &[State], step: &Step) -> bool {
    step.needs.iter().all(|n| {
        graph
            .steps
            .iter()
            .position(|s| &s.id == n)
            .is_some_and(|j| {
                matches!(
                    states[j],
                    State::Done(_) | State::Skipped | State::FailedOptional
                )
            })
    })
}

/// Check the input against the declared inputs and apply defaults.
pub(super) fn resolve_inputs(graph: &Graph, input: Value) -> Result<Value, String> {
    let mut map = match input {
        Value::Object(m) => m,
        Value::Null => serde_json::Map::new(),
        other => {
            return Err(format!(
                "expected an object of named inputs, got a {}",
                expr::kind(&other)
            ));
        }
    };
    let mut problems = Vec::new();
    for (name, spec) in &graph.inputs {
        match map.get(name) {
            None | Some(Value::Null) => {
                if let Some(d) = &spec.default {
                    map.insert(name.clone(), d.clone());
                } else if spec.required {
                    problems.push(format!("{name:?} is required"));
                } else {
                    // Declared but optional: present as null, so `${input.x}` reads null.
                    map.insert(name.clone(), Value::Null);
                }
            }
            Some(v) if !spec.kind.accepts(v) => problems.push(format!(
                "{name:?} must be {:?}, got a {}",
                spec.kind,
                expr::kind(v)
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(Value::Object(map))
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn graph() -> Graph {
        serde_json::from_value(json!({
            "name": "G", "task_queue": "q", "output": null,
            "inputs": {
                "id": {"kind": "string", "required": true, "default": null, "description": null},
                "lang": {"kind": "string", "required": false, "default": "en", "description": null},
                "room": {"kind": "string", "required": false, "default": null, "description": null}
            },
            "steps": []
        }))
        .unwrap()
    }

    #[test]
    fn inputs_get_defaults_and_wrong_ones_are_named() {
        let g = graph();
        let v = resolve_inputs(&g, json!({"id": "r1"})).unwrap();
        assert_eq!(v, json!({"id": "r1", "lang": "en", "room": null}));
        let e = resolve_inputs(&g, json!({"lang": 3})).unwrap_err();
        assert!(
            e.contains("\"id\" is required") && e.contains("\"lang\" must be"),
            "{e}"
        );
        assert!(
            resolve_inputs(&g, json!([1]))
                .unwrap_err()
                .contains("expected an object")
        );
    }

    #[test]
    fn a_step_is_ready_when_each_need_is_done_skipped_or_failed_optional() {
        let mut g = graph();
        let step = |id: &str, needs: &[&str]| -> Step {
            serde_json::from_value(json!({
                "id": id, "run": {"activity": "a"}, "needs": needs, "with": null,
                "for_each": null, "concurrency": null, "child_id": null, "activity_id": null,
                "when": null, "optional": false, "emits": [],
                "options": {"task_queue": "q", "schedule_to_close_ms": null,
                            "start_to_close_ms": 1000, "heartbeat_ms": null,
                            "retry": {"initial_interval_ms": 1000, "backoff_coefficient": 2.0,
                                      "maximum_interval_ms": null, "maximum_attempts": 1,
                                      "non_retryable_error_types": []}}
            }))
            .unwrap()
        };
        g.steps = vec![step("a", &[]), step("b", &[]), step("c", &["a", "b"])];
        let c = g.steps[2].clone();
        let ready = |a: State, b: State| needs_met(&g, &[a, b, State::Pending], &c);
        assert!(ready(State::Done(Value::Null), State::Skipped));
        assert!(ready(State::FailedOptional, State::Done(Value::Null)));
        assert!(!ready(State::Running, State::Done(Value::Null)));
        assert!(!ready(State::Done(Value::Null), State::Pending));
    }
}
