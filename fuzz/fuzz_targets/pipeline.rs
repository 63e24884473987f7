//! Pipeline YAML: `workflow::parse_and_validate` against the catalog `reflow worker` validates
//! with (every built-in activity, workflow type and event), on arbitrary text.
//!
//! Beyond "no panic": a pipeline that validates must travel — it is serialized into every
//! run's input (JSON) and pinned by its hash — so it must survive a JSON round trip unchanged,
//! and its hash must be the hash of what it is. `fuzz/dict/pipeline.dict` (the file's keys,
//! YAML syntax, expressions, multi-byte characters) is its dictionary.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use reflow::registry::Registry;

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::builtin);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match workflow::parse_and_validate("fuzz.yaml", text, REGISTRY.catalog()) {
        Ok(p) => {
            assert_eq!(p.compute_hash(), p.hash, "the hash is the definition's");
            let json = serde_json::to_string(&p).expect("a validated pipeline serializes");
            let back: workflow::Pipeline =
                serde_json::from_str(&json).expect("a validated pipeline deserializes");
            assert_eq!(
                back, p,
                "a validated pipeline survives the run input's JSON"
            );
            for name in p.children.keys() {
                let child = p.for_child(name);
                assert!(child.graph(name).is_some());
            }
            let _ = p.task_queues();
        }
        Err(report) => {
            // The report is what `reflow validate` prints.
            assert!(!report.errors.is_empty());
            let _ = report.to_string();
        }
    }
});
