//! Secrets hygiene (issue 39 item 7), tried against the real binary and a real server:
//!
//! - a `SECRET_KEY` or `REFLOW_API_TOKEN` under 32 bytes, or a half-configured rotation, is
//!   refused at start in one line naming the variable and how to generate one;
//! - `SECRET_KEY` rotates: tokens and audio links signed with the previous key open what they
//!   opened until `SECRET_KEY_PREVIOUS_UNTIL`, not after; new links are signed with the new key
//!   only;
//! - the codec's session cookie is not the operator token (in no encoding), expires, cannot
//!   be re-dated, and is `Secure` over https (the proxy's `X-Forwarded-Proto`, or an https
//!   `REFLOW_PUBLIC_URL`);
//! - the worker's request log (at `debug`, where every request is logged) holds no `?token=`
//!   value in any encoding;
//! - `/metrics` on the API's port answers the operator only; Prometheus's own port answers
//!   `/metrics` and nothing else;
//! - a transcript's socket closes when the transcript turns private or is deleted, and any
//!   socket opened with a user's JWT closes when it expires.

use std::time::SystemTime;

use reflow::http::keys::{PreviousKey, codec_session};
use tokio_tungstenite::tungstenite;

use super::*;

/// 32 bytes and more, as the settings require.
const NEW_KEY: &str = "new-user-jwt-secret-for-tests-0123456789";
const OLD_KEY: &str = "old-user-jwt-secret-for-tests-0123456789";
const TOKEN: &str = "operator-token-for-hygiene-tests-0123456789";

/// `secret` in the forms a log or a cookie could carry it: as is, URL-encoded (form and
/// path), base64 (standard and URL-safe).
fn encodings(secret: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut forms = vec![
        secret.to_owned(),
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        b64.encode(secret),
        b64url.encode(secret),
    ];
    // A JWT's signature alone is secret enough to forge nothing, but replays the link: check
    // that part as well.
    if let Some(sig) = secret.rsplit('.').next().filter(|s| s.len() >= 20) {
        forms.push(sig.to_owned());
    }
    forms.sort();
    forms.dedup();
    forms
}

fn assert_absent(text: &str, secret: &str, what: &str) {
    for form in encodings(secret) {
        assert!(!text.contains(&form), "{what} holds {form:?}");
    }
}

/// `reflow worker` refusing to start with `env`: its stderr.
fn refused_start(env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"));
    cmd.args(["worker", "--queues", "reflow", "--http", "127.0.0.1:0"])
        .env("TEMPORAL_ADDRESS", "127.0.0.1:1")
        .env("RUST_LOG", "info");
    for var in [
        "REFLOW_API_TOKEN",
        "SECRET_KEY",
        "SECRET_KEY_PREVIOUS",
        "SECRET_KEY_PREVIOUS_UNTIL",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.envs(env.iter().copied()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started with {env:?}: {stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_secrets_and_half_rotations_refuse_to_start() {
    for (var, value) in [
        ("SECRET_KEY", "user-jwt-secret-for-tests"),
        ("REFLOW_API_TOKEN", "operator-token-for-tests"),
    ] {
        let stderr = refused_start(&[(var, value), ("SECRET_KEY_PREVIOUS_UNTIL", "")]);
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(&format!("{var} is {} bytes", value.len()))
                && stderr.contains("at least 32")
                && stderr.contains("openssl rand -hex 32"),
            "{stderr}"
        );
        assert!(!stderr.contains(value), "the secret is printed: {stderr}");
    }
    let stderr = refused_start(&[("SECRET_KEY", NEW_KEY), ("SECRET_KEY_PREVIOUS", OLD_KEY)]);
    assert!(
        stderr.contains("SECRET_KEY_PREVIOUS is set without SECRET_KEY_PREVIOUS_UNTIL"),
        "{stderr}"
    );
    let stderr = refused_start(&[
        ("SECRET_KEY", NEW_KEY),
        ("SECRET_KEY_PREVIOUS", OLD_KEY),
        ("SECRET_KEY_PREVIOUS_UNTIL", "next tuesday"),
    ]);
    assert!(
        stderr.contains("SECRET_KEY_PREVIOUS_UNTIL \"next tuesday\" is not an RFC 3339 date"),
        "{stderr}"
    );
    assert_absent(&stderr, OLD_KEY, "the refusal");
    // Long enough: past the check (and refused later, for want of Temporal).
    let stderr = refused_start(&[("SECRET_KEY", NEW_KEY), ("REFLOW_API_TOKEN", TOKEN)]);
    assert!(!stderr.contains("at least 32"), "{stderr}");
}

/// An API over a fresh database with `state` changed by `configure`, and that database.
async fn api_over(configure: impl FnOnce(&mut ApiState)) -> (String, activities::db::Db) {
    let db = temp_db().await;
    let mut state = ApiState {
        api_token: Some(TOKEN.into()),
        secret_key: Some(NEW_KEY.into()),
        ..ApiState::new(
            activities::events::Events::new(db.clone(), Default::default(), Default::default()),
            reflow_tests::storage(),
        )
    };
    configure(&mut state);
    (reflow_tests::serve_api(state).await, db)
}

/// A private transcript of user `u-7` with an mp3, under a fresh id.
async fn private_transcript(db: &activities::db::Db) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let id = format!(
        "t-hygiene-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    db.create_transcript(&activities::db::transcripts::NewTranscript {
        id: id.clone(),
        user_id: Some("u-7".into()),
        share_mode: Some("private".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    reflow_tests::storage()
        .put(
            &activities::storage::keys::audio_mp3(&id),
            bytes::Bytes::from_static(b"ID3 not really an mp3"),
        )
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_key_rotates_with_the_previous_key_accepted_until_its_date() {
    // The settings' reading of the rotation, as the worker reads it.
    let settings = reflow::settings::Settings::from_vars(
        Default::default(),
        [
            ("SECRET_KEY", NEW_KEY),
            ("SECRET_KEY_PREVIOUS", OLD_KEY),
            ("SECRET_KEY_PREVIOUS_UNTIL", "2099-01-01T00:00:00+01:00"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
    let previous = settings.api_keys().unwrap().expect("a previous key");
    assert_eq!(
        humantime::format_rfc3339_seconds(previous.until).to_string(),
        "2098-12-31T23:00:00Z"
    );
    let http = reqwest::Client::new();
    let (api, db) = api_over(|s| s.secret_key_previous = Some(previous.clone())).await;
    let tid = private_transcript(&db).await;
    let tr = format!("http://{api}/v1/transcripts/{tid}");
    let mp3 = format!("{tr}/audio/mp3");

    let old_user = sign(OLD_KEY, "u-7", HOUR);
    let old_link = sign_audio_link(OLD_KEY, &tid, HOUR);
    let new_user = sign(NEW_KEY, "u-7", HOUR);
    let foreign = sign("some-other-key-entirely-0123456789abcdef", "u-7", HOUR);
    assert_eq!(status(http.get(&tr), Some(&new_user)).await, 200);
    assert_eq!(
        status(http.get(&tr), Some(&old_user)).await,
        200,
        "a user token of the previous key"
    );
    assert_eq!(status(http.get(&tr), Some(&foreign)).await, 401);
    assert_eq!(
        status(http.get(format!("{mp3}?token={old_link}")), None).await,
        200,
        "an audio link of the previous key"
    );
    // The user channel takes the previous key's tokens too.
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{api}/v1/events"
    ))
    .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("bearer, {old_user}").parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let first = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
    assert!(
        !matches!(first, Ok(Some(Ok(tungstenite::Message::Close(_))))),
        "closed: {first:?}"
    );

    // New links are signed with the new key only.
    let minted: Value = http
        .post(format!("{tr}/audio/link"))
        .bearer_auth(&old_user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = minted["url"].as_str().unwrap();
    let token = url.split("token=").nth(1).unwrap();
    assert_eq!(
        reflow::http::auth::audio_link_subject(NEW_KEY, token).as_deref(),
        Some(tid.as_str())
    );
    assert_eq!(reflow::http::auth::audio_link_subject(OLD_KEY, token), None);

    // After the date: the previous key opens nothing.
    let (api, db) = api_over(|s| {
        s.secret_key_previous = Some(PreviousKey {
            key: OLD_KEY.into(),
            until: SystemTime::now() - Duration::from_secs(1),
        })
    })
    .await;
    let tid = private_transcript(&db).await;
    let tr = format!("http://{api}/v1/transcripts/{tid}");
    let old_link = sign_audio_link(OLD_KEY, &tid, HOUR);
    assert_eq!(status(http.get(&tr), Some(&old_user)).await, 401);
    assert_eq!(
        status(http.get(format!("{tr}/audio/mp3?token={old_link}")), None).await,
        404
    );
    assert_eq!(status(http.get(&tr), Some(&new_user)).await, 200);
}

/// The codec session cookie of `set_cookie`, as `name=value`.
fn cookie_pair(response: &reqwest::Response) -> (String, String) {
    let header = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    (header.split(';').next().unwrap().to_owned(), header)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_codec_cookie_is_a_derived_expiring_value_secure_over_https() {
    let codec = PayloadEncryption::from_spec(&format!("k1:{}", key(1)), false).unwrap();
    let codec = std::sync::Arc::new(codec);
    let (api, _db) = api_over(|s| s.codec = Some(codec.clone())).await;
    let http = reqwest::Client::new();
    let unlock = |forwarded: Option<&str>| {
        let mut r = http
            .post(format!("http://{api}/codec/session"))
            .form(&[("token", TOKEN)]);
        if let Some(proto) = forwarded {
            r = r.header("X-Forwarded-Proto", proto);
        }
        r.send()
    };
    let decode = |cookie: &str| {
        http.post(format!("http://{api}/codec/decode"))
            .header("Cookie", cookie)
            .json(&json!({"payloads": []}))
            .send()
    };

    let plain = unlock(None).await.unwrap();
    assert_eq!(plain.status(), 200);
    let (pair, header) = cookie_pair(&plain);
    assert_absent(&header, TOKEN, "the cookie");
    assert!(
        header.contains("HttpOnly") && header.contains("SameSite=Strict"),
        "{header}"
    );
    assert!(!header.contains("Secure"), "plain HTTP: {header}");
    assert_eq!(decode(&pair).await.unwrap().status(), 200);

    // Over the operator's TLS proxy: Secure.
    let (_, header) = cookie_pair(&unlock(Some("https")).await.unwrap());
    assert!(header.contains("; Secure"), "{header}");

    // What an attacker might try instead of a session: the token itself, a session re-dated
    // to last longer, one that expired, and one made with another token.
    let value = pair.split_once('=').unwrap().1;
    let (tag, expires) = {
        let mut parts = value.split('.');
        let _version = parts.next();
        let expires: u64 = parts.next().unwrap().parse().unwrap();
        (parts.next().unwrap().to_owned(), expires)
    };
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        expires > now + 11 * 3600 && expires <= now + 12 * 3600 + 5,
        "expires in 12 hours: {expires}"
    );
    let expired = codec_session(TOKEN, SystemTime::now() - Duration::from_secs(1));
    let other = codec_session(
        "another-operator-token-0123456789abcdef",
        SystemTime::now() + HOUR,
    );
    for forged in [
        TOKEN.to_owned(),
        format!("v1.{}.{tag}", expires + 30 * 24 * 3600),
        expired,
        other,
    ] {
        assert_eq!(
            decode(&format!("reflow_codec_operator={forged}"))
                .await
                .unwrap()
                .status(),
            401,
            "{forged}"
        );
    }

    // With an https public URL, Secure whatever the request says.
    let (api, _db) = api_over(|s| {
        s.codec = Some(codec.clone());
        s.https = true;
    })
    .await;
    let r = http
        .post(format!("http://{api}/codec/session"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let (_, header) = cookie_pair(&r);
    assert!(header.contains("; Secure"), "{header}");
    let settings = reflow::settings::Settings::from_vars(
        Default::default(),
        [(
            "REFLOW_PUBLIC_URL".to_owned(),
            "https://reflow.example".to_owned(),
        )]
        .into(),
    );
    assert!(settings.public_https());
}

/// Lines of `log` once it holds `needle` (within `limit`).
async fn wait_for_log(log: &std::path::Path, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_logs_hold_no_query_token() {
    let dir = tempfile::Builder::new()
        .prefix("reflow-request-log-")
        .tempdir()
        .unwrap()
        .keep();
    let db_url = format!("sqlite://{}/reflow.db", dir.display());
    let db = activities::db::Db::connect(&db_url).await.unwrap();
    // The repository's pipelines, registered as `reflow apply` would (the API's intake needs
    // its pipeline registered).
    let pipelines = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    for file in reflow::cli::pipeline_files(&pipelines).unwrap() {
        let p = reflow::runs::load_pipeline(&file, reflow::registry::Registry::builtin().catalog())
            .unwrap();
        reflow_tests::register_in(&db, &p).await;
    }
    let tid = private_transcript(&db).await;
    let log = dir.join("worker.log");
    let out = std::fs::File::create(&log).unwrap();
    // A queue nobody else serves: this worker takes no other test's tasks.
    let queue = format!("security-request-log-{}", std::process::id());
    let mut child = std::process::Command::new("setpriv")
        .arg("--pdeathsig=SIGKILL")
        .arg(env!("CARGO_BIN_EXE_reflow-test-worker"))
        .args(["worker", "--queues", &queue, "--http", "127.0.0.1:0"])
        .env("TEMPORAL_ADDRESS", &reflow_tests::server().address)
        .env("DATABASE_URL", &db_url)
        .env("REFLOW_DATA_DIR", dir.join("data"))
        .env("REFLOW_PIPELINES", &pipelines)
        .env("SECRET_KEY", NEW_KEY)
        .env("REFLOW_API_TOKEN", TOKEN)
        // Every request is logged at debug, with the span's fields on each line.
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let text = wait_for_log(&log, "HTTP API on http://", Duration::from_secs(60)).await;
    let api = text
        .split("HTTP API on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();

    // A share link (valid), a made-up token with characters a URL encodes, and one sent
    // percent-encoded.
    let link = sign_audio_link(NEW_KEY, &tid, HOUR);
    let odd = "QUERY/SECRET+token=value&42";
    let odd_encoded: String = url::form_urlencoded::byte_serialize(odd.as_bytes()).collect();
    let http = reqwest::Client::new();
    let mp3 = format!("http://{api}/v1/transcripts/{tid}/audio/mp3");
    let r = http
        .get(format!("{mp3}?token={link}"))
        .send()
        .await
        .unwrap();
    // The link is taken (this worker's store has no audio for it).
    assert_eq!(r.text().await.unwrap(), r#"{"detail":"Audio not found"}"#);
    http.get(format!("{mp3}?token={odd_encoded}&x=1"))
        .send()
        .await
        .unwrap();
    http.get(format!(
        "http://{api}/api/workflow/diarization-x?%74oken={link}"
    ))
    .send()
    .await
    .unwrap();
    let _ = tokio_tungstenite::connect_async(format!(
        "ws://{api}/v1/transcripts/{tid}/events?token={link}"
    ))
    .await;
    // The last request's line, in whatever form it is logged.
    let text = wait_for_log(
        &log,
        "uri=/api/workflow/diarization-x?",
        Duration::from_secs(10),
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_absent(&text, &link, "the worker's log");
    assert_absent(&text, odd, "the worker's log");
    assert_absent(&text, &odd_encoded, "the worker's log");
    for logged in [
        format!("uri=/v1/transcripts/{tid}/audio/mp3?token=[redacted]"),
        "uri=/api/workflow/diarization-x?%74oken=[redacted]".to_owned(),
    ] {
        assert!(
            text.contains(&logged),
            "requests are logged, their token redacted: no {logged:?} in\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_the_operator_on_the_api_port_and_prometheus_on_its_own() {
    let (api, _db) = api_over(|_| {}).await;
    let http = reqwest::Client::new();
    let metrics = format!("http://{api}/metrics");
    assert_eq!(status(http.get(&metrics), None).await, 401, "anonymous");
    assert_eq!(
        status(http.get(&metrics), Some(&sign(NEW_KEY, "u-7", HOUR))).await,
        401,
        "a user"
    );
    let r = http.get(&metrics).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    // The metrics port: /metrics without credentials, and nothing else of the API.
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(reflow::http::serve_metrics(
        "127.0.0.1:0".parse().unwrap(),
        move |a| {
            let _ = tx.send(a);
        },
        std::future::pending(),
    ));
    let port = rx.await.unwrap();
    let r = reqwest::get(format!("http://{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    for path in [
        "/v1/transcripts/t-1",
        "/api/workflow/x",
        "/codec/session",
        "/",
    ] {
        assert_eq!(
            reqwest::get(format!("http://{port}{path}"))
                .await
                .unwrap()
                .status(),
            404,
            "{path}"
        );
    }
    // The worker's flag.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"))
        .args(["worker", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--metrics") && help.contains("REFLOW_METRICS_ADDRESS"),
        "{help}"
    );
}

/// Delete transcript `id` as its owner does in the frontend (soft: `deleted_at`).
async fn soft_delete(db: &activities::db::Db, id: &str) {
    use activities::db::Pool;
    let statement = "UPDATE transcript SET deleted_at = '2026-01-11T00:00:00Z' WHERE id = $1";
    match db.pool() {
        Pool::Sqlite(p) => sqlx::query(statement).bind(id).execute(p).await.map(|_| ()),
        Pool::Postgres(p) => sqlx::query(statement).bind(id).execute(p).await.map(|_| ()),
    }
    .unwrap();
}

/// The close code of `ws` within `limit` (`None`: not closed, or closed without a code).
async fn close_code<S>(ws: &mut S, limit: Duration) -> Option<u16>
where
    S: futures::Stream<Item = Result<tungstenite::Message, tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(tungstenite::Message::Close(frame))) => {
                    return frame.map(|f| u16::from(f.code));
                }
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// A socket on transcript `tid` of `api` with `bearer` (if any).
async fn transcript_socket(
    api: &str,
    tid: &str,
    bearer: Option<&str>,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{api}/v1/transcripts/{tid}/events"
    ))
    .unwrap();
    if let Some(token) = bearer {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_close_when_access_ends_or_their_token_expires() {
    let recheck = Duration::from_millis(300);
    let (api, db) = api_over(|s| s.ws_access_recheck = recheck).await;
    let grace = recheck * 3 + Duration::from_secs(2);

    // A public transcript watched anonymously, turned private: closed.
    let tid = private_transcript(&db).await;
    db.set_share_mode(&tid, "public").await.unwrap();
    let mut anonymous = transcript_socket(&api, &tid, None).await;
    let mut owner = transcript_socket(&api, &tid, Some(&sign(NEW_KEY, "u-7", HOUR))).await;
    let mut stranger = transcript_socket(&api, &tid, Some(&sign(NEW_KEY, "u-8", HOUR))).await;
    assert_eq!(
        close_code(&mut anonymous, recheck * 3).await,
        None,
        "open while public"
    );
    db.set_share_mode(&tid, "private").await.unwrap();
    assert_eq!(
        close_code(&mut anonymous, grace).await,
        Some(reflow::http::ws::ACCESS_REVOKED_CLOSE)
    );
    assert_eq!(
        close_code(&mut stranger, grace).await,
        Some(reflow::http::ws::ACCESS_REVOKED_CLOSE)
    );
    // Its owner still watches; deleted, it closes for them too.
    assert_eq!(
        close_code(&mut owner, recheck * 3).await,
        None,
        "the owner's"
    );
    let mut operator = transcript_socket(&api, &tid, Some(TOKEN)).await;
    soft_delete(&db, &tid).await;
    for ws in [&mut owner, &mut operator] {
        assert_eq!(
            close_code(ws, grace).await,
            Some(reflow::http::ws::ACCESS_REVOKED_CLOSE),
            "deleted"
        );
    }

    // A user's JWT that expires in 2 s: the transcript socket and the user channel close then.
    let tid = private_transcript(&db).await;
    let short = sign(NEW_KEY, "u-7", Duration::from_secs(2));
    let opened = Instant::now();
    let mut ws = transcript_socket(&api, &tid, Some(&short)).await;
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{api}/v1/events"
    ))
    .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("bearer, {short}").parse().unwrap(),
    );
    let (mut user, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let limit = Duration::from_secs(6);
    assert_eq!(
        close_code(&mut ws, limit).await,
        Some(reflow::http::ws::UNAUTHORIZED_CLOSE)
    );
    assert_eq!(
        close_code(&mut user, limit).await,
        Some(reflow::http::ws::UNAUTHORIZED_CLOSE)
    );
    assert!(
        opened.elapsed() >= Duration::from_secs(1),
        "closed at expiry, not before"
    );
}
