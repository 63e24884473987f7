//! Pipeline versions (issue 36) against a real Temporal dev server:
//!
//! - `reflow apply` registers the repository's definitions (the meeting pipeline as v2), a
//!   second apply changes nothing, and a meeting then runs on the registered version: its input
//!   names `{pipeline, version, hash}`, its first workflow task resolves the definition, and the
//!   history replays;
//! - two steps changed: without a version bump plan and apply refuse; with it, `reflow plan`
//!   lists exactly those steps and fields, then the steps a re-run could reuse;
//! - a workflow started by hand with an inline definition, or naming a hash nobody registered,
//!   runs no step and says why (naming the hash);
//! - the recorded histories from before references carry their definition inline and replay,
//!   and a schedule created then (its action carrying the definition) is planned as an update
//!   and rewritten to name its version;
//! - `reflow process` (and `reflow worker`, `reflow dev`) against a fresh external dev server
//!   that `reflow apply` never prepared stops at once, naming what is missing and `reflow
//!   apply`; after `reflow apply` the namespace has it;
//! - a rollout (a 50 % ramp to v3 and a room override) decides each recording's version at
//!   intake, shown in `PipelineVersion` and the Conductor JSON's `workflowVersion`;
//! - a 50 % ramp over 20 recordings, all run to the end: each gets the version the documented
//!   bucket function gives, shown in its input, `PipelineVersion`, `workflowVersion` and the
//!   step metrics' `version` label;
//! - a rollback while a candidate meeting is in flight (held in its transcription): new
//!   meetings get the previous version, the held one finishes on the candidate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reflow::gitops::{self, Change, Desired, DesiredPipelines, Kind};
use reflow::runs;
use reflow_tests::meetings::{self, Backends, Stack};
use reflow_tests::{InProcessWorker, client, journal, read_journal, registry};
use serde_json::{Value, json};
use temporalio_client::{UntypedWorkflow, WorkflowStartOptions};
use workflow::interpreter::resolve::{INLINE_REFUSED, PIPELINE_NOT_REGISTERED, Pinned};
use workflow::pipeline::rollout::{Rollout, Rollouts};
use workflow::{Pipeline, RunInput, payload};

fn repo_pipelines() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines")
}

/// A fresh SQLite database of this test: its URL and the connection.
async fn fresh_db(dir: &Path) -> (String, activities::db::Db) {
    let url = format!("sqlite://{}/reflow.db", dir.display());
    let db = activities::db::Db::connect(&url).await.unwrap();
    (url, db)
}

fn desired(db: &activities::db::Db, dir: &Path) -> Desired {
    Desired {
        pipelines: Some(DesiredPipelines::declared(db.clone(), dir, registry().catalog()).unwrap()),
        ..Desired::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_registers_the_repository_s_versions_once_and_a_meeting_runs_on_the_registered_one() {
    let _one = meetings::exclusive().await;
    let tmp = tempfile::tempdir().unwrap();
    let (db_url, db) = fresh_db(tmp.path()).await;
    let c = client().await;
    let d = desired(&db, &repo_pipelines());
    let v = meetings::repository_version();

    let planned = gitops::plan(&c, &d).await.unwrap();
    let created: Vec<&str> = planned
        .iter()
        .filter(|c| c.kind() == Kind::Pipeline && matches!(c, Change::Create { .. }))
        .map(Change::id)
        .collect();
    assert_eq!(
        created,
        [
            "PollDailyRecordings v1",
            &format!("DiarizationPipeline v{v}"),
            "DirectoryDigest v1"
        ],
        "{planned:?}"
    );
    assert_eq!(gitops::apply(&c, &d).await.unwrap(), planned);
    let again = gitops::apply(&c, &d).await.unwrap();
    assert!(!again.iter().any(Change::is_change), "{again:?}");
    assert!(
        again
            .iter()
            .any(|c| c.to_string() == format!("  pipeline DiarizationPipeline v{v}: unchanged"))
    );
    let rows = db
        .pipeline_versions(Some("DiarizationPipeline"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let registered = rows[0].decode().unwrap();
    assert_eq!(
        registered.git_commit.as_deref().map(str::len),
        Some(40),
        "registered from the repository's commit"
    );

    // A meeting, through Daily intake, on the registered production definition.
    let pipeline: Pipeline = registered.pipeline.clone();
    let stack = Stack::start(
        &db_url,
        c.clone(),
        Backends::start(Duration::from_millis(50)).await,
        false,
        pipeline.clone(),
    )
    .await;
    let queues: Vec<String> = meetings::QUEUES.iter().map(|q| q.to_string()).collect();
    let _worker = InProcessWorker::start_with(&queues, stack.services(100));
    let voices = meetings::voices(tmp.path(), 2);
    let m = stack.meeting("versions", 0, &voices).await;
    let (_, out) = stack.run(&m).await;
    out.unwrap();

    // The run named the version; its first workflow task resolved the definition.
    let run = reflow::history::load(&c, &m.workflow_id).await.unwrap();
    assert_eq!(
        (
            &run.input["pipeline"],
            &run.input["version"],
            &run.input["hash"]
        ),
        (
            &json!("DiarizationPipeline"),
            &json!(meetings::repository_version()),
            &json!(pipeline.hash)
        )
    );
    assert_eq!(run.pipeline().as_ref(), Some(&pipeline));
    assert_eq!(run.children.len(), 2);
    for child in &run.children {
        assert_eq!(
            (&child.input["hash"], &child.input["graph"]),
            (&json!(pipeline.hash), &json!("TrackProcessing")),
            "a child names the same version and its graph"
        );
        let kid = reflow::history::load(&c, &child.workflow_id).await.unwrap();
        assert_eq!(
            kid.pipeline(),
            Some(pipeline.for_child("TrackProcessing")),
            "a child resolves only its own graph"
        );
    }
    reflow_tests::replay_live(&c, &[&m.workflow_id]).await;
}

/// The header `reflow plan` prints for DiarizationPipeline's change from the repository's
/// version `v` (as `db` registered it) to `next_yaml` (version `v + 1`):
/// `~ pipeline DiarizationPipeline v4: v3 → v4 (…v3's hash → …v4's)`.
pub(super) async fn next_header(db: &activities::db::Db, next_yaml: &str) -> String {
    let v = meetings::repository_version();
    let v2 = db
        .pipeline_versions(Some("DiarizationPipeline"))
        .await
        .unwrap()[0]
        .hash
        .clone();
    let v3 = workflow::parse_and_validate("diarization.yaml", next_yaml, registry().catalog())
        .unwrap()
        .hash;
    format!(
        "~ pipeline DiarizationPipeline v{n}: v{v} → v{n} ({} → {})",
        &v2[..12],
        &v3[..12],
        n = v + 1
    )
}

/// The `n` lines `plan` printed under `header` (its changes, then what a re-run reuses).
pub(super) fn lines_under<'p>(plan: &'p str, header: &str, n: usize) -> Vec<&'p str> {
    let at = plan.find(header).unwrap_or_else(|| panic!("{plan}"));
    plan[at..].lines().skip(1).take(n).collect()
}

/// The repository's meeting pipeline with `mixdown_tracks` on another queue and
/// `generate_title` given 240 s, as version `version`.
fn two_steps_changed(version: u32) -> String {
    let yaml = meetings::with_version(reflow::intake::DIARIZATION_YAML, version);
    let mixdown = "    task_queue: reflow-mixdown\n";
    let title = "    when: ${detect_topics.chunk_count}\n    task_queue: reflow-llm\n    start_to_close: 300s\n    emits: [FINAL_TITLE]\n";
    assert_eq!(yaml.matches(mixdown).count(), 1);
    assert_eq!(yaml.matches(title).count(), 1);
    yaml.replace(mixdown, "    task_queue: reflow-audio\n")
        .replace(title, &title.replace("300s", "240s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_definition_must_bump_its_version_and_plans_step_by_step_with_what_a_rerun_reuses()
 {
    let tmp = tempfile::tempdir().unwrap();
    let (_, db) = fresh_db(tmp.path()).await;
    let c = client().await;
    let dir = tmp.path().join("pipelines");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("diarization.yaml"),
        reflow::intake::DIARIZATION_YAML,
    )
    .unwrap();
    gitops::apply(&c, &desired(&db, &dir)).await.unwrap();
    let v = meetings::repository_version();

    // Two steps changed, the version kept: refused by plan and by apply.
    std::fs::write(dir.join("diarization.yaml"), two_steps_changed(v)).unwrap();
    for refused in [
        gitops::plan(&c, &desired(&db, &dir)).await,
        gitops::apply(&c, &desired(&db, &dir)).await,
    ] {
        let e = refused.unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "pipeline DiarizationPipeline v{v}: the definition changed"
            )) && e.contains(&format!("bump `version:` to {}", v + 1)),
            "{e}"
        );
    }
    assert_eq!(db.pipeline_versions(None).await.unwrap().len(), 2);

    // Bumped: `reflow plan` (the CLI) lists exactly those two steps and fields, then the
    // steps a re-run on the new version could reuse (everything not downstream of them).
    std::fs::write(dir.join("diarization.yaml"), two_steps_changed(v + 1)).unwrap();
    let reflow = |command: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"))
            .args([command, "--pipelines"])
            .arg(&dir)
            .env("TEMPORAL_ADDRESS", &reflow_tests::server().address)
            .env("REFLOW_DATA_DIR", tmp.path())
            .env_remove("DATABASE_URL")
            .env_remove("DAILY_API_KEY")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "reflow {command}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let plan = reflow("plan");
    assert_eq!(
        lines_under(&plan, &next_header(&db, &two_steps_changed(v + 1)).await, 3),
        [
            "    ~ step DiarizationPipeline.mixdown_tracks: queue (reflow-mixdown → reflow-audio)",
            "    ~ step DiarizationPipeline.generate_title: timeouts (start_to_close 300s → 240s)",
            &format!(
                "    reusable on v{} (the step and everything upstream unchanged): get_recording, \
                 get_participants, pad_track, process_tracks, merge_transcripts, detect_topics, \
                 detect_chunk_topic, save_topics, extract_subjects, generate_detailed_summary, \
                 generate_recap, identify_action_items, on_failure, TrackProcessing.transcribe_track",
                v + 1
            ),
        ],
        "{plan}"
    );
    assert!(
        plan.contains("  pipeline PollDailyRecordings v1: unchanged"),
        "{plan}"
    );

    // Applied once; a second apply is a no-op, and plan says so.
    let applied = reflow("apply");
    assert!(
        applied.contains(&format!("~ pipeline DiarizationPipeline v{}:", v + 1)),
        "{applied}"
    );
    let again = reflow("apply");
    assert!(
        again.contains(&format!(
            "  pipeline DiarizationPipeline v{}: unchanged",
            v + 1
        )) && again.contains("nothing to change"),
        "{again}"
    );
    assert_eq!(
        db.pipeline_versions(Some("DiarizationPipeline"))
            .await
            .unwrap()
            .len(),
        2
    );
}

/// A run's history as JSON (the failure types it records are in it).
async fn history_json(c: &temporalio_client::Client, id: &str) -> String {
    let json = c
        .get_workflow_handle::<UntypedWorkflow>(id)
        .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .unwrap();
    String::from_utf8(json).unwrap()
}

/// Start `input` by hand as an `EngineTest` run on `queue`, bound to `id` as reflow binds its
/// own (what these runs are refused for is their definition).
async fn start_by_hand(c: &temporalio_client::Client, queue: &str, id: &str, input: &RunInput) {
    let input = RunInput {
        workflow_id: Some(id.to_owned()),
        ..input.clone()
    };
    c.start_workflow(
        UntypedWorkflow::new("EngineTest"),
        payload::to_raw(&input),
        WorkflowStartOptions::new(queue.to_owned(), id.to_owned()).build(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_by_hand_with_an_inline_or_unregistered_definition_runs_no_step_and_says_why()
{
    let q = "by-hand";
    let _worker = InProcessWorker::start(&[q.to_owned()]);
    let c = client().await;
    let j = journal(q);
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/chain.yaml"))
            .unwrap()
            .replace("__QUEUE__", q);
    // Validated, never registered: the definition someone with access to the namespace wrote.
    let own = workflow::parse_and_validate("chain.yaml", &text, registry().catalog()).unwrap();
    let input = |pinned: Pinned| RunInput {
        pinned,
        graph: None,
        input: json!({"journal": j}),
        parent: None,
        search_attributes: Default::default(),
        workflow_id: None,
        scheduled: false,
        lean: 0,
    };

    start_by_hand(
        &c,
        q,
        "by-hand-inline",
        &input(Pinned::Inline {
            pipeline: Box::new(own.clone()),
        }),
    )
    .await;
    let e = runs::wait(&c, "by-hand-inline")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("must name a registered pipeline version") && e.contains(&own.hash[..12]),
        "{e}"
    );
    assert!(
        history_json(&c, "by-hand-inline")
            .await
            .contains(INLINE_REFUSED)
    );

    start_by_hand(
        &c,
        q,
        "by-hand-unregistered",
        &input(Pinned::Reference(own.reference())),
    )
    .await;
    let e = runs::wait(&c, "by-hand-unregistered")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("is not registered")
            && e.contains(&format!("(hash {})", own.hash))
            && e.contains("reflow apply"),
        "{e}"
    );
    assert!(
        history_json(&c, "by-hand-unregistered")
            .await
            .contains(PIPELINE_NOT_REGISTERED)
    );

    // No step ran: nothing in the journal, no activity in either history but the resolver.
    assert!(read_journal(&j).is_empty());
    for id in ["by-hand-inline", "by-hand-unregistered"] {
        let run = reflow::history::load(&c, id).await.unwrap();
        assert!(run.steps.is_empty() && run.children.is_empty(), "{id}");
    }
    reflow_tests::replay_live(&c, &["by-hand-inline", "by-hand-unregistered"]).await;

    // Registered, the same reference runs.
    reflow_tests::register(&own);
    runs::start(
        &c,
        &own,
        json!({"journal": j, "slow_ms": 10}),
        "by-hand-registered",
    )
    .await
    .unwrap();
    let out = runs::wait(&c, "by-hand-registered").await.unwrap();
    assert_eq!(out["items"], json!([10, 20, 30]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_from_before_references_carry_their_definition_inline_and_replay() {
    let mut inline = 0;
    for entry in std::fs::read_dir(reflow_tests::histories_dir()).unwrap() {
        let path = entry.unwrap().path();
        let json = std::fs::read_to_string(&path).unwrap();
        let history: Value = serde_json::from_str(&json).unwrap();
        let started =
            &history["events"][0]["attributes"]["WorkflowExecutionStartedEventAttributes"];
        let Some(data) = started["input"]["payloads"][0]["data"].as_str() else {
            continue;
        };
        use base64::Engine as _;
        let input: Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap(),
        )
        .unwrap();
        if input["pipeline"].is_object() {
            inline += 1;
            let history = temporalio_client::WorkflowHistory::from_json(json.as_bytes()).unwrap();
            reflow_tests::replay(history)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
    assert!(inline >= 10, "{inline} histories with an inline definition");
}

/// A `temporal server start-dev` of this test's own, as an operator would start one: no
/// search attributes, nothing applied. Killed when dropped.
struct FreshServer {
    child: std::process::Child,
    address: String,
}

impl FreshServer {
    fn start() -> FreshServer {
        let port = reflow::temporal::free_port().unwrap();
        let http = reflow::temporal::free_port().unwrap();
        let metrics = reflow::temporal::free_port().unwrap();
        let child = Command::new("setpriv")
            .arg("--pdeathsig=SIGKILL")
            .arg(reflow_tests::temporal_cli())
            .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1"])
            .args([
                "--port",
                &port.to_string(),
                "--http-port",
                &http.to_string(),
            ])
            .args([
                "--metrics-port",
                &metrics.to_string(),
                "--log-level",
                "error",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        FreshServer {
            child,
            address: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for FreshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_on_a_cluster_that_was_never_applied_stops_at_once_naming_reflow_apply() {
    let server = FreshServer::start();
    let c = reflow::temporal::connect(&server.address, "default", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        !gitops::missing_search_attributes(&c)
            .await
            .unwrap()
            .is_empty()
    );
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("meeting");
    std::fs::create_dir_all(&src).unwrap();
    let voice = meetings::talking(tmp.path(), 2);
    std::fs::copy(&voice.path, src.join("ana.webm")).unwrap();
    let env = [
        ("TEMPORAL_ADDRESS", server.address.clone()),
        (
            "REFLOW_DATA_DIR",
            tmp.path().join("data").display().to_string(),
        ),
    ];

    // Every command that starts runs refuses at once, in one line, before any run.
    let pipelines = repo_pipelines().display().to_string();
    let source = src.display().to_string();
    let commands: [&[&str]; 3] = [
        &["process", &source, "--http", "127.0.0.1:0"],
        &["worker", "--pipelines", &pipelines],
        &["dev", "--pipelines", &pipelines, "--http", "127.0.0.1:0"],
    ];
    for args in commands {
        let t0 = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "reflow {}: {stderr}", args[0]);
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "reflow {}, at once: {:?}",
            args[0],
            t0.elapsed()
        );
        let refusal = stderr
            .lines()
            .find(|l| l.contains("lacks reflow's search attributes"))
            .unwrap_or_else(|| panic!("reflow {}: {stderr}", args[0]));
        assert!(
            refusal.contains("PipelineName") && refusal.contains("run `reflow apply` first"),
            "reflow {}: {refusal}",
            args[0]
        );
        assert!(
            !stderr.contains("BadSearchAttributes"),
            "reflow {}, refused before any run: {stderr}",
            args[0]
        );
    }

    // `reflow apply` prepares it: the attributes exist, and a second apply changes nothing.
    let apply = || {
        let out = Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"))
            .args(["apply", "--pipelines"])
            .arg(repo_pipelines())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("DAILY_API_KEY")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = apply();
    assert!(first.contains("+ search attribute PipelineName"), "{first}");
    assert!(
        first.contains(&format!(
            "+ pipeline DiarizationPipeline v{}",
            meetings::repository_version()
        )),
        "{first}"
    );
    assert!(
        gitops::missing_search_attributes(&c)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(apply().contains("nothing to change"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_created_before_references_is_rewritten_to_name_its_version() {
    use temporalio_client::schedules::{
        CreateScheduleOptions, ScheduleAction, ScheduleOverlapPolicy, ScheduleSpec,
    };
    let c = client().await;
    let poll = workflow::parse_and_validate(
        "daily-poll.yaml",
        gitops::DAILY_POLL_YAML,
        registry().catalog(),
    )
    .unwrap();
    let id = format!("poll-inline-{}", std::process::id());
    // The action as reflow wrote it before references: the definition inline.
    let inline = RunInput {
        pinned: Pinned::Inline {
            pipeline: Box::new(poll.clone()),
        },
        graph: None,
        input: json!({}),
        parent: None,
        search_attributes: Default::default(),
        workflow_id: None,
        scheduled: false,
        lean: 0,
    };
    c.create_schedule(
        id.clone(),
        CreateScheduleOptions::builder()
            .action(ScheduleAction::start_workflow(
                UntypedWorkflow::new(poll.name.clone()),
                payload::to_raw(&inline),
                "reflow".to_owned(),
                id.clone(),
            ))
            .spec(ScheduleSpec::from_interval(Duration::from_secs(180)))
            .overlap_policy(ScheduleOverlapPolicy::Skip)
            .paused(true)
            .build(),
    )
    .await
    .unwrap();
    let d = Desired {
        schedules: vec![gitops::DesiredSchedule {
            id: id.clone(),
            every: Duration::from_secs(180),
            pipeline: poll.clone(),
        }],
        ..Desired::default()
    };
    let planned = gitops::plan(&c, &d).await.unwrap();
    assert_eq!(
        planned,
        [Change::Update {
            kind: Kind::Schedule,
            id: id.clone(),
            diffs: vec![format!(
                "pipeline: {} inline → {}",
                &poll.hash[..12],
                &poll.hash[..12]
            )],
        }]
    );
    gitops::apply(&c, &d).await.unwrap();
    let again = gitops::plan(&c, &d).await.unwrap();
    assert!(!again.iter().any(Change::is_change), "{again:?}");
    c.get_schedule_handle(id)
        .delete(Default::default())
        .await
        .unwrap();
}

/// The `PipelineVersion` search attribute of `id`'s run (as its description shows it).
async fn pipeline_version_attribute(c: &temporalio_client::Client, id: &str) -> Option<i64> {
    let d = c
        .get_workflow_handle::<UntypedWorkflow>(id)
        .describe(temporalio_client::WorkflowDescribeOptions::default())
        .await
        .unwrap();
    let fields = d
        .raw_description
        .workflow_execution_info?
        .search_attributes?
        .indexed_fields;
    serde_json::from_slice::<Value>(&fields.get("PipelineVersion")?.data)
        .ok()?
        .as_i64()
}

/// The candidate of the rollout tests: the stack's v2 ([`meetings::short_timeouts`]) as v3,
/// its title step given a heartbeat.
fn candidate_v3() -> Pipeline {
    let yaml = meetings::with_version(
        &meetings::short_timeouts_yaml(),
        meetings::SHORT_TIMEOUTS_VERSION + 1,
    )
    .replacen(
        "    emits: [FINAL_TITLE]\n",
        "    emits: [FINAL_TITLE]\n    heartbeat: 60s\n",
        1,
    );
    workflow::parse_and_validate("diarization.yaml", &yaml, registry().catalog()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_decides_each_recording_s_version_once_at_intake() {
    use workflow::pipeline::rollout::bucket;
    let _one = meetings::exclusive().await;
    let (stack, _worker) = meetings::in_process(Duration::from_millis(50), false).await;
    let c = stack.client.clone();
    // v2 (the stack's, registered) and a v3 that gives the title less time.
    let v3 = candidate_v3();
    // Recordings `ramp-rec-{i}` of rooms `ramp{i}`: one whose bucket is under a 50 % ramp, one
    // over it, and one over it whose room is overridden to v3.
    let id = |i: usize| format!("ramp-rec-{i:04}");
    let under = (0..100).find(|&i| bucket(&id(i)) < 50).unwrap();
    let mut over = (0..100).filter(|&i| bucket(&id(i)) >= 50);
    let (over, overridden) = (over.next().unwrap(), over.next().unwrap());
    let rollout = Rollout {
        current: 2,
        candidate: Some(3),
        ramp: 50,
        rooms: [(format!("ramp{overridden}"), 3)].into(),
        shadow: None,
    };
    let d = Desired {
        pipelines: Some(DesiredPipelines::of(
            stack.db.clone(),
            vec![v3.clone()],
            registry().catalog(),
            None,
        )),
        rollouts: Some(gitops::DesiredRollouts {
            db: stack.db.clone(),
            declared: Rollouts {
                pipelines: [("DiarizationPipeline".to_owned(), rollout.clone())].into(),
            },
        }),
        ..Desired::default()
    };
    let planned: Vec<String> = gitops::plan(&c, &d)
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        planned.contains(&format!(
            "+ rollout DiarizationPipeline: create (current v2, candidate v3 on 50 %, room ramp{overridden} → v3)"
        )),
        "{planned:?}"
    );
    gitops::apply(&c, &d).await.unwrap();
    assert!(
        !gitops::plan(&c, &d)
            .await
            .unwrap()
            .iter()
            .any(Change::is_change)
    );

    let tmp = tempfile::tempdir().unwrap();
    let voices = meetings::voices(tmp.path(), 1);
    let mut expected = Vec::new();
    for (i, version) in [(under, 3), (over, 2), (overridden, 3)] {
        let m = stack.meeting("ramp", i, &voices).await;
        assert_eq!(m.recording_id, id(i));
        assert_eq!(
            rollout
                .version_for(&m.recording_id, Some(&format!("ramp{i}")))
                .0,
            version
        );
        stack.deliver(&m).await;
        expected.push((m.workflow_id, version));
    }
    for (wf, version) in &expected {
        tokio::time::timeout(Duration::from_secs(300), runs::wait(&c, wf))
            .await
            .expect("the run ends")
            .unwrap_or_else(|e| panic!("{wf}: {e}"));
        let run = reflow::history::load(&c, wf).await.unwrap();
        assert_eq!(run.input["version"], json!(version), "{wf}");
        assert_eq!(
            pipeline_version_attribute(&c, wf).await,
            Some(i64::from(*version)),
            "{wf}"
        );
        let w: Value = reqwest::get(format!("http://{}/api/workflow/{wf}", stack.api))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(w["workflowVersion"], json!(version), "{wf}");
    }
}

/// `rollout` of the meeting pipeline, with `candidate` registered, as `reflow apply` of a
/// `pipelines/rollout.yaml` declaring it would make it; what plan said before.
async fn apply_rollout(stack: &Stack, candidate: &Pipeline, rollout: &Rollout) -> Vec<String> {
    let d = Desired {
        pipelines: Some(DesiredPipelines::of(
            stack.db.clone(),
            vec![candidate.clone()],
            registry().catalog(),
            None,
        )),
        rollouts: Some(gitops::DesiredRollouts {
            db: stack.db.clone(),
            declared: Rollouts {
                pipelines: [("DiarizationPipeline".to_owned(), rollout.clone())].into(),
            },
        }),
        ..Desired::default()
    };
    let planned = gitops::plan(&stack.client, &d).await.unwrap();
    gitops::apply(&stack.client, &d).await.unwrap();
    planned.iter().map(ToString::to_string).collect()
}

/// Successful attempts of `step` of workflow type `pipeline`, by the `version` label, as the
/// stack's `GET /metrics` shows them.
async fn successes_by_version(stack: &Stack, pipeline: &str, step: &str) -> BTreeMap<u32, u64> {
    let text = reqwest::get(format!("http://{}/metrics", stack.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let label = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        Some(line[start..].split('"').next()?.to_owned())
    };
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("reflow_step_attempts_total{"))
    {
        if label(line, "pipeline").as_deref() != Some(pipeline)
            || label(line, "step").as_deref() != Some(step)
            || label(line, "outcome").as_deref() != Some("success")
        {
            continue;
        }
        let version = label(line, "version").expect("a version label");
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        *out.entry(version.parse().expect("a version number"))
            .or_default() += n as u64;
    }
    out
}

/// Wait (5 minutes at most) for `wf` to end, and check it ran on `version` everywhere it is
/// shown: its input, its children's, `PipelineVersion`, the Conductor JSON's
/// `workflowVersion`.
async fn ran_on(stack: &Stack, wf: &str, version: u32, hash: &str) {
    let c = &stack.client;
    tokio::time::timeout(Duration::from_secs(300), runs::wait(c, wf))
        .await
        .unwrap_or_else(|_| panic!("{wf} ends"))
        .unwrap_or_else(|e| panic!("{wf}: {e}"));
    let run = reflow::history::load(c, wf).await.unwrap();
    assert_eq!(
        (&run.input["version"], &run.input["hash"]),
        (&json!(version), &json!(hash)),
        "{wf}"
    );
    assert!(!run.children.is_empty(), "{wf}");
    for child in &run.children {
        assert_eq!(child.input["hash"], json!(hash), "{wf}: a child of it");
    }
    assert_eq!(
        pipeline_version_attribute(c, wf).await,
        Some(i64::from(version)),
        "{wf}"
    );
    let w: Value = reqwest::get(format!("http://{}/api/workflow/{wf}", stack.api))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(w["workflowVersion"], json!(version), "{wf}");
}

/// How many of `expected`'s runs are on each version.
fn count(expected: &[(String, u32)]) -> BTreeMap<u32, u64> {
    let mut n = BTreeMap::new();
    for (_, v) in expected {
        *n.entry(*v).or_default() += 1;
    }
    n
}

/// Issue 36's ramp, end to end: v3 on a 50 % ramp; 20 recordings through Daily intake, every
/// one run to the end. Each gets exactly what the documented function says — the candidate
/// when `bucket(recording id)` (the first 8 bytes of its sha256, big-endian, mod 100) is under
/// 50, else the current v2 — and shows it in its input and its children's,
/// `PipelineVersion`, the Conductor JSON's `workflowVersion`, and the step metrics' `version`
/// label (each version's successful attempts of the meeting's first step and of the tracks'
/// transcription are exactly its runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_50_percent_ramp_gives_each_of_20_recordings_its_bucket_s_version_everywhere_it_is_shown()
{
    use workflow::pipeline::rollout::bucket;
    let _one = meetings::exclusive().await;
    let (stack, _worker) = meetings::in_process(Duration::from_millis(50), false).await;
    let v2 = meetings::short_timeouts();
    let v3 = candidate_v3();
    let rollout = Rollout {
        current: 2,
        candidate: Some(3),
        ramp: 50,
        rooms: Default::default(),
        shadow: None,
    };
    apply_rollout(&stack, &v3, &rollout).await;

    let tmp = tempfile::tempdir().unwrap();
    let voices = meetings::voices(tmp.path(), 1);
    let mut expected: Vec<(String, u32)> = Vec::new();
    for i in 0..20 {
        let m = stack.meeting("twenty", i, &voices).await;
        let version = if bucket(&m.recording_id) < 50 { 3 } else { 2 };
        stack.deliver(&m).await;
        expected.push((m.workflow_id, version));
    }
    let per_version = count(&expected);
    assert_eq!(
        per_version.keys().copied().collect::<Vec<_>>(),
        [2, 3],
        "both versions among the 20: {expected:?}"
    );
    for (wf, version) in &expected {
        let hash = if *version == 3 { &v3.hash } else { &v2.hash };
        ran_on(&stack, wf, *version, hash).await;
    }
    assert_eq!(
        successes_by_version(&stack, "DiarizationPipeline", "get_recording").await,
        per_version,
        "the meeting's first step, by version"
    );
    assert_eq!(
        successes_by_version(&stack, "TrackProcessing", "transcribe_track").await,
        per_version,
        "a child's step (one track per meeting), by version"
    );
}

/// Rollback (issue 36): a candidate meeting is in flight, held in its transcription by a
/// stand-in that waits, when the rollout is applied back to v2 (`reflow plan` shows it). A
/// recording whose bucket is under the ramp — it would have had the candidate — now gets
/// v2, while the held meeting finishes on v3: its children, its attribute, its Conductor JSON
/// and the metrics of its steps run after the rollback still say v3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_gives_new_meetings_the_previous_version_while_a_candidate_in_flight_finishes_on_it()
 {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
    use workflow::pipeline::rollout::bucket;
    let _one = meetings::exclusive().await;
    // The transcription stand-in holds its first request for 10 s (the meeting's heartbeats
    // allow 15 s), then answers the rest at once.
    let mut backends = Backends::start(Duration::from_millis(50)).await;
    let hold = Arc::new(AtomicBool::new(true));
    let held = hold.clone();
    backends.asr = reflow_tests::standins::StandIn::start(move |r| match meetings::asr_key(r) {
        Some(key) => {
            let wait = if held.swap(false, Ordering::SeqCst) {
                Duration::from_secs(10)
            } else {
                Duration::from_millis(50)
            };
            reflow_tests::standins::Reply::After(
                wait,
                Box::new(reflow_tests::standins::Reply::Json(meetings::asr_words(
                    &key,
                ))),
            )
        }
        None => reflow_tests::standins::Reply::status(400),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (db_url, _) = fresh_db(dir.path()).await;
    let v2 = meetings::short_timeouts();
    let stack = Stack::start(&db_url, client().await, backends, false, v2.clone()).await;
    let queues: Vec<String> = meetings::QUEUES.iter().map(|q| q.to_string()).collect();
    let _worker = InProcessWorker::start_with(&queues, stack.services(100));
    let v3 = candidate_v3();
    let ramp = Rollout {
        current: 2,
        candidate: Some(3),
        ramp: 50,
        rooms: Default::default(),
        shadow: None,
    };
    apply_rollout(&stack, &v3, &ramp).await;

    // Two recordings under the ramp: the first starts on the candidate and is held.
    let voices = meetings::voices(dir.path(), 1);
    let mut under = (0..100).filter(|&i| bucket(&format!("back-rec-{i:04}")) < 50);
    let (first, second) = (under.next().unwrap(), under.next().unwrap());
    let candidate = stack.meeting("back", first, &voices).await;
    stack.deliver(&candidate).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while stack.backends.asr_call_count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the candidate reaches its transcription"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Roll back: the previous commit's rollout.yaml, current v2 and no candidate.
    let previous = Rollout {
        current: 2,
        candidate: None,
        ramp: 0,
        rooms: Default::default(),
        shadow: None,
    };
    let planned = apply_rollout(&stack, &v3, &previous).await;
    assert!(
        planned.contains(
            &"~ rollout DiarizationPipeline: update (current v2, candidate v3 on 50 % → current v2)"
                .to_owned()
        ),
        "{planned:?}"
    );
    let later = stack.meeting("back", second, &voices).await;
    stack.deliver(&later).await;
    let d = stack
        .client
        .get_workflow_handle::<UntypedWorkflow>(&candidate.workflow_id)
        .describe(temporalio_client::WorkflowDescribeOptions::default())
        .await
        .unwrap();
    assert_eq!(
        d.raw_description
            .workflow_execution_info
            .as_ref()
            .map(|i| i.status),
        Some(WorkflowExecutionStatus::Running as i32),
        "the candidate is still in flight after the rollback and the next start"
    );
    assert_eq!(
        stack.backends.asr_call_count(),
        1,
        "its transcription is still held"
    );

    ran_on(&stack, &later.workflow_id, 2, &v2.hash).await;
    ran_on(&stack, &candidate.workflow_id, 3, &v3.hash).await;
    let one_each = BTreeMap::from([(2, 1), (3, 1)]);
    assert_eq!(
        successes_by_version(&stack, "TrackProcessing", "transcribe_track").await,
        one_each,
        "the held transcription, ended after the rollback, counts for v3"
    );
    assert_eq!(
        successes_by_version(&stack, "DiarizationPipeline", "finalize").await,
        one_each
    );
}
