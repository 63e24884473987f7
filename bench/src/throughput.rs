//! **Throughput per worker process** (`--only throughput`): the same batch of meetings on 1,
//! 2 and 4 `reflow worker` processes (the release binary, production slots each) against one
//! dev server, with latency-bound stand-ins (fixed seconds per transcription and per LLM
//! call), so that a worker's slots, not its CPU, bound what it can do. Reports meetings per
//! minute for each, `throughput_ratio_4_vs_1`, and the CPU the workers and the server used,
//! so that what bounds the ratio is visible.

use std::path::Path;
use std::time::{Duration, Instant};

use reflow_bench::measure::{cpu_time, quantile, reflow_binary};
use reflow_tests::meetings::{self, Backends, QUEUES, Stack, WorkerProcess};
use reflow_tests::standins::{Reply, StandIn};
use temporalio_client::{UntypedWorkflow, WorkflowFetchHistoryOptions};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

/// A track's transcription on the stand-in.
const ASR: Duration = Duration::from_secs(2);
/// One LLM call on the stand-in.
const LLM: Duration = Duration::from_secs(1);
/// Worker processes compared.
const WORKERS: [usize; 3] = [1, 2, 4];

/// One measurement: `k` workers, `n` meetings delivered at once.
struct Measured {
    workers: usize,
    wall: Duration,
    completed: usize,
    worker_cpu: Duration,
    server_cpu: Duration,
    /// This process: the stand-ins and the webhook intake.
    bench_cpu: Duration,
    /// Workflow tasks, scheduled → started (ms).
    wft_waits: Vec<i64>,
    /// Activities (last attempt), scheduled → started (ms).
    activity_waits: Vec<i64>,
}

/// Queue waits of runs `ids` and their children, from their histories: each workflow task
/// from scheduled to started, each activity's last attempt from scheduled to started.
async fn waits(
    client: &temporalio_client::Client,
    ids: &[String],
) -> anyhow::Result<(Vec<i64>, Vec<i64>)> {
    let ms = reflow::history::run::ms;
    let (mut wft, mut act) = (Vec::new(), Vec::new());
    let mut todo = ids.to_vec();
    while let Some(id) = todo.pop() {
        let events = client
            .get_workflow_handle::<UntypedWorkflow>(&id)
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .into_events()
            .await
            .map_err(|e| anyhow::anyhow!("history of {id}: {e}"))?;
        let mut scheduled = std::collections::HashMap::new();
        for e in &events {
            let at = ms(e.event_time.as_ref());
            match &e.attributes {
                Some(
                    Attributes::WorkflowTaskScheduledEventAttributes(_)
                    | Attributes::ActivityTaskScheduledEventAttributes(_),
                ) => {
                    scheduled.insert(e.event_id, at);
                }
                Some(Attributes::WorkflowTaskStartedEventAttributes(a)) => {
                    if let Some(s) = scheduled.get(&a.scheduled_event_id) {
                        wft.push(at - s);
                    }
                }
                Some(Attributes::ActivityTaskStartedEventAttributes(a)) => {
                    if let Some(s) = scheduled.get(&a.scheduled_event_id) {
                        act.push(at - s);
                    }
                }
                Some(Attributes::ChildWorkflowExecutionStartedEventAttributes(a)) => {
                    if let Some(w) = &a.workflow_execution {
                        todo.push(w.workflow_id.clone());
                    }
                }
                _ => {}
            }
        }
    }
    Ok((wft, act))
}

async fn measure(k: usize, n: usize, work: &Path) -> anyhow::Result<Measured> {
    let dir = work.join(format!("throughput-{k}"));
    std::fs::create_dir_all(&dir)?;
    let mut backends = Backends::start(ASR).await;
    backends.llm =
        StandIn::start(|r| Reply::After(LLM, Box::new(meetings::tagged_chat_reply(r)))).await;
    let db_url = format!("sqlite://{}/reflow.db", dir.display());
    let stack = Stack::start(
        &db_url,
        reflow_tests::client().await,
        backends,
        false,
        meetings::short_timeouts(),
    )
    .await;
    let binary = reflow_binary()?;
    let address = reflow_tests::server().address.clone();
    let workers: Vec<WorkerProcess> = (0..k)
        .map(|i| {
            WorkerProcess::spawn(
                &binary,
                &QUEUES,
                &stack.worker_env(&address, &dir.join(format!("w{i}"))),
                &dir.join(format!("w{i}.log")),
            )
        })
        .collect();
    let voices = meetings::voices(&dir, 2);
    // Warm: every worker polls, every queue has seen a task.
    let warm = stack.meeting(&format!("tp{k}warm"), 0, &voices).await;
    let (_, r) = stack.run(&warm).await;
    r.map_err(|e| anyhow::anyhow!("warm-up meeting: {e}"))?;
    let mut batch = Vec::new();
    for i in 0..n {
        batch.push(stack.meeting(&format!("tp{k}"), i, &voices).await);
    }
    let cpu = |pids: &[u32]| -> Duration { pids.iter().copied().map(cpu_time).sum() };
    let pids: Vec<u32> = workers.iter().map(WorkerProcess::pid).collect();
    let server = super::server_pid();
    let (w0, s0, b0) = (
        cpu(&pids),
        server.map_or(Duration::ZERO, cpu_time),
        cpu_time("self"),
    );
    let t0 = Instant::now();
    let done = futures::future::join_all(batch.iter().map(|m| stack.run(m))).await;
    let wall = t0.elapsed();
    let (w1, s1, b1) = (
        cpu(&pids),
        server.map_or(Duration::ZERO, cpu_time),
        cpu_time("self"),
    );
    let completed = done.iter().filter(|(_, r)| r.is_ok()).count();
    for (_, r) in &done {
        if let Err(e) = r {
            eprintln!("throughput ({k} workers): a meeting failed: {e}");
        }
    }
    drop(workers);
    let ids: Vec<String> = batch.iter().map(|m| m.workflow_id.clone()).collect();
    let (wft_waits, activity_waits) = waits(&stack.client, &ids).await?;
    Ok(Measured {
        workers: k,
        wall,
        completed,
        worker_cpu: w1.saturating_sub(w0),
        server_cpu: s1.saturating_sub(s0),
        bench_cpu: b1.saturating_sub(b0),
        wft_waits,
        activity_waits,
    })
}

/// The section of `load.md`, and `throughput_ratio_4_vs_1`.
pub async fn throughput(n: usize, work: &Path) -> anyhow::Result<(String, f64)> {
    let mut rows = String::new();
    let mut wait_rows = String::new();
    let mut per_minute = Vec::new();
    let mut last = None;
    for k in WORKERS {
        let m = measure(k, n, work).await?;
        anyhow::ensure!(
            m.completed == n,
            "{} of {n} meetings completed with {k} workers",
            m.completed
        );
        let rate = n as f64 / m.wall.as_secs_f64() * 60.0;
        eprintln!("throughput: {k} workers, {rate:.1} meetings/min");
        rows.push_str(&format!(
            "| {} | {n} | {} | {rate:.1} | {:.1} | {:.1} | {:.1} | {:.0} % |\n",
            m.workers,
            super::secs(m.wall),
            m.worker_cpu.as_secs_f64(),
            m.server_cpu.as_secs_f64(),
            m.bench_cpu.as_secs_f64(),
            100.0 * (m.worker_cpu + m.server_cpu + m.bench_cpu).as_secs_f64()
                / (m.wall.as_secs_f64() * super::cores() as f64),
        ));
        per_minute.push(rate);
        let (mut wft, mut act) = (m.wft_waits.clone(), m.activity_waits.clone());
        wait_rows.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            m.workers,
            quantile(&mut wft, 0.5),
            quantile(&mut wft, 0.9),
            quantile(&mut act, 0.5),
            quantile(&mut act, 0.9),
        ));
        last = Some(m);
    }
    let four = last.expect("measured");
    let wall = four.wall.as_secs_f64();
    let server_per_meeting = four.server_cpu.as_secs_f64() / n as f64;
    let ratio = per_minute[2] / per_minute[0];
    let text = format!(
        "## Throughput per worker process\n\n\
         Generated by `just bench-pipeline --only throughput` ({}).\n\
         {n} 2-track meetings delivered at once to 1, 2 and 4 `reflow worker` processes (release\n\
         build, production slots each: reflow 50, audio one per core, mixdown 1, asr 8, llm 10)\n\
         on one dev server; stand-ins: {} s per transcription, {} s per LLM call (the audio\n\
         steps are real work on the meeting's few seconds of speech). CPU = user + system time\n\
         of the worker processes, the dev server and this benchmark (stand-ins, webhook intake)\n\
         during the batch; machine = all three over wall × cores.\n\n\
         | workers | meetings | wall | meetings/min | worker CPU s | server CPU s | bench CPU s | machine |\n\
         |---|---|---|---|---|---|---|---|\n{rows}\n\
         throughput_ratio_4_vs_1: {ratio:.2}\n\n\
         Waits in the queues during the batch (from the runs' histories, ms): workflow tasks\n\
         scheduled → started, activities (last attempt) scheduled → started.\n\n\
         | workers | workflow task p50 | p90 | activity p50 | p90 |\n|---|---|---|---|---|\n{wait_rows}\n\
         server_cpu_s_per_meeting: {server_per_meeting:.2}\n\
         at 4 workers: dev server {:.2} cores, workers {:.2} cores, of {}\n\n\
         What bounds it here: not the workers' slots, which would let 4 workers finish the\n\
         batch in about a quarter of 1 worker's time (LLM calls, 7 a meeting at {} s, are the\n\
         busiest queue), and not the CPU alone: the table shows the share of the {} cores in\n\
         use. The waits show where the time goes: with more workers, activities wait less\n\
         for a slot, and workflow tasks wait more to be handed out (p50 and p90 above), and\n\
         every step of a meeting passes through a workflow task. The dev server is one process\n\
         with one history shard and one SQLite writer: every workflow task and history write of\n\
         every meeting passes through it in turn, and it spends the CPU above on each meeting\n\
         whatever the number of workers, while 4 workers, the server and the benchmark share\n\
         2 cores. On a cluster the same test needs the server on its\n\
         own hosts with several history shards (`NUM_HISTORY_SHARDS`; the server image of\n\
         `temporal-compose/` defaults to 4) and PostgreSQL, and each worker process on cores\n\
         of its own; then meetings/min grows with workers until the LLM and ASR backends'\n\
         own limits.\n",
        super::machine(),
        ASR.as_secs(),
        LLM.as_secs(),
        four.server_cpu.as_secs_f64() / wall,
        four.worker_cpu.as_secs_f64() / wall,
        super::cores(),
        LLM.as_secs(),
        super::cores(),
    );
    Ok((text, ratio))
}
