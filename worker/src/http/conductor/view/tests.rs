//! Unit tests of the assembly of a run's Conductor JSON (the parent module).

use super::*;
use crate::history::Child;

fn production_run(status: WorkflowExecutionStatus) -> Run {
    let registry = crate::registry::Registry::builtin();
    let pipeline = crate::intake::load_pipeline(None, registry.catalog()).unwrap();
    let mut run = Run::new("diarization-x", &[], &Default::default());
    run.status = status;
    run.workflow_type = "DiarizationPipeline".into();
    run.run_id = "r1".into();
    run.input = json!({"pipeline": pipeline, "input": {"transcript_id": "t1"}});
    run
}

/// §3.2: the track children are started, none has scheduled its transcription yet.
#[test]
fn a_child_fan_out_has_its_fork_and_join_before_any_member_row() {
    let mut run = production_run(WorkflowExecutionStatus::Running);
    for i in 0..2 {
        run.children.push(Child {
            workflow_id: format!("diarization-x-track-{i}"),
            workflow_type: "TrackProcessing".into(),
            input: json!({"input": {"track_index": i}}),
            initiated_ms: 2000 + i,
            scheduled_by: 5,
            outcome: None,
        });
    }
    let main = Loaded {
        run,
        attempts: Vec::new(),
    };
    let w = workflow(&main, &[], true);
    let at = |r: &str| {
        w.tasks
            .iter()
            .position(|t| t.reference_task_name == r)
            .unwrap_or_else(|| panic!("no {r}"))
    };
    let (fork, join) = (at("fork_transcription"), at("join_transcription"));
    assert_eq!(join, fork + 1, "side by side while no member has a row");
    let (fork, join) = (&w.tasks[fork], &w.tasks[join]);
    assert_eq!(fork.status, TaskStatus::Completed);
    assert_eq!(
        fork.scheduled_time, 2000,
        "when the first child was initiated"
    );
    assert_eq!(join.status, TaskStatus::InProgress);
    let members = json!(["transcribe_track_0", "transcribe_track_1"]);
    assert_eq!(join.input_data["joinOn"], members);
    assert_eq!(fork.input_data["forkedTasks"], members);
    assert!(
        !w.tasks
            .iter()
            .any(|t| t.reference_task_name.starts_with("transcribe_track_"))
    );
    // The definition names each dynamic fork by its fork ref.
    let def = w
        .workflow_definition
        .tasks
        .iter()
        .find(|t| t.task_reference_name == "fork_transcription")
        .unwrap();
    assert_eq!(def.kind, "FORK_JOIN_DYNAMIC");
    assert_eq!(def.name, "fork_transcription");
    assert_eq!(
        def.dynamic_fork_tasks_param.as_deref(),
        Some("dynamicTasks")
    );
}

/// §3.2: no topic chunk to fan out over while the run goes on: the FORK and a COMPLETED
/// JOIN joining nothing, and the drawing shows the step skipped, not pending.
#[test]
fn a_fan_out_over_nothing_is_a_fork_and_a_completed_join() {
    let mut run = production_run(WorkflowExecutionStatus::Running);
    let local = |id: &str, at: i64, close: Option<crate::history::Close>| crate::history::Step {
        activity_id: id.into(),
        activity_type: id.into(),
        task_queue: String::new(),
        scheduled_ms: at,
        input: json!({}),
        start_to_close_s: 0,
        heartbeat_s: 0,
        max_attempts: 0,
        started: None,
        close,
        scheduled_by: 5,
        local: true,
    };
    run.steps.push(local(
        "detect_topics",
        1000,
        Some(crate::history::Close::Completed {
            at_ms: 1200,
            result: json!({"chunks": [], "chunk_count": 0}),
        }),
    ));
    run.steps.push(local("save_topics", 1300, None));
    let main = Loaded {
        run,
        attempts: Vec::new(),
    };
    let w = workflow(&main, &[], true);
    let at = |r: &str| {
        w.tasks
            .iter()
            .position(|t| t.reference_task_name == r)
            .unwrap_or_else(|| panic!("no {r}"))
    };
    let fork = at("fork_topic_chunks");
    assert_eq!(at("join_topic_chunks"), fork + 1);
    let join = &w.tasks[fork + 1];
    assert_eq!(join.status, TaskStatus::Completed);
    assert_eq!(join.input_data["joinOn"], json!([]));
    assert_eq!(w.tasks[fork].input_data["forkedTasks"], json!([]));
    assert_eq!(
        w.tasks[fork].scheduled_time, 1200,
        "decided when detect_topics ended"
    );
    assert!(
        !w.tasks
            .iter()
            .any(|t| t.reference_task_name.starts_with("detect_chunk_topic"))
    );
    let pipeline = main.run.pipeline().unwrap();
    let runs = super::super::graph::node_runs(&pipeline, &main.run, &[], &w);
    let key = (
        "DiarizationPipeline".to_owned(),
        "detect_chunk_topic".to_owned(),
    );
    assert_eq!(runs[&key].state, crate::graph::NodeState::Skipped);
}

fn attempt_row(generation: i64, attempt: i64, status: &str, at_s: u64) -> AttemptRow {
    let t = |s: u64| {
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
            .to_string()
    };
    AttemptRow {
        run_id: "r1".into(),
        activity_id: "pad_track_0".into(),
        generation,
        attempt,
        activity_type: "pad_track".into(),
        task_queue: "reflow-audio".into(),
        status: status.into(),
        started_at: t(at_s),
        ended_at: (status != "started").then(|| t(at_s + 1)),
        failure_type: (status == "failed").then(|| "HttpError".into()),
        failure_message: (status == "failed").then(|| "503".into()),
        worker_identity: Some("w".into()),
    }
}

/// §3, §3.3: an activity reset restarts Temporal's attempt count; the failed attempt keeps
/// its row, the new attempt 1 is a new task chained to it.
#[test]
fn attempts_stay_separate_across_an_activity_reset() {
    let step = crate::history::Step {
        activity_id: "pad_track_0".into(),
        activity_type: "pad_track".into(),
        task_queue: "reflow-audio".into(),
        scheduled_ms: 500,
        input: json!({"track_index": 0}),
        start_to_close_s: 60,
        heartbeat_s: 15,
        max_attempts: 4,
        started: None,
        close: None,
        scheduled_by: 5,
        local: false,
    };
    let pending = |state, started_ms| crate::history::Pending {
        activity_id: "pad_track_0".into(),
        state,
        attempt: 1,
        heartbeat: Value::Null,
        last_heartbeat_ms: 0,
        last_started_ms: started_ms,
        next_attempt_ms: 0,
        last_failure: None,
        worker: "w".into(),
        paused: false,
        pause_reason: None,
    };
    use temporalio_common::protos::temporal::api::enums::v1::PendingActivityState as S;
    let failed = attempt_row(0, 1, "failed", 1);
    // Reset, the new attempt not started; started but not recorded yet; recorded.
    for (p, rows) in [
        (pending(S::Scheduled, 0), vec![failed.clone()]),
        (pending(S::Started, 9000), vec![failed.clone()]),
        (
            pending(S::Started, 9000),
            vec![failed.clone(), attempt_row(1, 1, "started", 9)],
        ),
    ] {
        let mut run = production_run(WorkflowExecutionStatus::Running);
        run.steps.push(step.clone());
        run.pending.push(p.clone());
        let owner = Owner {
            run: &run,
            correlation_id: None,
            now_ms: 10_000,
        };
        let out = super::super::rows::step_rows(&owner, &step, None, &rows);
        assert_eq!(out.len(), 2, "{out:#?}");
        assert_eq!(out[0].status, TaskStatus::Failed);
        assert!(out[0].retried);
        assert_eq!(out[0].retry_count, 0);
        assert_eq!(
            out[0].task_id,
            super::super::rows::task_id("r1", "pad_track_0", 1, 0)
        );
        assert_eq!(
            out[1].task_id,
            super::super::rows::task_id("r1", "pad_track_0", 1, 1)
        );
        assert_eq!(out[1].retried_task_id.as_ref(), Some(&out[0].task_id));
        assert_eq!(out[1].retry_count, 1);
        let running = p.state == S::Started;
        assert_eq!(
            out[1].status,
            if running {
                TaskStatus::InProgress
            } else {
                TaskStatus::Scheduled
            }
        );
        // No heartbeat sent: no `heartbeat` key (never `null`).
        assert_eq!(out[1].output_data, json!({}));
        assert_eq!(out[0].task_id.len(), 36, "hyphenated: {}", out[0].task_id);
        assert_eq!(out[0].task_id.matches('-').count(), 4);
    }
}

/// A parent run of diarization.yaml whose second track child could not be started.
#[test]
fn a_track_child_that_could_not_start_fails_its_members_and_the_join() {
    let registry = crate::registry::Registry::builtin();
    let pipeline = crate::intake::load_pipeline(None, registry.catalog()).unwrap();
    let mut run = Run::new("diarization-x", &[], &Default::default());
    run.status = WorkflowExecutionStatus::Failed;
    run.workflow_type = "DiarizationPipeline".into();
    run.run_id = "r1".into();
    run.input = json!({"pipeline": pipeline, "input": {"transcript_id": "t1"}});
    for (i, outcome) in [
        (0, Some(ChildOutcome::Completed)),
        (
            1,
            Some(ChildOutcome::StartFailed("WORKFLOW_ALREADY_EXISTS".into())),
        ),
    ] {
        run.children.push(Child {
            workflow_id: format!("diarization-x-track-{i}"),
            workflow_type: "TrackProcessing".into(),
            input: json!({"input": {"track_index": i}}),
            initiated_ms: 1000,
            scheduled_by: 5,
            outcome,
        });
    }
    let main = Loaded {
        run,
        attempts: Vec::new(),
    };
    let w = workflow(&main, &[], true);
    let row = w
        .tasks
        .iter()
        .find(|t| t.reference_task_name == "transcribe_track_1")
        .expect("a row for the child that never started");
    assert_eq!(row.status, TaskStatus::FailedWithTerminalError);
    assert_eq!(
        row.reason_for_incompletion.as_deref(),
        Some("child start failed: WORKFLOW_ALREADY_EXISTS")
    );
    assert_eq!(row.workflow_instance_id, "diarization-x-track-1");
    let join = w
        .tasks
        .iter()
        .find(|t| t.reference_task_name == "join_transcription")
        .unwrap();
    assert_eq!(join.status, TaskStatus::Failed);
    assert_eq!(
        join.input_data["joinOn"],
        json!(["transcribe_track_0", "transcribe_track_1"])
    );
    assert_eq!(w.failed_reference_task_names, ["transcribe_track_1"]);
}
