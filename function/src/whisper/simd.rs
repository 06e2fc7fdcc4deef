//! Vectorised f32 helpers shared by the CPU kernels and the decoding rules. Each loop is written
//! once, generic over `FMA`, and built twice: baseline x86-64 (SSE2, no FMA, what the crate
//! targets) and AVX2+FMA, picked at run time.

/// The `FMA = true` build of the generic function `$f` (`#[inline(always)]`), compiled with
/// AVX2+FMA enabled, as a `fn` pointer when the CPU has them; else the `FMA = false` build,
/// baseline x86-64 (SSE2, 4 lanes, no FMA), which the crate targets.
macro_rules! fma_build {
    ($($f:ident)::+, fn($($a:ident: $t:ty),*) $(-> $r:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2($($a: $t),*) $(-> $r)? {
            $($f)::+::<true>($($a),*)
        }
        #[cfg(target_arch = "x86_64")]
        let picked: Option<fn($($t),*) $(-> $r)?> = (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
            // SAFETY: the features were detected just above.
            .then_some(|$($a),*| unsafe { avx2($($a),*) });
        #[cfg(not(target_arch = "x86_64"))]
        let picked: Option<fn($($t),*) $(-> $r)?> = None;
        picked.unwrap_or($($f)::+::<false>)
    }};
}
pub(crate) use fma_build;

#[inline(always)]
pub fn fma<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    // Without the fma feature `mul_add` is a libm call, so only use it in the FMA build.
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Branch-free exp (Cephes expf): x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-7 series
/// fit, 2^n built in the exponent bits. Relative error ≈ 1 ulp; below -87.33 (where 2^n would
/// leave the normal range) it returns 0. Not for x > 88 (softmax only feeds x ≤ 0).
#[inline(always)]
pub fn exp<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 355.0 / 512.0; // few mantissa bits: n·LN2_HI is exact, r loses none
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer (ulp = 1)
    const LO: f32 = -87.336_55; // ln(2⁻¹²⁶)
    const HI: f32 = 88.0;
    let xc = x.clamp(LO, HI);
    let t = fma::<FMA>(xc, LOG2E, MAGIC);
    let n = t - MAGIC;
    let r = fma::<FMA>(n, -LN2_HI, xc);
    let r = fma::<FMA>(n, -LN2_LO, r);
    let mut p = 1.987_569_1e-4;
    p = fma::<FMA>(p, r, 1.398_199_9e-3);
    p = fma::<FMA>(p, r, 8.333_452e-3);
    p = fma::<FMA>(p, r, 4.166_579_6e-2);
    p = fma::<FMA>(p, r, 1.666_666_5e-1);
    p = fma::<FMA>(p, r, 0.5);
    let y = fma::<FMA>(p, r * r, r) + 1.0;
    // n sits in the low mantissa bits of t; (n + 127) << 23 is 2^n as an f32.
    let n_bits = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let two_n = f32::from_bits(((n_bits + 127) << 23) as u32);
    if x < LO {
        0.0
    } else {
        y * two_n
    }
}

/// `Σ exp(x - shift)` over `values`, f32 exponentials summed in f32 lanes, then in f64: the
/// softmax denominators of the decoding rules, over the whole vocabulary every step.
pub fn sum_exp(values: &[f32], shift: f32) -> f64 {
    fma_build!(sum_exp_lanes, fn(values: &[f32], shift: f32) -> f64)(values, shift)
}

const LANES: usize = 16;

#[inline(always)]
fn sum_exp_lanes<const FMA: bool>(values: &[f32], shift: f32) -> f64 {
    // f32 lanes over blocks of 256 values, then f64: a whole vocabulary summed in f32 lanes
    // drifts by ~1e-6; per block it stays at the exponentials' own error.
    let mut total = [0.0f64; LANES];
    let mut blocks = values.chunks_exact(16 * LANES);
    for block in &mut blocks {
        let mut sum = [0.0f32; LANES];
        for c in block.chunks_exact(LANES) {
            (0..LANES).for_each(|l| sum[l] += exp::<FMA>(c[l] - shift));
        }
        (0..LANES).for_each(|l| total[l] += sum[l] as f64);
    }
    let tail: f64 = blocks.remainder().iter().map(|&x| exp::<FMA>(x - shift) as f64).sum();
    total.iter().sum::<f64>() + tail
}

/// The sum of the 8 lanes of `v`: halves, then pairs, then the last two. Safety: AVX available
/// (call it from `avx2` code, where it inlines).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn sum8(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let v = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    _mm_cvtss_f32(_mm_add_ss(v, _mm_shuffle_ps(v, v, 1)))
}

/// The largest value (−∞ for none), vectorised: `f32::max` folds one lane at a time.
pub fn max(values: &[f32]) -> f32 {
    let pick = |a: f32, b: f32| if a > b { a } else { b }; // compiles to maxps
    let mut best = [f32::NEG_INFINITY; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for c in &mut chunks {
        (0..LANES).for_each(|l| best[l] = pick(c[l], best[l]));
    }
    chunks.remainder().iter().chain(&best).copied().fold(f32::NEG_INFINITY, pick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_exp_and_max_match_plain_loops() {
        for n in [0, 1, 15, 16, 17, 51_864] {
            let values: Vec<f32> = (0..n).map(|i| ((i * 7919) % 2000) as f32 / 50.0 - 30.0).collect();
            let m = max(&values);
            assert_eq!(m, values.iter().copied().fold(f32::NEG_INFINITY, f32::max));
            let want: f64 = values.iter().map(|&x| ((x - m) as f64).exp()).sum();
            let got = sum_exp(&values, m);
            assert!((got - want).abs() <= 2e-7 * want.max(1.0), "n {n}: {got} vs {want}");
        }
        assert_eq!(sum_exp(&[f32::NEG_INFINITY, 0.0], 0.0), 1.0);
    }
}
