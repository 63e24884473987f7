//! `RawPipeline` → `Pipeline`: every check `reflow validate` performs, collecting all errors
//! rather than stopping at the first. Pure: the catalog is passed in. This file walks the
//! pipeline and its graphs; the checks it applies are in `checks` (references, contracts,
//! sections), `options` (inputs, durations, defaults, retries) and `shape` (cycles,
//! ancestors).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::checks::{
    check_child_inputs, check_input, check_output_field, check_progress, check_ref,
    check_search_attributes, closest, is_ident, list,
};
use super::error::{PipelineError, Problem, ValidationReport};
use super::options::{input_spec, merge_options};
use super::raw::{RawChild, RawInput, RawOptions, RawPipeline, RawStep};
use super::shape::{ancestors, child_cycle, find_cycle};
use super::{DEFAULT_TASK_QUEUE, Graph, Pipeline, Run, Step};
use crate::catalog::Catalog;
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
