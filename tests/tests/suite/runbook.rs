//! Every operator command of `docs/runbook.md` ("Operator commands", the blocks marked
//! `<!-- tested: … -->`) run exactly as written, through `bash`, against the real dev server,
//! with the outcome it promises checked: a run found by its recording id, the failing step and
//! its cause shown, a step in a one-hour backoff retried at once, failed runs listed by where
//! they stopped, a failed run resumed from its failed step (earlier steps not re-run), a run
//! re-run from a named step, and a run cancelled. And "Changing the pipeline" (its blocks
//! `pipeline-*`), run in a copy of the repository's `pipelines/` whose `generate_title` was
//! edited: validate and plan list the change, apply registers it, a 10 % ramp, a rollback and a
//! promotion are planned as the runbook shows and leave the rollout it says.

use std::path::Path;
use std::time::Duration;

use reflow::runs;
use reflow_tests::runbook::bin_dir;
use reflow_tests::{events, journal, read_journal, started, wait_for};
use serde_json::json;
use temporalio_client::{UntypedWorkflow, WorkflowDescribeOptions};

use super::pipeline_versions::{lines_under, next_header};

/// Run the block `name` with `vars` against the suite's server; its stdout.
async fn run(bin: &Path, name: &str, vars: &[(&str, &str)]) -> String {
    let mut all = vec![("TEMPORAL_ADDRESS", reflow_tests::server().address.as_str())];
    all.extend_from_slice(vars);
    reflow_tests::runbook::run(bin, name, &all).await
}

/// Run the block until its output contains `needle` (visibility is eventually consistent).
async fn run_until(bin: &Path, name: &str, vars: &[(&str, &str)], needle: &str) -> String {
    let mut last = String::new();
    for _ in 0..40 {
        last = run(bin, name, vars).await;
        if last.contains(needle) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("block {name} never showed {needle:?}; last output:\n{last}")
}

fn count(j: &Path, key: &str, event: &str) -> usize {
    events(&read_journal(j), key, event).len()
}

async fn status(c: &temporalio_client::Client, id: &str) -> String {
    let d = c
        .get_workflow_handle::<UntypedWorkflow>(id)
        .describe(WorkflowDescribeOptions::default())
        .await
        .unwrap();
    format!("{:?}", d.status())
}

async fn wait_status(c: &temporalio_client::Client, id: &str, want: &str) {
    wait_for(&format!("{id} {want}"), Duration::from_secs(60), || async {
        (status(c, id).await == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_runbook_command_does_what_the_runbook_says() {
    let (_q, tp, _worker, c) = started("runbook", "operator.yaml").await;
    let bin = bin_dir();
    let j = journal("runbook");
    let id = "runbook-op-1";
    let rec = "rec-runbook-1";
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": j, "recording_id": rec}),
        id,
    )
    .await
    .unwrap();
    let vars = [("WORKFLOW_ID", id), ("RECORDING_ID", rec)];

    // Find the run by its recording id.
    run_until(&bin, "find-run", &vars, id).await;

    // The latch failed once and now waits an hour: describe shows the step and its cause.
    wait_for("latch failed once", Duration::from_secs(30), || async {
        (count(&j, "latch", "fail") == 1).then_some(())
    })
    .await;
    let described = run_until(&bin, "describe", &vars, "is not ready").await;
    assert!(described.contains("latch"), "{described}");

    // The cause is fixed; the step is retried now instead of in an hour.
    std::fs::write(format!("{}.latch.open", j.display()), "").unwrap();
    let mut v = vars.to_vec();
    v.push(("ACTIVITY_ID", "latch"));
    run(&bin, "activity-reset", &v).await;
    wait_for("latch done", Duration::from_secs(30), || async {
        (count(&j, "latch", "end") == 1).then_some(())
    })
    .await;

    // The gate fails for good: the run fails, found by where it stopped.
    wait_status(&c, id, "Failed").await;
    let mut v = vars.to_vec();
    v.push(("STEP", "gate"));
    let listed = run_until(&bin, "failed-runs", &v, id).await;
    assert_eq!(
        listed.matches(id).count(),
        2,
        "both queries list it:\n{listed}"
    );
    let described = run(&bin, "describe", &vars).await;
    assert!(
        described.contains(r#"step \"gate\" failed"#)
            || described.contains(r#"step "gate" failed"#),
        "{described}"
    );

    // Resume from the failed step once it is fixed: first and latch are not run again.
    std::fs::write(format!("{}.gate.open", j.display()), "").unwrap();
    run(&bin, "workflow-reset", &vars).await;
    wait_status(&c, id, "Completed").await;
    assert_eq!(count(&j, "first", "start"), 1, "first kept");
    assert_eq!(
        count(&j, "latch", "start"),
        2,
        "latch kept (its two attempts)"
    );
    assert_eq!(count(&j, "gate", "end"), 1);

    // Re-run from the latch: it and the gate run again, first does not.
    let mut v = vars.to_vec();
    v.push(("STEP", "latch"));
    run(&bin, "rerun-from-step", &v).await;
    wait_for("latch re-run", Duration::from_secs(30), || async {
        (count(&j, "gate", "end") == 2).then_some(())
    })
    .await;
    wait_status(&c, id, "Completed").await;
    assert_eq!(count(&j, "first", "start"), 1);
    assert_eq!(count(&j, "latch", "start"), 3);

    // Cancel a run whose latch waits out its backoff.
    let j2 = journal("runbook-cancel");
    let id2 = "runbook-op-2";
    runs::start(
        &c,
        &tp.pipeline,
        json!({"journal": j2, "recording_id": "rec-runbook-2"}),
        id2,
    )
    .await
    .unwrap();
    wait_for("latch failed once", Duration::from_secs(30), || async {
        (count(&j2, "latch", "fail") == 1).then_some(())
    })
    .await;
    run(&bin, "cancel", &[("WORKFLOW_ID", id2)]).await;
    wait_status(&c, id2, "Canceled").await;
}

/// `reflow` (the suite's build, from `bin`) with `args` in `dir`; its output, whatever the exit.
fn reflow_in(bin: &Path, dir: &Path, vars: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin.join("reflow"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

/// The repository's meeting pipeline with `generate_title`'s `with:` written otherwise and its
/// start-to-close 240 s, as version `version`.
fn title_edited(version: u32) -> String {
    let yaml = reflow_tests::meetings::with_version(reflow::intake::DIARIZATION_YAML, version);
    let title = "    start_to_close: 300s\n    emits: [FINAL_TITLE]\n    with: {transcript_id: \"${input.transcript_id}\"}\n";
    assert_eq!(
        yaml.matches(title).count(),
        1,
        "generate_title as the test knows it"
    );
    yaml.replace(
        title,
        "    start_to_close: 240s\n    emits: [FINAL_TITLE]\n    with: {transcript_id: \"${ input.transcript_id }\"}\n",
    )
}

/// The registered versions of the meeting pipeline.
async fn versions(db: &activities::db::Db) -> Vec<u32> {
    let mut v: Vec<u32> = db
        .pipeline_versions(Some("DiarizationPipeline"))
        .await
        .unwrap()
        .iter()
        .map(|r| r.decode().unwrap().pipeline.version)
        .collect();
    v.sort_unstable();
    v
}

/// `docs/runbook.md`, "Changing the pipeline": every block as written, in order, on a copy of
/// the repository's `pipelines/` with `generate_title` edited (its version bumped), against the suite's
/// dev server and a fresh database; plan and apply print what the runbook shows, and the
/// registered versions and rollout are what each step says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_pipeline_validates_plans_ramps_rolls_back_and_promotes_as_written() {
    use workflow::pipeline::rollout::{Rollout, bucket};
    let _ = reflow_tests::client().await;
    let bin = bin_dir();
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path().join("pipelines");
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    let db_url = format!("sqlite://{}/reflow.db", repo.path().display());
    // The repository's version, and the edit's.
    let (cur, next) = (
        reflow_tests::meetings::repository_version(),
        reflow_tests::meetings::repository_version() + 1,
    );
    let (cur_s, next_s) = (cur.to_string(), next.to_string());
    let db = activities::db::Db::connect(&db_url).await.unwrap();
    let data = repo.path().join("data").display().to_string();
    let vars = [
        ("TEMPORAL_ADDRESS", reflow_tests::server().address.as_str()),
        ("DATABASE_URL", db_url.as_str()),
        ("REFLOW_DATA_DIR", data.as_str()),
        ("DAILY_API_KEY", ""),
        ("REFLOW_DEPLOYMENT_NAME", ""),
        ("CURRENT", cur_s.as_str()),
        ("CANDIDATE", next_s.as_str()),
    ];
    let block = |name: &'static str| {
        let (bin, vars, root) = (bin.clone(), vars, repo.path().to_owned());
        async move { reflow_tests::runbook::run_in(&bin, name, &vars, &root).await }
    };
    let rollout = || async { db.pipeline_rollout("DiarizationPipeline").await.unwrap() };
    let only = |current| Rollout {
        current,
        ..Rollout::default()
    };

    // The cluster as it was: the repository's version applied, and current.
    let first = block("pipeline-register").await;
    assert!(
        first.contains(&format!("+ pipeline DiarizationPipeline v{cur}"))
            && first.contains(&format!(
                "+ rollout DiarizationPipeline: create (current v{cur})"
            )),
        "{first}"
    );
    assert_eq!(
        (versions(&db).await, rollout().await),
        (vec![cur], Some(only(cur)))
    );

    // 1. Edited without a bump: plan refuses, naming the version to use.
    let file = dir.join("diarization.yaml");
    std::fs::write(&file, title_edited(cur)).unwrap();
    let refused = reflow_in(&bin, repo.path(), &vars, &["plan"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains(&format!(
                "pipeline DiarizationPipeline v{cur}: the definition changed"
            ))
            && stderr.contains(&format!("bump `version:` to {next}")),
        "{stderr}"
    );

    // 2. Bumped: validate passes, plan lists exactly the edited step and its two fields, then
    // what a re-run on the new version reuses (everything but the title and what reads it).
    std::fs::write(&file, title_edited(next)).unwrap();
    let planned = block("pipeline-plan").await;
    assert!(
        planned.contains(&format!(
            "pipelines/diarization.yaml: ok — DiarizationPipeline v{next}"
        )),
        "{planned}"
    );
    let head = next_header(&db, &title_edited(next)).await;
    assert_eq!(
        lines_under(&planned, &head, 2),
        [
            "    ~ step DiarizationPipeline.generate_title: with (~transcript_id), timeouts (start_to_close 300s → 240s)",
            &format!(
                "    reusable on v{next} (the step and everything upstream unchanged): \
                 get_recording, get_participants, pad_track, process_tracks, merge_transcripts, \
                 mixdown_tracks, generate_waveform, detect_topics, detect_chunk_topic, \
                 save_topics, extract_subjects, generate_detailed_summary, generate_recap, \
                 identify_action_items, on_failure, TrackProcessing.transcribe_track"
            ),
        ],
        "{planned}"
    );
    assert!(planned.contains("1 change(s) to apply"), "{planned}");
    assert_eq!(versions(&db).await, [cur], "plan registers nothing");

    // 3. Registered; the rollout still names the old version, and a second apply changes
    // nothing.
    let applied = block("pipeline-register").await;
    assert!(applied.contains(&head), "{applied}");
    assert_eq!(
        (versions(&db).await, rollout().await),
        (vec![cur, next], Some(only(cur)))
    );
    let again = block("pipeline-register").await;
    assert!(again.contains("nothing to change"), "{again}");

    // 4. A 10 % ramp: planned, applied, and a recording under it gets the new version.
    let ramp = format!(
        "~ rollout DiarizationPipeline: update (current v{cur} → current v{cur}, candidate v{next} on 10 %)"
    );
    let ramped = block("pipeline-ramp").await;
    assert_eq!(
        ramped.matches(&ramp).count(),
        2,
        "plan, then apply:\n{ramped}"
    );
    let ten = Rollout {
        current: cur,
        candidate: Some(next),
        ramp: 10,
        ..Rollout::default()
    };
    assert_eq!(rollout().await, Some(ten.clone()));
    let id = |i: usize| format!("rec-{i}");
    let under = (0..1000).map(id).find(|r| bucket(r) < 10).unwrap();
    let over = (0..1000).map(id).find(|r| bucket(r) >= 10).unwrap();
    assert_eq!(
        (
            ten.version_for(&under, None).0,
            ten.version_for(&over, None).0
        ),
        (next, cur)
    );

    // 6. Roll back: the old version current, no candidate.
    let back = block("pipeline-rollback").await;
    let line = format!(
        "~ rollout DiarizationPipeline: update (current v{cur}, candidate v{next} on 10 % → current v{cur})"
    );
    assert_eq!(back.matches(&line).count(), 2, "plan, then apply:\n{back}");
    assert_eq!(rollout().await, Some(only(cur)));

    // 5. Ramped again, then promoted: the new version current, no candidate.
    block("pipeline-ramp").await;
    assert_eq!(rollout().await, Some(ten));
    let promoted = block("pipeline-promote").await;
    let line = format!(
        "~ rollout DiarizationPipeline: update (current v{cur}, candidate v{next} on 10 % → current v{next})"
    );
    assert_eq!(
        promoted.matches(&line).count(),
        2,
        "plan, then apply:\n{promoted}"
    );
    assert_eq!(
        (versions(&db).await, rollout().await),
        (vec![cur, next], Some(only(next)))
    );
    let settled = block("pipeline-plan").await;
    assert!(
        settled.contains("no changes: the cluster matches the repository"),
        "{settled}"
    );
}
