//! Object storage: one interface, two backends chosen by URL.
//!
//! - `s3://bucket/prefix` — any S3-compatible service through `aws-sdk-s3` ([`s3`]): custom
//!   endpoint, path-style addressing, region and credentials from [`StorageConfig`] (filled from
//!   the environment by [`StorageConfig::from_vars`]); multipart upload for large objects;
//!   streaming reads.
//! - `file:///dir` — a local directory ([`file`]), the embedded default.
//!
//! Keys are relative (`{transcript_id}/audio.mp3`, see [`keys`]); the backend adds its prefix.
//! Every audio, transcription and LLM activity reads and writes through [`Storage`], and the
//! [`crate::checkpoint`] store keeps step results here.

pub mod file;
pub mod keys;
pub mod s3;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncRead;

use crate::error::ActivityFailure;

/// Objects at or above this size are uploaded in parts (S3).
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Size of one uploaded part (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage URL or credentials are unusable.
    #[error("storage configuration: {0}")]
    Config(String),
    /// A key is not a relative path inside the store.
    #[error("invalid object key {key:?}: {reason}")]
    BadKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// The object (or bucket) does not exist.
    #[error("object {key:?} not found in {store}")]
    NotFound {
        /// The key.
        key: String,
        /// The store, as its URL.
        store: String,
    },
    /// The service refused access.
    #[error("access to {key:?} in {store} denied: {message}")]
    AccessDenied {
        /// The key.
        key: String,
        /// The store.
        store: String,
        /// The service's words.
        message: String,
    },
    /// Anything a retry may fix: network, throttling, 5xx, local I/O.
    #[error("{operation} {key:?} in {store}: {message}")]
    Transient {
        /// What was being done.
        operation: &'static str,
        /// The key.
        key: String,
        /// The store.
        store: String,
        /// What went wrong.
        message: String,
    },
}

impl From<StorageError> for ActivityFailure {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Config(_) => ActivityFailure::Config(e.to_string()),
            StorageError::BadKey { .. } => ActivityFailure::InvalidInput(e.to_string()),
            StorageError::NotFound { .. } => ActivityFailure::NotFound(e.to_string()),
            StorageError::AccessDenied { .. } => ActivityFailure::AccessDenied(e.to_string()),
            StorageError::Transient { .. } => ActivityFailure::Transient(e.to_string()),
        }
    }
}

/// How to reach a store: its URL plus what an S3 client needs.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct StorageConfig {
    /// `s3://bucket[/prefix]` or `file:///absolute/dir`.
    pub url: String,
    /// S3 endpoint (`http://127.0.0.1:9000`); `None` means AWS.
    pub endpoint: Option<String>,
    /// S3 region (default `us-east-1`).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token (temporary credentials).
    pub session_token: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`); default: on when an endpoint is set.
    pub path_style: Option<bool>,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::redacted::Redacted;
        f.debug_struct("StorageConfig")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &Redacted(&self.secret_access_key))
            .field("session_token", &Redacted(&self.session_token))
            .field("path_style", &self.path_style)
            .finish()
    }
}

impl StorageConfig {
    /// `url` with S3 settings from `AWS_ENDPOINT_URL` (or `S3_ENDPOINT`), `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `S3_PATH_STYLE`.
    pub fn from_vars(url: &str, vars: crate::config::Vars<'_>) -> Self {
        let env = |k: &str| crate::config::non_empty(vars, k);
        StorageConfig {
            url: url.to_owned(),
            endpoint: env("AWS_ENDPOINT_URL").or_else(|| env("S3_ENDPOINT")),
            region: env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")),
            access_key_id: env("AWS_ACCESS_KEY_ID"),
            secret_access_key: env("AWS_SECRET_ACCESS_KEY"),
            session_token: env("AWS_SESSION_TOKEN"),
            path_style: env("S3_PATH_STYLE").map(|v| matches!(v.as_str(), "1" | "true" | "yes")),
        }
    }
}

impl StorageConfig {
    /// The Daily recordings bucket (docs/contracts/daily.md §1): `DAILYCO_STORAGE_AWS_BUCKET_NAME`,
    /// with `DAILYCO_STORAGE_AWS_{REGION,ACCESS_KEY_ID,SECRET_ACCESS_KEY,ENDPOINT_URL}` falling
    /// back to the transcript store's settings (`transcripts`); `None` when no bucket is named.
    pub fn daily_from_vars(
        transcripts: &StorageConfig,
        vars: crate::config::Vars<'_>,
    ) -> Option<StorageConfig> {
        let env = |k: &str| crate::config::non_empty(vars, k);
        let bucket = env("DAILYCO_STORAGE_AWS_BUCKET_NAME")?;
        Some(StorageConfig {
            url: format!("s3://{bucket}"),
            endpoint: env("DAILYCO_STORAGE_AWS_ENDPOINT_URL").or(transcripts.endpoint.clone()),
            region: env("DAILYCO_STORAGE_AWS_REGION").or(transcripts.region.clone()),
            access_key_id: env("DAILYCO_STORAGE_AWS_ACCESS_KEY_ID")
                .or(transcripts.access_key_id.clone()),
            secret_access_key: env("DAILYCO_STORAGE_AWS_SECRET_ACCESS_KEY")
                .or(transcripts.secret_access_key.clone()),
            session_token: transcripts.session_token.clone(),
            path_style: transcripts.path_style,
        })
    }
}

/// A store: S3-compatible or a local directory.
#[derive(Clone, Debug)]
pub enum Storage {
    /// An S3 bucket (and key prefix).
    S3(s3::S3Store),
    /// A local directory.
    File(file::FileStore),
}

/// A stream of an object's bytes.
pub type ObjectReader = Box<dyn AsyncRead + Send + Unpin>;

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Storage::S3($s) => $e,
            Storage::File($s) => $e,
        }
    };
}

impl Storage {
    /// Open the store a config names.
    pub fn open(config: &StorageConfig) -> Result<Storage, StorageError> {
        let url = url::Url::parse(&config.url).map_err(|e| {
            StorageError::Config(format!(
                "{:?} is not a URL ({e}); use s3://bucket/prefix or file:///dir",
                config.url
            ))
        })?;
        match url.scheme() {
            "s3" => Ok(Storage::S3(s3::S3Store::new(&url, config)?)),
            "file" => Ok(Storage::File(file::FileStore::new(&url)?)),
            other => Err(StorageError::Config(format!(
                "storage URL scheme {other:?} is not supported; use s3://bucket/prefix or file:///dir"
            ))),
        }
    }

    /// The store's URL (`s3://bucket/prefix`, `file:///dir`), as messages and checkpoint keys
    /// name it.
    pub fn url(&self) -> &str {
        dispatch!(self, s => s.url())
    }

    /// The store holding `bucket` (Daily names the bucket of each recording): for S3 the same
    /// service and credentials on that bucket, unless it is this store's own; a directory
    /// store has no buckets and is returned as is.
    pub fn in_bucket(&self, bucket: Option<&str>) -> Storage {
        match (self, bucket) {
            (Storage::S3(s), Some(b)) if !b.is_empty() && b != s.bucket() => {
                Storage::S3(s.in_bucket(b))
            }
            _ => self.clone(),
        }
    }

    /// The bucket name metrics label this store's traffic with (`file` for a directory).
    pub fn bucket_label(&self) -> &str {
        match self {
            Storage::S3(s) => s.bucket(),
            Storage::File(_) => "file",
        }
    }

    /// Write `bytes` to `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        keys::check(key)?;
        let n = bytes.len() as u64;
        dispatch!(self, s => s.put(key, bytes).await)?;
        crate::metrics::storage_bytes(self.bucket_label(), "write", n);
        Ok(())
    }

    /// Upload a local file to `key`, streaming (in parts when large).
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<u64, StorageError> {
        keys::check(key)?;
        let n = dispatch!(self, s => s.put_file(key, path).await)?;
        crate::metrics::storage_bytes(self.bucket_label(), "write", n);
        Ok(n)
    }

    /// Read a whole object (for small objects: JSON, word lists).
    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        keys::check(key)?;
        let bytes = dispatch!(self, s => s.get(key).await)?;
        crate::metrics::storage_bytes(self.bucket_label(), "read", bytes.len() as u64);
        Ok(bytes)
    }

    /// Stream an object.
    pub async fn reader(&self, key: &str) -> Result<ObjectReader, StorageError> {
        keys::check(key)?;
        dispatch!(self, s => s.reader(key).await)
    }

    /// Copy an object to a local file, streaming; returns its size.
    pub async fn download(&self, key: &str, path: &Path) -> Result<u64, StorageError> {
        let mut reader = self.reader(key).await?;
        let transient = |e: std::io::Error| StorageError::Transient {
            operation: "download",
            key: key.to_owned(),
            store: self.url().to_owned(),
            message: e.to_string(),
        };
        let mut file = tokio::fs::File::create(path).await.map_err(transient)?;
        let n = tokio::io::copy(&mut reader, &mut file)
            .await
            .map_err(transient)?;
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(transient)?;
        crate::metrics::storage_bytes(self.bucket_label(), "read", n);
        Ok(n)
    }

    /// Stream bytes `first..=last` of an object (HTTP range requests).
    pub async fn range_reader(
        &self,
        key: &str,
        first: u64,
        last: u64,
    ) -> Result<ObjectReader, StorageError> {
        keys::check(key)?;
        dispatch!(self, s => s.range_reader(key, first, last).await)
    }

    /// An object's size, or `None` when it does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        keys::check(key)?;
        dispatch!(self, s => s.size(key).await)
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        keys::check(key)?;
        dispatch!(self, s => s.exists(key).await)
    }

    /// Delete an object; deleting a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        keys::check(key)?;
        dispatch!(self, s => s.delete(key).await)
    }

    /// Keys under a prefix, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        dispatch!(self, s => s.list(prefix).await)
    }

    /// A URL a service can GET the object from for `ttl` (S3: presigned; file: `file://`).
    /// Call it inside the activity that hands the URL out; never put it in a payload.
    pub async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, StorageError> {
        keys::check(key)?;
        dispatch!(self, s => s.presign_get(key, ttl).await)
    }
}
