//! A stand-in for the next release's interpreter, for the rolling-upgrade test only.
//!
//! A real release that changes the interpreter's commands cannot be built twice inside one
//! test run, so the upgrade test's second worker (`reflow-test-worker` with
//! `REFLOW_TEST_NEXT_INTERPRETER` set) turns this on before its workers start: every run it
//! starts then begins with a one-millisecond timer, a command no earlier history has at that
//! point, exactly the kind of change that fails a replay of an older history with a
//! nondeterminism error. The production binary never turns it on. Set once at start-up,
//! before any workflow runs, it is a constant of the process, so runs stay deterministic.

use std::sync::atomic::{AtomicBool, Ordering};

static ON: AtomicBool = AtomicBool::new(false);

/// Make this process's interpreter the "next release" (call before workers start).
pub fn enable() {
    ON.store(true, Ordering::SeqCst);
}

/// Whether this process runs the "next release".
pub fn enabled() -> bool {
    ON.load(Ordering::SeqCst)
}
