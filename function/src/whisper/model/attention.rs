//! Multi-head attention: self-attention (fused q/k/v, optional key/value cache) and
//! cross-attention over the encoder output (keys/values projected once per window).

use std::any::TypeId;

use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Tensor, TensorData};

use super::cpu_attention::{self, Options, Shape, Strides};

use super::layers::{LayerNorm, Linear};
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
fn scaled_dot_product<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, causal: bool) -> Tensor<B, 4> {
    let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
    attention(q, k, v, None, None, options)
}

/// Attention over the fused projection `qkv` `[b, t, 3d]` with burn's CPU backend, through
/// the blocked kernel in `cpu_attention` (about 4x faster than burn-flex's on the encoder's
/// 1500 positions); heads come out merged, `[b, t, d]`. None on other backends.
fn cpu_fused_attention<B: Backend>(qkv: Tensor<B, 3>, heads: usize) -> Result<Tensor<B, 3>, Tensor<B, 3>> {
    if TypeId::of::<B>() != TypeId::of::<burn::backend::Flex>() {
        return Err(qkv);
    }
    let [batch, seq, three_d] = qkv.dims();
    let (d, device) = (three_d / 3, qkv.device());
    let head_dim = d / heads;
    let data = qkv.into_data();
    let Ok(values) = data.as_slice::<f32>() else {
        return Err(Tensor::from_data(data, &device));
    };
    let mut out = vec![0.0f32; batch * seq * d];
    let (fused, merged) = (Strides::fused_qkv(seq, heads, head_dim), Strides::merged(seq, heads, head_dim));
    let shape = Shape { batch, heads, seq_q: seq, seq_k: seq, head_dim };
    cpu_attention::attention(values, fused, &values[d..], fused, &values[2 * d..], fused, &mut out, merged, shape, Options::default());
    Ok(Tensor::from_data(TensorData::new(out, [batch, seq, d]), &device))
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
    pub fn load(source: &dyn TensorSource, name: &str, dim: usize, heads: usize, device: &B::Device) -> Result<Self> {
        Ok(SelfAttention {
            norm: LayerNorm::load(source, &format!("{name}/layer_norm"), dim, device)?,
            qkv: Linear::load(source, &format!("{name}/linear_0"), dim, 3 * dim, true, device)?,
            out: Linear::load(source, &format!("{name}/linear_1"), dim, dim, true, device)?,
            heads,
            dim,
        })
    }

    /// Returns `x + attn(norm(x))`. With a cache, the new keys/values are appended to it and
    /// attention spans all cached positions; `causal` masks future positions within `x`
    /// (only valid when the cache starts empty, which is how the decoder feeds a prompt).
    pub fn forward(&self, x: Tensor<B, 3>, cache: Option<&mut Option<KeyValue<B>>>, causal: bool) -> Tensor<B, 3> {
        let mut qkv = self.qkv.forward(self.norm.forward(x.clone()));
        if cache.is_none() && !causal {
            // The encoder's case: no cache, no mask.
            match cpu_fused_attention(qkv, self.heads) {
                Ok(merged) => return x + self.out.forward(merged),
                Err(unchanged) => qkv = unchanged,
            }
        }
        let d = self.dim;
        let q = split_heads(qkv.clone().narrow(2, 0, d), self.heads);
        let mut k = split_heads(qkv.clone().narrow(2, d, d), self.heads);
        let mut v = split_heads(qkv.narrow(2, 2 * d, d), self.heads);
        if let Some(cache) = cache {
            if let Some((past_k, past_v)) = cache.take() {
                k = Tensor::cat(vec![past_k, k], 2);
                v = Tensor::cat(vec![past_v, v], 2);
            }
            *cache = Some((k.clone(), v.clone()));
        }
        x + self.out.forward(merge_heads(scaled_dot_product(q, k, v, causal)))
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
    pub fn load(source: &dyn TensorSource, name: &str, dim: usize, heads: usize, device: &B::Device) -> Result<Self> {
        Ok(CrossAttention {
            norm: LayerNorm::load(source, &format!("{name}/layer_norm"), dim, device)?,
            query: Linear::load(source, &format!("{name}/linear_0"), dim, dim, true, device)?,
            key_value: Linear::load(source, &format!("{name}/linear_1"), dim, 2 * dim, true, device)?,
            out: Linear::load(source, &format!("{name}/linear_2"), dim, dim, true, device)?,
            heads,
            dim,
        })
    }

    /// Projects the encoder output to keys and values, once per window. They are stored
    /// contiguous: every decoding step reads them, and a strided view costs a copy each time.
    pub fn memory(&self, encoded: Tensor<B, 3>) -> KeyValue<B> {
        let kv = self.key_value.forward(encoded);
        let k = split_heads(kv.clone().narrow(2, 0, self.dim), self.heads);
        let v = split_heads(kv.narrow(2, self.dim, self.dim), self.heads);
        (contiguous(k), contiguous(v))
    }

    /// Returns `x + attn(norm(x), memory)`.
    pub fn forward(&self, x: Tensor<B, 3>, memory: &KeyValue<B>) -> Tensor<B, 3> {
        let q = split_heads(self.query.forward(self.norm.forward(x.clone())), self.heads);
        let (k, v) = memory.clone();
        x + self.out.forward(merge_heads(scaled_dot_product(q, k, v, false)))
    }
}
