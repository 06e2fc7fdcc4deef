//! The CPU kernels against the generic implementation (on `GenericCpu`, the code every GPU
//! runs), operation by operation, on the same weights and inputs. Inputs are O(1); every
//! output agrees within 1e-4 absolute (f32 sums in different orders).

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};

use crate::error::Result;
use crate::whisper::backend::{GenericCpu, Rows, WhisperBackend};
use crate::whisper::config::WhisperConfig;
use crate::whisper::weights::{HostTensor, TensorSource};

const TOLERANCE: f32 = 1e-4;

/// Values in [-1, 1) from a seed: the same for both backends.
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Any tensor, of any shape, with values seeded by its name.
struct Synthetic(WhisperConfig);

impl TensorSource for Synthetic {
    fn config(&self) -> &WhisperConfig {
        &self.0
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let seed = name.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        Ok(HostTensor { shape: shape.to_vec(), data: values(seed, shape.iter().product()) })
    }
}

fn source() -> Synthetic {
    Synthetic(WhisperConfig {
        n_mels: 8,
        n_audio_ctx: 20,
        n_audio_state: 32,
        n_audio_head: 4,
        n_audio_layer: 1,
        n_vocab: 100,
        n_text_ctx: 24,
        n_text_state: 32,
        n_text_head: 4,
        n_text_layer: 1,
    })
}

fn pair<const D: usize>(seed: u64, shape: [usize; D]) -> (Tensor<Flex, D>, Tensor<GenericCpu, D>) {
    let data = || TensorData::new(values(seed, shape.iter().product()), shape);
    (Tensor::from_data(data(), &Default::default()), Tensor::from_data(data(), &Default::default()))
}

fn assert_close<const D: usize>(what: &str, kernel: Tensor<Flex, D>, generic: Tensor<GenericCpu, D>) {
    assert_eq!(kernel.dims(), generic.dims(), "{what}: shapes");
    let a: Vec<f32> = kernel.into_data().convert::<f32>().into_vec().unwrap();
    let b: Vec<f32> = generic.into_data().convert::<f32>().into_vec().unwrap();
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst <= TOLERANCE, "{what}: max |kernel - generic| = {worst}");
}

#[test]
fn linear_layers_agree_for_few_and_many_rows() {
    let s = source();
    for rows in [Rows::Few, Rows::Many] {
        let a = Flex::load_linear(&s, "layer", 32, 48, rows, &Default::default()).unwrap();
        let b = GenericCpu::load_linear(&s, "layer", 32, 48, rows, &Default::default()).unwrap();
        for shape in [[1, 1, 32], [5, 1, 32], [2, 7, 32]] {
            let (x, y) = pair(1, shape);
            assert_close(&format!("linear {rows:?} {shape:?}"), Flex::project(&a, x), GenericCpu::project(&b, y));
        }
    }
}

#[test]
fn layer_norm_gelu_and_attention_agree() {
    let (x, y) = pair(2, [2, 9, 32]);
    let (g, h) = pair(3, [32]);
    let (b, c) = pair(4, [32]);
    assert_close("layer norm", Flex::normalize(x.clone(), &g, &b), GenericCpu::normalize(y.clone(), &h, &c));
    assert_close("gelu", Flex::gelu_erf(x.clone() * 4.0), GenericCpu::gelu_erf(y * 4.0));
    let [(q, q2), (k, k2), (v, v2)] = [5, 6, 7].map(|seed| pair(seed, [2, 4, 30, 8]));
    assert_close("attention", Flex::encoder_attention(q, k, v), GenericCpu::encoder_attention(q2, k2, v2));
}

#[test]
fn convolution_front_agrees() {
    let s = source();
    let device = Default::default();
    let specs = [(1, [16, 8, 3]), (2, [16, 16, 3])];
    let flex: Vec<_> =
        specs.iter().map(|&(stride, shape)| Flex::load_conv(&s, &format!("conv{stride}"), shape, stride, &device).unwrap()).collect();
    let generic: Vec<_> =
        specs.iter().map(|&(stride, shape)| GenericCpu::load_conv(&s, &format!("conv{stride}"), shape, stride, &device).unwrap()).collect();
    let (mel, mel2) = pair(8, [2, 8, 40]);
    let a = Flex::conv_front(&flex[0], &flex[1], mel);
    let b = GenericCpu::conv_front(&generic[0], &generic[1], mel2);
    assert_eq!(a.dims(), [2, 20, 16]);
    assert_close("conv front", a, b);
}

#[test]
fn embedding_and_logits_agree() {
    let s = source();
    let a = Flex::load_embedding(&s, 100, 32, &Default::default()).unwrap();
    let b = GenericCpu::load_embedding(&s, 100, 32, &Default::default()).unwrap();
    let tokens = [3, 99, 0, 42, 42, 7];
    assert_close("embed", Flex::embed(&a, &tokens, 2, &Default::default()), GenericCpu::embed(&b, &tokens, 2, &Default::default()));
    let (x, y) = pair(9, [3, 32]);
    let (la, lb) = (Flex::logits(&a, x), GenericCpu::logits(&b, y));
    assert_eq!((la.len(), lb.len()), (3, 3));
    for (ra, rb) in la.iter().zip(&lb) {
        let worst = ra.iter().zip(rb).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst <= TOLERANCE, "logits: {worst}");
    }
}

/// A window decoded as the decoder does it: a prompt into an empty cache, beams widened from
/// one row to three that share one memory row, steps with reordering; and a batch of two
/// windows (a memory row each), one of which leaves.
#[test]
fn decoding_attention_agrees_step_by_step() {
    let device = Default::default();
    let (heads, head_dim, capacity) = (4, 8, 24);
    let (kv, kv2) = pair(10, [1, 20, 2 * heads * head_dim]);
    let (memory, memory2) = (Flex::memory(kv, heads), GenericCpu::memory(kv2, heads));
    let mut cache = Flex::new_cache(1, heads, head_dim, capacity, &device);
    let mut cache2 = GenericCpu::new_cache(1, heads, head_dim, capacity, &device);
    let mut len = 0;
    let mut rows = 1;
    for (step, n) in [5, 1, 1, 1, 1].into_iter().enumerate() {
        let seed = 20 + 3 * step as u64;
        let [(q, q2), (k, k2), (v, v2)] = [seed, seed + 1, seed + 2].map(|s| pair(s, [rows, heads, n, head_dim]));
        assert_close(
            &format!("self-attention, step {step}"),
            Flex::cached_attention(&mut cache, len, q.clone(), k, v),
            GenericCpu::cached_attention(&mut cache2, len, q2.clone(), k2, v2),
        );
        if n == 1 {
            assert_close(
                &format!("cross-attention, step {step}"),
                Flex::cross_attention(q, &memory),
                GenericCpu::cross_attention(q2, &memory2),
            );
        }
        len += n;
        // Widen to three beams after the prompt, then reorder.
        let order: &[i32] = if step == 0 { &[0, 0, 0] } else { &[2, 0, 0] };
        rows = order.len();
        let index = || TensorData::new(order.to_vec(), [order.len()]);
        Flex::select_cache(&mut cache, &Tensor::from_data(index(), &device));
        GenericCpu::select_cache(&mut cache2, &Tensor::from_data(index(), &device));
    }

    let (kv, kv2) = pair(40, [2, 20, 2 * heads * head_dim]);
    let (mut memory, mut memory2) = (Flex::memory(kv, heads), GenericCpu::memory(kv2, heads));
    let (q, q2) = pair(41, [2, heads, 1, head_dim]);
    assert_close("cross-attention, two windows", Flex::cross_attention(q, &memory), GenericCpu::cross_attention(q2, &memory2));
    let second = || TensorData::new(vec![1i32], [1]);
    Flex::select_memory(&mut memory, &Tensor::from_data(second(), &device));
    GenericCpu::select_memory(&mut memory2, &Tensor::from_data(second(), &device));
    let (q, q2) = pair(42, [1, heads, 1, head_dim]);
    assert_close("cross-attention, the second window", Flex::cross_attention(q, &memory), GenericCpu::cross_attention(q2, &memory2));
}
