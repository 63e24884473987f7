//! The evaluation set (`eval/meetings/`, `eval/README.md`) through `reflow process`: each
//! meeting synthesized by `scripts/meeting.py`, processed as a user would, and what it
//! published — `summary.md`, the topics the command prints, `transcript.txt` — scored by
//! [`reflow_tests::eval`]; the ready ratios come from the run's history (when
//! `merge_transcripts` and `finalize` completed, over the meeting's length).
//!
//! What `e2e-bench` and `long-bench` share to run `reflow process` as a user does: a dev server
//! ([`dev_server`]), [`process`] (wall time and peak resident memory), and reading what it
//! printed and wrote ([`printed_topics`], [`spoken`]).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use reflow_tests::eval::{Meeting, Published, Scores, median, score};

/// One meeting of the set, processed and scored.
pub struct EvalRun {
    /// The meeting.
    pub meeting: Meeting,
    /// Its length, seconds.
    pub meeting_s: f64,
    /// `reflow process`'s wall time, seconds.
    pub wall_s: f64,
    /// From the run's start to `merge_transcripts` done, over the meeting's length.
    pub transcript_ready_ratio: f64,
    /// From the run's start to `finalize` done, over the meeting's length.
    pub summary_ready_ratio: f64,
    /// The scores.
    pub scores: Scores,
    /// `summary.md` as written.
    pub summary: String,
}

/// `scripts/meeting.py`.
pub fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/meeting.py")
}

/// Synthesize, process and score the meeting `name`.
pub async fn run(
    reflow: &Path,
    client: &temporalio_client::Client,
    address: &str,
    name: &str,
    work: &Path,
) -> Result<EvalRun> {
    let meeting = Meeting::load(name)?;
    let dir = work.join(format!("eval-{name}"));
    let synth = Command::new("python3")
        .arg(script())
        .args(["synth", name])
        .arg(&dir)
        .output()
        .context("running scripts/meeting.py synth")?;
    anyhow::ensure!(
        synth.status.success(),
        "meeting.py synth {name}: {}",
        String::from_utf8_lossy(&synth.stderr)
    );
    let processed = process(
        reflow,
        &dir,
        address,
        &work.join(format!("data-{name}")),
        "warn",
    )?;
    let (out, wall_s, meeting_s) = (&processed.out, processed.wall_s, processed.meeting_s);
    let summary = std::fs::read_to_string(out.join("summary.md"))?;
    let mut published = parse_summary(&summary);
    published.topics = printed_topics(&processed.stdout);
    published.transcript = spoken(&std::fs::read_to_string(out.join("transcript.txt"))?);
    let scores = score(&meeting, &published)?;

    let history = reflow::history::load(client, &reflow::local::run_of(&dir)?).await?;
    let done_at = |step: &str| {
        history
            .steps
            .iter()
            .filter(|s| s.activity_type == step)
            .filter_map(|s| s.close.as_ref().map(|c| c.at_ms()))
            .max()
            .with_context(|| format!("{name}: no {step} in the run's history"))
    };
    let ratio = |at: i64| (at - history.start_ms) as f64 / 1000.0 / meeting_s;
    Ok(EvalRun {
        transcript_ready_ratio: ratio(done_at("merge_transcripts")?),
        summary_ready_ratio: ratio(done_at("finalize")?),
        meeting,
        meeting_s,
        wall_s,
        scores,
        summary,
    })
}

/// A meeting directory after `reflow process`.
pub struct Processed {
    /// Where it wrote `summary.md`, `transcript.txt` and `transcript.vtt`.
    pub out: std::path::PathBuf,
    /// What it printed.
    pub stdout: String,
    /// Its wall time, seconds.
    pub wall_s: f64,
    /// The meeting's length (`recording.json`'s `duration_s`), seconds.
    pub meeting_s: f64,
    /// The `reflow process` process's peak resident memory (`/usr/bin/time`'s maximum resident
    /// set size), MB; `None` without `/usr/bin/time`.
    pub peak_rss_mb: Option<f64>,
}

/// The command line `e2e-bench` and `long-bench` share: `--reflow PATH` (required),
/// `--results DIR` (else the report goes to stdout), `--work DIR` (kept; else a temporary
/// directory), and the benchmark's own flags ([`Cli::value`], [`Cli::has`]).
pub struct Cli {
    args: Vec<String>,
    /// The `reflow` binary.
    pub reflow: std::path::PathBuf,
    /// Where the meetings, outputs and state go.
    pub work: std::path::PathBuf,
    results: Option<std::path::PathBuf>,
    _temp: tempfile::TempDir,
}

impl Cli {
    /// This process's arguments.
    pub fn parse() -> Result<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1).cloned())
        };
        let reflow = value("--reflow").context("--reflow PATH")?.into();
        let results = value("--results").map(Into::into);
        let temp = tempfile::tempdir()?;
        let work = value("--work").map_or_else(|| temp.path().to_owned(), Into::into);
        std::fs::create_dir_all(&work)?;
        Ok(Cli {
            args,
            reflow,
            work,
            results,
            _temp: temp,
        })
    }

    /// The value after `flag`.
    pub fn value(&self, flag: &str) -> Option<String> {
        self.args
            .iter()
            .position(|a| a == flag)
            .and_then(|i| self.args.get(i + 1).cloned())
    }

    /// Every value after a `flag` given more than once.
    pub fn values(&self, flag: &str) -> Vec<String> {
        self.args
            .windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    /// Whether `flag` was given.
    pub fn has(&self, flag: &str) -> bool {
        self.args.iter().any(|a| a == flag)
    }

    /// Write the report `md` as `name` into the results directory (else print it).
    pub fn write_results(&self, name: &str, md: &str) -> Result<()> {
        match &self.results {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                std::fs::write(dir.join(name), md)?;
            }
            None => print!("{md}"),
        }
        Ok(())
    }
}

/// A Temporal dev server in `work/temporal` for `reflow process` runs (the benchmarks do not
/// count its start-up), a client of it, and the settings `reflow` reads.
pub async fn dev_server(
    work: &Path,
) -> Result<(
    reflow::temporal::DevServer,
    temporalio_client::Client,
    reflow::settings::Settings,
)> {
    let settings = reflow::settings::Settings::load(None)?;
    let server = reflow::temporal::DevServer::start(reflow::temporal::dev_server_options(
        &settings.temporal_cli,
        &work.join("temporal"),
        0,
        None,
    ))
    .await?;
    let client = reflow::temporal::connect_with(
        &server.address,
        "default",
        std::time::Duration::from_secs(20),
        settings.data_converter()?,
    )
    .await?;
    Ok((server, client, settings))
}

/// Run `reflow process` on the meeting in `dir` as a user would (outputs in
/// `dir/reflow-output`, what it printed in `dir/reflow.stdout`, its log in `dir/reflow.log` at
/// `rust_log`), against the dev server at `address`, keeping its state in `data`; under
/// `/usr/bin/time` when there is one (its report in `dir/reflow.time`).
pub fn process(
    reflow: &Path,
    dir: &Path,
    address: &str,
    data: &Path,
    rust_log: &str,
) -> Result<Processed> {
    let out = dir.join("reflow-output");
    let log = dir.join("reflow.log");
    let time = Path::new("/usr/bin/time");
    let mut command = if time.exists() {
        let mut c = Command::new(time);
        c.arg("-v")
            .arg("-o")
            .arg(dir.join("reflow.time"))
            .arg(reflow);
        c
    } else {
        Command::new(reflow)
    };
    let started = std::time::Instant::now();
    let run = command
        .arg("process")
        .arg(dir)
        .args(["--http", "127.0.0.1:0", "--out"])
        .arg(&out)
        .env("TEMPORAL_ADDRESS", address)
        .env("REFLOW_DATA_DIR", data)
        .env("RUST_LOG", rust_log)
        .stderr(std::fs::File::create(&log)?)
        .output()
        .context("running reflow process")?;
    let wall_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        run.status.success(),
        "reflow process failed on {} (its log: {})",
        dir.display(),
        log.display()
    );
    std::fs::write(dir.join("reflow.stdout"), &run.stdout)?;
    processed(dir, Some(wall_s))
}

/// What [`process`] left in `dir` (`reflow-output/`, `reflow.stdout`, `/usr/bin/time`'s
/// `reflow.time`), read back; the wall time is `wall_s`, else `reflow.time`'s.
pub fn processed(dir: &Path, wall_s: Option<f64>) -> Result<Processed> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        duration_s: f64,
    }
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(dir.join("recording.json"))?)?;
    let report = std::fs::read_to_string(dir.join("reflow.time")).unwrap_or_default();
    let field = |name: &str| {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    let peak_rss_mb = field("Maximum resident set size (kbytes):")
        .and_then(|kb| Some(kb.parse::<f64>().ok()? / 1024.0));
    // `h:mm:ss` or `m:ss.ss`.
    let elapsed = field("Elapsed (wall clock) time (h:mm:ss or m:ss):").and_then(|t| {
        t.split(':')
            .map(|p| p.parse::<f64>().ok())
            .try_fold(0.0, |acc, p| Some(acc * 60.0 + p?))
    });
    Ok(Processed {
        out: dir.join("reflow-output"),
        stdout: std::fs::read_to_string(dir.join("reflow.stdout"))?,
        wall_s: wall_s
            .or(elapsed)
            .context("no wall time: reflow.time is missing")?,
        meeting_s: manifest.duration_s,
        peak_rss_mb,
    })
}

/// `summary.md` (`# Title`, the long summary, then `# Decisions` and `# Next steps` lists) as
/// [`Published`] (next steps keep their `(owner, deadline)` suffix in the task's text).
pub fn parse_summary(md: &str) -> Published {
    let (title, rest) = md.split_once('\n').unwrap_or((md, ""));
    let section = |name: &str| -> Vec<String> {
        rest.split(&format!("\n# {name}\n"))
            .nth(1)
            .map(|s| s.split("\n# ").next().unwrap_or(s))
            .unwrap_or("")
            .lines()
            .filter_map(|l| l.strip_prefix("- "))
            .map(str::to_owned)
            .collect()
    };
    let end = ["\n# Decisions\n", "\n# Next steps\n"]
        .iter()
        .filter_map(|h| rest.find(h))
        .min()
        .unwrap_or(rest.len());
    Published {
        title: title.trim_start_matches('#').trim().to_owned(),
        long_summary: rest[..end].trim().to_owned(),
        decisions: section("Decisions"),
        next_steps: section("Next steps")
            .into_iter()
            .map(|t| (t, None))
            .collect(),
        ..Published::default()
    }
}

/// The topics `reflow process` prints (`Topics:` then `  [mm:ss] title` lines).
pub fn printed_topics(stdout: &str) -> Vec<String> {
    stdout
        .split("\nTopics:\n")
        .nth(1)
        .unwrap_or("")
        .lines()
        .take_while(|l| l.starts_with("  ["))
        .filter_map(|l| l.split_once("] ").map(|(_, t)| t.trim().to_owned()))
        .collect()
}

/// The words of `transcript.txt` (`[mm:ss] Name: text` lines) without times and names.
pub fn spoken(transcript: &str) -> String {
    transcript
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
        .filter_map(|l| l.split_once(": ").map(|(_, text)| text))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The evaluation set's section of `e2e.md`: one row per meeting, then the medians over the
/// held-out half and the tuning half as `key: value` lines.
pub fn report(runs: &[EvalRun]) -> String {
    let f = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.2}"));
    let mut md = format!(
        "\n## The evaluation set\n\n`eval/meetings/` (eval/README.md): each meeting synthesized \
         by `scripts/meeting.py`, then `reflow process` as above; scored by \
         `reflow_tests::eval`.\n\neval_meetings: {}\n\n\
         | meeting | split | minutes | recap recall | summary recall | owners | invented | \
         topics (scripted) | paragraph overlap | copied | transcript ready | summary ready |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        runs.len()
    );
    for r in runs {
        let s = &r.scores;
        let mut invented = s.invented_facts.clone();
        if s.invented_decisions > 0 {
            invented.push(format!("{} decisions/steps", s.invented_decisions));
        }
        md.push_str(&format!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} ({}) | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            r.meeting.name,
            if r.meeting.held_out() {
                "held out"
            } else {
                "tuning"
            },
            r.meeting_s / 60.0,
            f(s.recap_fact_recall),
            f(s.summary_fact_recall),
            f(s.owner_accuracy),
            if invented.is_empty() {
                "0".to_owned()
            } else {
                invented.join(", ")
            },
            s.topic_count.0,
            s.topic_count.1,
            s.paragraph_overlap,
            s.copied_share,
            r.transcript_ready_ratio,
            r.summary_ready_ratio,
        ));
    }
    md.push('\n');
    for (half, held) in [("held_out", true), ("tuning", false)] {
        let of = |pick: &dyn Fn(&EvalRun) -> Option<f64>| {
            median(
                runs.iter()
                    .filter(|r| r.meeting.held_out() == held)
                    .filter_map(pick)
                    .collect(),
            )
        };
        for (key, pick) in [
            (
                "recap_fact_recall",
                &(|r: &EvalRun| r.scores.recap_fact_recall) as &dyn Fn(&EvalRun) -> Option<f64>,
            ),
            ("summary_fact_recall", &|r| r.scores.summary_fact_recall),
            ("owner_accuracy", &|r| r.scores.owner_accuracy),
            ("copied_share", &|r| Some(r.scores.copied_share)),
            ("paragraph_overlap", &|r| Some(r.scores.paragraph_overlap)),
        ] {
            md.push_str(&format!("{key}_{half}: {}\n", f(of(pick))));
        }
    }
    let invented: usize = runs
        .iter()
        .map(|r| r.scores.invented_facts.len() + r.scores.invented_decisions)
        .sum();
    let topics_off = runs
        .iter()
        .filter(|r| r.scores.topic_count.0.abs_diff(r.scores.topic_count.1) > 1)
        .count();
    md.push_str(&format!(
        "invented_facts: {invented}\ntopic_count_off_by_more_than_one: {topics_off}\n\
         transcript_ready_ratio: {}\nsummary_ready_ratio: {}\n",
        f(median(
            runs.iter().map(|r| r.transcript_ready_ratio).collect()
        )),
        f(median(runs.iter().map(|r| r.summary_ready_ratio).collect())),
    ));
    for r in runs {
        md.push_str(&format!(
            "\n### {} ({}: {:.0} s of meeting, {:.0} s of `reflow process`)\n\n```markdown\n{}\n```\n",
            r.meeting.name,
            r.meeting.kind,
            r.meeting_s,
            r.wall_s,
            r.summary.trim()
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_md_parses_into_what_is_scored() {
        let md = "# Version two ships Monday\n\n# Quick recap\n\nShip it.\n\n# Summary\n\n\
                  **Release**\nMonday.\n\n# Decisions\n\n- Ship on Monday (Ana)\n\n\
                  # Next steps\n\n- Send the budget report (Ben, Wednesday)\n- Write job \
                  descriptions\n";
        let p = parse_summary(md);
        assert_eq!(p.title, "Version two ships Monday");
        assert_eq!(p.recap(), "Ship it.");
        assert_eq!(p.subject_paragraphs(), ["Monday."]);
        assert_eq!(p.decisions, ["Ship on Monday (Ana)"]);
        assert_eq!(p.next_steps.len(), 2);
        assert_eq!(p.next_steps[0].0, "Send the budget report (Ben, Wednesday)");
        let printed =
            "\nTitle\n\nRecap\n\nTopics:\n  [00:01] Release date\n  [01:30] Budget\n\nmore";
        assert_eq!(printed_topics(printed), ["Release date", "Budget"]);
    }
}
