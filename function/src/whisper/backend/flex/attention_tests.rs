//! Checks the kernel against a plain f64 reference on random inputs, over the layouts the
//! model uses (fused q/k/v projection in, heads merged out), the contiguous layout, odd and
//! tiny shapes, causal masking and extreme score ranges.

use super::{attention, attention_tuned, Options, Shape, Strides, Tuning};
use crate::whisper::simd::exp;

/// Deterministic uniform values in [-amp, amp] (xorshift64*; no extra dependency).
fn random(n: usize, seed: u64, amp: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let u = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
            (2.0 * u - 1.0) * amp
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// q, k, v in one `[b, seq, 3d]` buffer (self-attention), out `[b, seq, d]`.
    Fused,
    /// q in `[b, seq_q, d]`, k and v in one `[b, seq_k, 2d]` buffer (cross-attention), out `[b, seq_q, d]`.
    Cross,
    /// Each of q, k, v, out in its own `[b, heads, seq, head_dim]`.
    Contiguous,
    /// Like `Cross`, but every batch row (beam) reads the same k/v: batch stride 0.
    SharedKv,
}

struct Case {
    shape: Shape,
    layout: Layout,
    causal: bool,
    scale: Option<f32>,
    amp: f32,
    block: usize,
}

impl Case {
    fn new(batch: usize, heads: usize, seq_q: usize, seq_k: usize, head_dim: usize, layout: Layout) -> Self {
        let shape = Shape { batch, heads, seq_q, seq_k, head_dim };
        Case { shape, layout, causal: false, scale: None, amp: 2.0, block: super::BLOCK_ROWS }
    }
    fn causal(mut self) -> Self {
        self.causal = true;
        self
    }
}

/// Element (b, h, i, j) of a strided operand.
fn at(x: &[f32], s: Strides, b: usize, h: usize, i: usize, j: usize) -> f64 {
    x[b * s.batch + h * s.head + i * s.row + j] as f64
}

/// Runs the kernel and the f64 reference; returns the max abs error and the max |reference|.
fn check(c: &Case) -> (f64, f64) {
    let Shape { batch, heads, seq_q, seq_k, head_dim: hd } = c.shape;
    let d = heads * hd;
    let (q, k, v, qs, ks, vs, os, out_len);
    match c.layout {
        Layout::Fused => {
            assert_eq!(seq_q, seq_k);
            let qkv = random(batch * seq_q * 3 * d, 1, c.amp);
            let s = Strides::fused_qkv(seq_q, heads, hd);
            (q, k, v) = (qkv.clone(), qkv[d..].to_vec(), qkv[2 * d..].to_vec());
            (qs, ks, vs) = (s, s, s);
            os = Strides::merged(seq_q, heads, hd);
            out_len = batch * seq_q * d;
        }
        Layout::Cross | Layout::SharedKv => {
            let shared = c.layout == Layout::SharedKv;
            q = random(batch * seq_q * d, 2, c.amp);
            let kv = random(if shared { 1 } else { batch } * seq_k * 2 * d, 3, c.amp);
            (k, v) = (kv.clone(), kv[d..].to_vec());
            let s = Strides { batch: if shared { 0 } else { seq_k * 2 * d }, head: hd, row: 2 * d };
            (qs, ks, vs) = (Strides::merged(seq_q, heads, hd), s, s);
            os = Strides::merged(seq_q, heads, hd);
            out_len = batch * seq_q * d;
        }
        Layout::Contiguous => {
            q = random(batch * heads * seq_q * hd, 4, c.amp);
            k = random(batch * heads * seq_k * hd, 5, c.amp);
            v = random(batch * heads * seq_k * hd, 6, c.amp);
            qs = Strides::contiguous(seq_q, heads, hd);
            (ks, vs) = (Strides::contiguous(seq_k, heads, hd), Strides::contiguous(seq_k, heads, hd));
            os = Strides::contiguous(seq_q, heads, hd);
            out_len = batch * heads * seq_q * hd;
        }
    }
    // NaN everywhere first: every output element must be written. Run on the calling thread
    // and on the rayon pool (same bits expected), with the baseline kernels (no AVX2/FMA), and
    // with gemm or the few-row kernels for every block.
    let options = Options { scale: c.scale, causal: c.causal };
    let run = |parallel_min: usize, portable: bool, few_rows: usize| {
        let mut out = vec![f32::NAN; out_len];
        let tuning = Tuning { block: c.block, parallel_min, portable, few_rows };
        attention_tuned(&q, qs, &k, ks, &v, vs, &mut out, os, c.shape, options, tuning);
        out
    };
    let few = Tuning::default().few_rows;
    let (serial, out, portable) = (run(usize::MAX, false, few), run(0, false, few), run(0, true, few));
    // Blocks of every size through gemm alone, and through the few-row kernels alone.
    let (gemm_only, rows_only) = (run(0, false, 0), run(0, false, usize::MAX));
    assert!(serial.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()), "serial != parallel");
    let scale = c.scale.map_or(1.0 / (hd as f64).sqrt(), |s| s as f64);
    let (mut err, mut mag) = (0.0f64, 0.0f64);
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..seq_q {
                let visible = if c.causal { (i + 1 + seq_k).saturating_sub(seq_q).min(seq_k) } else { seq_k };
                let scores: Vec<f64> =
                    (0..visible).map(|j| scale * (0..hd).map(|t| at(&q, qs, b, h, i, t) * at(&k, ks, b, h, j, t)).sum::<f64>()).collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let p: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let sum: f64 = p.iter().sum();
                for t in 0..hd {
                    let want =
                        if visible == 0 { 0.0 } else { p.iter().enumerate().map(|(j, p)| p * at(&v, vs, b, h, j, t)).sum::<f64>() / sum };
                    for out in [&out, &portable, &gemm_only, &rows_only] {
                        let got = at(out, os, b, h, i, t);
                        assert!(got.is_finite(), "non-finite output at b{b} h{h} i{i} t{t}: {got}");
                        err = err.max((got - want).abs());
                    }
                    mag = mag.max(want.abs());
                }
            }
        }
    }
    (err, mag)
}

fn assert_close(c: &Case, what: &str) {
    let (err, mag) = check(c);
    eprintln!("{what}: max abs error {err:.2e} (max |out| {mag:.2})");
    assert!(err <= 1e-4, "{what}: max abs error {err:.3e}");
}

#[test]
fn whisper_encoder_shape_fused_qkv() {
    assert_close(&Case::new(1, 6, 1500, 1500, 64, Layout::Fused), "1x6 1500x1500x64 fused");
}

#[test]
fn whisper_encoder_shape_contiguous() {
    assert_close(&Case::new(1, 6, 1500, 1500, 64, Layout::Contiguous), "1x6 1500x1500x64 contiguous");
}

#[test]
fn batched_and_seq_not_multiple_of_block() {
    assert_close(&Case::new(2, 3, 200, 200, 64, Layout::Fused), "2x3 200x200x64 fused");
    assert_close(&Case::new(2, 3, 130, 333, 64, Layout::Contiguous), "2x3 130x333x64 contiguous");
    assert_close(&Case::new(2, 3, 130, 333, 64, Layout::Cross), "2x3 130x333x64 cross");
}

#[test]
fn tiny_and_odd_shapes() {
    for layout in [Layout::Fused, Layout::Cross, Layout::Contiguous] {
        assert_close(&Case::new(1, 1, 1, 1, 64, layout), "1x1 1x1x64");
        assert_close(&Case::new(1, 1, 1, 1, 1, layout), "1x1 1x1x1");
        assert_close(&Case::new(2, 3, 13, 13, 5, layout), "2x3 13x13x5");
    }
    for layout in [Layout::Cross, Layout::Contiguous] {
        assert_close(&Case::new(1, 2, 7, 13, 64, layout), "1x2 7x13x64");
        assert_close(&Case::new(3, 2, 13, 7, 3, layout), "3x2 13x7x3");
    }
}

#[test]
fn decoder_shapes() {
    // Beams as batch rows, one new token each: cross-attention over the audio, self-attention
    // over the cache; and a 5-token prompt.
    assert_close(&Case::new(5, 6, 1, 1500, 64, Layout::Cross), "5x6 1x1500x64 cross");
    assert_close(&Case::new(5, 6, 1, 224, 64, Layout::Contiguous), "5x6 1x224x64");
    assert_close(&Case::new(1, 6, 5, 1500, 64, Layout::Cross), "1x6 5x1500x64 cross");
    assert_close(&Case::new(5, 6, 1, 1500, 64, Layout::SharedKv), "5x6 1x1500x64 k/v shared by the beams");
    assert_close(&Case::new(3, 2, 70, 130, 64, Layout::SharedKv).causal(), "causal 3x2 70x130 shared k/v");
}

#[test]
fn causal_square_and_rectangular() {
    assert_close(&Case::new(1, 2, 150, 150, 64, Layout::Fused).causal(), "causal 150x150 fused");
    assert_close(&Case::new(2, 2, 150, 150, 64, Layout::Contiguous).causal(), "causal 150x150");
    assert_close(&Case::new(1, 2, 5, 224, 64, Layout::Cross).causal(), "causal 5x224 (q < k)");
    assert_close(&Case::new(1, 2, 70, 200, 64, Layout::Contiguous).causal(), "causal 70x200 (q < k)");
    assert_close(&Case::new(1, 1, 1, 1, 64, Layout::Contiguous).causal(), "causal 1x1");
    // q > k: the first rows see no key and must come out as zeros.
    assert_close(&Case::new(1, 2, 20, 7, 16, Layout::Cross).causal(), "causal 20x7 (q > k)");
}

#[test]
fn every_block_size_gives_the_same_result() {
    for block in [1, 7, 16, 64, 100, 256, 10_000] {
        let mut c = Case::new(1, 2, 150, 150, 64, Layout::Fused).causal();
        c.block = block;
        assert_close(&c, &format!("causal 150x150 block {block}"));
        let mut c = Case::new(1, 2, 150, 97, 64, Layout::Contiguous);
        c.block = block;
        assert_close(&c, &format!("150x97 block {block}"));
    }
}

#[test]
fn explicit_scale_any_sign() {
    for scale in [0.37, -0.5, 0.0] {
        let mut c = Case::new(1, 2, 33, 45, 64, Layout::Contiguous);
        c.scale = Some(scale);
        assert_close(&c, &format!("scale {scale}"));
    }
}

#[test]
fn huge_score_ranges_stay_finite() {
    // Entries up to ±100: scores span about ±1e4 after scaling, so most exponentials underflow
    // and each row's softmax is nearly one-hot. The output must stay finite and exact.
    for amp in [30.0, 100.0] {
        let mut c = Case::new(1, 2, 100, 300, 64, Layout::Contiguous);
        c.amp = amp;
        let (err, mag) = check(&c);
        eprintln!("amp {amp}: max abs error {err:.2e} (max |out| {mag:.2})");
        assert!(err <= 1e-4 * amp as f64, "amp {amp}: max abs error {err:.3e}");
    }
    let mut c = Case::new(1, 1, 20, 40, 8, Layout::Contiguous);
    c.scale = Some(1e6);
    let (err, _) = check(&c);
    assert!(err <= 2e-4, "scale 1e6: max abs error {err:.3e}");
}

#[test]
fn exp_relative_error_over_softmax_range() {
    // Every f32 in [-87.3, 0] would be 1.1e9 values; a dense uniform sweep plus all values
    // near 0 covers the reduction's branch points. Both builds (with and without FMA).
    let mut worst = [0.0f64; 2];
    let mut xs: Vec<f32> = (0..=4_000_000).map(|i| -87.3 * i as f32 / 4_000_000.0).collect();
    xs.extend((0..100_000).map(|i| -(i as f32) * 1e-6));
    for &x in &xs {
        let want = (x as f64).exp();
        for (w, got) in worst.iter_mut().zip([exp::<false>(x), exp::<true>(x)]) {
            *w = w.max(((got as f64 - want) / want).abs());
        }
    }
    eprintln!("exp max relative error: no FMA {:.3e}, FMA {:.3e}", worst[0], worst[1]);
    assert!(worst[0] <= 2e-7 && worst[1] <= 2e-7, "exp relative error {worst:?}");
    // Underflow edge: below ln(2^-126) the result is 0 or tiny, never NaN/inf/negative.
    for x in [-87.4f32, -88.0, -100.0, -1e30, f32::MIN, f32::NEG_INFINITY] {
        for got in [exp::<false>(x), exp::<true>(x)] {
            assert!((0.0..1.2e-38).contains(&got), "exp({x}) = {got}");
        }
    }
    assert_eq!(exp::<false>(0.0), 1.0);
    assert_eq!(exp::<true>(0.0), 1.0);
}

#[test]
fn public_entry_point_matches_reference() {
    let shape = Shape { batch: 1, heads: 2, seq_q: 3, seq_k: 4, head_dim: 2 };
    let s = Strides::contiguous(3, 2, 2);
    let sk = Strides::contiguous(4, 2, 2);
    let q = random(12, 7, 1.0);
    let k = random(16, 8, 1.0);
    let v = random(16, 9, 1.0);
    let mut out = vec![0.0; 12];
    attention(&q, s, &k, sk, &v, sk, &mut out, s, shape, Options::default());
    let mut want = vec![0.0; 12];
    let tuning = Tuning { block: 1, parallel_min: 0, ..Tuning::default() };
    attention_tuned(&q, s, &k, sk, &v, sk, &mut want, s, shape, Options::default(), tuning);
    for (a, b) in out.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
#[should_panic(expected = "k has 11 elements")]
fn short_buffer_panics() {
    let shape = Shape { batch: 1, heads: 1, seq_q: 2, seq_k: 3, head_dim: 4 };
    let s = Strides::contiguous(2, 1, 4);
    let sk = Strides::contiguous(3, 1, 4);
    let mut out = vec![0.0; 8];
    attention(&[0.0; 8], s, &[0.0; 11], sk, &[0.0; 12], sk, &mut out, s, shape, Options::default());
}

#[test]
#[should_panic(expected = "too few")]
fn stride_overflow_panics() {
    let shape = Shape { batch: 3, heads: 1, seq_q: 1, seq_k: 1, head_dim: 1 };
    let s = Strides { batch: 1, head: 1, row: 1 };
    let huge = Strides { batch: usize::MAX / 2 + 1, head: 1, row: 1 }; // 2 · stride wraps to 0
    let mut out = vec![0.0; 3];
    attention(&[0.0; 3], s, &[0.0; 3], huge, &[0.0; 3], s, &mut out, s, shape, Options::default());
}

#[test]
#[should_panic(expected = "overlap")]
fn overlapping_output_panics() {
    let shape = Shape { batch: 1, heads: 2, seq_q: 2, seq_k: 2, head_dim: 4 };
    let s = Strides::contiguous(2, 2, 4);
    let bad = Strides { batch: 16, head: 2, row: 8 }; // heads 2 apart but rows 4 wide
    let mut out = vec![0.0; 16];
    attention(&[0.0; 16], s, &[0.0; 16], s, &[0.0; 16], s, &mut out, bad, shape, Options::default());
}
