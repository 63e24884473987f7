//! The demo meeting (`scripts/demo-meeting.py`): synthesizing it, its reference dialogue, and
//! the facts an attendee expects its summary to carry, with the lenient matching that the demo
//! test and `just bench-e2e`/`just bench-llm` share (the script holds the facts; this module
//! is the one reader of them).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Deserialize;

/// The output of `scripts/demo-meeting.py` with `args` (`--transcript`, `--facts`, or a
/// directory to synthesize the meeting into, optionally with `--repeat N`).
pub fn demo_meeting<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo-meeting.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .context("running scripts/demo-meeting.py")?;
    anyhow::ensure!(
        out.status.success(),
        "demo-meeting.py: {}",
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

    /// The demo fact whose text starts with `prefix`.
    pub fn of_demo_starting(prefix: &str) -> Result<Fact> {
        Self::of_demo()?
            .into_iter()
            .find(|f| f.fact.starts_with(prefix))
            .with_context(|| format!("no fact {prefix:?} in the demo script"))
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
