//! Open mode (no credentials, on 127.0.0.1) against DNS rebinding: a web page whose name was
//! rebound to 127.0.0.1 reaches the API through the visitor's browser with its own name in
//! `Host` and its own `Origin`. A real server in open mode refuses both, on REST and on the
//! transcript WebSocket, and answers loopback requests as before.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One raw HTTP/1.1 request to `addr` with `headers`; the status code.
async fn status(addr: &str, path: &str, headers: &[(&str, String)]) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let head = String::from_utf8_lossy(&out);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

#[tokio::test]
async fn open_mode_refuses_rebound_hosts_and_foreign_origins() {
    let services = reflow_tests::services();
    let addr = reflow_tests::serve_api(reflow::http::ApiState::new(
        services.events.clone(),
        reflow_tests::storage(),
    ))
    .await;
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let path = "/v1/transcripts/no-such-transcript";
    // A loopback client: the API answers (the transcript does not exist).
    assert_eq!(status(&addr, path, &[("Host", addr.clone())]).await, 404);
    assert_eq!(
        status(&addr, path, &[("Host", format!("localhost:{port}"))]).await,
        404
    );
    // The rebound name in Host: refused before any route runs.
    assert_eq!(
        status(&addr, path, &[("Host", format!("rebind.example:{port}"))]).await,
        403
    );
    // A foreign page's request with a loopback Host (rebinding, or a cross-site fetch).
    assert_eq!(
        status(
            &addr,
            path,
            &[
                ("Host", addr.clone()),
                ("Origin", "http://rebind.example".into())
            ]
        )
        .await,
        403
    );
    // The WebSocket upgrade from a foreign page is refused; from a loopback page it is not
    // refused by this guard.
    let upgrade = |origin: &str| {
        vec![
            ("Host", addr.clone()),
            ("Origin", origin.to_owned()),
            ("Upgrade", "websocket".to_owned()),
            ("Connection", "Upgrade".to_owned()),
            ("Sec-WebSocket-Version", "13".to_owned()),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
        ]
    };
    let ws = "/v1/transcripts/no-such-transcript/events";
    assert_eq!(
        status(&addr, ws, &upgrade("http://rebind.example")).await,
        403
    );
    assert_ne!(
        status(&addr, ws, &upgrade(&format!("http://127.0.0.1:{port}"))).await,
        403
    );
}
