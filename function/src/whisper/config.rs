//! Model dimensions, read from the checkpoint so one code path serves tiny ... large-v3-turbo.

use crate::error::{Error, Result};

/// Shapes of a Whisper checkpoint (names follow OpenAI's `ModelDimensions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhisperConfig {
    /// Mel bins of the front-end: 80, or 128 for large-v3.
    pub n_mels: usize,
    /// Encoder positions: 1500 frames for a 30 s window.
    pub n_audio_ctx: usize,
    pub n_audio_state: usize,
    pub n_audio_head: usize,
    pub n_audio_layer: usize,
    pub n_vocab: usize,
    /// Decoder positions: 448 tokens.
    pub n_text_ctx: usize,
    pub n_text_state: usize,
    pub n_text_head: usize,
    pub n_text_layer: usize,
}

impl WhisperConfig {
    /// Multilingual vocabularies have 51865+ entries; the English-only ones 51864.
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }

    /// Parameters of a checkpoint of these shapes: embeddings, convolutions, and per block the
    /// attention projections (4 d² + 3 d biases; the key has none), layer norms and the 4 d MLP.
    pub fn parameter_count(&self) -> usize {
        let d = self.n_audio_state;
        let attention = 4 * d * d + 3 * d;
        let mlp = 8 * d * d + 5 * d;
        let encoder =
            self.n_mels * d * 3 + d + d * d * 3 + d + self.n_audio_ctx * d + self.n_audio_layer * (attention + mlp + 4 * d) + 2 * d;
        let decoder = self.n_vocab * d + self.n_text_ctx * d + self.n_text_layer * (2 * attention + mlp + 6 * d) + 2 * d;
        encoder + decoder
    }

    /// Reads a Hugging Face `config.json` (WhisperConfig of transformers).
    pub fn from_hf_json(json: &serde_json::Value) -> Result<Self> {
        let get = |key: &str| -> Result<usize> {
            json.get(key)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| Error::Model(format!("config.json: missing or non-integer `{key}`")))
        };
        Ok(Self {
            n_mels: get("num_mel_bins")?,
            n_audio_ctx: get("max_source_positions")?,
            n_audio_state: get("d_model")?,
            n_audio_head: get("encoder_attention_heads")?,
            n_audio_layer: get("encoder_layers")?,
            n_vocab: get("vocab_size")?,
            n_text_ctx: get("max_target_positions")?,
            n_text_state: get("d_model")?,
            n_text_head: get("decoder_attention_heads")?,
            n_text_layer: get("decoder_layers")?,
        })
    }

    pub fn validate(&self) -> Result<()> {
        for (name, state, heads) in [("encoder", self.n_audio_state, self.n_audio_head), ("decoder", self.n_text_state, self.n_text_head)] {
            if heads == 0 || state % heads != 0 {
                return Err(Error::Model(format!("{name}: width {state} is not divisible by {heads} heads")));
            }
        }
        if self.n_audio_state != self.n_text_state {
            return Err(Error::Model("encoder and decoder widths differ".into()));
        }
        Ok(())
    }
}
