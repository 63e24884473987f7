//! `RawPipeline` → `Pipeline`: every check `reflow validate` performs, collecting all errors
//! rather than stopping at the first. Pure: the catalog is passed in.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use super::error::{PipelineError, Problem, ValidationReport};
use super::raw::{RawChild, RawDuration, RawInput, RawOptions, RawPipeline, RawRetry, RawStep};
use super::{
    DEFAULT_TASK_QUEUE, Graph, InputKind, InputSpec, Pipeline, Retry, Run, Step, StepOptions,
};
use crate::catalog::{ActivityEntry, Catalog};
use crate::expr::{self, Path};

/// Parse YAML text and validate it; `file` names it in messages.
pub fn parse_and_validate(
    file: &str,
    text: &str,
    catalog: &Catalog,
) -> Result<Pipeline, ValidationReport> {
    let raw: RawPipeline = serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        ValidationReport {
            file: file.to_owned(),
            errors: vec![PipelineError::Syntax {
                line,
                column,
                message: e.to_string(),
            }],
        }
    })?;
    validate(&raw, catalog).map_err(|errors| ValidationReport {
        file: file.to_owned(),
        errors,
    })
}

/// Validate a parsed pipeline against what a worker can run.
pub fn validate(raw: &RawPipeline, catalog: &Catalog) -> Result<Pipeline, Vec<PipelineError>> {
    let mut errs = Vec::new();
    let pipeline_err = |graph: Option<&str>, problem| PipelineError::InPipeline {
        graph: graph.map(str::to_owned),
        problem,
    };
    if !is_ident(&raw.name) {
        errs.push(pipeline_err(
            None,
            Problem::BadId {
                id: raw.name.clone(),
            },
        ));
    }
    if raw.version == 0 {
        errs.push(pipeline_err(
            None,
            Problem::Invalid("version must be 1 or more".into()),
        ));
    }
    if raw.children.contains_key(&raw.name) {
        errs.push(pipeline_err(
            None,
            Problem::Invalid(format!(
                "child pipeline {:?} has the main pipeline's name",
                raw.name
            )),
        ));
    }
    for name in std::iter::once(&raw.name).chain(raw.children.keys()) {
        if !catalog.has_workflow_type(name) {
            errs.push(pipeline_err(
                (name != &raw.name).then_some(name.as_str()),
                Problem::UnknownWorkflowType {
                    name: name.clone(),
                    known: list(catalog.workflow_type_names()),
                },
            ));
        }
    }

    let top_queue = raw
        .task_queue
        .clone()
        .unwrap_or_else(|| DEFAULT_TASK_QUEUE.to_owned());
    let child_names: Vec<&str> = raw.children.keys().map(String::as_str).collect();
    let ctx = Ctx {
        catalog,
        child_names: &child_names,
        children: &raw.children,
        extra_roots: &[],
    };

    let main = ctx.graph(
        None,
        &raw.name,
        &top_queue,
        &raw.inputs,
        &raw.defaults,
        None,
        &raw.steps,
        raw.output.as_ref(),
        &mut errs,
    );
    let mut children = BTreeMap::new();
    for (name, child) in &raw.children {
        let queue = child
            .task_queue
            .clone()
            .unwrap_or_else(|| top_queue.clone());
        let g = ctx.graph(
            Some(name),
            name,
            &queue,
            &child.inputs,
            &raw.defaults,
            Some(&child.defaults),
            &child.steps,
            child.output.as_ref(),
            &mut errs,
        );
        children.insert(name.clone(), g);
    }
    let on_failure = raw.on_failure.as_ref().and_then(|step| {
        let hook = "on_failure";
        if !step.needs.is_empty() || step.for_each.is_some() || step.child.is_some() {
            errs.push(pipeline_err(
                Some(hook),
                Problem::Invalid(
                    "on_failure is one activity: no `needs`, `for_each` or `child`".into(),
                ),
            ));
        }
        let failure_ctx = Ctx {
            extra_roots: &["failure"],
            ..ctx
        };
        let g = failure_ctx.graph(
            Some(hook),
            hook,
            &top_queue,
            &raw.inputs,
            &raw.defaults,
            None,
            std::slice::from_ref(step),
            None,
            &mut errs,
        );
        g.steps.into_iter().next()
    });
    if let Some(chain) = child_cycle(raw) {
        errs.push(pipeline_err(None, Problem::ChildCycle { chain }));
    }
    if let Some(p) = &raw.progress {
        for problem in check_progress(p, raw, catalog) {
            errs.push(pipeline_err(None, problem));
        }
    }
    for problem in check_search_attributes(raw) {
        errs.push(pipeline_err(None, problem));
    }

    if !errs.is_empty() {
        return Err(errs);
    }
    let mut pipeline = Pipeline {
        name: raw.name.clone(),
        version: raw.version,
        description: raw.description.clone(),
        hash: String::new(),
        main,
        children,
        progress: raw
            .progress
            .as_ref()
            .map(|p| crate::pipeline::ProgressSpec {
                transcript_id: p.transcript_id.clone(),
                total_steps: p.total_steps,
                steps: p.steps.clone(),
            }),
        on_failure,
        search_attributes: raw.search_attributes.clone(),
    };
    pipeline.hash = pipeline.compute_hash();
    Ok(pipeline)
}

/// `progress:` names activity types some step runs, indexes within `total_steps`, and a
/// transcript template that reads only inputs.
fn check_progress(
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

#[derive(Clone, Copy)]
struct Ctx<'a> {
    catalog: &'a Catalog,
    child_names: &'a [&'a str],
    children: &'a BTreeMap<String, RawChild>,
    /// Expression roots allowed besides inputs, steps and `workflow` (`failure` in
    /// `on_failure`).
    extra_roots: &'a [&'a str],
}

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    fn graph(
        &self,
        graph: Option<&str>,
        name: &str,
        queue: &str,
        inputs: &BTreeMap<String, RawInput>,
        defaults: &RawOptions,
        child_defaults: Option<&RawOptions>,
        steps: &[RawStep],
        output: Option<&Value>,
        errs: &mut Vec<PipelineError>,
    ) -> Graph {
        let in_step = |step: &str, problem| PipelineError::InStep {
            graph: graph.map(str::to_owned),
            step: step.to_owned(),
            problem,
        };
        let mut input_specs = BTreeMap::new();
        for (n, i) in inputs {
            match input_spec(i) {
                Ok(spec) => {
                    input_specs.insert(n.clone(), spec);
                }
                Err(p) => errs.push(PipelineError::InPipeline {
                    graph: graph.map(str::to_owned),
                    problem: Problem::Invalid(format!("input {n:?}: {p}")),
                }),
            }
        }
        if steps.is_empty() {
            errs.push(PipelineError::InPipeline {
                graph: graph.map(str::to_owned),
                problem: Problem::Invalid("a pipeline needs at least one step".into()),
            });
        }

        // Ids: unique and well-formed.
        let mut first_seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, s) in steps.iter().enumerate() {
            if !is_ident(&s.id) {
                errs.push(in_step(&s.id, Problem::BadId { id: s.id.clone() }));
            }
            if matches!(s.id.as_str(), "input" | "item" | "index" | "workflow") {
                errs.push(in_step(
                    &s.id,
                    Problem::Invalid(format!("{:?} is reserved for expressions", s.id)),
                ));
            }
            if let Some(first) = first_seen.get(s.id.as_str()) {
                errs.push(in_step(&s.id, Problem::DuplicateStep { first: first + 1 }));
            } else {
                first_seen.insert(&s.id, i);
            }
        }
        let ids: Vec<&str> = first_seen.keys().copied().collect();

        // Edges, then cycles; ancestors are computed only on an acyclic graph.
        for s in steps {
            for n in &s.needs {
                if !first_seen.contains_key(n.as_str()) {
                    errs.push(in_step(
                        &s.id,
                        Problem::UnknownNeed {
                            need: n.clone(),
                            suggestion: closest(n, &ids),
                        },
                    ));
                } else if n == &s.id {
                    errs.push(in_step(
                        &s.id,
                        Problem::Cycle {
                            chain: vec![n.clone(), n.clone()],
                        },
                    ));
                }
            }
        }
        let cycle = find_cycle(steps);
        if let Some(chain) = &cycle {
            errs.push(in_step(
                &chain[0],
                Problem::Cycle {
                    chain: chain.clone(),
                },
            ));
        }
        let ancestors = if cycle.is_none() {
            ancestors(steps)
        } else {
            BTreeMap::new()
        };

        // What each step's output has, where its contract (or child pipeline) says.
        let outputs: BTreeMap<&str, BTreeSet<String>> = steps
            .iter()
            .filter_map(|s| {
                let fields = match (&s.activity, &s.child) {
                    (Some(a), None) => self.catalog.get_activity(a)?.output_fields()?,
                    (None, Some(c)) => self
                        .children
                        .get(c)?
                        .output
                        .as_ref()?
                        .as_object()?
                        .keys()
                        .cloned()
                        .collect(),
                    _ => return None,
                };
                Some((s.id.as_str(), fields))
            })
            .collect();

        let mut out_steps = Vec::new();
        for s in steps {
            let mut problems = Vec::new();
            let run = match (&s.activity, &s.child) {
                (Some(a), None) => {
                    match self.catalog.get_activity(a) {
                        None => {
                            let known: Vec<&str> = self.catalog.activity_names().collect();
                            problems.push(Problem::UnknownActivity {
                                name: a.clone(),
                                suggestion: closest(a, &known),
                                known: list(known.iter().copied()),
                            });
                        }
                        Some(entry) => {
                            for e in &entry.emits {
                                if !s.emits.contains(e) {
                                    problems.push(Problem::UndeclaredEvent {
                                        activity: a.clone(),
                                        event: e.clone(),
                                    });
                                }
                            }
                            for e in &s.emits {
                                if !entry.emits.contains(e) && self.catalog.has_event(e) {
                                    problems.push(Problem::EventNotPublished {
                                        activity: a.clone(),
                                        event: e.clone(),
                                        known: list(entry.emits.iter().map(String::as_str)),
                                    });
                                }
                            }
                            problems.extend(check_input(a, entry, s.with.as_ref()));
                        }
                    }
                    Run::Activity(a.clone())
                }
                (None, Some(c)) => {
                    if !self.child_names.contains(&c.as_str()) {
                        problems.push(Problem::UnknownChild {
                            name: c.clone(),
                            suggestion: closest(c, self.child_names),
                        });
                    }
                    Run::Child(c.clone())
                }
                _ => {
                    problems.push(Problem::ActivityOrChild);
                    Run::Activity(String::new())
                }
            };
            for e in &s.emits {
                if !self.catalog.has_event(e) {
                    problems.push(Problem::UnknownEvent {
                        event: e.clone(),
                        known: list(self.catalog.event_names()),
                    });
                }
            }
            let is_child = matches!(run, Run::Child(_));
            if s.for_each.is_none() && s.concurrency.is_some() {
                problems.push(Problem::Misplaced {
                    field: "concurrency",
                    reason: "needs `for_each`",
                });
            }
            if s.concurrency == Some(0) {
                problems.push(Problem::Misplaced {
                    field: "concurrency",
                    reason: "must be 1 or more",
                });
            }
            if !is_child && s.child_id.is_some() {
                problems.push(Problem::Misplaced {
                    field: "child_id",
                    reason: "only applies to `child:` steps",
                });
            }
            if is_child && s.activity_id.is_some() {
                problems.push(Problem::Misplaced {
                    field: "activity_id",
                    reason: "only applies to `activity:` steps",
                });
            }

            if let Some(c) = &s.conductor {
                if is_child || (s.for_each.is_none() && graph.is_none()) {
                    problems.push(Problem::Misplaced {
                        field: "conductor",
                        reason: "only applies to fan-out `activity:` steps and to the steps of \
                                 a child pipeline",
                    });
                }
                for r in [&c.fork, &c.join] {
                    let valid = !r.is_empty()
                        && r.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                    if !valid || ids.contains(&r.as_str()) || c.fork == c.join {
                        problems.push(Problem::Misplaced {
                            field: "conductor",
                            reason: "refs are distinct snake_case names that are no step's id",
                        });
                    }
                }
            }

            // Expressions.
            let upstream = ancestors.get(s.id.as_str());
            let fan_out = s.for_each.is_some();
            let mut check = |field: &'static str,
                             paths: Result<Vec<Path>, expr::ExprError>,
                             item_ok: bool| {
                match paths {
                    Err(source) => problems.push(Problem::Expr { field, source }),
                    Ok(paths) => {
                        for p in paths {
                            if self.extra_roots.contains(&p.root.as_str()) {
                                continue;
                            }
                            if let Some(pr) = check_ref(field, &p, &ids, upstream, inputs, item_ok)
                            {
                                problems.push(pr);
                            } else if let Some(pr) = check_output_field(field, &p, &outputs) {
                                problems.push(pr);
                            }
                        }
                    }
                }
            };
            if let Some(w) = &s.with {
                check("with", expr::references(w), fan_out);
            }
            if let Some(f) = &s.for_each {
                check("for_each", expr::parse_single(f).map(|p| vec![p]), false);
            }
            if let Some(w) = &s.when {
                check("when", expr::parse_single(w).map(|p| vec![p]), false);
            }
            if let Some(a) = &s.activity_id {
                check(
                    "activity_id",
                    expr::references(&Value::String(a.clone())),
                    fan_out,
                );
            }
            if let Some(a) = &s.summary {
                check(
                    "summary",
                    expr::references(&Value::String(a.clone())),
                    fan_out,
                );
            }
            if is_child
                && let (Some(c), Some(Value::Object(w))) = (&s.child, &s.with)
                && let Some(child) = self.children.get(c)
                && let Some(p) = check_child_inputs(w, &child.inputs)
            {
                problems.push(p);
            }

            // Options.
            let options = merge_options(
                defaults,
                child_defaults,
                &s.options(),
                queue,
                is_child,
                &mut problems,
            );
            if let Some(f) = options
                .start_to_close_formula
                .as_deref()
                .and_then(|t| crate::formula::Formula::parse(t).ok())
            {
                for p in f.references() {
                    if let Some(pr) =
                        check_ref("start_to_close", &p, &ids, upstream, inputs, fan_out)
                    {
                        problems.push(pr);
                    }
                }
            }
            // A local step runs in the workflow's task on the workflow's worker: it takes no
            // queue and cannot heartbeat. What it inherits from `defaults` is dropped; what it
            // declares itself is an error.
            let mut options = options;
            if s.local {
                if is_child {
                    problems.push(Problem::Misplaced {
                        field: "local",
                        reason: "only applies to `activity:` steps",
                    });
                }
                if s.heartbeat.is_some() {
                    problems.push(Problem::Misplaced {
                        field: "local",
                        reason: "steps cannot heartbeat (a local activity has no heartbeat); \
                                 drop `heartbeat` or `local`",
                    });
                }
                if s.task_queue.as_deref().is_some_and(|q| q != queue) {
                    problems.push(Problem::Misplaced {
                        field: "local",
                        reason: "steps run on the workflow's own worker, so they take no \
                                 `task_queue`; drop `task_queue` or `local`",
                    });
                }
                options.heartbeat_ms = None;
                options.task_queue = queue.to_owned();
            }
            for p in problems {
                errs.push(in_step(&s.id, p));
            }
            out_steps.push(Step {
                id: s.id.clone(),
                run,
                needs: s.needs.clone(),
                with: s.with.clone().unwrap_or(Value::Null),
                for_each: s.for_each.clone(),
                concurrency: s.concurrency,
                child_id: s.child_id.clone(),
                activity_id: s.activity_id.clone(),
                when: s.when.clone(),
                optional: s.optional,
                emits: s.emits.clone(),
                local: s.local,
                options,
                summary: s.summary.clone(),
                conductor: s.conductor.clone(),
            });
        }

        if let Some(o) = output {
            let all: BTreeSet<&str> = ids.iter().copied().collect();
            match expr::references(o) {
                Err(source) => errs.push(PipelineError::InPipeline {
                    graph: graph.map(str::to_owned),
                    problem: Problem::Expr {
                        field: "output",
                        source,
                    },
                }),
                Ok(paths) => {
                    for p in paths {
                        if let Some(pr) = check_ref("output", &p, &ids, Some(&all), inputs, false) {
                            errs.push(PipelineError::InPipeline {
                                graph: graph.map(str::to_owned),
                                problem: pr,
                            });
                        }
                    }
                }
            }
        }

        Graph {
            name: name.to_owned(),
            task_queue: queue.to_owned(),
            inputs: input_specs,
            steps: out_steps,
            output: output.cloned().unwrap_or(Value::Null),
        }
    }
}

/// `search_attributes:` names attributes a pipeline may set, with templates that read only
/// the main pipeline's declared inputs.
fn check_search_attributes(raw: &RawPipeline) -> Vec<Problem> {
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
fn check_input(activity: &str, entry: &ActivityEntry, with: Option<&Value>) -> Vec<Problem> {
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
fn check_output_field(
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

fn check_ref(
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

fn check_child_inputs(
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

fn input_spec(i: &RawInput) -> Result<InputSpec, String> {
    let kind = match i.kind.as_deref().unwrap_or("any") {
        "string" => InputKind::String,
        "integer" => InputKind::Integer,
        "number" => InputKind::Number,
        "boolean" => InputKind::Boolean,
        "array" => InputKind::Array,
        "object" => InputKind::Object,
        "any" => InputKind::Any,
        other => {
            return Err(format!(
                "type {other:?} is not one of string, integer, number, boolean, array, object, any"
            ));
        }
    };
    if let Some(d) = &i.default
        && !kind.accepts(d)
    {
        return Err(format!("default {d} is not of type {kind:?}"));
    }
    Ok(InputSpec {
        kind,
        required: i.required.unwrap_or(true) && i.default.is_none(),
        default: i.default.clone(),
    })
}

fn duration(field: &'static str, d: &RawDuration, problems: &mut Vec<Problem>) -> Option<u64> {
    let parsed = match d {
        RawDuration::Seconds(s) => Some(Duration::from_secs(*s)),
        RawDuration::Text(t) => humantime::parse_duration(t.trim()).ok(),
    };
    match parsed {
        Some(d) if !d.is_zero() => Some(d.as_millis() as u64),
        _ => {
            problems.push(Problem::BadDuration {
                field,
                value: show(d),
            });
            None
        }
    }
}

fn show(d: &RawDuration) -> String {
    match d {
        RawDuration::Seconds(s) => format!("{s}s"),
        RawDuration::Text(t) => t.clone(),
    }
}

fn merge_options(
    defaults: &RawOptions,
    child_defaults: Option<&RawOptions>,
    step: &RawOptions,
    queue: &str,
    is_child: bool,
    problems: &mut Vec<Problem>,
) -> StepOptions {
    if is_child {
        for (field, set) in [
            ("start_to_close", step.start_to_close.is_some()),
            ("schedule_to_close", step.schedule_to_close.is_some()),
            ("heartbeat", step.heartbeat.is_some()),
            ("retry", step.retry.is_some()),
        ] {
            if set {
                problems.push(Problem::TimeoutOnChild { field });
            }
        }
    }
    // Layers, most specific last.
    let layers: Vec<&RawOptions> = std::iter::once(defaults)
        .chain(child_defaults)
        .chain(std::iter::once(step))
        .collect();
    let pick = |f: fn(&RawOptions) -> Option<&RawDuration>| {
        layers.iter().rev().find_map(|l| f(l)).cloned()
    };
    let s2c = pick(|o| o.schedule_to_close.as_ref());
    let stc = pick(|o| o.start_to_close.as_ref());
    let hb = pick(|o| o.heartbeat.as_ref());
    let s2c_ms = s2c
        .as_ref()
        .and_then(|d| duration("schedule_to_close", d, problems));
    let stc_formula = match &stc {
        Some(RawDuration::Text(t)) if crate::formula::is_formula(t) => {
            if let Err(source) = crate::formula::Formula::parse(t) {
                problems.push(Problem::Expr {
                    field: "start_to_close",
                    source,
                });
            }
            Some(t.clone())
        }
        _ => None,
    };
    let stc_ms = stc
        .as_ref()
        .filter(|_| stc_formula.is_none())
        .and_then(|d| duration("start_to_close", d, problems));
    let hb_ms = hb.as_ref().and_then(|d| duration("heartbeat", d, problems));
    if !is_child {
        if s2c.is_none() && stc.is_none() {
            problems.push(Problem::NoTimeout);
        }
        if let (Some(h), Some(hb)) = (hb_ms, &hb) {
            for (limit, raw) in [(stc_ms, &stc), (s2c_ms, &s2c)] {
                if let (Some(l), Some(raw)) = (limit, raw)
                    && h > l
                {
                    problems.push(Problem::HeartbeatTooLong {
                        heartbeat: show(hb),
                        start_to_close: show(raw),
                    });
                    break;
                }
            }
        }
    }
    let mut retry = Retry::default();
    for r in layers.iter().filter_map(|l| l.retry.as_ref()) {
        apply_retry(&mut retry, r, problems);
    }
    if retry.backoff_coefficient < 1.0 {
        problems.push(Problem::BadRetry(format!(
            "backoff_coefficient {} must be 1.0 or more",
            retry.backoff_coefficient
        )));
    }
    if let Some(max) = retry.maximum_interval_ms
        && max < retry.initial_interval_ms
    {
        problems.push(Problem::BadRetry(
            "maximum_interval is shorter than initial_interval".into(),
        ));
    }
    StepOptions {
        task_queue: layers
            .iter()
            .rev()
            .find_map(|l| l.task_queue.clone())
            .unwrap_or_else(|| queue.to_owned()),
        schedule_to_close_ms: s2c_ms,
        start_to_close_ms: stc_ms,
        start_to_close_formula: stc_formula,
        heartbeat_ms: hb_ms,
        retry,
    }
}

fn apply_retry(retry: &mut Retry, r: &RawRetry, problems: &mut Vec<Problem>) {
    if let Some(d) = &r.initial_interval
        && let Some(ms) = duration("retry.initial_interval", d, problems)
    {
        retry.initial_interval_ms = ms;
    }
    if let Some(c) = r.backoff_coefficient {
        retry.backoff_coefficient = c;
    }
    if let Some(d) = &r.maximum_interval {
        retry.maximum_interval_ms = duration("retry.maximum_interval", d, problems);
    }
    if let Some(m) = r.maximum_attempts {
        retry.maximum_attempts = m;
    }
    if let Some(t) = &r.non_retryable_error_types {
        retry.non_retryable_error_types = t.clone();
    }
}

/// The first cycle in `needs`, as a chain whose first id is repeated at the end.
fn find_cycle(steps: &[RawStep]) -> Option<Vec<String>> {
    let by_id: BTreeMap<&str, &RawStep> = steps.iter().map(|s| (s.id.as_str(), s)).collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Fresh,
        Open,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = by_id.keys().map(|k| (*k, Mark::Fresh)).collect();
    fn visit<'a>(
        id: &'a str,
        by_id: &BTreeMap<&'a str, &'a RawStep>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        marks.insert(id, Mark::Open);
        stack.push(id);
        for n in &by_id[id].needs {
            let n = n.as_str();
            match marks.get(n) {
                Some(Mark::Open) if n != id => {
                    let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                    let mut chain: Vec<String> =
                        stack[start..].iter().map(|s| (*s).to_owned()).collect();
                    chain.push(n.to_owned());
                    return Some(chain);
                }
                Some(Mark::Fresh) => {
                    if let Some(c) = visit(n, by_id, marks, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        marks.insert(id, Mark::Done);
        None
    }
    for s in steps {
        if marks.get(s.id.as_str()) == Some(&Mark::Fresh)
            && let Some(c) = visit(&s.id, &by_id, &mut marks, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// Transitive `needs` of every step (the graph must be acyclic).
fn ancestors(steps: &[RawStep]) -> BTreeMap<&str, BTreeSet<&str>> {
    let by_id: BTreeMap<&str, &RawStep> = steps.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut memo: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    fn go<'a>(
        id: &'a str,
        by_id: &BTreeMap<&'a str, &'a RawStep>,
        memo: &mut BTreeMap<&'a str, BTreeSet<&'a str>>,
    ) -> BTreeSet<&'a str> {
        if let Some(m) = memo.get(id) {
            return m.clone();
        }
        let mut set = BTreeSet::new();
        if let Some(s) = by_id.get(id) {
            for n in &s.needs {
                if n != id && by_id.contains_key(n.as_str()) {
                    set.insert(n.as_str());
                    set.extend(go(n, by_id, memo));
                }
            }
        }
        memo.insert(id, set.clone());
        set
    }
    for s in steps {
        go(&s.id, &by_id, &mut memo);
    }
    memo
}

fn child_cycle(raw: &RawPipeline) -> Option<Vec<String>> {
    fn uses(steps: &[RawStep]) -> Vec<&str> {
        steps.iter().filter_map(|s| s.child.as_deref()).collect()
    }
    fn go<'a>(name: &'a str, raw: &'a RawPipeline, path: &mut Vec<&'a str>) -> Option<Vec<String>> {
        if path.contains(&name) {
            let mut chain: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
            chain.push(name.to_owned());
            return Some(chain);
        }
        let steps = if name == raw.name {
            &raw.steps
        } else {
            &raw.children.get(name)?.steps
        };
        path.push(name);
        for c in uses(steps) {
            if let Some(chain) = go(c, raw, path) {
                return Some(chain);
            }
        }
        path.pop();
        None
    }
    go(&raw.name, raw, &mut Vec::new())
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn closest(name: &str, candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(name, c), *c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 3) && *d > 0)
        .min()
        .map(|(_, c)| c.to_owned())
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
