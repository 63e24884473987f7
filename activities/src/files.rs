//! The local file system, as used by the example pipeline (`pipelines/digest.yaml`): list a
//! directory, checksum one file, write a report.
//!
//! Small and real: `reflow demo` runs it end to end through the same interpreter, child
//! workflows, heartbeats and retries as the meeting pipeline. Payloads carry paths and
//! digests, never file contents. `write_report` writes only inside the worker's data
//! directory (an absolute path elsewhere, a `..` segment or a symlink out of it is refused),
//! and production workers do not register these activities at all.

// `#[activities]` generates one undocumented marker constant per activity.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tokio::io::AsyncReadExt;

use crate::error::ActivityFailure;

/// Input of `list_files`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListFilesInput {
    /// Directory to list (not recursively).
    pub dir: String,
    /// Keep only names ending with this suffix (e.g. `.yaml`).
    #[serde(default)]
    pub suffix: Option<String>,
}

/// One listed file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ListedFile {
    /// Absolute path.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// Output of `list_files`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListFilesOutput {
    /// Regular files, sorted by path.
    pub files: Vec<ListedFile>,
}

/// Input of `digest_file`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DigestInput {
    /// The file.
    pub path: String,
}

/// Output of `digest_file`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct DigestOutput {
    /// The file.
    pub path: String,
    /// Hex sha256 of its content.
    pub sha256: String,
    /// Bytes read.
    pub bytes: u64,
}

/// Input of `write_report`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportInput {
    /// Where to write the report (JSON).
    pub path: String,
    /// The digests to list.
    pub digests: Vec<DigestOutput>,
}

/// Output of `write_report`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReportOutput {
    /// Where it was written.
    pub path: String,
    /// Files listed.
    pub files: usize,
    /// Sum of their sizes.
    pub total_bytes: u64,
}

/// Heartbeat details of `digest_file`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DigestProgress {
    /// Bytes hashed so far.
    pub done_bytes: u64,
    /// File size.
    pub total_bytes: u64,
}

/// File-system activities; files are written under `root` only.
pub struct FileActivities {
    root: PathBuf,
}

impl FileActivities {
    /// Activities that write inside `root` (the worker's data directory).
    pub fn new(root: PathBuf) -> Self {
        FileActivities { root }
    }
}

/// The file steps (the example pipeline's), declared (`crate::step`).
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    use crate::step::{Declare as _, Step};
    catalog
        .declare(FileActivities::list_files, Step::FREE)
        .declare(FileActivities::digest_file, Step::FREE)
        .declare(FileActivities::write_report, Step::FREE)
}

const CHUNK: usize = 1 << 20;

#[activities]
impl FileActivities {
    /// List the regular files of a directory.
    #[activity(name = "list_files")]
    pub async fn list_files(
        _ctx: ActivityContext,
        input: ListFilesInput,
    ) -> Result<ListFilesOutput, ActivityError> {
        list(&input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// Sha256 of one file, streamed in 1 MiB chunks with heartbeats.
    #[activity(name = "digest_file")]
    pub async fn digest_file(
        ctx: ActivityContext,
        input: DigestInput,
    ) -> Result<DigestOutput, ActivityError> {
        digest(&ctx, input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }

    /// Write the digests as a JSON report inside the data directory, atomically (temp file +
    /// rename).
    #[activity(name = "write_report")]
    pub async fn write_report(
        self: std::sync::Arc<Self>,
        _ctx: ActivityContext,
        input: ReportInput,
    ) -> Result<ReportOutput, ActivityError> {
        write(&self.root, &input)
            .await
            .map_err(ActivityFailure::into_activity_error)
    }
}

async fn digest(
    ctx: &ActivityContext,
    input: DigestInput,
) -> Result<DigestOutput, ActivityFailure> {
    let path = &input.path;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ActivityFailure::io(path, e))?;
    let total = file
        .metadata()
        .await
        .map_err(|e| ActivityFailure::io(path, e))?
        .len();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    let mut last_beat = std::time::Instant::now();
    loop {
        if ctx.is_cancelled() {
            return Err(ActivityFailure::Cancelled);
        }
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| ActivityFailure::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        if last_beat.elapsed() > Duration::from_secs(1) {
            ctx.record_heartbeat(DigestProgress {
                done_bytes: done,
                total_bytes: total,
            })
            .await
            .map_err(|e| ActivityFailure::Transient(format!("heartbeat: {e}")))?;
            last_beat = std::time::Instant::now();
        }
    }
    Ok(DigestOutput {
        path: input.path,
        sha256: hex::encode(hasher.finalize()),
        bytes: done,
    })
}

async fn list(input: &ListFilesInput) -> Result<ListFilesOutput, ActivityFailure> {
    let dir = Path::new(&input.dir);
    if !dir.is_absolute() {
        return Err(ActivityFailure::InvalidInput(format!(
            "dir {:?} must be an absolute path",
            input.dir
        )));
    }
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(|e| ActivityFailure::io(&input.dir, e))?;
    let mut files = Vec::new();
    while let Some(e) = entries
        .next_entry()
        .await
        .map_err(|e| ActivityFailure::io(&input.dir, e))?
    {
        let meta = e
            .metadata()
            .await
            .map_err(|err| ActivityFailure::io(e.path().display().to_string(), err))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !meta.is_file() || input.suffix.as_deref().is_some_and(|s| !name.ends_with(s)) {
            continue;
        }
        files.push(ListedFile {
            path: e.path().display().to_string(),
            bytes: meta.len(),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(ListFilesOutput { files })
}

/// `path` if it names a file inside `root`: absolute, no `.`/`..` segment, its directory
/// (created if missing) resolving inside `root` once symlinks are followed, and not itself a
/// symlink.
async fn confined(root: &Path, path: &str) -> Result<PathBuf, ActivityFailure> {
    let refuse = |why: &str| {
        ActivityFailure::AccessDenied(format!(
            "report path {path:?} {why}: files are written inside the data directory {} only",
            root.display()
        ))
    };
    let p = PathBuf::from(path);
    if !p.is_absolute() {
        return Err(refuse("is not absolute"));
    }
    if p.components().any(|c| {
        !matches!(
            c,
            std::path::Component::RootDir | std::path::Component::Normal(_)
        )
    }) {
        return Err(refuse("has a `.` or `..` segment"));
    }
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        return Err(refuse("names no file"));
    };
    tokio::fs::create_dir_all(root)
        .await
        .map_err(|e| ActivityFailure::io(root.display().to_string(), e))?;
    let root = tokio::fs::canonicalize(root)
        .await
        .map_err(|e| ActivityFailure::io(root.display().to_string(), e))?;
    // Refuse before creating anything outside the root.
    if !parent.starts_with(&root)
        && !tokio::fs::canonicalize(parent)
            .await
            .is_ok_and(|real| real.starts_with(&root))
    {
        return Err(refuse("is outside the data directory"));
    }
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| ActivityFailure::io(parent.display().to_string(), e))?;
    let real_parent = tokio::fs::canonicalize(parent)
        .await
        .map_err(|e| ActivityFailure::io(parent.display().to_string(), e))?;
    if !real_parent.starts_with(&root) {
        return Err(refuse("leads outside the data directory through a symlink"));
    }
    let target = real_parent.join(name);
    if tokio::fs::symlink_metadata(&target)
        .await
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        return Err(refuse("is a symlink"));
    }
    Ok(target)
}

async fn write(root: &Path, input: &ReportInput) -> Result<ReportOutput, ActivityFailure> {
    let path = confined(root, &input.path).await?;
    let body = serde_json::to_vec_pretty(&serde_json::json!({ "files": input.digests }))
        .map_err(|e| ActivityFailure::InvalidInput(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, body)
        .await
        .map_err(|e| ActivityFailure::io(tmp.display().to_string(), e))?;
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(|e| ActivityFailure::io(&input.path, e))?;
    Ok(ReportOutput {
        path: input.path.clone(),
        files: input.digests.len(),
        total_bytes: input.digests.iter().map(|d| d.bytes).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_are_written_inside_the_data_directory_only() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let input = |path: String| ReportInput {
            path,
            digests: Vec::new(),
        };
        let inside = root.path().join("reports/r.json");
        write(root.path(), &input(inside.display().to_string()))
            .await
            .unwrap();
        assert!(inside.exists());
        let evil = outside.path().join("evil.json");
        let e = write(root.path(), &input(evil.display().to_string()))
            .await
            .unwrap_err();
        assert_eq!(e.type_name(), "AccessDenied", "{e}");
        assert!(!evil.exists());
        let dotdot = format!("{}/../evil.json", root.path().display());
        assert!(write(root.path(), &input(dotdot)).await.is_err());
        assert!(
            write(root.path(), &input("relative.json".into()))
                .await
                .is_err()
        );
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        let through = root.path().join("link/evil.json");
        let e = write(root.path(), &input(through.display().to_string()))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(!outside.path().join("evil.json").exists());
    }

    #[tokio::test]
    async fn lists_sorted_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), b"bb").unwrap();
        std::fs::write(dir.path().join("a.txt"), b"a").unwrap();
        std::fs::write(dir.path().join("c.bin"), b"c").unwrap();
        std::fs::create_dir(dir.path().join("sub.txt")).unwrap();
        let out = list(&ListFilesInput {
            dir: dir.path().display().to_string(),
            suffix: Some(".txt".into()),
        })
        .await
        .unwrap();
        let names: Vec<_> = out
            .files
            .iter()
            .map(|f| Path::new(&f.path).file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a.txt", "b.txt"]);
        assert_eq!(out.files[1].bytes, 2);
    }

    #[tokio::test]
    async fn relative_or_missing_dirs_fail_without_retry() {
        let e = list(&ListFilesInput {
            dir: "rel".into(),
            suffix: None,
        })
        .await
        .unwrap_err();
        assert!(e.is_non_retryable());
        let e = list(&ListFilesInput {
            dir: "/definitely/not/here".into(),
            suffix: None,
        })
        .await
        .unwrap_err();
        assert_eq!(e.type_name(), "NotFound");
    }
}
