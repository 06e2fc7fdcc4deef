//! tingxie's CPU kernels for burn's CPU backend (Flex), chosen by measurement on a 2-core
//! machine (README, "CPU kernels"): attention, few-row products against weights kept as stored
//! (f16 for CTranslate2 checkpoints), the convolution front as im2col + gemm, fused GELU and
//! layer norm. Shapes follow the work (a growing cache, rows dropping out): a CPU compiles
//! nothing, so fixed shapes would only add work.

mod attention;
mod conv;
mod host_matrix;
mod ops;

use std::sync::Arc;

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use burn_flex::FlexDevice;

use super::generic::{self, KeyValue};
use super::{Rows, WhisperBackend, EMBEDDING, LAYER_NORM_EPS};
use crate::error::Result;
use crate::whisper::weights::TensorSource;
use host_matrix::HostMatrix;

/// A linear layer on Flex. (A few dozen per model, built once: the size of the larger variant
/// costs nothing.)
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Linear {
    /// [`Rows::Many`]: burn's product (gemm) with the weight transposed.
    Matrix(generic::Linear<Flex>),
    /// [`Rows::Few`]: the weight `[out, in]` as stored, and the bias, for the few-row kernel.
    Host(Arc<(HostMatrix, Vec<f32>)>),
}

/// A convolution's weight as `conv::im2col_weight` lays it out, and its bias.
#[derive(Debug, Clone)]
pub struct Conv {
    weight: Arc<(Vec<f32>, Vec<f32>)>,
    c_in: usize,
    stride: usize,
}

impl Conv {
    /// Time-major `[batch, frames, channels]` in and out, GELU applied.
    fn forward(&self, x: Tensor<Flex, 3>) -> Tensor<Flex, 3> {
        let (weight, bias) = self.weight.as_ref();
        let ([batch, frames, _], device) = (x.dims(), x.device());
        let out = ops::map_rows(x, |values| conv::conv_k3(values, batch, self.c_in, weight, bias, self.stride));
        let shape = [batch, conv::frames_out(frames, self.stride), bias.len()];
        ops::gelu(ops::tensor_of(out, shape, &device))
    }
}

/// Attention through the kernel, or burn's where a tensor is not laid out for it.
fn attend(q: Tensor<Flex, 4>, k: Tensor<Flex, 4>, v: Tensor<Flex, 4>, causal: bool) -> Tensor<Flex, 3> {
    if let Some(merged) = ops::attention(&q, &k, &v, causal) {
        return merged;
    }
    let [rows, heads, n, _] = q.dims();
    let keys = k.dims()[2];
    let mask = causal.then(|| generic::causal_mask(rows, heads, n, keys, keys - n, &q.device()));
    generic::attention(q, k, v, mask)
}

impl WhisperBackend for Flex {
    const FIXED_SHAPES: bool = false;

    type Linear = Linear;
    type Conv = Conv;
    /// The checkpoint's `[vocab, d]` rows as stored: half the bytes of f32 to stream per step
    /// for an f16 checkpoint, and nothing to widen or transpose at load.
    type Embedding = Arc<HostMatrix>;
    /// Keys and values with each head's rows contiguous; one row serves all beams of a window.
    type Memory = KeyValue<Flex>;
    /// Keys and values of the positions fed so far, grown by concatenation.
    type Cache = Option<KeyValue<Flex>>;

    fn load_linear(source: &dyn TensorSource, name: &str, d_in: usize, d_out: usize, rows: Rows, device: &FlexDevice) -> Result<Linear> {
        if rows == Rows::Many {
            return Ok(Linear::Matrix(generic::Linear::load(source, name, d_in, d_out, device)?));
        }
        let bias = source.tensor(&format!("{name}/bias"), &[d_out])?;
        let matrix = HostMatrix::load(source, &format!("{name}/weight"), d_out, d_in)?;
        Ok(Linear::Host(Arc::new((matrix, bias.data))))
    }

    fn project<const D: usize>(layer: &Linear, x: Tensor<Flex, D>) -> Tensor<Flex, D> {
        let host = match layer {
            Linear::Matrix(matrix) => return matrix.forward(x),
            Linear::Host(host) => host,
        };
        let (matrix, bias) = host.as_ref();
        let (mut dims, device) = (x.dims(), x.device());
        let out = ops::map_rows(x, |values| matrix.product(values, Some(bias)));
        dims[D - 1] = matrix.rows();
        ops::tensor_of(out, dims, &device)
    }

    fn normalize(x: Tensor<Flex, 3>, gamma: &Tensor<Flex, 1>, beta: &Tensor<Flex, 1>) -> Tensor<Flex, 3> {
        ops::layer_norm(x, gamma, beta, LAYER_NORM_EPS).unwrap_or_else(|x| generic::layer_norm(x, gamma, beta))
    }

    fn gelu_erf<const D: usize>(x: Tensor<Flex, D>) -> Tensor<Flex, D> {
        ops::gelu(x)
    }

    fn encoder_attention(q: Tensor<Flex, 4>, k: Tensor<Flex, 4>, v: Tensor<Flex, 4>) -> Tensor<Flex, 3> {
        attend(q, k, v, false)
    }

    fn load_conv(source: &dyn TensorSource, name: &str, shape: [usize; 3], stride: usize, _device: &FlexDevice) -> Result<Conv> {
        let weight = source.tensor(&format!("{name}/weight"), &shape)?;
        let bias = source.tensor(&format!("{name}/bias"), &shape[..1])?;
        let [c_out, c_in, _] = shape;
        let im2col = conv::im2col_weight(&weight.data, c_out, c_in);
        Ok(Conv { weight: Arc::new((im2col, bias.data)), c_in, stride })
    }

    fn conv_front(conv1: &Conv, conv2: &Conv, mel: Tensor<Flex, 3>) -> Tensor<Flex, 3> {
        conv2.forward(conv1.forward(mel.swap_dims(1, 2)))
    }

    fn load_embedding(source: &dyn TensorSource, vocab: usize, d: usize, _device: &FlexDevice) -> Result<Arc<HostMatrix>> {
        Ok(Arc::new(HostMatrix::load(source, EMBEDDING, vocab, d)?))
    }

    fn embed(table: &Arc<HostMatrix>, tokens: &[u32], batch: usize, device: &FlexDevice) -> Tensor<Flex, 3> {
        let (d, n) = (table.cols(), tokens.len() / batch.max(1));
        let mut out = vec![0.0f32; tokens.len() * d];
        for (row, &token) in out.chunks_exact_mut(d).zip(tokens) {
            table.widen(token as usize, 1, row);
        }
        Tensor::from_data(TensorData::new(out, [batch, n, d]), device)
    }

    fn logits(table: &Arc<HostMatrix>, hidden: Tensor<Flex, 2>) -> Vec<Vec<f32>> {
        let logits = ops::map_rows(hidden, |values| table.product(values, None));
        logits.chunks(table.rows()).map(<[f32]>::to_vec).collect()
    }

    fn memory(kv: Tensor<Flex, 3>, heads: usize) -> KeyValue<Flex> {
        ops::split_key_value(&kv, heads).unwrap_or_else(|| generic::memory(kv, heads))
    }

    fn cross_attention(q: Tensor<Flex, 4>, memory: &KeyValue<Flex>) -> Tensor<Flex, 3> {
        // The kernel reads the memory's one row for every beam.
        ops::attention(&q, &memory.0, &memory.1, false).unwrap_or_else(|| generic::cross_attention(q, memory))
    }

    fn select_memory(memory: &mut KeyValue<Flex>, indices: &Tensor<Flex, 1, Int>) {
        generic::select_rows(memory, indices);
    }

    fn new_cache(_rows: usize, _heads: usize, _head_dim: usize, _capacity: usize, _device: &FlexDevice) -> Self::Cache {
        None
    }

    fn cached_attention(
        cache: &mut Self::Cache,
        _len: usize,
        q: Tensor<Flex, 4>,
        mut k: Tensor<Flex, 4>,
        mut v: Tensor<Flex, 4>,
    ) -> Tensor<Flex, 3> {
        if let Some((past_k, past_v)) = cache.take() {
            k = Tensor::cat(vec![past_k, k], 2);
            v = Tensor::cat(vec![past_v, v], 2);
        }
        *cache = Some((k.clone(), v.clone()));
        let causal = q.dims()[2] > 1;
        attend(q, k, v, causal)
    }

    fn select_cache(cache: &mut Self::Cache, indices: &Tensor<Flex, 1, Int>) {
        if let Some(kv) = cache {
            generic::select_rows(kv, indices);
        }
    }
}

#[cfg(test)]
mod tests;
