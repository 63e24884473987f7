//! The scheduling phase of a graph's run ([`GraphRun::start_ready`]): every step whose needs are
//! met is started, skipped (`when:` false, or the run skips it) or taken from its memo, in
//! declared order.

use serde_json::Value;

use super::failure::StepFailure;
use super::inputs::needs_met;
use super::step::{now, run_step};
use super::{GraphRun, INVALID_INPUT, Interpreted, State, memoized};
use crate::expr;
use crate::progress::StepStatus;

impl<'a, W: Interpreted> GraphRun<'a, W> {
    /// Start (or skip) everything that is ready, in declared order, until nothing changes.
    pub(super) fn start_ready(&mut self) {
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..self.graph.steps.len() {
                let step = &self.graph.steps[i];
                if self.states[i] != State::Pending || !needs_met(&self.graph, &self.states, step) {
                    continue;
                }
                changed = true;
                match self.condition(i) {
                    Ok(true) if self.skipped.contains(&step.id) => self.skip(i),
                    Ok(true) => match self.memo.as_ref().and_then(|m| m.reused(&step.id)) {
                        Some(v) => {
                            let v = v.clone();
                            self.reuse(i, v);
                        }
                        None => self.start(i),
                    },
                    Ok(false) => self.skip(i),
                    Err(f) => {
                        self.states[i] = State::Running;
                        self.running.push(Box::pin(async move { (i, Err(f)) }));
                    }
                }
            }
        }
    }

    /// Whether step `i` runs: its `when:` (none: it does).
    fn condition(&self, i: usize) -> Result<bool, StepFailure> {
        match &self.graph.steps[i].when {
            None => Ok(true),
            Some(cond) => expr::render_condition(cond, &self.scope)
                .map_err(|e| StepFailure::new(INVALID_INPUT, format!("when: {e}"))),
        }
    }

    /// Step `i`'s `when:` is false (or the run skips it): skipped, its output null.
    fn skip(&mut self, i: usize) {
        let step = &self.graph.steps[i];
        self.states[i] = State::Skipped;
        self.scope.insert(step.id.clone(), Value::Null);
        let now = now(self.ctx);
        self.ctx.state_mut(|w| {
            if let Some(r) = w.progress_mut().row_mut(&step.id, None) {
                r.status = StepStatus::Skipped;
                r.finished_at = now;
            }
        });
    }

    /// Start step `i` with the scope as it is now.
    fn start(&mut self, i: usize) {
        self.states[i] = State::Running;
        let fut = run_step(
            self.ctx.clone(),
            self.pipeline.clone(),
            (self.reference.clone(), self.rules()),
            self.graph.name.clone(),
            self.graph.steps[i].clone(),
            self.scope.clone(),
        );
        self.running.push(Box::pin(async move { (i, fut.await) }));
    }

    /// Step `i` is taken from its memo (the plan reuses it): completed now, marked reused.
    fn reuse(&mut self, i: usize, value: Value) {
        let id = self.graph.steps[i].id.clone();
        let now = now(self.ctx);
        let child = match &self.graph.steps[i].run {
            crate::pipeline::Run::Child(c) => memoized::reused_child(&self.pipeline, c, &now),
            crate::pipeline::Run::Activity(_) => None,
        };
        self.ctx.state_mut(|w| {
            if let Some(r) = w.progress_mut().row_mut(&id, None) {
                r.started_at.clone_from(&now);
                r.reused = true;
                r.child = child.map(Box::new);
            }
        });
        self.succeeded(i, value, now);
    }
}
