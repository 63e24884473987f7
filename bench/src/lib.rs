//! What the benchmark binaries share: the machine they ran on, and the demo meeting's script
//! and fact list (`scripts/demo-meeting.py`) with the lenient fact matching the summary
//! benchmarks use.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Deserialize;

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

/// The output of `scripts/demo-meeting.py` with `args` (`--transcript`, `--facts`, or a
/// directory to synthesize the meeting into).
pub fn demo_meeting(args: &[&str]) -> Result<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo-meeting.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .context("running scripts/demo-meeting.py")?;
    anyhow::ensure!(
        out.status.success(),
        "demo-meeting.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// One fact a summary of the demo meeting should carry.
#[derive(Debug, Deserialize)]
pub struct Fact {
    /// The fact, as an attendee would say it.
    pub fact: String,
    /// Case-insensitive patterns that must all match for the fact to count as carried.
    pub patterns: Vec<String>,
}

impl Fact {
    /// The demo meeting's facts (`scripts/demo-meeting.py --facts`).
    pub fn of_demo() -> Result<Vec<Fact>> {
        Ok(serde_json::from_str(&demo_meeting(&["--facts"])?)?)
    }

    /// Whether `text` carries this fact: every pattern matches somewhere.
    pub fn carried_by(&self, text: &str) -> Result<bool> {
        for p in &self.patterns {
            if !regex::RegexBuilder::new(p)
                .case_insensitive(true)
                .build()?
                .is_match(text)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
