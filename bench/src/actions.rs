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
use reflow_bench::measure::action_counts;
use reflow_tests::meetings;

/// The transcription stand-in's latency: a track of a short meeting on the embedded model.
const ASR: Duration = Duration::from_secs(12);

/// The same meetings before the reduction (issue 41; measured 2026-12-07T08:23:34Z, the code
/// of that morning): actions by type for 3 and 8 tracks, kept beside every new measurement.
const BEFORE: &[(&str, u64, u64)] = &[
    ("command_UpsertWorkflowSearchAttributes", 35, 55),
    ("command_BatchMarkers", 27, 39),
    ("grpc_RecordActivityTaskHeartbeat", 23, 58),
    ("command_ScheduleActivityTask", 21, 31),
    ("command_SignalExternalWorkflowExecution", 6, 16),
    ("command_ModifyWorkflowProperties", 4, 9),
    ("command_StartChildWorkflowExecution", 3, 8),
    ("command_StartChildWorkflowExecution_Extra", 3, 8),
    ("grpc_StartWorkflowExecution", 1, 1),
];

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
    let before = action_counts(metrics).await?;
    let (_, out) = stack.run(&m).await;
    out.with_context(|| format!("run {}", m.workflow_id))?;
    // Counters are exported as the server handles requests; let the last ones land.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = action_counts(metrics).await?;
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
pub(crate) async fn save_histories(
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

/// What following a 3-track meeting's progress costs (`reflow status --follow`, the progress
/// of `reflow process`: [`reflow::follow::follow`]): the queries it made, the times it polled
/// (a poll queried before it learnt to skip a run whose history had not grown) and the
/// meeting's seconds.
async fn follow_cost(stack: &meetings::Stack, work: &Path) -> anyhow::Result<(u64, u64, f64)> {
    use temporalio_client::{UntypedWorkflow, WorkflowDescribeOptions};
    let metrics = &reflow_tests::server().metrics_address;
    let voices = meetings::voices(work, 3);
    let m = stack.meeting("follow3-", 0, &voices).await;
    let before = action_counts(metrics).await?;
    let t0 = std::time::Instant::now();
    stack.deliver(&m).await;
    let handle = stack
        .client
        .get_workflow_handle::<UntypedWorkflow>(&m.workflow_id);
    while handle
        .describe(WorkflowDescribeOptions::default())
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reflow::follow::follow(&stack.client, &m.workflow_id).await?;
    let secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = action_counts(metrics).await?;
    let queries: f64 = after
        .iter()
        .filter(|(k, _)| k.contains("QueryWorkflow"))
        .map(|(k, v)| v - before.get(k).copied().unwrap_or(0.0))
        .sum();
    let polls = (secs / reflow::follow::POLL.as_secs_f64()).floor() as u64 + 1;
    Ok((queries.round() as u64, polls, secs))
}

/// The section of `pipeline.md`, and the 3-track total.
pub async fn actions(work: &Path, machine: &str) -> anyhow::Result<(String, u64)> {
    let (stack, _worker) = meetings::in_process(ASR, false).await;
    let three = one(&stack, work, 3).await?;
    let eight = one(&stack, work, 8).await?;
    // A point the per-track model (docs/capacity.md) is checked against, not derived from.
    let five = one(&stack, work, 5).await?;
    let (queries, polls, follow_s) = follow_cost(&stack, work).await?;
    let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
    let before = |k: &str| {
        BEFORE
            .iter()
            .find(|b| b.0 == k)
            .map_or((0, 0), |b| (b.1, b.2))
    };
    let kinds: std::collections::BTreeSet<&str> = three
        .keys()
        .chain(eight.keys())
        .map(String::as_str)
        .chain(BEFORE.iter().map(|b| b.0))
        .collect();
    let mut rows: Vec<(&str, u64, u64, u64, u64)> = kinds
        .into_iter()
        .map(|k| {
            let (b3, b8) = before(k);
            let get = |m: &BTreeMap<String, u64>| m.get(k).copied().unwrap_or(0);
            (k, b3, get(&three), b8, get(&eight))
        })
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(b.0)));
    let table: String = rows
        .iter()
        .map(|(k, b3, a3, b8, a8)| format!("| {k} | {b3} | {a3} | {b8} | {a8} |\n"))
        .collect();
    let (b3, b8) = BEFORE.iter().fold((0, 0), |(x, y), b| (x + b.1, y + b.2));
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
         real transcription does). Measured {machine}; \"before\": the same meetings on the\n\
         code before the reduction (2026-12-07T08:23:34Z), \"after\": runs that take the patch\n\
         `reflow-fewer-actions-1` (docs/architecture.md, \"Actions per run\"). The count does not\n\
         depend on the build (dev or release).\n\n\
         | action type | 3 tracks, before | 3 tracks, after | 8 tracks, before | 8 tracks, after |\n\
         |---|---|---|---|---|\n{table}\
         | **total** | **{b3}** | **{t3}** | **{b8}** | **{t8}** |\n\n\
         actions_per_meeting_before: {b3}\nactions_per_meeting_8_tracks_before: {b8}\n\
         actions_per_meeting: {t3}\nactions_per_meeting_8_tracks: {t8}\n\
         actions_reduction: {r3:.0} % (3 tracks), {r8:.0} % (8 tracks)\n\n\
         Per-track model (`docs/capacity.md`): actions = {fixed:.1} + {per_track:.1} × tracks,\n\
         from the 3- and 8-track meetings; a 5-track meeting, measured in the same run and not\n\
         used to derive it: {t5} measured, {predicted_5:.0} predicted ({err:+.1} %).\n\n\
         actions_fixed: {fixed:.1}\nactions_per_track: {per_track:.1}\nactions_5_tracks_measured: {t5}\n\n\
         Following a meeting's progress (`reflow status --follow`, and `reflow process` while it\n\
         runs) describes the run every {poll_ms} ms and queries its table only when the history\n\
         grew: for another 3-track meeting of {follow_s:.0} s, {queries} `QueryWorkflow` actions\n\
         where querying at every poll would have made {polls}. Describes are not actions.\n\n\
         follow_queries_3_tracks: {queries}\n",
        ASR.as_secs(),
        err = (predicted_5 - t5 as f64) / t5 as f64 * 100.0,
        r3 = (1.0 - t3 as f64 / b3 as f64) * 100.0,
        r8 = (1.0 - t8 as f64 / b8 as f64) * 100.0,
        poll_ms = reflow::follow::POLL.as_millis(),
    );
    Ok((text, t3))
}
