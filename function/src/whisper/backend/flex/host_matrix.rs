//! Matrix products with few rows (a decoding step: one row per beam or window) against a weight
//! kept as the checkpoint stores it, `[out, in]` rows, f16 or f32, for burn's CPU backend.
//!
//! A decoding step is bound by the bytes of weight it streams, not by arithmetic: f16 halves
//! them, and reading `[out, in]` rows directly means nothing is widened or transposed at load.
//! gemm, built for large products, also re-packs the whole weight on every call. Here each
//! task takes a tile of weight rows, widens each 8 weights in registers (F16C) and multiplies
//! them into up to five input rows at a time.

use half::f16;
use rayon::prelude::*;

use super::attention::SendPtr;
use crate::error::Result;
use crate::whisper::weights::{f16_to_f32, F16Rows, TensorSource};

/// Weight rows per rayon task.
const TILE: usize = 64;
/// Input rows sharing one pass over a weight row: a beam of 5 is one group (10 accumulators, 2
/// weight vectors and an input vector: 13 of the 16 AVX registers).
const GROUP: usize = 5;

/// `[out, in]` weight rows in host memory.
#[derive(Debug)]
pub enum HostMatrix {
    F16 { rows: F16Rows, cols: usize },
    F32 { rows: Vec<f32>, cols: usize },
}

impl HostMatrix {
    /// The checkpoint's `name` `[out, in]`, f16 if stored so.
    pub fn load(source: &dyn TensorSource, name: &str, out_width: usize, cols: usize) -> Result<Self> {
        Ok(match source.tensor_f16(name, &[out_width, cols])? {
            Some(rows) => HostMatrix::F16 { rows, cols },
            None => HostMatrix::F32 { rows: source.tensor(name, &[out_width, cols])?.data, cols },
        })
    }

    /// Input width (`in`).
    pub fn cols(&self) -> usize {
        match self {
            HostMatrix::F16 { cols, .. } | HostMatrix::F32 { cols, .. } => *cols,
        }
    }

    /// Output width (`out`): the number of weight rows.
    pub fn rows(&self) -> usize {
        match self {
            HostMatrix::F16 { rows, cols } => rows.values() / cols,
            HostMatrix::F32 { rows, cols } => rows.len() / cols,
        }
    }

    /// Weight rows `first..first + count` as f32 into `out`.
    pub fn widen(&self, first: usize, count: usize, out: &mut [f32]) {
        let cols = self.cols();
        let range = first * cols..(first + count) * cols;
        match self {
            HostMatrix::F16 { rows, .. } => f16_to_f32(&rows[2 * range.start..2 * range.end], out),
            HostMatrix::F32 { rows, .. } => out.copy_from_slice(&rows[range]),
        }
    }

    /// `x` `[n, in]` · weightᵀ (+ `bias`): `[n, out]`, row-major.
    pub fn product(&self, x: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        self.product_with(Kernel::pick(), x, bias)
    }

    fn product_with(&self, kernel: Kernel, x: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        let (cols, out_width) = (self.cols(), self.rows());
        let n = x.len() / cols;
        let mut out = vec![0.0f32; n * out_width];
        let out_ptr = SendPtr(out.as_mut_ptr());
        // Each task streams a tile of weight rows once per group of input rows and writes its
        // own columns of the output: no transposed copy to gather afterwards.
        (0..out_width.div_ceil(TILE)).into_par_iter().for_each(|tile| {
            let rows = tile * TILE..(tile * TILE + TILE).min(out_width);
            let w = match self {
                HostMatrix::F16 { rows: halves, .. } => Weights::F16(&halves[2 * rows.start * cols..2 * rows.end * cols]),
                HostMatrix::F32 { rows: values, .. } => Weights::F32(&values[rows.start * cols..rows.end * cols]),
            };
            let mut dots = [0.0f32; TILE * GROUP];
            for (g, group) in x.chunks(GROUP * cols).enumerate() {
                let count = group.len() / cols;
                let dots = &mut dots[..rows.len() * count];
                kernel.dots(w, cols, group, dots);
                for (j, row_dots) in rows.clone().zip(dots.chunks_exact(count)) {
                    let b = bias.map_or(0.0, |b| b[j]);
                    for (r, dot) in row_dots.iter().enumerate() {
                        let at = (g * GROUP + r) * out_width + j;
                        assert!(at < n * out_width);
                        // SAFETY: in bounds (asserted); column j belongs to this task's tile only.
                        unsafe { *out_ptr.get().add(at) = dot + b };
                    }
                }
            }
        });
        out
    }
}

/// `out[j · count + r] = w_j · x_r` for every weight row `w_j` (`cols` long) of a tile and
/// the `count` (up to [`GROUP`]) rows of `x`. One call per tile, the row loop inside the vector
/// code: a 384-wide row's arithmetic takes about as long as a call and its dispatch.
#[derive(Clone, Copy)]
enum Kernel {
    /// AVX2 + FMA + F16C intrinsics: f16 weights are widened in registers.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Kernel {
    fn pick() -> Self {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            return Kernel::Avx2;
        }
        Kernel::Portable
    }

    fn dots(self, w: Weights, cols: usize, x: &[f32], out: &mut [f32]) {
        let count = x.len() / cols;
        assert!(count <= GROUP && w.len() == out.len() / count.max(1) * cols, "kernel operands disagree");
        match self {
            // SAFETY: `pick` checked the features; the operands' lengths agree (asserted).
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { avx2::dots(w, cols, x, out) },
            Kernel::Portable => {
                for (j, dots) in out.chunks_exact_mut(count).enumerate() {
                    for (dot, row) in dots.iter_mut().zip(x.chunks_exact(cols)) {
                        *dot = row.iter().enumerate().map(|(c, &value)| w.get(j * cols + c) * value).sum();
                    }
                }
            }
        }
    }
}

/// Weight rows, as stored (f16 as their little-endian bytes, at any alignment).
#[derive(Clone, Copy)]
enum Weights<'a> {
    F16(&'a [u8]),
    F32(&'a [f32]),
}

impl Weights<'_> {
    fn len(self) -> usize {
        match self {
            Weights::F16(w) => w.len() / 2,
            Weights::F32(w) => w.len(),
        }
    }

    fn get(self, c: usize) -> f32 {
        match self {
            Weights::F16(w) => f16::from_le_bytes([w[2 * c], w[2 * c + 1]]).to_f32(),
            Weights::F32(w) => w[c],
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Weights;
    use crate::whisper::simd::sum8;
    use std::arch::x86_64::*;

    /// Weights `c..c + 8` as f32. Safety: `c + 8 <= w.len()`, F16C and AVX available.
    #[inline(always)]
    unsafe fn load8(w: Weights, c: usize) -> __m256 {
        match w {
            Weights::F16(w) => _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(2 * c).cast())),
            Weights::F32(w) => _mm256_loadu_ps(w.as_ptr().add(c)),
        }
    }

    /// Bytes ahead of the weight being read to request from memory (into the rows after this
    /// one: a tile's rows are contiguous). The hardware prefetcher alone left a step's weight
    /// stream at about half the machine's read bandwidth.
    const AHEAD: usize = 2048;

    #[inline(always)]
    unsafe fn prefetch(w: Weights, c: usize) {
        let byte = match w {
            Weights::F16(w) => w.as_ptr().wrapping_add(2 * c),
            Weights::F32(w) => w.as_ptr().wrapping_add(c).cast(),
        };
        _mm_prefetch::<_MM_HINT_T0>(byte.wrapping_add(AHEAD).cast());
    }

    /// Safety: AVX2, FMA and F16C available; `x` holds `out.len() / (w.len() / cols)` rows
    /// (at most 5) of `cols`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dots(w: Weights, cols: usize, x: &[f32], out: &mut [f32]) {
        match x.len() / cols {
            5 => rows_n::<5>(w, cols, x, out),
            4 => rows_n::<4>(w, cols, x, out),
            3 => rows_n::<3>(w, cols, x, out),
            2 => rows_n::<2>(w, cols, x, out),
            _ => rows_n::<1>(w, cols, x, out),
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn rows_n<const R: usize>(w: Weights, cols: usize, x: &[f32], out: &mut [f32]) {
        assert!(x.len() >= R * cols && out.len() * cols == w.len() * R);
        for (j, out) in out.chunks_exact_mut(R).enumerate() {
            row_n::<R>(w, j * cols, cols, x, out);
        }
    }

    /// Weight row `w[first..first + cols]` against the `R` rows of `x`. Two accumulators per
    /// row (16 floats a step), so even one row has independent chains.
    #[inline(always)]
    unsafe fn row_n<const R: usize>(w: Weights, first: usize, cols: usize, x: &[f32], out: &mut [f32]) {
        let whole = cols / 16 * 16;
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let xp = x.as_ptr();
        let mut c = 0;
        while c < whole {
            prefetch(w, first + c);
            // SAFETY (caller's asserts): c + 16 <= cols, and row r spans r * cols..(r + 1) * cols of x.
            let (w0, w1) = (load8(w, first + c), load8(w, first + c + 8));
            for r in 0..R {
                let row = xp.add(r * cols + c);
                lo[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(row), lo[r]);
                hi[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(row.add(8)), hi[r]);
            }
            c += 16;
        }
        for r in 0..R {
            let tail: f32 = (whole..cols).map(|c| w.get(first + c) * x[r * cols + c]).sum();
            out[r] = sum8(_mm256_add_ps(lo[r], hi[r])) + tail;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) % 2000) as f32 / 1000.0 - 1.0).collect()
    }

    #[test]
    fn product_matches_a_plain_product_for_both_storages_and_kernels() {
        // Widths not multiples of the tile or of the lanes; row counts around the group size.
        for (out_width, cols) in [(1000 + 7, 384), (70, 13)] {
            let weights = values(out_width * cols, 1);
            let halves: Vec<f16> = weights.iter().map(|&x| f16::from_f32(x)).collect();
            let widened: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
            let bias = values(out_width, 3);
            for n in [1, 2, 3, 4, 5, 6, 9] {
                let x = values(n * cols, 7 + n as u32);
                for (matrix, reference) in [
                    (HostMatrix::F16 { rows: halves.clone().into(), cols }, &widened),
                    (HostMatrix::F32 { rows: weights.clone(), cols }, &weights),
                ] {
                    for kernel in [Kernel::pick(), Kernel::Portable] {
                        let got = matrix.product_with(kernel, &x, Some(&bias));
                        assert_eq!(got.len(), n * out_width);
                        for (i, &value) in got.iter().enumerate() {
                            let (r, j) = (i / out_width, i % out_width);
                            let terms = (0..cols).map(|c| reference[j * cols + c] as f64 * x[r * cols + c] as f64);
                            let (exact, magnitude) = terms.fold((bias[j] as f64, bias[j].abs() as f64), |(s, m), t| (s + t, m + t.abs()));
                            // f32 sums drift with the terms' magnitude (the portable kernel adds
                            // them in order); a wrong row or column is off by far more.
                            assert!((value as f64 - exact).abs() < 1e-6 * magnitude.max(1.0) * 4.0, "row {r} out {j}: {value} vs {exact}");
                        }
                    }
                }
            }
        }
    }
}
