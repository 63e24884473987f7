//! Local stand-ins for the HTTP services reflow calls but cannot reach from here — an
//! OpenAI-compatible `chat/completions` endpoint and the two transcription APIs (Reflector's GPU
//! `v1/audio/transcriptions-from-url`, OpenAI's `v1/audio/transcriptions` upload). Each is a real
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
    /// Request path.
    pub path: String,
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
}

type Default = Box<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct Inner {
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
        let inner = Arc::new(Mutex::new(Inner {
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
    let path = request.uri().path().to_owned();
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
        path,
        bearer,
        json: None,
        fields: BTreeMap::new(),
        file: None,
        at: Instant::now(),
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
    }
    let reply = {
        let mut inner = inner.lock().unwrap();
        inner.requests.push(recorded.clone());
        match inner.script.pop_front() {
            Some(r) => r,
            None => (inner.default)(&recorded),
        }
    };
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
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            (StatusCode::SERVICE_UNAVAILABLE, "stand-in hung").into_response()
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
