//! reflow's Daily REST client against the Daily stand-in (docs/contracts/daily.md §7): the fields
//! it reads, participants paged by `joined_after` until Daily's 404, and failures mapped to the
//! error classes of docs/contracts/pipeline.md §6.3 (4xx non-retryable, 5xx and timeouts retryable,
//! a malformed 2xx a ResponseShapeError, a missing key a ConfigError).

use activities::daily::client::{DailyClient, DailyConfig};
use reflow_tests::daily::{DailyStandIn, Fault};
use serde_json::json;

fn config(daily: &DailyStandIn, key: Option<&str>) -> DailyConfig {
    DailyConfig {
        api_key: key.map(Into::into),
        api_url: daily.api_url(),
        webhook_secret: None,
        webhook_uuid: None,
    }
}

#[tokio::test]
async fn the_client_reads_daily_and_classifies_its_failures() {
    let daily = DailyStandIn::start("k").await;
    daily.add_recording(json!({
        "id": "rec-1", "room_name": "standup-20260110042117", "start_ts": 1768018896,
        "status": "finished", "duration": null, "tracks": [
            {"type": "audio", "s3Key": "acme/standup-20260110042117/a", "size": 10},
            {"type": "video", "s3Key": "acme/standup-20260110042117/v", "size": 20}],
    }));
    // 150 participants: two pages of 100 and 50, then Daily's 404 ends the paging.
    daily.add_participants(
        "sess-1",
        (0..150)
            .map(|i| json!({"participant_id": format!("p-{i:03}"), "user_name": format!("User {i}")}))
            .collect(),
    );
    let client = DailyClient::new(&config(&daily, Some("k"))).unwrap();

    let r = client.recording("rec-1").await.unwrap();
    assert_eq!(r.room_name, "standup-20260110042117");
    assert_eq!(r.duration, None, "duration is null while Daily processes");
    assert_eq!(r.mtg_session_id, None);
    assert_eq!(r.audio_keys(), ["acme/standup-20260110042117/a"]);

    let people = client.participants("sess-1").await.unwrap();
    assert_eq!(people.len(), 150);
    assert_eq!(people[149].user_name.as_deref(), Some("User 149"));
    let pages: Vec<String> = daily
        .requests()
        .into_iter()
        .filter(|r| r.contains("participants"))
        .collect();
    assert_eq!(pages.len(), 3, "two pages, then the 404: {pages:?}");
    assert!(
        pages[1].contains("p-099"),
        "the second page starts after the first's last id"
    );
    assert!(
        client
            .participants("unknown-session")
            .await
            .unwrap()
            .is_empty()
    );

    let e = client.recording("nope").await.unwrap_err();
    assert_eq!((e.type_name(), e.is_non_retryable()), ("NotFound", true));
    daily.fault(Fault {
        path_prefix: "/v1/recordings/rec-1".into(),
        status: Some(503),
        times: Some(1),
        ..Default::default()
    });
    let e = client.recording("rec-1").await.unwrap_err();
    assert!(!e.is_non_retryable(), "5xx is retried: {e}");
    assert!(
        client.recording("rec-1").await.is_ok(),
        "the fault was one-off"
    );
    daily.fault(Fault {
        path_prefix: "/v1/recordings/rec-1".into(),
        status: Some(429),
        times: Some(1),
        ..Default::default()
    });
    assert!(
        !client
            .recording("rec-1")
            .await
            .unwrap_err()
            .is_non_retryable()
    );
    daily.fault(Fault {
        path_prefix: "/v1/recordings/rec-1".into(),
        malformed: true,
        times: Some(1),
        ..Default::default()
    });
    assert_eq!(
        client.recording("rec-1").await.unwrap_err().type_name(),
        "ResponseShapeError"
    );

    let wrong = DailyClient::new(&config(&daily, Some("wrong"))).unwrap();
    let e = wrong.recording("rec-1").await.unwrap_err();
    assert_eq!(
        (e.type_name(), e.is_non_retryable()),
        ("AccessDenied", true)
    );
    let e = DailyClient::new(&config(&daily, None)).unwrap_err();
    assert_eq!(e.type_name(), "ConfigError");
    assert!(e.to_string().contains("DAILY_API_KEY"), "{e}");

    // A hang past the 10 s client timeout is a retryable timeout.
    daily.fault(Fault {
        path_prefix: "/v1/recordings/rec-1".into(),
        delay_ms: Some(11_000),
        times: Some(1),
        ..Default::default()
    });
    let e = client.recording("rec-1").await.unwrap_err();
    assert!(
        !e.is_non_retryable() && e.to_string().contains("timed out"),
        "{e}"
    );
}
