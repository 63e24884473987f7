//! One scrape target (docs/contracts/observability.md §1–§4): after a run with a retried step, `GET
//! /metrics` on reflow's HTTP port serves SDK Core's metrics (Core naming, ms, latency buckets
//! reaching 30 min and beyond) and reflow's own (`reflow_step_*`, seconds, `_total`), with the
//! attempts counted by outcome and labelled with the run's pipeline version.

use activities::events::{Emits, EventHub, Events};
use reflow::runs;
use reflow_tests::{journal, started};
use serde_json::json;

/// The value of the series `name{…}` whose labels include every `labels` pair.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_core_and_reflow_series_after_a_retried_step() {
    let (q, tp, _worker, c) = started("metrics", "retry.yaml").await;
    let j = journal(q);
    runs::start(&c, &tp.pipeline, json!({"journal": j}), "metrics-1")
        .await
        .unwrap();
    runs::wait(&c, "metrics-1").await.unwrap();

    let api = reflow_tests::serve_api(reflow::http::ApiState::new(
        Events::new(reflow_tests::db(), EventHub::default(), Emits::default()),
        reflow_tests::storage(),
    ))
    .await;
    let r = reqwest::get(format!("http://{api}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "Prometheus text format"
    );
    let text = r.text().await.unwrap();

    // SDK Core, Core naming: ms histograms whose buckets reach 30 minutes.
    for name in [
        "temporal_activity_execution_latency_bucket",
        "temporal_activity_schedule_to_start_latency_bucket",
    ] {
        assert!(
            value(&text, name, &[("le", "1800000")]).is_some(),
            "{name} has a 30 min bucket"
        );
    }
    assert!(value(&text, "temporal_num_pollers", &[("task_queue", q)]).is_some());
    assert!(
        value(
            &text,
            "temporal_worker_task_slots_available",
            &[("task_queue", q)]
        )
        .is_some()
    );
    assert!(
        value(
            &text,
            "temporal_activity_execution_failed",
            &[("activity_type", "test_flaky")]
        )
        .is_some_and(|n| n >= 2.0)
    );

    // reflow's own: two retryable failures, then a success, of one step, in seconds, labelled
    // with the pipeline version the run is on.
    let version = tp.pipeline.version.to_string();
    let step = [
        ("pipeline", "EngineTest"),
        ("version", version.as_str()),
        ("step", "test_flaky"),
    ];
    let attempts = |outcome| {
        let mut l = step.to_vec();
        l.push(("outcome", outcome));
        value(&text, "reflow_step_attempts_total", &l)
    };
    assert_eq!(attempts("retryable_failure"), Some(2.0), "{text}");
    assert_eq!(attempts("success"), Some(1.0));
    let mut bucket = step.to_vec();
    bucket.extend([("outcome", "success"), ("le", "1800")]);
    assert_eq!(
        value(&text, "reflow_step_duration_seconds_bucket", &bucket),
        Some(1.0),
        "seconds buckets up to an hour"
    );
}
