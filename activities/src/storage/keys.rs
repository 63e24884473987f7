//! Object keys of the pipeline (docs/contracts/pipeline.md §1), in one place.

use super::StorageError;

/// `{transcript_id}/audio.mp3`: the mixdown.
pub fn audio_mp3(transcript_id: &str) -> String {
    format!("{transcript_id}/audio.mp3")
}

/// `{transcript_id}/audio.json`: the waveform.
pub fn waveform(transcript_id: &str) -> String {
    format!("{transcript_id}/audio.json")
}

/// `{transcript_id}/pipeline/padded_{i}.webm`: a padded track.
pub fn padded_track(transcript_id: &str, track: usize) -> String {
    format!("{transcript_id}/pipeline/padded_{track}.webm")
}

/// `{transcript_id}/pipeline/words_{i}.json`: one track's words.
pub fn track_words(transcript_id: &str, track: usize) -> String {
    format!("{transcript_id}/pipeline/words_{track}.json")
}

/// `{transcript_id}/pipeline/words.json`: the merged words.
pub fn merged_words(transcript_id: &str) -> String {
    format!("{transcript_id}/pipeline/words.json")
}

/// `{transcript_id}/pipeline/summary_input.md`.
pub fn summary_input(transcript_id: &str) -> String {
    format!("{transcript_id}/pipeline/summary_input.md")
}

/// `{scope}/pipeline/checkpoints/epoch`: the checkpoint generation of a transcript; a new
/// value (a reprocess) makes every earlier checkpoint unreachable.
pub fn checkpoint_epoch(scope: &str) -> String {
    format!("{scope}/pipeline/checkpoints/epoch")
}

/// `{scope}/pipeline/checkpoints/{step}-{hash}.json`: a step's stored result.
pub fn checkpoint(scope: &str, step: &str, hash: &str) -> String {
    format!("{scope}/pipeline/checkpoints/{step}-{hash}.json")
}

/// `{scope}/pipeline/partial/{step}-{hash}.json`: a step's work in progress for one input.
pub fn partial(scope: &str, step: &str, hash: &str) -> String {
    format!("{scope}/pipeline/partial/{step}-{hash}.json")
}

/// Reject keys that would escape the store or that S3 and file systems treat differently.
pub fn check(key: &str) -> Result<(), StorageError> {
    let bad = |reason| {
        Err(StorageError::BadKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.starts_with('/') {
        return bad("it must be relative (no leading `/`)");
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad("it has an empty, `.` or `..` segment");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return bad("it has a control character or a backslash");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_keys() {
        assert_eq!(audio_mp3("t1"), "t1/audio.mp3");
        assert_eq!(padded_track("t1", 2), "t1/pipeline/padded_2.webm");
        assert_eq!(track_words("t1", 0), "t1/pipeline/words_0.json");
    }

    #[test]
    fn escaping_keys_are_refused() {
        for k in ["", "/abs", "a/../b", "a//b", "./a", "a\\b", "a\nb"] {
            assert!(check(k).is_err(), "{k:?}");
        }
        assert!(check("t1/pipeline/padded_0.webm").is_ok());
    }
}
