//! The HTTP API on a real server socket, on SQLite and on PostgreSQL: transcript JSON in
//! every format, topics, participants, waveform, audio with ranges, privacy and access rules,
//! and the WebSocket's replay then live events.

use std::time::Duration;

use activities::db::Db;
use activities::db::transcripts::NewTranscript;
use activities::events::{Emits, EventHub, Events};
use activities::storage::Storage;
use activities::transcript::{Participant, Topic, Word};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use reflow::http::ApiState;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const TOKEN: &str = "operator-secret";

fn word(text: &str, start: f64, speaker: i64) -> Word {
    Word {
        text: text.into(),
        start,
        end: start + 0.5,
        speaker,
    }
}

async fn seed(db: &Db, store: &Storage) {
    db.create_transcript(&NewTranscript {
        id: "t-api".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let topics = [Topic {
        id: "topic-1".into(),
        title: "Release scope".into(),
        summary: "What ships.".into(),
        timestamp: 0.5,
        duration: None,
        transcript: "Hello everyone. Hi Ana.".into(),
        words: vec![
            word(" Hello", 0.5, 0),
            word(" everyone.", 1.0, 0),
            word(" Hi", 2.0, 1),
            word(" Ana.", 2.5, 1),
        ],
    }];
    db.set_topics("t-api", &topics).await.unwrap();
    db.set_participants(
        "t-api",
        &[Participant {
            id: "890c0eae-1d2f-4c3b-9a8e-0f1e2d3c4b5a".into(),
            speaker: 0,
            name: "Ana".into(),
            user_id: None,
            email: None,
        }],
    )
    .await
    .unwrap();
    db.set_duration("t-api", 3000.0).await.unwrap();
    let mp3: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    store
        .put("t-api/audio.mp3", Bytes::from(mp3))
        .await
        .unwrap();
    store
        .put(
            "t-api/audio.json",
            Bytes::from(json!(vec![7; 255]).to_string()),
        )
        .await
        .unwrap();
}

async fn start(
    db: Db,
    store: Storage,
    token: Option<&str>,
    secret: Option<&str>,
) -> (String, Events) {
    let hub = EventHub::default();
    if db.backend() == activities::db::Backend::Postgres {
        tokio::spawn(hub.clone().listen_postgres(db.clone()));
        hub.listening().await;
    }
    let events = Events::new(
        db,
        hub,
        Emits::new([
            ("save_topics", &["TOPIC", "PIPELINE_PROGRESS"][..]),
            ("get_recording", &["STATUS"][..]),
        ]),
    );
    let state = ApiState {
        api_token: token.map(Into::into),
        secret_key: secret.map(Into::into),
        ..ApiState::new(events.clone(), store)
    };
    (reflow_tests::serve_api(state).await, events)
}

async fn get(http: &reqwest::Client, url: String) -> (u16, Value) {
    let r = http.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn rest(addr: &str) {
    let http = reqwest::Client::new();
    let base = format!("http://{addr}/v1/transcripts");
    let (s, t) = get(&http, format!("{base}/t-api")).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["transcript"], "Ana: Hello everyone.\nSpeaker 1: Hi Ana.");
    assert_eq!(
        (t["status"].as_str(), t["duration"].as_f64()),
        (Some("idle"), Some(3000.0))
    );
    assert_eq!(t["participants"][0]["name"], "Ana");
    for field in [
        "id",
        "share_mode",
        "change_seq",
        "audio_deleted",
        "room_name",
        "has_cloud_video",
        "transcript_format",
    ] {
        assert!(t.get(field).is_some(), "field {field} missing: {t}");
    }
    let (_, t) = get(
        &http,
        format!("{base}/t-api?transcript_format=text-timestamped"),
    )
    .await;
    assert_eq!(
        t["transcript"],
        "[00:00] Ana: Hello everyone.\n[00:02] Speaker 1: Hi Ana."
    );
    let (_, t) = get(
        &http,
        format!("{base}/t-api?transcript_format=webvtt-named"),
    )
    .await;
    assert!(
        t["transcript"]
            .as_str()
            .unwrap()
            .contains("00:00:02.000 --> 00:00:03.000\n<v Speaker 1>Hi Ana.")
    );
    let (_, t) = get(&http, format!("{base}/t-api?transcript_format=json")).await;
    assert_eq!(t["transcript"][0]["speaker_name"], "Ana");
    let (s, e) = get(&http, format!("{base}/t-api?transcript_format=pdf")).await;
    assert_eq!(s, 422);
    assert!(e["detail"].as_str().unwrap().contains("pdf"));

    let (_, topics) = get(&http, format!("{base}/t-api/topics")).await;
    assert_eq!(topics[0]["duration"], 2.5, "last end − first start");
    assert_eq!(
        topics[0]["segments"][1],
        json!({"text": "Hi Ana.", "start": 2.0, "speaker": 1})
    );
    assert!(topics[0].get("words").is_none());
    let (_, topics) = get(&http, format!("{base}/t-api/topics/with-words")).await;
    assert_eq!(topics[0]["words"].as_array().unwrap().len(), 4);
    let (_, wps) = get(
        &http,
        format!("{base}/t-api/topics/topic-1/words-per-speaker"),
    )
    .await;
    assert_eq!(wps["words_per_speaker"][1]["speaker"], 1);
    assert_eq!(
        get(&http, format!("{base}/t-api/topics/nope/words-per-speaker"))
            .await
            .0,
        404
    );
    let (_, people) = get(&http, format!("{base}/t-api/participants")).await;
    assert_eq!(people[0]["speaker"], 0);
    let (_, wave) = get(&http, format!("{base}/t-api/audio/waveform")).await;
    assert_eq!(wave["data"].as_array().unwrap().len(), 255);

    // Audio: whole, a range, a suffix range, HEAD, an unsatisfiable range.
    let whole = http
        .get(format!("{base}/t-api/audio/mp3"))
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "audio/mpeg");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.bytes().await.unwrap().len(), 10_000);
    let part = http
        .get(format!("{base}/t-api/audio/mp3"))
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 100-199/10000");
    let body = part.bytes().await.unwrap();
    assert_eq!(body.len(), 100);
    assert_eq!(
        (body[0], body[99]),
        (100, 199),
        "bytes 100..=199 of the object"
    );
    let tail = http
        .get(format!("{base}/t-api/audio/mp3"))
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.headers()["content-range"], "bytes 9990-9999/10000");
    let head = http
        .head(format!("{base}/t-api/audio/mp3"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["content-length"], "10000");
    let bad = http
        .get(format!("{base}/t-api/audio/mp3"))
        .header("Range", "bytes=20000-")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 416);

    let (s, e) = get(&http, format!("{base}/nope")).await;
    assert_eq!(
        (s, e["detail"].as_str()),
        (404, Some("Transcript not found"))
    );
}

async fn privacy_and_access(db: &Db, store: &Storage) {
    let (addr, _) = start(db.clone(), store.clone(), Some(TOKEN), None).await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/transcripts/t-api");
    assert_eq!(
        get(&http, url.clone()).await.0,
        404,
        "private without a token: invisible"
    );
    let r = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401, "an invalid token is refused, not ignored");
    db.set_share_mode("t-api", "public").await.unwrap();
    assert_eq!(
        get(&http, url.clone()).await.0,
        200,
        "public transcripts need no token"
    );

    db.set_audio_deleted("t-api", true).await.unwrap();
    let (s, e) = get(&http, format!("{url}/audio/mp3")).await;
    assert_eq!(
        (s, e["detail"].as_str()),
        (404, Some("Audio unavailable due to privacy settings"))
    );
    db.set_audio_deleted("t-api", false).await.unwrap();
}

async fn next_event(
    ws: &mut (impl StreamExt<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an event within 5 s")
            .expect("socket open")
            .unwrap();
        if let WsMessage::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn websocket(addr: &str, db: &Db, events: &Events) {
    for (name, data) in [
        ("STATUS", json!({"value": "processing"})),
        ("DURATION", json!({"duration": 3000.0})),
        ("WAVEFORM", json!({"waveform": [1, 2, 3]})),
    ] {
        db.append_event("t-api", name, &data).await.unwrap();
    }
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/v1/transcripts/t-api/events"))
            .await
            .unwrap();
    // Replay: stored events in order, without STATUS.
    assert_eq!(
        next_event(&mut ws).await,
        json!({"event": "DURATION", "data": {"duration": 3000.0}})
    );
    assert_eq!(next_event(&mut ws).await["event"], "WAVEFORM");
    // Client messages are ignored.
    ws.send(WsMessage::Text("hello".into())).await.unwrap();
    // Live: a published topic, then an unstored progress event.
    events
        .publish(
            "save_topics",
            "t-api",
            activities::events::Event::Topic,
            json!({"id": "topic-2", "title": "Next"}),
        )
        .await
        .unwrap();
    events
        .publish(
            "save_topics",
            "t-api",
            activities::events::Event::PipelineProgress,
            json!({"step_index": 8}),
        )
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut ws).await,
        json!({"event": "TOPIC", "data": {"id": "topic-2", "title": "Next"}})
    );
    assert_eq!(next_event(&mut ws).await["event"], "PIPELINE_PROGRESS");
    // Another transcript's events do not reach this socket.
    db.create_transcript(&NewTranscript {
        id: "t-other".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    events
        .publish(
            "save_topics",
            "t-other",
            activities::events::Event::Topic,
            json!({"id": "x"}),
        )
        .await
        .unwrap();
    events
        .publish(
            "save_topics",
            "t-api",
            activities::events::Event::Topic,
            json!({"id": "topic-3"}),
        )
        .await
        .unwrap();
    assert_eq!(next_event(&mut ws).await["data"]["id"], "topic-3");
    // A reconnect replays everything stored so far.
    let (mut again, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/v1/transcripts/t-api/events"))
            .await
            .unwrap();
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(
            next_event(&mut again).await["event"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(names, ["DURATION", "WAVEFORM", "TOPIC", "TOPIC"]);
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{addr}/v1/transcripts/nope/events"))
            .await
            .is_err()
    );
}

async fn suite(url: &str) {
    let db = reflow_tests::postgres::connect(url).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Storage::open(&activities::storage::StorageConfig {
        url: url::Url::from_directory_path(dir.path())
            .unwrap()
            .to_string(),
        ..Default::default()
    })
    .unwrap();
    seed(&db, &store).await;
    let (addr, events) = start(db.clone(), store.clone(), None, None).await;
    rest(&addr).await;
    websocket(&addr, &db, &events).await;
    privacy_and_access(&db, &store).await;
    users_and_links(&db, &store).await;
}

/// `SECRET_KEY` set: users' JWTs see their own private transcripts, shareable audio links
/// carry a JWT for the transcript, and the user socket delivers the user's channel (4401
/// without a valid token).
async fn users_and_links(db: &Db, store: &Storage) {
    use reflow::http::auth::{sign, sign_audio_link};
    const SECRET: &str = "jwt-secret";
    let hour = Duration::from_secs(3600);
    db.create_transcript(&NewTranscript {
        id: "t-owned".into(),
        user_id: Some("u-7".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    store
        .put("t-owned/audio.mp3", Bytes::from(vec![1u8; 1000]))
        .await
        .unwrap();
    let (addr, events) = start(db.clone(), store.clone(), Some(TOKEN), Some(SECRET)).await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/transcripts/t-owned");
    let status = |r: reqwest::Response| r.status().as_u16();
    let owner = sign(SECRET, "u-7", hour);
    assert_eq!(
        status(http.get(&url).bearer_auth(&owner).send().await.unwrap()),
        200
    );
    let stranger = sign(SECRET, "u-8", hour);
    assert_eq!(
        status(http.get(&url).bearer_auth(&stranger).send().await.unwrap()),
        404
    );
    assert_eq!(
        status(http.get(&url).bearer_auth(TOKEN).send().await.unwrap()),
        200,
        "operator"
    );
    let forged = sign("another-secret", "u-7", hour);
    assert_eq!(
        status(http.get(&url).bearer_auth(&forged).send().await.unwrap()),
        401
    );
    assert_eq!(status(http.get(&url).send().await.unwrap()), 404);

    // Shareable audio link: a JWT whose subject is the transcript.
    let link = sign_audio_link(SECRET, "t-owned", hour);
    let r = http
        .get(format!("{url}/audio/mp3?token={link}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 1000);
    let other = sign_audio_link(SECRET, "t-api", hour);
    assert_eq!(
        status(
            http.get(format!("{url}/audio/mp3?token={other}"))
                .send()
                .await
                .unwrap()
        ),
        404,
        "a link is for one transcript"
    );

    // The user socket: TRANSCRIPT_STATUS of the user's transcripts.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/v1/events")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("bearer, {owner}").parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // subscribed
    events
        .publish(
            "get_recording",
            "t-owned",
            activities::events::Event::Status,
            json!({"value": "processing"}),
        )
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an event within 5 s")
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"event": "TRANSCRIPT_STATUS", "data": {"value": "processing", "id": "t-owned"}})
    );
    // No token: closed with 4401.
    let mut request = format!("ws://{addr}/v1/events")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("bearer, {forged}").parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a close within 5 s")
        .unwrap()
        .unwrap();
    match m {
        tokio_tungstenite::tungstenite::Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4401);
        }
        other => panic!("expected a 4401 close, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    suite(&format!("sqlite://{}/reflow.db", dir.path().display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_on_postgres() {
    let pg = reflow_tests::PgServer::start();
    suite(&pg.url).await;
}
