//! The checkpoint store on both backends: a second run of a step with the same input does no
//! work; a different input or backend configuration does; a result naming an object that is
//! gone is recomputed.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use activities::ActivityFailure;
use activities::checkpoint::{Checkpoints, Origin};
use activities::storage::{Storage, keys};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Padded {
    padded_key: String,
    duration_ms: u64,
}

async fn suite(store: Storage) {
    let cp = Checkpoints::new(store.clone());
    let runs = AtomicUsize::new(0);
    let pad = |track: usize| {
        let (store, runs) = (&store, &runs);
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let key = keys::padded_track("t1", track);
            store.put(&key, Bytes::from_static(b"audio")).await?;
            Ok::<_, ActivityFailure>(Padded {
                padded_key: key,
                duration_ms: 1000,
            })
        }
    };
    let objects = |p: &Padded| vec![p.padded_key.clone()];
    let input = json!({"transcript_id": "t1", "track_index": 0, "s3_key": "raw/a.webm"});
    let config = json!({"backend": "local"});

    let (first, origin) = cp
        .checkpointed("t1", "pad_track", &input, &config, objects, pad(0))
        .await
        .unwrap();
    assert_eq!((origin, runs.load(Ordering::SeqCst)), (Origin::Computed, 1));

    // Same input (fields in another order): the stored result, no work.
    let reordered = json!({"s3_key": "raw/a.webm", "track_index": 0, "transcript_id": "t1"});
    let (again, origin) = cp
        .checkpointed("t1", "pad_track", &reordered, &config, objects, pad(0))
        .await
        .unwrap();
    assert_eq!((origin, runs.load(Ordering::SeqCst)), (Origin::Stored, 1));
    assert_eq!(again, first);

    // Another input, or another backend configuration: work again.
    let other = json!({"transcript_id": "t1", "track_index": 1, "s3_key": "raw/b.webm"});
    cp.checkpointed("t1", "pad_track", &other, &config, objects, pad(1))
        .await
        .unwrap();
    cp.checkpointed(
        "t1",
        "pad_track",
        &input,
        &json!({"backend": "remote"}),
        objects,
        pad(0),
    )
    .await
    .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 3);

    // The object the result names is gone (e.g. finalize deleted it): recompute.
    store.delete(&first.padded_key).await.unwrap();
    let (_, origin) = cp
        .checkpointed("t1", "pad_track", &input, &config, objects, pad(0))
        .await
        .unwrap();
    assert_eq!((origin, runs.load(Ordering::SeqCst)), (Origin::Computed, 4));
    assert!(store.exists(&first.padded_key).await.unwrap());

    // Checkpoints live under the transcript's prefix; a failed step stores nothing.
    let stored = store.list("t1/pipeline/checkpoints/").await.unwrap();
    assert_eq!(stored.len(), 3, "{stored:?}");
    let failing = || async { Err::<Padded, _>(ActivityFailure::Transient("503".into())) };
    assert!(
        cp.checkpointed(
            "t1",
            "pad_track",
            &json!({"x": 1}),
            &config,
            objects,
            failing
        )
        .await
        .is_err()
    );
    assert_eq!(
        store.list("t1/pipeline/checkpoints/").await.unwrap().len(),
        3
    );

    // A reprocess starts a new generation: the same input is computed again, once.
    cp.new_epoch("t1").await.unwrap();
    let before = runs.load(Ordering::SeqCst);
    let (_, origin) = cp
        .checkpointed("t1", "pad_track", &input, &config, objects, pad(0))
        .await
        .unwrap();
    assert_eq!(
        (origin, runs.load(Ordering::SeqCst)),
        (Origin::Computed, before + 1)
    );
    let (_, origin) = cp
        .checkpointed("t1", "pad_track", &input, &config, objects, pad(0))
        .await
        .unwrap();
    assert_eq!(
        origin,
        Origin::Stored,
        "a resume within the generation reuses it"
    );
}

#[tokio::test]
async fn checkpoints_on_the_file_backend() {
    let (store, _dir) = common::file_storage();
    suite(store).await;
}

#[tokio::test]
async fn checkpoints_on_s3() {
    let server = common::S3Server::start("transcripts");
    suite(server.storage("s3://transcripts")).await;
}
