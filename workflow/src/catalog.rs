//! What a worker can run: the registry `reflow validate` checks a pipeline against.
//!
//! The worker builds its [`Catalog`] from the same list it registers activities and workflow
//! types from (`worker/src/registry.rs`), so validation and execution cannot disagree. Each
//! activity declares itself once, next to its code, as a [`Step`]: the events it may publish
//! and what it costs (whether its result is checkpointed, whether it pays for transcription
//! or LLM tokens, and an LLM step's answer budget on the embedded model); its input and output
//! contract comes from the activity function's own types (`activities::step::Declare`).
//! Everything else that needs a step's properties (`reflow validate`, checkpoint metric
//! series, token budgets, event checks) reads them from here. Tests build their own catalog for
//! the test activities they register.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

pub use crate::event::Event;

/// What a step costs, and so how its result is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cost {
    /// Nothing worth keeping: re-running it is cheap (a database write, a notification, a
    /// lookup).
    #[default]
    Free,
    /// Its result is checkpointed by input hash because recomputing it takes time (audio
    /// work, the merge), though no vendor is paid.
    Computed,
    /// Paid transcription: checkpointed, and its audio seconds are counted.
    Transcription,
    /// Paid LLM tokens: checkpointed, its tokens counted, and the embedded model's answer
    /// bounded to `embedded_max_tokens` (generation is the slow part on CPU).
    Llm {
        /// Longest answer asked of the embedded model, tokens.
        embedded_max_tokens: u32,
    },
}

impl Cost {
    /// Whether the step's result is checkpointed by input hash (so a retry, reset or re-run
    /// never pays for it twice, and its checkpoint hits are counted).
    pub const fn is_checkpointed(self) -> bool {
        !matches!(self, Cost::Free)
    }

    /// Whether a vendor (or the embedded model's CPU time standing in for one) is paid.
    pub const fn is_paid(self) -> bool {
        matches!(self, Cost::Transcription | Cost::Llm { .. })
    }
}

/// What a step declares about itself, once, beside its activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Events its activity may publish.
    pub emits: &'static [Event],
    /// What it costs.
    pub cost: Cost,
    /// It acts outside reflow (a chat post, a customer's webhook, deleting the recording
    /// vendor's files, an email): a shadow run never executes it ([`Catalog::is_external`]).
    pub external: bool,
    /// Its effect outside reflow is to tell people (a chat post, a customer's webhook): a
    /// re-run does not execute it unless asked to notify again ([`Catalog::notifies`]).
    pub notifies: bool,
}

impl Step {
    /// A step that publishes nothing and costs nothing.
    pub const FREE: Step = Step {
        emits: &[],
        cost: Cost::Free,
        external: false,
        notifies: false,
    };

    /// A step of cost `cost` that publishes nothing.
    pub const fn costing(cost: Cost) -> Step {
        Step {
            emits: &[],
            cost,
            external: false,
            notifies: false,
        }
    }

    /// The same step, acting outside reflow.
    pub const fn external(self) -> Step {
        Step {
            external: true,
            ..self
        }
    }

    /// The same step, telling people outside reflow (so acting outside it too).
    pub const fn notifying(self) -> Step {
        Step {
            external: true,
            notifies: true,
            ..self
        }
    }

    /// The same step, publishing `emits`.
    pub const fn emitting(self, emits: &'static [Event]) -> Step {
        Step { emits, ..self }
    }
}

/// One registered activity type and its contract.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivityEntry {
    /// Events the activity may publish: a step running it declares all of them in `emits`,
    /// and no other.
    pub emits: Vec<String>,
    /// What it costs (from its declaration; `Free` for undeclared test activities).
    pub cost: Cost,
    /// It acts outside reflow ([`Step::external`]); not part of its contract fingerprint.
    pub external: bool,
    /// It tells people outside reflow ([`Step::notifies`]); not part of its contract
    /// fingerprint.
    pub notifies: bool,
    /// JSON Schema of its input, derived from the input's Rust type (`None`: not checked).
    pub input: Option<Value>,
    /// JSON Schema of its output.
    pub output: Option<Value>,
}

impl ActivityEntry {
    /// The input's fields, and which of them are required (`None` without a schema, or when
    /// the input is not an object).
    pub fn input_fields(&self) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
        fields(self.input.as_ref()?)
    }

    /// The output's fields (`None` without a schema, or when the output is not an object).
    pub fn output_fields(&self) -> Option<BTreeSet<String>> {
        fields(self.output.as_ref()?).map(|(all, _)| all)
    }
}

/// The properties and the required properties of an object schema.
fn fields(schema: &Value) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
    let props = schema.get("properties")?.as_object()?;
    let required = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Some((props.keys().cloned().collect(), required))
}

/// Activity types, workflow types and events known to a worker.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    activities: BTreeMap<String, ActivityEntry>,
    workflow_types: BTreeSet<String>,
    events: BTreeSet<String>,
}

impl Catalog {
    /// An empty catalog that knows the standard events.
    pub fn new() -> Self {
        Catalog {
            events: Event::ALL.iter().map(|e| e.as_str().to_owned()).collect(),
            ..Default::default()
        }
    }

    /// Add an activity type that publishes `emits`, with no schema (inputs and outputs are
    /// not checked: test activities, the internal progress reporter).
    pub fn activity(mut self, name: &str, emits: &[Event]) -> Self {
        self.activities.insert(
            name.to_owned(),
            ActivityEntry {
                emits: emits.iter().map(|e| e.as_str().to_owned()).collect(),
                ..ActivityEntry::default()
            },
        );
        self
    }

    /// Add an activity type declared as `step`, with its contract: input `I`, output `O`
    /// (their JSON Schemas, from their Rust types). Activity modules declare through
    /// `activities::step::Declare`, which takes the types from the activity itself.
    pub fn contract<I: schemars::JsonSchema, O: schemars::JsonSchema>(
        mut self,
        name: &str,
        step: Step,
    ) -> Self {
        self.activities.insert(
            name.to_owned(),
            ActivityEntry {
                emits: step.emits.iter().map(|e| e.as_str().to_owned()).collect(),
                cost: step.cost,
                external: step.external,
                notifies: step.notifies,
                input: Some(schemars::schema_for!(I).to_value()),
                output: Some(schemars::schema_for!(O).to_value()),
            },
        );
        self
    }

    /// The declared cost of an activity type (`None`: not registered).
    pub fn cost_of(&self, name: &str) -> Option<Cost> {
        self.activities.get(name).map(|a| a.cost)
    }

    /// Whether an activity type acts outside reflow (declared [`Step::external`]): the one
    /// place that says so; shadow runs skip the steps that run one.
    pub fn is_external(&self, name: &str) -> bool {
        self.activities.get(name).is_some_and(|a| a.external)
    }

    /// Whether an activity type tells people outside reflow (declared [`Step::notifying`]):
    /// a re-run skips the steps that run only such activities unless asked to notify.
    pub fn notifies(&self, name: &str) -> bool {
        self.activities.get(name).is_some_and(|a| a.notifies)
    }

    /// Mark a registered activity type as acting outside reflow (test catalogs).
    pub fn external(mut self, name: &str) -> Self {
        if let Some(a) = self.activities.get_mut(name) {
            a.external = true;
        }
        self
    }

    /// Add a workflow type.
    pub fn workflow_type(mut self, name: &str) -> Self {
        self.workflow_types.insert(name.to_owned());
        self
    }

    /// Merge another catalog into this one.
    pub fn merge(mut self, other: Catalog) -> Self {
        self.activities.extend(other.activities);
        self.workflow_types.extend(other.workflow_types);
        self.events.extend(other.events);
        self
    }

    /// The entry of an activity type.
    pub fn get_activity(&self, name: &str) -> Option<&ActivityEntry> {
        self.activities.get(name)
    }

    /// Registered activity names, sorted.
    pub fn activity_names(&self) -> impl Iterator<Item = &str> {
        self.activities.keys().map(String::as_str)
    }

    /// Whether a workflow type is registered.
    pub fn has_workflow_type(&self, name: &str) -> bool {
        self.workflow_types.contains(name)
    }

    /// Registered workflow types, sorted.
    pub fn workflow_type_names(&self) -> impl Iterator<Item = &str> {
        self.workflow_types.iter().map(String::as_str)
    }

    /// Whether an event is known.
    pub fn has_event(&self, name: &str) -> bool {
        self.events.contains(name)
    }

    /// Known events, sorted.
    pub fn event_names(&self) -> impl Iterator<Item = &str> {
        self.events.iter().map(String::as_str)
    }
}
