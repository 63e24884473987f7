//! The Temporal boundary (issue 39 item 2): whoever can start workflows on the namespace,
//! with the payload codec required (`REFLOW_CODEC_REQUIRED`), against a real dev server, the
//! production pipeline (`pipelines/diarization.yaml`) and stand-in backends:
//!
//! - a workflow started by hand with a plaintext JSON input runs nothing: its workflow task
//!   fails, saying the payload is not sealed and that `REFLOW_CODEC_REQUIRED` refuses it;
//! - a sealed input taken from a run's history (the main run's, and a child's) and started
//!   under another workflow id is refused, naming both ids, before any step (no resolver
//!   marker, no activity, no child), while the run it was copied from completes with the
//!   required codec; so is a sealed input that names no workflow id (as inputs from before
//!   the binding did);
//! - the poll schedule `reflow apply` declares, its action sealed: `plan` reads it back as
//!   unchanged, a run it starts (`{schedule}-{nominal time}`) is accepted, and its input
//!   copied into another id is refused.

use std::time::{Duration, Instant};

use reflow::codec::PayloadEncryption;
use reflow_tests::InProcessWorker;
use reflow_tests::meetings::{Backends, QUEUES, Stack, short_timeouts, voices};
use serde_json::json;
use temporalio_client::{
    UntypedWorkflow, WorkflowFetchHistoryOptions, WorkflowStartOptions, WorkflowTerminateOptions,
};
use temporalio_common::data_converters::RawValue;
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use workflow::RunInput;
use workflow::interpreter::binding::{RUN_INPUT_UNBOUND, WORKFLOW_ID_MISMATCH};
use workflow::interpreter::resolve::Pinned;

use super::key;

/// A stack whose clients and worker seal payloads and refuse unsealed ones, as the compose
/// stack's `REFLOW_CODEC_REQUIRED=true` makes them.
async fn required_codec_stack() -> (Stack, InProcessWorker, PayloadEncryption) {
    let codec = PayloadEncryption::from_spec(&format!("k1:{}", key(1)), false)
        .unwrap()
        .required(true);
    let client = reflow::temporal::connect_with(
        &reflow_tests::server().address,
        "default",
        Duration::from_secs(20),
        codec.data_converter(),
    )
    .await
    .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("reflow-boundary-db-")
        .tempdir()
        .unwrap()
        .keep();
    let db_url = format!("sqlite://{}/reflow.db", dir.display());
    let backends = Backends::start(Duration::from_millis(50)).await;
    let stack = Stack::start(&db_url, client, backends, false, short_timeouts()).await;
    let queues: Vec<String> = QUEUES.iter().map(|q| q.to_string()).collect();
    let worker =
        InProcessWorker::start_with_converter(&queues, stack.services(100), codec.data_converter());
    (stack, worker, codec)
}

/// A run's history events (read with `client`'s converter: payloads as stored when it has no
/// codec).
async fn events(client: &temporalio_client::Client, id: &str) -> Vec<HistoryEvent> {
    client
        .get_workflow_handle::<UntypedWorkflow>(id)
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .unwrap()
}

/// What of the run in `events` would be work: activities, local activities (markers) and
/// children; its workflow tasks and its end are not.
fn work(events: &[HistoryEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e.attributes.as_ref()? {
            Attributes::ActivityTaskScheduledEventAttributes(a) => Some(format!(
                "activity {}",
                a.activity_type.as_ref().map_or("", |t| t.name.as_str())
            )),
            Attributes::MarkerRecordedEventAttributes(m) => {
                Some(format!("marker {}", m.marker_name))
            }
            Attributes::StartChildWorkflowExecutionInitiatedEventAttributes(c) => {
                Some(format!("child {}", c.workflow_id))
            }
            _ => None,
        })
        .collect()
}

/// The first payload of the input a run was started with, as stored (sealed), with its
/// workflow type and task queue.
fn started_input(events: &[HistoryEvent]) -> (Payload, String, String) {
    events
        .iter()
        .find_map(|e| match e.attributes.as_ref()? {
            Attributes::WorkflowExecutionStartedEventAttributes(s) => Some((
                s.input.as_ref()?.payloads.first()?.clone(),
                s.workflow_type.as_ref()?.name.clone(),
                s.task_queue.as_ref()?.name.clone(),
            )),
            _ => None,
        })
        .expect("a started event with an input")
}

async fn terminate(client: &temporalio_client::Client, id: &str) {
    let _ = client
        .get_workflow_handle::<UntypedWorkflow>(id)
        .terminate(
            WorkflowTerminateOptions::builder()
                .reason("test over")
                .build(),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_codec_required_a_plaintext_input_started_by_hand_runs_no_step_and_says_why() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker, _codec) = required_codec_stack().await;
    let pipeline = &stack.intake.pipeline;
    // Someone with access to the namespace, no codec keys: a well-formed run of the registered
    // version, bound to its id, in clear.
    let id = format!("diarization-by-hand-{}", std::process::id());
    let input = RunInput {
        pinned: Pinned::Reference(pipeline.reference()),
        graph: None,
        input: json!({
            "recording_id": "by-hand-rec", "transcript_id": "t-by-hand", "room_id": "room-x",
            "room_name": "x", "bucket_name": "daily-recordings", "source_platform": "daily",
            "tracks": [{"s3_key": "acme/x/1-p-cam-audio-2"}], "language": "en",
        }),
        parent: None,
        search_attributes: Default::default(),
        workflow_id: Some(id.clone()),
        scheduled: false,
        lean: 0,
    };
    let plain = reflow_tests::client().await;
    plain
        .start_workflow(
            UntypedWorkflow::new(pipeline.name.clone()),
            workflow::payload::to_raw(&input),
            WorkflowStartOptions::new(pipeline.main.task_queue.clone(), id.clone()).build(),
        )
        .await
        .unwrap();

    // Its workflow task fails, naming the cause.
    let deadline = Instant::now() + Duration::from_secs(60);
    let failure = loop {
        let history = events(&plain, &id).await;
        let failed = history.iter().find_map(|e| match e.attributes.as_ref()? {
            Attributes::WorkflowTaskFailedEventAttributes(f) => f.failure.clone(),
            _ => None,
        });
        if let Some(f) = failed {
            break f;
        }
        let done = work(&history);
        assert!(done.is_empty(), "the plaintext run got going: {done:?}");
        assert!(
            Instant::now() < deadline,
            "no workflow task failed within 60 s: {history:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        failure.message.contains("not sealed")
            && failure.message.contains("json/plain")
            && failure.message.contains("REFLOW_CODEC_REQUIRED"),
        "{}",
        failure.message
    );
    // The worker keeps refusing its retried tasks: nothing runs, however long it is left.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let history = events(&plain, &id).await;
    assert_eq!(work(&history), Vec::<String>::new());
    assert!(
        stack.backends.daily.requests().is_empty() && stack.backends.asr_call_count() == 0,
        "a backend was called"
    );
    let run = reflow::history::load(&stack.client, &id).await.unwrap();
    assert!(run.steps.is_empty() && run.children.is_empty());
    terminate(&plain, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sealed_input_copied_into_another_workflow_id_is_refused_before_any_step() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker, codec) = required_codec_stack().await;
    let tracks = tempfile::tempdir().unwrap();
    let m = stack
        .meeting("boundary", 0, &voices(tracks.path(), 2))
        .await;
    let (tid, out) = stack.run(&m).await;
    out.expect("the meeting completes with the codec required");
    assert_eq!(stack.db.transcript(&tid).await.unwrap().status, "ended");

    // What someone who reads the namespace sees: the sealed inputs of the run and its child.
    let plain = reflow_tests::client().await;
    let main = events(&plain, &m.workflow_id).await;
    let child_id = main
        .iter()
        .find_map(|e| match e.attributes.as_ref()? {
            Attributes::StartChildWorkflowExecutionInitiatedEventAttributes(c) => {
                Some(c.workflow_id.clone())
            }
            _ => None,
        })
        .expect("the run started children");
    let child = events(&plain, &child_id).await;
    let suffix = std::process::id();
    for (original, history) in [(&m.workflow_id, &main), (&child_id, &child)] {
        let (sealed, workflow_type, queue) = started_input(history);
        assert_eq!(
            sealed.metadata["encoding"],
            reflow::codec::ENCODING.as_bytes(),
            "{original}'s input is sealed"
        );
        // It opens to an input bound to its own run.
        let opened: RunInput =
            serde_json::from_slice(&codec.open(sealed.clone()).unwrap().data).unwrap();
        assert_eq!(opened.workflow_id.as_deref(), Some(original.as_str()));

        // Started as is under an id of the attacker's choosing.
        let forged = format!("{original}-again-{suffix}");
        plain
            .start_workflow(
                UntypedWorkflow::new(workflow_type),
                RawValue::new(vec![sealed]),
                WorkflowStartOptions::new(queue, forged.clone()).build(),
            )
            .await
            .unwrap();
        let e = refused(&stack, &forged).await;
        assert!(
            e.contains(&format!("{original:?}")) && e.contains(&format!("{forged:?}")),
            "{e}"
        );
        let history = events(&plain, &forged).await;
        assert_eq!(
            work(&history),
            Vec::<String>::new(),
            "{forged} ran something"
        );
        assert_eq!(
            failure_type(&history),
            Some((WORKFLOW_ID_MISMATCH.to_owned(), true))
        );
        let run = reflow::history::load(&stack.client, &forged).await.unwrap();
        assert!(run.steps.is_empty() && run.children.is_empty(), "{forged}");
    }

    // A sealed input that names no run, as inputs did before the binding: refused in a new
    // run (its patch marker is all it records), though such histories still replay.
    let (sealed, workflow_type, queue) = started_input(&main);
    let mut unbound: RunInput = serde_json::from_slice(&codec.open(sealed).unwrap().data).unwrap();
    unbound.workflow_id = None;
    let resealed = codec.seal(workflow::payload::to_raw(&unbound).payloads.remove(0));
    let forged = format!("{}-unbound-{suffix}", m.workflow_id);
    plain
        .start_workflow(
            UntypedWorkflow::new(workflow_type),
            RawValue::new(vec![resealed]),
            WorkflowStartOptions::new(queue, forged.clone()).build(),
        )
        .await
        .unwrap();
    let e = refused(&stack, &forged).await;
    assert!(e.contains("names no workflow id"), "{e}");
    let history = events(&plain, &forged).await;
    assert_eq!(work(&history), ["marker core_patch"]);
    assert_eq!(
        failure_type(&history),
        Some((RUN_INPUT_UNBOUND.to_owned(), true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_s_runs_are_accepted_and_a_copy_of_their_input_is_not() {
    use reflow::gitops::{self, Change, Desired, DesiredSchedule};
    use temporalio_client::schedules::ScheduleOverlapPolicy;
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker, _codec) = required_codec_stack().await;
    let poll = workflow::parse_and_validate(
        "daily-poll.yaml",
        gitops::DAILY_POLL_YAML,
        reflow_tests::registry().catalog(),
    )
    .unwrap();
    let id = format!("boundary-poll-{}", std::process::id());
    let d = Desired {
        schedules: vec![DesiredSchedule {
            id: id.clone(),
            every: Duration::from_secs(3600),
            pipeline: poll,
        }],
        ..Desired::default()
    };
    gitops::apply(&stack.client, &d).await.unwrap();
    // Read back through the codec: the sealed action names its version and is bound.
    let again = gitops::plan(&stack.client, &d).await.unwrap();
    assert!(!again.iter().any(Change::is_change), "{again:?}");

    let schedule = stack.client.get_schedule_handle(id.clone());
    schedule
        .trigger(ScheduleOverlapPolicy::AllowAll, Default::default())
        .await
        .unwrap();
    let started =
        reflow_tests::wait_for("the schedule starts a run", Duration::from_secs(30), || {
            let schedule = schedule.clone();
            async move {
                let d = schedule.describe(Default::default()).await.ok()?;
                d.recent_actions().first().map(|a| a.workflow_id.clone())
            }
        })
        .await;
    assert!(started.starts_with(&format!("{id}-20")), "{started}");
    tokio::time::timeout(
        Duration::from_secs(60),
        reflow::runs::wait(&stack.client, &started),
    )
    .await
    .expect("the scheduled run ends")
    .expect("the scheduled run is accepted and completes");

    // Its sealed input under another id, even one shaped like the schedule's.
    let plain = reflow_tests::client().await;
    let (sealed, workflow_type, queue) = started_input(&events(&plain, &started).await);
    for forged in [format!("{id}-copy"), format!("{started}-again")] {
        plain
            .start_workflow(
                UntypedWorkflow::new(workflow_type.clone()),
                RawValue::new(vec![sealed.clone()]),
                WorkflowStartOptions::new(queue.clone(), forged.clone()).build(),
            )
            .await
            .unwrap();
        let e = refused(&stack, &forged).await;
        assert!(
            e.contains(&format!("{id:?}")) && e.contains(&format!("{forged:?}")),
            "{e}"
        );
        let history = events(&plain, &forged).await;
        assert_eq!(
            work(&history),
            Vec::<String>::new(),
            "{forged} ran something"
        );
        assert_eq!(
            failure_type(&history),
            Some((WORKFLOW_ID_MISMATCH.to_owned(), true))
        );
    }
    let _ = schedule.delete(Default::default()).await;
}

/// The failure of a run that must be refused (within a minute), as reflow reads it.
async fn refused(stack: &Stack, id: &str) -> String {
    tokio::time::timeout(
        Duration::from_secs(60),
        reflow::runs::wait(&stack.client, id),
    )
    .await
    .expect("the forged run ends")
    .expect_err("the forged run is refused")
    .to_string()
}

/// How the run of `events` failed: its failure type (in clear with the codec) and whether it
/// is final. A run that failed, not a workflow task retried forever.
fn failure_type(events: &[HistoryEvent]) -> Option<(String, bool)> {
    events.iter().find_map(|e| match e.attributes.as_ref()? {
        Attributes::WorkflowExecutionFailedEventAttributes(f) => {
            match f.failure.as_ref()?.failure_info.as_ref()? {
                FailureInfo::ApplicationFailureInfo(a) => Some((a.r#type.clone(), a.non_retryable)),
                _ => None,
            }
        }
        _ => None,
    })
}
