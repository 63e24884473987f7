//! FORK/JOIN groups of the view (docs/contracts/conductor-status.md §3.2): a fan-out's
//! [`Group`] of member rows, its FORK and JOIN rows ([`fork_join`]: a JOIN is `IN_PROGRESS`
//! until every member it waits for is terminal), and the order of all rows ([`order`]: by
//! scheduled time, a FORK right before its first member and its JOIN right after its last).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::http::conductor::model::{Task, TaskStatus};
use crate::http::conductor::rows::Owner;

/// One FORK/JOIN group under construction.
pub(super) struct Group {
    pub(super) fork: String,
    pub(super) join: String,
    /// Member refs the JOIN waits for, in order (known before their rows exist).
    pub(super) expected: Vec<String>,
    /// Every member is known (no more will be scheduled).
    pub(super) complete: bool,
    pub(super) members: Vec<Task>,
    /// When the fan-out started (its first child initiated, or when a fan-out over nothing
    /// was decided): the FORK's time while no member has a row.
    pub(super) at: i64,
}

/// The numeric suffix of a ref (`pad_track_10` → 10), for a natural order of members.
fn natural(reference: &str) -> (String, u64) {
    match reference.rsplit_once('_') {
        Some((head, n)) if n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() => {
            (head.to_owned(), n.parse().unwrap_or(0))
        }
        _ => (reference.to_owned(), 0),
    }
}

/// Sort the rows, wrap each group in its FORK and JOIN, number them. A group with no member
/// row yet (its children not started on it, or nothing to fan out over) is its FORK and JOIN,
/// side by side, at the time the fan-out started.
pub(super) fn order(owner: &Owner<'_>, plain: Vec<Task>, groups: Vec<Group>) -> Vec<Task> {
    let key = |t: &Task| {
        (
            t.scheduled_time,
            natural(&t.reference_task_name),
            t.retry_count,
        )
    };
    let mut all: Vec<(Task, Option<usize>)> = plain.into_iter().map(|t| (t, None)).collect();
    let mut joins: Vec<(Task, Task)> = Vec::new();
    // A memberless group's FORK row index in `all` → its JOIN.
    let mut lone: Vec<(String, Task)> = Vec::new();
    for (gi, g) in groups.into_iter().enumerate() {
        let (fork, join) = fork_join(owner, &g);
        if g.members.is_empty() {
            lone.push((fork.task_id.clone(), join.clone()));
            all.push((fork.clone(), None));
        }
        joins.push((fork, join));
        all.extend(g.members.into_iter().map(|t| (t, Some(gi))));
    }
    all.sort_by_key(|a| key(&a.0));
    let mut first: BTreeMap<usize, usize> = BTreeMap::new();
    let mut last: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, (_, g)) in all.iter().enumerate() {
        if let Some(g) = g {
            first.entry(*g).or_insert(i);
            last.insert(*g, i);
        }
    }
    let mut out = Vec::new();
    let mut joins: Vec<Option<(Task, Task)>> = joins.into_iter().map(Some).collect();
    let mut pending_joins: Vec<(usize, Task)> = Vec::new();
    for (i, (t, g)) in all.into_iter().enumerate() {
        if let Some(g) = g
            && first.get(&g) == Some(&i)
            && let Some((fork, join)) = joins[g].take()
        {
            out.push(fork);
            pending_joins.push((g, join));
        }
        let lone_join = match (&g, t.task_type.as_str()) {
            (None, "FORK") => lone
                .iter()
                .position(|(id, _)| *id == t.task_id)
                .map(|pos| lone.remove(pos).1),
            _ => None,
        };
        out.push(t);
        out.extend(lone_join);
        if let Some(g) = g
            && last.get(&g) == Some(&i)
            && let Some(pos) = pending_joins.iter().position(|(pg, _)| *pg == g)
        {
            out.push(pending_joins.remove(pos).1);
        }
    }
    for (i, t) in out.iter_mut().enumerate() {
        t.seq = i + 1;
    }
    out
}

/// The last row of every ref, in first-seen order.
pub(in crate::http::conductor) fn latest_per_ref(rows: &[Task]) -> Vec<&Task> {
    let mut latest: Vec<&Task> = Vec::new();
    for r in rows {
        match latest
            .iter_mut()
            .find(|l| l.reference_task_name == r.reference_task_name)
        {
            Some(l) if l.retry_count < r.retry_count => *l = r,
            Some(_) => {}
            None => latest.push(r),
        }
    }
    latest
}

/// The FORK and JOIN rows of a group (§3.2).
pub(super) fn fork_join(owner: &Owner<'_>, g: &Group) -> (Task, Task) {
    let latest = latest_per_ref(&g.members);
    let first = g
        .members
        .iter()
        .map(|m| m.scheduled_time)
        .min()
        .unwrap_or(g.at);
    let waiting = g
        .expected
        .iter()
        .any(|r| !latest.iter().any(|m| m.reference_task_name == *r));
    let all_terminal = !waiting && g.complete && latest.iter().all(|m| m.status.is_terminal());
    // A member that failed for good fails the JOIN; members cancelled with the run (and none
    // failed) cancel it.
    let any_failed = latest.iter().any(|m| m.status.is_failure());
    let status = if all_terminal && latest.iter().all(|m| m.status.is_successful()) {
        TaskStatus::Completed
    } else if !all_terminal && owner.run.is_running() {
        TaskStatus::InProgress
    } else if any_failed {
        TaskStatus::Failed
    } else {
        TaskStatus::Canceled
    };
    let end = if status.is_terminal() {
        latest.iter().map(|m| m.end_time).max().unwrap_or(first)
    } else {
        0
    };
    let defs: Vec<Value> = g
        .expected
        .iter()
        .map(|r| {
            latest
                .iter()
                .find(|m| m.reference_task_name == *r)
                .map_or(json!({"taskReferenceName": r}), |m| {
                    serde_json::to_value(&m.workflow_task).unwrap_or_default()
                })
        })
        .collect();
    let mut fork = owner.row("FORK", &g.fork, 1, TaskStatus::Completed);
    fork.scheduled_time = first;
    fork.start_time = first;
    fork.end_time = first;
    fork.update_time = first;
    fork.first_start_time = first;
    fork.input_data = json!({"forkedTasks": g.expected, "forkedTaskDefs": defs});
    let mut join = owner.row("JOIN", &g.join, 1, status);
    join.scheduled_time = first;
    join.start_time = first;
    join.end_time = end;
    join.update_time = end
        .max(first)
        .max(latest.iter().map(|m| m.update_time).max().unwrap_or(0));
    join.first_start_time = first;
    join.input_data = json!({"joinOn": g.expected});
    join.output_data = Value::Object(
        latest
            .iter()
            .map(|m| (m.reference_task_name.clone(), m.output_data.clone()))
            .collect(),
    );
    (fork, join)
}
