//! The expression language: `${…}` templates (`workflow::expr`) and timeout formulas
//! (`workflow::formula`), parsed and evaluated on arbitrary text.
//!
//! Input: the expression, then optionally a NUL byte and the scope as a JSON object (a fixed
//! scope like a step's when absent or not an object). Beyond "no panic": what validation
//! accepts (`references`) never fails to parse at run time (`render` gives no syntax error),
//! a formula parses again from its own text, and its result always makes a timeout.
//! `fuzz/dict/expr.dict` (the syntax, and multi-byte characters) is its dictionary.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use workflow::expr::{self, ExprError, Scope};
use workflow::formula::{self, Formula};

fn default_scope() -> Scope {
    let mut s = Scope::new();
    s.insert(
        "input".into(),
        json!({"recording_id": "r1", "tracks": [{"s3_key": "a", "offset_s": 1.5}, {"s3_key": "b"}], "duration_s": 61.0}),
    );
    s.insert("item".into(), json!({"s3_key": "a", "name": "Ann"}));
    s.insert("index".into(), json!(1));
    s.insert(
        "get_recording".into(),
        json!({"duration_s": null, "tracks": []}),
    );
    s.insert(
        "pad_track".into(),
        json!([{"padded_key": "p0"}, {"padded_key": "p1"}]),
    );
    s.insert("skipped".into(), Value::Null);
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (text, scope) = text.split_once('\0').unwrap_or((text, ""));
    let scope: Scope = serde_json::from_str(scope).unwrap_or_else(|_| default_scope());

    let template = Value::String(text.to_owned());
    let refs = expr::references(&template);
    let rendered = expr::render(&template, &scope);
    assert_eq!(
        refs.is_ok(),
        !matches!(rendered, Err(ExprError::Syntax { .. })),
        "validation and run time agree on what parses: {refs:?} / {rendered:?}"
    );
    if let Ok(path) = expr::parse_single(text) {
        assert!(refs.is_ok());
        let _ = expr::eval(&path, &scope);
    }
    let _ = expr::render_array(text, &scope);
    let _ = expr::render_condition(text, &scope);
    if let Err(e) = &rendered {
        let _ = e.to_string();
    }
    // The text as a `with:` template (any JSON value).
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        let _ = expr::references(&v);
        let _ = expr::render(&v, &scope);
    }
    let _ = formula::is_formula(text);
    match Formula::parse(text) {
        Ok(f) => {
            let _ = f.references();
            // What the interpreter makes of the result (interpreter/options.rs).
            if let Ok(seconds) = f.seconds(&scope) {
                let _ = std::time::Duration::from_secs_f64(seconds.max(1.0));
            }
            assert_eq!(Formula::parse(f.text()).as_ref(), Ok(&f));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
