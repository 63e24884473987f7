//! `reflow`: parse, run, print the error chain, choose the exit code.

use std::process::ExitCode;

use clap::Parser;
use reflow::cli::{Cli, run};
use reflow::registry::Registry;

fn main() -> ExitCode {
    // Before the runtime's threads exist: it sets an environment variable.
    activities::llm::chat_model::prefer_f16_weights();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(reflow_main()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn reflow_main() -> ExitCode {
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
