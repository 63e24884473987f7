//! How an activity declares itself as a pipeline step, once, next to its code.
//!
//! Each system's module has one `declare` function that lists its activities by their
//! markers (the constants `#[activities]` generates, which carry the registered name and the
//! function's input and output types) with a [`Step`]: the events the step publishes and what
//! it costs.
//!
//! ```ignore
//! pub fn declare(catalog: Catalog) -> Catalog {
//!     type S = SummaryActivities;
//!     catalog
//!         .declare(S::generate_title, Step::costing(Cost::Llm { embedded_max_tokens: 24 })
//!             .emitting(&[Event::FinalTitle]))
//! }
//! ```
//!
//! The name, the input and output JSON Schemas that `reflow validate` checks steps against,
//! the events, the checkpoint metric series and an LLM step's token budget all come from that
//! one line; nothing restates the name or the types.

use temporalio_common::ActivityDefinition;
use workflow::Catalog;
pub use workflow::catalog::{Cost, Event, Step};

/// Declare activities on a [`Catalog`] by their markers.
pub trait Declare {
    /// Add `activity` as `step`, with its input and output contract from its own types.
    fn declare<A>(self, activity: A, step: Step) -> Self
    where
        A: ActivityDefinition,
        A::Input: schemars::JsonSchema,
        A::Output: schemars::JsonSchema;
}

impl Declare for Catalog {
    fn declare<A>(self, activity: A, step: Step) -> Self
    where
        A: ActivityDefinition,
        A::Input: schemars::JsonSchema,
        A::Output: schemars::JsonSchema,
    {
        self.contract::<A::Input, A::Output>(activity.name(), step)
    }
}
