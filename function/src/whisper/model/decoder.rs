//! Text decoder: token + learned position embeddings, pre-norm blocks of causal self-attention
//! (with a key/value cache), cross-attention over the audio, feed-forward; logits through the
//! token embedding (tied output projection).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::attention::{CrossAttention, KeyValue, SelfAttention};
use super::cpu_ops;
use super::embedding::TokenEmbedding;
use super::layers::{upload, FeedForward, LayerNorm, Rows};
use crate::error::Result;
use crate::whisper::config::WhisperConfig;
use crate::whisper::weights::TensorSource;

#[derive(Debug, Clone)]
struct DecoderBlock<B: Backend> {
    self_attention: SelfAttention<B>,
    cross_attention: CrossAttention<B>,
    ffn: FeedForward<B>,
}

#[derive(Debug, Clone)]
pub struct Decoder<B: Backend> {
    /// Token embeddings, also the output projection (one copy of the largest tensor).
    embedding: TokenEmbedding<B>,
    positions: Tensor<B, 2>,
    blocks: Vec<DecoderBlock<B>>,
    norm: LayerNorm<B>,
}

/// Per-sequence decoding state: the cross-attention memory and the growing self-attention
/// cache. Rows are either hypotheses (beams) of one window, which share its memory, or
/// windows of a batch, each with its own memory row.
#[derive(Debug, Clone)]
pub struct DecoderState<B: Backend> {
    memory: Vec<KeyValue<B>>,
    cache: Vec<Option<KeyValue<B>>>,
    /// Rows are windows (started from a batch of encoder outputs), not beams of one window.
    windows: bool,
    /// Positions already fed.
    pub len: usize,
}

impl<B: Backend> DecoderState<B> {
    /// Keeps rows `indices` (in that order, repeats allowed) of the self-attention cache: beam
    /// reordering and expansion, or finished windows leaving a batch. Beams of one window share
    /// its memory: the CPU kernel reads its one row for all of them, other backends get it
    /// repeated when the number of rows changes.
    pub fn select_rows(&mut self, indices: Tensor<B, 1, Int>) {
        let rows = indices.dims()[0];
        let resize_memory = self.windows
            || (!cpu_ops::is_cpu::<B>() && self.memory.first().is_some_and(|(k, _)| k.dims()[0] != rows));
        let select = |t: &mut Tensor<B, 4>| *t = t.clone().select(0, indices.clone());
        for (k, v) in self.cache.iter_mut().flatten() {
            select(k);
            select(v);
        }
        if resize_memory {
            for (k, v) in self.memory.iter_mut() {
                select(k);
                select(v);
            }
        }
    }
}

impl<B: Backend> Decoder<B> {
    pub fn load(source: &dyn TensorSource, c: &WhisperConfig, device: &B::Device) -> Result<Self> {
        let d = c.n_text_state;
        let blocks = (0..c.n_text_layer)
            .map(|i| {
                let name = format!("decoder/layer_{i}");
                Ok(DecoderBlock {
                    self_attention: SelfAttention::load(source, &format!("{name}/self_attention"), d, c.n_text_head, Rows::Few, device)?,
                    cross_attention: CrossAttention::load(source, &format!("{name}/attention"), d, c.n_text_head, device)?,
                    ffn: FeedForward::load(source, &format!("{name}/ffn"), d, Rows::Few, device)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Decoder {
            embedding: TokenEmbedding::load(source, c.n_vocab, d, device)?,
            positions: upload(source.tensor("decoder/position_encodings/encodings", &[c.n_text_ctx, d])?, device),
            blocks,
            norm: LayerNorm::load(source, "decoder/layer_norm", d, device)?,
        })
    }

    /// A fresh state for the encoder output `[batch, frames, d]`: one row per window.
    pub fn start(&self, encoded: Tensor<B, 3>) -> DecoderState<B> {
        DecoderState {
            windows: encoded.dims()[0] > 1,
            memory: self.blocks.iter().map(|b| b.cross_attention.memory(encoded.clone())).collect(),
            cache: vec![None; self.blocks.len()],
            len: 0,
        }
    }

    /// Feeds `tokens` (`batch` rows of `n`, row-major) after the state's positions; returns
    /// hidden states `[batch, n, d]`.
    pub fn forward(&self, tokens: &[u32], batch: usize, state: &mut DecoderState<B>) -> Tensor<B, 3> {
        let n = tokens.len() / batch;
        let embedded = self.embedding.embed(tokens, batch, &self.positions.device());
        let positions = self.positions.clone().narrow(0, state.len, n).unsqueeze::<3>();
        let mut x = embedded + positions;
        // A prompt (n > 1) is fed into an empty cache, so a plain causal mask is right.
        let causal = n > 1;
        let layers = self.blocks.iter().zip(state.cache.iter_mut()).zip(&state.memory);
        for ((block, cache), memory) in layers {
            x = block.self_attention.forward(x, Some(cache), causal);
            x = block.cross_attention.forward(x, memory);
            x = block.ffn.forward(x);
        }
        state.len += n;
        self.norm.forward(x)
    }

    /// Logits of hidden states `[rows, d]`, one `Vec` per row.
    pub fn logits(&self, hidden: Tensor<B, 2>) -> Vec<Vec<f32>> {
        self.embedding.logits(hidden)
    }
}
