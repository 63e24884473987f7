//! `reflow`: parse, run, print the error chain, choose the exit code.

use std::process::ExitCode;

use clap::Parser;
use reflow::cli::{Cli, run};
use reflow::registry::Registry;

#[tokio::main]
async fn main() -> ExitCode {
    reflow::init_tracing();
    match run(Cli::parse(), Registry::builtin()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
