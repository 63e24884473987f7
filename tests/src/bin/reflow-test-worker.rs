//! `reflow` with the test activities registered: the engine tests run it as a separate
//! process to kill it mid-run.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before the runtime's threads exist: it sets an environment variable.
    activities::llm::chat_model::prefer_f16_weights();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts")
        .block_on(test_worker())
}

async fn test_worker() -> ExitCode {
    reflow::init_tracing();
    // The rolling-upgrade test's "next release" (reflow_tests::next_release).
    let registry = if std::env::var_os("REFLOW_TEST_NEXT_INTERPRETER").is_some() {
        reflow_tests::next_release::registry()
    } else {
        reflow_tests::registry()
    };
    match reflow::cli::run(reflow::cli::Cli::parse(), registry).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
