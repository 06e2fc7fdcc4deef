//! Building blocks shared by the encoder and decoder: linear layers, layer norm and the
//! feed-forward block, each computed by the backend's implementation of the seam.

use crate::error::Result;
use crate::whisper::backend::{upload, Rows, WhisperBackend};
use crate::whisper::weights::TensorSource;
use burn::tensor::Tensor;

/// `y = x Wᵀ + b` for a weight stored `[out, in]`, kept as the backend prefers for `rows`.
#[derive(Debug, Clone)]
pub struct Linear<B: WhisperBackend>(B::Linear);

impl<B: WhisperBackend> Linear<B> {
    /// Loads `{name}/weight` (`[out, in]` on disk) and `{name}/bias`.
    pub fn load(source: &dyn TensorSource, name: &str, d_in: usize, d_out: usize, rows: Rows, device: &B::Device) -> Result<Self> {
        Ok(Linear(B::load_linear(source, name, d_in, d_out, rows, device)?))
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        B::project(&self.0, x)
    }
}

/// Layer normalisation over the last axis (eps 1e-5, as in Whisper).
#[derive(Debug, Clone)]
pub struct LayerNorm<B: WhisperBackend> {
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
}

impl<B: WhisperBackend> LayerNorm<B> {
    pub fn load(source: &dyn TensorSource, name: &str, dim: usize, device: &B::Device) -> Result<Self> {
        Ok(LayerNorm {
            gamma: upload(source.tensor(&format!("{name}/gamma"), &[dim])?, device),
            beta: upload(source.tensor(&format!("{name}/beta"), &[dim])?, device),
        })
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        B::normalize(x, &self.gamma, &self.beta)
    }
}

/// The position-wise feed-forward block: `fc2(gelu(fc1(x)))`.
#[derive(Debug, Clone)]
pub struct FeedForward<B: WhisperBackend> {
    norm: LayerNorm<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

impl<B: WhisperBackend> FeedForward<B> {
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
        x + self.fc2.forward(B::gelu_erf(h))
    }
}
