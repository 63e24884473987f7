//! `e2e-bench`: the embedded main job as a user runs it — `reflow process` on the demo meeting
//! (`scripts/demo-meeting.py`) and on a longer one (its dialogue repeated) — measuring what the
//! user waits for and what they read: the pipeline's wall time against the meeting's length
//! (`time_to_transcript_ratio`), the time of every step, the share of the meeting's facts
//! (`scripts/demo-meeting.py --facts`) that the summary, decisions and next steps carry
//! (`summary_fact_recall`), and the transcript's word error rate on the demo (`wer_demo`).
//! Writes `e2e.md` into the results directory; `just bench-e2e` builds reflow in release mode
//! and runs it.
//!
//! Then the evaluation set (`eval/meetings/`, [`eval_set`]): every meeting, scored per meeting
//! and as medians over its held-out and tuning halves.
//!
//! Usage: `e2e-bench --reflow PATH [--results DIR] [--work DIR] [--repeat N]... [--eval
//! all|none|NAME,NAME…]` (one demo meeting per `--repeat`; default 1 and 4: the demo and a
//! ~10-minute meeting; `--eval` defaults to `all`).

use std::path::Path;

use anyhow::{Context, Result};
use reflow_bench::eval_set::{self, spoken};
use reflow_bench::{Fact, demo_meeting, machine};

struct Measured {
    repeat: usize,
    meeting_s: f64,
    wall_s: f64,
    steps: Vec<(String, f64)>,
    found: Vec<bool>,
    /// Whether the transcript itself still carries each fact (what transcription lost cannot
    /// reach a summary).
    heard: Vec<bool>,
    wer: f64,
    summary: String,
    /// Seconds the worker took to load the embedded LLM (its `embedded LLM loaded` log line).
    llm_load_s: Option<f64>,
}

/// The embedded LLM's load time from a worker's log (`load_ms=` of `embedded LLM loaded`).
fn llm_load_s(log: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains("embedded LLM loaded"))?;
    let ms = line.split("load_ms=").nth(1)?.split_whitespace().next()?;
    Some(ms.parse::<f64>().ok()? / 1000.0)
}

async fn measure(
    reflow: &Path,
    client: &temporalio_client::Client,
    address: &str,
    facts: &[Fact],
    repeat: usize,
    work: &Path,
) -> Result<Measured> {
    let dir = work.join(format!("meeting-x{repeat}"));
    demo_meeting(&[
        dir.to_str().context("path")?,
        "--repeat",
        &repeat.to_string(),
    ])?;
    let processed = eval_set::process(
        reflow,
        &dir,
        address,
        &work.join(format!("data-x{repeat}")),
        "warn,activities::llm::chat_model=info",
    )?;
    let (out, wall_s) = (&processed.out, processed.wall_s);
    let log = dir.join("reflow.log");
    let workflow_id = reflow::local::run_of(&dir)?;
    let steps = reflow::cost::cost(client, None, &workflow_id)
        .await?
        .into_iter()
        .map(|s| (s.step, s.time_s))
        .collect();
    let summary = std::fs::read_to_string(out.join("summary.md"))?;
    let found = facts
        .iter()
        .map(|f| f.carried_by(&summary))
        .collect::<Result<Vec<_>>>()?;
    let reference = demo_meeting(&["--transcript"])?
        .lines()
        .filter_map(|l| l.split_once(": ").map(|(_, t)| t.to_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let reference = std::iter::repeat_n(reference, repeat)
        .collect::<Vec<_>>()
        .join(" ");
    let hypothesis = spoken(&std::fs::read_to_string(out.join("transcript.txt"))?);
    let heard = facts
        .iter()
        .map(|f| f.carried_by(&hypothesis))
        .collect::<Result<Vec<_>>>()?;
    Ok(Measured {
        repeat,
        meeting_s: processed.meeting_s,
        wall_s,
        steps,
        found,
        heard,
        wer: activities::asr::wer::word_error_rate(&reference, &hypothesis),
        summary,
        llm_load_s: llm_load_s(&std::fs::read_to_string(&log)?),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = eval_set::Cli::parse()?;
    let (reflow, work) = (&cli.reflow, &cli.work);
    let mut repeats: Vec<usize> = cli
        .values("--repeat")
        .iter()
        .map(|r| r.parse())
        .collect::<Result<_, _>>()?;
    if repeats.is_empty() {
        repeats = vec![1, 4];
    }
    let facts = Fact::of_demo()?;
    let (server, client, settings) = eval_set::dev_server(work).await?;
    let llm = activities::llm::LlmConfig::from_vars(&|k| settings.var(k))?;
    let mut rows = Vec::new();
    for repeat in repeats {
        let m = measure(reflow, &client, &server.address, &facts, repeat, work).await?;
        eprintln!(
            "x{}: {:.0} s meeting, {:.0} s pipeline (ratio {:.2}), facts {}/{}, WER {:.3}",
            m.repeat,
            m.meeting_s,
            m.wall_s,
            m.wall_s / m.meeting_s,
            m.found.iter().filter(|f| **f).count(),
            facts.len(),
            m.wer
        );
        rows.push(m);
    }
    let eval_names: Vec<String> = match cli.value("--eval").as_deref().unwrap_or("all") {
        "none" => Vec::new(),
        "all" => reflow_tests::eval::Meeting::all()?
            .into_iter()
            .map(|m| m.name)
            .collect(),
        list => list.split(',').map(str::to_owned).collect(),
    };
    let mut evals = Vec::new();
    for name in &eval_names {
        let r = eval_set::run(reflow, &client, &server.address, name, work).await?;
        eprintln!(
            "{name}: {:.0} s meeting, summary ready at {:.2}, recap recall {:?}, summary recall \
             {:?}, invented {:?}",
            r.meeting_s,
            r.summary_ready_ratio,
            r.scores.recap_fact_recall,
            r.scores.summary_fact_recall,
            r.scores.invented_facts
        );
        evals.push(r);
    }
    server.stop().await;

    let demo_row = rows.iter().find(|m| m.repeat == 1);
    let mut md = format!(
        "# The embedded main job, end to end\n\n{}; {}; release build; `just bench-e2e`.\n\n\
         `reflow process` on the demo meeting (`scripts/demo-meeting.py`) and on its dialogue \
         repeated (`--repeat N`), against a dev server the benchmark starts (its start-up is not \
         counted); embedded backends: transcription `{}`, LLM `{}`.\n\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        machine(),
        settings
            .var("TRANSCRIPT_MODEL")
            .unwrap_or_else(|| "base".into()),
        llm.backend_name(),
    );
    for m in &rows {
        md.push_str(&format!(
            "time_to_transcript_ratio_x{}: {:.2}  ({:.0} s of pipeline for {:.0} s of meeting)\n",
            m.repeat,
            m.wall_s / m.meeting_s,
            m.wall_s,
            m.meeting_s
        ));
    }
    if let Some(d) = demo_row {
        if let Some(load) = d.llm_load_s {
            md.push_str(&format!(
                "llm_load_s: {load:.1}  (the worker loading the embedded LLM, in the first LLM \
                 step of the demo's run)\n"
            ));
        }
        md.push_str(&format!(
            "time_to_transcript_ratio: {:.2}\nsummary_fact_recall: {:.2}\nwer_demo: {:.3}\n\
             transcript_fact_coverage: {:.2}  (facts the demo's transcript still carries)\n",
            d.wall_s / d.meeting_s,
            d.found.iter().filter(|f| **f).count() as f64 / facts.len() as f64,
            d.wer,
            d.heard.iter().filter(|f| **f).count() as f64 / facts.len() as f64,
        ));
    }
    for m in &rows {
        md.push_str(&format!(
            "\n## Dialogue ×{} ({:.0} s)\n\n| step | seconds (fan-out members summed) |\n|---|---|\n",
            m.repeat, m.meeting_s
        ));
        let mut steps = m.steps.clone();
        steps.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (step, s) in steps {
            md.push_str(&format!("| {step} | {s:.1} |\n"));
        }
        md.push_str(
            "\nFacts (checked: in the summary; *not transcribed*: lost before the LLM):\n\n",
        );
        for ((f, ok), heard) in facts.iter().zip(&m.found).zip(&m.heard) {
            md.push_str(&format!(
                "- [{}] {}{}\n",
                if *ok { "x" } else { " " },
                f.fact,
                if *heard { "" } else { " — *not transcribed*" }
            ));
        }
        md.push_str(&format!("\n```markdown\n{}\n```\n", m.summary.trim()));
    }
    if !evals.is_empty() {
        md.push_str(&eval_set::report(&evals));
    }
    cli.write_results("e2e.md", &md)
}
