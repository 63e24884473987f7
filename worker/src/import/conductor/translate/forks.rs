//! Forks: FORK_JOIN's parallel branches, FORK_JOIN_DYNAMIC as a fan-out over a list, and the
//! JOIN after either, which becomes the `needs` of the steps that follow.

use std::collections::BTreeMap;

use serde_json::Value;
use workflow::catalog::ActivityEntry;

use super::{Branch, Graph, Translator, ident};
use crate::import::conductor::ImportError;
use crate::import::conductor::expr::{self, Ref};
use crate::import::conductor::model::WorkflowTask;
use crate::import::conductor::wiring::Output;
use crate::import::yaml::{Item, WithDoc};

impl Translator<'_> {
    /// FORK_JOIN (and the JOIN after it): the branches in parallel; the joined steps.
    pub(super) fn fork(
        &mut self,
        g: &mut Graph,
        t: &WorkflowTask,
        join: Option<&WorkflowTask>,
        frontier: Vec<String>,
        b: Branch<'_>,
    ) -> Result<Vec<String>, ImportError> {
        let r = t.reference();
        if t.fork_tasks.is_empty() {
            return Err(ImportError::Task {
                task: r.to_owned(),
                cause: "a FORK_JOIN without forkTasks".into(),
            });
        }
        self.register(g, r, Ref::StaticFork)?;
        let first = g.doc.items.len();
        let mut ends = Vec::new();
        for branch in &t.fork_tasks {
            for e in self.walk(g, branch, frontier.clone(), b)? {
                if !ends.contains(&e) {
                    ends.push(e);
                }
            }
        }
        let (joined, how) = match join {
            Some(j) => {
                let members: BTreeMap<String, String> = j
                    .join_on
                    .iter()
                    .filter_map(|m| match g.refs.get(m) {
                        Some(Ref::Step(id) | Ref::FanOut(id)) => Some((m.clone(), id.clone())),
                        _ => None,
                    })
                    .collect();
                let joined: Vec<String> = if members.is_empty() {
                    ends.clone()
                } else {
                    let mut v: Vec<String> = members.values().cloned().collect();
                    v.dedup();
                    v
                };
                self.register(g, j.reference(), Ref::StaticJoin(members))?;
                (joined, format!("{} (JOIN)", j.reference()))
            }
            None => (ends.clone(), "no JOIN follows it in the definition".into()),
        };
        let note = format!(
            "{r} (FORK_JOIN): {} branches run in parallel; {how}: the next step needs {}. The \
             Conductor view draws no FORK/JOIN rows for parallel steps.",
            t.fork_tasks.len(),
            if joined.is_empty() {
                "nothing".into()
            } else {
                joined.join(", ")
            }
        );
        match g.doc.items.get_mut(first) {
            Some(Item::Step(s)) => s.comments.insert(0, note),
            _ => g
                .doc
                .items
                .insert(first.min(g.doc.items.len()), Item::Comment(vec![note])),
        }
        Ok(if joined.is_empty() { frontier } else { joined })
    }

    /// FORK_JOIN_DYNAMIC (and its JOIN): one fan-out step.
    pub(super) fn dynamic(
        &mut self,
        g: &mut Graph,
        t: &WorkflowTask,
        join: Option<&WorkflowTask>,
        frontier: Vec<String>,
        b: Branch<'_>,
    ) -> Result<String, ImportError> {
        let r = t.reference();
        let member = match t.input("forkTaskName") {
            Some(Value::String(n)) if !n.contains("${") && !n.is_empty() => Some(n.clone()),
            _ => None,
        };
        let wanted = match &member {
            Some(m) if !g.ids.contains(&ident(m)) && !g.refs.contains_key(m) => m.clone(),
            _ => r.to_owned(),
        };
        let mut s = self.new_step(g, &wanted, frontier, b);
        s.comments.push(format!(
            "{r} (FORK_JOIN_DYNAMIC){}: a fan-out, one member per item of `for_each`.",
            join.map(|j| format!(" and {} (JOIN)", j.reference()))
                .unwrap_or_default()
        ));
        let output = match &member {
            Some(name) => {
                s.optional = t.optional;
                let entry = self.activity(g, &mut s, name)?;
                match t.input("forkTaskInputs") {
                    Some(Value::String(e)) => match expr::map_string(e, &g.refs) {
                        Ok(m) if workflow::expr::parse_single(&m).is_ok() => {
                            s.for_each = Some(m);
                            s.with = Some(WithDoc::Expr("${item}".into()));
                            s.comments.push(
                                "Each member's input is its item of forkTaskInputs, as in \
                                 Conductor."
                                    .into(),
                            );
                        }
                        Ok(_) => self.unmapped(
                            g,
                            &mut s,
                            format!("forkTaskInputs {e:?} is not one expression: give `for_each:`"),
                        ),
                        Err(u) => self.unmapped(
                            g,
                            &mut s,
                            format!("forkTaskInputs {} ({}): give `for_each:`", u.expr, u.reason),
                        ),
                    },
                    _ => self.unmapped(
                        g,
                        &mut s,
                        "forkTaskInputs is not one expression: give `for_each:` and `with:`".into(),
                    ),
                }
                let fork = r.to_owned();
                let join_ref =
                    join.map_or_else(|| format!("join_{}", s.id), |j| j.reference().to_owned());
                let snake = |x: &str| {
                    !x.is_empty()
                        && x.bytes()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
                };
                if s.for_each.is_some()
                    && s.id != fork
                    && s.id != join_ref
                    && fork != join_ref
                    && snake(&fork)
                    && snake(&join_ref)
                    && !g.ids.contains(&fork)
                    && !g.ids.contains(&join_ref)
                {
                    s.conductor = Some((fork, join_ref));
                }
                entry
                    .and_then(ActivityEntry::output_fields)
                    .map_or(Output::Unknown, Output::Members)
            }
            None => {
                let param = t
                    .dynamic_fork_tasks_param
                    .as_deref()
                    .unwrap_or("dynamicTasks");
                let from = t
                    .input(param)
                    .map(|v| format!(" = {v}"))
                    .unwrap_or_else(|| ", which no inputParameter gives".into());
                let candidates = if self.unused.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; task definitions no task runs: {}",
                        self.unused.join(", ")
                    )
                };
                self.unmapped(
                    g,
                    &mut s,
                    format!(
                        "its member task and inputs are chosen at run time (dynamicForkTasksParam \
                         {param}{from}): give this step `activity:`, `for_each:`, `with:` and the \
                         member's options{candidates}"
                    ),
                );
                Output::Unknown
            }
        };
        let commented = s.commented_out;
        let id = self.push(g, r, s, output)?;
        if !commented {
            g.refs.insert(r.to_owned(), Ref::FanOut(id.clone()));
        }
        if let Some(j) = join {
            let to = if commented {
                Ref::Gone("its branch is commented out".into())
            } else {
                Ref::FanOut(id.clone())
            };
            self.register(g, j.reference(), to)?;
        }
        Ok(id)
    }

    /// A JOIN that follows no fork: the next step needs what it joins.
    pub(super) fn join(
        &mut self,
        g: &mut Graph,
        t: &WorkflowTask,
        frontier: Vec<String>,
    ) -> Result<Vec<String>, ImportError> {
        let members: BTreeMap<String, String> = t
            .join_on
            .iter()
            .filter_map(|m| match g.refs.get(m) {
                Some(Ref::Step(id) | Ref::FanOut(id)) => Some((m.clone(), id.clone())),
                _ => None,
            })
            .collect();
        let joined: Vec<String> = members.values().cloned().collect();
        self.register(g, t.reference(), Ref::StaticJoin(members))?;
        Ok(if joined.is_empty() { frontier } else { joined })
    }
}
