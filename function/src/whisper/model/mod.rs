//! The Whisper network: an audio encoder and a text decoder, generic over the backend seam
//! ([`WhisperBackend`]), which names no backend here.

pub mod attention;
pub mod decoder;
pub mod encoder;
pub mod layers;

use std::path::Path;

use burn::tensor::Tensor;

pub use decoder::{Decoder, DecoderState};
pub use encoder::Encoder;

use crate::error::Result;
use crate::whisper::backend::WhisperBackend;
use crate::whisper::config::WhisperConfig;
use crate::whisper::weights::{self, TensorSource};

#[derive(Debug, Clone)]
pub struct Whisper<B: WhisperBackend> {
    pub config: WhisperConfig,
    pub encoder: Encoder<B>,
    pub decoder: Decoder<B>,
    pub device: B::Device,
}

impl<B: WhisperBackend> Whisper<B> {
    /// Loads the checkpoint in `dir` (CTranslate2 or Hugging Face layout) onto `device`.
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self> {
        let source = weights::open(dir)?;
        Self::from_source(source.as_ref(), device)
    }

    pub fn from_source(source: &dyn TensorSource, device: &B::Device) -> Result<Self> {
        let config = source.config().clone();
        // Encoder and decoder are independent: read, convert and upload them side by side.
        let (encoder, decoder) = std::thread::scope(|scope| {
            let encoder = scope.spawn(|| Encoder::load(source, &config, device));
            let decoder = Decoder::load(source, &config, device);
            (encoder.join().unwrap_or_else(|_| Err(crate::error::Error::Model("encoder load panicked".into()))), decoder)
        });
        Ok(Whisper { encoder: encoder?, decoder: decoder?, config, device: device.clone() })
    }

    /// `[batch, n_mels, 3000]` -> `[batch, 1500, d]`.
    pub fn encode(&self, mel: Tensor<B, 3>) -> Tensor<B, 3> {
        self.encoder.forward(mel)
    }
}
