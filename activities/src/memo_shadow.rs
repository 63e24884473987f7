//! Shadow runs' side of memoized runs ([`crate::memo`], `workflow::interpreter::shadow`).
//!
//! A shadow run writes its own transcript (`transcript.shadow_of` names the live one) and
//! reuses what the live run computed:
//! - **Found by key, whoever computed it.** A shadow's plan takes a memo from
//!   `pipeline-memo/{key}.json` even when another transcript's run stored it, as long as that
//!   transcript's index still names it for the step ([`still_owned`]: a re-run of it that
//!   recomputed the step may have overwritten the objects) and every object it names exists.
//!   Memo keys leave the transcript id out (`workflow::interpreter::memo::content_input`), so
//!   the live run and its shadow compute the same keys for the same work.
//! - **Single-flight by waiting.** While the live transcript is still being computed (status
//!   `idle` or `processing`), a shadow's plan answers `wait` and the workflow asks again a few
//!   seconds later ([`live_computing`]): the shadow starts its steps once the live run has
//!   stored its memos (at its end or failure), so it never pays for a step the live run is
//!   computing. The granularity is the run, not the step (memos are stored at a run's end).
//! - **Effects adopted.** A reused step's effects on the transcript row (the title, summaries,
//!   action items and duration its events stand for) were made on the live transcript; the
//!   plan copies those columns onto the shadow ([`adopt`]). Objects are not copied: the
//!   shadow's results name the live transcript's objects.
//! - **Memos stay their owner's.** A shadow does not overwrite a memo another transcript owns
//!   ([`own_entries`]), so nothing the live transcript vouches for ever points into a shadow's
//!   prefix.

use std::collections::BTreeMap;

use serde_json::Value;
use workflow::interpreter::memo::{StoreRequest, activities_of};
use workflow::interpreter::shadow::ShadowRun;
use workflow::{Catalog, Pipeline};

use crate::db::Db;
use crate::db::shadows::ADOPTABLE;
use crate::error::ActivityFailure;
use crate::memo::{Memo, index_key, memo_key};
use crate::storage::{Storage, StorageError};

async fn read<T: serde::de::DeserializeOwned>(
    storage: &Storage,
    key: &str,
) -> Result<Option<T>, ActivityFailure> {
    match storage.get(key).await {
        Ok(b) => Ok(serde_json::from_slice(&b).ok()),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether memo `m` is still its transcript's: that transcript's index names it for its step.
pub async fn still_owned(storage: &Storage, m: &Memo) -> Result<bool, ActivityFailure> {
    let index: BTreeMap<String, String> = read(storage, &index_key(&m.transcript_id))
        .await?
        .unwrap_or_default();
    Ok(index.get(&m.step) == Some(&m.key))
}

/// Whether the live transcript a shadow follows is still being computed (`idle` before its
/// first step, `processing` after), so the shadow should wait for its memos.
pub async fn live_computing(db: &Db, shadow: &ShadowRun) -> Result<bool, ActivityFailure> {
    Ok(db.find_transcript(&shadow.of).await?.is_some_and(|t| {
        t.deleted_at.is_none() && matches!(t.status.as_str(), "idle" | "processing")
    }))
}

/// The transcript columns an event stands for.
fn columns_of(event: &str) -> &'static [&'static str] {
    match event {
        "FINAL_TITLE" => &["title"],
        "FINAL_SHORT_SUMMARY" => &["short_summary"],
        "FINAL_LONG_SUMMARY" => &["long_summary"],
        "ACTION_ITEMS" => &["action_items"],
        "DURATION" => &["duration"],
        _ => &[],
    }
}

/// Copy onto shadow transcript `to` the columns of live transcript `shadow.of` that the
/// `reused` steps' events stand for (what those steps wrote there when they ran).
pub async fn adopt(
    db: &Db,
    catalog: &Catalog,
    pipeline: &Pipeline,
    reused: &BTreeMap<String, Value>,
    to: &str,
    shadow: &ShadowRun,
) -> Result<(), ActivityFailure> {
    let mut columns: Vec<&str> = Vec::new();
    for step in pipeline
        .main
        .steps
        .iter()
        .filter(|s| reused.contains_key(&s.id))
    {
        for a in activities_of(step, &pipeline.children) {
            for e in catalog
                .get_activity(a)
                .map(|e| e.emits.clone())
                .unwrap_or_default()
            {
                columns.extend(columns_of(&e).iter().filter(|c| ADOPTABLE.contains(c)));
            }
        }
    }
    columns.sort_unstable();
    columns.dedup();
    db.adopt_columns(to, &shadow.of, &columns).await?;
    tracing::info!(shadow = %to, live = %shadow.of, ?columns, "shadow adopted the live transcript's reused results");
    Ok(())
}

/// `r` with the entries a shadow transcript must not store: those whose memo another
/// transcript owns (a live transcript's stays its own). Other transcripts' requests as given.
pub async fn own_entries(
    db: &Db,
    storage: &Storage,
    r: &StoreRequest,
) -> Result<StoreRequest, ActivityFailure> {
    let shadow = db
        .find_transcript(&r.transcript_id)
        .await?
        .is_some_and(|t| t.shadow_of.is_some());
    let mut out = r.clone();
    if !shadow {
        return Ok(out);
    }
    out.entries.clear();
    for e in &r.entries {
        let foreign = read::<Memo>(storage, &memo_key(&e.key))
            .await?
            .is_some_and(|m| m.transcript_id != r.transcript_id);
        if !foreign {
            out.entries.push(e.clone());
        }
    }
    Ok(out)
}
