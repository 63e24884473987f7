//! reflow's integration tests: one binary, a module per suite, so that the models, the Temporal
//! SDK and the worker are compiled and linked once (31 binaries linked them 31 times). Every test
//! runs in its own process under nextest, as before. Run one suite with `just test suite::`,
//! e.g. `just test security::` (a nextest filter on the test's path).
//!
//! | suite | what it shows |
//! |---|---|
//! | [`alerts`] | alert rules are valid and behave as their unit tests say (promtool) |
//! | [`api`] | the HTTP API on a real socket, on SQLite and PostgreSQL |
//! | [`audio_steps`] | padding, mixdown and waveform run by the worker over the object store |
//! | [`backfill`] | `reflow backfill`: 6 meetings, 2 at a time, through a worker kill, nothing transcribed again; the dry run |
//! | [`backlog`] | webhooks and `process` requests while Temporal is down: kept, then run once each, in order |
//! | [`bad_input`] | what Daily, a customer or an operator can send wrong, refused clearly |
//! | [`chaos`] | worker processes SIGKILLed mid-meeting, or cut off by a network partition; nothing lost or paid twice |
//! | [`compose`] | the compose stack, parsed and checked |
//! | [`conductor`] | the Conductor-compatible status API over engine runs |
//! | [`conductor_import`] | `reflow import conductor` of the seed: what it names, a small patch, a meeting |
//! | [`conductor_meeting`] | the Conductor view of `pipelines/diarization.yaml`, field by field |
//! | [`conductor_sdk`] | the official Conductor Python and JavaScript SDKs read and retry a meeting |
//! | [`daily_client`] | the Daily REST client against the Daily stand-in |
//! | [`db`] | database and event publishing on SQLite and PostgreSQL |
//! | [`demo`] | `just demo`'s meeting as a new user meets it |
//! | [`dev`] | `reflow dev` starting its own Temporal dev server |
//! | [`embedded`] | the embedded ASR and LLM end to end, no network |
//! | [`engine`] | the interpreter: parallelism, fan-out, retries, conditions |
//! | [`faults`] | faults injected by the stand-ins (5xx, 429, timeouts) |
//! | [`follow`] | `reflow status --follow` against a real run |
//! | [`gitops`] | `reflow plan` / `reflow apply` against a dev server |
//! | [`graph`] | `reflow graph` of every pipeline |
//! | [`heartbeats`] | heartbeats that cancel and resume long steps |
//! | [`load`] | many meetings at once, CI-sized |
//! | [`meeting`] | the whole meeting path with real speech |
//! | [`metrics`] | `/metrics` after a run with a retried step |
//! | [`page`] | the progress page in headless Chromium |
//! | [`pipeline_versions`] | pipeline versions registered by `reflow apply`, planned step by step; runs name one |
//! | [`process`] | `reflow process <dir>` interrupted and resumed |
//! | [`progress_events`] | `PIPELINE_PROGRESS` from a real run |
//! | [`replay`] | recorded histories still replay (determinism guard) |
//! | [`rerun`] | memoized re-runs: nothing changed runs nothing paid; a changed step runs with its dependents only |
//! | [`rerun_effects`] | a re-run notifies no one unless asked; a deleted or consent-denied transcript's memos are purged |
//! | [`runbook`] | every operator command of `docs/runbook.md`, run as written |
//! | [`security`] | attacks on the API, webhooks, worker and Temporal history |
//! | [`summaries`] | the LLM chain against an OpenAI-compatible stand-in |
//! | [`transcription`] | `transcribe_track` and `merge_transcripts` on the HTTP backends |
//! | [`upgrade`] | a rolling upgrade with meetings in flight |

mod alerts;
mod api;
mod audio_steps;
mod backfill;
mod backlog;
mod bad_input;
mod chaos;
mod compose;
mod conductor;
mod conductor_import;
mod conductor_meeting;
mod conductor_sdk;
mod daily_client;
mod db;
mod demo;
mod dev;
mod embedded;
mod engine;
mod faults;
mod follow;
mod gitops;
mod graph;
mod heartbeats;
mod load;
mod meeting;
mod metrics;
mod page;
mod pipeline_versions;
mod process;
mod progress_events;
mod replay;
mod rerun;
mod rerun_effects;
mod runbook;
mod security;
mod shadow;
mod summaries;
mod transcription;
mod upgrade;
