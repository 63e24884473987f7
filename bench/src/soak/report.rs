//! What the soak checks and measures once its meetings settled, and `bench/results/soak.md`:
//! completions (transcript `ended` and run completed), runs completed twice (Temporal's
//! visibility), paid calls answered twice (the stand-ins' request logs, keyed by track, prompt,
//! transcript and event), `error` statuses (the transcripts' stored events), per-step latency
//! and history size (the runs' histories), actions per meeting (the server's counter) and the
//! processes' memory ([`super::memory`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reflow_bench::measure::quantile;
use reflow_tests::blows::repeats_without_a_kill;
use reflow_tests::meetings::Stack;
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;

use super::memory::{self, Sample};
use super::{Delivered, backends};

/// What the soak saw happen.
pub struct Seen {
    /// Meetings meant to arrive.
    pub meetings: usize,
    /// Those whose webhook reflow accepted.
    pub delivered: Vec<Delivered>,
    /// When workers were SIGKILLed.
    pub kills: Vec<Instant>,
    /// The blows, `(seconds into the soak, what)`.
    pub blows: Vec<(f64, String)>,
    /// The server's actions by type over the soak.
    pub actions: BTreeMap<String, f64>,
    /// Memory readings.
    pub samples: Vec<Sample>,
    /// The live server's cache and heap over the day.
    pub cached: Vec<memory::Cached>,
    /// How the vendors behave (lines of the results file).
    pub vendors: String,
    /// The arrival window.
    pub window: Duration,
    /// The generator's seed.
    pub seed: u64,
    /// Tracks per meeting.
    pub tracks: usize,
}

/// Wait until every delivered transcript is `ended` or `error`, or `limit` passed.
pub async fn wait_settled(stack: &Stack, delivered: &[Delivered], limit: Duration) {
    let since = Instant::now();
    let mut told = Instant::now();
    loop {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for d in delivered {
            let status = stack
                .db
                .transcript(&d.transcript_id)
                .await
                .map(|t| t.status)
                .unwrap_or_default();
            *counts.entry(status).or_default() += 1;
        }
        let settled =
            counts.get("ended").copied().unwrap_or(0) + counts.get("error").copied().unwrap_or(0);
        if settled == delivered.len() || since.elapsed() > limit {
            return;
        }
        if told.elapsed() > Duration::from_secs(30) {
            eprintln!("soak: waiting for the last meetings: {counts:?}");
            told = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Per-step latency (first scheduled to closed, retries included) of runs `ids` and their
/// children, ms by activity type; and their stored history, KiB per run (children included).
async fn steps_and_history(
    client: &temporalio_client::Client,
    ids: &[String],
) -> anyhow::Result<(BTreeMap<String, Vec<i64>>, Vec<f64>)> {
    let mut latency: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut history = Vec::new();
    for id in ids {
        let mut todo = vec![id.clone()];
        let mut bytes = 0;
        while let Some(id) = todo.pop() {
            let run = reflow::history::load(client, &id).await?;
            bytes += reflow::history::stored_bytes(client, &id).await?;
            for s in &run.steps {
                if let Some(close) = &s.close
                    && !matches!(close, reflow::history::Close::Canceled { .. })
                {
                    latency
                        .entry(s.activity_type.clone())
                        .or_default()
                        .push(close.at_ms() - s.scheduled_ms);
                }
            }
            todo.extend(run.children.iter().map(|c| c.workflow_id.clone()));
        }
        history.push(bytes as f64 / 1024.0);
    }
    Ok((latency, history))
}

/// The report, and whether every check passed.
pub async fn report(
    stack: &Stack,
    client: &temporalio_client::Client,
    seen: &Seen,
) -> anyhow::Result<(String, bool)> {
    let n = seen.meetings;
    // Completed: the transcript ended and its run completed; runs completed twice.
    let mut completed = 0;
    let mut twice = Vec::new();
    let mut not_done = Vec::new();
    let mut errors = Vec::new();
    let mut meeting_ms = Vec::new();
    for d in &seen.delivered {
        let t = stack.db.transcript(&d.transcript_id).await?;
        let run = reflow::history::load(client, &d.workflow_id).await?;
        if t.status == "ended" && run.status == WorkflowExecutionStatus::Completed {
            completed += 1;
            let accepted = d
                .accepted
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as i64;
            meeting_ms.push(run.close_ms - accepted);
        } else {
            not_done.push(format!(
                "{} ({}): transcript {}, run {:?}, {} activities pending{}",
                d.workflow_id,
                d.transcript_id,
                t.status,
                run.status,
                run.pending.len(),
                run.reason
                    .as_deref()
                    .map(|r| format!(", {r}"))
                    .unwrap_or_default()
            ));
        }
        let query = format!(
            "WorkflowId = '{}' AND ExecutionStatus = 'Completed'",
            d.workflow_id
        );
        let runs = client
            .count_workflows(&query, temporalio_client::WorkflowCountOptions::default())
            .await?
            .count();
        if runs > 1 {
            twice.push(format!("{}: {runs} completed runs", d.workflow_id));
        }
        let events = stack.db.events(&d.transcript_id, 0).await?;
        let bad = events
            .iter()
            .filter(|e| e.event == "STATUS" && e.data["value"] == "error")
            .count();
        if bad > 0 || t.status == "error" {
            errors.push(format!(
                "{}: {bad} STATUS error events, status {}",
                d.transcript_id, t.status
            ));
        }
    }

    // Paid calls answered twice, and those a SIGKILL explains (the worker died with the call in
    // flight or its answer unrecorded).
    let longest = |kind: &str| match kind {
        "transcription" => backends::longest(&backends::ASR),
        "llm" => backends::longest(&backends::LLM),
        "zulip" => backends::longest(&backends::ZULIP),
        _ => backends::longest(&backends::HOOK),
    };
    let mut paid_rows = String::new();
    let mut unexplained = Vec::new();
    let mut at_kill = 0;
    for (kind, calls) in stack.backends.paid_calls() {
        let repeats: usize = calls.values().map(|c| c.len().saturating_sub(1)).sum();
        let bad = repeats_without_a_kill(&calls, &seen.kills, longest(kind));
        at_kill += repeats - bad.len();
        paid_rows.push_str(&format!(
            "| {kind} | {} | {} | {repeats} | {} |\n",
            calls.len(),
            calls.values().map(Vec::len).sum::<usize>(),
            repeats - bad.len()
        ));
        unexplained.extend(bad.into_iter().map(|b| format!("{kind} {b}")));
    }
    let duplicates = twice.len() + unexplained.len();

    let ids: Vec<String> = seen
        .delivered
        .iter()
        .map(|d| d.workflow_id.clone())
        .collect();
    let (mut latency, mut history) = steps_and_history(client, &ids).await?;
    let mut step_rows = String::new();
    let mut by_p99: Vec<(&String, &mut Vec<i64>)> = latency.iter_mut().collect();
    by_p99.sort_by_key(|(k, _)| k.as_str());
    for (step, ms) in by_p99 {
        step_rows.push_str(&format!(
            "| {step} | {} | {:.2} | {:.2} | {:.2} |\n",
            ms.len(),
            quantile(ms, 0.5) as f64 / 1000.0,
            quantile(ms, 0.99) as f64 / 1000.0,
            quantile(ms, 1.0) as f64 / 1000.0,
        ));
    }
    let meetings_s = (
        quantile(&mut meeting_ms, 0.5) as f64 / 1000.0,
        quantile(&mut meeting_ms, 0.99) as f64 / 1000.0,
    );
    history.sort_by(f64::total_cmp);
    let history_kb = history.iter().sum::<f64>() / history.len().max(1) as f64;
    let history_max = history.last().copied().unwrap_or(0.0);

    let total_actions: f64 = seen.actions.values().sum();
    let per = |v: f64| v / seen.delivered.len().max(1) as f64;
    let mut action_rows: Vec<(&String, &f64)> =
        seen.actions.iter().filter(|(_, v)| **v >= 0.5).collect();
    action_rows.sort_by(|a, b| b.1.total_cmp(a.1));
    let action_rows: String = action_rows
        .iter()
        .map(|(k, v)| format!("| {k} | {:.0} | {:.1} |\n", v, per(**v)))
        .collect();

    let growth = memory::growth(&seen.samples);
    let longest_lived = |prefix: &str| {
        growth
            .iter()
            .filter(|g| g.label.starts_with(prefix))
            .max_by(|a, b| (a.to_s - a.from_s).total_cmp(&(b.to_s - b.from_s)))
            .cloned()
    };
    let (worker, server) = (longest_lived("worker"), longest_lived("server"));
    let pct = |g: &Option<memory::Growth>| g.as_ref().map_or(f64::NAN, memory::Growth::pct);
    let growth_rows: String = growth
        .iter()
        .map(|g| {
            format!(
                "| {} | {:.1}–{:.1} | {:.0} | {:.0} | {:.0} | {:+.1} |\n",
                g.label,
                g.from_s / 60.0,
                g.to_s / 60.0,
                g.after_warm_up_mib,
                g.end_mib,
                g.peak_mib,
                g.pct()
            )
        })
        .collect();
    let blows: String = seen
        .blows
        .iter()
        .map(|(t, what)| format!("- {:.1} min: {what}\n", t / 60.0))
        .collect();
    let problems: String = not_done
        .iter()
        .chain(&twice)
        .chain(&unexplained)
        .chain(&errors)
        .map(|p| format!("- {p}\n"))
        .collect();
    let ok = completed == n && duplicates == 0 && errors.is_empty();
    let minutes = seen.window.as_secs_f64() / 60.0;
    let text = format!(
        "# Soak: a day in {minutes:.0} minutes\n\n\
         Generated by `just soak --meetings {n} --minutes {minutes}` ({date}, {machine}; release\n\
         build; seed {seed}). {n} meetings of {tracks} synthesized speech tracks arrive at random\n\
         moments of {minutes} minutes as signed Daily webhooks into reflow's API (Daily intake),\n\
         and run `DiarizationPipeline` (timeouts shortened: every start-to-close 90 s, heartbeat\n\
         15 s) on separate `reflow worker` processes in one Worker Deployment, with SQLite and a\n\
         real S3 server (bench/src/soak/). The stand-in vendors:\n\n{vendors}\n\
         What the day brought (minutes since the first arrival could come):\n\n{blows}\n\
         soak_completed: {completed}/{n}\n\
         soak_duplicates: {duplicates}\n\
         soak_error_statuses: {error_count}\n\
         soak_worker_rss_growth_pct: {wg:.1}\n\
         soak_server_rss_growth_pct: {sg:.1}\n\
         soak_actions_per_meeting: {apm:.1}\n\
         soak_history_kb_per_meeting: {history_kb:.1}\n\
         soak_meeting_seconds_p50: {m50:.1}\n\
         soak_meeting_seconds_p99: {m99:.1}\n\n\
         `soak_duplicates` counts runs completed twice ({twice_n}) and paid calls answered\n\
         twice that no SIGKILL explains ({unexplained_n}); a call repeated because the worker\n\
         was killed while it was in flight or its answer unrecorded is counted apart below\n\
         (`soak_repeats_at_kill: {at_kill}`): the vendor was paid twice for it, and nothing in\n\
         reflow can avoid that short of the vendor deduplicating. `soak_error_statuses` counts\n\
         transcripts that ever stored a `STATUS error` event or ended in `error`.\n\n\
         soak_repeats_at_kill: {at_kill}\n\n\
         ## Paid calls (answered 200 by the stand-ins)\n\n\
         | kind | distinct | calls | repeated | repeated at the kill |\n|---|---|---|---|---|\n\
         {paid_rows}\n\
         ## Per-step latency\n\n\
         From the runs' histories (track children included): each step from its first\n\
         scheduling to its close, queueing and retries included, seconds. The meeting: the\n\
         webhook accepted to the run's close, p50 {m50:.1} s, p99 {m99:.1} s.\n\n\
         | step | executions | p50 | p99 | max |\n|---|---|---|---|---|\n{step_rows}\n\
         ## Actions and history per meeting\n\n\
         The server's own `action` counter (namespace `default`) over the soak, the restarted\n\
         server's count added to the first one's, per accepted meeting: {total_actions:.0} in all.\n\
         Upgrades and retries after the blows are included. History: the stored bytes of each\n\
         run and its children, mean {history_kb:.1} KiB, largest {history_max:.1} KiB.\n\n\
         | action type | total | per meeting |\n|---|---|---|\n{action_rows}\n\
         ## Memory\n\n\
         Resident memory (VmRSS) of every worker process and of the Temporal server, read every\n\
         5 s. Growth of a process: the mean over the last tenth of its life against the mean\n\
         over the tenth after its warm-up (its first quarter). The headline figures are the\n\
         longest-lived worker ({wl}) and server ({sl}).\n\n\
         | process | minutes | after warm-up MiB | end MiB | peak MiB | growth % |\n\
         |---|---|---|---|---|---|\n{growth_rows}\n\
         Over time (MiB, the last reading of each minute; the last columns are the server's\n\
         `cache_usage{{cache_type=\"mutablestate\"}}`, the executions it keeps in memory, and its\n\
         `memory_heap`, Go's live and not yet swept heap):\n\n\
         {over_time}\n\
         ## Problems\n\n{problems_or_none}",
        date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        machine = reflow_bench::machine(),
        seed = seen.seed,
        tracks = seen.tracks,
        vendors = seen.vendors,
        error_count = errors.len(),
        wg = pct(&worker),
        sg = pct(&server),
        apm = per(total_actions),
        m50 = meetings_s.0,
        m99 = meetings_s.1,
        twice_n = twice.len(),
        unexplained_n = unexplained.len(),
        wl = worker.as_ref().map_or("none", |g| g.label.as_str()),
        sl = server.as_ref().map_or("none", |g| g.label.as_str()),
        over_time = memory::table(&seen.samples, &seen.cached, 60.0),
        problems_or_none = if problems.is_empty() {
            "None.\n".to_owned()
        } else {
            problems
        },
    );
    Ok((text, ok))
}
