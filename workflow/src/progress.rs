//! The step table a running pipeline answers the `progress` query with.
//!
//! One [`StepRow`] per declared step, in declared order; a fan-out step holds one member row
//! per item. The interpreter updates it at every transition it sees (scheduled, completed,
//! failed, skipped); attempt numbers of retries come from the `step_attempt` signal the
//! worker's activity interceptor sends (`activities::attempts`), because Temporal does not
//! tell a workflow about an attempt until the activity closes.

use serde::{Deserialize, Serialize};

/// State of one step or member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started: waiting for its `needs`.
    Pending,
    /// Scheduled or executing (including retry backoff).
    Running,
    /// Finished successfully.
    Completed,
    /// Failed for good (for an `optional` step the run went on).
    Failed,
    /// Not run: its `when` was false, or the run failed before it could start.
    Skipped,
}

impl StepStatus {
    /// Whether the step will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepStatus::Completed | StepStatus::Failed | StepStatus::Skipped
        )
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    /// Step id, or `{id}[{index}]` for a member.
    pub id: String,
    /// Activity type or child workflow type.
    pub runs: String,
    /// Activity id (activities) for matching attempt reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<String>,
    /// Child workflow id (children).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_workflow_id: Option<String>,
    /// Current state.
    pub status: StepStatus,
    /// Current (or last) attempt, 0 before the first.
    pub attempt: u32,
    /// The step's `maximum_attempts` (0 = unlimited).
    pub max_attempts: u32,
    /// Whether the step is `optional`.
    #[serde(default)]
    pub optional: bool,
    /// Workflow time of scheduling, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Workflow time of the terminal transition, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Last error: the final one when failed, the last retried one while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Fan-out members, in item order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<StepRow>,
    /// The table of the child workflow this row started, as the child last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<Box<Progress>>,
}

/// Overall state of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still working.
    #[default]
    Running,
    /// All required steps completed.
    Completed,
    /// A required step failed.
    Failed,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Progress {
    /// Workflow type.
    pub pipeline: String,
    /// Definition version.
    pub version: u32,
    /// Definition hash.
    pub pipeline_hash: String,
    /// Run state.
    pub status: RunStatus,
    /// Rows, in declared order.
    pub steps: Vec<StepRow>,
    /// Bumped on every change; a child reports its table to its parent when it moves.
    #[serde(skip)]
    pub revision: u64,
    /// Set when the interpreter returned (successfully or not).
    #[serde(skip)]
    pub finished: bool,
}

/// A child workflow's table, signalled to its parent on every change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildProgress {
    /// The child's workflow id.
    pub workflow_id: String,
    /// Its table.
    pub progress: Progress,
}

/// What the activity interceptor reports when an attempt starts or fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptReport {
    /// Activity id of the attempt.
    pub activity_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The attempt's failure, when reporting one.
    #[serde(default)]
    pub error: Option<String>,
}

impl Progress {
    /// The row with this id (members are addressed as `{id}[{index}]`).
    pub fn row_mut(&mut self, step: &str, member: Option<usize>) -> Option<&mut StepRow> {
        let row = self.steps.iter_mut().find(|r| r.id == step)?;
        match member {
            None => Some(row),
            Some(i) => row.members.get_mut(i),
        }
    }

    /// Apply an attempt report to the row running that activity. Reports for attempts older
    /// than what the row shows, or for rows already terminal, are ignored (signals may
    /// arrive after the activity closed).
    pub fn record_attempt(&mut self, report: &AttemptReport) {
        self.revision += 1;
        for row in self.steps.iter_mut() {
            if apply(row, report) {
                return;
            }
            for m in row.members.iter_mut() {
                if apply(m, report) {
                    return;
                }
            }
        }
    }

    /// Store a child's table in the row (step or member) that started it.
    pub fn record_child(&mut self, report: ChildProgress) {
        self.revision += 1;
        let id = Some(report.workflow_id.as_str());
        for row in self.steps.iter_mut() {
            let target = if row.child_workflow_id.as_deref() == id {
                Some(row)
            } else {
                row.members
                    .iter_mut()
                    .find(|m| m.child_workflow_id.as_deref() == id)
            };
            if let Some(r) = target {
                r.child = Some(Box::new(report.progress));
                return;
            }
        }
    }

    /// Every row, members included, depth first.
    pub fn all_rows(&self) -> impl Iterator<Item = &StepRow> {
        self.steps
            .iter()
            .flat_map(|r| std::iter::once(r).chain(r.members.iter()))
    }
}

fn apply(row: &mut StepRow, report: &AttemptReport) -> bool {
    if row.activity_id.as_deref() != Some(report.activity_id.as_str()) {
        return false;
    }
    if row.status.is_terminal() || report.attempt < row.attempt {
        return true;
    }
    row.attempt = report.attempt;
    if let Some(e) = &report.error {
        row.error = Some(format!("attempt {}: {e}", report.attempt));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, activity: &str) -> StepRow {
        StepRow {
            id: id.into(),
            runs: "x".into(),
            activity_id: Some(activity.into()),
            child_workflow_id: None,
            status: StepStatus::Running,
            attempt: 1,
            max_attempts: 3,
            optional: false,
            started_at: None,
            finished_at: None,
            error: None,
            members: vec![],
            child: None,
        }
    }

    #[test]
    fn attempt_reports_reach_members_and_never_go_back() {
        let mut parent = row("fan", "none");
        parent.members = vec![row("fan[0]", "fan_0"), row("fan[1]", "fan_1")];
        let mut p = Progress {
            steps: vec![row("a", "a"), parent],
            ..Default::default()
        };
        p.record_attempt(&AttemptReport {
            activity_id: "fan_1".into(),
            attempt: 2,
            error: Some("boom".into()),
        });
        assert_eq!(p.steps[1].members[1].attempt, 2);
        assert_eq!(
            p.steps[1].members[1].error.as_deref(),
            Some("attempt 2: boom")
        );
        p.record_attempt(&AttemptReport {
            activity_id: "fan_1".into(),
            attempt: 1,
            error: None,
        });
        assert_eq!(p.steps[1].members[1].attempt, 2);
        assert_eq!(p.steps[0].attempt, 1);
    }
}
