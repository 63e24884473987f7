//! The database and event publishing, one suite run on SQLite (a file) and on a PostgreSQL
//! server of the test's own; registered pipeline versions and rollouts too.

use std::time::Duration;

use activities::ActivityFailure;
use activities::db::transcripts::NewTranscript;
use activities::db::{Backend, Db, DbError};
use activities::events::{Emits, EventHub, Events, Message};
use serde_json::json;

fn transcript(id: &str, user: Option<&str>) -> NewTranscript {
    NewTranscript {
        id: id.into(),
        user_id: user.map(Into::into),
        ..Default::default()
    }
}

async fn rows_and_status_rules(db: &Db) {
    let t = db.create_transcript(&transcript("t1", None)).await.unwrap();
    assert_eq!(
        (t.status.as_str(), t.share_mode.as_str()),
        ("idle", "private")
    );
    assert_eq!(t.topics_json().unwrap(), json!([]));
    let seq0 = t.change_seq;

    assert!(db.set_transcript_status("t1", "processing").await.unwrap());
    assert!(
        !db.set_transcript_status("t1", "processing").await.unwrap(),
        "no change, no event"
    );
    // A resumed run moves error back to processing; error is never set after ended.
    assert!(db.set_transcript_status("t1", "error").await.unwrap());
    assert!(db.set_transcript_status("t1", "processing").await.unwrap());
    assert!(db.set_transcript_status("t1", "ended").await.unwrap());
    assert!(!db.set_transcript_status("t1", "error").await.unwrap());
    assert_eq!(db.transcript("t1").await.unwrap().status, "ended");
    assert!(db.set_transcript_status("t1", "bogus").await.is_err());
    assert!(matches!(
        db.set_transcript_status("nope", "processing").await,
        Err(DbError::NotFound { .. })
    ));

    // Daily's duration is the master; the mix length only fills a gap.
    assert!(db.set_duration_if_unset("t1", 2000.0).await.unwrap());
    assert!(!db.set_duration_if_unset("t1", 9999.0).await.unwrap());
    db.set_duration("t1", 1834000.0).await.unwrap();
    db.set_audio_location("t1", "storage").await.unwrap();
    db.set_workflow("t1", "diarization-r1", "run-1")
        .await
        .unwrap();
    let t = db.transcript("t1").await.unwrap();
    assert_eq!(t.duration, Some(1834000.0));
    assert_eq!(t.audio_location, "storage");
    assert_eq!(t.workflow_id.as_deref(), Some("diarization-r1"));
    assert!(t.change_seq > seq0, "every update bumps change_seq");
}

async fn event_log(db: &Db) {
    db.create_transcript(&transcript("t2", None)).await.unwrap();
    for (i, name) in ["STATUS", "DURATION", "WAVEFORM"].iter().enumerate() {
        let e = db.append_event("t2", name, &json!({"n": i})).await.unwrap();
        assert_eq!(e.seq, i as i64 + 1);
    }
    let all = db.events("t2", 0).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["STATUS", "DURATION", "WAVEFORM"]
    );
    assert_eq!(all[1].data, json!({"n": 1}));
    assert_eq!(db.events("t2", 2).await.unwrap().len(), 1);

    // Concurrent appenders (TOPIC and WAVEFORM interleave) each get their own position.
    let appends = (0..20).map(|i| {
        let db = db.clone();
        tokio::spawn(async move { db.append_event("t2", "TOPIC", &json!({"i": i})).await })
    });
    let mut seqs: Vec<i64> = futures::future::join_all(appends)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap().seq)
        .collect();
    seqs.sort();
    assert_eq!(seqs, (4..24).collect::<Vec<_>>());

    assert!(matches!(
        db.append_event("ghost", "STATUS", &json!({})).await,
        Err(DbError::NotFound { .. })
    ));
    assert_eq!(db.clear_events("t2").await.unwrap(), 23);
    assert!(db.events("t2", 0).await.unwrap().is_empty());
    // A re-run's log continues the positions: a live socket that already sent seq 1..23
    // must not skip the re-run's first events as duplicates.
    let next = db
        .append_event("t2", "DURATION", &json!({"duration": 1.0}))
        .await
        .unwrap();
    assert_eq!(next.seq, 24);

    // Attempts of one step racing (one abandoned by a timeout, its retry already running):
    // each origin is stored once, and the positions a losing attempt took are given back, so
    // the log a socket replays has no holes.
    let racers = (0..24).map(|i| {
        let db = db.clone();
        tokio::spawn(async move {
            let origin = format!("wf/run/step_{}", i % 6);
            db.append_event_once("t2", Some(&origin), "TOPIC", &json!({"i": i}))
                .await
        })
    });
    let stored = futures::future::join_all(racers)
        .await
        .into_iter()
        .filter_map(|r| r.unwrap().unwrap())
        .count();
    assert_eq!(stored, 6, "one event per origin");
    let seqs: Vec<i64> = db
        .events("t2", 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (24..=30).collect::<Vec<_>>(), "no holes");
}

async fn publishing(db: &Db) {
    let hub = EventHub::default();
    if db.backend() == Backend::Postgres {
        tokio::spawn(hub.clone().listen_postgres(db.clone()));
        hub.listening().await;
    }
    let mut rx = hub.subscribe();
    let emits = Emits::new([
        ("generate_waveform", &["WAVEFORM", "PIPELINE_PROGRESS"][..]),
        ("get_recording", &["STATUS"][..]),
    ]);
    let events = Events::new(db.clone(), hub.clone(), emits);
    db.create_transcript(&transcript("t3", Some("u-7")))
        .await
        .unwrap();

    events
        .publish(
            "generate_waveform",
            "t3",
            activities::events::Event::Waveform,
            json!({"waveform": [1, 2, 3]}),
        )
        .await
        .unwrap();
    events
        .publish(
            "generate_waveform",
            "t3",
            activities::events::Event::PipelineProgress,
            json!({"step_index": 5}),
        )
        .await
        .unwrap();
    events
        .publish(
            "get_recording",
            "t3",
            activities::events::Event::Status,
            json!({"value": "processing"}),
        )
        .await
        .unwrap();
    // An event the activity does not declare is a bug: refused, never retried, not stored.
    let err = events
        .publish(
            "generate_waveform",
            "t3",
            activities::events::Event::FinalTitle,
            json!({"title": "x"}),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ActivityFailure::UndeclaredEvent(_)),
        "{err:?}"
    );
    assert!(err.is_non_retryable());
    assert!(err.to_string().contains("FINAL_TITLE"), "{err}");

    let mut got = Vec::new();
    while got.len() < 4 {
        let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a broadcast within 5 s")
            .unwrap();
        got.push((*m).clone());
    }
    let names: Vec<String> = got
        .iter()
        .map(|m| match m {
            Message::Transcript(e) => format!("ts:{}:{}:{}", e.transcript_id, e.event, e.seq),
            Message::User { user_id, envelope } => {
                assert_eq!(envelope["data"], json!({"id": "t3", "value": "processing"}));
                format!("user:{user_id}:{}", envelope["event"])
            }
        })
        .collect();
    assert_eq!(
        names,
        [
            "ts:t3:WAVEFORM:1",
            "ts:t3:PIPELINE_PROGRESS:0",
            r#"user:u-7:"TRANSCRIPT_STATUS""#,
            "ts:t3:STATUS:2",
        ]
    );
    // PIPELINE_PROGRESS is broadcast, not stored.
    let stored: Vec<String> = db
        .events("t3", 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(stored, ["WAVEFORM", "STATUS"]);
}

/// A running step's percentage (heartbeat fractions on its attempts) in the progress catch-up:
/// members of the run and its children count, runs whose ids merely look alike do not.
async fn step_progress(db: &Db) {
    use activities::db::attempts::Attempt;
    let state = workflow::progress::StepState {
        step_index: 6,
        current_step: "transcribe_track".into(),
        step_status: "in_progress".into(),
        attempt: 1,
        max_attempts: 4,
        started_at: None,
        message: Some("1/3 done".into()),
    };
    db.save_progress("run_1", "t-pct", 13, Some(2), &state)
        .await
        .unwrap();
    let attempt = |wf: &str| Attempt {
        workflow_id: wf.into(),
        run_id: "r".into(),
        activity_id: "transcribe_track".into(),
        attempt: 1,
        activity_type: "transcribe_track".into(),
        task_queue: "reflow-asr".into(),
        worker_identity: "w".into(),
    };
    let percent = || async {
        let events = db.progress_events("t-pct").await.unwrap();
        events[0]["progress"].as_u64()
    };
    // Started, nothing reported yet: no percentage.
    db.attempt_started(&attempt("run_1-track-0")).await.unwrap();
    assert_eq!(percent().await, None);
    db.attempt_ended(&attempt("run_1-track-0"), "completed", None, 0)
        .await
        .unwrap();
    db.attempt_started(&attempt("run_1-track-1")).await.unwrap();
    db.attempt_progress(&attempt("run_1-track-1"), 0.5)
        .await
        .unwrap();
    // Another run whose id matches `run_1-…` if `_` were a wildcard, and one sharing the prefix.
    for other in ["runx1-track-2", "run_10-track-0"] {
        db.attempt_started(&attempt(other)).await.unwrap();
        db.attempt_progress(&attempt(other), 0.9).await.unwrap();
    }
    // (1 done + 0.5) of 3 members.
    assert_eq!(percent().await, Some(50));
    // What a running attempt reports is kept and published as its step's state (the step's
    // row is found from the child run's id).
    let hub = EventHub::default();
    if db.backend() == Backend::Postgres {
        tokio::spawn(hub.clone().listen_postgres(db.clone()));
        hub.listening().await;
    }
    let mut rx = hub.subscribe();
    let sink = activities::progress::FractionSink {
        events: Events::new(
            db.clone(),
            hub,
            Emits::new([("report_progress", &["PIPELINE_PROGRESS"][..])]),
        ),
        attempt: attempt("run_1-track-1"),
    };
    sink.report_fraction(0.75).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the step's state is published")
        .unwrap();
    let Message::Transcript(e) = &*m else {
        panic!("{m:?}")
    };
    assert_eq!(
        (e.transcript_id.as_str(), e.event.as_str()),
        ("t-pct", "PIPELINE_PROGRESS")
    );
    assert_eq!(e.data["progress"], 58, "{:?}", e.data);
    assert_eq!(e.data["current_step"], "transcribe_track");
}

/// Registered pipeline versions and rollouts (issue 36): written once by hash, read back
/// hash-checked, by name and version; a rollout replaced as a whole.
/// The memo sweep's queries (`memo_purge`): a deleted transcript is owed a purge until it is
/// recorded, once.
async fn memo_purges(db: &Db) {
    let t = db
        .create_transcript(&transcript("t-purge", None))
        .await
        .unwrap();
    assert!(!db.unpurged(1000).await.unwrap().contains(&t.id));
    assert!(db.delete_transcript(&t.id).await.unwrap());
    assert!(!db.delete_transcript(&t.id).await.unwrap(), "once");
    assert!(db.unpurged(1000).await.unwrap().contains(&t.id));
    db.set_purged(&t.id).await.unwrap();
    db.set_purged(&t.id).await.unwrap();
    assert!(!db.unpurged(1000).await.unwrap().contains(&t.id));
}

async fn pipeline_versions(db: &Db) {
    use workflow::pipeline::fingerprint::Fingerprints;
    use workflow::pipeline::rollout::Rollout;
    let catalog = reflow_tests::registry();
    let load = |v: u32| {
        let text = reflow_tests::meetings::with_version(reflow::intake::DIARIZATION_YAML, v);
        workflow::parse_and_validate("diarization.yaml", &text, catalog.catalog()).unwrap()
    };
    let (v2, v3) = (load(2), load(3));
    for p in [&v2, &v3] {
        let fps = Fingerprints::of(p, catalog.catalog());
        assert!(
            db.insert_pipeline_version(p, &fps, Some("0123abcd"))
                .await
                .unwrap()
        );
        assert!(!db.insert_pipeline_version(p, &fps, None).await.unwrap());
    }
    let all = db.pipeline_versions(None).await.unwrap();
    let mine: Vec<i64> = all
        .iter()
        .filter(|r| r.name == "DiarizationPipeline")
        .map(|r| r.version)
        .collect();
    assert_eq!(mine, [2, 3]);
    let read = db
        .pipeline_version(&v3.hash)
        .await
        .unwrap()
        .unwrap()
        .decode()
        .unwrap();
    assert_eq!(read.pipeline, v3);
    assert_eq!(read.git_commit.as_deref(), Some("0123abcd"));
    let by_version = db
        .pipeline_version_of("DiarizationPipeline", 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_version.hash, v2.hash);
    let rollout = Rollout {
        current: 2,
        candidate: Some(3),
        ramp: 10,
        rooms: [("standup".to_owned(), 3)].into(),
        shadow: None,
    };
    db.set_pipeline_rollout("DiarizationPipeline", &rollout)
        .await
        .unwrap();
    let promoted = Rollout {
        current: 3,
        ..Rollout::default()
    };
    db.set_pipeline_rollout("DiarizationPipeline", &promoted)
        .await
        .unwrap();
    assert_eq!(
        db.pipeline_rollout("DiarizationPipeline").await.unwrap(),
        Some(promoted)
    );
    assert_eq!(db.pipeline_rollout("Other").await.unwrap(), None);
}

async fn suite(url: &str) {
    let db = reflow_tests::postgres::connect(url).await;
    rows_and_status_rules(&db).await;
    event_log(&db).await;
    publishing(&db).await;
    step_progress(&db).await;
    pipeline_versions(&db).await;
    memo_purges(&db).await;
    // Migrations are idempotent: a second process connecting finds the schema current.
    reflow_tests::postgres::connect(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_and_events_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/state/reflow.db", dir.path().display());
    suite(&url).await;
    assert!(dir.path().join("state/reflow.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_and_events_on_postgres() {
    let pg = reflow_tests::PgServer::start();
    suite(&pg.url).await;
}
