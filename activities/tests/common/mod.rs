//! Service fixtures for the activity tests: a real S3-compatible server (s3s-fs) on a free
//! port, and both storage backends ready to use.

#![allow(dead_code)]

mod s3;

pub use s3::S3Server;

use activities::storage::{Storage, StorageConfig};

/// A `file://` store in a fresh directory (kept alive by the returned guard).
pub fn file_storage() -> (Storage, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path()).unwrap();
    (
        Storage::open(&StorageConfig {
            url: url.to_string(),
            ..Default::default()
        })
        .unwrap(),
        dir,
    )
}

/// GET a URL over plain HTTP/1.0 (presigned URLs of the local server); returns status and body.
pub fn http_get(url: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let u = url::Url::parse(url).unwrap();
    let mut s = TcpStream::connect((u.host_str().unwrap(), u.port().unwrap())).unwrap();
    let path = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    };
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {}:{}\r\n\r\n",
        u.host_str().unwrap(),
        u.port().unwrap()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}
