//! Audio encoder: two convolutions (the second halves the frame rate), learned positions,
//! pre-norm Transformer blocks, final layer norm.

use burn::tensor::backend::Backend;
use burn::tensor::module::conv1d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;

use super::attention::SelfAttention;
use super::cpu_ops;
use super::layers::{upload, FeedForward, LayerNorm, Rows};
use crate::error::Result;
use crate::whisper::config::WhisperConfig;
use crate::whisper::weights::TensorSource;

#[derive(Debug, Clone)]
struct Conv<B: Backend> {
    weight: Tensor<B, 3>,
    bias: Tensor<B, 1>,
    stride: usize,
}

impl<B: Backend> Conv<B> {
    fn load(source: &dyn TensorSource, name: &str, shape: [usize; 3], stride: usize, device: &B::Device) -> Result<Self> {
        Ok(Conv {
            weight: upload(source.tensor(&format!("{name}/weight"), &shape)?, device),
            bias: upload(source.tensor(&format!("{name}/bias"), &shape[..1])?, device),
            stride,
        })
    }

    /// Kernel 3, padding 1, then GELU.
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let options = ConvOptions::new([self.stride], [1], [1], 1);
        cpu_ops::gelu(conv1d(x, self.weight.clone(), Some(self.bias.clone()), options))
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
        let x = self.conv2.forward(self.conv1.forward(mel)).swap_dims(1, 2);
        let mut x = x + self.positions.clone().unsqueeze::<3>();
        for block in &self.blocks {
            x = block.ffn.forward(block.attention.forward(x, None, false));
        }
        self.norm.forward(x)
    }
}
