//! The walk over a Conductor task list that builds the pipeline document: steps and their
//! `needs` from the order of tasks, forks and joins, conditions from switches, options from
//! task definitions, inputs from `inputParameters` (or by name), and a comment plus a
//! [`Finding`] for everything that does not map.
//!
//! The task kinds that need more than a step have a file each: `forks` (FORK_JOIN,
//! FORK_JOIN_DYNAMIC, JOIN), `switch` (SWITCH, DECISION) and `sub_workflow` (SUB_WORKFLOW, and
//! the types that do not map).

mod forks;
mod sub_workflow;
mod switch;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use workflow::catalog::ActivityEntry;

use super::expr::{self, Ref};
use super::model::{Definitions, TaskDef, WorkflowDef, WorkflowTask};
use super::wiring::{self, Output, Upstream};
use super::{Finding, FindingKind, ImportError, Imported, Target, options};
use crate::import::yaml::{Doc, GraphDoc, InputDoc, Item, StepDoc, WithDoc};

/// The whole import.
pub(super) fn translate(defs: &Definitions, target: &Target<'_>) -> Result<Imported, ImportError> {
    let w = &defs.workflow;
    let named: BTreeSet<String> = w.tasks.iter().flat_map(WorkflowTask::task_names).collect();
    let unused: Vec<String> = defs
        .task_defs
        .keys()
        .filter(|n| !named.contains(*n))
        .cloned()
        .collect();
    let mut t = Translator {
        target,
        defs: &defs.task_defs,
        unused: unused.clone(),
        used: BTreeSet::new(),
        findings: Vec::new(),
        children: Vec::new(),
        wired_by_name: 0,
    };
    let mut doc = Doc {
        version: w.version.filter(|v| *v > 0).unwrap_or(1),
        description: w.description.clone().filter(|d| !d.is_empty()),
        ..Doc::default()
    };
    doc.name = ident(&w.name);
    doc.header = vec![
        format!(
            "Imported from the Conductor workflow `{}` v{} by `reflow import conductor` \
             (docs/conductor-import.md).",
            w.name, doc.version
        ),
        "A comment `unmapped: …` names what did not translate; a `with:` marked `by name` was \
         wired from the activity's input contract because the task had no inputParameters. \
         `reflow validate` checks the rest against the worker's registry."
            .into(),
    ];
    if doc.name != w.name {
        doc.name_comments.push(format!(
            "the workflow's name {:?}, as an identifier",
            w.name
        ));
    }
    if !target.catalog.has_workflow_type(&doc.name) {
        let known: Vec<&str> = target.catalog.workflow_type_names().collect();
        let text = format!(
            "no workflow type {} is registered by this worker (registered: {}): register one, \
             or rename the pipeline to a registered type whose runs it may take",
            doc.name,
            known.join(", ")
        );
        doc.name_comments.push(format!("unmapped: {text}"));
        t.finding(FindingKind::Unmapped, "pipeline", text);
    }
    if let Some(s) = w.timeout_seconds.filter(|s| *s > 0) {
        let text = format!(
            "timeoutSeconds {s}: reflow runs have no workflow timeout (docs/contracts/pipeline.md \
             §6.2); each step has its own"
        );
        doc.name_comments.push(format!("unmapped: {text}"));
        t.finding(FindingKind::Unmapped, "pipeline", text);
    }
    if let Some(f) = w.failure_workflow.as_deref().filter(|f| !f.is_empty()) {
        let text =
            format!("failureWorkflow {f}: reflow's `on_failure` runs one activity, not a workflow");
        doc.name_comments.push(format!("unmapped: {text}"));
        t.finding(FindingKind::Unmapped, "pipeline", text);
    }

    doc.main = t.graph(None, w)?;
    doc.children = std::mem::take(&mut t.children);

    for name in &unused {
        let text = if target.catalog.get_activity(name).is_some() {
            format!(
                "no task of the workflow runs it (activity {name} is registered: a dynamic \
                 fork's member?); its timeouts and retries are not imported"
            )
        } else {
            format!("no task of the workflow runs it, and no activity {name} is registered")
        };
        doc.footer
            .push(format!("unmapped: task definition {name}: {text}"));
        t.finding(
            FindingKind::Unmapped,
            &format!("task definition {name}"),
            text,
        );
    }
    let default_delay: Vec<&str> = t
        .used
        .iter()
        .filter(|n| defs.task_defs[*n].retry_delay_seconds.is_none())
        .map(String::as_str)
        .collect();
    if !default_delay.is_empty() {
        let text = format!(
            "{} task definitions give no retryDelaySeconds: their steps retry after reflow's \
             first delay, 5 s (docs/contracts/pipeline.md §6.2); Conductor's default is 60 s",
            default_delay.len()
        );
        doc.header.push(format!("Retries: {text}."));
        t.finding(FindingKind::Note, "pipeline", text);
    }
    if t.wired_by_name > 0 {
        let text = format!(
            "{} steps had no inputParameters: their `with:` is wired by name (marked `by name`); \
             check each",
            t.wired_by_name
        );
        t.finding(FindingKind::Note, "pipeline", text);
    }
    Ok(Imported {
        name: doc.name.clone(),
        yaml: doc.render(),
        findings: t.findings,
    })
}

struct Translator<'a> {
    target: &'a Target<'a>,
    defs: &'a BTreeMap<String, TaskDef>,
    /// Task definitions no task names (candidates for dynamic forks' members).
    unused: Vec<String>,
    /// Task definitions applied to a step.
    used: BTreeSet<String>,
    findings: Vec<Finding>,
    children: Vec<(String, Vec<String>, GraphDoc)>,
    wired_by_name: usize,
}

/// One pipeline (main or child) being built.
struct Graph {
    /// `None` for the main pipeline, else the child's name.
    child: Option<String>,
    doc: GraphDoc,
    refs: BTreeMap<String, Ref>,
    ids: BTreeSet<String>,
    /// Every step that runs (not commented out): needs, output, position.
    steps: BTreeMap<String, (Vec<String>, Output, usize)>,
    declared: BTreeSet<String>,
    /// Inputs may be inferred (the definition lists none).
    may_declare: bool,
}

impl Graph {
    fn at(&self, id: &str) -> String {
        match &self.child {
            None => format!("step {id}"),
            Some(c) => format!("child {c} step {id}"),
        }
    }

    fn declare(&mut self, name: &str, kind: &str, required: bool, comment: Option<String>) {
        if self.declared.insert(name.to_owned()) {
            self.doc.inputs.push(InputDoc {
                name: name.to_owned(),
                kind: kind.to_owned(),
                required,
                default: None,
                comment,
            });
        }
    }

    /// The steps upstream of `needs`, nearest first (ties: the later step first).
    fn upstream(&self, needs: &[String]) -> Vec<Upstream<'_>> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let mut level: Vec<&str> = needs
            .iter()
            .filter_map(|n| self.steps.get_key_value(n).map(|(k, _)| k.as_str()))
            .collect();
        while !level.is_empty() {
            level.sort_by_key(|id| std::cmp::Reverse(self.steps.get(*id).map_or(0, |s| s.2)));
            let mut next = Vec::new();
            for id in level {
                if let Some((id, (needs, output, _))) = self.steps.get_key_value(id)
                    && seen.insert(id.as_str())
                {
                    out.push(Upstream { id, output });
                    next.extend(
                        needs
                            .iter()
                            .filter_map(|n| self.steps.get_key_value(n).map(|(k, _)| k.as_str())),
                    );
                }
            }
            level = next;
        }
        out
    }
}

/// Where a walk's steps go: run with this condition, or shown commented out.
#[derive(Clone, Copy)]
struct Branch<'w> {
    when: Option<&'w str>,
    off: bool,
}

impl<'a> Translator<'a> {
    fn finding(&mut self, kind: FindingKind, at: &str, text: String) {
        self.findings.push(Finding {
            kind,
            at: at.to_owned(),
            text,
        });
    }

    /// A comment on `s` and, unless the step is commented out (its branch is named once), a
    /// finding.
    fn unmapped(&mut self, g: &Graph, s: &mut StepDoc, text: String) {
        s.comments.push(format!("unmapped: {text}"));
        if !s.commented_out {
            let at = g.at(&s.id);
            self.finding(FindingKind::Unmapped, &at, text);
        }
    }

    /// A pipeline from a workflow definition.
    fn graph(&mut self, child: Option<String>, w: &WorkflowDef) -> Result<GraphDoc, ImportError> {
        let mut g = Graph {
            child,
            doc: GraphDoc::default(),
            refs: BTreeMap::new(),
            ids: BTreeSet::new(),
            steps: BTreeMap::new(),
            declared: BTreeSet::new(),
            may_declare: w.input_parameters.is_none(),
        };
        for name in w.input_parameters.iter().flatten() {
            g.declare(name, "any", false, None);
        }
        for (name, default) in &w.input_template {
            g.declare(name, "any", false, None);
            if let Some(i) = g.doc.inputs.iter_mut().find(|i| &i.name == name) {
                i.default = Some(default.clone()).filter(|d| !d.is_null());
            }
        }
        self.walk(
            &mut g,
            &w.tasks,
            Vec::new(),
            Branch {
                when: None,
                off: false,
            },
        )?;
        if let Some(out) = &w.output_parameters {
            let mut entries = Vec::new();
            for (k, v) in out {
                match expr::map_value(v, &g.refs) {
                    Ok(v) => entries.push((k.clone(), v)),
                    Err(u) => {
                        let text = format!("output {k}: {} ({})", u.expr, u.reason);
                        g.doc.output_comments.push(format!("unmapped: {text}"));
                        let at = g
                            .child
                            .as_ref()
                            .map_or("pipeline".into(), |c| format!("child {c}"));
                        self.finding(FindingKind::Unmapped, &at, text);
                    }
                }
            }
            g.doc.output = Some(entries);
        }
        // Inputs read by expressions but not listed in inputParameters.
        let mut read = Vec::new();
        for item in &g.doc.items {
            if let Item::Step(s) = item
                && !s.commented_out
            {
                let with = match &s.with {
                    Some(WithDoc::Expr(e)) => vec![Value::String(e.clone())],
                    Some(WithDoc::Map { entries, .. }) => {
                        entries.iter().map(|e| e.1.clone()).collect()
                    }
                    None => Vec::new(),
                };
                let texts = s
                    .for_each
                    .iter()
                    .chain(&s.when)
                    .map(|t| Value::String(t.clone()));
                read.extend(with.into_iter().chain(texts));
            }
        }
        read.extend(g.doc.output.iter().flatten().map(|e| e.1.clone()));
        for v in read {
            for p in workflow::expr::references(&v).unwrap_or_default() {
                if let (true, Some(workflow::expr::Segment::Field(name))) =
                    (p.root == "input", p.segments.first())
                {
                    let name = name.clone();
                    g.declare(
                        &name,
                        "any",
                        false,
                        Some("read by the tasks; not in inputParameters".into()),
                    );
                }
            }
        }
        Ok(g.doc)
    }

    /// The tasks of one list, in order, after `frontier`; the new frontier.
    fn walk(
        &mut self,
        g: &mut Graph,
        tasks: &[WorkflowTask],
        mut frontier: Vec<String>,
        b: Branch<'_>,
    ) -> Result<Vec<String>, ImportError> {
        let mut i = 0;
        while i < tasks.len() {
            let t = &tasks[i];
            let join = tasks.get(i + 1).filter(|n| n.kind() == "JOIN");
            match t.kind() {
                "SIMPLE" => frontier = vec![self.simple(g, t, frontier, b)?],
                "FORK_JOIN" | "FORK" => {
                    frontier = self.fork(g, t, join, frontier, b)?;
                    i += usize::from(join.is_some());
                }
                "FORK_JOIN_DYNAMIC" => {
                    frontier = vec![self.dynamic(g, t, join, frontier, b)?];
                    i += usize::from(join.is_some());
                }
                "JOIN" => frontier = self.join(g, t, frontier)?,
                "SWITCH" | "DECISION" => frontier = self.switch(g, t, frontier, b)?,
                "SUB_WORKFLOW" => frontier = vec![self.sub_workflow(g, t, frontier, b)?],
                other => self.unsupported(g, t, other, b)?,
            }
            i += 1;
        }
        Ok(frontier)
    }

    fn register(&self, g: &mut Graph, reference: &str, r: Ref) -> Result<(), ImportError> {
        if g.refs.insert(reference.to_owned(), r).is_some() {
            return Err(ImportError::Task {
                task: reference.to_owned(),
                cause: "its taskReferenceName is used twice".into(),
            });
        }
        Ok(())
    }

    /// A step with a unique id derived from `wanted`.
    fn new_step(&self, g: &mut Graph, wanted: &str, needs: Vec<String>, b: Branch<'_>) -> StepDoc {
        let base = ident(wanted);
        let mut id = base.clone();
        let mut n = 2;
        while g.ids.contains(&id) {
            id = format!("{base}_{n}");
            n += 1;
        }
        g.ids.insert(id.clone());
        let mut s = StepDoc {
            id,
            needs,
            when: b.when.map(str::to_owned),
            commented_out: b.off,
            ..StepDoc::default()
        };
        if s.id != wanted {
            s.comments
                .push(format!("the Conductor reference {wanted:?} as a step id"));
        }
        s
    }

    /// Add `s` to the graph (and `reference` as naming it).
    fn push(
        &self,
        g: &mut Graph,
        reference: &str,
        s: StepDoc,
        output: Output,
    ) -> Result<String, ImportError> {
        let id = s.id.clone();
        if s.commented_out {
            self.register(
                g,
                reference,
                Ref::Gone("its branch is commented out".into()),
            )?;
        } else {
            self.register(g, reference, Ref::Step(id.clone()))?;
            let order = g.steps.len();
            g.steps.insert(id.clone(), (s.needs.clone(), output, order));
        }
        g.doc.items.push(Item::Step(Box::new(s)));
        Ok(id)
    }

    /// The activity's catalog entry, its events, and the options of its task definition.
    fn activity(
        &mut self,
        g: &Graph,
        s: &mut StepDoc,
        name: &str,
    ) -> Result<Option<&'a ActivityEntry>, ImportError> {
        let catalog = self.target.catalog;
        let entry = catalog.get_activity(name);
        s.activity = Some(name.to_owned());
        match entry {
            Some(e) => s.emits = e.emits.clone(),
            None => self.unmapped(
                g,
                s,
                format!(
                    "no activity {name} is registered: the step is written as it is, and \
                     `reflow validate` names it"
                ),
            ),
        }
        match self.defs.get(name) {
            Some(def) => {
                self.used.insert(name.to_owned());
                for text in options::apply(s, def, self.target.heartbeats(name))? {
                    self.unmapped(g, s, text);
                }
            }
            None => self.unmapped(
                g,
                s,
                format!(
                    "no task definition {name}: no timeouts or retry policy (`reflow validate` \
                     asks for a timeout)"
                ),
            ),
        }
        Ok(entry)
    }

    /// The step's `with:` from the task's `inputParameters`, or by name without them.
    fn input(
        &mut self,
        g: &mut Graph,
        s: &mut StepDoc,
        t: &WorkflowTask,
        entry: Option<&ActivityEntry>,
    ) {
        if let Some(params) = &t.input_parameters {
            let mut entries = Vec::new();
            let mut missing = Vec::new();
            for (k, v) in params {
                match expr::map_value(v, &g.refs) {
                    Ok(v) => entries.push((k.clone(), v)),
                    Err(u) => {
                        let text = format!("input {k}: {} ({})", u.expr, u.reason);
                        missing.push(format!("unmapped: {text}"));
                        if !s.commented_out {
                            let at = g.at(&s.id);
                            self.finding(FindingKind::Unmapped, &at, text);
                        }
                    }
                }
            }
            if !entries.is_empty() || !missing.is_empty() {
                s.with = Some(WithDoc::Map {
                    comment: None,
                    entries,
                    missing,
                });
            }
            return;
        }
        let Some(entry) = entry else { return };
        let wired = {
            let upstream = g.upstream(&s.needs);
            wiring::by_name(entry, &g.declared, &upstream, g.may_declare)
        };
        let Some(wired) = wired else { return };
        let activity = s.activity.clone().unwrap_or_default();
        for (name, kind) in &wired.declare {
            g.declare(
                name,
                kind,
                true,
                Some(format!("by name: {activity} needs it")),
            );
        }
        let mut missing = Vec::new();
        for (field, why) in &wired.missing {
            let text = format!("input {field} (required by {activity}): {why}");
            missing.push(format!("unmapped: {text}"));
            if !s.commented_out {
                let at = g.at(&s.id);
                self.finding(FindingKind::Unmapped, &at, text);
            }
        }
        if !s.commented_out {
            self.wired_by_name += 1;
        }
        s.with = Some(WithDoc::Map {
            comment: Some("by name: the task has no inputParameters".into()),
            entries: wired.entries,
            missing,
        });
    }

    fn simple(
        &mut self,
        g: &mut Graph,
        t: &WorkflowTask,
        needs: Vec<String>,
        b: Branch<'_>,
    ) -> Result<String, ImportError> {
        let r = t.reference();
        if t.name.is_empty() {
            return Err(ImportError::Task {
                task: if r.is_empty() {
                    "(unnamed)".into()
                } else {
                    r.to_owned()
                },
                cause: "a SIMPLE task needs a name (its task type)".into(),
            });
        }
        let mut s = self.new_step(g, r, needs, b);
        s.optional = t.optional;
        let entry = self.activity(g, &mut s, &t.name)?;
        self.input(g, &mut s, t, entry);
        let output = entry
            .and_then(ActivityEntry::output_fields)
            .map_or(Output::Unknown, Output::Known);
        self.push(g, r, s, output)
    }
}

/// `s` as a pipeline identifier: letters, digits, `_` and `-`, starting with a letter, not a
/// name reserved for expressions.
fn ident(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert_str(0, "t_");
    }
    if matches!(out.as_str(), "input" | "item" | "index" | "workflow") {
        out.push_str("_task");
    }
    out
}
