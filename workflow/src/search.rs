//! The custom search attributes reflow's runs carry (docs/contracts/observability.md §6), so an
//! operator finds a run in the Temporal Web UI or with `temporal workflow list --query
//! 'RecordingId="…"'`.
//!
//! A pipeline declares the run-specific ones (`search_attributes:` in its YAML, e.g.
//! `RecordingId: ${input.recording_id}`); the interpreter sets those plus the pipeline's name,
//! version and hash at the start of every run (children inherit their parent's), and keeps
//! `CurrentStep` on the steps in flight (or the step that failed). A namespace must have them
//! registered (`reflow apply`, or `--search-attribute` on the dev server), or a run's first
//! workflow task fails.

use temporalio_workflow::common::search_attributes::SearchAttributeKey;

/// The recording a run transcribes.
pub const RECORDING_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("RecordingId");
/// The transcript a run writes.
pub const TRANSCRIPT_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("TranscriptId");
/// The Daily room of the meeting.
pub const ROOM_NAME: SearchAttributeKey<String> = SearchAttributeKey::keyword("RoomName");
/// The pipeline definition's name.
pub const PIPELINE_NAME: SearchAttributeKey<String> = SearchAttributeKey::keyword("PipelineName");
/// The pipeline definition's version.
pub const PIPELINE_VERSION: SearchAttributeKey<i64> = SearchAttributeKey::int("PipelineVersion");
/// The pipeline definition's hash.
pub const PIPELINE_HASH: SearchAttributeKey<String> = SearchAttributeKey::keyword("PipelineHash");
/// The steps in flight, comma-separated; after a failure, the step that failed.
pub const CURRENT_STEP: SearchAttributeKey<String> = SearchAttributeKey::keyword("CurrentStep");

/// Every attribute reflow registers: name and Temporal type (`Keyword`, `Int`), in the form
/// `temporal operator search-attribute create --name N --type T` takes.
pub const ALL: &[(&str, &str)] = &[
    ("RecordingId", "Keyword"),
    ("TranscriptId", "Keyword"),
    ("RoomName", "Keyword"),
    ("PipelineName", "Keyword"),
    ("PipelineVersion", "Int"),
    ("PipelineHash", "Keyword"),
    ("CurrentStep", "Keyword"),
];

/// The attributes a pipeline may declare in `search_attributes:` (the others are the
/// interpreter's).
pub const DECLARABLE: &[SearchAttributeKey<String>] = &[RECORDING_ID, TRANSCRIPT_ID, ROOM_NAME];

/// The declarable key called `name`.
pub fn declarable(name: &str) -> Option<SearchAttributeKey<String>> {
    DECLARABLE.iter().find(|k| k.name() == name).cloned()
}
