//! The memo sweep: memoized results go with their transcript (docs/architecture.md, "Memoized
//! re-runs", Purging) even when reflow is not the one that deleted it. Reflector's API deletes
//! transcripts and records consent answers in the same database; every `reflow worker` looks
//! for transcripts deleted or denied consent whose memos were not purged yet, purges them
//! ([`activities::memo::purge`]) and records it (`memo_purge`), a page at a time, every minute.

use std::time::Duration;

use activities::db::Db;
use activities::storage::Storage;

/// How often the loop looks.
pub const EVERY: Duration = Duration::from_secs(60);

/// Transcripts one pass takes at most.
const PAGE: i64 = 100;

/// Purge what is owed, a page at a time until none is left; how many transcripts were purged.
/// A failure leaves the transcript for the next pass.
pub async fn pass(db: &Db, storage: &Storage) -> usize {
    let mut done = 0;
    loop {
        let ids = match db.unpurged(PAGE).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "memo sweep: database");
                return done;
            }
        };
        let mut progressed = false;
        for id in &ids {
            let purged = match activities::memo::purge(storage, id).await {
                Ok(_) => db.set_purged(id).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match purged {
                Ok(()) => {
                    done += 1;
                    progressed = true;
                }
                Err(e) => {
                    tracing::warn!(transcript_id = %id, error = %e, "memo sweep: purge failed")
                }
            }
        }
        if ids.len() < PAGE as usize || !progressed {
            return done;
        }
    }
}

/// Run [`pass`] every [`EVERY`] until `stop` resolves.
pub async fn run(db: Db, storage: Storage, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        let n = pass(&db, &storage).await;
        if n > 0 {
            tracing::info!(transcripts = n, "memo sweep: memos purged");
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}
