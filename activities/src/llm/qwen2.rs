//! Qwen2 (the embedded default, Qwen2.5-Coder-0.5B-Instruct) as one set of weights shared by
//! every session: [`Qwen2`] holds the weights, immutable and `Sync`; each session brings its
//! own [`KvCache`]. The arithmetic is candle-transformers' `quantized_qwen2` (its layers,
//! RoPE, grouped-query attention and causal mask, step for step), rearranged for memory:
//!
//! - candle's model keeps the KV cache inside the weights, so two sessions generating side by
//!   side needed two loaded copies (1.5 GB each with f16 weights); here they share one;
//! - the token embedding is kept once, in f16 when the weights are f16, and is also the output
//!   projection (Qwen2.5 ties them); candle dequantizes it to f32 for the lookup (545 MB) and
//!   again to f16 for the output (272 MB);
//! - the causal mask is built for each forward call and dropped: candle caches one per
//!   (prompt length, context length) it ever saw, for the life of the weights, so a worker's
//!   memory grew with every prompt of a new length.
//!
//! Reading a long prompt in chunks (what keeps attention's scores small) is the caller's
//! ([`super::chat_model`]); [`Qwen2::forward`] takes any chunk at any position.

use candle_core::quantized::{QMatMul, gguf_file};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_transformers::quantized_nn::RmsNorm;
use candle_transformers::utils::repeat_kv;

/// One transformer block's weights.
struct Layer {
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    bq: Tensor,
    bk: Tensor,
    bv: Tensor,
    wo: QMatMul,
    attention_norm: RmsNorm,
    gate: QMatMul,
    down: QMatMul,
    up: QMatMul,
    ffn_norm: RmsNorm,
}

/// The weights of a Qwen2 GGUF, shared by every session.
pub struct Qwen2 {
    /// `(vocabulary, hidden)`: rows looked up for the input tokens.
    embedding: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    neg_inf: Tensor,
}

/// One session's attention keys and values, per layer.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// Forget everything (a new conversation).
    pub fn clear(&mut self) {
        self.layers.clear();
    }
}

impl Qwen2 {
    /// Read the weights of the GGUF `content` from `reader`: the matrices dequantized to f16
    /// when `f16` (what [`super::chat_model::prefer_f16_weights`] asks), else kept quantized.
    pub fn from_gguf<R: std::io::Seek + std::io::Read>(
        content: &gguf_file::Content,
        reader: &mut R,
        f16: bool,
    ) -> Result<Self> {
        let device = &Device::Cpu;
        let get = |key: &str| match content.metadata.get(key) {
            Some(v) => Ok(v),
            None => candle_core::bail!("cannot find {key} in metadata"),
        };
        let n_head = get("qwen2.attention.head_count")?.to_u32()? as usize;
        let n_kv_head = get("qwen2.attention.head_count_kv")?.to_u32()? as usize;
        let hidden = get("qwen2.embedding_length")?.to_u32()? as usize;
        let context = get("qwen2.context_length")?.to_u32()? as usize;
        let blocks = get("qwen2.block_count")?.to_u32()? as usize;
        let eps = get("qwen2.attention.layer_norm_rms_epsilon")?.to_f32()? as f64;
        let rope_base = get("qwen2.rope.freq_base")
            .and_then(|m| m.to_f32())
            .unwrap_or(10_000.0);
        let head_dim = hidden / n_head;
        let mut tensor = |name: &str| content.tensor(reader, name, device);
        // Said here rather than left to candle's process-wide switch, which it reads once per
        // thread.
        let matrix = |w: candle_core::quantized::QTensor| match f16 {
            true => w.dequantize_f16(device).map(QMatMul::TensorF16),
            false => QMatMul::from_qtensor(w),
        };

        let embedding_q = tensor("token_embd.weight")?;
        let embedding = if f16 {
            embedding_q.dequantize_f16(device)?
        } else {
            embedding_q.dequantize(device)?
        };
        let output = match tensor("output.weight") {
            Ok(w) => matrix(w)?,
            // Tied embeddings: the same matrix, once.
            Err(_) if f16 => QMatMul::TensorF16(embedding.clone()),
            Err(_) => matrix(embedding_q)?,
        };
        let norm = RmsNorm::from_qtensor(tensor("output_norm.weight")?, eps)?;
        let mut layers = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let mut w = |name: &str| tensor(&format!("blk.{i}.{name}"));
            layers.push(Layer {
                wq: matrix(w("attn_q.weight")?)?,
                wk: matrix(w("attn_k.weight")?)?,
                wv: matrix(w("attn_v.weight")?)?,
                bq: w("attn_q.bias")?.dequantize(device)?,
                bk: w("attn_k.bias")?.dequantize(device)?,
                bv: w("attn_v.bias")?.dequantize(device)?,
                wo: matrix(w("attn_output.weight")?)?,
                attention_norm: RmsNorm::from_qtensor(w("attn_norm.weight")?, eps)?,
                gate: matrix(w("ffn_gate.weight")?)?,
                down: matrix(w("ffn_down.weight")?)?,
                up: matrix(w("ffn_up.weight")?)?,
                ffn_norm: RmsNorm::from_qtensor(w("ffn_norm.weight")?, eps)?,
            });
        }
        let theta: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / rope_base.powf(i as f32 / head_dim as f32))
            .collect();
        let theta = Tensor::new(theta.as_slice(), device)?;
        let angles = Tensor::arange(0, context as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((context, 1))?
            .matmul(&theta.reshape((1, theta.elem_count()))?)?;
        Ok(Qwen2 {
            embedding,
            layers,
            norm,
            output,
            cos: angles.cos()?,
            sin: angles.sin()?,
            n_head,
            n_kv_head,
            head_dim,
            neg_inf: Tensor::new(f32::NEG_INFINITY, device)?,
        })
    }

    /// The logits after the last of the tokens `x` (`(1, n)`), which stand at positions
    /// `position..position + n` after the `position` tokens `cache` holds; `cache` then holds
    /// them too.
    pub fn forward(&self, cache: &mut KvCache, x: &Tensor, position: usize) -> Result<Tensor> {
        let (_, seq_len) = x.dims2()?;
        if position == 0 {
            cache.clear();
        }
        cache.layers.resize_with(self.layers.len(), || None);
        let mask = (seq_len > 1)
            .then(|| candle_transformers::utils::build_causal_mask(seq_len, position, x.device()))
            .transpose()?;
        let ids = x.flatten_all()?;
        let mut h = self
            .embedding
            .index_select(&ids, 0)?
            .to_dtype(DType::F32)?
            .unsqueeze(0)?;
        for (layer, kv) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let attn = self.attention(
                layer,
                kv,
                &layer.attention_norm.forward(&h)?,
                mask.as_ref(),
                position,
            )?;
            h = (attn + &h)?;
            let x = layer.ffn_norm.forward(&h)?;
            let gate = candle_nn::ops::silu(&layer.gate.forward(&x)?)?;
            let mlp = layer.down.forward(&(gate * layer.up.forward(&x)?)?)?;
            h = (mlp + &h)?;
        }
        let last = self.norm.forward(&h)?.i((.., seq_len - 1, ..))?;
        self.output.forward(&last)
    }

    fn rope(&self, x: &Tensor, position: usize) -> Result<Tensor> {
        let (_, _, seq_len, _) = x.dims4()?;
        let cos = self.cos.narrow(0, position, seq_len)?;
        let sin = self.sin.narrow(0, position, seq_len)?;
        candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
    }

    fn attention(
        &self,
        layer: &Layer,
        kv: &mut Option<(Tensor, Tensor)>,
        x: &Tensor,
        mask: Option<&Tensor>,
        position: usize,
    ) -> Result<Tensor> {
        let (b, seq_len, hidden) = x.dims3()?;
        let heads = |t: Tensor, n: usize| {
            t.reshape((b, seq_len, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(layer.wq.forward(x)?.broadcast_add(&layer.bq)?, self.n_head)?;
        let k = heads(
            layer.wk.forward(x)?.broadcast_add(&layer.bk)?,
            self.n_kv_head,
        )?;
        let v = heads(
            layer.wv.forward(x)?.broadcast_add(&layer.bv)?,
            self.n_kv_head,
        )?;
        let q = self.rope(&q, position)?;
        let k = self.rope(&k, position)?;
        let (k, v) = match kv.take() {
            Some((k0, v0)) if position > 0 => {
                (Tensor::cat(&[&k0, &k], 2)?, Tensor::cat(&[&v0, &v], 2)?)
            }
            _ => (k, v),
        };
        *kv = Some((k.clone(), v.clone()));
        let k = repeat_kv(k, self.n_head / self.n_kv_head)?;
        let v = repeat_kv(v, self.n_head / self.n_kv_head)?;
        let att = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let att = match mask {
            None => att,
            Some(mask) => mask
                .broadcast_as(att.shape())?
                .where_cond(&self.neg_inf.broadcast_as(att.shape().dims())?, &att)?,
        };
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v.contiguous()?)?;
        let y = y.transpose(1, 2)?.reshape((b, seq_len, hidden))?;
        layer.wo.forward(&y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::weights::tests::{load, max_difference};
    use candle_transformers::models::quantized_qwen2;

    /// reflow's Qwen2 computes what candle's does: the same logits after a prompt read whole
    /// (quantized weights, as a test process has them: the f16 switch is off).
    #[test]
    fn the_shared_qwen2_gives_candles_logits() {
        let (_, tokens) = load(crate::llm::EMBEDDED_SMALL, false);
        let path = crate::models::dir().join(crate::llm::EMBEDDED_QWEN);
        let mut file = std::fs::File::open(&path).unwrap();
        let header = gguf_file::Content::read(&mut file).unwrap();
        let ours = Qwen2::from_gguf(&header, &mut file, false).unwrap();
        let mut theirs =
            quantized_qwen2::ModelWeights::from_gguf(header, &mut file, &Device::Cpu).unwrap();
        let x = Tensor::new(tokens.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let mut cache = KvCache::default();
        let a = ours.forward(&mut cache, &x, 0).unwrap().squeeze(0).unwrap();
        let b = theirs.forward(&x, 0).unwrap().squeeze(0).unwrap();
        let difference = max_difference(&a, &b);
        assert!(difference < 1e-3, "logits differ by {difference}");
        // And after one more token from the caches.
        let next = Tensor::new(&[tokens[5]], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let a = ours
            .forward(&mut cache, &next, tokens.len())
            .unwrap()
            .squeeze(0)
            .unwrap();
        let b = theirs
            .forward(&next, tokens.len())
            .unwrap()
            .squeeze(0)
            .unwrap();
        assert!(max_difference(&a, &b) < 1e-3);
    }
}
