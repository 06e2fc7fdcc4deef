//! Building blocks shared by the encoder and decoder: linear layers and layer norm, plus the
//! upload of host tensors to the device.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::error::Result;
use crate::whisper::weights::{HostTensor, TensorSource};

/// Uploads a host tensor of rank `D` to `device`.
pub fn upload<B: Backend, const D: usize>(t: HostTensor, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(t.data, t.shape), device)
}

/// `y = x W + b`, with `W` stored `[in, out]` as burn's `linear` expects.
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> Linear<B> {
    /// Loads `{name}/weight` (`[out, in]` on disk) and, if `with_bias`, `{name}/bias`.
    pub fn load(
        source: &dyn TensorSource,
        name: &str,
        d_in: usize,
        d_out: usize,
        with_bias: bool,
        device: &B::Device,
    ) -> Result<Self> {
        let weight = source.tensor(&format!("{name}/weight"), &[d_out, d_in])?.transposed();
        let bias = if with_bias {
            Some(upload(source.tensor(&format!("{name}/bias"), &[d_out])?, device))
        } else {
            None
        };
        Ok(Linear { weight: upload(weight, device), bias })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        burn::tensor::module::linear(x, self.weight.clone(), self.bias.clone())
    }
}

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
        let (var, mean) = x.clone().var_mean_bias(2);
        let normed = (x - mean) / (var + 1e-5).sqrt();
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
    pub fn load(source: &dyn TensorSource, name: &str, dim: usize, device: &B::Device) -> Result<Self> {
        let hidden = 4 * dim;
        Ok(FeedForward {
            norm: LayerNorm::load(source, &format!("{name}/layer_norm"), dim, device)?,
            fc1: Linear::load(source, &format!("{name}/linear_0"), dim, hidden, true, device)?,
            fc2: Linear::load(source, &format!("{name}/linear_1"), hidden, dim, true, device)?,
        })
    }

    /// Returns `x + ffn(norm(x))`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self.fc1.forward(self.norm.forward(x.clone()));
        x + self.fc2.forward(burn::tensor::activation::gelu(h))
    }
}
