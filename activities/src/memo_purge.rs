//! Forgetting a transcript's memoized results ([`crate::memo`]): when a participant denies
//! consent or the transcript is deleted, every memo a run of it stored goes with it.
//!
//! Memos live outside the transcript's prefix (`pipeline-memo/…`), and the transcript's index
//! names only those it vouches for now; a memo an earlier run stored (superseded by a re-run on
//! a new version, say) is named by the transcript's **ledger**,
//! `{transcript_id}/pipeline/memo/ledger.json`: every memo key a run of it stored, written
//! before the memos are. [`purge`] deletes every memo the ledger or the index names, then both.
//! [`forgotten`] says whether a transcript must keep none (soft-deleted, or consent denied in
//! its meeting): `memo_store` then purges instead of storing, so a run that was in flight when
//! it happened (the consent cleanup is one of its own last steps) leaves nothing behind.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::db::{Db, DbError};
use crate::memo::{index_key, memo_key};
use crate::storage::{Storage, StorageError};

/// Key of a transcript's ledger of memo keys.
pub fn ledger_key(transcript_id: &str) -> String {
    format!("{transcript_id}/pipeline/memo/ledger.json")
}

async fn read<T: serde::de::DeserializeOwned + Default>(
    storage: &Storage,
    key: &str,
) -> Result<T, StorageError> {
    match storage.get(key).await {
        Ok(b) => Ok(serde_json::from_slice(&b).unwrap_or_default()),
        Err(StorageError::NotFound { .. }) => Ok(T::default()),
        Err(e) => Err(e),
    }
}

/// Add `keys` to the transcript's ledger (before the memos they name are written).
pub async fn record<'a>(
    storage: &Storage,
    transcript_id: &str,
    keys: impl IntoIterator<Item = &'a str>,
) -> Result<(), StorageError> {
    let key = ledger_key(transcript_id);
    let mut ledger: BTreeSet<String> = read(storage, &key).await?;
    let before = ledger.len();
    ledger.extend(keys.into_iter().map(str::to_owned));
    if ledger.len() == before {
        return Ok(());
    }
    let body = serde_json::to_vec(&ledger).expect("a set of strings serializes");
    storage.put(&key, Bytes::from(body)).await
}

/// Delete every memo of the transcript (those its ledger or index names), then the ledger and
/// the index; how many memos were named. Deleting what is already gone is not an error, so a
/// retry finishes the job.
pub async fn purge(storage: &Storage, transcript_id: &str) -> Result<usize, StorageError> {
    let mut keys: BTreeSet<String> = read(storage, &ledger_key(transcript_id)).await?;
    let index: BTreeMap<String, String> = read(storage, &index_key(transcript_id)).await?;
    keys.extend(index.into_values());
    for k in &keys {
        storage.delete(&memo_key(k)).await?;
    }
    storage.delete(&index_key(transcript_id)).await?;
    storage.delete(&ledger_key(transcript_id)).await?;
    if !keys.is_empty() {
        tracing::info!(transcript_id, memos = keys.len(), "memos purged");
    }
    Ok(keys.len())
}

/// Whether the transcript must keep no memo: it was deleted, or someone denied consent in its
/// meeting (docs/contracts/pipeline.md §4.14). An unknown transcript keeps them.
pub async fn forgotten(db: &Db, transcript_id: &str) -> Result<bool, DbError> {
    let Some(t) = db.find_transcript(transcript_id).await? else {
        return Ok(false);
    };
    if t.deleted_at.is_some() {
        return Ok(true);
    }
    match &t.meeting_id {
        Some(m) => db.consent_denied(m).await,
        None => Ok(false),
    }
}
