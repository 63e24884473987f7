//! Unit tests of [`super`] (`intake.rs`).

use super::*;

#[test]
fn the_folder_timestamp_is_the_recording_time() {
    assert_eq!(
        recorded_at("acme/standup-20260110042117/1768018896877-890c0eae-1d2f-4c3b-9a8e-0f1e2d3c4b5a-cam-audio-1768018914565")
            .as_deref(),
        Some("2026-01-10T04:21:17Z")
    );
    assert_eq!(recorded_at("acme/standup/x"), None);
    assert_eq!(recorded_at("acme/standup-20261399999999/x"), None);
}

#[test]
fn the_built_in_pipeline_validates() {
    let p = load_pipeline(None, crate::registry::Registry::builtin().catalog()).unwrap();
    assert_eq!(p.name, "DiarizationPipeline");
    assert!(p.on_failure.is_some());
}
