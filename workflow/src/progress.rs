//! The step table a running pipeline answers the `progress` query with.
//!
//! One [`StepRow`] per declared step, in declared order; a fan-out step holds one member row
//! per item. The interpreter updates it at every transition it sees (scheduled, completed,
//! failed, skipped); attempt numbers of retries come from the `step_attempt` signal the
//! worker's activity interceptor sends (`reflow::attempts`), because Temporal does not
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

/// The `action` of a step result that says the step had nothing to do (Zulip or the
/// customer's webhook not configured): `{"action": "skipped", "reason": …}`.
pub const SKIPPED_ACTION: &str = "skipped";

/// Why a step with result `result` did nothing, if it says so ([`SKIPPED_ACTION`]): progress
/// reports such a step as skipped, the Conductor view as a SKIPPED row.
pub fn skipped_reason(result: &serde_json::Value) -> Option<&str> {
    (result["action"] == SKIPPED_ACTION)
        .then(|| result["reason"].as_str().unwrap_or("nothing to do"))
}

/// The status of a step that completed with `result`.
pub fn completed(result: &serde_json::Value) -> StepStatus {
    if skipped_reason(result).is_some() {
        StepStatus::Skipped
    } else {
        StepStatus::Completed
    }
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
    /// Completed by taking a previous run's result (a memoized run reused it; nothing ran).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
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

/// One `PIPELINE_PROGRESS` state (docs/contracts/events-and-api.md §4): the aggregate of every
/// activity reported under one `step_index`, in this run and its children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepState {
    /// `step_index`.
    pub step_index: u32,
    /// The activity type the state is about (the running, failed or last one).
    pub current_step: String,
    /// `pending`, `in_progress`, `completed` or `failed`.
    pub step_status: String,
    /// Highest attempt among the members (at least 1).
    pub attempt: u32,
    /// The members' `maximum_attempts` (0 = unlimited).
    pub max_attempts: u32,
    /// Workflow time the earliest member started, RFC 3339.
    pub started_at: Option<String>,
    /// `"2/4 done"`, the retried failure, the final error, `"skipped"`, or `"reused"` (a
    /// memoized run took every member's result from an earlier run).
    pub message: Option<String>,
}

/// Whether `new` says only that more members of the same fan-out are done than `last` (the
/// state last sent for its `step_index`) said, within the same sixteenth of them: such a
/// report can wait for the next sixteenth or any other change (status, attempt, an error),
/// and the user loses a digit of the count for that while. A fan-out of 16 members or fewer
/// moves on each member, so a meeting's tracks are counted one by one up to 16 participants.
pub fn only_a_count_within_a_sixteenth(last: &StepState, new: &StepState) -> bool {
    let count = |s: &StepState| -> Option<(usize, usize)> {
        let (done, of) = s
            .message
            .as_deref()?
            .strip_suffix(" done")?
            .split_once('/')?;
        Some((done.parse().ok()?, of.parse().ok()?))
    };
    let (Some((was, of)), Some((done, of_now))) = (count(last), count(new)) else {
        return false;
    };
    let stride = of.div_ceil(16).max(1);
    let same_but_count = StepState {
        message: last.message.clone(),
        ..new.clone()
    } == *last;
    same_but_count && of == of_now && done > was && done < of && done / stride == was / stride
}

/// Every activity row of a table and of its children's tables, depth first.
fn activity_rows<'a>(p: &'a Progress, out: &mut Vec<&'a StepRow>) {
    for row in &p.steps {
        let rows: Vec<&StepRow> = if row.members.is_empty() {
            vec![row]
        } else {
            row.members.iter().collect()
        };
        for r in rows {
            match &r.child {
                Some(child) => activity_rows(child, out),
                None if r.child_workflow_id.is_none() => out.push(r),
                None => {}
            }
        }
    }
}

/// The `PIPELINE_PROGRESS` state of every index named in `indexes` (activity type →
/// `step_index`), sorted by index. An index none of whose activities has a row yet (a child
/// not started) is `pending`.
pub fn step_states(
    progress: &Progress,
    indexes: &std::collections::BTreeMap<String, u32>,
) -> Vec<StepState> {
    let mut rows = Vec::new();
    activity_rows(progress, &mut rows);
    let mut wanted: Vec<u32> = indexes.values().copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
        .into_iter()
        .map(|index| {
            let members: Vec<&StepRow> = rows
                .iter()
                .copied()
                .filter(|r| indexes.get(&r.runs) == Some(&index))
                .collect();
            let first_name = indexes
                .iter()
                .find(|(_, i)| **i == index)
                .map(|(a, _)| a.clone())
                .unwrap_or_default();
            aggregate(index, first_name, &members)
        })
        .collect()
}

fn aggregate(index: u32, default_name: String, members: &[&StepRow]) -> StepState {
    let failed = members.iter().find(|r| r.status == StepStatus::Failed);
    let running = members.iter().find(|r| r.status == StepStatus::Running);
    let done = members
        .iter()
        .filter(|r| matches!(r.status, StepStatus::Completed | StepStatus::Skipped))
        .count();
    let all_skipped =
        !members.is_empty() && members.iter().all(|r| r.status == StepStatus::Skipped);
    let all_reused = !members.is_empty() && members.iter().all(|r| r.reused);
    let (status, current) = if let Some(f) = failed {
        ("failed", Some(*f))
    } else if !members.is_empty() && done == members.len() {
        ("completed", members.last().copied())
    } else if let Some(r) = running {
        ("in_progress", Some(*r))
    } else if done > 0 {
        ("in_progress", members.last().copied())
    } else {
        ("pending", None)
    };
    let retried = running.and_then(|r| r.error.clone());
    let message = match status {
        "failed" => failed.and_then(|f| f.error.clone()),
        "completed" if all_skipped => Some("skipped".to_owned()),
        "completed" if all_reused => Some("reused".to_owned()),
        "in_progress" => {
            let count = (members.len() > 1).then(|| format!("{done}/{} done", members.len()));
            match (retried, count) {
                (Some(e), Some(c)) => Some(format!("{e}; retrying; {c}")),
                (Some(e), None) => Some(format!("{e}; retrying")),
                (None, c) => c,
            }
        }
        _ => None,
    };
    StepState {
        step_index: index,
        current_step: current.map(|r| r.runs.clone()).unwrap_or(default_name),
        step_status: status.to_owned(),
        attempt: members.iter().map(|r| r.attempt).max().unwrap_or(0).max(1),
        max_attempts: members.iter().map(|r| r.max_attempts).max().unwrap_or(0),
        started_at: members.iter().filter_map(|r| r.started_at.clone()).min(),
        message,
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

    fn counted(done: usize, of: usize) -> StepState {
        StepState {
            step_index: 4,
            current_step: "transcribe_track".into(),
            step_status: if done == of {
                "completed"
            } else {
                "in_progress"
            }
            .into(),
            attempt: 1,
            max_attempts: 4,
            started_at: Some("2026-12-07T10:00:00Z".into()),
            message: (done < of).then(|| format!("{done}/{of} done")),
        }
    }

    #[test]
    fn a_large_fan_out_counts_by_sixteenths_and_a_meeting_s_tracks_one_by_one() {
        let within = only_a_count_within_a_sixteenth;
        // 64 members: a stride of 4.
        assert!(within(&counted(4, 64), &counted(5, 64)));
        assert!(within(&counted(4, 64), &counted(7, 64)));
        assert!(
            !within(&counted(7, 64), &counted(8, 64)),
            "the next sixteenth"
        );
        assert!(!within(&counted(62, 64), &counted(64, 64)), "completed");
        // Up to 16 members every member is sent.
        assert!(!within(&counted(1, 16), &counted(2, 16)));
        assert!(!within(&counted(2, 3), &counted(3, 3)));
        // Anything else than the count is sent.
        let mut retried = counted(5, 64);
        retried.attempt = 2;
        assert!(!within(&counted(4, 64), &retried));
        let mut failing = counted(5, 64);
        failing.message = Some("HTTP 503; retrying; 5/64 done".into());
        assert!(!within(&counted(4, 64), &failing));
    }

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
            reused: false,
        }
    }

    #[test]
    fn step_states_aggregate_members_children_and_retries() {
        let mut pad = row("pad", "none");
        pad.child_workflow_id = None;
        // Two children, each running pad_track; one done, one retrying.
        let child = |status, attempt, error: Option<&str>| {
            let mut r = row("pad_track", "pad_track");
            r.runs = "pad_track".into();
            r.status = status;
            r.attempt = attempt;
            r.error = error.map(Into::into);
            r.started_at = Some(format!("2026-01-01T00:00:0{attempt}Z"));
            let mut m = row("tracks[0]", "unused");
            m.activity_id = None;
            m.child_workflow_id = Some("c".into());
            m.child = Some(Box::new(Progress {
                steps: vec![r],
                ..Default::default()
            }));
            m
        };
        pad.members = vec![
            child(StepStatus::Completed, 1, None),
            child(StepStatus::Running, 2, Some("attempt 1: 503 from ASR")),
        ];
        let mut mix = row("mix", "mix");
        mix.runs = "mixdown_tracks".into();
        mix.status = StepStatus::Pending;
        let p = Progress {
            steps: vec![pad, mix],
            ..Default::default()
        };
        let indexes = [
            ("pad_track".to_owned(), 3),
            ("mixdown_tracks".to_owned(), 4),
            ("finalize".to_owned(), 10),
        ]
        .into_iter()
        .collect();
        let s = step_states(&p, &indexes);
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].step_index, s[0].step_status.as_str(), s[0].attempt),
            (3, "in_progress", 2)
        );
        assert_eq!(
            s[0].message.as_deref(),
            Some("attempt 1: 503 from ASR; retrying; 1/2 done")
        );
        assert_eq!(s[0].started_at.as_deref(), Some("2026-01-01T00:00:01Z"));
        assert_eq!(
            (s[1].step_status.as_str(), s[1].current_step.as_str()),
            ("pending", "mixdown_tracks")
        );
        assert_eq!(
            (s[2].step_status.as_str(), s[2].current_step.as_str()),
            ("pending", "finalize")
        );
    }

    #[test]
    fn a_step_a_memoized_run_reused_is_completed_and_says_reused() {
        // A reused fan-out step (no members), and a reused child step whose table lists the
        // child's steps reused (no child workflow).
        let mut pad = row("pad_track", "none");
        pad.runs = "pad_track".into();
        pad.status = StepStatus::Completed;
        pad.reused = true;
        let mut transcribe = row("transcribe_track", "none");
        transcribe.runs = "transcribe_track".into();
        transcribe.status = StepStatus::Completed;
        transcribe.reused = true;
        let mut tracks = row("process_tracks", "none");
        tracks.runs = "TrackProcessing".into();
        tracks.status = StepStatus::Completed;
        tracks.reused = true;
        tracks.child = Some(Box::new(Progress {
            steps: vec![transcribe],
            ..Default::default()
        }));
        let mut merge = row("merge", "merge");
        merge.runs = "merge_transcripts".into();
        merge.status = StepStatus::Completed;
        let p = Progress {
            steps: vec![pad, tracks, merge],
            ..Default::default()
        };
        let indexes = [
            ("pad_track".to_owned(), 3),
            ("transcribe_track".to_owned(), 6),
            ("merge_transcripts".to_owned(), 7),
        ]
        .into_iter()
        .collect();
        let states = step_states(&p, &indexes);
        let s: Vec<(&str, Option<&str>)> = states
            .iter()
            .map(|s| (s.step_status.as_str(), s.message.as_deref()))
            .collect();
        assert_eq!(
            s,
            [
                ("completed", Some("reused")),
                ("completed", Some("reused")),
                ("completed", None)
            ]
        );
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
