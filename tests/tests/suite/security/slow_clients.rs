//! Connection slots cannot be held for free (issue 39 item 4), tried against a real server
//! with small limits read from the settings (`REFLOW_HTTP_MAX_CONNECTIONS=4`, …):
//!
//! - four silent sockets and one that sends half the HTTP/2 preface take every slot; the
//!   server closes them within the head timeout and a GET is answered;
//! - one client address holding its share of connections gets further ones closed at once,
//!   while another address is served;
//! - an HTTP/2 connection that answers pings but sends no request is closed within the head
//!   timeout, and one whose request was answered is closed once idle;
//! - WebSockets are capped per process and per client address (503 over the cap), and a
//!   closed socket gives its slot back.

use std::net::{IpAddr, SocketAddr};

use reflow::http::limits::{HEADER_READ_TIMEOUT, HttpLimits};
use tokio::net::{TcpSocket, TcpStream};

use super::*;

/// The limits the settings make of `vars`.
fn limits(vars: &[(&str, &str)]) -> HttpLimits {
    HttpLimits::from_settings(&reflow::settings::Settings::from_vars(
        Default::default(),
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    ))
}

/// An API in open mode with `limits`, serving one public transcript `t-pub`.
async fn api_with(limits: HttpLimits) -> String {
    let db = temp_db().await;
    db.create_transcript(&activities::db::transcripts::NewTranscript {
        id: "t-pub".into(),
        share_mode: Some("public".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    reflow_tests::serve_api(ApiState {
        limits,
        ..ApiState::new(
            activities::events::Events::new(db, Default::default(), Default::default()),
            reflow_tests::storage(),
        )
    })
    .await
}

/// A TCP connection to `api` from the loopback address `from`.
async fn connect_from(from: &str, api: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(api.parse().unwrap()).await.unwrap()
}

/// How long until the server closes `stream` (reading and dropping whatever it sends), if
/// within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

/// `GET /v1/transcripts/t-pub` over a fresh connection from `from`: the status, or the error.
async fn get_from(from: &str, api: &str, limit: Duration) -> Result<u16, String> {
    let http = reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .timeout(limit)
        .build()
        .unwrap();
    http.get(format!("http://{api}/v1/transcripts/t-pub"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_and_half_an_h2_preface_release_their_slots() {
    let api = api_with(limits(&[
        ("REFLOW_HTTP_MAX_CONNECTIONS", "4"),
        ("REFLOW_HTTP_MAX_CONNECTIONS_PER_CLIENT", "4"),
    ]))
    .await;
    // Half the HTTP/2 preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" is 24 bytes), then nothing.
    let mut half_preface = TcpStream::connect(&api).await.unwrap();
    half_preface.write_all(b"PRI * HTTP/2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Four silent sockets: three take the remaining slots, one waits in the backlog.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(&api).await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let bound = HEADER_READ_TIMEOUT + Duration::from_secs(5);
    let answered = get_from("127.0.0.1", &api, bound).await;
    let waited = started.elapsed();
    eprintln!("GET behind 4 held slots answered {answered:?} after {waited:?}");
    assert_eq!(answered, Ok(200), "after {waited:?}");
    assert!(
        waited >= HEADER_READ_TIMEOUT / 2,
        "the GET was not held back at all ({waited:?}): the slots were not taken"
    );
    let closed = closed_within(&mut half_preface, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "half a preface still holds its connection"
    );
    for (i, s) in silent.iter_mut().take(3).enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(5)).await.is_some(),
            "silent socket {i} still open"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_connection() {
    let api = api_with(limits(&[
        ("REFLOW_HTTP_MAX_CONNECTIONS", "8"),
        ("REFLOW_HTTP_MAX_CONNECTIONS_PER_CLIENT", "2"),
    ]))
    .await;
    let _held = [
        connect_from("127.0.0.1", &api).await,
        connect_from("127.0.0.1", &api).await,
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A third connection of the same address is closed at once, and it gets no answer.
    let mut third = connect_from("127.0.0.1", &api).await;
    let closed = closed_within(&mut third, Duration::from_secs(3)).await;
    eprintln!("a third connection of one client closed after {closed:?}");
    assert!(closed.is_some(), "a client held more than its share");
    assert!(
        get_from("127.0.0.1", &api, Duration::from_secs(3))
            .await
            .is_err()
    );
    // Another client is served at once.
    let started = Instant::now();
    assert_eq!(
        get_from("127.0.0.2", &api, Duration::from_secs(3)).await,
        Ok(200)
    );
    eprintln!("another client answered in {:?}", started.elapsed());
}

/// An HTTP/2 frame: `(type, flags, stream, payload)`.
type H2Frame = (u8, u8, u32, Vec<u8>);

async fn h2_write(s: &mut TcpStream, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    s.write_all(&frame).await.unwrap();
}

/// The next frame, answering the server's SETTINGS and PINGs as any HTTP/2 client does;
/// `None` when the connection closed.
async fn h2_next(s: &mut TcpStream) -> Option<H2Frame> {
    loop {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.ok()?;
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.ok()?;
        match (head[3], head[4]) {
            (4, 0) => h2_write(s, 4, 1, 0, &[]).await,
            (6, 0) => h2_write(s, 6, 1, 0, &payload).await,
            (4 | 6, _) | (8, _) => {}
            (kind, flags) => return Some((kind, flags, stream, payload)),
        }
    }
}

/// Open an HTTP/2 connection (preface and empty SETTINGS).
async fn h2_connect(api: &str) -> TcpStream {
    let mut s = TcpStream::connect(api).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    h2_write(&mut s, 4, 0, 0, &[]).await;
    s
}

/// Frames until the server sends GOAWAY or closes; when, and what was seen.
async fn h2_until_goaway(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    tokio::time::timeout(limit, async {
        while let Some((kind, ..)) = h2_next(s).await {
            if kind == 7 {
                return;
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed() {
    let api = api_with(limits(&[("REFLOW_HTTP_IDLE_TIMEOUT", "3")])).await;
    // A client that speaks HTTP/2 (and answers pings) but never asks for anything.
    let mut quiet = h2_connect(&api).await;
    let closed = h2_until_goaway(&mut quiet, HEADER_READ_TIMEOUT + Duration::from_secs(5)).await;
    eprintln!("an HTTP/2 connection without a request closed after {closed:?}");
    assert!(
        closed.is_some(),
        "an HTTP/2 connection with no request stayed open"
    );

    // One request, answered; then the connection is idle.
    let mut idle = h2_connect(&api).await;
    // HPACK: :method GET, :scheme http, :path /v1/transcripts/t-pub, :authority localhost
    // (open mode answers loopback hosts only).
    let path = b"/v1/transcripts/t-pub";
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"localhost");
    h2_write(&mut idle, 1, 0x5, 1, &block).await;
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        let mut status = None;
        while let Some((kind, flags, stream, payload)) = h2_next(&mut idle).await {
            if stream == 1 && kind == 1 {
                // `:status 200` is static index 8.
                status = Some(payload.first() == Some(&0x88));
            }
            if stream == 1 && (kind == 0 || kind == 1) && flags & 1 == 1 {
                return status;
            }
        }
        None
    })
    .await
    .expect("the HTTP/2 request is answered");
    assert_eq!(answered, Some(true), "200 over HTTP/2");
    let closed = h2_until_goaway(&mut idle, Duration::from_secs(20)).await;
    eprintln!("an idle HTTP/2 connection (idle timeout 3 s) closed after {closed:?}");
    let closed = closed.expect("an idle HTTP/2 connection stayed open");
    assert!(
        closed >= Duration::from_secs(2) && closed <= Duration::from_secs(8),
        "{closed:?}"
    );
}

/// A WebSocket to `t-pub`'s events from the loopback address `from`: open, or the HTTP status
/// it was refused with.
async fn socket_from(
    from: &str,
    api: &str,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, Option<(u16, Option<String>)>> {
    let stream = connect_from(from, api).await;
    match tokio_tungstenite::client_async(format!("ws://{api}/v1/transcripts/t-pub/events"), stream)
        .await
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(Some((
            r.status().as_u16(),
            r.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ))),
        Err(_) => Err(None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_are_capped_per_process_and_per_client() {
    let api = api_with(limits(&[
        ("REFLOW_WS_MAX", "3"),
        ("REFLOW_WS_MAX_PER_CLIENT", "2"),
    ]))
    .await;
    let mut a1 = socket_from("127.0.0.1", &api).await.expect("socket 1");
    let _a2 = socket_from("127.0.0.1", &api).await.expect("socket 2");
    // The same client's third: refused before the upgrade.
    let refused = socket_from("127.0.0.1", &api).await.err();
    eprintln!("a client's third socket: {refused:?}");
    assert_eq!(refused, Some(Some((503, Some("5".into())))));
    // Another client gets the process's last one; then the process is full for everyone.
    let _b1 = socket_from("127.0.0.2", &api)
        .await
        .expect("another client");
    assert_eq!(
        socket_from("127.0.0.3", &api).await.err(),
        Some(Some((503, Some("5".into())))),
        "the (cap+1)th socket of the process"
    );
    // A closed socket gives its slot back.
    a1.close(None).await.unwrap();
    drop(a1);
    let reopened = reflow_tests::wait_for("the slot back", Duration::from_secs(10), || async {
        socket_from("127.0.0.3", &api).await.ok()
    })
    .await;
    drop(reopened);
    // Plain requests are not affected.
    assert_eq!(
        get_from("127.0.0.1", &api, Duration::from_secs(3)).await,
        Ok(200)
    );
}
