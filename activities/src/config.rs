//! How backend configurations read their settings.
//!
//! No activity reads the process environment: the worker's `Settings` reads it once and hands
//! each configuration's `from_vars` a lookup ([`Vars`]) over what it read. Each configuration
//! still owns its variables' names, defaults and parsing, next to the type they fill.

/// A lookup of a setting by its variable name (`TRANSCRIPT_BACKEND`, `LLM_URL`, …).
pub type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

/// `vars(k)`, unless it is empty or only whitespace.
pub fn non_empty(vars: Vars<'_>, k: &str) -> Option<String> {
    vars(k).filter(|v| !v.trim().is_empty())
}
