//! The deterministic half of reflow: pipeline definitions and the workflow that runs them.
//!
//! ```text
//! pipelines/x.yaml ──parse──▶ RawPipeline ──validate(catalog)──▶ Pipeline (hash, defaults merged)
//!                                          registered (reflow apply) │  named in RunInput
//!                                        Temporal ──▶ <Name> workflow ──▶ interpreter::run
//!                                                       │ activities by name, children by type
//!                                                       └─ `progress` query, `step_attempt` signal
//! ```
//!
//! The worker (crate `reflow-worker`) reads files, builds the [`catalog::Catalog`] from what it
//! registers, validates, and starts runs; nothing in this crate performs I/O, reads a clock
//! other than `ctx.workflow_time()`, or draws random numbers.

pub mod backfill;
pub mod catalog;
pub mod event;
pub mod expr;
pub mod formula;
pub mod interpreter;
pub mod payload;
pub mod pipeline;
pub mod progress;
pub mod search;
pub mod version_header;
pub mod workflows;

pub use catalog::Catalog;
pub use interpreter::RunInput;
pub use pipeline::{Pipeline, PipelineError, ValidationReport, parse_and_validate};
pub use progress::{AttemptReport, Progress, StepStatus};
