//! Validation errors: every problem names where it is (file, line, pipeline, step) and what
//! is wrong, in a sentence that suggests the fix where one is obvious.

use std::fmt;

use crate::expr::ExprError;

/// What is wrong, independent of where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// Two steps share an id.
    #[error("duplicate step id (first defined as step #{first})")]
    DuplicateStep {
        /// 1-based position of the first definition.
        first: usize,
    },
    /// An id is not a plain name.
    #[error("invalid id {id:?}: use letters, digits, `_` or `-`, starting with a letter")]
    BadId {
        /// The id.
        id: String,
    },
    /// `needs` names something that is not a step.
    #[error("needs {need:?}, which is not a step{}", did_you_mean(.suggestion))]
    UnknownNeed {
        /// The missing name.
        need: String,
        /// The closest existing step id.
        suggestion: Option<String>,
    },
    /// An expression starts from a name that is not a step, `input`, `item`, `index` or
    /// `workflow`.
    #[error("{field}: `${{{expr}}}` refers to {root:?}, which is not a step{}", did_you_mean(.suggestion))]
    UnknownRef {
        /// Which field holds the expression.
        field: &'static str,
        /// The expression.
        expr: String,
        /// Its root.
        root: String,
        /// The closest step id.
        suggestion: Option<String>,
    },
    /// An expression reads a step that is not upstream.
    #[error(
        "{field}: `${{{expr}}}` reads step {root:?}, which this step does not need (add it to `needs`)"
    )]
    RefNotUpstream {
        /// Which field.
        field: &'static str,
        /// The expression.
        expr: String,
        /// The step read.
        root: String,
    },
    /// `${input.x}` where `x` is not declared.
    #[error(
        "{field}: `${{{expr}}}` reads input {name:?}, which is not declared in `inputs` (declared: {declared})"
    )]
    UndeclaredInput {
        /// Which field.
        field: &'static str,
        /// The expression.
        expr: String,
        /// The input name.
        name: String,
        /// The declared names.
        declared: String,
    },
    /// `${item}` / `${index}` outside a fan-out.
    #[error("{field}: `${{{expr}}}` is only available in a step with `for_each`")]
    ItemOutsideFanOut {
        /// Which field.
        field: &'static str,
        /// The expression.
        expr: String,
    },
    /// An expression does not parse.
    #[error("{field}: {source}")]
    Expr {
        /// Which field.
        field: &'static str,
        /// The parse error.
        source: ExprError,
    },
    /// The `needs` edges form a cycle.
    #[error("cycle: {}", .chain.join(" -> "))]
    Cycle {
        /// The ids around the cycle, the first repeated at the end.
        chain: Vec<String>,
    },
    /// The step neither names an activity nor a child, or names both.
    #[error("a step runs exactly one of `activity:` or `child:`")]
    ActivityOrChild,
    /// The activity is not registered on the worker.
    #[error("activity {name:?} is not registered on the worker{} (known: {known})", did_you_mean(.suggestion))]
    UnknownActivity {
        /// The name.
        name: String,
        /// The closest registered name.
        suggestion: Option<String>,
        /// Every registered name.
        known: String,
    },
    /// `child:` names no sub-pipeline of the file.
    #[error("child {name:?} is not a pipeline under `children:`{}", did_you_mean(.suggestion))]
    UnknownChild {
        /// The name.
        name: String,
        /// The closest child name.
        suggestion: Option<String>,
    },
    /// A pipeline name that no workflow type of the worker carries.
    #[error(
        "no workflow type {name:?} is registered on the worker, so the Temporal UI could not show this pipeline under its name (registered: {known})"
    )]
    UnknownWorkflowType {
        /// The name.
        name: String,
        /// The registered types.
        known: String,
    },
    /// A child pipeline is recursive.
    #[error("child pipelines start each other in a loop: {}", .chain.join(" -> "))]
    ChildCycle {
        /// The names around the loop.
        chain: Vec<String>,
    },
    /// Neither timeout is set for an activity step.
    #[error(
        "no timeout: set `start_to_close` (or `schedule_to_close`) on the step or in `defaults`"
    )]
    NoTimeout,
    /// Heartbeat timeout above start-to-close.
    #[error(
        "heartbeat {heartbeat} is longer than start_to_close {start_to_close}: the attempt would time out before a missed heartbeat is noticed"
    )]
    HeartbeatTooLong {
        /// Heartbeat as written.
        heartbeat: String,
        /// Start-to-close as written.
        start_to_close: String,
    },
    /// Activity timeouts on a child step.
    #[error(
        "`{field}` applies to activities; a child step's activities take theirs from the child pipeline"
    )]
    TimeoutOnChild {
        /// The field.
        field: &'static str,
    },
    /// A duration does not parse.
    #[error(
        "{field}: {value:?} is not a duration (write e.g. `90s`, `5m`, `1h 30m` or a number of seconds)"
    )]
    BadDuration {
        /// The field.
        field: &'static str,
        /// The text.
        value: String,
    },
    /// A nonsensical retry policy.
    #[error("retry: {0}")]
    BadRetry(String),
    /// `emits` names an event nobody knows.
    #[error("emits {event:?}, which is not a known event (known: {known})")]
    UnknownEvent {
        /// The event.
        event: String,
        /// The known events.
        known: String,
    },
    /// The activity publishes an event the step does not declare.
    #[error(
        "activity {activity:?} publishes {event:?}, which the step does not declare in `emits`"
    )]
    UndeclaredEvent {
        /// The activity.
        activity: String,
        /// The event.
        event: String,
    },
    /// `emits` names an event the activity never publishes.
    #[error(
        "emits {event:?}, which activity {activity:?} does not publish (it publishes: {known})"
    )]
    EventNotPublished {
        /// The activity.
        activity: String,
        /// The event.
        event: String,
        /// What it publishes.
        known: String,
    },
    /// `with` gives a field the activity's input does not have.
    #[error("with: {key:?} is not an input of activity {activity:?} (its inputs: {known})")]
    UnknownInputField {
        /// The activity.
        activity: String,
        /// The field given.
        key: String,
        /// Its input's fields.
        known: String,
    },
    /// `with` lacks a field the activity's input requires.
    #[error("with: activity {activity:?} requires {key:?}, which `with` does not give")]
    MissingInputField {
        /// The activity.
        activity: String,
        /// The missing field.
        key: String,
    },
    /// `${step.field}` where the step's output has no such field.
    #[error(
        "{field}: `${{{expr}}}` reads {name:?}, which is not in the output of step {root:?} (it has: {known})"
    )]
    UnknownOutputField {
        /// Which field holds the expression.
        field: &'static str,
        /// The expression.
        expr: String,
        /// The step read.
        root: String,
        /// The field asked for.
        name: String,
        /// The output's fields.
        known: String,
    },
    /// A fan-out option on a step without `for_each`, or a child option on an activity step.
    #[error("`{field}` {reason}")]
    Misplaced {
        /// The field.
        field: &'static str,
        /// Why it does not belong.
        reason: &'static str,
    },
    /// The child's inputs are not satisfied by the step's `with`.
    #[error("with: {0}")]
    ChildInputs(String),
    /// Something about the file as a whole.
    #[error("{0}")]
    Invalid(String),
}

fn did_you_mean(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean {s:?}?)"),
        None => String::new(),
    }
}

/// A [`Problem`] with its location.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PipelineError {
    /// The file is not valid YAML, or does not have the pipeline's shape.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A problem of the pipeline (or child pipeline) as a whole.
    #[error("{}{problem}", graph_prefix(.graph))]
    InPipeline {
        /// The child pipeline, `None` for the main one.
        graph: Option<String>,
        /// What is wrong.
        problem: Problem,
    },
    /// A problem of one step.
    #[error("{}step {step:?}: {problem}", graph_prefix(.graph))]
    InStep {
        /// The child pipeline, `None` for the main one.
        graph: Option<String>,
        /// The step id.
        step: String,
        /// What is wrong.
        problem: Problem,
    },
}

fn graph_prefix(g: &Option<String>) -> String {
    match g {
        Some(g) => format!("pipeline {g:?}: "),
        None => String::new(),
    }
}

impl PipelineError {
    /// The problem, whatever the location.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            PipelineError::Syntax { .. } => None,
            PipelineError::InPipeline { problem, .. } | PipelineError::InStep { problem, .. } => {
                Some(problem)
            }
        }
    }
}

/// Every error found in one file (validation does not stop at the first).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationReport {
    /// The file as the user named it.
    pub file: String,
    /// What is wrong, in file order.
    pub errors: Vec<PipelineError>,
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {e}", self.file)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationReport {}
