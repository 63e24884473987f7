//! The whole meeting path on a real Temporal dev server (issue: the meeting pipeline end to
//! end): a signed Daily webhook for a 3-track meeting synthesized with espeak-ng (WebM/Opus
//! tracks in a real S3-compatible server) → `DiarizationPipeline` → an `ended` transcript with
//! every speaker's words at the right offsets, participants, topics, title, summaries, action
//! items, MP3 and waveform; the WebSocket event sequence; one Zulip post (updated on a re-run)
//! and one signed customer webhook; duplicates and a concurrent poll start nothing; a bad
//! signature gets 401; a recording Daily does not know ends as `error` with the step named.
//!
//! Daily, Zulip, the customer's receiver and the LLM service are local stand-ins
//! (`reflow_tests::daily`, `reflow_tests::standins`, the OpenAI-compatible stand-in of
//! `reflow_tests::meetings`); everything of reflow's own is real, transcription included
//! (embedded Whisper on the synthesized speech). The embedded LLM's chain (guards, fallback,
//! the same steps) is `tests/tests/suite/embedded.rs`'s subject.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use activities::daily::client::DailyConfig;
use activities::db::meetings::NewRoom;
use activities::storage::Storage;
use activities::transcript::{Participant, Topic, Word};
use activities::zulip::ZulipConfig;
use futures::StreamExt;
use reflow::intake::{self, Discovered, Intake, Outcome};
use reflow::runs;
use reflow_tests::daily::{DailyStandIn, ready_to_download};
use reflow_tests::media::{espeak, ffmpeg, opus_webm, seconds};
use reflow_tests::s3::S3Server;
use reflow_tests::standins::{self, StandIn};
use reflow_tests::{InProcessWorker, client, db, hub, registry, serve_api, transcriber};
use serde_json::{Value, json};
use temporalio_client::WorkflowCountOptions;

const DAILY_KEY: &str = "daily-test-key";
const DAILY_SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const HOOK_SECRET: &str = "whsec-test";
const ROOM_NAME: &str = "standup-20260110042117";
const QUEUES: [&str; 5] = [
    "reflow",
    "reflow-audio",
    "reflow-mixdown",
    "reflow-asr",
    "reflow-llm",
];

/// One synthesized participant.
struct Speaker {
    id: &'static str,
    name: &'static str,
    voice: &'static str,
    offset_ms: u64,
    text: &'static str,
    keywords: &'static [&'static str],
}

const SPEAKERS: [Speaker; 3] = [
    Speaker {
        id: "890c0eae-1d2f-4c3b-9a8e-0f1e2d3c4b5a",
        name: "Ana",
        voice: "en-us",
        offset_ms: 0,
        text: "Good morning everyone. Let us review the release plan for version two. \
               The release is scheduled for Monday, after testing is complete.",
        keywords: &["release", "monday"],
    },
    Speaker {
        id: "11111111-2222-4333-8444-555555555555",
        name: "Ben",
        voice: "en-gb",
        offset_ms: 4_000,
        text: "Thanks Ana. The budget for the marketing campaign is ten thousand dollars. \
               I will prepare the budget report by Friday.",
        keywords: &["budget", "friday"],
    },
    Speaker {
        id: "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
        name: "Chloe",
        voice: "en+f3",
        offset_ms: 9_500,
        text: "I agree with the plan. We should hire two engineers for the mobile team. \
               I will schedule the interviews next week.",
        keywords: &["engineers", "interviews"],
    },
];

/// A Daily raw track: espeak-ng speech as WebM/Opus whose first block sits at the speaker's
/// offset (as Daily's do), and its key in the Daily layout (the filename's track start is
/// ≈200 ms later than the metadata, as with real tracks).
fn raw_track(dir: &Path, s: &Speaker, rec_ms: u64) -> (PathBuf, String) {
    let wav = espeak(dir, s.name, s.voice, s.text);
    let webm = dir.join(format!("{}.webm", s.name));
    let offset = format!("{:.3}", s.offset_ms as f64 / 1000.0);
    opus_webm(
        &wav,
        &webm,
        "aresample=48000",
        &["-output_ts_offset", &offset],
    );
    let key = format!(
        "acme/{ROOM_NAME}/{rec_ms}-{}-cam-audio-{}",
        s.id,
        rec_ms + s.offset_ms + 200
    );
    (webm, key)
}

struct Fixture {
    _s3: S3Server,
    _worker: InProcessWorker,
    storage: Storage,
    daily: DailyStandIn,
    zulip: StandIn,
    receiver: StandIn,
    llm: StandIn,
    api: String,
    intake: Arc<Intake>,
    client: temporalio_client::Client,
}

async fn fixture() -> Fixture {
    let s3 = S3Server::start("transcripts");
    s3.add_bucket("daily-recordings");
    let storage = s3.storage("s3://transcripts");
    let recordings = s3.storage("s3://daily-recordings");
    let daily = DailyStandIn::start(DAILY_KEY).await;
    let zulip = standins::zulip("bot@zulip.test", "zulip-key").await;
    let receiver = standins::webhook_receiver(HOOK_SECRET).await;
    let llm = StandIn::start(reflow_tests::meetings::tagged_chat_reply).await;
    let events = activities::events::Events::new(db(), hub(), registry().emits());
    let services = reflow::registry::Services {
        storage: storage.clone(),
        recordings,
        scratch: std::env::temp_dir().join("reflow-scratch"),
        data_dir: std::env::temp_dir().join("reflow-data"),
        events: events.clone(),
        transcriber: transcriber(),
        llm: Arc::new(activities::llm::Llm::new(activities::llm::LlmConfig {
            backend: activities::llm::LlmBackend::OpenAi {
                url: llm.url.clone(),
                api_key: None,
                model: "gpt-test".into(),
            },
            context_window: 16_000,
            parse_max_retries: 3,
            rate_limit_per_second: 50,
            timeout: None,
        })),
        daily: DailyConfig {
            api_key: Some(DAILY_KEY.into()),
            api_url: daily.api_url(),
            webhook_secret: Some(DAILY_SECRET.into()),
            // The poll reads the webhook's state (the breaker gauges).
            webhook_uuid: Some("wh-meeting".into()),
        },
        zulip: ZulipConfig {
            realm: Some(zulip.url.clone()),
            bot_email: "bot@zulip.test".into(),
            api_key: "zulip-key".into(),
            ui_base_url: "http://reflow.test".into(),
        },
        // The receiver listens on loopback: allowed explicitly, as the SSRF guard requires.
        webhook_private_hosts: vec!["127.0.0.1".into()],
        intake: None,
    };
    let client = client().await;
    let pipeline = intake::load_pipeline(None, registry().catalog()).unwrap();
    reflow_tests::register(&pipeline);
    let intake = Arc::new(Intake {
        db: db(),
        client: client.clone(),
        pipeline,
        bucket_name: Some("daily-recordings".into()),
    });
    let services = reflow::registry::Services {
        intake: Some(intake.clone()),
        ..services
    };
    let queues: Vec<String> = QUEUES.iter().map(|q| q.to_string()).collect();
    let worker = InProcessWorker::start_with(&queues, services);
    let api = serve_api(reflow::http::ApiState {
        temporal: Some(client.clone()),
        intake: Some(intake.clone()),
        daily_webhook_secret: Some(DAILY_SECRET.into()),
        ..reflow::http::ApiState::new(events, storage.clone())
    })
    .await;
    Fixture {
        _s3: s3,
        _worker: worker,
        storage,
        daily,
        zulip,
        receiver,
        llm,
        api,
        intake,
        client,
    }
}

/// The room and the meeting intake matches the recording to.
async fn room_and_meeting(f: &Fixture, rec_s: u64) {
    let db = db();
    let room = db
        .create_room(&NewRoom {
            id: "r-standup".into(),
            name: "standup".into(),
            user_id: Some("u-7".into()),
            zulip_stream: Some("meetings".into()),
            zulip_topic: Some("standup".into()),
            webhook_url: Some(format!("{}/hooks/reflow", f.receiver.url)),
            webhook_secret: Some(HOOK_SECRET.into()),
        })
        .await
        .unwrap();
    let start = std::time::UNIX_EPOCH + Duration::from_secs(rec_s - 120);
    db.create_meeting(
        "m-standup",
        &room,
        ROOM_NAME,
        &humantime::format_rfc3339_seconds(start).to_string(),
    )
    .await
    .unwrap();
}

/// Every event of a transcript's socket until STATUS ended.
async fn collect_events(api: String, transcript_id: String) -> Vec<Value> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{api}/v1/transcripts/{transcript_id}/events"
    ))
    .await
    .expect("websocket");
    let mut out: Vec<Value> = Vec::new();
    while let Some(Ok(m)) = ws.next().await {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            let event: Value = serde_json::from_str(&t).unwrap();
            // Reflector's frontend closes on STATUS ended; the server never closes first.
            let ended = event["event"] == "STATUS" && event["data"]["value"] == "ended";
            out.push(event);
            if ended {
                let _ = ws.close(None).await;
                break;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_daily_webhook_becomes_a_finished_transcript() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let rec_s = 1_768_018_896u64;
    let rec_ms = rec_s * 1000 + 877;
    let recording_id = "3f1c5a2e-0000-4000-8000-000000000001";
    room_and_meeting(&f, rec_s).await;

    // Three raw tracks in Daily's bucket, and a video track intake must ignore.
    let mut tracks = Vec::new();
    let mut last_end = 0.0f64;
    for s in &SPEAKERS {
        let (path, key) = raw_track(dir.path(), s, rec_ms);
        last_end = last_end.max(s.offset_ms as f64 / 1000.0 + seconds(&path));
        let size = f
            ._s3
            .storage("s3://daily-recordings")
            .put_file(&key, &path)
            .await
            .unwrap();
        tracks.push(json!({"type": "audio", "s3Key": key, "size": size}));
    }
    tracks.push(json!({"type": "video", "s3Key": format!("acme/{ROOM_NAME}/{rec_ms}-{}-cam-video-{rec_ms}", SPEAKERS[0].id), "size": 1}));
    let recording = json!({
        "id": recording_id, "room_name": ROOM_NAME, "start_ts": rec_s, "status": "finished",
        "duration": last_end.ceil(), "mtgSessionId": "sess-standup", "s3key": null, "tracks": tracks,
    });
    f.daily.add_recording(recording.clone());
    f.daily.add_participants(
        "sess-standup",
        SPEAKERS
            .iter()
            .map(|s| json!({"participant_id": s.id, "user_id": format!("u-{}", s.name), "user_name": s.name, "join_time": rec_s, "duration": 60}))
            .collect(),
    );
    let hook = format!("http://{}/v1/daily/webhook", f.api);
    let body = ready_to_download(&recording);

    // A bad signature: 401, and nothing is written or started.
    let (status, answer) = f.daily.send_webhook(&hook, DAILY_SECRET, &body, true).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["detail"], "Invalid webhook signature");
    assert!(db().recording(recording_id).await.unwrap().is_none());
    // Daily's test ping is answered.
    let (status, answer) = f
        .daily
        .send_webhook(&hook, DAILY_SECRET, r#"{"test":"test"}"#, false)
        .await;
    assert_eq!((status, answer), (200, json!({"status": "ok"})));

    // The real delivery: a fast 200, rows written, the run started.
    let started = std::time::Instant::now();
    let (status, answer) = f
        .daily
        .send_webhook(&hook, DAILY_SECRET, &body, false)
        .await;
    assert_eq!((status, answer), (200, json!({"status": "ok"})));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the webhook answers within 1 s"
    );
    let tid = db()
        .transcript_id_of_recording(recording_id)
        .await
        .unwrap()
        .expect("intake created the transcript");
    let workflow_id = intake::workflow_id(recording_id);
    let events = tokio::spawn(collect_events(f.api.clone(), tid.clone()));

    // Redelivery racing the polling backup (the `PollDailyRecordings` pipeline the schedule
    // starts): both answered, nothing new started. The poll also sees a cloud recording and
    // one still in progress (both skipped) and a raw-tracks one whose meeting does not exist
    // yet (left for the next poll).
    f.daily.add_recording(json!({"id": "cloud-1", "room_name": ROOM_NAME, "start_ts": rec_s, "status": "finished", "duration": 30, "s3key": "acme/cloud.mp4", "tracks": []}));
    f.daily.add_recording(json!({"id": "busy-1", "room_name": ROOM_NAME, "start_ts": rec_s, "status": "in-progress", "duration": null, "tracks": tracks.clone()}));
    let early_key = format!(
        "acme/later-20260110042117/{rec_ms}-{}-cam-audio-{rec_ms}",
        SPEAKERS[0].id
    );
    f.daily.add_recording(json!({"id": "early-1", "room_name": "later-20260110042117", "start_ts": rec_s, "status": "finished", "duration": 30, "tracks": [{"type": "audio", "s3Key": early_key, "size": 1}]}));
    let poll = workflow::parse_and_validate(
        "daily-poll.yaml",
        reflow::gitops::DAILY_POLL_YAML,
        registry().catalog(),
    )
    .unwrap();
    reflow_tests::register(&poll);
    runs::start(&f.client, &poll, json!({}), "daily-poll-test")
        .await
        .unwrap();
    let (again, polled) = tokio::join!(
        f.daily.send_webhook(&hook, DAILY_SECRET, &body, false),
        runs::wait(&f.client, "daily-poll-test")
    );
    assert_eq!(again, (200, json!({"status": "ok"})));
    let polled = polled.unwrap();
    assert_eq!(polled["seen"], 4, "{polled}");
    assert_eq!(polled["started"], json!([]), "{polled}");
    assert_eq!(polled["waiting"], json!(["early-1"]), "{polled}");
    // The intake routine itself, called again for the same recording: already started.
    let discovered = Discovered {
        recording_id: recording_id.into(),
        room_name: ROOM_NAME.into(),
        start_ts: rec_s as i64,
        track_keys: vec![tracks[0]["s3Key"].as_str().unwrap().to_owned()],
    };
    assert_eq!(
        f.intake.intake(&discovered).await.unwrap(),
        Outcome::AlreadyStarted {
            transcript_id: tid.clone(),
            workflow_id: workflow_id.clone()
        }
    );

    let out = runs::wait(&f.client, &workflow_id).await.unwrap();
    let t = db().transcript(&tid).await.unwrap();
    assert_eq!(t.status, "ended", "{t:?}");
    assert_eq!(t.room_id.as_deref(), Some("r-standup"));
    assert_eq!(t.meeting_id.as_deref(), Some("m-standup"));
    assert_eq!(t.share_mode, "public");
    assert_eq!(
        t.duration,
        Some(last_end.ceil() * 1000.0),
        "Daily's duration is the master"
    );

    // Participants named from Daily, one speaker per track.
    let people: Vec<Participant> = serde_json::from_str(&t.participants).unwrap();
    let names: Vec<(&str, i64)> = people
        .iter()
        .map(|p| (p.name.as_str(), p.speaker))
        .collect();
    assert_eq!(names, [("Ana", 0), ("Ben", 1), ("Chloe", 2)]);

    // Every speaker's words, recognised, starting at their offset (±0.5 s).
    let words: Vec<Word> = serde_json::from_slice(
        &f.storage
            .get(&format!("{tid}/pipeline/words.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        words.windows(2).all(|w| w[0].start <= w[1].start),
        "merged in time order"
    );
    for (i, s) in SPEAKERS.iter().enumerate() {
        let mine: Vec<&Word> = words.iter().filter(|w| w.speaker == i as i64).collect();
        assert!(!mine.is_empty(), "{} has words", s.name);
        let first = mine[0].start;
        let offset = s.offset_ms as f64 / 1000.0;
        assert!(
            (first - offset).abs() <= 0.5,
            "{}: first word at {first:.2} s, offset {offset} s",
            s.name
        );
        let text: String = mine.iter().map(|w| w.text.to_lowercase()).collect();
        for k in s.keywords {
            assert!(
                text.contains(k),
                "{} said {k:?}; recognised {text:?}",
                s.name
            );
        }
    }

    // Topics, title, summaries, action items: every LLM step asked the service once.
    let asked: Vec<String> = f
        .llm
        .requests()
        .iter()
        .filter_map(|r| {
            r.json.as_ref()?["messages"][0]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    for step in [
        "main topic of the excerpt",
        "single-line title",
        "main subjects",
        "recapping",
        "decisions made",
    ] {
        assert_eq!(
            asked.iter().filter(|m| m.contains(step)).count(),
            1,
            "{step}: {asked:?}"
        );
    }
    let topics: Vec<Topic> = serde_json::from_str(&t.topics).unwrap();
    assert!(!topics.is_empty());
    assert!(t.title.as_deref().is_some_and(|x| !x.is_empty()), "{t:?}");
    assert!(t.short_summary.as_deref().is_some_and(|x| !x.is_empty()));
    assert!(
        t.long_summary
            .as_deref()
            .is_some_and(|x| x.starts_with("# Quick recap"))
    );
    let items: Value = serde_json::from_str(t.action_items.as_deref().unwrap()).unwrap();
    assert!(
        items["decisions"].is_array() && items["next_steps"].is_array(),
        "{items}"
    );

    // Audio: the MP3 and the waveform stored; the padded tracks deleted by finalize.
    assert!(f.storage.exists(&format!("{tid}/audio.mp3")).await.unwrap());
    let peaks: Vec<u8> =
        serde_json::from_slice(&f.storage.get(&format!("{tid}/audio.json")).await.unwrap())
            .unwrap();
    assert_eq!(peaks.len(), 255);
    for i in 0..3 {
        assert!(
            !f.storage
                .exists(&format!("{tid}/pipeline/padded_{i}.webm"))
                .await
                .unwrap()
        );
    }
    // The run's result is the Conductor view's `output` (docs/contracts/conductor-status.md §2).
    assert_eq!(
        out.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "transcript_id",
            "title",
            "summary",
            "duration",
            "word_count"
        ],
        "{out}"
    );
    assert_eq!(out["transcript_id"], tid.as_str());
    assert_eq!(out["title"].as_str(), t.title.as_deref());
    assert_eq!(out["summary"].as_str(), t.short_summary.as_deref());
    assert_eq!(out["duration"].as_f64(), t.duration);
    assert!(out["word_count"].as_u64().unwrap() > 50, "{out}");

    // The socket saw the pipeline's events, TRANSCRIPT then STATUS ended last.
    let seen = tokio::time::timeout(Duration::from_secs(30), events)
        .await
        .expect("STATUS ended arrives on the socket")
        .unwrap();
    let names: Vec<&str> = seen.iter().filter_map(|e| e["event"].as_str()).collect();
    for expected in [
        "DURATION",
        "TOPIC",
        "FINAL_TITLE",
        "FINAL_SHORT_SUMMARY",
        "FINAL_LONG_SUMMARY",
        "ACTION_ITEMS",
        "WAVEFORM",
        "TRANSCRIPT",
        "STATUS",
        "PIPELINE_PROGRESS",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let last_status = seen.iter().rev().find(|e| e["event"] == "STATUS").unwrap();
    assert_eq!(last_status["data"]["value"], "ended");
    let pos = |n: &str| names.iter().rposition(|x| *x == n).unwrap();
    assert!(pos("TRANSCRIPT") < pos("STATUS"), "{names:?}");

    // One Zulip post, one signed webhook.
    let posts: Vec<_> = f
        .zulip
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1, "one Zulip message");
    assert_eq!(posts[0].form["to"], "meetings");
    assert_eq!(posts[0].form["topic"], "standup");
    assert!(posts[0].form["content"].contains(t.title.as_deref().unwrap()));
    assert!(posts[0].form["content"].contains(&format!("http://reflow.test/transcripts/{tid}")));
    let t = db().transcript(&tid).await.unwrap();
    assert_eq!(t.zulip_message_id, Some(1000));
    let hooks = f.receiver.requests();
    assert_eq!(hooks.len(), 1, "one webhook delivery");
    assert!(standins::signature_ok(HOOK_SECRET, &hooks[0]));
    let payload = hooks[0].json.clone().unwrap();
    assert_eq!(payload["event"], "transcript.completed");
    assert_eq!(payload["transcript"]["id"], tid.as_str());
    assert_eq!(payload["transcript"]["status"], "ended");
    assert_eq!(
        payload["transcript"]["participants"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        payload["room"],
        json!({"id": "r-standup", "name": "standup"})
    );
    assert_eq!(payload["event_id"].as_str().unwrap().len(), 32);

    // Daily was asked for the recording and the participants (pages until the 404).
    let asked = f.daily.requests();
    assert!(
        asked
            .iter()
            .any(|r| r == &format!("GET /v1/recordings/{recording_id}"))
    );
    assert!(
        asked
            .iter()
            .any(|r| r.starts_with("GET /v1/meetings/sess-standup/participants"))
    );

    // Still exactly one run of this recording.
    let runs_of = f
        .client
        .count_workflows(
            format!("WorkflowId = '{workflow_id}'"),
            WorkflowCountOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(runs_of.count(), 1, "duplicates started nothing");

    reprocess_updates_the_zulip_message(&f, &tid, &workflow_id, &payload).await;
    unknown_recording_ends_in_error(&f, rec_s).await;
    every_metric_the_dashboards_and_alerts_read_is_exported(&f).await;
}

/// Every `temporal_*` / `reflow_*` name in `dashboards/*.json` and `dashboards/alerts/*.yml`,
/// histograms by their `_bucket` series.
fn metric_names_in_dashboards() -> std::collections::BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut files = Vec::new();
    for dir in [root.clone(), root.join("alerts")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json" || x == "yml") {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 3, "dashboards and rule files: {files:?}");
    let mut names = std::collections::BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let rest = &text[i..];
            let boundary =
                i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
            if boundary && (rest.starts_with("temporal_") || rest.starts_with("reflow_")) {
                let n: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                i += n.len();
                names.insert(n);
            } else {
                i += rest.chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    names
}

/// The coverage check (observability issue): after the meeting pipeline ran end to end, the
/// worker's one scrape target exports every metric a dashboard panel or an alert rule reads.
async fn every_metric_the_dashboards_and_alerts_read_is_exported(f: &Fixture) {
    // SDK Core exports the workflow-task failure counter from the first failure on.
    let id = "meeting-task-fails-once";
    f.client
        .start_workflow(
            temporalio_client::UntypedWorkflow::new("TaskFailsOnce"),
            workflow::payload::to_raw(&json!({})),
            temporalio_client::WorkflowStartOptions::new(QUEUES[0], id).build(),
        )
        .await
        .unwrap();
    reflow::runs::wait(&f.client, id).await.unwrap();

    let text = reqwest::get(format!("http://{}/metrics", f.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported = |name: &str| {
        text.lines().any(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
    };
    let names = metric_names_in_dashboards();
    assert!(names.len() >= 15, "{names:?}");
    let missing: Vec<&String> = names.iter().filter(|n| !exported(n)).collect();
    assert!(
        missing.is_empty(),
        "named in dashboards/ but not exported after a pipeline run: {missing:?}"
    );
    // Cost attribution: storage bytes per step, and the run's duration.
    assert!(
        text.contains("reflow_storage_bytes_total{"),
        "storage bytes"
    );
    // The duration of a run that ended (finalize gets `started_at`), not only of failed ones.
    assert!(
        text.lines().any(
            |l| l.starts_with("reflow_pipeline_duration_seconds_bucket{")
                && l.contains("outcome=\"ended\"")
        ),
        "pipeline duration of an ended run"
    );
}

/// `POST /v1/transcripts/{id}/process{query}`, answered with JSON.
async fn process(f: &Fixture, transcript_id: &str, query: &str) -> Value {
    reqwest::Client::new()
        .post(format!(
            "http://{}/v1/transcripts/{transcript_id}/process{query}",
            f.api
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `POST /v1/transcripts/{id}/process?notify=true` after the run ended: a new run of the same
/// workflow id; the Zulip message is updated in place, and the webhook carries a new event id
/// (without `notify` a new run tells no one: tests/tests/suite/rerun_effects.rs). A
/// participant denied consent meanwhile: this run's cleanup deletes the raw tracks and the
/// MP3, and the audio endpoint then answers 404.
async fn reprocess_updates_the_zulip_message(
    f: &Fixture,
    tid: &str,
    workflow_id: &str,
    first_payload: &Value,
) {
    let http = reqwest::Client::new();
    let mp3 = format!("http://{}/v1/transcripts/{tid}/audio/mp3", f.api);
    assert_eq!(http.get(&mp3).send().await.unwrap().status(), 200);
    db().add_consent("m-standup", Some("u-Ben"), false)
        .await
        .unwrap();
    let answer = process(f, tid, "?notify=true").await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["workflow_id"], workflow_id);
    runs::wait(&f.client, workflow_id).await.unwrap();
    let t = db().transcript(tid).await.unwrap();
    assert_eq!(t.status, "ended");
    let zulip: Vec<String> = f
        .zulip
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        zulip,
        ["POST /api/v1/messages", "PATCH /api/v1/messages/1000"],
        "one post, then an update"
    );
    let hooks = f.receiver.requests();
    assert_eq!(hooks.len(), 2);
    let second = hooks[1].json.clone().unwrap();
    assert_ne!(
        second["event_id"], first_payload["event_id"],
        "a reprocess is a new event"
    );

    assert!(t.audio_deleted, "consent denied: audio deleted");
    assert!(!f.storage.exists(&format!("{tid}/audio.mp3")).await.unwrap());
    let daily_bucket = f._s3.storage("s3://daily-recordings");
    let row = db()
        .recording(t.recording_id.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    for key in row.keys() {
        assert!(!daily_bucket.exists(&key).await.unwrap(), "{key} deleted");
    }
    let answer = http.get(&mp3).send().await.unwrap();
    assert_eq!(answer.status(), 404);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["detail"], "Audio unavailable due to privacy settings");
}

/// A recording Daily does not know: `get_recording` fails for good (NotFound), `mark_failed`
/// sets `error` naming the step, and the run fails.
async fn unknown_recording_ends_in_error(f: &Fixture, rec_s: u64) {
    let recording_id = "3f1c5a2e-0000-4000-8000-00000000dead";
    let key = format!(
        "acme/{ROOM_NAME}/{}-{}-cam-audio-{}",
        rec_s * 1000,
        SPEAKERS[0].id,
        rec_s * 1000 + 10
    );
    let outcome = f
        .intake
        .intake(&Discovered {
            recording_id: recording_id.into(),
            room_name: ROOM_NAME.into(),
            start_ts: rec_s as i64,
            track_keys: vec![key.clone()],
        })
        .await
        .unwrap();
    let Outcome::Started {
        transcript_id,
        workflow_id,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    let err = runs::wait(&f.client, &workflow_id).await.unwrap_err();
    assert!(err.to_string().contains("get_recording"), "{err}");
    let t = db().transcript(&transcript_id).await.unwrap();
    assert_eq!(t.status, "error");
    let why = t.error.unwrap_or_default();
    assert!(
        why.contains("get_recording") && why.contains("NotFound"),
        "{why}"
    );
    let stored = db().events(&transcript_id, 0).await.unwrap();
    assert!(
        stored
            .iter()
            .any(|e| e.event == "STATUS" && e.data["value"] == "error"),
        "{stored:?}"
    );

    // The operator fixes the cause (Daily now knows the recording; its one track is silent,
    // so no words and no LLM steps) and retries: the run resumes from the failed step, the
    // transcript is `processing` again at once, and it ends.
    let dir = tempfile::tempdir().unwrap();
    let silent = dir.path().join("silent.webm");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=48000:cl=mono",
        "-t",
        "3",
        "-c:a",
        "libopus",
        "-b:a",
        "64k",
        silent.to_str().unwrap(),
    ]);
    f._s3
        .storage("s3://daily-recordings")
        .put_file(&key, &silent)
        .await
        .unwrap();
    f.daily.add_recording(json!({
        "id": recording_id, "room_name": ROOM_NAME, "start_ts": rec_s, "status": "finished",
        "duration": 3, "tracks": [{"type": "audio", "s3Key": key, "size": 1}],
    }));
    let answer = process(f, &transcript_id, "").await;
    assert_eq!(answer["status"], "retrying", "{answer}");
    let t = db().transcript(&transcript_id).await.unwrap();
    assert_ne!(
        t.status, "error",
        "a retry moves the transcript out of error"
    );
    let out = reflow_tests::wait_for(
        "the resumed run to end",
        Duration::from_secs(120),
        || async { runs::wait(&f.client, &workflow_id).await.ok() },
    )
    .await;
    assert_eq!(out["word_count"], 0, "a silent track: no words");
    assert_eq!(out["title"], Value::Null, "no words, no title: {out}");
    let t = db().transcript(&transcript_id).await.unwrap();
    assert_eq!((t.status.as_str(), t.error.as_deref()), ("ended", None));
}
