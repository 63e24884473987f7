//! The storage layer against both backends: a local directory and a real S3-compatible
//! server (s3s-fs). The same suite runs on each.

mod common;

use std::time::Duration;

use activities::ActivityFailure;
use activities::storage::{Storage, StorageConfig, StorageError, keys};
use bytes::Bytes;
use common::{S3Server, file_storage, http_get};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

async fn suite(store: &Storage, big: &std::path::Path) {
    let key = keys::track_words("t1", 0);
    store.put(&key, Bytes::from_static(b"[1,2]")).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Bytes::from_static(b"[1,2]"));
    store.put(&key, Bytes::from_static(b"[3]")).await.unwrap();
    assert_eq!(
        store.get(&key).await.unwrap(),
        Bytes::from_static(b"[3]"),
        "put replaces"
    );
    assert!(store.exists(&key).await.unwrap());
    assert!(!store.exists("t1/nothing.json").await.unwrap());

    // Sizes and byte ranges (the audio endpoint's Range requests).
    let audio = keys::audio_mp3("t1");
    store
        .put(&audio, Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    assert_eq!(store.size(&audio).await.unwrap(), Some(10));
    assert_eq!(store.size("t1/none.mp3").await.unwrap(), None);
    let mut part = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(
        &mut store.range_reader(&audio, 2, 5).await.unwrap(),
        &mut part,
    )
    .await
    .unwrap();
    assert_eq!(part, b"2345");

    // Missing objects: a typed, non-retryable NotFound naming the key.
    let e = store.get("t1/nothing.json").await.unwrap_err();
    assert!(matches!(e, StorageError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("t1/nothing.json"), "{e}");
    let f: ActivityFailure = e.into();
    assert!(f.is_non_retryable() && f.type_name() == "NotFound");

    // Listing by prefix, sorted; other transcripts are not included.
    store
        .put("t1/pipeline/words_1.json", Bytes::from_static(b"[]"))
        .await
        .unwrap();
    store
        .put("t2/audio.json", Bytes::from_static(b"[]"))
        .await
        .unwrap();
    assert_eq!(
        store.list("t1/pipeline/").await.unwrap(),
        ["t1/pipeline/words_0.json", "t1/pipeline/words_1.json"]
    );
    assert_eq!(
        store.list("t1/pipeline/words_1").await.unwrap(),
        ["t1/pipeline/words_1.json"]
    );
    assert_eq!(store.list("t2/").await.unwrap(), ["t2/audio.json"]);

    // Deleting is idempotent.
    store.delete(&key).await.unwrap();
    store.delete(&key).await.unwrap();
    assert!(!store.exists(&key).await.unwrap());

    // A large file goes up (in parts on S3) and comes back identical, streamed.
    let want = hex::encode(Sha256::digest(std::fs::read(big).unwrap()));
    let padded = keys::padded_track("t1", 0);
    let size = store.put_file(&padded, big).await.unwrap();
    assert_eq!(size, std::fs::metadata(big).unwrap().len());
    let mut reader = store.reader(&padded).await.unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    assert_eq!(
        hex::encode(hasher.finalize()),
        want,
        "streamed read matches"
    );
    let local = tempfile::NamedTempFile::new().unwrap();
    assert_eq!(store.download(&padded, local.path()).await.unwrap(), size);
    assert_eq!(
        hex::encode(Sha256::digest(std::fs::read(local.path()).unwrap())),
        want
    );

    // Keys that would escape the store are refused before any I/O.
    assert!(matches!(
        store.put("../etc/passwd", Bytes::new()).await,
        Err(StorageError::BadKey { .. })
    ));
    assert!(matches!(
        store.get("/abs").await,
        Err(StorageError::BadKey { .. })
    ));
}

fn big_file() -> tempfile::NamedTempFile {
    // 20 MiB of non-repeating bytes: above the multipart threshold, three parts.
    let f = tempfile::NamedTempFile::new().unwrap();
    let mut data = Vec::with_capacity(20 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 20 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(f.path(), data).unwrap();
    f
}

#[tokio::test]
async fn the_file_backend_passes_the_suite() {
    let (store, _dir) = file_storage();
    let big = big_file();
    suite(&store, big.path()).await;
    let url = store
        .presign_get("t1/pipeline/padded_0.webm", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(url.starts_with("file:///"), "{url}");
}

#[tokio::test]
async fn the_s3_backend_passes_the_suite_against_a_real_server() {
    let server = S3Server::start("recordings");
    let store = server.storage("s3://recordings/reflow");
    let big = big_file();
    suite(&store, big.path()).await;
    // Objects live under the prefix, in the bucket.
    assert!(
        server
            .dir
            .path()
            .join("recordings/reflow/t1/pipeline/padded_0.webm")
            .exists()
    );
    // A presigned URL works without credentials, for its lifetime.
    store
        .put("t1/audio.json", Bytes::from_static(b"[0,128]"))
        .await
        .unwrap();
    let url = store
        .presign_get("t1/audio.json", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(url.contains("X-Amz-Signature"), "{url}");
    assert_eq!(http_get(&url), (200, b"[0,128]".to_vec()));
}

#[tokio::test]
async fn s3_failures_are_classified() {
    let server = S3Server::start("recordings");
    let mut wrong = server.config("s3://recordings");
    wrong.secret_access_key = Some("not-the-secret".into());
    let e = Storage::open(&wrong)
        .unwrap()
        .put("t1/x", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StorageError::AccessDenied { .. }),
        "bad credentials: {e}"
    );

    let e = server
        .storage("s3://no-such-bucket")
        .get("t1/x")
        .await
        .unwrap_err();
    assert!(
        matches!(e, StorageError::NotFound { .. }),
        "missing bucket: {e}"
    );

    let mut down = server.config("s3://recordings");
    down.endpoint = Some("http://127.0.0.1:9".into());
    let e = Storage::open(&down).unwrap().get("t1/x").await.unwrap_err();
    assert!(
        matches!(e, StorageError::Transient { .. }),
        "unreachable server is retryable: {e}"
    );
    assert!(!ActivityFailure::from(e).is_non_retryable());
}

#[test]
fn bad_urls_and_missing_credentials_are_config_errors() {
    for url in ["ftp://x/y", "not a url", "s3:///prefix"] {
        let e = Storage::open(&StorageConfig {
            url: url.into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, StorageError::Config(_)), "{url}: {e}");
    }
    let e = Storage::open(&StorageConfig {
        url: "s3://b/p".into(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
}
