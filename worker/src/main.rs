//! `reflow`: parse, run, print the error chain, choose the exit code.

use std::process::ExitCode;

use clap::Parser;
use reflow::cli::{Cli, run};
use reflow::registry::Registry;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        reflow::cli::Command::Process { .. } => reflow::init_tracing_with("warn"),
        _ => reflow::init_tracing(),
    }
    match run(cli, Registry::builtin()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
