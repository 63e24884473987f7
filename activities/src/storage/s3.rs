//! The `s3://bucket/prefix` backend, through `aws-sdk-s3`.
//!
//! Works with AWS and with S3-compatible servers (custom endpoint, path-style addressing).
//! Credentials come from [`StorageConfig`] (the `AWS_*` variables); instance roles are not
//! looked up. Large uploads go in parts, reads stream. Failures are classified once, here:
//! missing key or bucket → `NotFound`, 401/403 → `AccessDenied` (neither retried), everything
//! else (throttling, 5xx, network) → retryable.

use std::fmt::Debug;
use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::{MULTIPART_THRESHOLD, ObjectReader, PART_SIZE, StorageConfig, StorageError};

/// Connect timeout of every S3 call.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the next bytes of a response.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A bucket and key prefix on an S3-compatible service.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    url: String,
}

impl S3Store {
    /// Build the client for `s3://bucket[/prefix]`.
    pub fn new(url: &url::Url, config: &StorageConfig) -> Result<Self, StorageError> {
        let bucket = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                StorageError::Config(format!("{url} names no bucket; use s3://bucket/prefix"))
            })?
            .to_owned();
        let prefix = url.path().trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let (Some(key_id), Some(secret)) = (&config.access_key_id, &config.secret_access_key)
        else {
            return Err(StorageError::Config(format!(
                "no credentials for {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )));
        };
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(
                config.region.clone().unwrap_or_else(|| "us-east-1".into()),
            ))
            .credentials_provider(Credentials::new(
                key_id,
                secret,
                config.session_token.clone(),
                None,
                "reflow",
            ))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .build(),
            )
            .force_path_style(config.path_style.unwrap_or(config.endpoint.is_some()));
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(S3Store {
            client: Client::from_conf(builder.build()),
            url: format!("s3://{bucket}/{prefix}")
                .trim_end_matches('/')
                .to_owned(),
            bucket,
            prefix,
        })
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// The same service and credentials, another bucket (no prefix).
    pub(super) fn in_bucket(&self, bucket: &str) -> S3Store {
        S3Store {
            client: self.client.clone(),
            bucket: bucket.to_owned(),
            prefix: String::new(),
            url: format!("s3://{bucket}"),
        }
    }

    pub(super) fn bucket(&self) -> &str {
        &self.bucket
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn classify<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static, R: Debug>(
        &self,
        operation: &'static str,
        key: &str,
        err: SdkError<E, R>,
    ) -> StorageError {
        let status = match &err {
            SdkError::ServiceError(s) => format!("{:?}", s.raw()),
            _ => String::new(),
        };
        let (key, store) = (key.to_owned(), self.url.clone());
        let code = err.code().unwrap_or_default().to_owned();
        let message = DisplayErrorContext(&err).to_string();
        if matches!(code.as_str(), "NoSuchKey" | "NoSuchBucket" | "NotFound")
            || status.contains("status: 404")
        {
            StorageError::NotFound { key, store }
        } else if matches!(
            code.as_str(),
            "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "Forbidden"
        ) || status.contains("status: 403")
            || status.contains("status: 401")
        {
            StorageError::AccessDenied {
                key,
                store,
                message,
            }
        } else {
            StorageError::Transient {
                operation,
                key,
                store,
                message,
            }
        }
    }

    pub(super) async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.classify("put", key, e))?;
        Ok(())
    }

    pub(super) async fn put_file(&self, key: &str, path: &Path) -> Result<u64, StorageError> {
        let local = |e: std::io::Error| StorageError::Transient {
            operation: "read local file for",
            key: key.to_owned(),
            store: path.display().to_string(),
            message: e.to_string(),
        };
        let size = tokio::fs::metadata(path).await.map_err(local)?.len();
        if size < MULTIPART_THRESHOLD {
            let body = ByteStream::from_path(path)
                .await
                .map_err(|e| local(std::io::Error::other(e)))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(self.full(key))
                .body(body)
                .send()
                .await
                .map_err(|e| self.classify("upload", key, e))?;
            return Ok(size);
        }
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| self.classify("start multipart upload of", key, e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_owned();
        let result = self.upload_parts(key, path, &upload_id).await;
        match result {
            Ok(parts) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(self.full(key))
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| self.classify("complete multipart upload of", key, e))?;
                Ok(size)
            }
            Err(e) => {
                // Leave no orphaned parts behind (they cost money and never expire by default).
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(self.full(key))
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        path: &Path,
        upload_id: &str,
    ) -> Result<Vec<CompletedPart>, StorageError> {
        let local = |e: std::io::Error| StorageError::Transient {
            operation: "read local file for",
            key: key.to_owned(),
            store: path.display().to_string(),
            message: e.to_string(),
        };
        let mut file = tokio::fs::File::open(path).await.map_err(local)?;
        let mut parts = Vec::new();
        for number in 1.. {
            // One part in memory at a time: memory stays at PART_SIZE whatever the file size.
            let mut buf = Vec::with_capacity(PART_SIZE);
            (&mut file)
                .take(PART_SIZE as u64)
                .read_to_end(&mut buf)
                .await
                .map_err(local)?;
            if buf.is_empty() {
                break;
            }
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(self.full(key))
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(buf))
                .send()
                .await
                .map_err(|e| self.classify("upload part of", key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .build(),
            );
        }
        Ok(parts)
    }

    async fn get_object(
        &self,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StorageError> {
        self.get_object_range(key, None).await
    }

    async fn get_object_range(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StorageError> {
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .set_range(range.map(|(a, b)| format!("bytes={a}-{b}")))
            .send()
            .await
            .map_err(|e| self.classify("get", key, e))
    }

    pub(super) async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let data = self
            .get_object(key)
            .await?
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Transient {
                operation: "read",
                key: key.to_owned(),
                store: self.url.clone(),
                message: e.to_string(),
            })?;
        Ok(data.into_bytes())
    }

    pub(super) async fn reader(&self, key: &str) -> Result<ObjectReader, StorageError> {
        Ok(Box::new(self.get_object(key).await?.body.into_async_read()))
    }

    pub(super) async fn range_reader(
        &self,
        key: &str,
        first: u64,
        last: u64,
    ) -> Result<ObjectReader, StorageError> {
        let out = self.get_object_range(key, Some((first, last))).await?;
        Ok(Box::new(out.body.into_async_read()))
    }

    pub(super) async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(h) => Ok(Some(h.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) => match self.classify("stat", key, e) {
                StorageError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    pub(super) async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        Ok(self.size(key).await?.is_some())
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.classify("delete", key, e) {
                StorageError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full(prefix))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.classify("list", prefix, e))?;
            for o in page.contents() {
                if let Some(k) = o.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    out.push(k.to_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    pub(super) async fn presign_get(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<String, StorageError> {
        let config =
            PresigningConfig::expires_in(ttl).map_err(|e| StorageError::Config(e.to_string()))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .presigned(config)
            .await
            .map_err(|e| self.classify("presign", key, e))?;
        Ok(req.uri().to_owned())
    }
}
