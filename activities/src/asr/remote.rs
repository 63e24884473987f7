//! The HTTP transcription backends of docs/contracts/pipeline.md §4.3.2.
//!
//! - `gpu-url`: `POST {TRANSCRIPT_URL}/v1/audio/transcriptions-from-url` with a presigned GET
//!   of the padded track (made here, inside the activity, valid 2 h — never carried in a
//!   payload);
//! - `openai`: `POST {TRANSCRIPT_URL}/v1/audio/transcriptions`, the track uploaded as
//!   multipart (`verbose_json`, word timestamps).
//!
//! Both send `Authorization: Bearer …` when a key is configured, run under a timeout below
//! the activity's start-to-close, heartbeat while waiting, and map HTTP outcomes to the error
//! classes of §6.3. A 2xx answer without `words` is a `ResponseShapeError`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use temporalio_sdk::activities::ActivityContext;

use super::whisper::RawWord;
use crate::error::ActivityFailure;
use crate::http;
use crate::storage::Storage;

/// How long the presigned URL given to a `gpu-url` service stays valid.
pub const PRESIGN_TTL: Duration = Duration::from_secs(2 * 3600);

/// Which HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Reflector's GPU service, audio by URL.
    GpuUrl,
    /// OpenAI-compatible upload.
    OpenAi,
}

/// One HTTP backend.
#[derive(Clone)]
pub struct RemoteAsr {
    /// Which API.
    pub api: Api,
    /// `TRANSCRIPT_URL` (no trailing slash).
    pub url: String,
    /// Bearer token, if any.
    pub api_key: Option<String>,
    /// `TRANSCRIPT_MODEL` (required by `openai`, optional for `gpu-url`).
    pub model: Option<String>,
    /// `TRANSCRIPT_FILE_TIMEOUT`, capped below start-to-close.
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for RemoteAsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAsr")
            .field("api", &self.api)
            .field("url", &self.url)
            .field("api_key", &crate::redacted::Redacted(&self.api_key))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Deserialize)]
struct Response {
    words: Option<Vec<ResponseWord>>,
}

#[derive(Deserialize)]
struct ResponseWord {
    word: String,
    start: f64,
    end: f64,
}

impl RemoteAsr {
    /// Transcribe the padded track `key` (track `index`) from `storage`; `timeout` is the
    /// HTTP ceiling for this attempt.
    pub async fn transcribe(
        &self,
        ctx: &ActivityContext,
        storage: &Storage,
        key: &str,
        index: usize,
        language: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<RawWord>, ActivityFailure> {
        let client = http::client(timeout);
        let (what, request) = match self.api {
            Api::GpuUrl => {
                let url = storage.presign_get(key, PRESIGN_TTL).await?;
                let mut body = json!({"audio_file_url": url, "batch": true});
                if let Some(l) = language {
                    body["language"] = json!(l);
                }
                if let Some(m) = &self.model {
                    body["model"] = json!(m);
                }
                let endpoint = format!("{}/v1/audio/transcriptions-from-url", self.url);
                (
                    http::display_url(&endpoint),
                    client.post(endpoint).json(&body),
                )
            }
            Api::OpenAi => {
                let model = self.model.clone().ok_or_else(|| {
                    ActivityFailure::Config(
                        "TRANSCRIPT_MODEL is required by the openai backend".into(),
                    )
                })?;
                let bytes = storage.get(key).await?;
                let file = reqwest::multipart::Part::bytes(bytes.to_vec())
                    .file_name(format!("padded_{index}.webm"))
                    .mime_str("audio/webm")
                    .expect("a valid mime type");
                let mut form = reqwest::multipart::Form::new()
                    .part("file", file)
                    .text("model", model)
                    .text("response_format", "verbose_json")
                    .text("timestamp_granularities[]", "word");
                if let Some(l) = language {
                    form = form.text("language", l.to_owned());
                }
                let endpoint = format!("{}/v1/audio/transcriptions", self.url);
                (
                    http::display_url(&endpoint),
                    client.post(endpoint).multipart(form),
                )
            }
        };
        let request = match &self.api_key {
            Some(k) => request.bearer_auth(k),
            None => request,
        };
        let call = async {
            let response = request
                .send()
                .await
                .map_err(|e| http::transport(&what, e))?;
            let response = http::check(&what, response).await?;
            let body = response
                .bytes()
                .await
                .map_err(|e| http::transport(&what, e))?;
            serde_json::from_slice::<Response>(&body).map_err(|e| {
                ActivityFailure::ResponseShape(format!(
                    "{what}: not a transcription: {}",
                    http::shape_error(&e)
                ))
            })
        };
        let parsed = http::while_waiting(ctx, crate::heartbeat::HEARTBEAT_EVERY, call).await??;
        let words = parsed.words.ok_or_else(|| {
            ActivityFailure::ResponseShape(format!("{what}: the response has no `words`"))
        })?;
        Ok(words
            .into_iter()
            .map(|w| RawWord {
                word: w.word.trim().to_owned(),
                start: w.start,
                end: w.end,
            })
            .collect())
    }
}
