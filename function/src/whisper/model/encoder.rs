//! Audio encoder: two convolutions (the second halves the frame rate), learned positions,
//! pre-norm Transformer blocks, final layer norm.

use burn::tensor::Tensor;

use super::attention::SelfAttention;
use super::layers::{FeedForward, LayerNorm};
use crate::error::Result;
use crate::whisper::backend::{upload, Rows, WhisperBackend};
use crate::whisper::config::WhisperConfig;
use crate::whisper::preempt;
use crate::whisper::weights::TensorSource;

#[derive(Debug, Clone)]
struct EncoderBlock<B: WhisperBackend> {
    attention: SelfAttention<B>,
    ffn: FeedForward<B>,
}

#[derive(Debug, Clone)]
pub struct Encoder<B: WhisperBackend> {
    /// Kernel 3, padding 1, then GELU; the second halves the frame rate.
    conv1: B::Conv,
    conv2: B::Conv,
    positions: Tensor<B, 2>,
    blocks: Vec<EncoderBlock<B>>,
    norm: LayerNorm<B>,
}

impl<B: WhisperBackend> Encoder<B> {
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
            conv1: B::load_conv(source, "encoder/conv1", [d, c.n_mels, 3], 1, device)?,
            conv2: B::load_conv(source, "encoder/conv2", [d, d, 3], 2, device)?,
            positions: upload(source.tensor("encoder/position_encodings/encodings", &[c.n_audio_ctx, d])?, device),
            blocks,
            norm: LayerNorm::load(source, "encoder/layer_norm", d, device)?,
        })
    }

    /// `[batch, n_mels, 2 * n_audio_ctx]` log-mel -> `[batch, n_audio_ctx, d]`.
    pub fn forward(&self, mel: Tensor<B, 3>) -> Tensor<B, 3> {
        let mut x = B::conv_front(&self.conv1, &self.conv2, mel) + self.positions.clone().unsqueeze::<3>();
        for block in &self.blocks {
            // An encoder pass is the longest stretch without a decoding step.
            preempt::point();
            x = block.ffn.forward(block.attention.forward(x));
        }
        self.norm.forward(x)
    }
}
