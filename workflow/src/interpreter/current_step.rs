//! The progress phase of a graph's run: the `CurrentStep` search attribute shows the steps in
//! flight ([`GraphRun::show_current_step`]).

use super::{GraphRun, Interpreted, State, visibility};
use crate::search;

impl<'a, W: Interpreted> GraphRun<'a, W> {
    /// The `CurrentStep` search attribute: the steps in flight, set when it changed (a lean
    /// run: not while a local step runs, and with its pending attributes; [`visibility`]).
    pub(super) fn show_current_step(&mut self) {
        if !self.tagged {
            return;
        }
        let running = || {
            self.graph
                .steps
                .iter()
                .zip(&self.states)
                .filter(|(_, s)| **s == State::Running)
                .map(|(s, _)| s)
        };
        if self.lean && running().any(|s| s.local) {
            return;
        }
        let now_running = visibility::label(running(), self.lean);
        if now_running != self.current_step {
            self.show(now_running);
        }
    }

    /// Set `CurrentStep` to `value`, with the attributes not set yet.
    pub(super) fn show(&mut self, value: String) {
        let mut updates = std::mem::take(&mut self.pending_tags);
        updates.push(search::CURRENT_STEP.value_set(value.clone()));
        self.ctx.upsert_search_attributes(updates);
        self.current_step = value;
    }
}
