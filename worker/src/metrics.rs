//! One Prometheus scrape target per reflow process (docs/contracts/observability.md §1): `GET
//! /metrics` on the HTTP port serves the Temporal SDK Core metrics and reflow's own, concatenated.
//!
//! - SDK Core keeps its default naming and units (histograms in **milliseconds**, no unit
//!   suffix, counters without `_total`), so Temporal's published Core SDK dashboard works
//!   unchanged; the buckets of the activity latency histograms reach 1 h and those of the
//!   schedule-to-start histograms 1 h as well (Core's defaults stop at 60 s and ≈17 min, which
//!   would put every transcription in `+Inf` and make "p99 > 30 min" alerts unable to fire).
//!   Core serves its registry on its own loopback port; `/metrics` fetches it from there.
//! - reflow's metrics (`reflow_*`, seconds, `_total`) go through the `metrics` facade into a
//!   `metrics-exporter-prometheus` recorder; `*_duration_seconds` histograms use
//!   [`activities::metrics::STEP_BUCKETS`].
//!
//! Both are process-wide and created once; the Core exporter runs on a thread of its own so it
//! outlives any one worker's runtime.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::telemetry::{
    HistogramBucketOverrides, PrometheusExporterOptions, TelemetryOptions,
    start_prometheus_metric_exporter,
};

/// Buckets (ms) of Core's activity execution and end-to-end latency histograms.
pub const ACTIVITY_LATENCY_MS: [f64; 15] = [
    50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 30000.0, 60000.0, 120000.0, 300000.0, 600000.0,
    900000.0, 1200000.0, 1800000.0, 3600000.0,
];
/// Buckets (ms) of Core's schedule-to-start histograms.
pub const SCHEDULE_TO_START_MS: [f64; 10] = [
    100.0, 500.0, 1000.0, 5000.0, 10000.0, 60000.0, 300000.0, 1000000.0, 1800000.0, 3600000.0,
];

/// The SDK Core exporter: its meter and where it serves.
#[derive(Clone)]
pub struct CoreExporter {
    /// Given to worker runtimes and client connections.
    pub meter: Arc<dyn CoreMeter>,
    /// Loopback address of Core's own `/metrics`.
    pub addr: SocketAddr,
}

/// reflow's recorder (installed on first use).
pub fn reflow_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".into()),
                &activities::metrics::STEP_BUCKETS,
            )
            .expect("buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder already installed (a test harness): keep ours for rendering only.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; reflow_* metrics go there");
        }
        // Series alerts read with increase() exist at zero from the start.
        activities::metrics::describe(workflow::workflows::WORKFLOW_TYPES, &checkpointed_steps());
        handle
    })
}

/// The checkpointed steps of the meeting pipeline built into the binary, as (workflow type,
/// activity type): every step whose activity declares a checkpointed cost (`Cost`), in the
/// main graph and its children. Derived, so a new checkpointed step has its series at zero
/// from the start without being listed anywhere.
pub fn checkpointed_steps() -> Vec<(String, String)> {
    let registry = crate::registry::Registry::production();
    let catalog = registry.catalog();
    let pipeline = match crate::intake::load_pipeline(None, catalog) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "the built-in pipeline does not validate; no checkpoint series");
            return Vec::new();
        }
    };
    let mut steps: Vec<(String, String)> = std::iter::once(&pipeline.main)
        .chain(pipeline.children.values())
        .flat_map(|graph| {
            graph.steps.iter().filter_map(|step| match &step.run {
                workflow::pipeline::Run::Activity(activity)
                    if catalog
                        .cost_of(activity)
                        .is_some_and(workflow::catalog::Cost::is_checkpointed) =>
                {
                    Some((graph.name.clone(), activity.clone()))
                }
                _ => None,
            })
        })
        .collect();
    steps.sort();
    steps.dedup();
    steps
}

/// The SDK Core exporter (started on first use; `None` if it could not bind).
pub fn core_exporter() -> Option<&'static CoreExporter> {
    static CORE: OnceLock<Option<CoreExporter>> = OnceLock::new();
    CORE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("core-metrics".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut overrides = HashMap::new();
                    for name in [
                        "activity_execution_latency",
                        "activity_succeed_endtoend_latency",
                    ] {
                        overrides.insert(name.to_owned(), ACTIVITY_LATENCY_MS.to_vec());
                    }
                    for name in [
                        "activity_schedule_to_start_latency",
                        "workflow_task_schedule_to_start_latency",
                    ] {
                        overrides.insert(name.to_owned(), SCHEDULE_TO_START_MS.to_vec());
                    }
                    let options = PrometheusExporterOptions::builder()
                        .socket_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
                        .histogram_bucket_overrides(HistogramBucketOverrides { overrides })
                        .build();
                    match start_prometheus_metric_exporter(options) {
                        Ok(started) => {
                            let meter: Arc<dyn CoreMeter> = started.meter.clone();
                            let _ = tx.send(Ok(CoreExporter {
                                meter,
                                addr: started.bound_addr,
                            }));
                            std::future::pending::<()>().await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                });
            })
            .ok()?;
        match rx.recv() {
            Ok(Ok(core)) => Some(core),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "SDK Core metrics exporter not started");
                None
            }
            Err(_) => None,
        }
    })
    .as_ref()
}

/// Telemetry options for a worker runtime: Core's metrics into [`core_exporter`].
pub fn telemetry() -> TelemetryOptions {
    match core_exporter() {
        Some(core) => TelemetryOptions::builder()
            .metrics(core.meter.clone())
            .build(),
        None => TelemetryOptions::builder().build(),
    }
}

/// The text `/metrics` serves: Core's registry, then reflow's.
pub async fn render() -> String {
    let mut out = String::new();
    if let Some(core) = core_exporter() {
        let url = format!("http://{}/metrics", core.addr);
        // Loopback, but a scrape must never hang on it: Prometheus' own timeout is 10 s.
        let client = activities::http::client(std::time::Duration::from_secs(2));
        match client.get(&url).send().await {
            Ok(r) => out.push_str(&r.text().await.unwrap_or_default()),
            Err(e) => tracing::warn!(error = %e, "SDK Core metrics not readable"),
        }
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&reflow_handle().render());
    out
}

#[cfg(test)]
mod tests {
    use super::checkpointed_steps;

    #[test]
    fn checkpoint_series_follow_the_steps_declarations() {
        let steps = checkpointed_steps();
        let has = |p: &str, s: &str| steps.iter().any(|(a, b)| a == p && b == s);
        // Paid: transcription in the track child, every LLM step in the main graph.
        assert!(has("TrackProcessing", "transcribe_track"), "{steps:?}");
        for llm in [
            "detect_chunk_topic",
            "generate_title",
            "extract_subjects",
            "generate_detailed_summary",
            "generate_recap",
            "identify_action_items",
        ] {
            assert!(has("DiarizationPipeline", llm), "{llm}: {steps:?}");
        }
        // Computed and kept: the merge, the topic plan, the audio work.
        assert!(has("DiarizationPipeline", "merge_transcripts"), "{steps:?}");
        assert!(has("DiarizationPipeline", "detect_topics"), "{steps:?}");
        // Free steps have no checkpoint series.
        for free in [
            "post_zulip",
            "send_webhook",
            "finalize",
            "save_topics",
            "get_recording",
        ] {
            assert!(!steps.iter().any(|(_, s)| s == free), "{free}: {steps:?}");
        }
    }
}
