//! The bridge between the search (host-side token logic) and the network: the decoder state
//! of one window (rows are its hypotheses) or of a batch of windows (a row each) on the
//! device, fed one token per row per step.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::decoding::search::StepModel;
use super::model::{DecoderState, Whisper};

pub struct WindowSession<'a, B: Backend> {
    model: &'a Whisper<B>,
    state: DecoderState<B>,
    /// Windows in the encoder output; every one gets the prompt.
    windows: usize,
}

fn int_tensor<B: Backend, const D: usize>(values: &[u32], shape: [usize; D], device: &B::Device) -> Tensor<B, D, Int> {
    let data: Vec<i32> = values.iter().map(|&v| v as i32).collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

impl<'a, B: Backend> WindowSession<'a, B> {
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
        let position = logits_at?;
        let d = hidden.dims()[2];
        let at = hidden.narrow(1, position, 1).reshape([rows, d]);
        Some(self.model.decoder.logits(at))
    }
}

impl<B: Backend> StepModel for WindowSession<'_, B> {
    fn step(&mut self, tokens: &[u32]) -> Vec<Vec<f32>> {
        let rows = tokens.len();
        let hidden = self.model.decoder.forward(tokens, rows, &mut self.state);
        let d = hidden.dims()[2];
        self.model.decoder.logits(hidden.reshape([rows, d]))
    }

    fn select_rows(&mut self, rows: &[usize]) {
        let indices: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        self.state.select_rows(int_tensor(&indices, [rows.len()], &self.model.device));
    }
}
