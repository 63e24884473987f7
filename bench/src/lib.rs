//! What the benchmark binaries share: the machine they ran on, what they read about the
//! processes they run ([`measure`]), and (from the test harness, [`reflow_tests::demo`]) the
//! demo meeting's script and fact list.

pub mod eval_set;
pub mod measure;

/// `{cpu model}, {n} cores`, for the header of a results file.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cpu}, {cores} cores")
}

pub use reflow_tests::demo::{Fact, demo_meeting};
