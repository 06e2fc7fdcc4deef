//! Text decoder: token + learned position embeddings, pre-norm blocks of causal self-attention
//! (with a key/value cache), cross-attention over the audio, feed-forward; logits through the
//! token embedding (tied output projection).

use burn::tensor::Tensor;

use super::attention::{CrossAttention, SelfAttention};
use super::layers::{FeedForward, LayerNorm};
use crate::error::Result;
use crate::whisper::backend::{int_tensor, upload, Rows, WhisperBackend};
use crate::whisper::config::WhisperConfig;
use crate::whisper::weights::TensorSource;

/// The length a fixed-shape backend pads every prompt to (the longest is 224 tokens of previous
/// text plus the start sequence): one set of kernels for all prompts. Each length costs a set
/// of compiled and tuned kernels (minutes on the first pod of a node), while the padding costs
/// a GPU next to nothing: one pass over 256 positions per window.
const PROMPT_LENGTH: usize = 256;

#[derive(Debug, Clone)]
struct DecoderBlock<B: WhisperBackend> {
    self_attention: SelfAttention<B>,
    cross_attention: CrossAttention<B>,
    ffn: FeedForward<B>,
}

#[derive(Debug, Clone)]
pub struct Decoder<B: WhisperBackend> {
    /// Token embeddings, also the output projection (one copy of the largest tensor).
    embedding: B::Embedding,
    positions: Tensor<B, 2>,
    blocks: Vec<DecoderBlock<B>>,
    norm: LayerNorm<B>,
    /// Positions the self-attention cache holds.
    n_text_ctx: usize,
    heads: usize,
}

/// Decoding state of one window's hypotheses (beams, which share its cross-attention memory)
/// or of a batch of windows (a row and a memory row each).
///
/// On a fixed-shape backend the rows the device computes (`rows`) stay at their largest
/// count: rows that leave (finished windows) are replaced by copies of a remaining row, whose
/// results are dropped (`live` rows are the caller's).
#[derive(Debug, Clone)]
pub struct DecoderState<B: WhisperBackend> {
    memory: Vec<B::Memory>,
    cache: Vec<B::Cache>,
    /// Rows are windows (started from a batch of encoder outputs), not beams of one window.
    windows: bool,
    rows: usize,
    live: usize,
    /// Positions already fed.
    pub len: usize,
}

impl<B: WhisperBackend> DecoderState<B> {
    /// Keeps rows `indices` (in that order, repeats allowed): beam reordering and expansion, or
    /// finished windows leaving a batch.
    pub fn select_rows(&mut self, indices: &[usize], device: &B::Device) {
        let mut indices: Vec<u32> = indices.iter().map(|&r| r as u32).collect();
        self.live = indices.len();
        if B::FIXED_SHAPES && indices.len() < self.rows {
            let last = indices.last().copied().unwrap_or(0);
            indices.resize(self.rows, last);
        }
        self.rows = indices.len();
        let indices = int_tensor::<B>(&indices, device);
        for cache in &mut self.cache {
            B::select_cache(cache, &indices);
        }
        if self.windows {
            for memory in &mut self.memory {
                B::select_memory(memory, &indices);
            }
        }
    }
}

impl<B: WhisperBackend> Decoder<B> {
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
            embedding: B::load_embedding(source, c.n_vocab, d, device)?,
            positions: upload(source.tensor("decoder/position_encodings/encodings", &[c.n_text_ctx, d])?, device),
            blocks,
            norm: LayerNorm::load(source, "decoder/layer_norm", d, device)?,
            n_text_ctx: c.n_text_ctx,
            heads: c.n_text_head,
        })
    }

    /// A fresh state for the encoder output `[windows, frames, d]`: one row per window.
    pub fn start(&self, encoded: Tensor<B, 3>) -> DecoderState<B> {
        let ([windows, _, d], heads) = (encoded.dims(), self.heads);
        let device = encoded.device();
        DecoderState {
            windows: windows > 1,
            memory: self.blocks.iter().map(|b| b.cross_attention.memory(encoded.clone())).collect(),
            cache: self.blocks.iter().map(|_| B::new_cache(windows, heads, d / heads, self.n_text_ctx, &device)).collect(),
            rows: windows,
            live: windows,
            len: 0,
        }
    }

    /// Feeds `tokens` (`batch` rows of `n`, row-major; `batch` is the state's live rows) after
    /// the state's positions. Returns hidden states `[rows, n', d]` of the state's device rows,
    /// where `n' ≥ n` on a fixed-shape backend (the prompt padded): read them with
    /// [`Decoder::logits_at`].
    pub fn forward(&self, tokens: &[u32], batch: usize, state: &mut DecoderState<B>) -> Tensor<B, 3> {
        let n = tokens.len() / batch;
        let (tokens, padded) = self.pad(tokens, batch, n, state);
        let device = self.positions.device();
        let rows = tokens.len() / padded;
        let embedded = B::embed(&self.embedding, &tokens, rows, &device);
        let last = self.n_text_ctx - 1;
        let at: Vec<u32> = (state.len..state.len + padded).map(|p| p.min(last) as u32).collect();
        let positions = self.positions.clone().select(0, int_tensor::<B>(&at, &device)).unsqueeze::<3>();
        let mut x = embedded + positions;
        let layers = self.blocks.iter().zip(state.cache.iter_mut()).zip(&state.memory);
        for ((block, cache), memory) in layers {
            x = block.self_attention.forward_cached(x, cache, state.len);
            x = block.cross_attention.forward(x, memory);
            x = block.ffn.forward(x);
        }
        state.len += n;
        self.norm.forward(x)
    }

    /// On a fixed-shape backend: `tokens` with every row's last token repeated to
    /// [`PROMPT_LENGTH`], and copies of the last row up to the state's device rows.
    fn pad(&self, tokens: &[u32], batch: usize, n: usize, state: &DecoderState<B>) -> (Vec<u32>, usize) {
        if !B::FIXED_SHAPES {
            return (tokens.to_vec(), n);
        }
        let room = self.n_text_ctx - state.len;
        let padded = if n == 1 { 1 } else { PROMPT_LENGTH.min(room).max(n) };
        let mut out: Vec<u32> =
            tokens.chunks(n).flat_map(|row| row.iter().copied().chain(std::iter::repeat_n(row[n - 1], padded - n))).collect();
        let last_row = out[(batch - 1) * padded..].to_vec();
        for _ in batch..state.rows {
            out.extend_from_slice(&last_row);
        }
        (out, padded)
    }

    /// Logits at `position` of hidden states from [`Decoder::forward`], one `Vec` per live row.
    pub fn logits_at(&self, hidden: Tensor<B, 3>, position: usize, state: &DecoderState<B>) -> Vec<Vec<f32>> {
        let [rows, _, d] = hidden.dims();
        let mut logits = B::logits(&self.embedding, hidden.narrow(1, position, 1).reshape([rows, d]));
        logits.truncate(state.live);
        logits
    }
}
