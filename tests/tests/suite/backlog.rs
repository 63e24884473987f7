//! No webhook lost while Temporal is down (issue 37 item 5), on a real dev server that the test
//! stops and starts again on the same port and SQLite file: signed Daily webhooks of tiny
//! meetings (one short espeak-ng track each, `pipelines/diarization.yaml` with stand-in
//! backends) and a `process` request arrive while the server is stopped; each is answered at
//! once (200 `queued`, 202 `queued`), the runs are owed in `run_backlog` and
//! `reflow_run_backlog` counts them; once the server is back the backlog loops (the API
//! process's and the `reflow worker` process's, both running, as two replicas would) start
//! them in the order they arrived, and every recording has exactly one run; the `process`
//! request (`?from=merge_transcripts`) is started with its options, re-running exactly the
//! merge and what follows it. The rows themselves (order, claims, backoff, options) are
//! checked on SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use activities::db::Db;
use activities::db::backlog::{INTAKE, PROCESS};
use activities::db::transcripts::NewTranscript;
use reflow::temporal::DevServerOptions;
use reflow_tests::blows::start_server;
use reflow_tests::meetings::{Backends, DAILY_SECRET, QUEUES, Stack, WorkerProcess, voices};
use serde_json::Value;
use temporalio_client::{UntypedWorkflow, WorkflowCountOptions, WorkflowDescribeOptions};

/// Meetings delivered while the server is stopped.
const WHILE_DOWN: usize = 10;

/// `reflow_run_backlog` as the API's `/metrics` reports it.
async fn backlog_metric(api: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{api}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("reflow_run_backlog "))
        .and_then(|v| v.trim().parse().ok())
}

/// Runs of `workflow_id` the server knows (closed and open).
async fn runs_of(client: &temporalio_client::Client, workflow_id: &str) -> usize {
    client
        .count_workflows(
            format!("WorkflowId = '{workflow_id}'"),
            WorkflowCountOptions::default(),
        )
        .await
        .map(|c| c.count())
        .unwrap_or_else(|e| panic!("count the runs of {workflow_id}: {e}"))
}

/// When the latest run of `workflow_id` started.
async fn started_at(client: &temporalio_client::Client, workflow_id: &str) -> SystemTime {
    let d = client
        .get_workflow_handle::<UntypedWorkflow>(workflow_id)
        .describe(WorkflowDescribeOptions::default())
        .await
        .unwrap_or_else(|e| panic!("describe {workflow_id}: {e}"));
    let t = d
        .raw_description
        .workflow_execution_info
        .and_then(|i| i.start_time)
        .expect("a start time");
    SystemTime::UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_while_temporal_is_down_all_run_once_it_is_back() {
    let dir = tempfile::Builder::new()
        .prefix("reflow-backlog-")
        .tempdir()
        .unwrap()
        .keep();
    eprintln!("backlog: logs in {}", dir.display());
    let opts = DevServerOptions {
        cli: reflow_tests::temporal_cli(),
        port: reflow::temporal::free_port().unwrap(),
        ui_port: None,
        db_file: Some(dir.join("temporal.db")),
        log_file: dir.join("temporal.log"),
    };
    let server = start_server(&opts).await;
    let address = server.address.clone();
    let client = reflow::temporal::connect(&address, "default", Duration::from_secs(20))
        .await
        .expect("connect");
    let db_url = format!("sqlite://{}/reflow.db", dir.display());
    let backends = Backends::start(Duration::from_millis(100)).await;
    let stack = Stack::start(
        &db_url,
        client.clone(),
        backends.clone(),
        false,
        reflow_tests::meetings::short_timeouts(),
    )
    .await;
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_reflow-test-worker"));
    // The worker's intake starts the same definition as the API's (one pipelines directory).
    let mut env = stack.worker_env_with_pipelines(&address, &dir);
    env.retain(|(k, _)| k != "RUST_LOG");
    env.push(("RUST_LOG".into(), "warn,reflow::backlog=info".into()));
    let _worker = WorkerProcess::spawn(&binary, &QUEUES, &env, &dir.join("worker.log"));

    let tracks = voices(&dir, 1);
    let mut meetings = Vec::new();
    for i in 0..WHILE_DOWN + 2 {
        meetings.push(stack.meeting("backlog", i, &tracks).await);
    }
    let hook = format!("http://{}/v1/daily/webhook", stack.api);
    let send = |body: String| {
        let daily = backends.daily.clone();
        let hook = hook.clone();
        async move {
            let at = Instant::now();
            let (status, answer) = daily.send_webhook(&hook, DAILY_SECRET, &body, false).await;
            (status, answer, at.elapsed())
        }
    };

    // With the server up: two recordings at once are each started at once, as before (one
    // being started does not queue the other), and the worker is serving.
    let first = &meetings[0];
    let (a, b) = tokio::join!(
        send(first.webhook.clone()),
        send(meetings[1].webhook.clone())
    );
    for (status, answer, _) in [a, b] {
        assert_eq!((status, answer["status"].as_str()), (200, Some("ok")));
    }
    for m in &meetings[..2] {
        reflow::runs::wait(&client, &m.workflow_id)
            .await
            .expect("the meetings run");
    }
    let first_tid = stack
        .db
        .transcript_id_of_recording(&first.recording_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stack.db.transcript(&first_tid).await.unwrap().status,
        "ended"
    );
    assert_eq!(stack.db.owed_run_count().await.unwrap(), 0);

    // The server stops; ten recordings become ready.
    server.stop().await;
    eprintln!("backlog: Temporal stopped");
    let down = &meetings[2..];
    for m in down {
        let (status, answer, took) = send(m.webhook.clone()).await;
        eprintln!(
            "backlog: {} answered {status} {answer} in {took:?}",
            m.recording_id
        );
        assert_eq!(status, 200, "{}: {answer}", m.recording_id);
        assert_eq!(answer["status"], "queued", "{}: {answer}", m.recording_id);
        assert!(
            took < Duration::from_secs(1),
            "{} answered in {took:?}",
            m.recording_id
        );
    }
    assert_eq!(stack.db.owed_run_count().await.unwrap(), WHILE_DOWN as i64);
    assert_eq!(
        backlog_metric(&stack.api).await,
        Some(WHILE_DOWN as f64),
        "reflow_run_backlog while Temporal is down"
    );
    // Owed in the order they arrived.
    let mut owed = Vec::new();
    for m in down {
        let tid = stack
            .db
            .transcript_id_of_recording(&m.recording_id)
            .await
            .unwrap()
            .expect("intake wrote the transcript");
        let row = stack.db.owed_run(&tid).await.unwrap().expect("owed");
        assert_eq!(row.kind, INTAKE);
        owed.push(row.requested_at);
    }
    assert!(owed.is_sorted(), "{owed:?}");

    // A reprocess asked for meanwhile is kept too, with its options.
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/transcripts/{first_tid}/process?from=merge_transcripts",
            stack.api
        ))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("queued")),
        "{answer}"
    );
    let kept = stack.db.owed_run(&first_tid).await.unwrap().expect("owed");
    assert_eq!(kept.kind, PROCESS);
    assert!(
        kept.options
            .as_deref()
            .is_some_and(|o| o.contains(r#""from":"merge_transcripts""#)),
        "{kept:?}"
    );
    assert_eq!(
        backlog_metric(&stack.api).await,
        Some(WHILE_DOWN as f64 + 1.0)
    );
    // A redelivered webhook while down is the same owed run, not another.
    let (status, answer, _) = send(down[0].webhook.clone()).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("queued")));
    assert_eq!(
        stack.db.owed_run_count().await.unwrap(),
        WHILE_DOWN as i64 + 1
    );

    // Some time passes with the loops failing against a stopped server.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let server = start_server(&opts).await;
    eprintln!("backlog: Temporal started again");
    let back = Instant::now();

    let deadline = Duration::from_secs(600);
    for m in down {
        tokio::time::timeout(deadline, async {
            loop {
                match reflow::runs::wait(&client, &m.workflow_id).await {
                    Ok(out) => break out,
                    // Not started yet (or the client still reconnecting).
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{} does not complete", m.workflow_id));
    }
    eprintln!(
        "backlog: all {WHILE_DOWN} runs completed {:?} after the restart",
        back.elapsed()
    );
    let mut starts = Vec::new();
    for m in down {
        assert_eq!(
            runs_of(&client, &m.workflow_id).await,
            1,
            "{} ran once",
            m.workflow_id
        );
        let tid = stack
            .db
            .transcript_id_of_recording(&m.recording_id)
            .await
            .unwrap()
            .unwrap();
        let t = stack.db.transcript(&tid).await.unwrap();
        assert_eq!(t.status, "ended", "{tid}");
        assert!(t.workflow_run_id.is_some(), "{tid} names its run");
        starts.push(started_at(&client, &m.workflow_id).await);
    }
    assert!(
        starts.is_sorted(),
        "started in the order they arrived: {starts:?}"
    );
    // The reprocess ran once: the first recording has its first run and one more.
    tokio::time::timeout(deadline, async {
        while runs_of(&client, &first.workflow_id).await < 2 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("the reprocess starts");
    reflow::runs::wait(&client, &first.workflow_id)
        .await
        .expect("the reprocess runs");
    assert_eq!(runs_of(&client, &first.workflow_id).await, 2);
    // It is the re-run asked for: merge_transcripts and what follows it, nothing before.
    let rerun = reflow::history::load(&client, &first.workflow_id)
        .await
        .unwrap();
    let types: BTreeSet<&str> = rerun
        .steps
        .iter()
        .map(|s| s.activity_type.as_str())
        .collect();
    assert!(
        types.contains("merge_transcripts")
            && !types.contains("pad_track")
            && !types.contains("transcribe_track")
            && rerun.children.is_empty(),
        "{types:?}"
    );
    assert_eq!(stack.db.owed_run_count().await.unwrap(), 0);
    // Each of the ten tracks was transcribed once (keys start with the transcript id).
    let asr = backends.asr_calls();
    for m in down {
        let tid = stack
            .db
            .transcript_id_of_recording(&m.recording_id)
            .await
            .unwrap()
            .unwrap();
        let calls: usize = asr
            .iter()
            .filter(|(k, _)| k.starts_with(&tid))
            .map(|(_, at)| at.len())
            .sum();
        assert_eq!(calls, 1, "{tid}: {asr:?}");
    }
    // The gauge follows (the loops report after every pass).
    let mut metric = None;
    for _ in 0..20 {
        metric = backlog_metric(&stack.api).await;
        if metric == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(metric, Some(0.0));
    // And nothing more starts: the loops' later passes find nothing owed.
    tokio::time::sleep(reflow::backlog::IDLE_POLL * 2).await;
    assert_eq!(runs_of(&client, &first.workflow_id).await, 2);
    for m in down {
        assert_eq!(
            runs_of(&client, &m.workflow_id).await,
            1,
            "{}",
            m.workflow_id
        );
    }
    assert_eq!(stack.db.owed_run_count().await.unwrap(), 0);
    server.stop().await;
}

async fn rows(db: &Db) {
    for id in ["owed-a", "owed-b", "owed-c", "owed-d"] {
        db.create_transcript(&NewTranscript {
            id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let at = activities::db::now;
    assert!(db.owe_run("owed-a", INTAKE, false).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let options = r#"{"from":"merge_transcripts","fresh":false,"notify":true}"#;
    assert!(
        db.owe_process_run("owed-b", true, Some(options))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(db.owe_run("owed-c", INTAKE, false).await.unwrap());
    // A second request while one is owed is the same request: first place, first kind.
    assert!(!db.owe_run("owed-a", PROCESS, true).await.unwrap());
    assert!(
        !db.owe_process_run("owed-b", false, Some("{}"))
            .await
            .unwrap()
    );
    assert_eq!(db.owed_run_count().await.unwrap(), 3);
    // A process request's options come back as they were kept; other rows have none.
    let b = db.owed_run("owed-b").await.unwrap().unwrap();
    assert_eq!((b.kind.as_str(), b.forced), (PROCESS, true));
    assert_eq!(b.options.as_deref(), Some(options));
    assert_eq!(db.owed_run("owed-a").await.unwrap().unwrap().options, None);
    assert!(!db.runs_owed_before("owed-a", &at()).await.unwrap());
    assert!(db.runs_owed_before("owed-c", &at()).await.unwrap());
    let now = activities::db::now();
    let due: Vec<String> = db
        .due_runs(&now, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.transcript_id)
        .collect();
    assert_eq!(due, ["owed-a", "owed-b", "owed-c"]);

    // One holder at a time until the claim runs out.
    let until = reflow::backlog::later(6);
    assert!(
        db.claim_owed_run("owed-a", "r1", &now, &until)
            .await
            .unwrap()
    );
    assert!(
        !db.claim_owed_run("owed-a", "r2", &now, &until)
            .await
            .unwrap()
    );
    assert!(
        db.claim_owed_run("owed-a", "r1", &now, &until)
            .await
            .unwrap()
    );
    assert!(
        db.claim_owed_run("owed-a", "r2", &until, &until)
            .await
            .unwrap()
    );

    // A failed attempt: counted, due later, claim released, `force` dropped when asked.
    db.owed_run_failed("owed-b", "Temporal unavailable", &until, false)
        .await
        .unwrap();
    let b = db.owed_run("owed-b").await.unwrap().unwrap();
    assert_eq!((b.attempts, b.forced), (1, false));
    assert_eq!(b.options.as_deref(), Some(options), "kept across attempts");
    assert_eq!(b.last_error.as_deref(), Some("Temporal unavailable"));
    let due: Vec<String> = db
        .due_runs(&activities::db::now(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.transcript_id)
        .collect();
    assert_eq!(due, ["owed-a", "owed-c"]);
    assert!(
        db.claim_owed_run("owed-b", "r3", &now, &until)
            .await
            .unwrap()
    );

    db.settle_owed_run("owed-a").await.unwrap();
    // owed-b is ahead, but not due yet (its own backoff): it does not hold owed-c back.
    assert!(!db.runs_owed_before("owed-c", &at()).await.unwrap());
    assert!(db.runs_owed_before("owed-c", &until).await.unwrap());
    db.settle_owed_run("owed-b").await.unwrap();
    assert!(!db.runs_owed_before("owed-c", &until).await.unwrap());
    db.settle_owed_run("owed-c").await.unwrap();

    // A run its caller is starting itself (due later) is not the loop's yet, and does not
    // hold back a request that comes after it.
    assert!(
        db.owe_run_at("owed-a", INTAKE, false, &until)
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(db.owe_run_at("owed-d", INTAKE, false, &at()).await.unwrap());
    assert!(!db.runs_owed_before("owed-d", &at()).await.unwrap());
    assert!(db.runs_owed_before("owed-d", &until).await.unwrap());
    let due: Vec<String> = db
        .due_runs(&at(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.transcript_id)
        .collect();
    assert_eq!(due, ["owed-d"]);
    db.settle_owed_run("owed-a").await.unwrap();
    db.settle_owed_run("owed-d").await.unwrap();
    assert_eq!(db.owed_run_count().await.unwrap(), 0);
    assert!(
        !db.claim_owed_run("owed-c", "r1", &now, &until)
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owed_runs_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/reflow.db", dir.path().display());
    rows(&reflow_tests::postgres::connect(&url).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owed_runs_on_postgres() {
    let pg = reflow_tests::PgServer::start();
    rows(&reflow_tests::postgres::connect(&pg.url).await).await;
}
