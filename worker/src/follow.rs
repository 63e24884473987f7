//! `reflow status <id> --follow`: one live progress bar per step (indicatif) until the run
//! ends, fed by the workflow's `progress` query and, for the steps that are running, by their
//! heartbeat details on the server (`{done_s, total_s}`: how far a transcription or a mix is).
//!
//! A step's bar counts its members (a plain step has one), a running member by its fraction
//! done; the message shows the status with the percentage, the attempt while retrying, and
//! the last error. Child workflows' own steps are shown under the fan-out row that started
//! them, as one line per child step type with its member count. The table is queried only
//! when the run's history grew since the last query (a describe says its length), so a
//! meeting costs about one query per workflow task, not two a second.
//!
//! When stderr is not a terminal (a log file, CI), the bars are not drawn; each step prints
//! one line instead when it finishes, so the log of a run reads as its progress did.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use temporalio_client::{Client, UntypedWorkflow, WorkflowDescribeOptions};
use workflow::StepStatus;
use workflow::progress::{Progress, RunStatus, StepRow};

use crate::runs::{self, RunError, status_text};

/// How often the table is re-read.
pub const POLL: Duration = Duration::from_millis(500);

/// One displayed line: done/total members and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Label (step id, or `  step id / child step`).
    pub label: String,
    /// Members finished.
    pub done: u64,
    /// Members in all.
    pub total: u64,
    /// Fractions done of the running members, summed.
    pub running: f64,
    /// Status text.
    pub message: String,
}

/// The fraction done of running activities: (workflow id, activity id) → 0–1.
pub type Fractions = BTreeMap<(String, String), f64>;

/// Whether every row of a step took a previous run's result.
fn all_reused(rows: &[&StepRow]) -> bool {
    !rows.is_empty() && rows.iter().all(|r| r.reused)
}

/// The status text of a step whose rows are `rows` ([`status_text`]), with its progress,
/// attempt and last error.
fn message(rows: &[&StepRow], own: StepStatus, running: f64, reused: bool) -> String {
    let mut m = status_text(own, reused).to_owned();
    if own == StepStatus::Running && running > 0.0 {
        let done = rows.iter().filter(|r| r.status.is_terminal()).count() as f64;
        let percent = (100.0 * (done + running) / rows.len().max(1) as f64).floor();
        m.push_str(&format!(" · {percent}%"));
    }
    let attempt = rows.iter().map(|r| r.attempt).max().unwrap_or(0);
    let max = rows.iter().map(|r| r.max_attempts).max().unwrap_or(0);
    if attempt > 1 {
        m.push_str(&format!(
            " · attempt {attempt}/{}",
            if max == 0 {
                "∞".into()
            } else {
                max.to_string()
            }
        ));
    }
    if let Some(e) = rows.iter().rev().find_map(|r| r.error.as_deref()) {
        m.push_str(&format!(" · {e}"));
    }
    m
}

/// The summed fraction of `rows` that run and report one; `workflow_id` runs them.
fn running_fraction(rows: &[&StepRow], workflow_id: &str, fractions: &Fractions) -> f64 {
    rows.iter()
        .filter(|r| r.status == StepStatus::Running)
        .filter_map(|r| {
            let activity = r.activity_id.as_ref()?;
            fractions.get(&(workflow_id.to_owned(), activity.clone()))
        })
        .sum()
}

/// The lines for the table of run `workflow_id` (pure; the renderer and its tests use it).
pub fn lines(p: &Progress, workflow_id: &str, fractions: &Fractions) -> Vec<Line> {
    let mut out = Vec::new();
    for row in &p.steps {
        let members: Vec<&StepRow> = if row.members.is_empty() {
            vec![row]
        } else {
            row.members.iter().collect()
        };
        let done = members.iter().filter(|m| m.status.is_terminal()).count() as u64;
        let running = running_fraction(&members, workflow_id, fractions);
        out.push(Line {
            label: row.id.clone(),
            done,
            total: members.len() as u64,
            running,
            message: message(
                &members,
                row.status,
                running,
                row.reused || all_reused(&members),
            ),
        });
        // Steps of child workflows, aggregated across the children.
        let mut by_step: BTreeMap<String, Vec<(&StepRow, &str)>> = BTreeMap::new();
        for m in &members {
            if let (Some(child), Some(id)) = (&m.child, &m.child_workflow_id) {
                for r in &child.steps {
                    by_step.entry(r.id.clone()).or_default().push((r, id));
                }
            }
        }
        for (id, found) in by_step {
            let rows: Vec<&StepRow> = found.iter().map(|(r, _)| *r).collect();
            let running: f64 = found
                .iter()
                .map(|(r, child)| running_fraction(&[*r], child, fractions))
                .sum();
            let done = rows.iter().filter(|r| r.status.is_terminal()).count() as u64;
            let own = if rows.iter().any(|r| r.status == StepStatus::Failed) {
                StepStatus::Failed
            } else if rows.iter().any(|r| r.status == StepStatus::Running) {
                StepStatus::Running
            } else if done as usize == rows.len() {
                StepStatus::Completed
            } else {
                StepStatus::Pending
            };
            out.push(Line {
                label: format!("  {} / {id}", row.id),
                done,
                total: rows.len() as u64,
                running,
                message: message(&rows, own, running, all_reused(&rows)),
            });
        }
    }
    out
}

/// The fractions done the server holds for the running activities of `workflow_id` and of
/// its running children (their heartbeat details); what cannot be read is left out.
pub async fn fractions(client: &Client, workflow_id: &str, p: &Progress) -> Fractions {
    let mut runs = vec![workflow_id.to_owned()];
    for row in &p.steps {
        for m in row.members.iter().chain(std::iter::once(row)) {
            if m.status == StepStatus::Running
                && let Some(child) = &m.child_workflow_id
            {
                runs.push(child.clone());
            }
        }
    }
    let mut out = Fractions::new();
    for run in runs {
        let Ok(d) = client
            .get_workflow_handle::<UntypedWorkflow>(&run)
            .describe(WorkflowDescribeOptions::default())
            .await
        else {
            continue;
        };
        for a in &d.raw_description.pending_activities {
            let fraction = a
                .heartbeat_details
                .as_ref()
                .and_then(|d| d.payloads.first())
                .and_then(|p| {
                    serde_json::from_slice::<activities::heartbeat::Progress>(&p.data).ok()
                })
                .and_then(|p| p.fraction());
            if let Some(f) = fraction {
                out.insert((run.clone(), a.activity_id.clone()), f);
            }
        }
    }
    out
}

/// The lines of `ls` whose members all finished and that `printed` has not seen yet, as one
/// log line each (`[  12.3 s] transcribe_track 2/2 completed`); marks them printed.
pub fn finished(ls: &[Line], printed: &mut BTreeSet<String>, elapsed: Duration) -> Vec<String> {
    ls.iter()
        .filter(|l| l.total > 0 && l.done == l.total)
        .filter(|l| printed.insert(l.label.clone()))
        .map(|l| {
            format!(
                "[{:>7.1} s] {} {}/{} {}",
                elapsed.as_secs_f64(),
                l.label.trim_start(),
                l.done,
                l.total,
                l.message
            )
        })
        .collect()
}

/// The run's table: queried only when its history grew since the last query (a query is a
/// billed action; a describe, which says how long the history is, is not), else `last`'s.
async fn table(
    client: &Client,
    workflow_id: &str,
    last: &mut Option<(i64, Progress)>,
) -> Result<Progress, RunError> {
    let length = client
        .get_workflow_handle::<UntypedWorkflow>(workflow_id)
        .describe(WorkflowDescribeOptions::default())
        .await
        .ok()
        .and_then(|d| d.raw_description.workflow_execution_info)
        .map(|i| i.history_length);
    if let (Some(n), Some((seen, p))) = (length, last.as_ref())
        && n == *seen
    {
        return Ok(p.clone());
    }
    let p = runs::query_progress(client, workflow_id).await?;
    *last = length.map(|n| (n, p.clone()));
    Ok(p)
}

/// Follow `workflow_id` until it ends; returns its final table (queried only when its
/// history grew: [`table`]).
pub async fn follow(client: &Client, workflow_id: &str) -> Result<Progress, RunError> {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let log = (!std::io::stderr().is_terminal()).then(BTreeSet::new);
    let (mut log, started) = (log, Instant::now());
    let style = ProgressStyle::with_template("{prefix:<28} [{bar:24}] {msg}")
        .expect("valid template")
        .progress_chars("=> ");
    let mut bars: Vec<ProgressBar> = Vec::new();
    let mut last: Option<(i64, Progress)> = None;
    loop {
        let p = table(client, workflow_id, &mut last).await?;
        let ls = lines(&p, workflow_id, &fractions(client, workflow_id, &p).await);
        while bars.len() < ls.len() {
            let b = multi.add(ProgressBar::new(1).with_style(style.clone()));
            bars.push(b);
        }
        for (b, l) in bars.iter().zip(&ls) {
            b.set_prefix(l.label.clone());
            // Hundredths of a member, so a running member's fraction moves the bar.
            b.set_length(l.total.max(1) * 100);
            b.set_position(l.done * 100 + (l.running * 100.0) as u64);
            b.set_message(format!("{}/{} {}", l.done, l.total, l.message));
        }
        if let Some(printed) = log.as_mut() {
            for line in finished(&ls, printed, started.elapsed()) {
                eprintln!("{line}");
            }
        }
        if p.status != RunStatus::Running {
            for b in &bars {
                b.abandon();
            }
            return Ok(p);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, status: StepStatus) -> StepRow {
        StepRow {
            id: id.into(),
            runs: "x".into(),
            activity_id: None,
            child_workflow_id: None,
            status,
            attempt: 1,
            max_attempts: 4,
            optional: false,
            started_at: None,
            finished_at: None,
            error: None,
            members: vec![],
            child: None,
            reused: false,
        }
    }

    #[test]
    fn lines_count_members_show_retries_and_child_steps() {
        let mut fan = row("tracks", StepStatus::Running);
        for (i, s) in [StepStatus::Completed, StepStatus::Running]
            .into_iter()
            .enumerate()
        {
            let mut m = row(&format!("tracks[{i}]"), s);
            m.child_workflow_id = Some(format!("run-tracks-{i}"));
            let mut pad = row("pad", s);
            pad.activity_id = Some(format!("pad_{i}"));
            if s == StepStatus::Running {
                pad.attempt = 2;
                pad.error = Some("attempt 1: 503".into());
            }
            m.child = Some(Box::new(Progress {
                steps: vec![pad],
                ..Default::default()
            }));
            fan.members.push(m);
        }
        let p = Progress {
            steps: vec![row("get", StepStatus::Completed), fan],
            ..Default::default()
        };
        let l = lines(&p, "run", &Fractions::new());
        assert_eq!(
            l[0],
            Line {
                label: "get".into(),
                done: 1,
                total: 1,
                running: 0.0,
                message: "completed".into()
            }
        );
        assert_eq!((l[1].done, l[1].total), (1, 2));
        assert_eq!(l[2].label, "  tracks / pad");
        assert_eq!(l[2].message, "running · attempt 2/4 · attempt 1: 503");
        // The running member's heartbeat says it is 40% through: the child step shows 70%
        // (one of two done, the other 0.4), the line's bar moves by 0.4 of a member.
        let fractions = Fractions::from([(("run-tracks-1".to_owned(), "pad_1".to_owned()), 0.4)]);
        let l = lines(&p, "run", &fractions);
        assert_eq!(l[2].running, 0.4);
        assert_eq!(l[2].message, "running · 70% · attempt 2/4 · attempt 1: 503");
    }

    #[test]
    fn a_log_gets_one_line_per_step_when_it_finishes_and_never_again() {
        let mut fan = row("tracks", StepStatus::Running);
        fan.members = vec![
            row("tracks[0]", StepStatus::Completed),
            row("tracks[1]", StepStatus::Running),
        ];
        let mut p = Progress {
            steps: vec![row("get", StepStatus::Completed), fan],
            ..Default::default()
        };
        let mut printed = BTreeSet::new();
        let at = Duration::from_millis(1500);
        let first = finished(&lines(&p, "run", &Fractions::new()), &mut printed, at);
        assert_eq!(first, ["[    1.5 s] get 1/1 completed"]);
        assert!(
            finished(&lines(&p, "run", &Fractions::new()), &mut printed, at).is_empty(),
            "a finished step is printed once"
        );
        p.steps[1].status = StepStatus::Completed;
        p.steps[1].members[1].status = StepStatus::Completed;
        let later = Duration::from_secs(42);
        assert_eq!(
            finished(&lines(&p, "run", &Fractions::new()), &mut printed, later),
            ["[   42.0 s] tracks 2/2 completed"]
        );
    }

    #[test]
    fn a_reused_step_says_reused_not_completed() {
        let mut get = row("get", StepStatus::Completed);
        get.reused = true;
        // A fan-out whose members were all reused, with a child step reused in each.
        let mut fan = row("tracks", StepStatus::Completed);
        for i in 0..2 {
            let mut m = row(&format!("tracks[{i}]"), StepStatus::Completed);
            m.reused = true;
            m.child_workflow_id = Some(format!("run-tracks-{i}"));
            let mut pad = row("pad", StepStatus::Completed);
            pad.reused = true;
            m.child = Some(Box::new(Progress {
                steps: vec![pad],
                ..Default::default()
            }));
            fan.members.push(m);
        }
        // A step that ran.
        let ran = row("merge", StepStatus::Completed);
        let p = Progress {
            steps: vec![get, fan, ran],
            ..Default::default()
        };
        let messages: Vec<String> = lines(&p, "run", &Fractions::new())
            .into_iter()
            .map(|l| format!("{} {}", l.label, l.message))
            .collect();
        assert_eq!(
            messages,
            [
                "get reused",
                "tracks reused",
                "  tracks / pad reused",
                "merge completed"
            ]
        );
        let mut printed = BTreeSet::new();
        assert_eq!(
            finished(
                &lines(&p, "run", &Fractions::new()),
                &mut printed,
                Duration::from_secs(2)
            )[0],
            "[    2.0 s] get 1/1 reused"
        );
        // The table `reflow status` prints without --follow says the same.
        let table = crate::runs::render("run", &p);
        let status_of = |step: &str| {
            table
                .lines()
                .find(|l| l.split_whitespace().next() == Some(step))
                .and_then(|l| l.split_whitespace().nth(1))
                .map(str::to_owned)
        };
        assert_eq!(status_of("get").as_deref(), Some("reused"), "{table}");
        assert_eq!(status_of("pad").as_deref(), Some("reused"), "{table}");
        assert_eq!(status_of("merge").as_deref(), Some("completed"), "{table}");
    }
}
