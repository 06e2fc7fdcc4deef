//! Silero VAD v6 (16 kHz) on burn: per 512-sample frame (with the 64 samples before it as
//! context), a learned STFT, four convolutions and an LSTM cell carried from frame to frame,
//! giving the probability that the frame is speech.
//!
//! The convolutional encoder has no state, so it runs on the backend for many frames at once;
//! the LSTM's recurrence is one 128-wide step per 32 ms of audio, strictly in order, and runs on
//! the host (a device would pay a launch per step for 65 k multiply-adds).

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::module::conv1d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// Samples per frame at 16 kHz.
pub const FRAME_SAMPLES: usize = 512;
/// Samples of the previous frame each frame sees.
const CONTEXT_SAMPLES: usize = 64;
/// Reflection padding on the right of context + frame, before the STFT.
const REFLECT_PAD: usize = 64;
const INPUT_SAMPLES: usize = CONTEXT_SAMPLES + FRAME_SAMPLES + REFLECT_PAD;
const FFT_BINS: usize = 129;
const HIDDEN: usize = 128;
/// Frames encoded in one pass: bounds the input tensor (10 000 frames = 26 MB) on long audio.
const ENCODER_BATCH: usize = 10_000;
/// Frames per pass on fixed-shape backends (33 s of audio), the last pass padded: one shape to
/// compile and tune, whatever the audio's length.
const FIXED_BATCH: usize = 1024;

/// The weight file `scripts/fetch-vad.sh` writes into a model folder.
pub const WEIGHTS_FILE: &str = "silero_vad_16k.safetensors";

/// Weight names and shapes of the checkpoint (the `silero-vad` wheel's safetensors layout).
const TENSORS: [(&str, &[usize]); 15] = [
    ("stft_conv.weight", &[2 * FFT_BINS, 1, 256]),
    ("conv1.weight", &[128, FFT_BINS, 3]),
    ("conv1.bias", &[128]),
    ("conv2.weight", &[64, 128, 3]),
    ("conv2.bias", &[64]),
    ("conv3.weight", &[64, 64, 3]),
    ("conv3.bias", &[64]),
    ("conv4.weight", &[128, 64, 3]),
    ("conv4.bias", &[128]),
    ("lstm_cell.weight_ih", &[4 * HIDDEN, HIDDEN]),
    ("lstm_cell.weight_hh", &[4 * HIDDEN, HIDDEN]),
    ("lstm_cell.bias_ih", &[4 * HIDDEN]),
    ("lstm_cell.bias_hh", &[4 * HIDDEN]),
    ("final_conv.weight", &[1, HIDDEN, 1]),
    ("final_conv.bias", &[1]),
];

#[derive(Debug, Clone)]
struct Conv<B: Backend> {
    weight: Tensor<B, 3>,
    bias: Option<Tensor<B, 1>>,
    stride: usize,
    padding: usize,
}

impl<B: Backend> Conv<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let options = ConvOptions::new([self.stride], [self.padding], [1], 1);
        conv1d(x, self.weight.clone(), self.bias.clone(), options)
    }
}

/// The model: the encoder on the backend, the LSTM and the output layer on the host.
#[derive(Debug, Clone)]
pub struct SileroVad<B: Backend> {
    stft: Conv<B>,
    convs: [Conv<B>; 4],
    /// Input projection `[128, 512]` (transposed for `x · W`) with both biases folded in.
    input_weight: Tensor<B, 2>,
    input_bias: Tensor<B, 1>,
    /// Recurrent weight, row-major `[512, 128]` (gate rows i, f, g, o).
    recurrent: Vec<f32>,
    output_weight: Vec<f32>,
    output_bias: f32,
    device: B::Device,
    /// Encode a fixed number of frames per pass (a JIT backend compiles a kernel per shape).
    fixed_shapes: bool,
}

/// The speech probability of each 512-sample frame, as a stream: the state carries across
/// calls, so long audio can be fed in pieces.
impl<B: Backend> SileroVad<B> {
    /// Loads `WEIGHTS_FILE` from `dir` (or `dir` itself when it is the file).
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self> {
        let path = if dir.is_dir() { dir.join(WEIGHTS_FILE) } else { dir.to_path_buf() };
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let model_error = |reason: String| Error::Model(format!("VAD weights {}: {reason}", path.display()));
        let file = SafeTensors::deserialize(&bytes).map_err(|e| model_error(e.to_string()))?;
        let mut host = std::collections::HashMap::new();
        for (name, shape) in TENSORS {
            let view = file.tensor(name).map_err(|e| model_error(format!("`{name}`: {e}")))?;
            if view.dtype() != Dtype::F32 || view.shape() != shape {
                return Err(model_error(format!("`{name}` is {:?} {:?}, expected F32 {shape:?}", view.dtype(), view.shape())));
            }
            let data: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
            host.insert(name, data);
        }
        let mut take = |name: &str| host.remove(name).expect("every name of TENSORS was read");
        let upload3 = |data: Vec<f32>, shape: [usize; 3]| Tensor::<B, 3>::from_data(TensorData::new(data, shape), device);
        let upload1 = |data: Vec<f32>| {
            let len = data.len();
            Tensor::<B, 1>::from_data(TensorData::new(data, [len]), device)
        };
        let stft = Conv { weight: upload3(take("stft_conv.weight"), [2 * FFT_BINS, 1, 256]), bias: None, stride: 128, padding: 0 };
        let conv = |weight: Vec<f32>, bias: Vec<f32>, shape: [usize; 3], stride: usize| Conv {
            weight: upload3(weight, shape),
            bias: Some(upload1(bias)),
            stride,
            padding: 1,
        };
        let convs = [
            conv(take("conv1.weight"), take("conv1.bias"), [128, FFT_BINS, 3], 1),
            conv(take("conv2.weight"), take("conv2.bias"), [64, 128, 3], 2),
            conv(take("conv3.weight"), take("conv3.bias"), [64, 64, 3], 2),
            conv(take("conv4.weight"), take("conv4.bias"), [128, 64, 3], 1),
        ];
        let weight_ih = take("lstm_cell.weight_ih");
        let input_weight = Tensor::<B, 2>::from_data(TensorData::new(weight_ih, [4 * HIDDEN, HIDDEN]), device).transpose();
        let bias: Vec<f32> = take("lstm_cell.bias_ih").iter().zip(take("lstm_cell.bias_hh")).map(|(a, b)| a + b).collect();
        Ok(SileroVad {
            stft,
            convs,
            input_weight,
            input_bias: upload1(bias),
            recurrent: take("lstm_cell.weight_hh"),
            output_weight: take("final_conv.weight"),
            output_bias: take("final_conv.bias")[0],
            device: device.clone(),
            fixed_shapes: false,
        })
    }

    /// Encodes the same number of frames on every pass, padding the last: what a backend that
    /// compiles a kernel per shape wants (Whisper's backend says so, `FIXED_SHAPES`).
    pub fn with_fixed_shapes(self, fixed_shapes: bool) -> Self {
        SileroVad { fixed_shapes, ..self }
    }

    /// Speech probabilities of `samples` (16 kHz), one per 512 samples, as faster-whisper 1.2.1
    /// computes them: the audio padded with zeros to a whole frame more (1 to 512 samples),
    /// each frame seeing the previous frame's last 64 samples (zeros before the first), and the
    /// last 64 samples of the last frame zeroed (faster-whisper writes its context through a
    /// view of the audio).
    pub fn probabilities(&self, samples: &[f32]) -> Vec<f32> {
        let frames = samples.len() / FRAME_SAMPLES + 1;
        let mut padded = samples.to_vec();
        padded.resize(frames * FRAME_SAMPLES, 0.0);
        padded[frames * FRAME_SAMPLES - CONTEXT_SAMPLES..].fill(0.0);
        let mut state = LstmState::default();
        let mut probabilities = Vec::with_capacity(frames);
        let batch = if self.fixed_shapes { FIXED_BATCH } else { ENCODER_BATCH };
        for first in (0..frames).step_by(batch) {
            let count = batch.min(frames - first);
            let mut inputs = framed(&padded, first, count);
            // Frames are encoded independently: padding rows change no other row.
            let rows = if self.fixed_shapes { batch } else { count };
            inputs.resize(rows * INPUT_SAMPLES, 0.0);
            let gates_in = self.encode(inputs, rows);
            for gates in gates_in.chunks_exact(4 * HIDDEN).take(count) {
                state.step(gates, &self.recurrent);
                probabilities.push(self.output(&state.h));
            }
        }
        probabilities
    }

    /// The encoder and the LSTM's input projection for `count` frames: `[count, 512]` gate
    /// pre-activations, row-major.
    fn encode(&self, inputs: Vec<f32>, count: usize) -> Vec<f32> {
        let x = Tensor::<B, 3>::from_data(TensorData::new(inputs, [count, 1, INPUT_SAMPLES]), &self.device);
        let spectrum = self.stft.forward(x);
        let [_, _, steps] = spectrum.dims();
        let real = spectrum.clone().narrow(1, 0, FFT_BINS);
        let imaginary = spectrum.narrow(1, FFT_BINS, FFT_BINS);
        let mut x = (real.powi_scalar(2) + imaginary.powi_scalar(2)).sqrt();
        debug_assert_eq!(steps, 4);
        for conv in &self.convs {
            x = burn::tensor::activation::relu(conv.forward(x));
        }
        // [count, 128, 1] → [count, 128]
        let features: Tensor<B, 2> = x.reshape([count, HIDDEN]);
        let gates = features.matmul(self.input_weight.clone()) + self.input_bias.clone().unsqueeze::<2>();
        gates.into_data().convert::<f32>().into_vec().expect("f32 gates")
    }

    fn output(&self, h: &[f32; HIDDEN]) -> f32 {
        let z: f32 = h.iter().zip(&self.output_weight).map(|(h, w)| h.max(0.0) * w).sum::<f32>() + self.output_bias;
        sigmoid(z)
    }
}

/// `count` model inputs from frame `first` on: the previous frame's last 64 samples, the frame,
/// and the last 64 samples before the end mirrored (reflection padding, edge not repeated).
fn framed(padded: &[f32], first: usize, count: usize) -> Vec<f32> {
    let mut inputs = Vec::with_capacity(count * INPUT_SAMPLES);
    for f in first..first + count {
        let start = f * FRAME_SAMPLES;
        let row_start = inputs.len();
        if f == 0 {
            inputs.extend(std::iter::repeat_n(0.0, CONTEXT_SAMPLES));
        } else {
            inputs.extend_from_slice(&padded[start - CONTEXT_SAMPLES..start]);
        }
        inputs.extend_from_slice(&padded[start..start + FRAME_SAMPLES]);
        let end = row_start + CONTEXT_SAMPLES + FRAME_SAMPLES;
        for k in 1..=REFLECT_PAD {
            inputs.push(inputs[end - 1 - k]);
        }
    }
    inputs
}

/// The LSTM cell's hidden and cell state.
struct LstmState {
    h: [f32; HIDDEN],
    c: [f32; HIDDEN],
}

impl Default for LstmState {
    fn default() -> Self {
        LstmState { h: [0.0; HIDDEN], c: [0.0; HIDDEN] }
    }
}

impl LstmState {
    /// One step: `gates_in` is `x·W_ihᵀ + b_ih + b_hh`; PyTorch's gate order i, f, g, o.
    fn step(&mut self, gates_in: &[f32], recurrent: &[f32]) {
        let mut gates = [0.0f32; 4 * HIDDEN];
        for (g, (row, bias)) in gates.iter_mut().zip(recurrent.chunks_exact(HIDDEN).zip(gates_in)) {
            *g = bias + dot(row, &self.h);
        }
        for k in 0..HIDDEN {
            let input = sigmoid(gates[k]);
            let forget = sigmoid(gates[HIDDEN + k]);
            let cell = gates[2 * HIDDEN + k].tanh();
            let output = sigmoid(gates[3 * HIDDEN + k]);
            self.c[k] = forget * self.c[k] + input * cell;
            self.h[k] = output * self.c[k].tanh();
        }
    }
}

/// A dot product in eight lanes, which the compiler turns into vector multiply-adds (a plain
/// sum must keep its order and stays scalar). Its operands are LSTM rows: whole lanes only.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const { assert!(HIDDEN.is_multiple_of(8)) };
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [0.0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().sum()
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_context_and_a_reflection() {
        let padded: Vec<f32> = (0..2 * FRAME_SAMPLES).map(|i| i as f32).collect();
        let inputs = framed(&padded, 0, 2);
        assert_eq!(inputs.len(), 2 * INPUT_SAMPLES);
        let (first, second) = inputs.split_at(INPUT_SAMPLES);
        assert!(first[..CONTEXT_SAMPLES].iter().all(|&x| x == 0.0));
        assert_eq!(first[CONTEXT_SAMPLES], 0.0);
        assert_eq!(first[CONTEXT_SAMPLES + FRAME_SAMPLES - 1], 511.0);
        // Reflection: 510, 509, ... (the edge sample itself is not repeated).
        assert_eq!(&first[CONTEXT_SAMPLES + FRAME_SAMPLES..][..3], &[510.0, 509.0, 508.0]);
        assert_eq!(second[0], 448.0);
        assert_eq!(second[CONTEXT_SAMPLES], 512.0);
    }
}
