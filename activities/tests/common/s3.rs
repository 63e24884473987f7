//! A real S3-compatible server (s3s-fs) on a free port for tests; shared by the activity
//! tests and the integration tests (`tests/src/lib.rs` includes this file).

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use activities::storage::{Storage, StorageConfig};

/// Access key of the test server.
pub const KEY: &str = "reflow-test-key";
/// Secret key of the test server.
pub const SECRET: &str = "reflow-test-secret";

/// A running s3s-fs; killed on drop.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub endpoint: String,
    /// The directory it serves (one sub-directory per bucket).
    pub dir: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs() -> PathBuf {
    if let Ok(p) = std::env::var("S3S_FS") {
        return p.into();
    }
    let cargo_bin = Path::new(&std::env::var("HOME").unwrap_or_default()).join(".cargo/bin/s3s-fs");
    if cargo_bin.exists() {
        cargo_bin
    } else {
        "s3s-fs".into()
    }
}

impl S3Server {
    /// Start s3s-fs with an empty bucket `bucket`.
    pub fn start(bucket: &str) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(bucket)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // `setpriv --pdeathsig`: a test process killed mid-run takes its server with it.
        let child = Command::new("setpriv")
            .arg("--pdeathsig=SIGKILL")
            .arg(s3s_fs())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                KEY,
                "--secret-key",
                SECRET,
            ])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start s3s-fs ({}): {e}; run `just setup`",
                    s3s_fs().display()
                )
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    /// Create another (empty) bucket.
    pub fn add_bucket(&self, bucket: &str) {
        std::fs::create_dir_all(self.dir.path().join(bucket)).unwrap();
    }

    /// The config of `s3://bucket/prefix` on this server.
    pub fn config(&self, url: &str) -> StorageConfig {
        StorageConfig {
            url: url.to_owned(),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(KEY.into()),
            secret_access_key: Some(SECRET.into()),
            session_token: None,
            path_style: Some(true),
        }
    }

    /// `s3://bucket/prefix` on this server.
    pub fn storage(&self, url: &str) -> Storage {
        Storage::open(&self.config(url)).unwrap()
    }
}
