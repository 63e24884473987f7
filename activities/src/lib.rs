//! Every side effect of reflow, one module per external system.
//!
//! Activities are grouped in one struct per system (`files::FileActivities`, …), registered
//! on the worker under the step names pipelines use (`#[activity(name = "list_files")]`).
//! Shared pieces: [`error`] maps failures to Temporal's retryable / non-retryable classes
//! (docs/contracts/pipeline.md §6.3), and [`attempt`] is the context of the running attempt (its
//! step, the origin of its events, where it reports progress), which the worker's activity
//! interceptor (`reflow::attempts`) sets for every attempt.
//! [`storage`] is the object store every step reads and writes (S3 or a directory), and
//! [`checkpoint`] keeps step results there by input hash, so no retry pays twice.

pub mod asr;
pub mod attempt;
pub mod audio;
pub mod checkpoint;
pub mod config;
pub mod daily;
pub mod db;
pub mod error;
pub mod events;
pub mod files;
pub mod heartbeat;
pub mod http;
pub mod lifecycle;
pub mod llm;
pub mod memo;
pub mod memo_purge;
pub mod memo_shadow;
pub mod metrics;
pub mod models;
pub mod progress;
pub mod redacted;
pub mod step;
pub mod storage;
pub mod track;
pub mod transcript;
pub mod usage;
pub mod versions;
pub mod webhook;
pub mod zulip;

pub use error::ActivityFailure;
