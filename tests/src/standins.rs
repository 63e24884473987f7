//! Local stand-ins for the HTTP services reflow calls but cannot reach from here — an
//! OpenAI-compatible `chat/completions` endpoint, the two transcription APIs (Reflector's GPU
//! `v1/audio/transcriptions-from-url`, OpenAI's `v1/audio/transcriptions` upload), Zulip's
//! messages API and a customer webhook receiver (Daily has its own, [`crate::daily`]). Each is a real
//! HTTP server on a loopback port that implements the documented request and response shapes,
//! records every request it receives (path, bearer token, JSON body or multipart fields and
//! file), and answers from a script: queued replies first, then a default reply computed from
//! the request.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Every header.
    pub headers: HeaderMap,
    /// The raw body (empty for multipart requests, which are parsed into `fields`/`file`).
    pub body: Vec<u8>,
    /// `application/x-www-form-urlencoded` fields.
    pub form: BTreeMap<String, String>,
    /// The bearer token, if one was sent.
    pub bearer: Option<String>,
    /// A JSON body.
    pub json: Option<Value>,
    /// Multipart text fields (repeated names keep the last value).
    pub fields: BTreeMap<String, String>,
    /// A multipart file: (filename, bytes).
    pub file: Option<(String, Vec<u8>)>,
    /// When it arrived.
    pub at: Instant,
    /// The status the stand-in answered, once it has; `None` while it is still answering, and
    /// for a connection it cut ([`Reply::Reset`]).
    pub answered: Option<u16>,
}

/// What to answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this JSON.
    Json(Value),
    /// An error status, with an optional `Retry-After` (seconds).
    Status {
        /// HTTP status.
        code: u16,
        /// `Retry-After` header value.
        retry_after: Option<u64>,
    },
    /// Sleep this long, then answer 503 (the client should have given up before).
    Hang(Duration),
    /// Start a 200 answer and cut the connection after its first byte (a connection reset
    /// mid-response).
    Reset,
    /// Wait this long, then answer the other reply (a slow service).
    After(Duration, Box<Reply>),
    /// The default reply, computed from the request (for scripts: `After(d, Default)`).
    Default,
    /// Pass the request on to the upstream server of a [`StandIn::proxy`] and answer what it
    /// answers.
    Forward,
}

impl Reply {
    /// An error status without `Retry-After`.
    pub fn status(code: u16) -> Reply {
        Reply::Status {
            code,
            retry_after: None,
        }
    }

    /// The default reply, `d` late.
    pub fn slow(d: Duration) -> Reply {
        Reply::After(d, Box::new(Reply::Default))
    }
}

type Default = Box<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct Inner {
    upstream: Option<String>,
    requests: Vec<Recorded>,
    script: VecDeque<Reply>,
    default: Default,
}

/// A running stand-in server.
#[derive(Clone)]
pub struct StandIn {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl StandIn {
    /// Serve on a free loopback port, answering with `default` when no reply is queued.
    pub async fn start(default: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        Self::serve(None, default).await
    }

    /// A fault-injecting proxy in front of `upstream` (`http://host:port`, e.g. the S3
    /// server): every request is forwarded unless a queued reply says otherwise.
    pub async fn proxy(upstream: &str) -> Self {
        Self::serve(Some(upstream.trim_end_matches('/').to_owned()), |_| {
            Reply::Forward
        })
        .await
    }

    async fn serve(
        upstream: Option<String>,
        default: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            upstream,
            requests: Vec::new(),
            script: VecDeque::new(),
            default: Box::new(default),
        }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("stand-in serves");
        });
        StandIn { url, inner }
    }

    /// Queue `reply` for the next request.
    pub fn then(&self, reply: Reply) {
        self.inner.lock().unwrap().script.push_back(reply);
    }

    /// Answer with `default` from now on when no reply is queued (a proxy's rule for some
    /// requests: `Reply::Forward` for the others).
    pub fn set_default(&self, default: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        self.inner.lock().unwrap().default = Box::new(default);
    }

    /// Answer with `wrap` from now on, given the request and the default it replaces (a
    /// latency or a failure rate laid over a stand-in's own answers).
    pub fn wrap_default(
        &self,
        wrap: impl Fn(&Recorded, &dyn Fn(&Recorded) -> Reply) -> Reply + Send + Sync + 'static,
    ) {
        let mut inner = self.inner.lock().unwrap();
        let old = std::mem::replace(&mut inner.default, Box::new(|_| Reply::Default));
        inner.default = Box::new(move |r| wrap(r, &old));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Number of requests so far.
    pub fn count(&self) -> usize {
        self.inner.lock().unwrap().requests.len()
    }
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, request: Request) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let headers: HeaderMap = request.headers().clone();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut recorded = Recorded {
        method,
        path,
        query,
        headers,
        body: Vec::new(),
        form: BTreeMap::new(),
        bearer,
        json: None,
        fields: BTreeMap::new(),
        file: None,
        at: Instant::now(),
        answered: None,
    };
    if content_type.starts_with("multipart/form-data") {
        let mut form = match Multipart::from_request(request, &()).await {
            Ok(f) => f,
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        };
        while let Ok(Some(field)) = form.next_field().await {
            let name = field.name().unwrap_or("").to_owned();
            match field.file_name().map(str::to_owned) {
                Some(filename) => {
                    let bytes = field.bytes().await.unwrap_or_default();
                    recorded.file = Some((filename, bytes.to_vec()));
                }
                None => {
                    let text = field.text().await.unwrap_or_default();
                    recorded.fields.insert(name, text);
                }
            }
        }
    } else {
        let body = Bytes::from_request(request, &()).await.unwrap_or_default();
        recorded.json = serde_json::from_slice(&body).ok();
        if content_type.starts_with("application/x-www-form-urlencoded") {
            recorded.form = url::form_urlencoded::parse(&body).into_owned().collect();
        }
        recorded.body = body.to_vec();
    }
    let (index, mut reply) = {
        let mut inner = inner.lock().unwrap();
        inner.requests.push(recorded.clone());
        let index = inner.requests.len() - 1;
        let reply = match inner.script.pop_front() {
            Some(r) => r,
            None => (inner.default)(&recorded),
        };
        (index, reply)
    };
    let (response, cut) = loop {
        reply = match reply {
            Reply::After(d, then) => {
                tokio::time::sleep(d).await;
                *then
            }
            Reply::Default => (inner.lock().unwrap().default)(&recorded),
            Reply::Forward => {
                let upstream = inner.lock().unwrap().upstream.clone();
                break (forward(upstream.as_deref(), &recorded).await, false);
            }
            Reply::Hang(d) => {
                tokio::time::sleep(d).await;
                let hung = (StatusCode::SERVICE_UNAVAILABLE, "stand-in hung").into_response();
                break (hung, false);
            }
            Reply::Reset => break (respond(Reply::Reset), true),
            other => break (respond(other), false),
        }
    };
    if !cut {
        inner.lock().unwrap().requests[index].answered = Some(response.status().as_u16());
    }
    response
}

/// Send `r` on to `upstream` unchanged (its `Host` header included, so signatures such as
/// SigV4 still verify) and relay the answer.
async fn forward(upstream: Option<&str>, r: &Recorded) -> Response {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let Some(upstream) = upstream else {
        return (StatusCode::BAD_GATEWAY, "no upstream").into_response();
    };
    let client = CLIENT.get_or_init(reqwest::Client::new);
    let url = match &r.query {
        Some(q) => format!("{upstream}{}?{q}", r.path),
        None => format!("{upstream}{}", r.path),
    };
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).expect("a method");
    let mut headers = r.headers.clone();
    for hop in [header::CONNECTION, header::TRANSFER_ENCODING] {
        headers.remove(hop);
    }
    let sent = client
        .request(method, url)
        .headers(headers)
        .body(r.body.clone())
        .send()
        .await;
    match sent {
        Ok(answer) => {
            let status = answer.status();
            let mut headers = answer.headers().clone();
            headers.remove(header::TRANSFER_ENCODING);
            headers.remove(header::CONNECTION);
            let body = answer.bytes().await.unwrap_or_default();
            let mut response = (status, body).into_response();
            *response.headers_mut() = headers;
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

fn respond(reply: Reply) -> Response {
    match reply {
        Reply::Json(v) => axum::Json(v).into_response(),
        Reply::Status { code, retry_after } => {
            let mut response = (
                StatusCode::from_u16(code).expect("a status code"),
                format!("stand-in answers {code}"),
            )
                .into_response();
            if let Some(s) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, s.to_string().parse().expect("header"));
            }
            response
        }
        Reply::Hang(_) => unreachable!("resolved by the handler"),
        Reply::Reset => {
            let body = futures::stream::iter([
                Ok(Bytes::from_static(b"{")),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "stand-in cuts the connection",
                )),
            ]);
            let mut response = axum::body::Body::from_stream(body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                "application/json".parse().expect("header"),
            );
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, "4096".parse().expect("header"));
            response
        }
        Reply::After(..) | Reply::Default | Reply::Forward => {
            unreachable!("resolved by the handler")
        }
    }
}

/// A transcription response in the shape both ASR APIs answer: `{text, words: [{word, start,
/// end}]}` (words deliberately out of order: services do that, and reflow must sort).
pub fn transcription(words: &[(&str, f64, f64)]) -> Value {
    let mut list: Vec<Value> = words
        .iter()
        .map(|(w, s, e)| json!({"word": w, "start": s, "end": e}))
        .collect();
    list.reverse();
    let text = words.iter().map(|w| w.0).collect::<Vec<_>>().join(" ");
    json!({"text": text, "words": list})
}

/// A chat completion response carrying `content`, with token usage.
pub fn completion(content: &str, prompt_tokens: u64) -> Value {
    json!({
        "id": "chatcmpl-standin", "object": "chat.completion", "model": "stand-in",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": (content.len() / 4) as u64,
                  "total_tokens": prompt_tokens + (content.len() / 4) as u64},
    })
}

/// A Zulip stand-in (messages API): `POST /api/v1/messages` creates a message and answers its
/// `id`; `PATCH /api/v1/messages/{id}` updates a known one, or answers 400 "Invalid
/// message(s)" like Zulip does for an unknown id. Requests without the bot's basic auth get 401.
pub async fn zulip(bot_email: &str, api_key: &str) -> StandIn {
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{bot_email}:{api_key}"))
    );
    let messages = Arc::new(Mutex::new(Vec::<i64>::new()));
    StandIn::start(move |r| {
        let auth = r
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if auth != Some(expected.as_str()) {
            return Reply::Status {
                code: 401,
                retry_after: None,
            };
        }
        let mut known = messages.lock().unwrap();
        match (r.method.as_str(), r.path.strip_prefix("/api/v1/messages")) {
            ("POST", Some("")) if r.form.get("type").map(String::as_str) == Some("stream") => {
                let id = 1000 + known.len() as i64;
                known.push(id);
                Reply::Json(json!({"result": "success", "msg": "", "id": id}))
            }
            ("PATCH", Some(rest)) => match rest.trim_start_matches('/').parse::<i64>() {
                Ok(id) if known.contains(&id) => {
                    Reply::Json(json!({"result": "success", "msg": ""}))
                }
                _ => Reply::Status {
                    code: 400,
                    retry_after: None,
                },
            },
            _ => Reply::Status {
                code: 404,
                retry_after: None,
            },
        }
    })
    .await
}

/// A customer webhook receiver that verifies `X-Webhook-Signature: t=…,v1=…` with `secret`
/// (401 when it does not match) and accepts everything else with 200.
pub async fn webhook_receiver(secret: &str) -> StandIn {
    let secret = secret.to_owned();
    StandIn::start(move |r| {
        if signature_ok(&secret, r) {
            Reply::Json(json!({"received": true}))
        } else {
            Reply::Status {
                code: 401,
                retry_after: None,
            }
        }
    })
    .await
}

/// Whether a recorded request carries a valid customer-webhook signature for `secret`.
pub fn signature_ok(secret: &str, r: &Recorded) -> bool {
    let Some(sig) = r
        .headers
        .get("x-webhook-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut t = None;
    let mut v1 = None;
    for part in sig.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<u64>().ok(),
            Some(("v1", x)) => v1 = Some(x.to_owned()),
            _ => {}
        }
    }
    match (t, v1) {
        (Some(t), Some(v1)) => ::activities::webhook::signature(secret, t, &r.body) == v1,
        _ => false,
    }
}
