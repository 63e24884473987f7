//! `reflow process <dir>`: the meeting pipeline on a directory of per-speaker audio files —
//! the embedded default main job.
//!
//! Every audio file of the directory is one track (any format the decoder reads: WebM/Opus,
//! Ogg, WAV, FLAC, MP3). Offsets and names come from, in order: an optional
//! `recording.json` (`{"tracks": [{"file", "name", "offset_s"}], "duration_s"}`), a
//! Daily-style file name (`{rec_ms}-{participant}-cam-audio-{track_ms}`, offset from the name),
//! or the file's stem as the speaker's name and offset 0 (WebM files may still carry theirs).
//! The files are copied into the recordings store, a transcript row is created, and
//! `DiarizationPipeline` runs with `source_platform: "local"` (no Daily API).
//!
//! Only files inside the directory are read: a track that `recording.json` names, or a file the
//! directory lists, is resolved (symlinks followed) and refused when it lies outside, so a
//! manifest naming `/home/u/.aws/credentials`, `../../x` or a link to either cannot copy it
//! into the store.

use std::path::{Path, PathBuf};

use activities::daily::TrackKey;
use activities::db::transcripts::NewTranscript;
use activities::storage::Storage;
use serde::Deserialize;
use serde_json::{Value, json};

/// Extensions taken as audio tracks.
pub const AUDIO: [&str; 8] = ["webm", "ogg", "opus", "wav", "flac", "mp3", "mka", "oga"];

/// Why a directory cannot be processed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Reading the directory or a file.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// `recording.json` is not what it should be.
    #[error("{path}: {message}")]
    Manifest {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// Nothing to process.
    #[error("{0}: no audio files ({exts})", exts = AUDIO.join(", "))]
    Empty(String),
    /// A file of the directory is a link to one outside it.
    #[error("{path} resolves to {target}, outside {dir}: only files inside the directory are read")]
    Outside {
        /// The file as listed.
        path: String,
        /// Where it leads.
        target: String,
        /// The directory.
        dir: String,
    },
    /// Storage or database.
    #[error("{0}")]
    Store(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    tracks: Vec<ManifestTrack>,
    #[serde(default)]
    duration_s: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestTrack {
    file: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    offset_s: Option<f64>,
}

/// One track of a local source.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalTrack {
    /// The file.
    pub path: PathBuf,
    /// Speaker name.
    pub name: Option<String>,
    /// Offset in seconds, when declared.
    pub offset_s: Option<f64>,
}

/// Where `path` leads (symlinks followed), when that is inside `root` (canonical already).
enum Resolved {
    /// A file inside `root`, canonical.
    Inside(PathBuf),
    /// Somewhere outside `root`.
    Outside(PathBuf),
    /// Nothing there.
    Missing,
}

fn resolve(root: &Path, path: &Path) -> Resolved {
    match path.canonicalize() {
        Ok(real) if real.starts_with(root) => Resolved::Inside(real),
        Ok(real) => Resolved::Outside(real),
        Err(_) => Resolved::Missing,
    }
}

/// The tracks of `dir` and the declared duration. Every track is a file inside `dir`
/// (resolved, symlinks followed): one outside is refused.
pub fn scan(dir: &Path) -> Result<(Vec<LocalTrack>, Option<f64>), LocalError> {
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| LocalError::Io { path, source }
    };
    let root = dir.canonicalize().map_err(io(dir))?;
    let manifest_path = dir.join("recording.json");
    let manifest: Manifest = if manifest_path.exists() {
        let text = std::fs::read_to_string(&manifest_path).map_err(io(&manifest_path))?;
        serde_json::from_str(&text).map_err(|e| LocalError::Manifest {
            path: manifest_path.display().to_string(),
            message: e.to_string(),
        })?
    } else {
        Manifest::default()
    };
    if !manifest.tracks.is_empty() {
        // The manifest's order and names win; every file it names must exist, inside `dir`.
        let mut tracks = Vec::new();
        for (i, t) in manifest.tracks.iter().enumerate() {
            let refuse = |why: String| LocalError::Manifest {
                path: manifest_path.display().to_string(),
                message: format!("tracks[{i}].file {:?} {why}", t.file),
            };
            let path = match resolve(&root, &dir.join(&t.file)) {
                Resolved::Inside(p) if p.is_file() => p,
                Resolved::Inside(_) => return Err(refuse("is not a file".into())),
                Resolved::Missing => return Err(refuse("does not exist".into())),
                Resolved::Outside(_) => {
                    return Err(refuse(format!(
                        "is outside {}: only files inside the directory are read",
                        root.display()
                    )));
                }
            };
            tracks.push(LocalTrack {
                path,
                name: t.name.clone(),
                offset_s: t.offset_s,
            });
        }
        return Ok((tracks, manifest.duration_s));
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
    {
        let listed = entry.path();
        let name = listed.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let audio = TrackKey::parse(name).is_some()
            || listed
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| AUDIO.contains(&e.to_ascii_lowercase().as_str()));
        if !audio {
            continue;
        }
        match resolve(&root, &listed) {
            Resolved::Inside(p) if p.is_file() => files.push(p),
            Resolved::Outside(target) => {
                return Err(LocalError::Outside {
                    path: listed.display().to_string(),
                    target: target.display().to_string(),
                    dir: root.display().to_string(),
                });
            }
            // A directory named like audio, or a dangling link: not a track.
            Resolved::Inside(_) | Resolved::Missing => {}
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(LocalError::Empty(dir.display().to_string()));
    }
    let tracks = files
        .into_iter()
        .map(|path| {
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let daily = TrackKey::parse(file);
            let stem = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned);
            LocalTrack {
                name: if daily.is_some() { None } else { stem },
                offset_s: daily.map(|k| k.offset_s()),
                path,
            }
        })
        .collect();
    Ok((tracks, manifest.duration_s))
}

/// The recording id `reflow process` gives a source (`--force` adds a random suffix to it).
pub fn recording_id(source: &str) -> String {
    format!("local-{source}")
}

/// The workflow id of the run `reflow process` starts for a recording.
pub fn workflow_id(recording_id: &str) -> String {
    format!("process-{recording_id}")
}

/// The workflow id of the run `reflow process <dir>` starts or resumes (without `--force`).
pub fn run_of(dir: &Path) -> Result<String, LocalError> {
    let (tracks, _) = scan(dir)?;
    Ok(workflow_id(&recording_id(&source_id(dir, &tracks)?)))
}

/// A local source's identity: a hash of `recording.json` (when there is one) and of every
/// track's file name and content, so the same directory run again is the same recording (its
/// run is found and resumed) and a changed file is a new one. 16 hex digits.
pub fn source_id(dir: &Path, tracks: &[LocalTrack]) -> Result<String, LocalError> {
    use sha2::{Digest, Sha256};
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| LocalError::Io { path, source }
    };
    let mut hash = Sha256::new();
    let manifest = dir.join("recording.json");
    if manifest.exists() {
        hash.update(std::fs::read(&manifest).map_err(io(&manifest))?);
    }
    let mut files: Vec<&Path> = tracks.iter().map(|t| t.path.as_path()).collect();
    files.sort();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        let mut file = std::fs::File::open(f).map_err(io(f))?;
        std::io::copy(&mut file, &mut hash).map_err(io(f))?;
    }
    Ok(hex::encode(&hash.finalize()[..8]))
}

/// Copy the tracks into `recordings` under `local/{recording_id}/`, create the transcript
/// and return the pipeline input.
pub async fn prepare(
    tracks: &[LocalTrack],
    duration_s: Option<f64>,
    recording_id: &str,
    transcript_id: &str,
    recordings: &Storage,
    db: &activities::db::Db,
) -> Result<Value, LocalError> {
    let mut inputs = Vec::new();
    for t in tracks {
        let file = t
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("track");
        let key = format!("local/{recording_id}/{file}");
        recordings
            .put_file(&key, &t.path)
            .await
            .map_err(|e| LocalError::Store(e.to_string()))?;
        inputs.push(json!({"s3_key": key, "name": t.name, "offset_s": t.offset_s}));
    }
    db.create_transcript(&NewTranscript {
        id: transcript_id.to_owned(),
        share_mode: Some("public".into()),
        source_language: Some("en".into()),
        ..Default::default()
    })
    .await
    .map_err(|e| LocalError::Store(e.to_string()))?;
    Ok(json!({
        "recording_id": recording_id,
        "transcript_id": transcript_id,
        "source_platform": "local",
        "tracks": inputs,
        "language": "en",
        "duration_s": duration_s,
    }))
}

/// Title, recap, topics, decisions and next steps of a finished transcript, for the terminal.
pub fn summary(t: &activities::db::transcripts::Transcript) -> Result<String, LocalError> {
    let topics: Vec<activities::transcript::Topic> =
        serde_json::from_str(&t.topics).map_err(|e| LocalError::Store(e.to_string()))?;
    let mut out = format!(
        "\n{}\n\n{}\n\nTopics:\n",
        t.title.as_deref().unwrap_or("(no title)"),
        t.short_summary.as_deref().unwrap_or("(no summary)")
    );
    for topic in &topics {
        out.push_str(&format!(
            "  [{}] {}\n",
            activities::zulip::clock(topic.timestamp),
            topic.title
        ));
    }
    let items: Value = t
        .action_items
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or(Value::Null);
    out.push_str(&action_items_text(&items));
    out.push('\n');
    Ok(out)
}

/// The decisions and next steps of `items` as the terminal shows them after a run: a heading
/// each, and "none recorded" when the meeting recorded none (an empty list is an answer too).
fn action_items_text(items: &Value) -> String {
    let mut out = String::new();
    for (key, heading) in [("decisions", "Decisions"), ("next_steps", "Next steps")] {
        out.push_str(&format!("\n{heading}:\n"));
        match items.get(key).map(|_| bullets(items, key)) {
            Some(lines) if !lines.is_empty() => {
                for line in lines {
                    out.push_str(&format!("  {line}\n"));
                }
            }
            Some(_) => out.push_str("  none recorded\n"),
            None => out.push_str("  (not produced)\n"),
        }
    }
    out
}

/// The decisions and next steps of `items` (§4.12's shape) as Markdown sections; empty when
/// there are none.
pub fn action_items_markdown(items: &Value) -> String {
    let mut out = String::new();
    for (key, heading) in [("decisions", "Decisions"), ("next_steps", "Next steps")] {
        let lines = bullets(items, key);
        if !lines.is_empty() {
            out.push_str(&format!("\n# {heading}\n\n"));
            for line in lines {
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    out
}

/// One bullet per decision (`- what (who)`) or next step (`- task (who, when)`) of `items[key]`.
fn bullets(items: &Value, key: &str) -> Vec<String> {
    let list = items[key].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|item| {
            let (what, who, when) = if key == "decisions" {
                (item["decision"].as_str(), item["decided_by"].as_str(), None)
            } else {
                (
                    item["task"].as_str(),
                    item["assigned_to"].as_str(),
                    item["deadline"].as_str(),
                )
            };
            let mut line = format!("- {}", what.unwrap_or("").trim());
            match (who, when) {
                (Some(w), Some(d)) => line.push_str(&format!(" ({w}, {d})")),
                (Some(w), None) => line.push_str(&format!(" ({w})")),
                (None, Some(d)) => line.push_str(&format!(" ({d})")),
                (None, None) => {}
            }
            line
        })
        .collect()
}

/// Write `transcript.txt` (speaker-labelled, timestamped), `transcript.vtt` (both in the
/// conversation view: each speaker's utterances, ordered by start) and `summary.md` (title,
/// recap, summary, decisions and next steps) into
/// `out`; returns the text transcript's path.
pub fn write_outputs(
    t: &activities::db::transcripts::Transcript,
    out: &Path,
) -> Result<PathBuf, LocalError> {
    let parse = |what: &str, text: &str| -> Result<Value, LocalError> {
        serde_json::from_str(text).map_err(|e| LocalError::Store(format!("{what}: {e}")))
    };
    let topics: Vec<activities::transcript::Topic> =
        serde_json::from_value(parse("topics", &t.topics)?)
            .map_err(|e| LocalError::Store(e.to_string()))?;
    let people: Vec<activities::transcript::Participant> =
        serde_json::from_value(parse("participants", &t.participants)?)
            .map_err(|e| LocalError::Store(e.to_string()))?;
    let render = |format: &str| {
        activities::transcript::render_conversation(format, &topics, &people)
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .map_err(|e| LocalError::Store(e.to_string()))
    };
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| LocalError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let text = out.join("transcript.txt");
    std::fs::write(&text, render("text-timestamped")? + "\n").map_err(io(&text))?;
    let vtt = out.join("transcript.vtt");
    std::fs::write(&vtt, render("webvtt-named")?).map_err(io(&vtt))?;
    let md = out.join("summary.md");
    let mut body = format!(
        "# {}\n\n{}\n",
        t.title.as_deref().unwrap_or("Untitled meeting"),
        t.long_summary.as_deref().unwrap_or("")
    );
    let items: Value = t
        .action_items
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or(Value::Null);
    body.push_str(&action_items_markdown(&items));
    std::fs::write(&md, body).map_err(io(&md))?;
    Ok(text)
}

#[cfg(test)]
mod tests {

    #[test]
    fn summary_md_lists_decisions_and_next_steps_with_owners_and_dates() {
        let items = json!({
            "decisions": [{"decision": "Ship on Monday", "decided_by": "Ana"}],
            "next_steps": [
                {"task": "Send the budget report", "assigned_to": "Ben", "deadline": "Wednesday"},
                {"task": "Write job descriptions", "assigned_to": null, "deadline": null}
            ]
        });
        assert_eq!(
            action_items_markdown(&items),
            "\n# Decisions\n\n- Ship on Monday (Ana)\n\n# Next steps\n\n- Send the budget report (Ben, Wednesday)\n- Write job descriptions\n"
        );
        assert_eq!(action_items_markdown(&Value::Null), "");
    }

    #[test]
    fn the_printed_summary_lists_decisions_and_next_steps_or_says_there_were_none() {
        let items = json!({
            "decisions": [{"decision": "Ship on Monday", "decided_by": "Ana"}],
            "next_steps": [
                {"task": "Ben sends the budget report", "assigned_to": "Ben", "deadline": "Wednesday"}
            ]
        });
        assert_eq!(
            action_items_text(&items),
            "\nDecisions:\n  - Ship on Monday (Ana)\n\nNext steps:\n  - Ben sends the budget report (Ben, Wednesday)\n"
        );
        assert_eq!(
            action_items_text(&json!({"decisions": [], "next_steps": []})),
            "\nDecisions:\n  none recorded\n\nNext steps:\n  none recorded\n"
        );
        assert_eq!(
            action_items_text(&Value::Null),
            "\nDecisions:\n  (not produced)\n\nNext steps:\n  (not produced)\n"
        );
    }

    #[test]
    fn a_source_is_the_same_until_a_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ana.wav"), b"RIFF-ana").unwrap();
        std::fs::write(dir.path().join("ben.wav"), b"RIFF-ben").unwrap();
        let (tracks, _) = scan(dir.path()).unwrap();
        let first = source_id(dir.path(), &tracks).unwrap();
        assert_eq!(first.len(), 16);
        assert_eq!(source_id(dir.path(), &tracks).unwrap(), first);
        std::fs::write(dir.path().join("ben.wav"), b"RIFF-ben2").unwrap();
        assert_ne!(source_id(dir.path(), &tracks).unwrap(), first);
        std::fs::write(dir.path().join("ben.wav"), b"RIFF-ben").unwrap();
        std::fs::write(dir.path().join("recording.json"), br#"{"tracks": []}"#).unwrap();
        assert_ne!(
            source_id(dir.path(), &tracks).unwrap(),
            first,
            "the manifest counts"
        );
    }
    use super::*;

    #[test]
    fn names_and_offsets_come_from_the_manifest_then_daily_names_then_stems() {
        let dir = tempfile::tempdir().unwrap();
        let daily = "1768018896877-890c0eae-1d2f-4c3b-9a8e-0f1e2d3c4b5a-cam-audio-1768018898877";
        for f in ["ana.wav", "ben.ogg", daily, "notes.txt"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let (tracks, duration) = scan(dir.path()).unwrap();
        let seen: Vec<(Option<&str>, Option<f64>)> = tracks
            .iter()
            .map(|t| (t.name.as_deref(), t.offset_s))
            .collect();
        assert_eq!(
            seen,
            [(None, Some(2.0)), (Some("ana"), None), (Some("ben"), None)]
        );
        assert_eq!(duration, None);

        std::fs::write(
            dir.path().join("recording.json"),
            r#"{"tracks": [{"file": "ben.ogg", "name": "Ben", "offset_s": 1.5}], "duration_s": 60}"#,
        )
        .unwrap();
        let (tracks, duration) = scan(dir.path()).unwrap();
        assert_eq!(tracks.len(), 1);
        assert_eq!(
            (tracks[0].name.as_deref(), tracks[0].offset_s),
            (Some("Ben"), Some(1.5))
        );
        assert_eq!(duration, Some(60.0));

        std::fs::write(
            dir.path().join("recording.json"),
            r#"{"tracks": [{"file": "gone.wav"}]}"#,
        )
        .unwrap();
        let e = scan(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("recording.json") && e.contains("gone.wav"),
            "{e}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(
            scan(empty.path())
                .unwrap_err()
                .to_string()
                .contains("no audio files")
        );
    }

    #[test]
    fn only_files_inside_the_directory_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("meeting");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let outside = tmp.path().join("outside.webm");
        std::fs::write(&outside, b"secret").unwrap();
        std::fs::write(dir.join("ana.webm"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link.webm")).unwrap();
        std::os::unix::fs::symlink(dir.join("ana.webm"), dir.join("sub/alias.webm")).unwrap();
        let manifest = |file: &str| {
            std::fs::write(
                dir.join("recording.json"),
                json!({"tracks": [{"file": "ana.webm"}, {"file": file}]}).to_string(),
            )
            .unwrap();
            scan(&dir)
        };
        for file in [
            "../outside.webm".to_owned(),
            outside.display().to_string(),
            "link.webm".to_owned(),
            "sub/../../outside.webm".to_owned(),
        ] {
            let e = manifest(&file).unwrap_err().to_string();
            assert!(
                e.contains("recording.json")
                    && e.contains(&format!("tracks[1].file {file:?}"))
                    && e.contains("outside"),
                "{file}: {e}"
            );
        }
        // Inside, however it is spelled (a link that stays inside too).
        for file in ["sub/../ana.webm", "sub/alias.webm"] {
            let (tracks, _) = manifest(file).unwrap();
            assert_eq!(tracks[1].path, dir.canonicalize().unwrap().join("ana.webm"));
        }
        assert!(
            manifest("sub")
                .unwrap_err()
                .to_string()
                .contains("not a file")
        );
        // Without a manifest, a listed link that leads outside is refused too.
        std::fs::remove_file(dir.join("recording.json")).unwrap();
        let e = scan(&dir).unwrap_err().to_string();
        assert!(e.contains("link.webm") && e.contains("outside"), "{e}");
        std::fs::remove_file(dir.join("link.webm")).unwrap();
        let (tracks, _) = scan(&dir).unwrap();
        assert_eq!(tracks.len(), 1, "{tracks:?}");
    }
}
