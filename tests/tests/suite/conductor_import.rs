//! `reflow import conductor` on the Conductor definition this migration started from
//! (`tests/fixtures/conductor/seed-workflow.json`, issue 38 item 5; docs/conductor-import.md):
//!
//! - the import, run as a user runs it, writes a pipeline whose comments name, at each step,
//!   what did not map — the workflow type no worker registers, `generate_summary` and
//!   `generate_dynamic_fork_tasks` without an activity, the dynamic forks' members, response
//!   timeouts on activities that do not heartbeat — and prints the same on stderr, followed by
//!   what `reflow validate` says;
//! - the imported file plus the committed `seed.patch` (at most 25 lines) validates against the
//!   worker's registry;
//! - and runs a meeting on the dev server: a signed Daily webhook starts it through intake,
//!   stand-in backends answer, the transcript ends with every track's words, its MP3 and
//!   waveform, one Zulip post and one signed webhook.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reflow::import::conductor::{self, Definitions, Target};
use reflow_tests::meetings::{self, Backends, QUEUES, Stack, voices};
use workflow::pipeline::Run;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/conductor")
}

/// `reflow import conductor seed-workflow.json -o <dir>/seed.yaml`: the file and stderr.
fn import_seed(dir: &Path) -> (String, String) {
    let out = dir.join("seed.yaml");
    let run = Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"))
        .args(["import", "conductor"])
        .arg(fixtures().join("seed-workflow.json"))
        .arg("-o")
        .arg(&out)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run reflow import");
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{stderr}");
    (std::fs::read_to_string(&out).unwrap(), stderr)
}

/// Apply a unified diff (`diff -u` output; `-U0` hunks too) to `text`. Every context and
/// removed line must be where the hunk says: a changed import fails here, loudly.
fn apply_patch(text: &str, patch: &str) -> String {
    let orig: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = Vec::new();
    let mut pos = 0;
    let mut lines = patch.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(header) = line.strip_prefix("@@ -") else {
            continue;
        };
        let old = header.split(' ').next().unwrap();
        let (start, count) = match old.split_once(',') {
            Some((s, c)) => (s.parse::<usize>().unwrap(), c.parse::<usize>().unwrap()),
            None => (old.parse::<usize>().unwrap(), 1),
        };
        // A pure insertion (`-N,0`) goes after line N; otherwise the hunk starts at line N.
        let at = if count == 0 { start } else { start - 1 };
        assert!(at >= pos, "hunks out of order at {line}");
        out.extend(orig[pos..at].iter().map(|l| l.to_string()));
        pos = at;
        while let Some(l) = lines.next_if(|l| !l.starts_with("@@")) {
            if let Some(added) = l.strip_prefix('+') {
                out.push(added.to_owned());
            } else if let Some(kept) = l.strip_prefix(' ').or_else(|| l.strip_prefix('-')) {
                assert_eq!(
                    orig.get(pos).copied(),
                    Some(kept),
                    "the patch no longer applies to the import at line {}",
                    pos + 1
                );
                if l.starts_with(' ') {
                    out.push(kept.to_owned());
                }
                pos += 1;
            }
        }
    }
    out.extend(orig[pos..].iter().map(|l| l.to_string()));
    out.join("\n") + "\n"
}

/// The imported seed with `seed.patch` applied, and the patch's length in lines.
fn patched(imported: &str) -> (String, usize) {
    let patch = std::fs::read_to_string(fixtures().join("seed.patch")).unwrap();
    (apply_patch(imported, &patch), patch.lines().count())
}

#[test]
fn the_seed_imports_naming_what_it_could_not_map_at_the_step_and_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, stderr) = import_seed(dir.path());

    // The command writes what the library imports.
    let defs = Definitions::load(&fixtures().join("seed-workflow.json"), None).unwrap();
    let registry = reflow_tests::registry();
    let imported = conductor::import(&defs, &Target::new(registry.catalog())).unwrap();
    assert_eq!(yaml, imported.yaml);

    // Named on stderr: the three, and the rest.
    for line in [
        "unmapped: pipeline: no workflow type daily_diarization_pipeline is registered",
        "unmapped: step generate_summary: no activity generate_summary is registered",
        "unmapped: task definition generate_dynamic_fork_tasks: no task of the workflow runs it, and no activity generate_dynamic_fork_tasks is registered",
        "unmapped: step fork_padding: its member task and inputs are chosen at run time (dynamicForkTasksParam track_keys, which no inputParameter gives)",
        "unmapped: step fork_transcription: its member task and inputs are chosen at run time (dynamicForkTasksParam padded_urls,",
        "unmapped: step get_recording: responseTimeoutSeconds 30: activity get_recording does not heartbeat",
        "unmapped: step mixdown_tracks: input padded_keys (required by mixdown_tracks)",
        "unmapped: step merge_transcripts: input words_keys (required by merge_transcripts)",
        "unmapped: step finalize: input padded_keys (required by finalize)",
        "unmapped: task definition pad_track: no task of the workflow runs it (activity pad_track is registered",
        "note: pipeline: 11 steps had no inputParameters",
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(line)),
            "{line}\n---\n{stderr}"
        );
    }
    let unmapped = stderr
        .lines()
        .filter(|l| l.starts_with("unmapped: "))
        .count();
    assert_eq!(unmapped, imported.unmapped().count());
    assert!(
        stderr.contains("seed.yaml: 20 things not mapped; `reflow validate` says:"),
        "{stderr}"
    );
    assert!(stderr.contains("generate_summary"), "{stderr}");

    // The same at each step, as comments.
    let step = |id: &str| {
        let start = yaml
            .find(&format!("  - id: {id}\n"))
            .unwrap_or_else(|| panic!("no step {id}:\n{yaml}"));
        let before = yaml[..start].rfind("\n\n").unwrap_or(0);
        let end = yaml[start..].find("\n\n").map_or(yaml.len(), |e| start + e);
        yaml[before..end].to_owned()
    };
    assert!(
        step("generate_summary").contains("# unmapped: no activity generate_summary is registered"),
        "{}",
        step("generate_summary")
    );
    assert!(step("mixdown_tracks").contains("heartbeat: 300s"));
    assert!(step("get_recording").contains("# unmapped: responseTimeoutSeconds 30"));
    assert!(
        step("finalize").contains("      started_at: ${workflow.started_at}\n"),
        "{}",
        step("finalize")
    );
    assert!(yaml.contains("# unmapped: no workflow type daily_diarization_pipeline"));
    assert!(yaml.contains("# unmapped: task definition generate_dynamic_fork_tasks"));
}

#[test]
fn the_imported_seed_and_a_patch_of_at_most_25_lines_validate_against_the_worker_s_registry() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, _) = import_seed(dir.path());
    let (text, lines) = patched(&yaml);
    assert!(lines <= 25, "seed.patch has {lines} lines");
    let registry = reflow::registry::Registry::builtin();
    let p = workflow::parse_and_validate("seed.yaml", &text, registry.catalog())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!((p.name.as_str(), p.version), ("DiarizationPipeline", 1));
    let runs: Vec<(&str, String, bool)> = p
        .main
        .steps
        .iter()
        .map(|s| {
            let Run::Activity(a) = &s.run else {
                panic!("{} is a child step", s.id)
            };
            (s.id.as_str(), a.clone(), s.for_each.is_some())
        })
        .collect();
    assert_eq!(
        runs.iter()
            .map(|r| (r.0, r.1.as_str(), r.2))
            .collect::<Vec<_>>(),
        [
            ("get_recording", "get_recording", false),
            ("get_participants", "get_participants", false),
            ("fork_padding", "pad_track", true),
            ("mixdown_tracks", "mixdown_tracks", false),
            ("generate_waveform", "generate_waveform", false),
            ("fork_transcription", "transcribe_track", true),
            ("merge_transcripts", "merge_transcripts", false),
            ("detect_topics", "detect_topics", false),
            ("generate_title", "generate_title", false),
            ("generate_summary", "extract_subjects", false),
            ("finalize", "finalize", false),
            ("cleanup_consent", "cleanup_consent", false),
            ("post_zulip", "post_zulip", false),
            ("send_webhook", "send_webhook", false),
        ]
    );
    let step = |id: &str| p.main.step(id).unwrap();
    assert_eq!(
        step("finalize").needs,
        ["generate_title", "generate_summary"]
    );
    assert_eq!(step("send_webhook").options.retry.maximum_attempts, 31);
    assert_eq!(step("mixdown_tracks").options.heartbeat_ms, Some(300_000));
    assert_eq!(step("get_recording").options.heartbeat_ms, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_imported_seed_and_its_patch_run_a_meeting() {
    let _one = meetings::exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let (yaml, _) = import_seed(dir.path());
    let (text, _) = patched(&yaml);
    let pipeline =
        workflow::parse_and_validate("seed.yaml", &text, reflow_tests::registry().catalog())
            .unwrap_or_else(|e| panic!("{e}"));

    let db_url = format!("sqlite://{}/reflow.db", dir.path().display());
    let backends = Backends::start(Duration::from_millis(50)).await;
    let stack = Stack::start(
        &db_url,
        reflow_tests::client().await,
        backends,
        false,
        pipeline,
    )
    .await;
    let queues: Vec<String> = QUEUES.iter().map(|q| q.to_string()).collect();
    let _worker = reflow_tests::InProcessWorker::start_with(&queues, stack.services(100));
    let m = stack.meeting("cimport", 0, &voices(dir.path(), 2)).await;
    let (tid, out) = stack.run(&m).await;
    out.unwrap_or_else(|e| panic!("the imported pipeline's meeting fails: {e}"));

    let t = stack.db.transcript(&tid).await.unwrap();
    assert_eq!(t.status, "ended");
    // The seed's `detect_topics` was one task; reflow's only plans the chunks (the chunk and
    // save steps are not in the seed), so this run has no topics, hence no title.
    assert_eq!(
        (t.topics.as_str(), t.title.as_deref().unwrap_or("")),
        ("[]", "")
    );
    let words: Vec<activities::transcript::Word> = serde_json::from_slice(
        &stack
            .storage
            .get(&format!("{tid}/pipeline/words.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    for speaker in 0..2 {
        assert!(
            words.iter().any(|w| w.speaker == speaker),
            "track {speaker} has words: {words:?}"
        );
    }
    assert!(
        stack
            .storage
            .exists(&format!("{tid}/audio.mp3"))
            .await
            .unwrap()
    );
    assert!(
        stack
            .storage
            .exists(&format!("{tid}/audio.json"))
            .await
            .unwrap()
    );
    assert_eq!(stack.backends.zulip_posts().get(&tid), Some(&1));
    let hooks = stack.backends.webhooks();
    assert_eq!(hooks.get(&tid).map(|h| h.0.len()), Some(1), "{hooks:?}");

    // Every step of the imported pipeline ran, each fan-out once per track.
    let spans = meetings::activity_spans(&stack.client, std::slice::from_ref(&m.workflow_id)).await;
    let count = |a: &str| spans.iter().filter(|s| s.activity == a).count();
    assert_eq!((count("pad_track"), count("transcribe_track")), (2, 2));
    for a in [
        "get_recording",
        "get_participants",
        "mixdown_tracks",
        "generate_waveform",
        "merge_transcripts",
        "detect_topics",
        "generate_title",
        "extract_subjects",
        "finalize",
        "cleanup_consent",
        "post_zulip",
        "send_webhook",
    ] {
        assert_eq!(count(a), 1, "{a}");
    }
}
