//! Actions per meeting, counted by the Temporal server itself: the dev server's own
//! Prometheus `action` counter (labelled by `action_type`, in the `default` namespace),
//! scraped before and after one `DiarizationPipeline` meeting of 3 and of 8 tracks on an
//! in-process worker with stand-in backends. Temporal Cloud bills by Actions; the open-source
//! server's counter is the closest measure of them on this machine (where the two differ is
//! said in `docs/capacity.md`).
//!
//! The transcription stand-in answers after [`ASR`], about what the embedded Whisper takes
//! on a short track here, so the transcriptions heartbeat at the cadence a real one does.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use reflow_tests::meetings;

/// The transcription stand-in's latency: a track of a short meeting on the embedded model.
const ASR: Duration = Duration::from_secs(12);

/// The server's `action` counter in namespace `default`, by `action_type`.
async fn scrape(metrics_address: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = reqwest::get(format!("http://{metrics_address}/metrics"))
        .await
        .context("scrape the dev server's metrics")?
        .text()
        .await?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("action{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
        };
        if label("namespace").as_deref() != Some("default") {
            continue;
        }
        let kind = label("action_type").unwrap_or_default();
        *out.entry(kind).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(out)
}

/// The actions one meeting of `tracks` tracks costs, by type.
async fn one(
    stack: &meetings::Stack,
    work: &Path,
    tracks: usize,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let metrics = &reflow_tests::server().metrics_address;
    let voices = meetings::voices(work, tracks);
    let m = stack
        .meeting(&format!("actions{tracks}-"), 0, &voices)
        .await;
    let before = scrape(metrics).await?;
    let (_, out) = stack.run(&m).await;
    out.with_context(|| format!("run {}", m.workflow_id))?;
    // Counters are exported as the server handles requests; let the last ones land.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = scrape(metrics).await?;
    if let Some(dir) = std::env::var_os("REFLOW_BENCH_HISTORIES") {
        save_histories(&stack.client, Path::new(&dir), &m.workflow_id, tracks).await?;
    }
    Ok(after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (v - before.get(k).copied().unwrap_or(0.0)).round() as u64,
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect())
}

/// With `REFLOW_BENCH_HISTORIES=dir`: the meeting's histories (the run and its track children)
/// as JSON in `dir`, to see which workflow task spent which action.
async fn save_histories(
    client: &temporalio_client::Client,
    dir: &Path,
    workflow_id: &str,
    tracks: usize,
) -> anyhow::Result<()> {
    use temporalio_client::{UntypedWorkflow, WorkflowFetchHistoryOptions};
    std::fs::create_dir_all(dir)?;
    let children = (0..tracks).map(|i| format!("{workflow_id}-track-{i}"));
    for id in std::iter::once(workflow_id.to_owned()).chain(children) {
        let json = client
            .get_workflow_handle::<UntypedWorkflow>(&id)
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await?;
        std::fs::write(dir.join(format!("{id}.json")), json)?;
    }
    Ok(())
}

/// The section of `pipeline.md`, and the 3-track total.
pub async fn actions(work: &Path, machine: &str) -> anyhow::Result<(String, u64)> {
    let (stack, _worker) = meetings::in_process(ASR, false).await;
    let three = one(&stack, work, 3).await?;
    let eight = one(&stack, work, 8).await?;
    // A point the per-track model (docs/capacity.md) is checked against, not derived from.
    let five = one(&stack, work, 5).await?;
    let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
    let kinds: std::collections::BTreeSet<&String> = three.keys().chain(eight.keys()).collect();
    let mut rows: Vec<(&String, u64, u64)> = kinds
        .into_iter()
        .map(|k| {
            (
                k,
                three.get(k).copied().unwrap_or(0),
                eight.get(k).copied().unwrap_or(0),
            )
        })
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let table: String = rows
        .iter()
        .map(|(k, a, b)| format!("| {k} | {a} | {b} |\n"))
        .collect();
    let (t3, t8, t5) = (total(&three), total(&eight), total(&five));
    // actions = fixed + per_track × tracks, from the 3- and 8-track meetings.
    let per_track = (t8 as f64 - t3 as f64) / 5.0;
    let fixed = t3 as f64 - 3.0 * per_track;
    let predicted_5 = fixed + 5.0 * per_track;
    let text = format!(
        "## Actions per meeting\n\n\
         What one meeting costs the orchestrator, from the dev server's own `action` counter\n\
         (namespace `default`, by `action_type`), scraped before and after one\n\
         `DiarizationPipeline` meeting on an in-process worker: stand-in backends, the\n\
         transcription stand-in answering after {} s per track (heartbeating meanwhile, as a\n\
         real transcription does). Measured {machine}.\n\n\
         | action type | 3 tracks | 8 tracks |\n|---|---|---|\n{table}| **total** | **{t3}** | **{t8}** |\n\n\
         actions_per_meeting: {t3}\nactions_per_meeting_8_tracks: {t8}\n\n\
         Per-track model (`docs/capacity.md`): actions = {fixed:.1} + {per_track:.1} × tracks,\n\
         from the 3- and 8-track meetings; a 5-track meeting, measured in the same run and not\n\
         used to derive it: {t5} measured, {predicted_5:.0} predicted ({err:+.1} %).\n\n\
         actions_fixed: {fixed:.1}\nactions_per_track: {per_track:.1}\nactions_5_tracks_measured: {t5}\n",
        ASR.as_secs(),
        err = (predicted_5 - t5 as f64) / t5 as f64 * 100.0,
    );
    Ok((text, t3))
}
