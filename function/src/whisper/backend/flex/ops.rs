//! Fused kernels on Flex tensors: GELU and layer norm in one parallel pass each, and attention
//! through the `attention` kernel for every place the model attends. burn-flex runs these as
//! chains of single-threaded passes (GELU through a scalar libm `erff`, layer norm in six), and
//! its attention per (batch, head) on one thread; the cross-attention memory is split per head
//! in one parallel copy. Where a tensor is not laid out as a kernel needs (not f32, say), a
//! function hands its input back (`Err`) or returns `None`, and the caller uses burn's ops.

// `Err` hands the input tensor back to the caller (moved, not copied): its size is no cost.
#![allow(clippy::result_large_err)]

use burn::backend::Flex;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use burn_flex::{FlexDevice, FlexTensor};
use rayon::prelude::*;

use super::attention::{self as kernel, Options, Shape, Strides};
use crate::whisper::simd::{fma, fma_build};

/// Elements per rayon task of an element-wise pass; smaller inputs stay on the calling thread.
const CHUNK: usize = 1 << 14;

/// The Flex tensor behind `t`, sharing its buffer (`None` for a quantized tensor).
fn into_flex<const D: usize>(t: Tensor<Flex, D>) -> Result<FlexTensor, Tensor<Flex, D>> {
    match t.into_primitive() {
        TensorPrimitive::Float(primitive) => Ok(primitive),
        quantized => Err(Tensor::from_primitive(quantized)),
    }
}

fn from_flex<const D: usize>(t: FlexTensor) -> Tensor<Flex, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// The Flex tensor behind `t` (sharing its buffer) when it holds f32 values.
fn flex_f32<const D: usize>(t: &Tensor<Flex, D>) -> Option<FlexTensor> {
    into_flex(t.clone()).ok().filter(|flex| flex.dtype() == DType::F32)
}

/// Runs `f` on the f32 values of `t`, borrowed in place, when it is laid out row-major.
pub(super) fn with_values<const D: usize, R>(t: &Tensor<Flex, D>, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    flex_f32(t)?.as_slice::<f32>().map(f)
}

/// Runs `f` on the values of `t` in row-major order: in place when laid out so, else copied out.
pub(super) fn map_rows<const D: usize, R>(t: Tensor<Flex, D>, f: impl FnOnce(&[f32]) -> R) -> R {
    if let Some(flex) = flex_f32(&t) {
        if let Some(values) = flex.as_slice::<f32>() {
            return f(values);
        }
    }
    let values: Vec<f32> = t.into_data().convert::<f32>().into_vec().expect("float activations");
    f(&values)
}

/// A tensor of `shape` holding `values` (moved, not copied).
pub(super) fn tensor_of<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &FlexDevice) -> Tensor<Flex, D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Applies `f` to every value: in place when `t` owns its buffer, else into a new one; a
/// quantized tensor is handed back.
fn map_values<const D: usize>(t: Tensor<Flex, D>, f: fn(&mut [f32])) -> Result<Tensor<Flex, D>, Tensor<Flex, D>> {
    let mut flex = into_flex(t)?;
    let in_place = flex.is_contiguous() && flex.layout().start_offset() == 0 && flex.dtype() == DType::F32;
    if in_place {
        let n = flex.layout().num_elements();
        if let Some(values) = flex.try_storage_mut::<f32>() {
            in_chunks(&mut values[..n], f);
            return Ok(from_flex(flex));
        }
    }
    let tensor: Tensor<Flex, D> = from_flex(flex);
    let (shape, device) = (tensor.dims(), tensor.device());
    let mut values = tensor.into_data().convert::<f32>().into_vec::<f32>().expect("f32 values");
    in_chunks(&mut values, f);
    Ok(tensor_of(values, shape, &device))
}

fn in_chunks(values: &mut [f32], f: fn(&mut [f32])) {
    if values.len() <= CHUNK {
        f(values);
    } else {
        values.par_chunks_mut(CHUNK).for_each(f);
    }
}

/// Keys and values `[b, heads, t, d / heads]`, each head's rows contiguous, from a fused
/// projection `kv` `[b, t, 2d]` (keys then values on every row); `None` when not f32.
/// A decoding step then streams each head's keys and values in address order: read as views
/// of `kv` (one head's row every 3 KB), a step's cross-attention waited on memory.
pub fn split_key_value(kv: &Tensor<Flex, 3>, heads: usize) -> Option<(Tensor<Flex, 4>, Tensor<Flex, 4>)> {
    let [batch, t, two_d] = kv.dims();
    let head_dim = two_d / 2 / heads;
    let block = t * head_dim;
    let [k, v] = with_values(kv, |values| {
        [0, 1].map(|part| {
            let mut out = vec![0.0f32; batch * heads * block];
            out.par_chunks_mut(block.max(1)).enumerate().for_each(|(i, head_rows)| {
                let (b, h) = (i / heads, i % heads);
                let first = part * two_d / 2 + h * head_dim;
                for (row, dst) in head_rows.chunks_exact_mut(head_dim).enumerate() {
                    let src = (b * t + row) * two_d + first;
                    dst.copy_from_slice(&values[src..src + head_dim]);
                }
            });
            out
        })
    })?;
    let (shape, device) = ([batch, heads, t, head_dim], kv.device());
    Some((tensor_of(k, shape, &device), tensor_of(v, shape, &device)))
}

/// `0.5 x (1 + erf(x / √2))`, the exact GELU Whisper uses.
pub fn gelu<const D: usize>(x: Tensor<Flex, D>) -> Tensor<Flex, D> {
    map_values(x, gelu_fn()).unwrap_or_else(burn::tensor::activation::gelu)
}

/// Layer normalisation of `x` `[.., d]` over its last axis with `gamma`, `beta` `[d]`.
pub fn layer_norm(
    x: Tensor<Flex, 3>,
    gamma: &Tensor<Flex, 1>,
    beta: &Tensor<Flex, 1>,
    eps: f32,
) -> Result<Tensor<Flex, 3>, Tensor<Flex, 3>> {
    let flex = [flex_f32(&x), flex_f32(gamma), flex_f32(beta)];
    let [Some(xs), Some(g), Some(b)] = flex.each_ref().map(|t| t.as_ref().and_then(FlexTensor::as_slice::<f32>)) else {
        return Err(x);
    };
    let d = x.dims()[2];
    let mut out = vec![0.0f32; xs.len()];
    let run = |(src, dst): (&[f32], &mut [f32])| {
        for (row, out_row) in src.chunks_exact(d).zip(dst.chunks_exact_mut(d)) {
            normalize_row(row, g, b, eps, out_row);
        }
    };
    if xs.len() <= CHUNK {
        run((xs, &mut out));
    } else {
        let task = (CHUNK / d).max(1) * d;
        xs.par_chunks(task).zip(out.par_chunks_mut(task)).for_each(run);
    }
    Ok(tensor_of(out, x.dims(), &x.device()))
}

/// `softmax(q kᵀ / √head_dim) v` per head, heads merged: `[b, n, heads · head_dim]`. q, k and v
/// are `[b, heads, t, head_dim]` in any layout whose channels are contiguous (views of a fused
/// projection are read in place); k and v may have one row for all of q's `b` (beams sharing a
/// window's cross-attention memory). `causal`: query i sees keys up to `t_k - n + i`.
pub fn attention(q: &Tensor<Flex, 4>, k: &Tensor<Flex, 4>, v: &Tensor<Flex, 4>, causal: bool) -> Option<Tensor<Flex, 3>> {
    let ([batch, heads, seq_q, head_dim], [k_rows, _, seq_k, _]) = (q.dims(), k.dims());
    if !(k_rows == batch || k_rows == 1) || k.dims()[1..] != [heads, seq_k, head_dim] || v.dims() != k.dims() {
        return None;
    }
    let d = heads * head_dim;
    // Beams at one position reading one memory are one batch of `batch` query rows: the
    // kernel then reads (and gemm packs) each head's keys once per step, not once per beam.
    let beams_as_rows = k_rows == 1 && batch > 1 && seq_q == 1 && !causal;
    let (q_flex, k_flex, v_flex) = (flex_f32(q)?, flex_f32(k)?, flex_f32(v)?);
    let (mut q_s, k_s, v_s) = (head_strides(&q_flex)?, head_strides(&k_flex)?, head_strides(&v_flex)?);
    let mut out = vec![0.0f32; batch * seq_q * d];
    let mut out_s = Strides::merged(seq_q, heads, head_dim);
    let mut shape = Shape { batch, heads, seq_q, seq_k, head_dim };
    if beams_as_rows {
        (shape.batch, shape.seq_q) = (1, batch);
        (q_s.row, out_s.row) = (q_s.batch, out_s.batch);
    }
    let (q_values, k_values, v_values) = (from_first(&q_flex), from_first(&k_flex), from_first(&v_flex));
    kernel::attention(q_values, q_s, k_values, k_s, v_values, v_s, &mut out, out_s, shape, Options { scale: None, causal });
    Some(tensor_of(out, [batch, seq_q, d], &q.device()))
}

/// Strides of `t` `[b, heads, t, channels]` when its channels are contiguous. A batch axis of
/// one gets stride 0, so it can be read for every row of a larger batch.
fn head_strides(t: &FlexTensor) -> Option<Strides> {
    let (dims, strides) = (t.layout().shape(), t.layout().strides());
    let strides: Vec<usize> = strides.iter().map(|&s| usize::try_from(s).ok()).collect::<Option<_>>()?;
    if strides.len() != 4 || (strides[3] != 1 && dims[3] > 1) {
        return None;
    }
    let batch = if dims[0] == 1 { 0 } else { strides[0] };
    Some(Strides { batch, head: strides[1], row: strides[2] })
}

/// The storage of `t` from its first element (a view's offset), for reading through strides.
fn from_first(t: &FlexTensor) -> &[f32] {
    &t.storage::<f32>()[t.layout().start_offset()..]
}

/// One row: mean, then the biased variance around it (two passes, as burn's `var_mean_bias`).
fn normalize_row(row: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|&x| (x - mean) * (x - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for (((o, &x), &g), &b) in out.iter_mut().zip(row).zip(gamma).zip(beta) {
        *o = (x - mean) * inv * g + b;
    }
}

/// The GELU pass, AVX2+FMA where the CPU has it.
fn gelu_fn() -> fn(&mut [f32]) {
    fma_build!(gelu_slice, fn(values: &mut [f32]))
}

#[inline(always)]
fn gelu_slice<const FMA: bool>(values: &mut [f32]) {
    for x in values {
        *x = 0.5 * *x * (1.0 + erf::<FMA>(*x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// Branch-free erf: `x · P(x²) / Q(x²)` on x clamped to [-4, 4] (the rational fit Eigen and
/// XLA use; beyond 4, erf is ±1 in f32). Absolute error ≤ 5e-7 against the exact function.
#[inline(always)]
pub fn erf<const FMA: bool>(x: f32) -> f32 {
    const P: [f32; 7] = [-2.726_142_3e-10, 2.770_681_4e-8, -2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_6e-3, -1.609_603_3e-2];
    const Q: [f32; 5] = [-1.456_607_2e-5, -2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_474e-2];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = P[1..].iter().fold(P[0], |acc, &c| fma::<FMA>(acc, x2, c));
    let q = Q[1..].iter().fold(Q[0], |acc, &c| fma::<FMA>(acc, x2, c));
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_within_5e7_of_the_exact_function() {
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            let exact = libm_erf(x as f64);
            for got in [erf::<false>(x), erf::<true>(x)] {
                assert!((got as f64 - exact).abs() <= 5e-7, "erf({x}) = {got}, exact {exact}");
            }
        }
        assert!((erf::<false>(f32::INFINITY) - 1.0).abs() <= 5e-7);
        assert!((erf::<false>(f32::NEG_INFINITY) + 1.0).abs() <= 5e-7);
    }

    #[test]
    fn key_value_split_holds_each_heads_rows_in_order() {
        let (batch, t, heads, head_dim) = (2, 5, 3, 4);
        let two_d = 2 * heads * head_dim;
        let values: Vec<f32> = (0..batch * t * two_d).map(|i| i as f32).collect();
        let kv = tensor_of::<3>(values, [batch, t, two_d], &Default::default());
        let (k, v) = split_key_value(&kv, heads).expect("Flex tensors");
        for (part, split) in [(0, k), (1, v)] {
            assert_eq!(split.dims(), [batch, heads, t, head_dim]);
            let got: Vec<f32> = split.into_data().into_vec().unwrap();
            for (i, &value) in got.iter().enumerate() {
                let (b, h, row, c) = (i / (heads * t * head_dim), i / (t * head_dim) % heads, i / head_dim % t, i % head_dim);
                let source = (b * t + row) * two_d + part * heads * head_dim + h * head_dim + c;
                assert_eq!(value, source as f32, "part {part} batch {b} head {h} row {row} channel {c}");
            }
        }
    }

    /// libm's erf in f64, through burn-flex.
    fn libm_erf(x: f64) -> f64 {
        burn_flex::ops::unary::erf_f64(x)
    }

    #[test]
    fn gelu_pass_matches_the_formula_at_any_length() {
        for n in [0, 1, 7, 33, CHUNK + 5] {
            let mut values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 6.0).collect();
            let expected: Vec<f32> = values.iter().map(|&x| (0.5 * x as f64 * (1.0 + libm_erf(x as f64 / 2f64.sqrt()))) as f32).collect();
            in_chunks(&mut values, gelu_fn());
            for (got, want) in values.iter().zip(&expected) {
                assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{got} vs {want}");
            }
        }
    }

    #[test]
    fn flex_gelu_and_layer_norm_match_burn() {
        type B = Flex;
        let device = Default::default();
        let values: Vec<f32> = (0..3 * 70 * 384).map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0).collect();
        let x: Tensor<B, 3> = tensor_of(values, [3, 70, 384], &device);
        let ours = gelu(x.clone()).into_data();
        let burns = burn::tensor::activation::gelu(x.clone()).into_data();
        ours.assert_approx_eq::<f32>(&burns, burn::tensor::Tolerance::absolute(2e-6));
        // A shared input (the clone above is still alive) is not written in place.
        let gamma: Tensor<B, 1> = tensor_of((0..384).map(|i| 1.0 + i as f32 / 384.0).collect(), [384], &device);
        let beta: Tensor<B, 1> = tensor_of((0..384).map(|i| i as f32 / 1000.0).collect(), [384], &device);
        let ours = layer_norm(x.clone(), &gamma, &beta, 1e-5).expect("flex").into_data();
        let (var, mean) = x.clone().var_mean_bias(2);
        let burns = ((x - mean) / (var + 1e-5).sqrt() * gamma.unsqueeze::<3>() + beta.unsqueeze::<3>()).into_data();
        ours.assert_approx_eq::<f32>(&burns, burn::tensor::Tolerance::absolute(1e-5));
    }
}
