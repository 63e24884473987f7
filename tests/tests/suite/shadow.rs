//! Shadow runs (issue 37 item 3) of `pipelines/diarization.yaml` on a real dev server, with
//! stand-in backends, through the production path: a rollout whose `shadow:` names version 3
//! (`generate_title`'s `with:` written differently) for every recording, and three meetings
//! arriving as signed Daily webhooks.
//!
//! - each meeting gets its live run (version 2) and a shadow run (version 3) into a shadow
//!   transcript; the shadow transcribes nothing (no `pad_track`/`transcribe_track` scheduled,
//!   no track child, the ASR stand-in asked for the live tracks only) and runs `generate_title`;
//! - no user route returns a shadow transcript (GET one, its topics, its WebSocket, its
//!   progress page, the Conductor view of its run for the room's owner) and the owner's user
//!   channel carries nothing of it;
//! - the Zulip and webhook stand-ins receive the live transcripts' posts and nothing of the
//!   shadows';
//! - `reflow compare --since` reports the three pairs, and `compare <recording>` one.
//!
//! Every shadow run replays against this build's workflow code.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use reflow::http::ApiState;
use reflow::http::auth::sign;
use reflow_tests::meetings::voices;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use workflow::pipeline::rollout::{Rollout, Shadow};

const SECRET: &str = "shadow-suite-secret-key-0123456789abcdef";
const OWNER: &str = "u-7";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shadow_rollout_on_three_meetings_runs_hidden_shadows_that_reuse_and_notify_nobody() {
    let _one = reflow_tests::meetings::exclusive().await;
    let (stack, _worker) =
        reflow_tests::meetings::in_process(Duration::from_millis(50), false).await;
    let v3 = reflow_tests::meetings::title_changed();
    reflow_tests::register_in(&stack.db, &v3).await;
    stack
        .db
        .set_pipeline_rollout(
            "DiarizationPipeline",
            &Rollout {
                current: 2,
                shadow: Some(Shadow {
                    version: 3,
                    ramp: 100,
                    rooms: BTreeSet::new(),
                }),
                ..Rollout::default()
            },
        )
        .await
        .unwrap();
    // The API as users reach it: JWTs signed with SECRET.
    let api = reflow_tests::serve_api(ApiState {
        secret_key: Some(SECRET.into()),
        temporal: Some(stack.client.clone()),
        ..ApiState::new(stack.events.clone(), stack.storage.clone())
    })
    .await;
    let token = sign(SECRET, OWNER, Duration::from_secs(3600));
    // The owner's user channel, open while everything runs.
    let mut request = format!("ws://{api}/v1/events")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("bearer, {token}").parse().unwrap(),
    );
    let (user_ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let user_seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let user_channel = tokio::spawn({
        let seen = user_seen.clone();
        async move {
            let mut ws = user_ws;
            while let Some(Ok(m)) = ws.next().await {
                if let Ok(t) = m.into_text() {
                    seen.lock().unwrap().push(t.to_string());
                }
            }
        }
    });

    let since = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let dir = tempfile::tempdir().unwrap();
    let tracks = voices(dir.path(), 2);
    let mut pairs = Vec::new();
    for i in 0..3 {
        let m = stack.meeting("shadow", i, &tracks).await;
        let (live, out) = stack.run(&m).await;
        assert!(out.is_ok(), "{}: {out:?}", m.workflow_id);
        pairs.push((m, live));
    }
    let mut shadows = Vec::new();
    for (m, live) in &pairs {
        let wf = reflow::shadow::workflow_id(&m.recording_id);
        let ended = tokio::time::timeout(
            Duration::from_secs(300),
            reflow::runs::wait(&stack.client, &wf),
        )
        .await
        .unwrap_or_else(|_| panic!("{wf} does not close"));
        assert!(ended.is_ok(), "{wf}: {ended:?}");
        let s = stack
            .db
            .shadow_of(live)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{live} has no shadow transcript"));
        assert_eq!(s.status, "ended", "{s:?}");
        assert_eq!(s.workflow_id.as_deref(), Some(wf.as_str()));
        assert!(s.user_id.is_none() && s.recording_id.is_none(), "{s:?}");
        assert!(!s.title.clone().unwrap_or_default().is_empty(), "{s:?}");
        // Reused: nothing padded or transcribed, no track child; the changed step ran.
        let run = reflow::history::load(&stack.client, &wf).await.unwrap();
        let types: BTreeSet<String> = run.steps.iter().map(|s| s.activity_type.clone()).collect();
        for never in [
            "pad_track",
            "transcribe_track",
            "mixdown_tracks",
            "cleanup_consent",
            "post_zulip",
            "send_webhook",
        ] {
            assert!(!types.contains(never), "{wf} scheduled {never}: {types:?}");
        }
        assert!(types.contains("generate_title"), "{wf}: {types:?}");
        assert!(run.children.is_empty(), "{wf} started children");
        reflow_tests::replay_live(&stack.client, &[wf.as_str()]).await;
        shadows.push((wf, s.id));
    }
    // Transcription was paid for the live runs only: 3 meetings × 2 tracks.
    assert_eq!(stack.backends.asr_call_count(), 6);

    // Notifications: every live transcript once, no shadow.
    let posts = stack.backends.zulip_posts();
    let hooks = stack.backends.webhooks();
    for (_, live) in &pairs {
        assert_eq!(posts.get(live), Some(&1), "{posts:?}");
        assert!(hooks.contains_key(live), "{hooks:?}");
    }
    for (_, shadow) in &shadows {
        assert!(!posts.contains_key(shadow), "{posts:?}");
        assert!(!hooks.contains_key(shadow), "{hooks:?}");
    }
    assert_eq!(posts.values().sum::<usize>(), 3, "{posts:?}");
    assert_eq!(hooks.len(), 3, "{hooks:?}");

    // No user route returns a shadow; the same routes return the live transcript.
    let http = reqwest::Client::new();
    let get = async |path: String| {
        http.get(format!("http://{api}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    for ((m, live), (wf, shadow)) in pairs.iter().zip(&shadows) {
        for (id, want) in [(live, 200), (shadow, 404)] {
            for path in [
                format!("/v1/transcripts/{id}"),
                format!("/v1/transcripts/{id}/topics"),
                format!("/v1/transcripts/{id}/participants"),
                format!("/transcripts/{id}"),
            ] {
                assert_eq!(get(path.clone()).await, want, "{path}");
            }
            let mut ws = format!("ws://{api}/v1/transcripts/{id}/events")
                .into_client_request()
                .unwrap();
            ws.headers_mut()
                .insert("Authorization", format!("Bearer {token}").parse().unwrap());
            let opened = tokio_tungstenite::connect_async(ws).await.is_ok();
            assert_eq!(opened, want == 200, "WebSocket of {id}");
        }
        assert_eq!(get(format!("/api/workflow/{}", m.workflow_id)).await, 200);
        assert_eq!(get(format!("/api/workflow/{wf}")).await, 404, "{wf}");
    }
    user_channel.abort();
    let seen = user_seen.lock().unwrap().clone();
    for ((_, live), (_, shadow)) in pairs.iter().zip(&shadows) {
        assert!(seen.iter().any(|m| m.contains(live.as_str())), "{seen:?}");
        assert!(
            !seen.iter().any(|m| m.contains(shadow.as_str())),
            "{seen:?}"
        );
    }

    // The comparison.
    let report = reflow::compare::since(&stack.client, &stack.db, &since, None)
        .await
        .unwrap();
    assert_eq!(report.aggregate.meetings, 3, "{report:?}");
    let recordings: BTreeSet<&str> = report
        .meetings
        .iter()
        .map(|c| c.recording_id.as_str())
        .collect();
    for (m, _) in &pairs {
        assert!(
            recordings.contains(m.recording_id.as_str()),
            "{recordings:?}"
        );
    }
    for c in &report.meetings {
        // The same words (reused transcription), a title of its own.
        assert_eq!(c.wer, 0.0, "{c:?}");
        assert!(c.live.words > 0);
        assert!(c.live.steps.iter().any(|s| s.step == "transcribe_track"));
        assert!(!c.shadow.steps.iter().any(|s| s.step == "transcribe_track"));
    }
    assert!(report.aggregate.failures.is_empty(), "{report:?}");
    let md = reflow::compare::markdown(&report);
    assert!(md.starts_with("# Live vs shadow: 3 meetings"), "{md}");
    eprintln!("{md}");
    let one = reflow::compare::recording(&stack.client, &stack.db, &pairs[0].0.recording_id, None)
        .await
        .unwrap();
    assert_eq!(one.meetings.len(), 1);
    let room = reflow::compare::since(&stack.client, &stack.db, &since, Some("shadow1"))
        .await
        .unwrap();
    assert_eq!(room.meetings.len(), 1);
    assert_eq!(room.meetings[0].recording_id, pairs[1].0.recording_id);

    // A new run of a shadow transcript (`reflow rerun`) is a shadow run too: nothing outside
    // reflow even when asked to notify, nothing transcribed.
    let (wf, shadow) = &shadows[0];
    let t = stack.db.transcript(shadow).await.unwrap();
    let request = reflow::rerun::Request {
        version: Some(3),
        notify: true,
        ..reflow::rerun::Request::default()
    };
    let outcome = reflow::rerun::rerun(
        &stack.client,
        &stack.events,
        Some(&stack.intake),
        &t,
        &request,
    )
    .await
    .unwrap();
    assert_eq!(outcome.workflow_id(), wf);
    let ended = tokio::time::timeout(
        Duration::from_secs(300),
        reflow::runs::wait(&stack.client, wf),
    )
    .await
    .unwrap_or_else(|_| panic!("{wf} does not close"));
    assert!(ended.is_ok(), "{wf}: {ended:?}");
    let run = reflow::history::load(&stack.client, wf).await.unwrap();
    let types: BTreeSet<String> = run.steps.iter().map(|s| s.activity_type.clone()).collect();
    for never in [
        "pad_track",
        "transcribe_track",
        "cleanup_consent",
        "post_zulip",
        "send_webhook",
    ] {
        assert!(
            !types.contains(never),
            "{wf} re-run scheduled {never}: {types:?}"
        );
    }
    assert_eq!(stack.backends.zulip_posts(), posts);
    assert_eq!(stack.backends.webhooks().len(), 3);
    assert_eq!(stack.backends.asr_call_count(), 6);
    reflow_tests::replay_live(&stack.client, &[wf.as_str()]).await;
}
