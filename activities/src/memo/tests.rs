//! Unit tests of [`super`] (`memo.rs`).

use super::*;

#[test]
fn objects_and_costs_are_read_from_results() {
    let out = json!([
        {"padded_key": "t/p0.webm", "duration_ms": 3},
        {"words_key": "t/w.json", "usage": {"backend": "x", "calls": 1, "audio_s": 12.5,
          "backend_ms": 1}},
        {"mp3": {"keys": 1}, "padded_keys": ["t/a", "t/b"], "usage": {"backend": "l",
          "calls": 1, "prompt_tokens": 10, "completion_tokens": 5, "backend_ms": 1}},
        {"usage": {"backend": "l", "calls": 1, "prompt_tokens": 99, "backend_ms": 1,
          "from_checkpoint": true}}
    ]);
    assert_eq!(
        objects_of(&out),
        vec!["t/a", "t/b", "t/p0.webm", "t/w.json"]
    );
    let paid = paid_of(&out);
    assert_eq!(paid.transcription_s, 12.5);
    assert_eq!(paid.llm_tokens, 15);
}
