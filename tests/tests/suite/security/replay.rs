//! Replays and reprocessing limits (issue 39 item 5), tried against the real server, worker
//! and Temporal:
//!
//! - a correctly signed Daily webhook signed 25 h ago, or 10 minutes ahead, is refused (401)
//!   and starts nothing; one signed 23 h ago is taken in (Daily redelivers late);
//! - a fresh replay of a delivered recording whose transcript ended, even once Temporal has
//!   forgotten the run (retention), answers 200 `ignored` and starts nothing: no second run,
//!   nothing new to the Zulip and customer-webhook stand-ins; so does a replay of a recording
//!   whose transcript was deleted (soft, or outright);
//! - an owner's Conductor retry cannot reset a step more than its `maximum_attempts` times per
//!   run, cannot unpause an operator's pause, and nobody's retry touches a locked transcript;
//! - `process?force=true` is answered once a minute per transcript (429 with `Retry-After`).

use reflow::intake::{Outcome, Settled};
use reflow_tests::meetings::DAILY_SECRET;

use super::*;

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// POST `body` to the webhook signed (correctly) with timestamp `ts`.
async fn deliver_signed_at(api: &str, body: &str, ts: i64) -> (u16, Value) {
    let ts = ts.to_string();
    let signature = activities::daily::signature::sign(DAILY_SECRET, &ts, body.as_bytes()).unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://{api}/v1/daily/webhook"))
        .header("X-Webhook-Timestamp", ts)
        .header("X-Webhook-Signature", signature)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Whether Temporal knows a run of `workflow_id`.
async fn has_run(client: &temporalio_client::Client, workflow_id: &str) -> bool {
    reflow::history::status(client, workflow_id)
        .await
        .unwrap()
        .is_some()
}

/// Run one statement binding `id` as `$1` (the test's own writes: a lock, a deletion).
async fn exec(db: &activities::db::Db, statement: &str, id: &str) {
    use activities::db::Pool;
    match db.pool() {
        Pool::Sqlite(p) => sqlx::query(statement).bind(id).execute(p).await.map(|_| ()),
        Pool::Postgres(p) => sqlx::query(statement).bind(id).execute(p).await.map(|_| ()),
    }
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_webhook_outside_its_window_is_refused_and_starts_nothing() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) =
        reflow_tests::meetings::in_process(Duration::from_millis(50), false).await;
    let dir = tempfile::tempdir().unwrap();
    let m = stack.meeting("stale", 0, &voices(dir.path(), 1)).await;
    let refused = json!({"detail": "Webhook timestamp outside the accepted window"});
    for (what, ts) in [
        ("25 h old", now_s() - 25 * 3600),
        ("10 minutes ahead", now_s() + 600),
    ] {
        let answer = deliver_signed_at(&stack.api, &m.webhook, ts).await;
        eprintln!("a delivery signed {what}: {answer:?}");
        assert_eq!(answer, (401, refused.clone()), "{what}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        stack.db.recording(&m.recording_id).await.unwrap().is_none(),
        "a refused delivery wrote a recording"
    );
    assert!(
        !has_run(&stack.client, &m.workflow_id).await,
        "a refused delivery started a run"
    );
    // Inside the window (Daily redelivers late): taken in, the run starts.
    assert_eq!(
        deliver_signed_at(&stack.api, &m.webhook, now_s() - 23 * 3600).await,
        (200, json!({"status": "ok"}))
    );
    assert!(has_run(&stack.client, &m.workflow_id).await);
    tokio::time::timeout(
        Duration::from_secs(600),
        reflow::runs::wait(&stack.client, &m.workflow_id),
    )
    .await
    .expect("the run ends")
    .expect("the run completes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_never_restarts_an_ended_or_deleted_recording() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) =
        reflow_tests::meetings::in_process(Duration::from_millis(50), false).await;
    let dir = tempfile::tempdir().unwrap();
    let m = stack.meeting("replayed", 0, &voices(dir.path(), 1)).await;
    let (tid, out) = stack.run(&m).await;
    out.unwrap();
    assert_eq!(stack.db.transcript(&tid).await.unwrap().status, "ended");
    let zulip = stack.backends.zulip.requests().len();
    let hooks = stack.backends.receiver.requests().len();
    assert!(
        zulip > 0 && hooks > 0,
        "the run posted and called the webhook"
    );

    // Temporal forgets the run (what the namespace's retention does): the workflow id is free
    // again, so only intake's own rule can stop a replay.
    {
        use temporalio_client::NamespacedClient;
        use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
        use temporalio_common::protos::temporal::api::workflowservice::v1::DeleteWorkflowExecutionRequest;
        stack
            .client
            .connection()
            .workflow_service()
            .delete_workflow_execution(tonic::Request::new(DeleteWorkflowExecutionRequest {
                namespace: stack.client.namespace(),
                workflow_execution: Some(WorkflowExecution {
                    workflow_id: m.workflow_id.clone(),
                    run_id: String::new(),
                }),
            }))
            .await
            .unwrap();
    }
    // (The dev server deletes a closed run some 20 s after being asked.)
    reflow_tests::wait_for(
        "Temporal to forget the run",
        Duration::from_secs(120),
        || {
            let client = stack.client.clone();
            let id = m.workflow_id.clone();
            async move { (!has_run(&client, &id).await).then_some(()) }
        },
    )
    .await;

    // A fresh-timestamp replay (the captured body, signed again): answered, nothing started.
    let answer = deliver_signed_at(&stack.api, &m.webhook, now_s()).await;
    eprintln!("a replay of an ended recording: {answer:?}");
    assert_eq!(answer, (200, json!({"status": "ignored"})));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !has_run(&stack.client, &m.workflow_id).await,
        "the replay started a second run"
    );
    assert_eq!(
        stack.backends.zulip.requests().len(),
        zulip,
        "the replay posted to Zulip"
    );
    assert_eq!(
        stack.backends.receiver.requests().len(),
        hooks,
        "the replay called the customer webhook"
    );
    let t = stack.db.transcript(&tid).await.unwrap();
    assert_eq!(t.status, "ended");

    // Deleted by its owner (soft): the poll's and the webhook's intake leave it alone too.
    exec(
        &stack.db,
        "UPDATE transcript SET deleted_at = '2026-01-11T00:00:00Z' WHERE id = $1",
        &tid,
    )
    .await;
    let discovered = reflow::intake::Discovered {
        recording_id: m.recording_id.clone(),
        room_name: "replayed0-20260110042117".into(),
        start_ts: 1_768_018_896,
        track_keys: serde_json::from_str::<Value>(&m.webhook).unwrap()["payload"]["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["s3Key"].as_str().map(str::to_owned))
            .collect(),
    };
    assert_eq!(
        stack.intake.intake(&discovered).await.unwrap(),
        Outcome::Ignored {
            transcript_id: Some(tid.clone()),
            reason: Settled::Deleted
        }
    );

    // Deleted outright: the recording row is known, its transcript is gone.
    let gone = stack.meeting("replayed", 1, &voices(dir.path(), 1)).await;
    stack
        .db
        .upsert_recording(&activities::db::meetings::RecordingRow {
            id: gone.recording_id.clone(),
            bucket_name: "daily-recordings".into(),
            object_key: None,
            recorded_at: None,
            status: "pending".into(),
            meeting_id: Some("m-replayed-1".into()),
            track_keys: None,
        })
        .await
        .unwrap();
    assert_eq!(
        deliver_signed_at(&stack.api, &gone.webhook, now_s()).await,
        (200, json!({"status": "ignored"}))
    );
    assert_eq!(
        stack
            .db
            .transcript_id_of_recording(&gone.recording_id)
            .await
            .unwrap(),
        None,
        "a replay recreated a deleted transcript"
    );
    assert!(!has_run(&stack.client, &gone.workflow_id).await);
}

/// `POST /api/workflow/{id}/retry` as `token`: the status and the body's message.
async fn retry(api: &str, id: &str, token: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("http://{api}/api/workflow/{id}/retry"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body["message"].as_str().unwrap_or("").to_owned())
}

/// Wait until the latch step of run `id` failed `fails` times in all and waits (for its
/// backoff, or paused); whether it is paused.
async fn waiting(
    client: &temporalio_client::Client,
    journal: &std::path::Path,
    id: &str,
    fails: usize,
) -> bool {
    let what = format!("{fails} failures of the step, then a wait");
    reflow_tests::wait_for(&what, Duration::from_secs(30), || async {
        let failed = reflow_tests::read_journal(journal)
            .iter()
            .filter(|e| e.event == "fail")
            .count();
        if failed < fails {
            return None;
        }
        let run = reflow::history::load(client, id).await.ok()?;
        let p = run.pending.iter().find(|p| p.is_waiting())?;
        Some(p.paused)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_retry_cannot_loop_a_step_unpause_it_or_touch_a_locked_transcript() {
    let (q, tp, _worker, client) = reflow_tests::started("security-retry", "backoff.yaml").await;
    let db = reflow_tests::db();
    let api = reflow_tests::serve_api(ApiState {
        api_token: Some(OPERATOR.into()),
        secret_key: Some(SECRET.into()),
        temporal: Some(client.clone()),
        ..ApiState::new(reflow_tests::services().events, reflow_tests::storage())
    })
    .await;
    let id = format!("security-retry-{}", std::process::id());
    let j = reflow_tests::journal(q);
    let run = reflow::runs::start(&client, &tp.pipeline, json!({"journal": j}), &id)
        .await
        .unwrap();
    // The run belongs to u-7's transcript.
    let tid = format!("t-{id}");
    db.create_transcript(&activities::db::transcripts::NewTranscript {
        id: tid.clone(),
        user_id: Some("u-7".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    db.set_workflow(&tid, &id, run.run_id.as_deref().unwrap())
        .await
        .unwrap();
    let owner = sign(SECRET, "u-7", HOUR);

    // The step fails and waits an hour; its owner may reset it maximum_attempts (5) times.
    for n in 1..=5 {
        assert!(!waiting(&client, &j, &id, n).await);
        assert_eq!(
            retry(&api, &id, &owner).await,
            (204, String::new()),
            "reset {n}"
        );
    }
    assert!(!waiting(&client, &j, &id, 6).await);
    let (status, message) = retry(&api, &id, &owner).await;
    eprintln!("the owner's 6th reset: {status} {message}");
    assert_eq!(status, 429, "{message}");
    assert!(message.contains("latch"), "{message}");
    // The operator is not bound by it.
    assert_eq!(retry(&api, &id, OPERATOR).await.0, 204);
    assert!(!waiting(&client, &j, &id, 7).await);

    // An operator pauses the step: the owner's retry leaves it paused.
    {
        use temporalio_client::NamespacedClient;
        use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
        use temporalio_common::protos::temporal::api::workflowservice::v1::{
            PauseActivityRequest, pause_activity_request,
        };
        client
            .connection()
            .workflow_service()
            .pause_activity(tonic::Request::new(PauseActivityRequest {
                namespace: client.namespace(),
                execution: Some(WorkflowExecution {
                    workflow_id: id.clone(),
                    run_id: String::new(),
                }),
                identity: "operator".into(),
                activity: Some(pause_activity_request::Activity::Id("latch".into())),
                reason: "backend down".into(),
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    assert!(waiting(&client, &j, &id, 7).await, "paused");
    let (status, message) = retry(&api, &id, &owner).await;
    assert_eq!(
        (status, message.as_str()),
        (409, "Step paused by an operator")
    );
    assert!(waiting(&client, &j, &id, 7).await, "still paused");
    // The operator's retry unpauses it (and the attempt runs, and fails again).
    assert_eq!(retry(&api, &id, OPERATOR).await.0, 204);
    assert!(!waiting(&client, &j, &id, 8).await, "unpaused");

    // A locked transcript: nobody's retry acts on it.
    exec(
        &db,
        "UPDATE transcript SET locked = TRUE WHERE id = $1",
        &tid,
    )
    .await;
    for token in [owner.as_str(), OPERATOR] {
        assert_eq!(
            retry(&api, &id, token).await,
            (403, "Transcript is locked".to_owned())
        );
    }
    let fails = reflow_tests::read_journal(&j)
        .iter()
        .filter(|e| e.event == "fail")
        .count();
    assert_eq!(fails, 8, "every refused retry ran nothing");
    client
        .get_workflow_handle::<temporalio_client::UntypedWorkflow>(&id)
        .terminate(temporalio_client::WorkflowTerminateOptions::builder().build())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forced_reprocessing_is_limited_per_transcript() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) =
        reflow_tests::meetings::in_process(Duration::from_millis(50), false).await;
    let api = guarded_api(&stack, None).await;
    let dir = tempfile::tempdir().unwrap();
    let m = stack.meeting("forced", 0, &voices(dir.path(), 1)).await;
    let (tid, out) = stack.run(&m).await;
    out.unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{api}/v1/transcripts/{tid}/process?force=true");
    let force = |token: String| http.post(&url).bearer_auth(token).send();
    // Refused requests do not use the transcript's turn.
    let stranger = force(sign(SECRET, "u-8", HOUR)).await.unwrap();
    assert!(!stranger.status().is_success(), "{}", stranger.status());
    let first = force(sign(SECRET, "u-7", HOUR)).await.unwrap();
    assert_eq!(first.status(), 200);
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    // At once again (it would terminate the new run and pay for a third): 429.
    for token in [sign(SECRET, "u-7", HOUR), OPERATOR.to_owned()] {
        let again = force(token).await.unwrap();
        assert_eq!(again.status(), 429);
        let wait: u64 = again.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        eprintln!("a second forced reprocessing: 429, Retry-After {wait}");
        assert!((1..=60).contains(&wait), "{wait}");
    }
    tokio::time::timeout(
        Duration::from_secs(600),
        reflow::runs::wait(&stack.client, &m.workflow_id),
    )
    .await
    .expect("the reprocessing ends")
    .expect("the reprocessing completes");
}
