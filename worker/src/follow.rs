//! `reflow status <id> --follow`: one live progress bar per step (indicatif) until the run
//! ends, fed by the workflow's `progress` query.
//!
//! A step's bar counts its members (a plain step has one); the message shows the status, the
//! attempt while retrying, and the last error. Child workflows' own steps are shown under the
//! fan-out row that started them, as one line per child step type with its member count.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use temporalio_client::Client;
use workflow::StepStatus;
use workflow::progress::{Progress, RunStatus, StepRow};

use crate::runs::{self, RunError};

/// How often the table is re-read.
pub const POLL: Duration = Duration::from_millis(500);

/// One displayed line: done/total members and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Label (step id, or `  step id / child step`).
    pub label: String,
    /// Members finished.
    pub done: u64,
    /// Members in all.
    pub total: u64,
    /// Status text.
    pub message: String,
}

fn status_text(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Pending => "pending",
        StepStatus::Running => "running",
        StepStatus::Completed => "completed",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
    }
}

fn message(rows: &[&StepRow], own: StepStatus) -> String {
    let mut m = status_text(own).to_owned();
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

/// The lines for a table (pure; the renderer and its tests use it).
pub fn lines(p: &Progress) -> Vec<Line> {
    let mut out = Vec::new();
    for row in &p.steps {
        let members: Vec<&StepRow> = if row.members.is_empty() {
            vec![row]
        } else {
            row.members.iter().collect()
        };
        let done = members.iter().filter(|m| m.status.is_terminal()).count() as u64;
        out.push(Line {
            label: row.id.clone(),
            done,
            total: members.len() as u64,
            message: message(&members, row.status),
        });
        // Steps of child workflows, aggregated across the children.
        let mut by_step: BTreeMap<String, Vec<&StepRow>> = BTreeMap::new();
        for m in &members {
            if let Some(child) = &m.child {
                for r in &child.steps {
                    by_step.entry(r.id.clone()).or_default().push(r);
                }
            }
        }
        for (id, rows) in by_step {
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
                message: message(&rows, own),
            });
        }
    }
    out
}

/// Follow `workflow_id` until it ends; returns its final table.
pub async fn follow(client: &Client, workflow_id: &str) -> Result<Progress, RunError> {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{prefix:<28} [{bar:24}] {pos}/{len} {msg}")
        .expect("valid template")
        .progress_chars("=> ");
    let mut bars: Vec<ProgressBar> = Vec::new();
    loop {
        let p = runs::query_progress(client, workflow_id).await?;
        let ls = lines(&p);
        while bars.len() < ls.len() {
            let b = multi.add(ProgressBar::new(1).with_style(style.clone()));
            bars.push(b);
        }
        for (b, l) in bars.iter().zip(&ls) {
            b.set_prefix(l.label.clone());
            b.set_length(l.total.max(1));
            b.set_position(l.done);
            b.set_message(l.message.clone());
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
            let mut pad = row("pad", s);
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
        let l = lines(&p);
        assert_eq!(
            l[0],
            Line {
                label: "get".into(),
                done: 1,
                total: 1,
                message: "completed".into()
            }
        );
        assert_eq!((l[1].done, l[1].total), (1, 2));
        assert_eq!(l[2].label, "  tracks / pad");
        assert_eq!(l[2].message, "running · attempt 2/4 · attempt 1: 503");
    }
}
