//! Pipeline benchmarks (`just bench-pipeline`): each prints a ratio measured side by side in
//! one invocation, against a Temporal dev server this process starts.
//!
//! - **Fan-out**: the meeting pipeline (`DiarizationPipeline`, signed Daily webhook in, the
//!   whole production path on an in-process worker) on 1 and on 8 synthesized speaker
//!   tracks, with a transcription stand-in of fixed latency; `fanout_ratio_8_vs_1` = median
//!   T(8) / median T(1), alternating the two so drift hits both.
//! - **Orchestration overhead**: a chain of `N` `digest_file` steps (the production activity,
//!   on a small file) through the interpreter on Temporal, against the same activity called
//!   `N` times in-process with the SDK's `ActivityEnvironment` (no server);
//!   `overhead_ms_per_step` = (median T(Temporal) − median T(in-process)) / N, and
//!   `overhead_ms_per_step_local` for the same chain with `local: true` steps.
//! - **Load**: `L` meetings (2 tracks each) delivered at once to one worker; every run must
//!   end; wall time against one meeting alone, and the peak of concurrently running
//!   activities per task queue against its slots (from the runs' histories).
//!
//! - **History size**: meetings of 8 and 64 tracks; the protobuf bytes of the run's history
//!   and its children's, as the server stores them; `history_kb_per_track` (64 tracks).
//! - **History events**: a 3-track meeting's events (the run and its children) by type, the
//!   server's writes per meeting; `events_per_meeting`.
//!
//! - **Actions per meeting** ([`actions`]): the server's own `action` counter over one 3-track
//!   and one 8-track meeting, by action type; `actions_per_meeting`.
//!
//! - **Throughput per worker process** ([`throughput`]): meetings per minute on 1, 2 and 4
//!   worker processes, `throughput_ratio_4_vs_1`, with the workers' and the server's CPU.
//!
//! Writes `bench/results/pipeline.md` and `bench/results/load.md` (the machine and the date
//! included); `--only history` or `--only events` replaces just that section of
//! `pipeline.md`, `--only throughput` that section of `load.md`. Needs what `just setup-test` installs (the `temporal` CLI, espeak-ng, ffmpeg).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use activities::files::{DigestInput, FileActivities};
use anyhow::{Context, bail};
use reflow_bench::measure::cpu_time;
use reflow_tests::meetings::{self, Meeting, Stack};
use serde_json::json;
use temporalio_sdk::testing::ActivityEnvironment;

mod actions;
mod throughput;

/// The transcription stand-in's latency in the fan-out benchmark: a track's GPU
/// transcription, shortened.
const FANOUT_ASR: Duration = Duration::from_secs(5);
/// The transcription stand-in's latency under load.
const LOAD_ASR: Duration = Duration::from_millis(500);
/// Steps of the overhead chain.
const CHAIN: usize = 20;
/// The overhead chain's queue (its own worker).
const CHAIN_QUEUE: &str = "bench-overhead";

struct Args {
    reps: usize,
    load: usize,
    results: PathBuf,
    only: Option<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        reps: 5,
        load: 50,
        results: PathBuf::from("bench/results"),
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--reps" => a.reps = value()?.parse()?,
            "--load" => a.load = value()?.parse()?,
            "--results" => a.results = value()?.into(),
            "--only" => a.only = Some(value()?),
            other => bail!(
                "unknown argument {other} (--reps N, --load N, --results DIR, --only fanout|overhead|history|events|load|throughput)"
            ),
        }
    }
    Ok(a)
}

fn median(xs: &[Duration]) -> Duration {
    let mut v = xs.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// CPU cores of this machine.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

fn machine() -> String {
    format!(
        "{}, {}, {}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        reflow_bench::machine(),
        std::env::consts::ARCH,
    )
}

/// Deliver `m` and wait for its run; the time from the webhook to the run's end.
async fn one_meeting(stack: &Stack, m: &Meeting) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let (_, out) = stack.run(m).await;
    out.with_context(|| format!("run {}", m.workflow_id))?;
    Ok(t0.elapsed())
}

/// The fan-out phase of runs (first `pad_track` start to last `transcribe_track` close) and
/// the longest execution of each activity type, from the runs' histories.
async fn phases(stack: &Stack, ids: &[String]) -> (Vec<Duration>, BTreeMap<String, Duration>) {
    let mut phase = Vec::new();
    let mut longest: BTreeMap<String, Duration> = BTreeMap::new();
    for id in ids {
        let spans = meetings::activity_spans(&stack.client, std::slice::from_ref(id)).await;
        let first = spans
            .iter()
            .filter(|s| s.activity == "pad_track")
            .map(|s| s.started)
            .min();
        let last = spans
            .iter()
            .filter(|s| s.activity == "transcribe_track")
            .map(|s| s.closed)
            .max();
        if let (Some(a), Some(b)) = (first, last) {
            phase.push(b.duration_since(a).unwrap_or_default());
        }
        for s in &spans {
            let d = s.closed.duration_since(s.started).unwrap_or_default();
            let e = longest.entry(s.activity.clone()).or_default();
            *e = (*e).max(d);
        }
    }
    (phase, longest)
}

async fn fanout(reps: usize, work: &Path) -> anyhow::Result<(String, f64)> {
    let (stack, _worker) = meetings::in_process(FANOUT_ASR, false).await;
    // One speaker's track, and 8 participants of a meeting as long: every track covers the
    // whole meeting, as Daily's do.
    let one_voice = meetings::voices(work, 1);
    let eight_voices: Vec<_> = (0..8).map(|_| one_voice[0].clone()).collect();
    // Warm-up (connections, the SQLite file, first workflow tasks): not counted.
    let m = stack.meeting("warm", 0, &one_voice).await;
    one_meeting(&stack, &m).await?;
    let (mut one, mut eight) = (Vec::new(), Vec::new());
    let (mut one_ids, mut eight_ids) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let m = stack.meeting("fanone", rep, &one_voice).await;
        one.push(one_meeting(&stack, &m).await?);
        one_ids.push(m.workflow_id.clone());
        let m = stack.meeting("faneight", rep, &eight_voices).await;
        eight.push(one_meeting(&stack, &m).await?);
        eight_ids.push(m.workflow_id.clone());
        eprintln!(
            "fan-out rep {rep}: 1 track {:?}, 8 tracks {:?}",
            one[rep], eight[rep]
        );
    }
    let ratio = median(&eight).as_secs_f64() / median(&one).as_secs_f64();
    let (one_phase, one_longest) = phases(&stack, &one_ids).await;
    let (eight_phase, eight_longest) = phases(&stack, &eight_ids).await;
    let phase_ratio = median(&eight_phase).as_secs_f64() / median(&one_phase).as_secs_f64();
    let list = |v: &[Duration]| v.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", ");
    let mut steps = String::new();
    for (activity, d1) in &one_longest {
        let d8 = eight_longest.get(activity).copied().unwrap_or_default();
        steps.push_str(&format!("| {activity} | {} | {} |\n", secs(*d1), secs(d8)));
    }
    let text = format!(
        "## Fan-out: 8 tracks against 1\n\n\
         The meeting pipeline from a signed Daily webhook to the run's end (padding, mixdown,\n\
         waveform, transcription of each track in its child workflow, topics, title, summaries,\n\
         Zulip, webhook) on an in-process worker with the production slots (8 transcription,\n\
         one audio slot per core, one mixdown). Transcription stand-in: a fixed {:.1} s per\n\
         track; LLM stand-in: immediate. One espeak-ng speaker (Opus in WebM, {:.1} s) against\n\
         8 participants of a meeting as long (each track covers the meeting, as Daily's do).\n\
         {reps} repetitions, 1 and 8 alternating, after one warm-up run.\n\n\
         | tracks | runs (s) | median (s) | fan-out phase, median (s) |\n|---|---|---|---|\n\
         | 1 | {} | {} | {} |\n| 8 | {} | {} | {} |\n\n\
         Fan-out phase: first `pad_track` start to last `transcribe_track` close. Longest\n\
         execution of each activity (s), from the runs' histories:\n\n\
         | activity | 1 track | 8 tracks |\n|---|---|---|\n{steps}\n\
         fanout_phase_ratio_8_vs_1: {phase_ratio:.3}\n\
         fanout_ratio_8_vs_1: {ratio:.3}\n",
        FANOUT_ASR.as_secs_f64(),
        one_voice[0].end_s,
        list(&one),
        secs(median(&one)),
        secs(median(&one_phase)),
        list(&eight),
        secs(median(&eight)),
        secs(median(&eight_phase)),
    );
    Ok((text, ratio))
}

/// Stored history bytes of a meeting with 8 and with 64 tracks (parent and children).
async fn history_size(work: &Path) -> anyhow::Result<(String, f64)> {
    let (stack, _worker) = meetings::in_process(Duration::from_millis(10), false).await;
    let one_voice = meetings::voices(work, 1);
    let mut rows = String::new();
    let mut per_track = 0.0;
    let mut by_kind = String::new();
    for n in [8usize, 64] {
        let voices: Vec<_> = (0..n).map(|_| one_voice[0].clone()).collect();
        let m = stack.meeting("history", n, &voices).await;
        one_meeting(&stack, &m).await?;
        let run = reflow::history::load(&stack.client, &m.workflow_id).await?;
        let parent = reflow::history::stored_bytes(&stack.client, &m.workflow_id).await?;
        let mut children = 0;
        for c in &run.children {
            children += reflow::history::stored_bytes(&stack.client, &c.workflow_id).await?;
        }
        let total = (parent + children) as f64 / 1024.0;
        per_track = total / n as f64;
        eprintln!("history of {n} tracks: {total:.0} KiB");
        if n == 64 {
            by_kind = bytes_by_kind(&stack, &m.workflow_id, &run, n).await?;
        }
        rows.push_str(&format!(
            "| {n} | {:.0} | {:.0} | {:.0} | {per_track:.1} |\n",
            parent as f64 / 1024.0,
            children as f64 / 1024.0,
            total
        ));
    }
    let text = format!(
        "## History size\n\n\
         A meeting's history as the server stores it (protobuf bytes of every event, payloads\n\
         as sent): the `DiarizationPipeline` run and its `TrackProcessing` children, stand-in\n\
         backends, one short track copied to every participant. Measured {}.\n\n\
         | tracks | parent (KiB) | children (KiB) | total (KiB) | KiB per track |\n\
         |---|---|---|---|---|\n{rows}\n\
         Where the 64-track meeting's bytes go, per track (events of a kind in the run and in\n\
         its children, their bytes over 64; a marker by its name and local activity):\n\n\
         | event | parent (events) | parent (B per track) | children (events) | children (B per track) |\n\
         |---|---|---|---|---|\n{by_kind}\n\
         history_kb_per_track: {per_track:.1}\n",
        machine()
    );
    Ok((text, per_track))
}

/// The rows of the history-size section's breakdown: the bytes of each kind of event in the run
/// `workflow_id` and in its children, per track, largest first. With
/// `REFLOW_BENCH_HISTORIES=dir`, the histories are kept there as JSON too.
async fn bytes_by_kind(
    stack: &Stack,
    workflow_id: &str,
    run: &reflow::history::Run,
    tracks: usize,
) -> anyhow::Result<String> {
    if let Some(dir) = std::env::var_os("REFLOW_BENCH_HISTORIES") {
        actions::save_histories(&stack.client, Path::new(&dir), workflow_id, tracks).await?;
    }
    let parent = reflow::history::stored_bytes_by_kind(&stack.client, workflow_id).await?;
    let mut children = BTreeMap::<String, (usize, usize)>::new();
    for c in &run.children {
        for (k, (n, b)) in
            reflow::history::stored_bytes_by_kind(&stack.client, &c.workflow_id).await?
        {
            let e = children.entry(k).or_default();
            e.0 += n;
            e.1 += b;
        }
    }
    let mut kinds: Vec<&String> = parent.keys().chain(children.keys()).collect();
    kinds.sort();
    kinds.dedup();
    let get =
        |m: &BTreeMap<String, (usize, usize)>, k: &String| m.get(k).copied().unwrap_or_default();
    kinds.sort_by_key(|k| std::cmp::Reverse(get(&parent, k).1 + get(&children, k).1));
    Ok(kinds
        .iter()
        .map(|k| {
            let (pn, pb) = get(&parent, k);
            let (cn, cb) = get(&children, k);
            format!(
                "| {k} | {pn} | {:.0} | {cn} | {:.0} |\n",
                pb as f64 / tracks as f64,
                cb as f64 / tracks as f64
            )
        })
        .collect())
}

/// The events of a 3-track meeting (the run and its children) by type.
async fn history_events(work: &Path) -> anyhow::Result<(String, usize)> {
    let (stack, _worker) = meetings::in_process(Duration::from_millis(10), false).await;
    let voices = meetings::voices(work, 3);
    let m = stack.meeting("events", 0, &voices).await;
    one_meeting(&stack, &m).await?;
    let run = reflow::history::load(&stack.client, &m.workflow_id).await?;
    let mut counts = reflow::history::event_counts(&stack.client, &m.workflow_id).await?;
    for c in &run.children {
        for (t, k) in reflow::history::event_counts(&stack.client, &c.workflow_id).await? {
            *counts.entry(t).or_default() += k;
        }
    }
    let total: usize = counts.values().sum();
    let mut by_count: Vec<(&String, &usize)> = counts.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let rows: String = by_count
        .iter()
        .map(|(t, k)| format!("| {t} | {k} |\n"))
        .collect();
    let text = format!(
        "## History events\n\n\
         What one meeting costs the server in history writes: the events of a 3-track\n\
         `DiarizationPipeline` run and its `TrackProcessing` children (stand-in backends), by\n\
         type. Measured {}.\n\n\
         | event | count |\n|---|---|\n{rows}\n\
         events_per_meeting: {total}\n",
        machine()
    );
    Ok((text, total))
}

/// Replace (or add) the section under `heading` of `pipeline.md`.
fn replace_section(file: &Path, heading: &str, section: &str) -> anyhow::Result<String> {
    let old = std::fs::read_to_string(file).unwrap_or_default();
    let start = old.find(heading);
    let text = match start {
        Some(i) => {
            let end = old[i + 3..]
                .find("\n## ")
                .map_or(old.len(), |j| i + 3 + j + 1);
            format!("{}{section}{}", &old[..i], &old[end..])
        }
        None => format!("{}\n{section}", old.trim_end()),
    };
    std::fs::write(file, &text)?;
    Ok(text)
}

/// A chain of `steps` `digest_file` steps, each needing the previous; `local` makes every
/// step a Temporal local activity (`local: true`).
fn chain_pipeline(steps: usize, local: bool) -> workflow::Pipeline {
    let mut yaml = format!(
        "name: EngineTest\nversion: 1\ntask_queue: {CHAIN_QUEUE}\n\
         inputs:\n  path: {{type: string}}\n\
         defaults:\n  start_to_close: 60s\nsteps:\n"
    );
    for i in 1..=steps {
        yaml.push_str(&format!(
            "  - id: s{i}\n    activity: digest_file\n    with:\n      path: ${{input.path}}\n"
        ));
        if local {
            yaml.push_str("    local: true\n");
        }
        if i > 1 {
            yaml.push_str(&format!("    needs: [s{}]\n", i - 1));
        }
    }
    yaml.push_str(&format!("output: ${{s{steps}.sha256}}\n"));
    let p = workflow::parse_and_validate("chain.yaml", &yaml, reflow_tests::registry().catalog())
        .unwrap_or_else(|e| panic!("{e}"));
    // Runs name a registered version, which the in-process worker resolves.
    reflow_tests::register(&p);
    p
}

/// Figures of the overhead benchmark, for the summary.
struct Overhead {
    text: String,
    per_step: f64,
    per_step_local: f64,
}

async fn overhead(reps: usize, work: &Path) -> anyhow::Result<Overhead> {
    let file = work.join("chain-input.bin");
    std::fs::write(&file, vec![7u8; 64 * 1024])?;
    let path = file.display().to_string();
    let client = reflow_tests::client().await;
    let _worker = reflow_tests::InProcessWorker::start(&[CHAIN_QUEUE.to_owned()]);
    let env = ActivityEnvironment::builder().build();
    let (short, long) = (chain_pipeline(1, false), chain_pipeline(CHAIN, false));
    let long_local = chain_pipeline(CHAIN, true);
    let run = |p: &workflow::Pipeline, id: String| {
        let (client, p, path) = (client.clone(), p.clone(), path.clone());
        async move {
            let t0 = Instant::now();
            reflow::runs::start(&client, &p, json!({ "path": path }), &id).await?;
            let out = reflow::runs::wait(&client, &id).await?;
            anyhow::ensure!(out.is_string(), "the chain answers a digest: {out}");
            anyhow::Ok(t0.elapsed())
        }
    };
    let direct = |n: usize| {
        let (env, path) = (&env, path.clone());
        async move {
            let t0 = Instant::now();
            for _ in 0..n {
                let input = DigestInput { path: path.clone() };
                env.run(FileActivities::digest_file, input)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            anyhow::Ok(t0.elapsed())
        }
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    run(&short, format!("chain-warm-{stamp}")).await?;
    run(&long_local, format!("chain-warm-local-{stamp}")).await?;
    direct(CHAIN).await?;
    let (mut t1, mut tn, mut tl, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let server = server_pid();
    let (mut server_cpu, mut own_cpu) = (Duration::ZERO, Duration::ZERO);
    let reps = reps.max(3);
    for rep in 0..reps {
        t1.push(run(&short, format!("chain1-{stamp}-{rep}")).await?);
        let (s0, o0) = (server.map(cpu_time), cpu_time("self"));
        tn.push(run(&long, format!("chain{CHAIN}-{stamp}-{rep}")).await?);
        if let Some((s0, s1)) = s0.zip(server.map(cpu_time)) {
            server_cpu += s1.saturating_sub(s0);
        }
        own_cpu += cpu_time("self").saturating_sub(o0);
        tl.push(run(&long_local, format!("chain{CHAIN}-local-{stamp}-{rep}")).await?);
        d.push(direct(CHAIN).await?);
    }
    let steps = (CHAIN * reps) as f64;
    let cpu_line = match server {
        Some(_) => format!(
            "CPU per step during the queued {CHAIN}-step runs: Temporal dev server {:.1} ms,\n\
             this process (worker, client) {:.1} ms, on {}.\n\n",
            server_cpu.as_secs_f64() * 1000.0 / steps,
            own_cpu.as_secs_f64() * 1000.0 / steps,
            machine()
        ),
        None => String::new(),
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (t1, tn, tl, d) = (
        ms(median(&t1)),
        ms(median(&tn)),
        ms(median(&tl)),
        ms(median(&d)),
    );
    let per_step = (tn - d) / CHAIN as f64;
    let per_step_local = (tl - d) / CHAIN as f64;
    let marginal = (tn - t1) / (CHAIN - 1) as f64 - d / CHAIN as f64;
    let text = format!(
        "## Orchestration overhead per step\n\n\
         A chain of {CHAIN} `digest_file` steps (each needs the previous; a 64 KiB file) through\n\
         the interpreter workflow on the dev server, against the same activity called {CHAIN}\n\
         times in-process through the SDK's `ActivityEnvironment` (no server). The chain runs\n\
         twice: as queued activities (the default: each step scheduled on the task queue, with\n\
         eager dispatch to the worker that completed the workflow task when it has a free slot),\n\
         and with `local: true` on every step (local activities: run inside the workflow task,\n\
         their results recorded as markers). Medians of {reps} runs each, the variants\n\
         interleaved; a run's time includes starting the workflow and reading its result.\n\n\
         | run | median (ms) |\n|---|---|\n\
         | Temporal, 1 step | {t1:.1} |\n| Temporal, {CHAIN} steps | {tn:.1} |\n\
         | Temporal, {CHAIN} local steps | {tl:.1} |\n\
         | in-process, {CHAIN} calls | {d:.1} |\n\n\
         Per step, all included: ({tn:.1} − {d:.1}) / {CHAIN} queued, ({tl:.1} − {d:.1}) / {CHAIN}\n\
         local. Marginal queued step (one more step in a running chain): {marginal:.1} ms.\n\n\
         {cpu_line}overhead_ms_per_step: {per_step:.1}\n\
         overhead_ms_per_step_local: {per_step_local:.1}\n",
    );
    Ok(Overhead {
        text,
        per_step,
        per_step_local,
    })
}

/// The pid of the benchmark's Temporal dev server (a `temporal server start-dev` serving
/// [`reflow_tests::server`]'s port), if `/proc` shows it.
fn server_pid() -> Option<u32> {
    let port = reflow_tests::server()
        .address
        .rsplit(':')
        .next()?
        .to_owned();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let serves = args
            .windows(2)
            .any(|w| w[0] == b"--port" && w[1] == port.as_bytes());
        (serves && args.iter().any(|a| *a == b"start-dev")).then_some(pid)
    })
}

async fn load(n: usize, work: &Path) -> anyhow::Result<String> {
    let (stack, _worker) = meetings::in_process(LOAD_ASR, false).await;
    let voices = meetings::voices(work, 2);
    let m = stack.meeting("loadwarm", 0, &voices).await;
    one_meeting(&stack, &m).await?;
    let m = stack.meeting("loadsingle", 0, &voices).await;
    let single = one_meeting(&stack, &m).await?;
    let mut all = Vec::new();
    for i in 0..n {
        all.push(stack.meeting("load", i, &voices).await);
    }
    let t0 = Instant::now();
    let runs = all.iter().map(|m| async {
        let (_, r) = stack.run(m).await;
        (m.workflow_id.clone(), r, t0.elapsed())
    });
    let done = futures::future::join_all(runs).await;
    let wall = t0.elapsed();
    let failed: Vec<String> = done
        .iter()
        .filter_map(|(id, r, _)| r.as_ref().err().map(|e| format!("{id}: {e}")))
        .collect();
    let ended = done.len() - failed.len();
    let ids: Vec<String> = all.iter().map(|m| m.workflow_id.clone()).collect();
    let spans = meetings::activity_spans(&stack.client, &ids).await;
    let peaks = meetings::peak_concurrency(&spans);
    let mut rows = String::new();
    for (queue, peak) in &peaks {
        let slots = reflow::worker::activity_slots(queue, None);
        let busy: f64 = spans
            .iter()
            .filter(|s| &s.queue == queue)
            .map(|s| {
                s.closed
                    .duration_since(s.started)
                    .unwrap_or_default()
                    .as_secs_f64()
            })
            .sum();
        let activities = spans.iter().filter(|s| &s.queue == queue).count();
        rows.push_str(&format!(
            "| {queue} | {activities} | {slots} | {peak} | {:.0} % |\n",
            100.0 * busy / (wall.as_secs_f64() * slots as f64)
        ));
    }
    let mut finish: Vec<Duration> = done.iter().map(|d| d.2).collect();
    finish.sort();
    let text = format!(
        "# Load: {n} meetings at once on one worker\n\n\
         Generated by `just bench-pipeline` ({}).\n\
         {n} synthesized 2-track meetings (signed Daily webhooks → `DiarizationPipeline`, the\n\
         whole production path, SQLite and a directory store as embedded) delivered at once to\n\
         one in-process worker with the production slots; transcription stand-in {} ms per\n\
         track, LLM stand-in immediate. Peak = most activities of the queue running at one\n\
         moment (from the runs' histories); busy = activity time / (wall × slots).\n\n\
         load_completed: {ended}/{n}\n\
         load_wall_s: {}\nsingle_run_s: {}\n\
         load_wall_vs_single: {:.2}\n\
         first_run_done_s: {}\nmedian_run_done_s: {}\n\n\
         | queue | activities | slots | peak | busy |\n|---|---|---|---|---|\n{rows}\n{}",
        machine(),
        LOAD_ASR.as_millis(),
        secs(wall),
        secs(single),
        wall.as_secs_f64() / single.as_secs_f64(),
        secs(finish[0]),
        secs(finish[finish.len() / 2]),
        if failed.is_empty() {
            String::new()
        } else {
            format!("Failed runs:\n\n{}\n", failed.join("\n"))
        }
    );
    if !failed.is_empty() {
        eprintln!("{text}");
        bail!("{} of {n} runs failed", failed.len());
    }
    Ok(text)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    // Logs only on request (`RUST_LOG=...`): they would slow what is being measured.
    if std::env::var_os("RUST_LOG").is_some() {
        reflow::init_tracing();
    }
    std::fs::create_dir_all(&a.results)?;
    let work = tempfile::Builder::new().prefix("reflow-bench-").tempdir()?;
    let want = |s: &str| a.only.as_deref().is_none_or(|o| o == s);
    let mut sections = Vec::new();
    if want("fanout") {
        let (text, ratio) = fanout(a.reps, work.path()).await?;
        eprintln!("fanout_ratio_8_vs_1: {ratio:.3}");
        sections.push(text);
    }
    if want("overhead") {
        let o = overhead(a.reps, work.path()).await?;
        eprintln!(
            "overhead_ms_per_step: {:.1} (local steps: {:.1})",
            o.per_step, o.per_step_local
        );
        sections.push(o.text);
    }
    if want("history") {
        let (text, per_track) = history_size(work.path()).await?;
        eprintln!("history_kb_per_track: {per_track:.1}");
        if sections.is_empty() {
            println!(
                "{}",
                replace_section(&a.results.join("pipeline.md"), "## History size", &text)?
            );
        } else {
            sections.push(text);
        }
    }
    if want("events") {
        let (text, total) = history_events(work.path()).await?;
        eprintln!("events_per_meeting: {total}");
        if sections.is_empty() {
            println!(
                "{}",
                replace_section(&a.results.join("pipeline.md"), "## History events", &text)?
            );
        } else {
            sections.push(text);
        }
    }
    if want("actions") {
        let (text, total) = actions::actions(work.path(), &machine()).await?;
        eprintln!("actions_per_meeting: {total}");
        if sections.is_empty() {
            println!(
                "{}",
                replace_section(
                    &a.results.join("pipeline.md"),
                    "## Actions per meeting",
                    &text
                )?
            );
        } else {
            sections.push(text);
        }
    }
    if !sections.is_empty() && !matches!(a.only.as_deref(), Some("history" | "events" | "actions"))
    {
        let text = format!(
            "# Pipeline benchmarks: fan-out and orchestration overhead\n\n\
             Generated by `just bench-pipeline` ({}), release build, Temporal dev server\n\
             (`temporal server start-dev`, SQLite) started by the benchmark.\n\n{}",
            machine(),
            sections.join("\n")
        );
        std::fs::write(a.results.join("pipeline.md"), &text)?;
        println!("{text}");
    }
    if want("load") {
        let text = load(a.load, work.path()).await?;
        // The throughput section follows the load section (re-measured below unless `--only
        // load`, kept as it was then).
        let kept = std::fs::read_to_string(a.results.join("load.md"))
            .ok()
            .and_then(|old| {
                old.find("## Throughput per worker process")
                    .map(|i| old[i..].to_owned())
            })
            .unwrap_or_default();
        std::fs::write(a.results.join("load.md"), format!("{text}\n{kept}"))?;
        println!("{text}");
    }
    if want("throughput") {
        let (text, ratio) = throughput::throughput(96, work.path()).await?;
        eprintln!("throughput_ratio_4_vs_1: {ratio:.2}");
        println!(
            "{}",
            replace_section(
                &a.results.join("load.md"),
                "## Throughput per worker process",
                &text
            )?
        );
    }
    // The dev server and the in-process workers are torn down with the process.
    std::process::exit(0);
}
