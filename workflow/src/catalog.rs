//! What a worker can run: the registry `reflow validate` checks a pipeline against.
//!
//! The worker builds its [`Catalog`] from the same list it registers activities and workflow
//! types from (`worker/src/registry.rs`), so validation and execution cannot disagree. Each
//! activity module states its activities' contracts ([`Catalog::contract`]: input and output
//! types, events) next to those types; `reflow validate` checks every step against them. Tests
//! build their own catalog for the test activities they register.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The frontend events reflow knows (docs/contracts/events-and-api.md §3).
pub const KNOWN_EVENTS: &[&str] = &[
    "STATUS",
    "DURATION",
    "WAVEFORM",
    "TRANSCRIPT",
    "TOPIC",
    "FINAL_TITLE",
    "FINAL_SHORT_SUMMARY",
    "FINAL_LONG_SUMMARY",
    "ACTION_ITEMS",
    "PIPELINE_PROGRESS",
];

/// One registered activity type and its contract.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivityEntry {
    /// Events the activity may publish: a step running it declares all of them in `emits`,
    /// and no other.
    pub emits: Vec<String>,
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
            events: KNOWN_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
            ..Default::default()
        }
    }

    /// Add an activity type that publishes `emits`, with no schema (inputs and outputs are
    /// not checked: test activities, the internal progress reporter).
    pub fn activity(mut self, name: &str, emits: &[&str]) -> Self {
        self.activities.insert(
            name.to_owned(),
            ActivityEntry {
                emits: emits.iter().map(|e| (*e).to_owned()).collect(),
                ..ActivityEntry::default()
            },
        );
        self
    }

    /// Add an activity type with its contract: input `I`, output `O` (their JSON Schemas,
    /// from their Rust types) and the events it may publish.
    pub fn contract<I: schemars::JsonSchema, O: schemars::JsonSchema>(
        mut self,
        name: &str,
        emits: &[&str],
    ) -> Self {
        self.activities.insert(
            name.to_owned(),
            ActivityEntry {
                emits: emits.iter().map(|e| (*e).to_owned()).collect(),
                input: Some(schemars::schema_for!(I).to_value()),
                output: Some(schemars::schema_for!(O).to_value()),
            },
        );
        self
    }

    /// Add a workflow type.
    pub fn workflow_type(mut self, name: &str) -> Self {
        self.workflow_types.insert(name.to_owned());
        self
    }

    /// Add an event name.
    pub fn event(mut self, name: &str) -> Self {
        self.events.insert(name.to_owned());
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
