//! Binaries of this crate find the embedded Whisper runtime (CTranslate2, installed by
//! `just setup`) through an rpath to the model cache, so they run outside `cargo run` too.
//! Deployed binaries take the library from the system path instead (docs/runbook.md).

fn main() {
    println!("cargo:rerun-if-env-changed=REFLOW_CTRANSLATE2_DIR");
    if let Some(dir) = std::env::var_os("REFLOW_CTRANSLATE2_DIR")
        && let Ok(dir) = std::fs::canonicalize(dir)
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{}", dir.display());
    }
}
