//! `recording.json`, the manifest `reflow process <dir>` reads ([`reflow::local::scan`]), on
//! arbitrary bytes, in real directories.
//!
//! Two fixed directories are set up once: a clean one (audio files, a Daily-named track, a
//! subdirectory, a link to a file inside, a directory named like audio) and one that also holds
//! a link to a file outside it. Each input is written as both directories' `recording.json`
//! and scanned. Beyond "no panic": every track a scan returns is a file inside its directory
//! (the manifest cannot make `reflow process` copy `../x`, an absolute path or a link's target
//! into the store), and the source id (a hash of the manifest and the tracks) can be computed.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use reflow::local;

struct Dirs {
    clean: PathBuf,
    linked: PathBuf,
}

static DIRS: LazyLock<Dirs> = LazyLock::new(|| {
    let base =
        std::env::temp_dir().join(format!("reflow-fuzz-recording-json-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let outside = base.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.webm"), b"not for the store").unwrap();
    let make = |name: &str, link_out: bool| {
        let dir = base.join(name);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::create_dir_all(dir.join("folder.webm")).unwrap();
        for f in [
            "a.webm",
            "b.ogg",
            "notes.txt",
            "sub/c.wav",
            "1768018896877-890c0eae-1d2f-4c3b-9a8e-0f1e2d3c4b5a-cam-audio-1768018914565.webm",
        ] {
            std::fs::write(dir.join(f), f.as_bytes()).unwrap();
        }
        std::os::unix::fs::symlink("a.webm", dir.join("again.webm")).unwrap();
        if link_out {
            std::os::unix::fs::symlink(outside.join("secret.webm"), dir.join("out.webm")).unwrap();
        }
        dir
    };
    Dirs {
        clean: make("clean", false),
        linked: make("linked", true),
    }
});

fn scan(dir: &Path, manifest: &[u8]) {
    std::fs::write(dir.join("recording.json"), manifest).unwrap();
    let root = dir.canonicalize().unwrap();
    match local::scan(dir) {
        Ok((tracks, duration_s)) => {
            assert!(!tracks.is_empty());
            for t in &tracks {
                assert!(
                    t.path.starts_with(&root) && t.path.is_file(),
                    "{} escapes {}",
                    t.path.display(),
                    root.display()
                );
            }
            if let Some(d) = duration_s {
                assert!(d.is_finite());
            }
            let id = local::source_id(dir, &tracks).expect("the tracks were just read");
            assert_eq!(id.len(), 16);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    scan(&DIRS.clean, data);
    scan(&DIRS.linked, data);
});
