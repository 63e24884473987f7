//! The embedded LLM's weights, loaded once for every session ([`Loaded`]), and one session's
//! model over them ([`Weights`]): its own KV cache, a forward pass, and prompt reading in
//! chunks ([`Weights::prefill`]).

use std::sync::Arc;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama;

use super::chat_model::ModelError;
use super::qwen2::{KvCache, Qwen2};

/// The architecture a GGUF header names (`llama` when it names none).
pub(super) fn architecture(header: &gguf_file::Content) -> String {
    header
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_else(|| "llama".to_owned())
}

/// The weights as loaded, once, whatever the number of sessions.
pub(super) enum Loaded {
    /// candle's model (its tensors are reference-counted: a clone shares them).
    Llama(Box<quantized_llama::ModelWeights>),
    /// reflow's Qwen2, shared.
    Qwen2(Arc<Qwen2>),
}

impl Loaded {
    /// Read the weights of the GGUF whose `header` was read from `file`, the matrices in f16
    /// when `f16` (llama: as candle's process-wide switch says, whatever `f16` is).
    pub(super) fn read(
        header: gguf_file::Content,
        file: &mut std::fs::File,
        f16: bool,
    ) -> Result<Self, String> {
        match architecture(&header).as_str() {
            "llama" => quantized_llama::ModelWeights::from_gguf(header, file, &Device::Cpu)
                .map(|w| Loaded::Llama(Box::new(w))),
            "qwen2" => Qwen2::from_gguf(&header, file, f16).map(|w| Loaded::Qwen2(Arc::new(w))),
            other => {
                return Err(format!(
                    "architecture {other:?} is not supported (llama or qwen2)"
                ));
            }
        }
        .map_err(|e| e.to_string())
    }
}

/// One session's model: the shared weights and this session's own state (KV cache).
pub(super) enum Weights {
    Llama {
        /// candle's model, KV cache and mask cache inside.
        model: Box<quantized_llama::ModelWeights>,
        /// The same weights as loaded: [`Weights::clear`] starts again from it, which also
        /// drops the masks candle caches per prompt length (memory that would grow with
        /// every prompt of a new length).
        pristine: Box<quantized_llama::ModelWeights>,
    },
    Qwen2 {
        model: Arc<Qwen2>,
        cache: KvCache,
    },
}

impl Weights {
    /// A session over `loaded`.
    pub(super) fn of(loaded: &Loaded) -> Self {
        match loaded {
            Loaded::Llama(w) => Weights::Llama {
                model: w.clone(),
                pristine: w.clone(),
            },
            Loaded::Qwen2(w) => Weights::Qwen2 {
                model: w.clone(),
                cache: KvCache::default(),
            },
        }
    }

    /// Forget the conversation.
    pub(super) fn clear(&mut self) {
        match self {
            Weights::Llama { model, pristine } => *model = pristine.clone(),
            Weights::Qwen2 { cache, .. } => cache.clear(),
        }
    }

    fn forward(&mut self, x: &Tensor, position: usize) -> candle_core::Result<Tensor> {
        match self {
            Weights::Llama { model, .. } => model.forward(x, position),
            Weights::Qwen2 { model, cache } => model.forward(cache, x, position),
        }
    }

    /// Read `tokens` (after the `position` tokens already read) in forward calls of at most
    /// `chunk` tokens; the logits after the last one. `interrupted` is asked before each call.
    pub(super) fn prefill(
        &mut self,
        tokens: &[u32],
        position: usize,
        chunk: usize,
        interrupted: impl Fn() -> Option<ModelError>,
    ) -> Result<Tensor, ModelError> {
        let infer = |e: candle_core::Error| ModelError::Inference(e.to_string());
        let mut logits = None;
        let mut at = position;
        for part in tokens.chunks(chunk.max(1)) {
            if let Some(e) = interrupted() {
                return Err(e);
            }
            let x = Tensor::new(part, &Device::Cpu)
                .and_then(|t| t.unsqueeze(0))
                .map_err(infer)?;
            logits = Some(
                self.forward(&x, at)
                    .and_then(|l| l.squeeze(0))
                    .map_err(infer)?,
            );
            at += part.len();
        }
        logits.ok_or_else(|| ModelError::Inference("an empty prompt".into()))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The installed model `name` (under the model directory, `just setup`), loaded once.
    pub(in crate::llm) fn load(name: &str, f16: bool) -> (Loaded, Vec<u32>) {
        let path = crate::models::dir().join(name);
        let mut file = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run `just setup`)", path.display()));
        let header = gguf_file::Content::read(&mut file).unwrap();
        let loaded = Loaded::read(header, &mut file, f16).unwrap();
        // A prompt of 70 tokens: any ids of the vocabulary do.
        let tokens = (0..70u32).map(|i| 100 + i * 37).collect();
        (loaded, tokens)
    }

    /// The largest difference between two logit vectors.
    pub(in crate::llm) fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// A prompt read in chunks of each of `chunks` gives the logits of the prompt read whole,
    /// within `tolerance`, and the same next token; so does the token after it, and a cleared
    /// session reads the prompt afresh. Sessions share one loaded copy.
    fn chunked_matches_whole(name: &str, f16: bool, chunks: &[usize], tolerance: f32) {
        let (loaded, tokens) = load(name, f16);
        let mut whole_session = Weights::of(&loaded);
        let whole = whole_session
            .prefill(&tokens, 0, tokens.len(), || None)
            .unwrap();
        let argmax = |t: &Tensor| t.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        let next = [tokens[3]];
        let after_whole = whole_session
            .prefill(&next, tokens.len(), 1, || None)
            .unwrap();
        for &chunk in chunks {
            let mut session = Weights::of(&loaded);
            let chunked = session.prefill(&tokens, 0, chunk, || None).unwrap();
            let difference = max_difference(&whole, &chunked);
            assert!(
                difference < tolerance,
                "{name}, chunks of {chunk}: logits differ by {difference}"
            );
            assert_eq!(
                argmax(&whole),
                argmax(&chunked),
                "{name}, chunks of {chunk}"
            );
            let after = session.prefill(&next, tokens.len(), 1, || None).unwrap();
            assert!(max_difference(&after_whole, &after) < tolerance);
            session.clear();
            let again = session.prefill(&tokens, 0, chunk, || None).unwrap();
            assert_eq!(max_difference(&again, &chunked), 0.0);
        }
    }

    /// Qwen2 (reflow's, [`super::super::qwen2`]) with f16 weights, as `reflow` runs it: chunks
    /// of 16 and 64 (the last one 6 tokens) agree with the whole prompt to f16's rounding.
    #[test]
    fn a_prompt_read_in_chunks_gives_the_logits_of_the_whole_prompt_qwen2() {
        chunked_matches_whole(crate::llm::EMBEDDED_QWEN, true, &[16, 64], 0.1);
    }

    /// candle's llama, quantized weights (a test process leaves candle's f16 switch off): chunks
    /// of 35 and 64 give exactly the whole prompt's logits. (Chunks of 16, and one token at a
    /// time, differ by up to 0.9 of 28: candle's quantized kernels round differently for some
    /// numbers of rows; generation has always read one token at a time.)
    #[test]
    fn a_prompt_read_in_chunks_gives_the_logits_of_the_whole_prompt_llama() {
        chunked_matches_whole(crate::llm::EMBEDDED_SMALL, false, &[35, 64], 1e-4);
    }

    #[test]
    fn an_interrupted_prefill_stops_before_the_next_chunk() {
        let (loaded, tokens) = load(crate::llm::EMBEDDED_SMALL, false);
        let calls = std::cell::Cell::new(0);
        let stopped = Weights::of(&loaded).prefill(&tokens, 0, 16, || {
            calls.set(calls.get() + 1);
            (calls.get() > 2).then_some(ModelError::Stopped)
        });
        assert!(matches!(stopped, Err(ModelError::Stopped)));
        assert_eq!(calls.get(), 3);
    }
}
