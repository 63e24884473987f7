//! Links the embedded Whisper runtime: CTranslate2 4.8.4 from the model cache that
//! `just setup` fills (`scripts/setup-models.sh`), found through `REFLOW_CTRANSLATE2_DIR`
//! (set by `.cargo/config.toml` to the checkout's `native/ctranslate2`, where setup links it).
//!
//! The library is hard-linked (or copied) into this crate's `OUT_DIR`, and that directory is
//! announced as a native search path. Cargo puts search paths inside the target directory on
//! `LD_LIBRARY_PATH` for `cargo run` and `cargo test`, so every binary and test of the
//! workspace finds the library without a system install. A deployed binary needs the two
//! shared objects next to it or on the system library path (see docs/runbook.md).

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=REFLOW_CTRANSLATE2_DIR");
    let dir = PathBuf::from(
        env::var_os("REFLOW_CTRANSLATE2_DIR").expect("REFLOW_CTRANSLATE2_DIR (.cargo/config.toml)"),
    );
    if !dir.join("libctranslate2.so").exists() {
        panic!(
            "CTranslate2 4.8.4 is not installed in {} — run `just setup` \
             (scripts/setup-models.sh) or set REFLOW_CTRANSLATE2_DIR",
            dir.display()
        );
    }
    println!("cargo:rerun-if-changed={}", dir.join(".ok").display());
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("ctranslate2");
    fs::create_dir_all(&out).expect("create OUT_DIR/ctranslate2");
    for entry in fs::read_dir(&dir).expect("read the CTranslate2 directory") {
        let entry = entry.expect("read the CTranslate2 directory");
        let name = entry.file_name();
        let target = out.join(&name);
        let _ = fs::remove_file(&target);
        let source = fs::canonicalize(entry.path()).expect("resolve library path");
        if fs::hard_link(&source, &target).is_err() {
            fs::copy(&source, &target).expect("copy the CTranslate2 library");
        }
    }
    println!("cargo:rustc-link-search=native={}", out.display());
}
