//! The `file:///dir` backend: objects are files under a directory (the embedded default).
//!
//! Writes go to a temporary file in the same directory and are renamed into place, so a
//! reader never sees half an object and a crash leaves no partial one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use super::{ObjectReader, StorageError};

/// A directory used as an object store.
#[derive(Clone, Debug)]
pub struct FileStore {
    root: PathBuf,
    url: String,
}

impl FileStore {
    /// `file:///absolute/dir` (created if missing when first written).
    pub fn new(url: &url::Url) -> Result<Self, StorageError> {
        let root = url
            .to_file_path()
            .map_err(|()| StorageError::Config(format!("{url} is not an absolute file:// path")))?;
        Ok(FileStore {
            url: url.as_str().trim_end_matches('/').to_owned(),
            root,
        })
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn err(&self, operation: &'static str, key: &str, e: std::io::Error) -> StorageError {
        let (key, store) = (key.to_owned(), self.url.clone());
        match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound { key, store },
            std::io::ErrorKind::PermissionDenied => StorageError::AccessDenied {
                key,
                store,
                message: e.to_string(),
            },
            _ => StorageError::Transient {
                operation,
                key,
                store,
                message: e.to_string(),
            },
        }
    }

    async fn tmp_for(&self, key: &str) -> Result<PathBuf, StorageError> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.root);
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| self.err("create directory for", key, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(dir.join(format!(".{name}.{}.tmp", std::process::id())))
    }

    pub(super) async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let tmp = self.tmp_for(key).await?;
        tokio::fs::write(&tmp, &bytes)
            .await
            .map_err(|e| self.err("write", key, e))?;
        tokio::fs::rename(&tmp, self.path(key))
            .await
            .map_err(|e| self.err("write", key, e))
    }

    pub(super) async fn put_file(&self, key: &str, path: &Path) -> Result<u64, StorageError> {
        let tmp = self.tmp_for(key).await?;
        let n = tokio::fs::copy(path, &tmp)
            .await
            .map_err(|e| self.err("upload", key, e))?;
        tokio::fs::rename(&tmp, self.path(key))
            .await
            .map_err(|e| self.err("upload", key, e))?;
        Ok(n)
    }

    pub(super) async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        tokio::fs::read(self.path(key))
            .await
            .map(Bytes::from)
            .map_err(|e| self.err("read", key, e))
    }

    pub(super) async fn reader(&self, key: &str) -> Result<ObjectReader, StorageError> {
        let f = tokio::fs::File::open(self.path(key))
            .await
            .map_err(|e| self.err("open", key, e))?;
        Ok(Box::new(tokio::io::BufReader::with_capacity(256 * 1024, f)))
    }

    pub(super) async fn range_reader(
        &self,
        key: &str,
        first: u64,
        last: u64,
    ) -> Result<ObjectReader, StorageError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut f = tokio::fs::File::open(self.path(key))
            .await
            .map_err(|e| self.err("open", key, e))?;
        f.seek(std::io::SeekFrom::Start(first))
            .await
            .map_err(|e| self.err("seek", key, e))?;
        Ok(Box::new(f.take(last + 1 - first)))
    }

    pub(super) async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match tokio::fs::metadata(self.path(key)).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("stat", key, e)),
        }
    }

    pub(super) async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        Ok(self.size(key).await?.is_some())
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path(key)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.err("delete", key, e)),
            _ => Ok(()),
        }
    }

    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        // Walk from the deepest directory the prefix names, then filter by the full prefix.
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let mut out = Vec::new();
        let mut stack = vec![self.root.join(dir_part)];
        while let Some(dir) = stack.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err("list", prefix, e)),
            };
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| self.err("list", prefix, e))?
            {
                let path = entry.path();
                let file_type = entry
                    .file_type()
                    .await
                    .map_err(|e| self.err("list", prefix, e))?;
                if file_type.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel.to_string_lossy().into_owned();
                    let hidden = rel
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                    if key.starts_with(prefix) && !hidden {
                        out.push(key);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    pub(super) async fn presign_get(
        &self,
        key: &str,
        _ttl: Duration,
    ) -> Result<String, StorageError> {
        url::Url::from_file_path(self.path(key))
            .map(String::from)
            .map_err(|()| {
                StorageError::Config(format!(
                    "{} is not an absolute path",
                    self.path(key).display()
                ))
            })
    }
}
