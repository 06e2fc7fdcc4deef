//! Audio encoder: two convolutions (the second halves the frame rate), learned positions,
//! pre-norm Transformer blocks, final layer norm.

use std::sync::Arc;

use burn::tensor::backend::Backend;
use burn::tensor::module::conv1d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;

use super::attention::SelfAttention;
use super::{cpu_conv, cpu_ops};
use super::layers::{upload, FeedForward, LayerNorm, Rows};
use crate::error::Result;
use crate::whisper::config::WhisperConfig;
use crate::whisper::weights::TensorSource;

/// Kernel 3, padding 1, then GELU.
#[derive(Debug, Clone)]
enum Conv<B: Backend> {
    /// burn's convolution, channel-major `[batch, channels, frames]` in and out.
    Device { weight: Tensor<B, 3>, bias: Tensor<B, 1>, stride: usize },
    /// The CPU backend's: the weight as `cpu_conv::im2col_weight` lays it out, time-major
    /// `[batch, frames, channels]` in and out.
    Host { weight: Arc<(Vec<f32>, Vec<f32>)>, c_in: usize, stride: usize },
}

impl<B: Backend> Conv<B> {
    fn load(source: &dyn TensorSource, name: &str, shape: [usize; 3], stride: usize, device: &B::Device) -> Result<Self> {
        let weight = source.tensor(&format!("{name}/weight"), &shape)?;
        let bias = source.tensor(&format!("{name}/bias"), &shape[..1])?;
        if cpu_ops::is_cpu::<B>() {
            let [c_out, c_in, _] = shape;
            let im2col = cpu_conv::im2col_weight(&weight.data, c_out, c_in);
            return Ok(Conv::Host { weight: Arc::new((im2col, bias.data)), c_in, stride });
        }
        Ok(Conv::Device { weight: upload(weight, device), bias: upload(bias, device), stride })
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Conv::Device { weight, bias, stride } => {
                let options = ConvOptions::new([*stride], [1], [1], 1);
                cpu_ops::gelu(conv1d(x, weight.clone(), Some(bias.clone()), options))
            }
            Conv::Host { weight, c_in, stride } => {
                let (weight, bias) = weight.as_ref();
                let ([batch, frames, _], device) = (x.dims(), x.device());
                let values: Vec<f32> = x.into_data().convert::<f32>().into_vec().expect("float activations");
                let out = cpu_conv::conv_k3(&values, batch, *c_in, weight, bias, *stride);
                let shape = [batch, cpu_conv::frames_out(frames, *stride), bias.len()];
                cpu_ops::gelu(cpu_ops::tensor_of(out, shape, &device))
            }
        }
    }
}

#[derive(Debug, Clone)]
struct EncoderBlock<B: Backend> {
    attention: SelfAttention<B>,
    ffn: FeedForward<B>,
}

#[derive(Debug, Clone)]
pub struct Encoder<B: Backend> {
    conv1: Conv<B>,
    conv2: Conv<B>,
    positions: Tensor<B, 2>,
    blocks: Vec<EncoderBlock<B>>,
    norm: LayerNorm<B>,
}

impl<B: Backend> Encoder<B> {
    pub fn load(source: &dyn TensorSource, c: &WhisperConfig, device: &B::Device) -> Result<Self> {
        let d = c.n_audio_state;
        let blocks = (0..c.n_audio_layer)
            .map(|i| {
                let name = format!("encoder/layer_{i}");
                Ok(EncoderBlock {
                    attention: SelfAttention::load(source, &format!("{name}/self_attention"), d, c.n_audio_head, Rows::Many, device)?,
                    ffn: FeedForward::load(source, &format!("{name}/ffn"), d, Rows::Many, device)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder {
            conv1: Conv::load(source, "encoder/conv1", [d, c.n_mels, 3], 1, device)?,
            conv2: Conv::load(source, "encoder/conv2", [d, d, 3], 2, device)?,
            positions: upload(source.tensor("encoder/position_encodings/encodings", &[c.n_audio_ctx, d])?, device),
            blocks,
            norm: LayerNorm::load(source, "encoder/layer_norm", d, device)?,
        })
    }

    /// `[batch, n_mels, 2 * n_audio_ctx]` log-mel -> `[batch, n_audio_ctx, d]`.
    pub fn forward(&self, mel: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = match self.conv1 {
            Conv::Device { .. } => self.conv2.forward(self.conv1.forward(mel)).swap_dims(1, 2),
            Conv::Host { .. } => self.conv2.forward(self.conv1.forward(mel.swap_dims(1, 2))),
        };
        let mut x = x + self.positions.clone().unsqueeze::<3>();
        for block in &self.blocks {
            x = block.ffn.forward(block.attention.forward(x, None, false));
        }
        self.norm.forward(x)
    }
}
