//! The encoder's convolutions (kernel 3, padding 1) on the CPU backend as one matrix product
//! each: the input is time-major, so the three frames a output frame reads are one contiguous
//! row of an im2col buffer, and the output comes out time-major, as the Transformer blocks want
//! it (no transpose after). burn-flex's convolution took ~50 ms for the two of them per window.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Kernel width of Whisper's convolutions.
pub const KERNEL: usize = 3;

/// Rearranges a `[c_out, c_in, 3]` weight into `[3 · c_in, c_out]`: row `k · c_in + c` holds the
/// weights of input channel `c` at kernel tap `k` for every output channel.
pub fn im2col_weight(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; KERNEL * c_in * c_out];
    for o in 0..c_out {
        for c in 0..c_in {
            for k in 0..KERNEL {
                out[(k * c_in + c) * c_out + o] = weight[(o * c_in + c) * KERNEL + k];
            }
        }
    }
    out
}

/// Output frames of a kernel-3, padding-1 convolution with `stride` over `t_in` frames.
pub fn frames_out(t_in: usize, stride: usize) -> usize {
    (t_in + 2 - KERNEL) / stride + 1
}

/// `x` `[batch, t_in, c_in]` (time-major) convolved with `weight` (from [`im2col_weight`]) plus
/// `bias`: `[batch, t_out, c_out]`, time-major.
pub fn conv_k3(x: &[f32], batch: usize, c_in: usize, weight: &[f32], bias: &[f32], stride: usize) -> Vec<f32> {
    let c_out = bias.len();
    let t_in = x.len() / (batch * c_in).max(1);
    assert_eq!(x.len(), batch * t_in * c_in, "conv input length");
    assert_eq!(weight.len(), KERNEL * c_in * c_out, "conv weight length");
    let t_out = frames_out(t_in, stride);
    let row = KERNEL * c_in;
    // Row t: input frames t·stride - 1, t·stride, t·stride + 1, zeros outside the input.
    let mut cols = vec![0.0f32; batch * t_out * row];
    cols.par_chunks_mut(row).enumerate().for_each(|(i, dst)| {
        let (b, t) = (i / t_out, i % t_out);
        for k in 0..KERNEL {
            let Some(frame) = (t * stride + k).checked_sub(1).filter(|&f| f < t_in) else { continue };
            let src = (b * t_in + frame) * c_in;
            dst[k * c_in..(k + 1) * c_in].copy_from_slice(&x[src..src + c_in]);
        }
    });
    let m = batch * t_out;
    let mut out: Vec<f32> = bias.iter().copied().cycle().take(m * c_out).collect();
    // SAFETY: out is m × c_out, cols m × row, weight row × c_out, all row-major and in bounds.
    unsafe {
        gemm(
            m,
            c_out,
            row,
            out.as_mut_ptr(),
            1,
            c_out as isize,
            true,
            cols.as_ptr(),
            1,
            row as isize,
            weight.as_ptr(),
            1,
            c_out as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::Rayon(0),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) % 2000) as f32 / 1000.0 - 1.0).collect()
    }

    /// Straight from the definition, channel-major weight `[c_out, c_in, 3]`, f64.
    fn reference(x: &[f32], batch: usize, t_in: usize, c_in: usize, w: &[f32], bias: &[f32], stride: usize) -> Vec<f64> {
        let c_out = bias.len();
        let t_out = frames_out(t_in, stride);
        let mut out = vec![0.0f64; batch * t_out * c_out];
        for b in 0..batch {
            for t in 0..t_out {
                for o in 0..c_out {
                    let mut sum = bias[o] as f64;
                    for k in 0..KERNEL {
                        let f = (t * stride + k) as isize - 1;
                        if f < 0 || f as usize >= t_in {
                            continue;
                        }
                        for c in 0..c_in {
                            sum += w[(o * c_in + c) * KERNEL + k] as f64 * x[(b * t_in + f as usize) * c_in + c] as f64;
                        }
                    }
                    out[(b * t_out + t) * c_out + o] = sum;
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_definition_for_both_strides_and_odd_lengths() {
        for (batch, t_in, c_in, c_out, stride) in [(1, 10, 4, 5, 1), (2, 11, 3, 7, 2), (1, 1, 2, 3, 1), (1, 1, 2, 3, 2), (2, 64, 80, 16, 1)]
        {
            let x = values(batch * t_in * c_in, 1);
            let w = values(c_out * c_in * KERNEL, 2);
            let bias = values(c_out, 3);
            let got = conv_k3(&x, batch, c_in, &im2col_weight(&w, c_out, c_in), &bias, stride);
            let want = reference(&x, batch, t_in, c_in, &w, &bias, stride);
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-4, "{g} vs {w}");
            }
        }
    }
}
