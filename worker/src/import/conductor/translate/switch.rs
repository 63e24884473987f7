//! SWITCH and DECISION tasks: a case `"true"` on a value becomes the `when:` of its branch's
//! steps; the other cases are written commented out, and named.

use serde_json::Value;

use super::{Branch, Graph, Translator};
use crate::import::conductor::expr::{self, Ref};
use crate::import::conductor::model::WorkflowTask;
use crate::import::conductor::{FindingKind, ImportError};
use crate::import::yaml::Item;

impl Translator<'_> {
    /// SWITCH / DECISION: a case `"true"` on a value becomes `when:`; other cases are shown
    /// commented out.
    pub(super) fn switch(
        &mut self,
        g: &mut Graph,
        t: &WorkflowTask,
        frontier: Vec<String>,
        b: Branch<'_>,
    ) -> Result<Vec<String>, ImportError> {
        let r = t.reference().to_owned();
        let kind = t.kind().to_owned();
        let param = match (kind.as_str(), t.evaluator_type.as_deref()) {
            ("DECISION", _) => t.case_value_param.as_deref().ok_or_else(|| {
                format!(
                    "its caseExpression {:?} is JavaScript: reflow's `when:` reads a value, it \
                     runs no script",
                    t.case_expression.as_deref().unwrap_or_default()
                )
            }),
            (_, None | Some("value-param")) => t
                .expression
                .as_deref()
                .ok_or_else(|| "no `expression` names the input parameter it switches on".into()),
            (_, Some(other)) => Err(format!(
                "a {other} expression: reflow's `when:` reads a value, it runs no script"
            )),
        };
        let value = param.and_then(|p| match t.input(p) {
            Some(Value::String(s)) => match expr::map_string(s, &g.refs) {
                Ok(m) if workflow::expr::parse_single(&m).is_ok() => Ok(m),
                Ok(_) => Err(format!("its value {s:?} is not one expression")),
                Err(u) => Err(format!("its value {} does not map ({})", u.expr, u.reason)),
            },
            Some(other) => Err(format!("its value {other} is a constant")),
            None => Err(format!("input parameter {p} is not given")),
        });
        self.register(
            g,
            &r,
            Ref::Gone(format!("a {kind} has no output in reflow")),
        )?;
        let mut ends = Vec::new();
        let cases = t
            .decision_cases
            .iter()
            .map(|(c, tasks)| (Some(c.as_str()), tasks))
            .chain((!t.default_case.is_empty()).then_some((None, &t.default_case)));
        for (case, tasks) in cases {
            let label =
                case.map_or_else(|| "the default case".to_owned(), |c| format!("case {c:?}"));
            let why = match (&value, case) {
                _ if b.off => None,
                (Ok(_), Some("true")) if b.when.is_some() => Some(
                    "a condition inside a condition: reflow's `when:` holds one expression"
                        .to_owned(),
                ),
                (Ok(_), Some("true")) => None,
                (Ok(v), None) => Some(format!(
                    "it runs when no case matches, and reflow's `when:` cannot negate `{v}`"
                )),
                (Ok(v), Some(_)) => Some(format!(
                    "reflow's `when:` tests whether `{v}` is truthy, it compares with nothing"
                )),
                (Err(e), _) => Some(e.clone()),
            };
            match (why, &value) {
                (None, Ok(v)) if !b.off => {
                    let first = g.doc.items.len();
                    for e in self.walk(
                        g,
                        tasks,
                        frontier.clone(),
                        Branch {
                            when: Some(v),
                            off: false,
                        },
                    )? {
                        if !ends.contains(&e) {
                            ends.push(e);
                        }
                    }
                    let note = format!(
                        "{r} ({kind}), {label}: `when: {v}` (truthy; exact for a boolean value)."
                    );
                    if let Some(Item::Step(s)) = g.doc.items.get_mut(first) {
                        s.comments.insert(0, note);
                    }
                }
                (why, _) => {
                    if let Some(why) = why {
                        let text = format!("{label}: {why}; its steps are commented out");
                        g.doc.items.push(Item::Comment(vec![format!(
                            "unmapped: {r} ({kind}), {text}:"
                        )]));
                        let at = g.at(&r);
                        self.finding(FindingKind::Unmapped, &at, text);
                    }
                    self.walk(
                        g,
                        tasks,
                        frontier.clone(),
                        Branch {
                            when: b.when,
                            off: true,
                        },
                    )?;
                }
            }
        }
        Ok(if ends.is_empty() { frontier } else { ends })
    }
}
