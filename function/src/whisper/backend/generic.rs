//! The model's operations in plain burn ops, for every backend without kernels of tingxie's
//! own (CUDA, wgpu, `cpu-generic`). Shapes stay fixed where a JIT backend would otherwise
//! compile new kernels as a window is decoded: the self-attention cache is preallocated and
//! written in place, and attention spans all of it, masked by length.

use burn::tensor::backend::Backend;
use burn::tensor::module::{attention as burn_attention, conv1d, linear};
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};
use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::{int_tensor, split_heads, upload, LAYER_NORM_EPS};
use crate::error::Result;
use crate::whisper::weights::TensorSource;

/// Keys and values, `[rows, heads, positions, head_dim]` each.
pub type KeyValue<B> = (Tensor<B, 4>, Tensor<B, 4>);

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

/// `y = x Wᵀ + b`, with `W` kept transposed to `[in, out]` as burn's `linear` wants it.
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
}

impl<B: Backend> Linear<B> {
    pub fn load(source: &dyn TensorSource, name: &str, d_in: usize, d_out: usize, device: &B::Device) -> Result<Self> {
        let weight = source.tensor(&format!("{name}/weight"), &[d_out, d_in])?.transposed();
        let bias = source.tensor(&format!("{name}/bias"), &[d_out])?;
        Ok(Linear { weight: upload(weight, device), bias: upload(bias, device) })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        linear(x, self.weight.clone(), Some(self.bias.clone()))
    }
}

/// Layer normalisation over the last axis: mean, then the biased variance around it.
pub fn layer_norm<B: Backend>(x: Tensor<B, 3>, gamma: &Tensor<B, 1>, beta: &Tensor<B, 1>) -> Tensor<B, 3> {
    let (var, mean) = x.clone().var_mean_bias(2);
    let normed = (x - mean) / (var + LAYER_NORM_EPS).sqrt();
    normed * gamma.clone().unsqueeze::<3>() + beta.clone().unsqueeze::<3>()
}

/// burn's attention (`mask`: true where a key is hidden), heads merged. Whisper scales q and k
/// by head_dim^-1/4 each; CTranslate2 and burn scale the product by head_dim^-1/2: the same.
pub fn attention<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, mask: Option<Tensor<B, 4, Bool>>) -> Tensor<B, 3> {
    let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
    merge_heads(burn_attention(q, k, v, mask, None, options))
}

/// Kernel 3, padding 1, then GELU; channel-major `[batch, channels, frames]` in and out.
#[derive(Debug, Clone)]
pub struct Conv<B: Backend> {
    weight: Tensor<B, 3>,
    bias: Tensor<B, 1>,
    stride: usize,
}

impl<B: Backend> Conv<B> {
    pub fn load(source: &dyn TensorSource, name: &str, shape: [usize; 3], stride: usize, device: &B::Device) -> Result<Self> {
        let weight = upload(source.tensor(&format!("{name}/weight"), &shape)?, device);
        let bias = upload(source.tensor(&format!("{name}/bias"), &shape[..1])?, device);
        Ok(Conv { weight, bias, stride })
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let options = ConvOptions::new([self.stride], [1], [1], 1);
        burn::tensor::activation::gelu(conv1d(x, self.weight.clone(), Some(self.bias.clone()), options))
    }
}

/// The token embedding as `[d, vocab]`: the output projection as the matrix product wants it;
/// a token's embedding is one of its columns.
#[derive(Debug, Clone)]
pub struct Embedding<B: Backend>(Tensor<B, 2>);

impl<B: Backend> Embedding<B> {
    pub fn load(source: &dyn TensorSource, vocab: usize, d: usize, device: &B::Device) -> Result<Self> {
        Ok(Embedding(upload(source.tensor(super::EMBEDDING, &[vocab, d])?.transposed(), device)))
    }

    pub fn embed(&self, tokens: &[u32], batch: usize, device: &B::Device) -> Tensor<B, 3> {
        let (d, n) = (self.0.dims()[0], tokens.len() / batch.max(1));
        let ids = int_tensor::<B>(tokens, device);
        self.0.clone().select(1, ids).transpose().reshape([batch, n, d])
    }

    pub fn logits(&self, hidden: Tensor<B, 2>) -> Vec<Vec<f32>> {
        let vocab = self.0.dims()[1];
        let flat: Vec<f32> = hidden.matmul(self.0.clone()).into_data().convert::<f32>().into_vec().expect("float logits");
        flat.chunks(vocab).map(<[f32]>::to_vec).collect()
    }
}

/// Keys and values `[windows, heads, frames, head_dim]`, each contiguous, from `kv`.
pub fn memory<B: Backend>(kv: Tensor<B, 3>, heads: usize) -> KeyValue<B> {
    let d = kv.dims()[2] / 2;
    let k = split_heads(kv.clone().narrow(2, 0, d), heads);
    let v = split_heads(kv.narrow(2, d, d), heads);
    (contiguous(k), contiguous(v))
}

/// Beams of one window (memory of one row, one query position each) are one batch of query
/// rows: the memory is read as it is, never repeated per beam.
pub fn cross_attention<B: Backend>(q: Tensor<B, 4>, (k, v): &KeyValue<B>) -> Tensor<B, 3> {
    let [rows, _, seq_q, _] = q.dims();
    if k.dims()[0] == 1 && rows > 1 && seq_q == 1 {
        let out = attention(q.swap_dims(0, 2), k.clone(), v.clone(), None);
        let [_, beams, d] = out.dims();
        return out.reshape([beams, 1, d]);
    }
    attention(q, k.clone(), v.clone(), None)
}

/// Keeps rows `indices` (in that order, repeats allowed) of keys and values.
pub fn select_rows<B: Backend>((k, v): &mut KeyValue<B>, indices: &Tensor<B, 1, Int>) {
    *k = k.clone().select(0, indices.clone());
    *v = v.clone().select(0, indices.clone());
}

/// A mask `[rows, heads, n, keys]` under which query `i` sees keys `0..=first + i` (true:
/// hidden). Built on the host: its shape, not its values, is what a kernel is compiled for.
pub fn causal_mask<B: Backend>(rows: usize, heads: usize, n: usize, keys: usize, first: usize, device: &B::Device) -> Tensor<B, 4, Bool> {
    let one_head: Vec<bool> = (0..n).flat_map(|i| (0..keys).map(move |j| j > first + i)).collect();
    let hidden = one_head.repeat(rows * heads);
    Tensor::from_data(TensorData::new(hidden, [rows, heads, n, keys]), device)
}

/// A self-attention cache of fixed capacity: positions are written in place and attention
/// always spans the whole capacity, the positions not yet written masked out. Every step of a
/// window then has the same shapes.
#[derive(Debug, Clone)]
pub struct Cache<B: Backend> {
    kv: KeyValue<B>,
}

impl<B: Backend> Cache<B> {
    pub fn new(rows: usize, heads: usize, head_dim: usize, capacity: usize, device: &B::Device) -> Self {
        let zeros = || Tensor::zeros([rows, heads, capacity, head_dim], device);
        Cache { kv: (zeros(), zeros()) }
    }

    pub fn attend(&mut self, len: usize, q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 3> {
        let [rows, heads, n, head_dim] = k.dims();
        let capacity = self.kv.0.dims()[2];
        assert!(len + n <= capacity, "self-attention cache of {capacity} positions cannot hold {}", len + n);
        let at = [0..rows, 0..heads, len..len + n, 0..head_dim];
        self.kv.0 = self.kv.0.clone().slice_assign(at.clone(), k);
        self.kv.1 = self.kv.1.clone().slice_assign(at, v);
        let mask = causal_mask(rows, heads, n, capacity, len, &q.device());
        attention(q, self.kv.0.clone(), self.kv.1.clone(), Some(mask))
    }

    pub fn select_rows(&mut self, indices: &Tensor<B, 1, Int>) {
        select_rows(&mut self.kv, indices);
    }
}
