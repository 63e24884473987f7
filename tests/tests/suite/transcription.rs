//! `transcribe_track` and `merge_transcripts` on Temporal with the HTTP backends, against local
//! stand-ins of the two transcription APIs (tests/src/standins.rs): request shapes and auth,
//! word normalisation and sorting, `Retry-After` honoured, 4xx failing fast, a hung call cut
//! by the timeout, a response without words refused, and a second run served from the
//! checkpoint without calling the service.

use std::sync::Arc;
use std::time::Duration;

use activities::asr::remote::{Api, RemoteAsr};
use activities::asr::{AsrConfig, Transcriber};
use activities::transcript::Word;
use reflow::runs;
use reflow_tests::media::tone_track;
use reflow_tests::standins::{Reply, StandIn, transcription};
use reflow_tests::{InProcessWorker, TestPipeline, client, storage};
use serde_json::{Value, json};

fn backend(api: Api, url: &str, timeout: Option<Duration>) -> Transcriber {
    Transcriber::new(AsrConfig::Remote(RemoteAsr {
        api,
        url: url.to_owned(),
        api_key: Some("asr-key-123".into()),
        model: (api == Api::OpenAi).then(|| "whisper-1".to_owned()),
        timeout,
    }))
}

/// A worker on `queue` whose transcription backend is `t`.
fn worker(queue: &str, t: Transcriber) -> InProcessWorker {
    let mut services = reflow_tests::services();
    services.transcriber = Arc::new(t);
    InProcessWorker::start_with(&[queue.to_owned()], services)
}

/// Two padded tracks of transcript `tid` in storage; their keys.
async fn tracks(tid: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Vec::new();
    for i in 0..2 {
        let path = tone_track(dir.path(), &format!("t{i}"), 2);
        let key = format!("{tid}/pipeline/padded_{i}.webm");
        storage().put_file(&key, &path).await.unwrap();
        keys.push(key);
    }
    keys
}

async fn run(tp: &TestPipeline, tid: &str, keys: &[String], id: &str) -> Result<Value, String> {
    let c = client().await;
    runs::start(
        &c,
        &tp.pipeline,
        json!({"transcript_id": tid, "padded_keys": keys}),
        id,
    )
    .await
    .unwrap();
    runs::wait(&c, id).await.map_err(|e| e.to_string())
}

async fn words(key: &str) -> Vec<Word> {
    serde_json::from_slice(&storage().get(key).await.unwrap()).unwrap()
}

/// Track 0 says "hello world", track 1 "good morning", interleaved in time.
fn by_track(r: &reflow_tests::standins::Recorded, file_name: Option<&str>) -> Reply {
    let track1 = file_name.is_some_and(|f| f.contains("padded_1"))
        || r.json.as_ref().is_some_and(|j| {
            j["audio_file_url"]
                .as_str()
                .unwrap_or("")
                .contains("padded_1")
        });
    Reply::Json(if track1 {
        transcription(&[("good", 0.4, 0.7), ("morning.", 1.2, 1.6)])
    } else {
        transcription(&[(" hello", 0.1, 0.3), ("world ", 1.0, 1.1)])
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_url_backend_sends_a_presigned_url_and_the_words_are_normalised_and_merged() {
    let asr = StandIn::start(|r| by_track(r, None)).await;
    let queue = "asr-gpu-url";
    let _w = worker(queue, backend(Api::GpuUrl, &asr.url, None));
    let tp = TestPipeline::load("transcribe.yaml", queue);
    let keys = tracks("t-gpu").await;

    let out = run(&tp, "t-gpu", &keys, "asr-gpu-1").await.unwrap();
    let requests = asr.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.path, "/v1/audio/transcriptions-from-url");
        assert_eq!(r.bearer.as_deref(), Some("asr-key-123"));
        let body = r.json.as_ref().expect("a JSON body");
        assert_eq!(body["language"], "en");
        assert_eq!(body["batch"], true);
        assert!(
            body.get("timestamp_offset").is_none(),
            "reflow sends no offset"
        );
        // The URL was made inside the activity and reads the padded track itself.
        let url = body["audio_file_url"].as_str().unwrap();
        let path = url::Url::parse(url).unwrap().to_file_path().unwrap();
        let key = keys
            .iter()
            .find(|k| url.ends_with(k.as_str()))
            .expect("the URL names a padded track");
        assert_eq!(
            std::fs::read(path).unwrap(),
            storage().get(key).await.unwrap().to_vec()
        );
    }
    // Words: trimmed, one leading space, the track's speaker, sorted by start.
    assert_eq!(
        words("t-gpu/pipeline/words_0.json").await,
        vec![
            Word {
                text: " hello".into(),
                start: 0.1,
                end: 0.3,
                speaker: 0
            },
            Word {
                text: " world".into(),
                start: 1.0,
                end: 1.1,
                speaker: 0
            },
        ]
    );
    assert_eq!(out["transcribe"][1]["word_count"], 2);
    assert_eq!(out["transcribe"][1]["usage"]["calls"], 1);
    // Merged: a stable sort by start across tracks.
    let merged: Vec<String> = words("t-gpu/pipeline/words.json")
        .await
        .iter()
        .map(|w| w.text.clone())
        .collect();
    assert_eq!(merged, [" hello", " good", " world", " morning."]);
    assert_eq!(
        out["merge"],
        json!({"words_key": "t-gpu/pipeline/words.json", "word_count": 4, "last_end_s": 1.6})
    );

    // A second run pays nothing: both tracks come from their checkpoints.
    let again = run(&tp, "t-gpu", &keys, "asr-gpu-2").await.unwrap();
    assert_eq!(asr.count(), 2, "the service was not called again");
    assert_eq!(again["transcribe"][0]["usage"]["from_checkpoint"], true);
    assert_eq!(again["merge"], out["merge"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_backend_uploads_the_track_as_multipart() {
    let asr = StandIn::start(|r| {
        let name = r.file.as_ref().map(|f| f.0.clone());
        by_track(r, name.as_deref())
    })
    .await;
    let queue = "asr-openai";
    let _w = worker(queue, backend(Api::OpenAi, &asr.url, None));
    let tp = TestPipeline::load("transcribe.yaml", queue);
    let keys = tracks("t-oai").await;

    run(&tp, "t-oai", &keys, "asr-oai-1").await.unwrap();
    let mut requests = asr.requests();
    requests.sort_by_key(|r| r.file.as_ref().map(|f| f.0.clone()));
    assert_eq!(requests.len(), 2);
    for (i, r) in requests.iter().enumerate() {
        assert_eq!(r.path, "/v1/audio/transcriptions");
        assert_eq!(r.bearer.as_deref(), Some("asr-key-123"));
        assert_eq!(r.fields["model"], "whisper-1");
        assert_eq!(r.fields["language"], "en");
        assert_eq!(r.fields["response_format"], "verbose_json");
        assert_eq!(r.fields["timestamp_granularities[]"], "word");
        let (name, bytes) = r.file.as_ref().expect("the track is uploaded");
        assert_eq!(name, &format!("padded_{i}.webm"));
        assert_eq!(bytes, &storage().get(&keys[i]).await.unwrap().to_vec());
    }
    let w1 = words("t-oai/pipeline/words_1.json").await;
    assert_eq!(
        w1[0],
        Word {
            text: " good".into(),
            start: 0.4,
            end: 0.7,
            speaker: 1
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_the_retry_after_delay() {
    let asr = StandIn::start(|r| by_track(r, None)).await;
    asr.then(Reply::Status {
        code: 429,
        retry_after: Some(2),
    });
    let queue = "asr-429";
    let _w = worker(queue, backend(Api::GpuUrl, &asr.url, None));
    let tp = TestPipeline::load("transcribe.yaml", queue);
    let keys = tracks("t-429").await;

    run(&tp, "t-429", &keys[..1], "asr-429-1").await.unwrap();
    let requests = asr.requests();
    assert_eq!(requests.len(), 2, "refused once, then served");
    // The pipeline's own backoff is 100 ms; the service asked for 2 s and got them.
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_and_bad_responses_fail_on_the_first_attempt() {
    let asr = StandIn::start(|r| by_track(r, None)).await;
    let queue = "asr-4xx";
    let _w = worker(queue, backend(Api::GpuUrl, &asr.url, None));
    let tp = TestPipeline::load("transcribe.yaml", queue);
    let keys = tracks("t-4xx").await;

    for (reply, id, class) in [
        (
            Reply::Status {
                code: 401,
                retry_after: None,
            },
            "asr-401",
            "AccessDenied",
        ),
        (
            Reply::Status {
                code: 404,
                retry_after: None,
            },
            "asr-404",
            "NotFound",
        ),
        (
            Reply::Status {
                code: 400,
                retry_after: None,
            },
            "asr-400",
            "HttpClientError",
        ),
        (
            Reply::Json(json!({"text": "no words here"})),
            "asr-shape",
            "ResponseShapeError",
        ),
    ] {
        let before = asr.count();
        asr.then(reply);
        let err = run(&tp, "t-4xx", &keys[..1], id).await.unwrap_err();
        assert!(err.contains(class), "{id}: {err}");
        assert!(
            err.contains("transcribe"),
            "the error names the step: {err}"
        );
        assert_eq!(asr.count() - before, 1, "{id}: not retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_call_is_cut_by_the_http_timeout_and_retried() {
    let asr = StandIn::start(|r| by_track(r, None)).await;
    asr.then(Reply::Hang(Duration::from_secs(30)));
    let queue = "asr-hang";
    let _w = worker(
        queue,
        backend(Api::GpuUrl, &asr.url, Some(Duration::from_secs(1))),
    );
    let tp = TestPipeline::load("transcribe.yaml", queue);
    let keys = tracks("t-hang").await;

    run(&tp, "t-hang", &keys[..1], "asr-hang-1").await.unwrap();
    let requests = asr.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_secs(1) && gap < Duration::from_secs(15),
        "the first call was abandoned at the 1 s timeout, not after the 30 s hang: {gap:?}"
    );
}
