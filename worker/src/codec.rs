//! Meeting content encrypted in Temporal's history: a payload codec (the SDK's
//! [`PayloadCodec`]) that seals every payload the worker and the client send, and opens them
//! on the way back.
//!
//! Format: the serialized `Payload` protobuf (prost), optionally zlib-compressed, sealed with
//! AES-256-GCM under a 12-byte random nonce; the new payload's data is `nonce ‖ ciphertext`
//! and its metadata says `encoding: binary/encrypted`, `encryption-key-id: <id>` (bound into
//! the tag as associated data) and, when compressed, `encryption-compression: zlib`. Search
//! attributes stay readable (the SDK never passes them to a codec). Failure messages are sealed
//! as well ([`PayloadEncryption::data_converter`]).
//!
//! Keys rotate: `REFLOW_CODEC_KEYS` is a comma-separated list of `id:base64(32 bytes)`; the
//! first seals new payloads, every listed key opens old ones, so a run started before a
//! rotation completes after it as long as its key stays listed. Payloads that are not sealed
//! (histories from before the codec was on) pass through unchanged, unless the codec is
//! [`PayloadEncryption::required`] (`REFLOW_CODEC_REQUIRED`): then a worker refuses every
//! unsealed payload of a task it is given (a workflow started by hand with plaintext input
//! fails its workflow task, [`CodecError::Unsealed`], before any of its code runs), while
//! history readers (`crate::history`, `/codec/decode`) still show old plaintext payloads.
//! The SDK tells the codec no more than which kind of task it decodes for (its serialization
//! contexts carry no workflow id in 1.1.1), so a sealed payload is not bound to its run
//! here: the run's input names its workflow id instead (`workflow::interpreter::binding`).
//!
//! The same codec serves Temporal's remote codec protocol ([`crate::http::codec`]) so that the
//! Web UI and `temporal workflow show --codec-endpoint` show operators the decoded payloads.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload as Sealed};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use prost::Message as _;
use temporalio_common::data_converters::{
    DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConversionError, PayloadConverter,
    SerializationContextData,
};
use temporalio_common::protos::temporal::api::common::v1::Payload;

/// `encoding` of a sealed payload.
pub const ENCODING: &str = "binary/encrypted";
/// Metadata key naming the key that sealed a payload.
pub const KEY_ID: &str = "encryption-key-id";
/// Metadata key saying how the plaintext was compressed.
pub const COMPRESSION: &str = "encryption-compression";
/// Payloads smaller than this are not compressed (zlib would only add bytes).
const COMPRESS_FROM: usize = 256;
const NONCE: usize = 12;

/// Why the codec could not be built or a payload not opened.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// `REFLOW_CODEC_KEYS` is malformed.
    #[error("REFLOW_CODEC_KEYS: {0} (expected `id:base64-of-32-bytes[,id:…]`, newest first)")]
    Keys(String),
    /// A sealed payload names a key this process does not have.
    #[error("payload sealed with key {0:?}, which is not in REFLOW_CODEC_KEYS")]
    UnknownKey(String),
    /// The payload is damaged, or was sealed under another key with the same id.
    #[error("payload sealed with key {0:?} does not open: damaged or a different key")]
    Open(String),
    /// The opened bytes are no `Payload`.
    #[error("opened payload is not a Payload protobuf: {0}")]
    Decode(String),
    /// A worker task carries a payload that is not sealed, and the codec is required.
    #[error(
        "payload is not sealed (encoding {0:?}) and REFLOW_CODEC_REQUIRED refuses plaintext: it was written without reflow's codec keys (a workflow started or signalled by hand?)"
    )]
    Unsealed(String),
}

/// AES-256-GCM payload encryption with rotating keys.
#[derive(Clone)]
pub struct PayloadEncryption {
    current: String,
    keys: Arc<HashMap<String, Aes256Gcm>>,
    compress: bool,
    required: bool,
}

impl std::fmt::Debug for PayloadEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("PayloadEncryption")
            .field("current", &self.current)
            .field("key_ids", &ids)
            .field("compress", &self.compress)
            .field("required", &self.required)
            .finish()
    }
}

impl PayloadEncryption {
    /// From `spec` (`id:base64,…`, newest first); `compress` zlib-compresses before sealing.
    pub fn from_spec(spec: &str, compress: bool) -> Result<Self, CodecError> {
        let mut keys = HashMap::new();
        let mut current = None;
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, key) = entry.split_once(':').ok_or_else(|| {
                CodecError::Keys(format!("entry {:?} has no `id:`", id_of(entry)))
            })?;
            let id = id.trim();
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(CodecError::Keys(format!(
                    "key id {id:?} is not [A-Za-z0-9_-]+"
                )));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|e| CodecError::Keys(format!("key {id:?} is not base64: {e}")))?;
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| {
                CodecError::Keys(format!("key {id:?} has {} bytes, not 32", bytes.len()))
            })?;
            if keys.insert(id.to_owned(), cipher).is_some() {
                return Err(CodecError::Keys(format!("key id {id:?} is listed twice")));
            }
            current.get_or_insert_with(|| id.to_owned());
        }
        let current = current.ok_or_else(|| CodecError::Keys("no key".into()))?;
        Ok(PayloadEncryption {
            current,
            keys: Arc::new(keys),
            compress,
            required: false,
        })
    }

    /// Refuse unsealed payloads in the tasks a worker is given (`REFLOW_CODEC_REQUIRED`):
    /// decoding for a workflow or activity task fails with [`CodecError::Unsealed`]. Decoding
    /// without a context (history readers) and [`Self::open`] still pass them through.
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// The key id new payloads are sealed with.
    pub fn current_key(&self) -> &str {
        &self.current
    }

    /// Seal one payload (a sealed one is left as it is).
    pub fn seal(&self, payload: Payload) -> Payload {
        if is_sealed(&payload) {
            return payload;
        }
        let mut plain = payload.encode_to_vec();
        let compressed = self.compress && plain.len() >= COMPRESS_FROM;
        if compressed {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&plain).expect("writing to a Vec cannot fail");
            plain = z.finish().expect("writing to a Vec cannot fail");
        }
        let cipher = &self.keys[&self.current];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Sealed {
                    msg: &plain,
                    aad: self.current.as_bytes(),
                },
            )
            .expect("AES-GCM sealing of an in-memory buffer cannot fail");
        let mut data = nonce.to_vec();
        data.extend_from_slice(&sealed);
        let mut metadata = HashMap::from([
            ("encoding".to_owned(), ENCODING.as_bytes().to_vec()),
            (KEY_ID.to_owned(), self.current.as_bytes().to_vec()),
        ]);
        if compressed {
            metadata.insert(COMPRESSION.to_owned(), b"zlib".to_vec());
        }
        Payload {
            metadata,
            data,
            ..Default::default()
        }
    }

    /// Open one payload (one that is not sealed is returned as it is).
    pub fn open(&self, payload: Payload) -> Result<Payload, CodecError> {
        if !is_sealed(&payload) {
            return Ok(payload);
        }
        let id = String::from_utf8_lossy(
            payload
                .metadata
                .get(KEY_ID)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        )
        .into_owned();
        let cipher = self
            .keys
            .get(&id)
            .ok_or_else(|| CodecError::UnknownKey(id.clone()))?;
        if payload.data.len() < NONCE {
            return Err(CodecError::Open(id));
        }
        let (nonce, sealed) = payload.data.split_at(NONCE);
        let mut plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Sealed {
                    msg: sealed,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| CodecError::Open(id.clone()))?;
        if payload.metadata.get(COMPRESSION).map(Vec::as_slice) == Some(b"zlib".as_slice()) {
            let mut inflated = Vec::new();
            flate2::read::ZlibDecoder::new(plain.as_slice())
                .read_to_end(&mut inflated)
                .map_err(|e| CodecError::Decode(e.to_string()))?;
            plain = inflated;
        }
        Payload::decode(plain.as_slice()).map_err(|e| CodecError::Decode(e.to_string()))
    }

    /// A data converter with the SDK's JSON payload converter and this codec. Failure
    /// messages and stack traces are sealed too: the failure converter moves them into the
    /// failure's `encoded_attributes` payload (its `message` then reads `"Encoded failure"`),
    /// which the codec seals like any other payload, since a failure text can quote meeting
    /// content or a URL. Failure types, retry states and timeouts stay readable.
    pub fn data_converter(&self) -> DataConverter {
        DataConverter::new(
            PayloadConverter::default(),
            DefaultFailureConverter::new(true),
            self.clone(),
        )
    }
}

fn id_of(entry: &str) -> &str {
    // Never echo a key: at most what precedes a separator.
    entry.split([':', '=']).next().unwrap_or_default()
}

fn is_sealed(p: &Payload) -> bool {
    p.metadata.get("encoding").map(Vec::as_slice) == Some(ENCODING.as_bytes())
}

impl PayloadCodec for PayloadEncryption {
    fn encode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let sealed = payloads.into_iter().map(|p| self.seal(p)).collect();
        futures::future::ready(Ok(sealed)).boxed()
    }

    fn decode(
        &self,
        context: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        // A worker decodes its tasks in a workflow or activity context (so does a client for
        // the results and query answers of runs); history readers decode without one.
        let strict = self.required && !matches!(context, SerializationContextData::None);
        let opened = payloads
            .into_iter()
            .map(|p| {
                if strict && !is_sealed(&p) {
                    let encoding = p.metadata.get("encoding").map(Vec::as_slice);
                    let encoding = String::from_utf8_lossy(encoding.unwrap_or_default());
                    return Err(CodecError::Unsealed(encoding.into_owned()));
                }
                self.open(p)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PayloadConversionError::EncodingError(Box::new(e)));
        futures::future::ready(opened).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    }

    fn json(text: &str) -> Payload {
        Payload {
            metadata: HashMap::from([("encoding".to_owned(), b"json/plain".to_vec())]),
            data: text.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn sealed_payloads_hide_their_content_and_open_to_the_original() {
        for compress in [false, true] {
            let codec = PayloadEncryption::from_spec(&format!("k1:{}", key(1)), compress).unwrap();
            let original = json(&format!(
                "{{\"name\": \"Ana Lopez\", \"pad\": \"{}\"}}",
                "x".repeat(400)
            ));
            let sealed = codec.seal(original.clone());
            assert!(!String::from_utf8_lossy(&sealed.data).contains("Ana"));
            assert_eq!(sealed.metadata["encoding"], ENCODING.as_bytes());
            assert_eq!(sealed.metadata[KEY_ID], b"k1");
            assert_eq!(sealed.metadata.contains_key(COMPRESSION), compress);
            assert_eq!(codec.open(sealed).unwrap(), original);
        }
    }

    #[test]
    fn keys_rotate_and_unsealed_payloads_pass() {
        let old = PayloadEncryption::from_spec(&format!("k1:{}", key(1)), false).unwrap();
        let new =
            PayloadEncryption::from_spec(&format!("k2:{},k1:{}", key(2), key(1)), false).unwrap();
        let before = old.seal(json("\"title\""));
        assert_eq!(new.open(before.clone()).unwrap(), json("\"title\""));
        assert_eq!(new.seal(json("1")).metadata[KEY_ID], b"k2");
        let only_new = PayloadEncryption::from_spec(&format!("k2:{}", key(2)), false).unwrap();
        assert!(
            matches!(only_new.open(before.clone()), Err(CodecError::UnknownKey(id)) if id == "k1")
        );
        let impostor = PayloadEncryption::from_spec(&format!("k1:{}", key(9)), false).unwrap();
        assert!(matches!(impostor.open(before), Err(CodecError::Open(_))));
        assert_eq!(new.open(json("2")).unwrap(), json("2"));
    }

    #[tokio::test]
    async fn a_required_codec_refuses_plaintext_in_worker_tasks_only() {
        use temporalio_common::data_converters::{
            ActivitySerializationContext, WorkflowSerializationContext,
        };
        let spec = format!("k1:{}", key(1));
        let lenient = PayloadEncryption::from_spec(&spec, false).unwrap();
        let required = lenient.clone().required(true);
        let sealed = required.seal(json("\"title\""));
        let workflow = SerializationContextData::Workflow(WorkflowSerializationContext::new());
        let activity = SerializationContextData::Activity(ActivitySerializationContext::new());
        for context in [&workflow, &activity] {
            let e = required
                .decode(context, vec![sealed.clone(), json("{\"pipeline\": \"P\"}")])
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("not sealed")
                    && e.contains("json/plain")
                    && e.contains("REFLOW_CODEC_REQUIRED"),
                "{e}"
            );
            assert_eq!(
                required
                    .decode(context, vec![sealed.clone()])
                    .await
                    .unwrap(),
                vec![json("\"title\"")]
            );
            // Not required: plaintext passes, as before.
            assert_eq!(
                lenient.decode(context, vec![json("1")]).await.unwrap(),
                vec![json("1")]
            );
        }
        // History readers decode without a context: old plaintext payloads still show.
        let none = SerializationContextData::None;
        assert_eq!(
            required.decode(&none, vec![json("1")]).await.unwrap(),
            vec![json("1")]
        );
        assert_eq!(required.open(json("2")).unwrap(), json("2"));
    }

    #[test]
    fn bad_key_lists_are_refused_without_echoing_keys() {
        for spec in [
            "",
            "k1",
            "k1:notbase64!",
            "k1:AAAA",
            &format!("k1:{0},k1:{0}", key(1)),
        ] {
            let e = PayloadEncryption::from_spec(spec, false)
                .unwrap_err()
                .to_string();
            assert!(e.contains("REFLOW_CODEC_KEYS"), "{e}");
            assert!(!e.contains(&key(1)), "{e}");
        }
    }

    #[tokio::test]
    async fn failure_messages_are_sealed_and_read_back() {
        use temporalio_common::error::{ApplicationFailure, OutgoingActivityError, OutgoingError};
        use temporalio_common::payload_visitor::{decode_payloads, encode_payloads};
        let codec = PayloadEncryption::from_spec(&format!("k1:{}", key(1)), false).unwrap();
        let context = SerializationContextData::None;
        let text = "webhook POST http://h.example/in: HTTP 400 (Ana Lopez said so)";
        let mut failure = codec.data_converter().to_failure(
            &context,
            OutgoingError::Activity(OutgoingActivityError::Application(Box::new(
                ApplicationFailure::builder(anyhow::anyhow!(text))
                    .type_name("HttpClientError".to_owned())
                    .build(),
            ))),
        );
        encode_payloads(&mut failure, &codec, &context)
            .await
            .unwrap();
        // As Temporal stores it: no message, an encrypted payload in its place.
        let stored = format!("{failure:?}");
        assert!(
            !stored.contains("Ana Lopez") && !stored.contains("h.example"),
            "{stored}"
        );
        assert_eq!(failure.message, "Encoded failure");
        let sealed = failure.encoded_attributes.clone().unwrap();
        assert_eq!(sealed.metadata["encoding"], ENCODING.as_bytes());
        // As reflow reads it (the history loaded with the codec): the message again.
        decode_payloads(&mut failure, &codec, &context)
            .await
            .unwrap();
        let read = crate::history::Failure::of(&failure);
        assert_eq!(read.message, text);
        assert_eq!(read.kind, "HttpClientError");
    }
}
