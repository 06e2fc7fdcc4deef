//! Building blocks shared by the encoder and decoder: linear layers and layer norm, plus the
//! upload of host tensors to the device.

use std::sync::Arc;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::cpu_ops;
use super::host_matrix::HostMatrix;
use crate::error::Result;
use crate::whisper::weights::{HostTensor, TensorSource};

/// Uploads a host tensor of rank `D` to `device`.
pub fn upload<B: Backend, const D: usize>(t: HostTensor, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(t.data, t.shape), device)
}

/// How many rows a layer's inputs have, which decides how its weight is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// A window's positions (the encoder, the cross-attention memory): burn's product.
    Many,
    /// One per beam or window at each decoding step (or a prompt's tokens): on the CPU backend
    /// the weight stays as stored, for the few-row kernel of `host_matrix`.
    Few,
}

/// `y = x Wᵀ + b` for a weight stored `[out, in]`.
#[derive(Debug, Clone)]
pub enum Linear<B: Backend> {
    /// `W` transposed to `[in, out]`, as burn's `linear` expects.
    Device { weight: Tensor<B, 2>, bias: Tensor<B, 1> },
    /// `[out, in]` as stored, and the bias: [`Rows::Few`] layers on the CPU backend.
    Host(Arc<(HostMatrix, Vec<f32>)>),
}

impl<B: Backend> Linear<B> {
    /// Loads `{name}/weight` (`[out, in]` on disk) and `{name}/bias`.
    pub fn load(source: &dyn TensorSource, name: &str, d_in: usize, d_out: usize, rows: Rows, device: &B::Device) -> Result<Self> {
        let weight_name = format!("{name}/weight");
        let bias = source.tensor(&format!("{name}/bias"), &[d_out])?;
        if rows == Rows::Few && cpu_ops::is_cpu::<B>() {
            return Ok(Linear::Host(Arc::new((HostMatrix::load(source, &weight_name, d_out, d_in)?, bias.data))));
        }
        let weight = source.tensor(&weight_name, &[d_out, d_in])?.transposed();
        Ok(Linear::Device { weight: upload(weight, device), bias: upload(bias, device) })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Linear::Device { weight, bias } => burn::tensor::module::linear(x, weight.clone(), Some(bias.clone())),
            Linear::Host(host) => {
                let (matrix, bias) = host.as_ref();
                let (mut dims, device) = (x.dims(), x.device());
                let out = cpu_ops::with_values(&x, |values| matrix.product(values, Some(bias))).unwrap_or_else(|| {
                    // A strided view: its values in row-major order first.
                    let values: Vec<f32> = x.into_data().convert::<f32>().into_vec().expect("float activations");
                    matrix.product(&values, Some(bias))
                });
                dims[D - 1] = matrix.rows();
                cpu_ops::tensor_of(out, dims, &device)
            }
        }
    }
}

const LAYER_NORM_EPS: f32 = 1e-5;

/// Layer normalisation over the last axis (eps 1e-5, as in Whisper).
#[derive(Debug, Clone)]
pub struct LayerNorm<B: Backend> {
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
}

impl<B: Backend> LayerNorm<B> {
    pub fn load(source: &dyn TensorSource, name: &str, dim: usize, device: &B::Device) -> Result<Self> {
        Ok(LayerNorm {
            gamma: upload(source.tensor(&format!("{name}/gamma"), &[dim])?, device),
            beta: upload(source.tensor(&format!("{name}/beta"), &[dim])?, device),
        })
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = match cpu_ops::layer_norm(x, &self.gamma, &self.beta, LAYER_NORM_EPS) {
            Ok(normed) => return normed,
            Err(x) => x,
        };
        let (var, mean) = x.clone().var_mean_bias(2);
        let normed = (x - mean) / (var + LAYER_NORM_EPS).sqrt();
        normed * self.gamma.clone().unsqueeze::<3>() + self.beta.clone().unsqueeze::<3>()
    }
}

/// The position-wise feed-forward block: `fc2(gelu(fc1(x)))`.
#[derive(Debug, Clone)]
pub struct FeedForward<B: Backend> {
    norm: LayerNorm<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

impl<B: Backend> FeedForward<B> {
    pub fn load(source: &dyn TensorSource, name: &str, dim: usize, rows: Rows, device: &B::Device) -> Result<Self> {
        let hidden = 4 * dim;
        Ok(FeedForward {
            norm: LayerNorm::load(source, &format!("{name}/layer_norm"), dim, device)?,
            fc1: Linear::load(source, &format!("{name}/linear_0"), dim, hidden, rows, device)?,
            fc2: Linear::load(source, &format!("{name}/linear_1"), hidden, dim, rows, device)?,
        })
    }

    /// Returns `x + ffn(norm(x))`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self.fc1.forward(self.norm.forward(x.clone()));
        x + self.fc2.forward(cpu_ops::gelu(h))
    }
}
