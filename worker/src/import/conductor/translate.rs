//! The walk over a Conductor task list that builds the pipeline document: steps and their
//! `needs` from the order of tasks, forks and joins, conditions from switches, options from
//! task definitions, inputs from `inputParameters` (or by name), and a comment plus a
//! [`Finding`] for everything that does not map.

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

    /// FORK_JOIN (and the JOIN after it): the branches in parallel; the joined steps.
    fn fork(
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
    fn dynamic(
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
    fn join(
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

    /// SWITCH / DECISION: a case `"true"` on a value becomes `when:`; other cases are shown
    /// commented out.
    fn switch(
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

    /// SUB_WORKFLOW: a child step, and the child pipeline when its definition is inline.
    fn sub_workflow(
        &mut self,
        g: &mut Graph,
        t: &WorkflowTask,
        needs: Vec<String>,
        b: Branch<'_>,
    ) -> Result<String, ImportError> {
        let r = t.reference();
        let p = t
            .sub_workflow_param
            .as_ref()
            .ok_or_else(|| ImportError::Task {
                task: r.to_owned(),
                cause: "a SUB_WORKFLOW without subWorkflowParam".into(),
            })?;
        let child = ident(&p.name);
        let mut s = self.new_step(g, r, needs, b);
        s.child = Some(child.clone());
        s.optional = t.optional;
        if !self.target.catalog.has_workflow_type(&child) {
            self.unmapped(
                g,
                &mut s,
                format!("no workflow type {child} is registered by this worker"),
            );
        }
        self.input(g, &mut s, t, None);
        let mut output = Output::Unknown;
        let known = self.children.iter().position(|c| c.0 == child);
        match (&p.workflow_definition, known) {
            (_, Some(i)) => {
                if let Some(o) = &self.children[i].2.output {
                    output = Output::Known(o.iter().map(|e| e.0.clone()).collect());
                }
            }
            (Some(def @ Value::Object(_)), None) => {
                let def: WorkflowDef =
                    serde_json::from_value(def.clone()).map_err(|e| ImportError::Task {
                        task: r.to_owned(),
                        cause: format!("its inline workflowDefinition: {e}"),
                    })?;
                // Reserve the name first: a sub-workflow naming itself stops here.
                self.children
                    .push((child.clone(), Vec::new(), GraphDoc::default()));
                let mut doc = self.graph(Some(child.clone()), &def)?;
                doc.description = def.description.clone().filter(|d| !d.is_empty());
                if let Some(o) = &doc.output {
                    output = Output::Known(o.iter().map(|e| e.0.clone()).collect());
                }
                if let Some(c) = self.children.iter_mut().find(|c| c.0 == child) {
                    c.1 = vec![format!("From the inline definition of {r}.")];
                    c.2 = doc;
                }
            }
            _ => {
                let text = format!(
                    "the definition of {} v{} is not in this file: import it (`reflow import \
                     conductor`) and move its inputs, steps and output here",
                    p.name,
                    p.version.unwrap_or(1)
                );
                self.finding(
                    FindingKind::Unmapped,
                    &format!("child {child}"),
                    text.clone(),
                );
                self.children.push((
                    child.clone(),
                    vec![format!("unmapped: {text}")],
                    GraphDoc::default(),
                ));
            }
        }
        self.push(g, r, s, output)
    }

    /// A task type reflow has no counterpart for: a comment where it was.
    fn unsupported(
        &mut self,
        g: &mut Graph,
        t: &WorkflowTask,
        kind: &str,
        b: Branch<'_>,
    ) -> Result<(), ImportError> {
        let r = t.reference();
        let inner: Vec<String> = t
            .loop_over
            .iter()
            .map(|l| l.reference().to_owned())
            .collect();
        let text = format!(
            "task {r} ({kind}) is not imported: reflow runs registered activities and child \
             pipelines only{}",
            if inner.is_empty() {
                String::new()
            } else {
                format!(" (its loop runs {})", inner.join(", "))
            }
        );
        g.doc
            .items
            .push(Item::Comment(vec![format!("unmapped: {text}")]));
        if !b.off {
            let at = g.at(r);
            self.finding(FindingKind::Unmapped, &at, text);
        }
        self.register(g, r, Ref::Gone(format!("a {kind} task")))
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
