//! Multi-head attention: self-attention (fused q/k/v, optionally over the decoder's cache)
//! and cross-attention over the encoder output (keys/values projected once per window).

use burn::tensor::Tensor;

use super::layers::{LayerNorm, Linear};
use crate::error::Result;
use crate::whisper::backend::{split_heads, Rows, WhisperBackend};
use crate::whisper::weights::TensorSource;

#[derive(Debug, Clone)]
pub struct SelfAttention<B: WhisperBackend> {
    norm: LayerNorm<B>,
    qkv: Linear<B>,
    out: Linear<B>,
    heads: usize,
    dim: usize,
}

impl<B: WhisperBackend> SelfAttention<B> {
    pub fn load(source: &dyn TensorSource, name: &str, dim: usize, heads: usize, rows: Rows, device: &B::Device) -> Result<Self> {
        Ok(SelfAttention {
            norm: LayerNorm::load(source, &format!("{name}/layer_norm"), dim, device)?,
            qkv: Linear::load(source, &format!("{name}/linear_0"), dim, 3 * dim, rows, device)?,
            out: Linear::load(source, &format!("{name}/linear_1"), dim, dim, rows, device)?,
            heads,
            dim,
        })
    }

    /// The encoder's: `x + attn(norm(x))` over all positions, no mask.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let (q, k, v) = self.qkv_heads(x.clone());
        x + self.out.forward(B::encoder_attention(q, k, v))
    }

    /// The decoder's: `x`'s keys and values are written to `cache` at positions `len..`, and
    /// each position of `x` attends to the cached positions up to its own.
    pub fn forward_cached(&self, x: Tensor<B, 3>, cache: &mut B::Cache, len: usize) -> Tensor<B, 3> {
        let (q, k, v) = self.qkv_heads(x.clone());
        x + self.out.forward(B::cached_attention(cache, len, q, k, v))
    }

    /// q, k, v of the fused projection, `[b, heads, t, head_dim]` views each.
    fn qkv_heads(&self, x: Tensor<B, 3>) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let qkv = self.qkv.forward(self.norm.forward(x));
        let d = self.dim;
        let part = |i: usize| split_heads(qkv.clone().narrow(2, i * d, d), self.heads);
        (part(0), part(1), part(2))
    }
}

#[derive(Debug, Clone)]
pub struct CrossAttention<B: WhisperBackend> {
    norm: LayerNorm<B>,
    query: Linear<B>,
    key_value: Linear<B>,
    out: Linear<B>,
    heads: usize,
}

impl<B: WhisperBackend> CrossAttention<B> {
    /// Always a decoder layer: its queries are [`Rows::Few`], its keys and values the encoder's
    /// positions.
    pub fn load(source: &dyn TensorSource, name: &str, dim: usize, heads: usize, device: &B::Device) -> Result<Self> {
        Ok(CrossAttention {
            norm: LayerNorm::load(source, &format!("{name}/layer_norm"), dim, device)?,
            query: Linear::load(source, &format!("{name}/linear_0"), dim, dim, Rows::Few, device)?,
            key_value: Linear::load(source, &format!("{name}/linear_1"), dim, 2 * dim, Rows::Many, device)?,
            out: Linear::load(source, &format!("{name}/linear_2"), dim, dim, Rows::Few, device)?,
            heads,
        })
    }

    /// Projects the encoder output to keys and values, once per window.
    pub fn memory(&self, encoded: Tensor<B, 3>) -> B::Memory {
        B::memory(self.key_value.forward(encoded), self.heads)
    }

    /// Returns `x + attn(norm(x), memory)`.
    pub fn forward(&self, x: Tensor<B, 3>, memory: &B::Memory) -> Tensor<B, 3> {
        let q = split_heads(self.query.forward(self.norm.forward(x.clone())), self.heads);
        x + self.out.forward(B::cross_attention(q, memory))
    }
}
