//! The seam between the model and the backend (burn's backend-extension idiom): the operations
//! where a backend does better than a composition of burn's ops, with the weights they keep in
//! their own layout as associated types.
//!
//! Two implementations: [`flex`], tingxie's CPU kernels for burn's CPU backend; and
//! [`generic`], plain burn ops with fixed shapes, which every other backend uses (CUDA, wgpu,
//! and `cpu-generic`, burn's CPU backend behind burn's autodiff wrapper: a backend type of its
//! own, so the tests run the code a GPU runs on the CPU). The model files name no backend.

pub mod flex;
pub mod generic;

use std::fmt::Debug;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::Result;
use crate::whisper::weights::{HostTensor, TensorSource};

/// Whisper's layer-norm epsilon.
pub(crate) const LAYER_NORM_EPS: f32 = 1e-5;

/// The token embedding's name in a checkpoint (`[vocab, d]`).
pub(crate) const EMBEDDING: &str = "decoder/embeddings/weight";

/// How many rows a layer's inputs have, which decides how a backend keeps its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// A window's positions (the encoder, the cross-attention memory).
    Many,
    /// One per beam or window at each decoding step (or a prompt's tokens).
    Few,
}

/// Uploads a host tensor of rank `D` to `device`.
pub fn upload<B: Backend, const D: usize>(t: HostTensor, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(t.data, t.shape), device)
}

/// `[b, t, d]` -> `[b, heads, t, d / heads]`.
pub fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [b, t, d] = x.dims();
    x.reshape([b, t, heads, d / heads]).swap_dims(1, 2)
}

/// Token ids, positions or row indices as an index tensor.
pub fn int_tensor<B: Backend>(values: &[u32], device: &B::Device) -> Tensor<B, 1, Int> {
    let data: Vec<i32> = values.iter().map(|&v| v as i32).collect();
    Tensor::from_data(TensorData::new(data, [values.len()]), device)
}

/// The operations the Whisper model asks of a backend.
///
/// Shapes: `[batch, positions, channels]` for activations; `[batch, heads, positions,
/// head_dim]` for queries, keys and values; attention outputs come with heads merged.
pub trait WhisperBackend: Backend {
    /// Whether the decoder keeps its shapes fixed for a window (rows padded to the first
    /// count, prompts padded to a few lengths, the self-attention cache preallocated): a JIT
    /// backend compiles and tunes kernels per shape, a CPU backend would only do more work.
    const FIXED_SHAPES: bool;

    /// A linear layer's weight and bias.
    type Linear: Clone + Debug + Send + Sync;
    /// One of the encoder's two convolutions (kernel 3, padding 1).
    type Conv: Clone + Debug + Send + Sync;
    /// The token embedding, which is also the output projection.
    type Embedding: Clone + Debug + Send + Sync;
    /// One decoder layer's cross-attention keys and values for a window (or a batch of them).
    type Memory: Clone + Debug + Send;
    /// One decoder layer's self-attention keys and values so far.
    type Cache: Clone + Debug + Send;

    /// Loads `{name}/weight` (`[d_out, d_in]` on disk) and `{name}/bias`.
    fn load_linear(
        source: &dyn TensorSource,
        name: &str,
        d_in: usize,
        d_out: usize,
        rows: Rows,
        device: &Self::Device,
    ) -> Result<Self::Linear>;
    /// `x Wᵀ + b` over the last axis.
    fn project<const D: usize>(layer: &Self::Linear, x: Tensor<Self, D>) -> Tensor<Self, D>;
    /// Layer normalisation over the last axis (eps 1e-5, as Whisper).
    fn normalize(x: Tensor<Self, 3>, gamma: &Tensor<Self, 1>, beta: &Tensor<Self, 1>) -> Tensor<Self, 3>;
    /// The exact (erf) GELU.
    fn gelu_erf<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D>;
    /// `softmax(q kᵀ / √head_dim) v` without a mask (the encoder), heads merged.
    fn encoder_attention(q: Tensor<Self, 4>, k: Tensor<Self, 4>, v: Tensor<Self, 4>) -> Tensor<Self, 3>;

    /// Loads `{name}/weight` (`[c_out, c_in, 3]`) and `{name}/bias`.
    fn load_conv(source: &dyn TensorSource, name: &str, shape: [usize; 3], stride: usize, device: &Self::Device) -> Result<Self::Conv>;
    /// Both convolutions with their GELUs: log-mel `[batch, n_mels, frames]` to
    /// `[batch, frames / 2, d]` (time-major, as the Transformer blocks read it).
    fn conv_front(conv1: &Self::Conv, conv2: &Self::Conv, mel: Tensor<Self, 3>) -> Tensor<Self, 3>;

    fn load_embedding(source: &dyn TensorSource, vocab: usize, d: usize, device: &Self::Device) -> Result<Self::Embedding>;
    /// Embeddings of `tokens` (`batch` rows, row-major): `[batch, n, d]`.
    fn embed(embedding: &Self::Embedding, tokens: &[u32], batch: usize, device: &Self::Device) -> Tensor<Self, 3>;
    /// Logits of hidden states `[rows, d]`, one `Vec` per row.
    fn logits(embedding: &Self::Embedding, hidden: Tensor<Self, 2>) -> Vec<Vec<f32>>;

    /// Cross-attention keys and values from the projected encoder output `kv` `[windows,
    /// frames, 2d]` (keys then values on each row), computed once per window.
    fn memory(kv: Tensor<Self, 3>, heads: usize) -> Self::Memory;
    /// Attention of `q` over the memory. `q` has a row per window of the memory, or, when the
    /// memory holds one window, any number of rows (that window's beams).
    fn cross_attention(q: Tensor<Self, 4>, memory: &Self::Memory) -> Tensor<Self, 3>;
    /// Keeps windows `indices` of a memory with a row per window.
    fn select_memory(memory: &mut Self::Memory, indices: &Tensor<Self, 1, Int>);

    /// An empty self-attention cache for up to `capacity` positions.
    fn new_cache(rows: usize, heads: usize, head_dim: usize, capacity: usize, device: &Self::Device) -> Self::Cache;
    /// Writes `k`, `v` (`[rows, heads, n, head_dim]`) at positions `len..len + n` of the cache,
    /// then attends `q` causally: query `i` sees positions `..=len + i`.
    fn cached_attention(cache: &mut Self::Cache, len: usize, q: Tensor<Self, 4>, k: Tensor<Self, 4>, v: Tensor<Self, 4>)
        -> Tensor<Self, 3>;
    /// Keeps rows `indices` (in that order, repeats allowed) of the cache.
    fn select_cache(cache: &mut Self::Cache, indices: &Tensor<Self, 1, Int>);
}

/// Implements [`WhisperBackend`] for a backend type with the [`generic`] implementation.
macro_rules! generic_backend {
    ($backend:ty) => {
        impl WhisperBackend for $backend {
            const FIXED_SHAPES: bool = true;
            type Linear = generic::Linear<Self>;
            type Conv = generic::Conv<Self>;
            type Embedding = generic::Embedding<Self>;
            type Memory = generic::KeyValue<Self>;
            type Cache = generic::Cache<Self>;

            fn load_linear(
                source: &dyn TensorSource,
                name: &str,
                d_in: usize,
                d_out: usize,
                _rows: Rows,
                device: &Self::Device,
            ) -> Result<Self::Linear> {
                generic::Linear::load(source, name, d_in, d_out, device)
            }
            fn project<const D: usize>(layer: &Self::Linear, x: Tensor<Self, D>) -> Tensor<Self, D> {
                layer.forward(x)
            }
            fn normalize(x: Tensor<Self, 3>, gamma: &Tensor<Self, 1>, beta: &Tensor<Self, 1>) -> Tensor<Self, 3> {
                generic::layer_norm(x, gamma, beta)
            }
            fn gelu_erf<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
                burn::tensor::activation::gelu(x)
            }
            fn encoder_attention(q: Tensor<Self, 4>, k: Tensor<Self, 4>, v: Tensor<Self, 4>) -> Tensor<Self, 3> {
                generic::attention(q, k, v, None)
            }
            fn load_conv(
                source: &dyn TensorSource,
                name: &str,
                shape: [usize; 3],
                stride: usize,
                device: &Self::Device,
            ) -> Result<Self::Conv> {
                generic::Conv::load(source, name, shape, stride, device)
            }
            fn conv_front(conv1: &Self::Conv, conv2: &Self::Conv, mel: Tensor<Self, 3>) -> Tensor<Self, 3> {
                conv2.forward(conv1.forward(mel)).swap_dims(1, 2)
            }
            fn load_embedding(source: &dyn TensorSource, vocab: usize, d: usize, device: &Self::Device) -> Result<Self::Embedding> {
                generic::Embedding::load(source, vocab, d, device)
            }
            fn embed(embedding: &Self::Embedding, tokens: &[u32], batch: usize, device: &Self::Device) -> Tensor<Self, 3> {
                embedding.embed(tokens, batch, device)
            }
            fn logits(embedding: &Self::Embedding, hidden: Tensor<Self, 2>) -> Vec<Vec<f32>> {
                embedding.logits(hidden)
            }
            fn memory(kv: Tensor<Self, 3>, heads: usize) -> Self::Memory {
                generic::memory(kv, heads)
            }
            fn cross_attention(q: Tensor<Self, 4>, memory: &Self::Memory) -> Tensor<Self, 3> {
                generic::cross_attention(q, memory)
            }
            fn select_memory(memory: &mut Self::Memory, indices: &Tensor<Self, 1, Int>) {
                generic::select_rows(memory, indices)
            }
            fn new_cache(rows: usize, heads: usize, head_dim: usize, capacity: usize, device: &Self::Device) -> Self::Cache {
                generic::Cache::new(rows, heads, head_dim, capacity, device)
            }
            fn cached_attention(
                cache: &mut Self::Cache,
                len: usize,
                q: Tensor<Self, 4>,
                k: Tensor<Self, 4>,
                v: Tensor<Self, 4>,
            ) -> Tensor<Self, 3> {
                cache.attend(len, q, k, v)
            }
            fn select_cache(cache: &mut Self::Cache, indices: &Tensor<Self, 1, Int>) {
                cache.select_rows(indices)
            }
        }
    };
}

/// burn's CPU backend through the generic implementation (`--device cpu-generic`): the
/// autodiff wrapper makes it a backend type of its own and, with no tensor asking for
/// gradients, passes every op through to Flex.
pub type GenericCpu = burn::backend::Autodiff<burn::backend::Flex>;

generic_backend!(GenericCpu);
#[cfg(feature = "cuda")]
generic_backend!(burn::backend::Cuda);
#[cfg(feature = "wgpu")]
generic_backend!(burn::backend::Wgpu);
