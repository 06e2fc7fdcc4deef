//! Multi-head attention: self-attention (fused q/k/v, optional key/value cache) and
//! cross-attention over the encoder output (keys/values projected once per window).

use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::Tensor;

use super::cpu_ops;
use super::layers::{LayerNorm, Linear, Rows};
use crate::error::Result;
use crate::whisper::weights::TensorSource;

/// Keys and values of one layer, `[batch, heads, positions, head_dim]` each.
pub type KeyValue<B> = (Tensor<B, 4>, Tensor<B, 4>);

/// `[b, t, d]` -> `[b, heads, t, d / heads]`.
fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [b, t, d] = x.dims();
    x.reshape([b, t, heads, d / heads]).swap_dims(1, 2)
}

/// `[b, heads, t, head_dim]` -> `[b, t, heads * head_dim]`.
fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, h, t, dh] = x.dims();
    x.swap_dims(1, 2).reshape([b, t, h * dh])
}

/// The same values in row-major order: reshaping a strided view materialises it.
fn contiguous<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, t, d] = x.dims();
    x.reshape([b * h, t, d]).reshape([b, h, t, d])
}

/// softmax(q kᵀ / sqrt(head_dim)) v. Whisper scales q and k by head_dim^-1/4 each; CTranslate2
/// scales q by head_dim^-1/2 — the same product.
/// Heads come out merged, `[b, t, d]`. On the CPU backend this is tingxie's kernel (about 4x
/// burn-flex's on the encoder's 1500 positions, and it reads views in place).
fn attend<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, causal: bool) -> Tensor<B, 3> {
    if let Some(merged) = cpu_ops::attention(&q, &k, &v, causal) {
        return merged;
    }
    let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
    merge_heads(attention(q, k, v, None, None, options))
}

#[derive(Debug, Clone)]
pub struct SelfAttention<B: Backend> {
    norm: LayerNorm<B>,
    qkv: Linear<B>,
    out: Linear<B>,
    heads: usize,
    dim: usize,
}

impl<B: Backend> SelfAttention<B> {
    pub fn load(source: &dyn TensorSource, name: &str, dim: usize, heads: usize, rows: Rows, device: &B::Device) -> Result<Self> {
        Ok(SelfAttention {
            norm: LayerNorm::load(source, &format!("{name}/layer_norm"), dim, device)?,
            qkv: Linear::load(source, &format!("{name}/linear_0"), dim, 3 * dim, rows, device)?,
            out: Linear::load(source, &format!("{name}/linear_1"), dim, dim, rows, device)?,
            heads,
            dim,
        })
    }

    /// Returns `x + attn(norm(x))`. With a cache, the new keys/values are appended to it and
    /// attention spans all cached positions; `causal` masks future positions within `x`
    /// (only valid when the cache starts empty, which is how the decoder feeds a prompt).
    pub fn forward(&self, x: Tensor<B, 3>, cache: Option<&mut Option<KeyValue<B>>>, causal: bool) -> Tensor<B, 3> {
        let qkv = self.qkv.forward(self.norm.forward(x.clone()));
        let Some(cache) = cache else {
            // The encoder's case: no cache, no mask.
            let (q, k, v) = self.split(&qkv);
            return x + self.out.forward(attend(q, k, v, causal));
        };
        let (q, mut k, mut v) = self.split(&qkv);
        if let Some((past_k, past_v)) = cache.take() {
            k = Tensor::cat(vec![past_k, k], 2);
            v = Tensor::cat(vec![past_v, v], 2);
        }
        *cache = Some((k.clone(), v.clone()));
        x + self.out.forward(attend(q, k, v, causal))
    }

    /// q, k, v of a fused projection, `[b, heads, t, head_dim]` views each.
    fn split(&self, qkv: &Tensor<B, 3>) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let d = self.dim;
        let part = |i: usize| split_heads(qkv.clone().narrow(2, i * d, d), self.heads);
        (part(0), part(1), part(2))
    }
}

#[derive(Debug, Clone)]
pub struct CrossAttention<B: Backend> {
    norm: LayerNorm<B>,
    query: Linear<B>,
    key_value: Linear<B>,
    out: Linear<B>,
    heads: usize,
    dim: usize,
}

impl<B: Backend> CrossAttention<B> {
    /// Always a decoder layer: its queries are [`Rows::Few`], its keys and values the encoder's
    /// positions.
    pub fn load(source: &dyn TensorSource, name: &str, dim: usize, heads: usize, device: &B::Device) -> Result<Self> {
        Ok(CrossAttention {
            norm: LayerNorm::load(source, &format!("{name}/layer_norm"), dim, device)?,
            query: Linear::load(source, &format!("{name}/linear_0"), dim, dim, Rows::Few, device)?,
            key_value: Linear::load(source, &format!("{name}/linear_1"), dim, 2 * dim, Rows::Many, device)?,
            out: Linear::load(source, &format!("{name}/linear_2"), dim, dim, Rows::Few, device)?,
            heads,
            dim,
        })
    }

    /// Projects the encoder output to keys and values, once per window, each contiguous: a
    /// decoding step reads all of them, so they are laid out to stream.
    pub fn memory(&self, encoded: Tensor<B, 3>) -> KeyValue<B> {
        let kv = self.key_value.forward(encoded);
        if let Some(split) = cpu_ops::split_key_value(&kv, self.heads) {
            return split;
        }
        let k = split_heads(kv.clone().narrow(2, 0, self.dim), self.heads);
        let v = split_heads(kv.narrow(2, self.dim, self.dim), self.heads);
        (contiguous(k), contiguous(v))
    }

    /// Returns `x + attn(norm(x), memory)`.
    pub fn forward(&self, x: Tensor<B, 3>, memory: &KeyValue<B>) -> Tensor<B, 3> {
        let q = split_heads(self.query.forward(self.norm.forward(x.clone())), self.heads);
        let (k, v) = memory.clone();
        x + self.out.forward(attend(q, k, v, false))
    }
}
