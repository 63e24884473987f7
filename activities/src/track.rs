//! A track as the pipeline input lists it (`tracks: [{s3_key, name?, offset_s?}]`), read by
//! `get_participants` (speakers) and `cleanup_consent` (what to delete): its own module, so
//! neither activity module borrows it from the other.

use serde::{Deserialize, Serialize};

/// One track as the pipeline input lists it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TrackRef {
    /// Key in the recordings bucket.
    pub s3_key: String,
    /// A local source's speaker name (Daily tracks get theirs from the participants API).
    #[serde(default)]
    pub name: Option<String>,
    /// A local source's offset in seconds (Daily tracks carry theirs in the file).
    #[serde(default)]
    pub offset_s: Option<f64>,
}
