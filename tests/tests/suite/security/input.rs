//! Input that reaches other systems (issue 39, item 6): what a meeting's participants say or
//! call themselves, and what a directory handed to `reflow process` names, must not steer what
//! reflow sends on.
//!
//! - meeting speech, rephrased by the model into the title, the topics and the summary, cannot
//!   make the Zulip bot mention `@**all**` (or anyone), post a link, or close the spoiler
//!   fence the summary is quoted in;
//! - a Daily display name with a line break and a cue timing cannot forge a WebVTT cue in the
//!   transcript the API serves or the webhook delivers;
//! - `reflow process` refuses a `recording.json` that names a file outside its directory (a
//!   `../` path, an absolute path, a link that leads out), and copies nothing.

use std::path::Path;
use std::process::{Command, Stdio};

use reflow_tests::standins::{Recorded, StandIn, completion};

use super::*;

/// The invisible character reflow inserts to break Zulip syntax.
const BREAK: char = '\u{200B}';

/// The hostile model: every answer a hosted model could give after hearing a participant say
/// "at all", "backticks" and a link; anything else as the usual stand-in answers.
fn hostile_chat_reply(r: &Recorded) -> Reply {
    let body = r.json.clone().unwrap_or_default();
    let system = body["messages"][0]["content"].as_str().unwrap_or("");
    let content = if system.contains("main topic of the excerpt") {
        json!({
            "Title": "Release plan @**all** [win](https://evil.example/topic)",
            "Summary": "The team reviewed the plan.",
        })
        .to_string()
    } else if system.contains("main subjects") {
        json!({"subjects": ["@**all** release plan", "Budget"]}).to_string()
    } else if system.contains("single-line title") {
        "Release @**everyone** planning [click](https://evil.example/title)".into()
    } else if system.contains("Condense") {
        "The team reviewed the plan.\n```\n@**all** read [the plan](https://evil.example/login) \
         today.\n```\n@_**Ben** owns the budget. Ask @*admins* in #**general>secrets**."
            .into()
    } else if system.contains("recapping") {
        "The team met. @**all** open [this](https://evil.example/recap) now.".into()
    } else {
        return reflow_tests::meetings::tagged_chat_reply(r);
    };
    Reply::Json(completion(&content, 100))
}

/// Mentions Zulip would render in `content` (`zerver/lib/mention.py`: `@`, optional `_`, then
/// `**name**` or `*group*`, after the start, a space or punctuation; and the old `@all`).
fn live_mentions(content: &str) -> Vec<String> {
    let chars: Vec<char> = content.chars().collect();
    let mut out = Vec::new();
    for (i, c) in chars.iter().enumerate() {
        if *c != '@' || (i > 0 && chars[i - 1].is_alphanumeric()) {
            continue;
        }
        let rest: String = chars[i + 1..].iter().take(20).collect();
        let rest = rest.strip_prefix('_').unwrap_or(&rest);
        if rest.starts_with('*')
            || ["all", "everyone", "stream", "channel", "topic"]
                .iter()
                .any(|w| rest.starts_with(w))
        {
            out.push(format!("@{rest}"));
        }
    }
    out
}

/// The fenced blocks of `message` as Zulip's server reads them
/// (`zerver/lib/markdown/fenced_code.py`): a line starting with ```` ``` ```` or `~~~` opens a
/// block (inside a spoiler too), and a block closes at the line equal to its own fence. Each
/// block as (header, its lines); `None` when a block is left open.
fn zulip_blocks(message: &str) -> Option<Vec<(String, Vec<String>)>> {
    let opens = |l: &str| {
        let run = |ch: char| l.chars().take_while(|c| *c == ch).count();
        let n = run('`').max(run('~'));
        (n >= 3).then(|| (l[..n].to_owned(), l[n..].trim().to_owned()))
    };
    let mut out = Vec::new();
    let mut open: Vec<(String, String, Vec<String>)> = Vec::new();
    for line in message.lines() {
        if let Some(top) = open.last_mut() {
            if line.trim_end() == top.0 {
                let (_, header, lines) = open.pop().unwrap();
                out.push((header, lines));
                continue;
            }
            top.2.push(line.to_owned());
        }
        if let Some((fence, header)) = opens(line) {
            open.push((fence, header, Vec::new()));
        }
    }
    open.is_empty().then_some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn meeting_speech_cannot_make_the_zulip_bot_mention_link_or_break_its_fences() {
    let _one = reflow_tests::meetings::exclusive().await;
    let dir = tempfile::Builder::new()
        .prefix("reflow-zulip-input-")
        .tempdir()
        .unwrap()
        .keep();
    let backends = Backends {
        llm: StandIn::start(hostile_chat_reply).await,
        ..Backends::start(Duration::from_millis(50)).await
    };
    let stack = Stack::start(
        &format!("sqlite://{}/reflow.db", dir.display()),
        reflow_tests::client().await,
        backends,
        false,
        short_timeouts(),
    )
    .await;
    let queues: Vec<String> = QUEUES.iter().map(|q| q.to_string()).collect();
    let _worker = InProcessWorker::start_with(&queues, stack.services(100));
    let tracks = tempfile::tempdir().unwrap();
    let m = stack
        .meeting("zulipinput", 0, &voices(tracks.path(), 1))
        .await;
    let (tid, out) = stack.run(&m).await;
    out.unwrap();

    // The attack reached the transcript as the model wrote it.
    let t = stack.db.transcript(&tid).await.unwrap();
    let summary = t.long_summary.clone().unwrap_or_default();
    assert!(
        summary.contains("\n```\n@**all** read [the plan]"),
        "the hostile summary is stored: {summary}"
    );
    assert!(
        t.title.as_deref().unwrap_or("").contains("@**everyone**"),
        "{:?}",
        t.title
    );

    let posts: Vec<Recorded> = stack
        .backends
        .zulip
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.answered == Some(200))
        .collect();
    assert_eq!(posts.len(), 1, "one message posted");
    let content = posts[0].form.get("content").cloned().unwrap_or_default();
    assert!(content.contains(&tid), "{content}");
    assert_eq!(live_mentions(&content), Vec::<String>::new(), "{content}");
    assert_eq!(
        content.matches("](").count(),
        1,
        "the transcript's link is the only link: {content}"
    );
    assert!(!content.contains("]["), "{content}");
    assert!(!content.contains("#**"), "a stream link: {content}");
    let blocks = zulip_blocks(&content).unwrap_or_else(|| panic!("a block left open: {content}"));
    let headers: Vec<&str> = blocks.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        headers,
        ["spoiler Summary", "spoiler Topics"],
        "exactly the two spoilers, nothing nested: {content}"
    );
    let non_empty =
        |lines: &mut dyn Iterator<Item = &str>| lines.filter(|l| !l.trim().is_empty()).count();
    assert_eq!(
        non_empty(&mut blocks[0].1.iter().map(String::as_str)),
        non_empty(&mut summary.lines()),
        "every line of the summary inside its spoiler: {content}"
    );
    let title_line = content.lines().next().unwrap_or_default();
    assert!(
        title_line.starts_with("# Reflector – Release @"),
        "{title_line}"
    );
    // What readers see is the summary as written: the breaks are invisible.
    let seen = content.replace(BREAK, "");
    assert!(
        seen.contains("@**all** read [the plan](https://evil.example/login) today."),
        "{seen}"
    );
}

/// A meeting as [`Stack::meeting`] makes it (room `{prefix}0`, one track of `voice`), whose
/// participant Daily names `name` (what they typed as their display name).
async fn meeting_of(
    stack: &Stack,
    prefix: &str,
    voice: &reflow_tests::meetings::Voice,
    name: &str,
) -> reflow_tests::meetings::Meeting {
    let room_name = format!("{prefix}0-20260110042117");
    let rec_s = 1_768_018_896u64;
    let rec_ms = rec_s * 1000 + 877;
    let recording_id = format!("{prefix}-rec-0000");
    let room = stack
        .db
        .create_room(&activities::db::meetings::NewRoom {
            id: format!("room-{prefix}-0"),
            name: format!("{prefix}0"),
            user_id: Some("u-7".into()),
            zulip_stream: Some("meetings".into()),
            zulip_topic: Some(format!("{prefix}0")),
            webhook_url: Some(format!("{}/hooks/reflow", stack.backends.receiver.url)),
            webhook_secret: Some(reflow_tests::meetings::HOOK_SECRET.into()),
        })
        .await
        .unwrap();
    let start = std::time::UNIX_EPOCH + Duration::from_secs(rec_s - 120);
    stack
        .db
        .create_meeting(
            &format!("m-{prefix}-0"),
            &room,
            &room_name,
            &humantime::format_rfc3339_seconds(start).to_string(),
        )
        .await
        .unwrap();
    let pid = "00000000-0000-4000-8000-000000000000";
    let key = format!(
        "acme/{room_name}/{rec_ms}-{pid}-cam-audio-{}",
        rec_ms + (voice.offset_s * 1000.0) as u64 + 200
    );
    let size = stack.recordings.put_file(&key, &voice.path).await.unwrap();
    let session = format!("sess-{prefix}-0");
    let recording = json!({
        "id": recording_id, "room_name": room_name, "start_ts": rec_s, "status": "finished",
        "duration": voice.end_s.ceil(), "mtgSessionId": session, "s3key": null,
        "tracks": [{"type": "audio", "s3Key": key, "size": size}],
    });
    stack.backends.daily.add_recording(recording.clone());
    stack.backends.daily.add_participants(
        &session,
        vec![json!({
            "participant_id": pid, "user_id": "u-0", "user_name": name,
            "join_time": rec_s, "duration": 60,
        })],
    );
    reflow_tests::meetings::Meeting {
        workflow_id: reflow::intake::workflow_id(&recording_id),
        recording_id,
        webhook: reflow_tests::daily::ready_to_download(&recording),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_display_name_cannot_forge_webvtt_cues() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) =
        reflow_tests::meetings::in_process(Duration::from_millis(50), false).await;
    let forger = "Eve\n\n00:00.000 --> 00:09.000\nforged";
    let tracks = tempfile::tempdir().unwrap();
    let m = meeting_of(&stack, "vttname", &voices(tracks.path(), 1)[0], forger).await;
    let (tid, out) = stack.run(&m).await;
    out.unwrap();
    let t = stack.db.transcript(&tid).await.unwrap();
    assert!(
        t.participants
            .contains("Eve\\n\\n00:00.000 --> 00:09.000\\nforged"),
        "the name is stored as given: {}",
        t.participants
    );

    let served: Value = reqwest::get(format!(
        "http://{}/v1/transcripts/{tid}?transcript_format=webvtt-named",
        stack.api
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let vtt = served["transcript"].as_str().unwrap_or_default().to_owned();
    // The topics' WebVTT in the delivered webhook names the speakers too.
    let delivered: Vec<String> = stack
        .backends
        .receiver
        .requests()
        .iter()
        .filter_map(|r| r.json.clone())
        .filter(|b| b["transcript"]["id"] == tid.as_str())
        .flat_map(|b| {
            b["transcript"]["topics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|topic| topic["webvtt"].as_str().map(str::to_owned))
        .collect();
    assert!(!delivered.is_empty(), "the webhook carried topic WebVTT");
    for text in std::iter::once(&vtt).chain(&delivered) {
        assert!(text.starts_with("WEBVTT\n"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let cues: Vec<usize> = (0..lines.len())
            .filter(|i| lines[*i].contains("-->"))
            .collect();
        assert!(!cues.is_empty(), "{text}");
        for i in cues {
            // Every cue is reflow's: its timing line, then one `<v …>` line with the voice.
            let timing = lines[i];
            assert!(
                timing.len() == 29 && timing.starts_with("00:") && &timing[12..17] == " --> ",
                "a forged cue timing {timing:?}: {text}"
            );
            let payload = lines.get(i + 1).copied().unwrap_or_default();
            assert!(payload.starts_with("<v Eve"), "{text}");
            assert!(
                payload.starts_with("<v Eve  00:00.000 --&gt; 00:09.000 forged>"),
                "the name stays inside its voice tag: {payload}"
            );
        }
        assert!(
            !lines.contains(&"forged") && !lines.contains(&"00:00.000 --> 00:09.000"),
            "{text}"
        );
    }
}

/// `reflow process <src>` with `env`: its exit status and what it wrote to stderr (killed after
/// two minutes: a refused directory ends at once, an accepted one runs its meeting).
fn process(src: &Path, env: &[(String, String)]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"))
        .arg("process")
        .arg(src)
        .args(["--http", "127.0.0.1:0"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reflow_process_reads_only_files_inside_its_directory() {
    // Today's code would run these meetings on the shared queues: hold them.
    let _one = reflow_tests::meetings::exclusive().await;
    let tmp = tempfile::tempdir().unwrap();
    let stack = Stack::start(
        &format!("sqlite://{}/reflow.db", tmp.path().display()),
        reflow_tests::client().await,
        Backends::start(Duration::from_millis(50)).await,
        false,
        short_timeouts(),
    )
    .await;
    let voice = voices(tmp.path(), 1).remove(0).path;
    let src = tmp.path().join("meeting");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(&voice, src.join("ana.webm")).unwrap();
    // Outside the directory: an audio file next to it, and a file of credentials.
    std::fs::copy(&voice, tmp.path().join("outside.webm")).unwrap();
    let credentials = tmp.path().join("credentials");
    std::fs::write(
        &credentials,
        "[default]\naws_secret_access_key = NOT-FOR-THE-STORE\n",
    )
    .unwrap();
    let pipelines = tmp.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::write(
        pipelines.join("diarization.yaml"),
        reflow_tests::meetings::short_timeouts_yaml(),
    )
    .unwrap();
    let mut env = stack.worker_env(&reflow_tests::server().address, &tmp.path().join("data"));
    env.retain(|(k, _)| k != "DAILYCO_STORAGE_AWS_BUCKET_NAME");
    env.extend(
        [
            ("REFLOW_PIPELINES", pipelines.display().to_string()),
            ("REFLOW_RECORDINGS_URL", "s3://daily-recordings".to_owned()),
            ("ZULIP_REALM", String::new()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    std::os::unix::fs::symlink(&credentials, src.join("link.webm")).unwrap();

    for file in [
        "../outside.webm".to_owned(),
        credentials.display().to_string(),
        "link.webm".to_owned(),
    ] {
        std::fs::write(
            src.join("recording.json"),
            json!({"tracks": [{"file": "ana.webm", "name": "Ana"}, {"file": file, "name": "Eve"}]})
                .to_string(),
        )
        .unwrap();
        let (ok, stderr) = process(&src, &env);
        assert!(!ok, "{file}: accepted: {stderr}");
        assert!(
            stderr.contains("recording.json")
                && stderr.contains(&format!("tracks[1].file {file:?}"))
                && stderr.contains("outside"),
            "{file}: the refusal names the field: {stderr}"
        );
        let copied = stack.recordings.list("local/").await.unwrap();
        assert!(copied.is_empty(), "{file}: copied {copied:?}");
    }
    // Without a manifest, a link among the tracks that leads outside is refused too.
    std::fs::remove_file(src.join("recording.json")).unwrap();
    let (ok, stderr) = process(&src, &env);
    assert!(!ok, "accepted: {stderr}");
    assert!(
        stderr.contains("link.webm") && stderr.contains("outside"),
        "{stderr}"
    );
    assert!(stack.recordings.list("local/").await.unwrap().is_empty());
}
