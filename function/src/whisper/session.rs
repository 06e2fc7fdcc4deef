//! The bridge between the search (host-side token logic) and the network: the decoder state
//! of one window (rows are its hypotheses) or of a batch of windows (a row each) on the
//! device, fed one token per row per step.

use burn::tensor::Tensor;

use super::backend::WhisperBackend;
use super::decoding::search::StepModel;
use super::model::{DecoderState, Whisper};

pub struct WindowSession<'a, B: WhisperBackend> {
    model: &'a Whisper<B>,
    state: DecoderState<B>,
    /// Windows in the encoder output; every one gets the prompt.
    windows: usize,
}

impl<'a, B: WhisperBackend> WindowSession<'a, B> {
    /// A session over the encoder output `[windows, frames, d]`.
    pub fn new(model: &'a Whisper<B>, encoded: Tensor<B, 3>) -> Self {
        let windows = encoded.dims()[0];
        WindowSession { model, state: model.decoder.start(encoded), windows }
    }

    /// Feeds the prompt tokens before the search's start token, the same prompt to every
    /// window. Returns each window's logits at position `logits_at`, if asked (the no-speech
    /// probability is read there when the prompt continues after `<|startoftranscript|>`).
    pub fn feed_prompt(&mut self, tokens: &[u32], logits_at: Option<usize>) -> Option<Vec<Vec<f32>>> {
        if tokens.is_empty() {
            return None;
        }
        let rows = self.windows;
        let repeated: Vec<u32> = tokens.iter().copied().cycle().take(rows * tokens.len()).collect();
        let hidden = self.model.decoder.forward(&repeated, rows, &mut self.state);
        Some(self.model.decoder.logits_at(hidden, logits_at?, &self.state))
    }
}

impl<B: WhisperBackend> StepModel for WindowSession<'_, B> {
    fn step(&mut self, tokens: &[u32]) -> Vec<Vec<f32>> {
        let hidden = self.model.decoder.forward(tokens, tokens.len(), &mut self.state);
        self.model.decoder.logits_at(hidden, 0, &self.state)
    }

    fn select_rows(&mut self, rows: &[usize]) {
        self.state.select_rows(rows, &self.model.device);
    }
}
