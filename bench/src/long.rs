//! `long-bench`: a long meeting through `reflow process` (release build) as a user runs it —
//! by default 60 minutes of six participants who join and leave (`scripts/meeting.py long`:
//! the evaluation set's synthesized meetings one after the other, spoken by six espeak-ng
//! voices; each track starts when its participant joined, as Daily delivers them) — measuring
//! what a long meeting costs: the process's peak resident memory (`long_peak_rss_mb`), its
//! wall time over the meeting's length (`long_ratio`), every step's time against its
//! start-to-close timeout (retries and timeouts counted), the topics, and whether the summary
//! carries the facts of the meeting's closing part (the meetings heard only after its
//! midpoint). Writes `long.md` into the results directory; `just bench-long` builds reflow in
//! release mode and runs it.
//!
//! Usage: `long-bench --reflow PATH [--results DIR] [--work DIR] [--minutes N] [--report-only]`
//! (`--report-only`: write `long.md` from the run a kept `--work` directory holds, without
//! running it again; its dev server's state is `DIR/temporal`).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use reflow::history::{Close, Step};
use reflow_bench::eval_set::{self, printed_topics};
use reflow_bench::{Fact, machine};

/// What the composed meeting says about itself (`meeting.json`, written by `meeting.py long`).
#[derive(serde::Deserialize)]
struct Composed {
    parts: Vec<String>,
    /// The parts after the midpoint, heard once: `later_facts` are theirs.
    closing: Vec<String>,
    speakers: Vec<Speaker>,
    later_facts: Vec<Fact>,
}

#[derive(serde::Deserialize)]
struct Speaker {
    name: String,
    joins_at: f64,
}

/// One step's members (fan-out members, every track's child): the longest attempt against its
/// timeout.
struct StepTime {
    step: String,
    members: usize,
    longest_s: f64,
    timeout_s: i64,
    retried: usize,
    timed_out: usize,
}

/// Every step of the run and of its children, by activity type.
async fn step_times(
    client: &temporalio_client::Client,
    workflow_id: &str,
) -> Result<Vec<StepTime>> {
    let mut steps: Vec<Step> = Vec::new();
    let mut pending = vec![workflow_id.to_owned()];
    while let Some(id) = pending.pop() {
        let run = reflow::history::load(client, &id).await?;
        pending.extend(run.children.iter().map(|c| c.workflow_id.clone()));
        steps.extend(run.steps);
    }
    let mut out: Vec<StepTime> = Vec::new();
    for s in steps.iter().filter(|s| !s.local) {
        let took = match (&s.started, &s.close) {
            (Some(started), Some(close)) => (close.at_ms() - started.at_ms) as f64 / 1000.0,
            _ => 0.0,
        };
        let retried = s.started.as_ref().is_some_and(|st| st.attempt > 1);
        let timed_out = matches!(s.close, Some(Close::TimedOut { .. }))
            || s.started
                .as_ref()
                .and_then(|st| st.last_failure.as_ref())
                .is_some_and(|f| f.timeout.is_some());
        let i = match out.iter().position(|t| t.step == s.activity_type) {
            Some(i) => i,
            None => {
                out.push(StepTime {
                    step: s.activity_type.clone(),
                    members: 0,
                    longest_s: 0.0,
                    timeout_s: s.start_to_close_s,
                    retried: 0,
                    timed_out: 0,
                });
                out.len() - 1
            }
        };
        let t = &mut out[i];
        t.members += 1;
        t.longest_s = t.longest_s.max(took);
        t.timeout_s = t.timeout_s.min(s.start_to_close_s);
        t.retried += usize::from(retried);
        t.timed_out += usize::from(timed_out);
    }
    out.sort_by(|a, b| b.longest_s.total_cmp(&a.longest_s));
    Ok(out)
}

/// Synthesize the meeting of `minutes` into `dir` (kept when already there).
fn synthesize(minutes: u32, dir: &Path) -> Result<Composed> {
    if !dir.join("recording.json").exists() {
        let synth = Command::new("python3")
            .arg(eval_set::script())
            .args(["long", &minutes.to_string()])
            .arg(dir)
            .output()
            .context("running scripts/meeting.py long")?;
        anyhow::ensure!(
            synth.status.success(),
            "meeting.py long: {}",
            String::from_utf8_lossy(&synth.stderr)
        );
    }
    Ok(serde_json::from_str(&std::fs::read_to_string(
        dir.join("meeting.json"),
    )?)?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = eval_set::Cli::parse()?;
    let minutes: u32 = cli.value("--minutes").map_or(Ok(60), |m| m.parse())?;
    let (reflow, work) = (&cli.reflow, &cli.work);
    let dir = work.join(format!("long-{minutes}"));
    let composed = synthesize(minutes, &dir)?;
    let (server, client, settings) = eval_set::dev_server(work).await?;
    let processed = if cli.has("--report-only") {
        eval_set::processed(&dir, None)?
    } else {
        eval_set::process(
            reflow,
            &dir,
            &server.address,
            &work.join(format!("data-long-{minutes}")),
            "warn,activities::llm::chat_model=info",
        )?
    };
    let workflow_id = reflow::local::run_of(&dir)?;
    let times = step_times(&client, &workflow_id).await?;
    let mut costs = reflow::cost::cost(&client, None, &workflow_id).await?;
    server.stop().await;
    costs.sort_by(|a, b| b.time_s.total_cmp(&a.time_s));

    let summary = std::fs::read_to_string(processed.out.join("summary.md"))?;
    let topics = printed_topics(&processed.stdout);
    let carried: Vec<bool> = composed
        .later_facts
        .iter()
        .map(|f| f.carried_by(&summary))
        .collect::<Result<_>>()?;
    let transcript = eval_set::spoken(&std::fs::read_to_string(
        processed.out.join("transcript.txt"),
    )?);
    let heard: Vec<bool> = composed
        .later_facts
        .iter()
        .map(|f| f.carried_by(&transcript))
        .collect::<Result<_>>()?;
    let count = |v: &[bool]| v.iter().filter(|b| **b).count();
    let ratio = processed.wall_s / processed.meeting_s;
    let over = times.iter().filter(|t| t.timed_out > 0).count();
    let llm = activities::llm::LlmConfig::from_vars(&|k| settings.var(k))?;
    eprintln!(
        "{:.0} s meeting, {:.0} s pipeline (ratio {ratio:.2}), peak RSS {:?} MB, {} topics, \
         later facts {}/{}",
        processed.meeting_s,
        processed.wall_s,
        processed.peak_rss_mb,
        topics.len(),
        count(&carried),
        carried.len()
    );

    let mut md = format!(
        "# A long meeting, end to end\n\n{}; {}; release build; `just bench-long`.\n\n\
         `reflow process` on a {:.0}-minute meeting of {} participants (`scripts/meeting.py long \
         {minutes}`: the evaluation set's meetings {} one after the other, six espeak-ng voices; \
         each track starts when its participant joined: {}; a participant's track ends after \
         their last line), against a dev server the benchmark starts; embedded backends: \
         transcription `{}`, LLM `{}`. Peak RSS is `/usr/bin/time -v`'s maximum resident set \
         size of the `reflow process` process (models loaded in it).\n\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        machine(),
        processed.meeting_s / 60.0,
        composed.speakers.len(),
        composed.parts.join(", "),
        composed
            .speakers
            .iter()
            .map(|s| format!("{} at {:.0} s", s.name, s.joins_at))
            .collect::<Vec<_>>()
            .join(", "),
        settings
            .var("TRANSCRIPT_MODEL")
            .unwrap_or_else(|| "base".into()),
        llm.backend_name(),
    );
    md.push_str(&format!(
        "long_peak_rss_mb: {}\nlong_ratio: {ratio:.2}  ({:.0} s of pipeline for {:.0} s of \
         meeting)\nlong_steps_timed_out: {over}\nlong_topics: {}\n\
         long_later_half_facts_in_summary: {}/{}  (facts of {}, heard after the midpoint; \
         {}/{} in the transcript)\n",
        processed
            .peak_rss_mb
            .map_or("unmeasured".to_owned(), |m| format!("{m:.0}")),
        processed.wall_s,
        processed.meeting_s,
        topics.len(),
        count(&carried),
        carried.len(),
        composed.closing.join(", "),
        count(&heard),
        heard.len(),
    ));
    md.push_str(
        "\n## Steps against their timeouts\n\n| step | members | longest attempt s | \
         start-to-close s | headroom | retried | timed out | seconds (members summed) |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for t in &times {
        let summed = costs
            .iter()
            .find(|c| c.step == t.step)
            .map_or(0.0, |c| c.time_s);
        md.push_str(&format!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {summed:.1} |\n",
            t.step,
            t.members,
            t.longest_s,
            t.timeout_s,
            if t.timeout_s > 0 {
                format!("{:.0} %", 100.0 * (1.0 - t.longest_s / t.timeout_s as f64))
            } else {
                "–".to_owned()
            },
            t.retried,
            t.timed_out
        ));
    }
    md.push_str(&format!("\n## Topics ({})\n\n", topics.len()));
    for t in &topics {
        md.push_str(&format!("- {t}\n"));
    }
    md.push_str("\n## The later half's facts (checked: in the summary)\n\n");
    for ((f, ok), heard) in composed.later_facts.iter().zip(&carried).zip(&heard) {
        md.push_str(&format!(
            "- [{}] {}{}\n",
            if *ok { "x" } else { " " },
            f.fact,
            if *heard { "" } else { " — *not transcribed*" }
        ));
    }
    md.push_str(&format!("\n```markdown\n{}\n```\n", summary.trim()));
    cli.write_results("long.md", &md)
}
