//! What the drawing of a run shows of each step: its state, the attempt running or last run
//! and of how many, the type of its last failure, a fan-out's members, its duration, and
//! whether it lies on the finished run's critical path.
//!
//! [`critical_path`] is computed here from the steps' times and the declared `needs`: from
//! the step that finished last, back through the need that finished last, to a step with no
//! need; a child fan-out on that path continues into its child pipeline the same way.

use std::collections::BTreeMap;

use workflow::pipeline::{Graph, Pipeline, Run};

/// A step's state on the drawing of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NodeState {
    /// Not started.
    #[default]
    Pending,
    /// An attempt runs (or waits for a worker).
    Running,
    /// An attempt failed; the next one waits out its backoff.
    Retrying,
    /// Done.
    Completed,
    /// Failed for good (for an optional step: the run went on without it).
    Failed,
    /// Cancelled with its run.
    Cancelled,
    /// Not run, or ran with nothing to do: its condition was false, it had no items, it was
    /// not configured.
    Skipped,
}

impl NodeState {
    /// Its name, the node's `data-state`.
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Pending => "pending",
            NodeState::Running => "running",
            NodeState::Retrying => "retrying",
            NodeState::Completed => "completed",
            NodeState::Failed => "failed",
            NodeState::Cancelled => "cancelled",
            NodeState::Skipped => "skipped",
        }
    }

    /// Nothing more will happen to it.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            NodeState::Completed | NodeState::Failed | NodeState::Cancelled | NodeState::Skipped
        )
    }

    /// The state of a step from its members' (a step that is not a fan-out has one):
    /// failed if one failed, else running or retrying while one is, else cancelled if one
    /// was, else completed, or skipped when every member was; without members, pending
    /// while the run goes on and skipped once it ended.
    pub fn of_members(members: &[NodeState], run_ended: bool) -> NodeState {
        let any = |s: NodeState| members.contains(&s);
        if members.is_empty() {
            return if run_ended {
                NodeState::Skipped
            } else {
                NodeState::Pending
            };
        }
        if any(NodeState::Failed) {
            NodeState::Failed
        } else if any(NodeState::Retrying) {
            NodeState::Retrying
        } else if any(NodeState::Running) {
            NodeState::Running
        } else if any(NodeState::Pending) {
            if run_ended {
                NodeState::Cancelled
            } else {
                NodeState::Running
            }
        } else if any(NodeState::Cancelled) {
            NodeState::Cancelled
        } else if members.iter().all(|m| *m == NodeState::Skipped) {
            NodeState::Skipped
        } else {
            NodeState::Completed
        }
    }
}

/// An attempt number, of how many the retry policy allows (`of` 0: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1-based.
    pub n: u32,
    /// The maximum (0: unlimited).
    pub of: u32,
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.of == 0 {
            write!(f, "{}", self.n)
        } else {
            write!(f, "{}/{}", self.n, self.of)
        }
    }
}

/// One member of a step: the step itself, a fan-out's item, or one child run's step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Member {
    /// Its name (`transcribe_track_1`, `pad_track_0`).
    pub label: String,
    /// Its state.
    pub state: NodeState,
    /// The attempt running or last run.
    pub attempt: Option<Attempt>,
    /// The type of the last failure (`HttpError`, `timeout: HEARTBEAT`), if an attempt
    /// failed.
    pub error: Option<String>,
    /// Percent done while running, from its heartbeat.
    pub percent: Option<u32>,
    /// When its first attempt started and its last one ended (epoch ms, 0: not yet).
    pub start_ms: i64,
    /// See `start_ms`.
    pub end_ms: i64,
}

/// A step in a run, as drawn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeRun {
    /// Its state, from its members'.
    pub state: NodeState,
    /// Its members (one for a plain step).
    pub members: Vec<Member>,
    /// A fan-out (drawn as `k of n done`, expandable to its members).
    pub fan_out: bool,
    /// On the finished run's critical path.
    pub critical: bool,
    /// The need the critical path reaches it through (its edge is drawn on the path).
    pub critical_via: Option<String>,
    /// A memoized run took its result from an earlier run: completed, nothing ran.
    pub reused: bool,
}

impl NodeRun {
    /// A step from its members.
    pub fn new(members: Vec<Member>, fan_out: bool, run_ended: bool) -> NodeRun {
        let states: Vec<NodeState> = members.iter().map(|m| m.state).collect();
        NodeRun {
            state: NodeState::of_members(&states, run_ended),
            members,
            fan_out,
            critical: false,
            critical_via: None,
            reused: false,
        }
    }

    /// The step was reused by a memoized run: completed without running.
    pub fn mark_reused(&mut self) {
        self.state = NodeState::Completed;
        self.reused = true;
    }

    /// The first start of a member (0: none started).
    pub fn start_ms(&self) -> i64 {
        self.members
            .iter()
            .map(|m| m.start_ms)
            .filter(|t| *t > 0)
            .min()
            .unwrap_or(0)
    }

    /// The last end of a member, once the step is terminal (0 otherwise).
    pub fn end_ms(&self) -> i64 {
        if !self.state.is_terminal() {
            return 0;
        }
        self.members.iter().map(|m| m.end_ms).max().unwrap_or(0)
    }

    /// How long it took, first start to last end, once terminal.
    pub fn duration_ms(&self) -> Option<i64> {
        let (s, e) = (self.start_ms(), self.end_ms());
        (s > 0 && e >= s).then_some(e - s)
    }

    /// The member whose attempt is the furthest along: what a plain step shows.
    fn headline(&self) -> Option<&Member> {
        self.members
            .iter()
            .filter(|m| m.state == self.state)
            .max_by_key(|m| m.attempt.map_or(0, |a| a.n))
    }

    /// The attempt shown on the node: a running or retrying step's highest attempt, or a
    /// step whose attempts did not all succeed at once.
    pub fn attempt(&self) -> Option<Attempt> {
        let a = self.headline()?.attempt?;
        (matches!(self.state, NodeState::Running | NodeState::Retrying) || a.n > 1).then_some(a)
    }

    /// The last failure's type: of the member retrying or failed, else of any member that
    /// failed an attempt.
    pub fn error(&self) -> Option<&str> {
        self.headline()
            .and_then(|m| m.error.as_deref())
            .or_else(|| self.members.iter().find_map(|m| m.error.as_deref()))
    }

    /// `(done, of)` for a fan-out.
    pub fn done(&self) -> Option<(usize, usize)> {
        self.fan_out.then(|| {
            (
                self.members
                    .iter()
                    .filter(|m| m.state.is_terminal())
                    .count(),
                self.members.len(),
            )
        })
    }

    /// The status line under the node's label: `running · attempt 2/4 · 40 %`, `retrying
    /// after HttpError`, `2 of 3 done`, `completed in 4.2 s`, `reused from an earlier run`,
    /// `failed: HttpError`, `skipped`.
    pub fn status_line(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        match self.state {
            NodeState::Retrying => parts.push(format!(
                "retrying after {}",
                self.error().unwrap_or("an error")
            )),
            NodeState::Failed => parts.push(match self.error() {
                Some(e) => format!("failed: {e}"),
                None => "failed".into(),
            }),
            NodeState::Completed if self.reused => parts.push("reused from an earlier run".into()),
            NodeState::Completed => match self.duration_ms() {
                Some(d) => parts.push(format!("completed in {}", seconds(d))),
                None => parts.push("completed".into()),
            },
            s => parts.push(s.name().into()),
        }
        if let Some((k, n)) = self.done()
            && !(self.state.is_terminal() && k == n)
        {
            parts.push(format!("{k} of {n} done"));
        }
        if let Some(a) = self.attempt() {
            parts.push(format!("attempt {a}"));
        }
        if self.state == NodeState::Running
            && let Some(p) = self.headline().and_then(|m| m.percent)
        {
            parts.push(format!("{p} %"));
        }
        parts.join(" · ")
    }
}

/// `40 ms`, `4.2 s`, `12 s`, `3 m 05 s`.
pub fn seconds(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    if ms < 1000 {
        format!("{ms} ms")
    } else if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 60.0 {
        format!("{s:.0} s")
    } else {
        let whole = s.round() as i64;
        format!("{} m {:02} s", whole / 60, whole % 60)
    }
}

/// A run's steps by (graph name, step id); a step not in it is drawn without a state.
pub type Runs = BTreeMap<(String, String), NodeRun>;

/// Marks the steps on the critical path of a finished run: in the main graph from the step
/// that ended last back through, at each step, the need that ended last; where that path
/// crosses a child fan-out, through its child pipeline the same way. Does nothing while a
/// step of the main graph still runs.
pub fn critical_path(p: &Pipeline, runs: &mut Runs) {
    let running = p.main.steps.iter().any(|s| {
        runs.get(&(p.main.name.clone(), s.id.clone()))
            .is_some_and(|r| !r.state.is_terminal())
    });
    if running {
        return;
    }
    for step in mark(&p.main, runs) {
        if let Some(s) = p.main.steps.iter().find(|s| s.id == step)
            && let Run::Child(name) = &s.run
            && let Some(child) = p.children.get(name)
        {
            mark(child, runs);
        }
    }
}

/// Marks the critical path of one graph; returns its steps, last first. Steps that did
/// nothing (skipped) set no length and are left out.
fn mark(g: &Graph, runs: &mut Runs) -> Vec<String> {
    let end = |runs: &Runs, id: &str| {
        runs.get(&(g.name.clone(), id.to_owned()))
            .filter(|r| r.state != NodeState::Skipped)
            .map_or(0, NodeRun::end_ms)
    };
    let mut path = Vec::new();
    let mut at = g
        .steps
        .iter()
        .filter(|s| end(runs, &s.id) > 0)
        .max_by_key(|s| end(runs, &s.id));
    while let Some(s) = at {
        path.push(s.id.clone());
        at = s
            .needs
            .iter()
            .filter_map(|n| g.steps.iter().find(|t| &t.id == n))
            .filter(|t| end(runs, &t.id) > 0)
            .max_by_key(|t| end(runs, &t.id));
    }
    for (i, id) in path.iter().enumerate() {
        if let Some(r) = runs.get_mut(&(g.name.clone(), id.clone())) {
            r.critical = true;
            r.critical_via = path.get(i + 1).cloned();
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(state: NodeState, start: i64, end: i64) -> Member {
        Member {
            label: "m".into(),
            state,
            start_ms: start,
            end_ms: end,
            ..Member::default()
        }
    }

    #[test]
    fn a_step_takes_the_state_its_members_add_up_to() {
        use NodeState::*;
        assert_eq!(NodeState::of_members(&[], false), Pending);
        assert_eq!(NodeState::of_members(&[], true), Skipped);
        assert_eq!(NodeState::of_members(&[Completed, Running], false), Running);
        assert_eq!(NodeState::of_members(&[Retrying, Running], false), Retrying);
        assert_eq!(NodeState::of_members(&[Completed, Failed], true), Failed);
        assert_eq!(NodeState::of_members(&[Skipped, Skipped], true), Skipped);
        assert_eq!(
            NodeState::of_members(&[Skipped, Completed], true),
            Completed
        );
        assert_eq!(NodeState::of_members(&[Pending], true), Cancelled);
    }

    #[test]
    fn the_status_line_says_attempts_errors_members_and_durations() {
        let mut retried = member(NodeState::Running, 1_000, 0);
        retried.attempt = Some(Attempt { n: 2, of: 4 });
        retried.error = Some("HttpError".into());
        retried.percent = Some(40);
        let fan = NodeRun::new(
            vec![member(NodeState::Completed, 1_000, 2_000), retried],
            true,
            false,
        );
        assert_eq!(
            fan.status_line(),
            "running · 1 of 2 done · attempt 2/4 · 40 %"
        );
        assert_eq!(fan.error(), Some("HttpError"));
        let done = NodeRun::new(
            vec![member(NodeState::Completed, 1_000, 5_200)],
            false,
            true,
        );
        assert_eq!(done.status_line(), "completed in 4.2 s");
        assert_eq!(seconds(185_000), "3 m 05 s");
        assert_eq!(seconds(40), "40 ms");
    }

    #[test]
    fn the_critical_path_of_a_meeting_runs_through_its_slowest_branch() {
        // diarization.yaml, each step starting when its needs ended: the transcriptions (a
        // child fan-out) take 100 s, the mix beside them 5 s, every other step 1 s.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/diarization.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let registry = crate::registry::Registry::builtin();
        let p =
            workflow::parse_and_validate("diarization.yaml", &text, registry.catalog()).unwrap();
        let took = |id: &str| match id {
            "process_tracks" | "transcribe_track" => 100_000,
            "mixdown_tracks" => 5_000,
            _ => 1_000,
        };
        let mut runs = Runs::new();
        let mut ends: BTreeMap<String, i64> = BTreeMap::new();
        for g in std::iter::once(&p.main).chain(p.children.values()) {
            for _ in 0..g.steps.len() {
                for s in &g.steps {
                    let start = 1 + s
                        .needs
                        .iter()
                        .filter_map(|n| ends.get(n))
                        .max()
                        .copied()
                        .unwrap_or(0);
                    ends.insert(s.id.clone(), start + took(&s.id));
                }
            }
            for s in &g.steps {
                let end = ends[&s.id];
                runs.insert(
                    (g.name.clone(), s.id.clone()),
                    NodeRun::new(
                        vec![member(NodeState::Completed, end - took(&s.id), end)],
                        false,
                        true,
                    ),
                );
            }
        }
        critical_path(&p, &mut runs);
        let critical: Vec<String> = runs
            .iter()
            .filter(|(_, r)| r.critical)
            .map(|((g, id), _)| format!("{g}/{id}"))
            .collect();
        for on in [
            "DiarizationPipeline/get_recording",
            "DiarizationPipeline/pad_track",
            "DiarizationPipeline/process_tracks",
            "DiarizationPipeline/merge_transcripts",
            "DiarizationPipeline/finalize",
            "TrackProcessing/transcribe_track",
        ] {
            assert!(
                critical.contains(&on.to_owned()),
                "{on} not in {critical:?}"
            );
        }
        for off in ["mixdown_tracks", "generate_waveform"] {
            assert!(
                !critical.iter().any(|c| c.ends_with(off)),
                "{off} in {critical:?}"
            );
        }
        // Each step of the path is reached through one of its needs on the path.
        let main = |id: &str| &runs[&("DiarizationPipeline".to_owned(), id.to_owned())];
        assert_eq!(
            main("merge_transcripts").critical_via.as_deref(),
            Some("process_tracks")
        );
        assert_eq!(main("get_recording").critical_via, None);
        // A step that ended last but did nothing does not end the path.
        let mut skipped = runs.clone();
        skipped.values_mut().for_each(|r| r.critical = false);
        let last = NodeRun::new(vec![member(NodeState::Skipped, 1, 10_000_000)], false, true);
        skipped.insert(("DiarizationPipeline".into(), "post_zulip".into()), last);
        critical_path(&p, &mut skipped);
        let main = |id: &str| &skipped[&("DiarizationPipeline".to_owned(), id.to_owned())];
        assert!(!main("post_zulip").critical);
        assert!(main("finalize").critical);
        // While a step runs there is no critical path yet.
        let mut live = runs.clone();
        live.values_mut().for_each(|r| r.critical = false);
        live.insert(
            ("DiarizationPipeline".into(), "finalize".into()),
            NodeRun::new(vec![member(NodeState::Running, 5, 0)], false, false),
        );
        critical_path(&p, &mut live);
        assert!(live.values().all(|r| !r.critical));
    }
}
