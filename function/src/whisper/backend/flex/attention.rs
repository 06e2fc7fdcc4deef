//! Scaled-dot-product attention for the CPU backend, f32: `out = softmax(scale · q kᵀ) v` per (batch, head).
//!
//! Why not burn-flex's attention: it runs every (batch, head) on one thread and tiles keys by
//! 64, so it spends its time in many tiny gemm calls and a scalar `exp`. Here each rayon task
//! takes a block of query rows of one head against *all* keys: one gemm for the scores, a
//! vectorised softmax over the block (in a per-thread scratch, reused across calls), one gemm
//! for `P · v`. q, k, v and out are read/written in place through strides, so a fused
//! `[batch, seq, 3d]` projection needs no split/transpose copies and the output lands with the
//! heads already merged. Blocks of a few rows (decoding steps) skip gemm: see `attention_rows.rs`.

use gemm::{gemm, Parallelism};

use crate::whisper::simd::{exp, fma, fma_build};
use rayon::prelude::*;
use rows::Rows;
use std::cell::RefCell;

/// Element strides of one operand. Element (b, h, i, j) — batch, head, sequence position,
/// channel — lives at `b * batch + h * head + i * row + j`: the channel axis is always
/// contiguous. Slices passed to [`attention`] start at element (0, 0, 0, 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strides {
    pub batch: usize,
    pub head: usize,
    pub row: usize,
}

impl Strides {
    /// q, k or v inside a fused projection `[batch, seq, 3 * heads * head_dim]`; pass
    /// `&qkv[..]`, `&qkv[d..]` and `&qkv[2 * d..]` (d = heads * head_dim) as the slices.
    #[cfg(test)]
    pub fn fused_qkv(seq: usize, heads: usize, head_dim: usize) -> Self {
        let d = heads * head_dim;
        Strides { batch: seq * 3 * d, head: head_dim, row: 3 * d }
    }

    /// Heads merged, `[batch, seq, heads * head_dim]`: the output projection's input.
    pub fn merged(seq: usize, heads: usize, head_dim: usize) -> Self {
        let d = heads * head_dim;
        Strides { batch: seq * d, head: head_dim, row: d }
    }

    /// Row-major `[batch, heads, seq, head_dim]`.
    #[cfg(test)]
    pub fn contiguous(seq: usize, heads: usize, head_dim: usize) -> Self {
        Strides { batch: heads * seq * head_dim, head: seq * head_dim, row: head_dim }
    }
}

/// Problem size. k and v have `seq_k` rows, q and out `seq_q`; all have `head_dim` channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub batch: usize,
    pub heads: usize,
    pub seq_q: usize,
    pub seq_k: usize,
    pub head_dim: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Options {
    /// Multiplies `q kᵀ`; `None` means `1 / sqrt(head_dim)`.
    pub scale: Option<f32>,
    /// Query i attends keys `0..=i + seq_k - seq_q` (the queries are the last `seq_q`
    /// positions). A query that sees no key (only when seq_q > seq_k) gets a zero output row.
    pub causal: bool,
}

/// Target query rows per rayon task. gemm re-packs k on every call, so bigger blocks amortise
/// that: on the encoder shape 128–256 rows measured alike, 64 ~10 % and 32 ~20 % slower.
/// 128 keeps the scratch at 125 × 1500 floats (750 KB) and gives 12 tasks per head.
pub const BLOCK_ROWS: usize = 128;
const MAX_BLOCK: usize = 256; // bounds the per-task 1/sum array on the stack
/// Per-thread score scratch, in floats (1.5 MB): limits the rows per task for long key sequences.
const SCRATCH_FLOATS: usize = 384 * 1024;

/// See [`Tuning::parallel_min`].
const PARALLEL_MIN: usize = 1 << 20;

/// Computes attention for every (batch, head), writing `out` through `out_s`. Panics if an
/// operand is too short for its strides or if the output rows of different (batch, head, row)
/// would overlap. Runs on the current rayon pool.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    q_s: Strides,
    k: &[f32],
    k_s: Strides,
    v: &[f32],
    v_s: Strides,
    out: &mut [f32],
    out_s: Strides,
    shape: Shape,
    options: Options,
) {
    attention_tuned(q, q_s, k, k_s, v, v_s, out, out_s, shape, options, Tuning::default());
}

/// Knobs the tests turn; [`attention`] uses the defaults.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Target query rows per task (blocks are then evened out).
    pub block: usize,
    /// Below this many flops (4 · batch · heads · seq_q · seq_k · head_dim) the tasks run on
    /// the calling thread: waking the rayon pool costs more than such calls take.
    pub parallel_min: usize,
    /// Use the baseline (SSE2, no FMA) kernels even where AVX2+FMA exists: lets tests cover them.
    pub portable: bool,
    /// Blocks of at most this many query rows skip gemm (`attention_rows.rs`).
    pub few_rows: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning { block: BLOCK_ROWS, parallel_min: PARALLEL_MIN, portable: false, few_rows: rows::MAX_ROWS }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn attention_tuned(
    q: &[f32],
    q_s: Strides,
    k: &[f32],
    k_s: Strides,
    v: &[f32],
    v_s: Strides,
    out: &mut [f32],
    out_s: Strides,
    shape: Shape,
    options: Options,
    tuning: Tuning,
) {
    let Shape { batch, heads, seq_q, seq_k, head_dim: hd } = shape;
    if batch * heads * seq_q * hd == 0 {
        return;
    }
    check_len("q", q.len(), q_s, shape, seq_q);
    check_len("out", out.len(), out_s, shape, seq_q);
    if seq_k > 0 {
        check_len("k", k.len(), k_s, shape, seq_k);
        check_len("v", v.len(), v_s, shape, seq_k);
    }
    check_disjoint(out_s, shape);
    let scale = options.scale.unwrap_or(1.0 / (hd as f32).sqrt());
    // Keys visible to query row i: with `causal`, a prefix that grows by one per row.
    let visible = |i: usize| if options.causal { (i + 1 + seq_k).saturating_sub(seq_q).min(seq_k) } else { seq_k };
    let softmax = softmax_fn(tuning.portable);
    // Fewer rows when keys are many, so the scratch stays bounded; then equal-sized blocks,
    // so no small straggler task is left at the end.
    let target = tuning.block.min(SCRATCH_FLOATS / seq_k.max(1)).clamp(1, MAX_BLOCK);
    let blocks = seq_q.div_ceil(target);
    let block = seq_q.div_ceil(blocks);
    let blocks = seq_q.div_ceil(block);
    let out_ptr = SendPtr(out.as_mut_ptr());

    let run = |task: usize| {
        let (bh, r0) = (task / blocks, (task % blocks) * block);
        let (b, h) = (bh / heads, bh % heads);
        let rows = block.min(seq_q - r0);
        let at = |s: Strides, i: usize| b * s.batch + h * s.head + i * s.row;
        // SAFETY: check_len bounds every (b, h, i, j) touched below, and check_disjoint makes
        // each task's output rows its own, so tasks never write the same element.
        let o = unsafe { out_ptr.get().add(at(out_s, r0)) };
        let out_row = |i: usize| unsafe { std::slice::from_raw_parts_mut(o.add(i * out_s.row), hd) };
        // Under `causal`, the block's last row sees the most keys; the rest are masked to 0.
        let n = visible(r0 + rows - 1);
        if n == 0 {
            (0..rows).for_each(|i| out_row(i).fill(0.0));
            return;
        }
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let few = rows <= tuning.few_rows;
            // Scores, then probabilities, row-major rows × n; then, for few rows, their output.
            let len = rows * n + if few { rows * hd } else { 0 };
            if scratch.len() < len {
                scratch.resize(len, 0.0);
            }
            let (s, few_out) = scratch[..len].split_at_mut(rows * n);
            let mut inv_sum = [0.0f32; MAX_BLOCK];
            let inv_sum = &mut inv_sum[..rows];
            let (q_at, k_at, v_at) = (at(q_s, r0), at(k_s, 0), at(v_s, 0));
            if few {
                let q_rows = Rows { values: &q[q_at..], stride: q_s.row, len: hd };
                rows::scores(q_rows, Rows { values: &k[k_at..], stride: k_s.row, len: hd }, n, s, tuning.portable);
            } else {
                // SAFETY: pointers and strides describe in-bounds matrices (check_len); `s` is
                // exclusively ours. kᵀ is k read with swapped strides, no copy.
                unsafe {
                    gemm(
                        rows,
                        n,
                        hd,
                        s.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        q.as_ptr().add(q_at),
                        1,
                        q_s.row as isize,
                        k.as_ptr().add(k_at),
                        k_s.row as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
            }
            for (i, row) in s.chunks_exact_mut(n).enumerate() {
                let (live, masked) = row.split_at_mut(visible(r0 + i));
                masked.fill(0.0);
                inv_sum[i] = softmax(live, scale);
            }
            // out_block = P · v[..n], unnormalised; dividing the hd outputs per row by the
            // sum is cheaper than dividing the n probabilities.
            if few {
                rows::weighted_sum(s, n, Rows { values: &v[v_at..], stride: v_s.row, len: hd }, few_out, tuning.portable);
                for (i, row) in few_out.chunks_exact(hd).enumerate() {
                    out_row(i).copy_from_slice(row);
                }
            } else {
                // SAFETY: as for the scores; the output rows are this task's own (check_disjoint).
                unsafe {
                    gemm(
                        rows,
                        hd,
                        n,
                        o,
                        1,
                        out_s.row as isize,
                        false,
                        s.as_ptr(),
                        1,
                        n as isize,
                        v.as_ptr().add(v_at),
                        1,
                        v_s.row as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
            }
            for (i, &inv) in inv_sum.iter().enumerate() {
                out_row(i).iter_mut().for_each(|x| *x *= inv);
            }
        });
    };
    let tasks = batch * heads * blocks;
    if 4 * batch * heads * seq_q * seq_k * hd < tuning.parallel_min {
        (0..tasks).for_each(run);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
}

thread_local! {
    /// Per-thread score block, reused across tasks and calls (no allocation per task).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// An output pointer, shared by tasks that write disjoint elements.
pub(super) struct SendPtr(pub(super) *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    // A method, so closures capture the Sync wrapper rather than the raw field.
    pub(super) fn get(&self) -> *mut f32 {
        self.0
    }
}

fn check_len(name: &str, len: usize, s: Strides, shape: Shape, seq: usize) {
    // Checked: a wrapped sum could pass the test and let pointers leave the slice.
    let axes = [(shape.batch, s.batch), (shape.heads, s.head), (seq, s.row)];
    let end = axes.iter().try_fold(shape.head_dim, |end, &(n, st)| st.checked_mul(n - 1)?.checked_add(end));
    assert!(end.is_some_and(|end| end <= len), "attention: {name} has {len} elements, too few for strides {s:?}");
}

/// Sufficient condition for distinct (b, h, i) output rows never to share an element: sorted
/// by stride, each axis must step past everything the smaller axes span.
fn check_disjoint(s: Strides, shape: Shape) {
    let mut axes = [(s.row, shape.seq_q), (s.head, shape.heads), (s.batch, shape.batch)];
    axes.sort_unstable();
    let mut span = shape.head_dim;
    for (stride, count) in axes.into_iter().filter(|&(_, c)| c > 1) {
        assert!(stride >= span, "attention: output strides {s:?} make rows overlap");
        span += stride * (count - 1);
    }
}

/// Softmax of `scale · row` in place; returns 1 / sum of the (unnormalised) exponentials.
type SoftmaxFn = fn(&mut [f32], f32) -> f32;

/// The AVX2+FMA build of the softmax where the CPU has it, unless `portable`.
fn softmax_fn(portable: bool) -> SoftmaxFn {
    if portable {
        return softmax_row::<false>;
    }
    fma_build!(softmax_row, fn(row: &mut [f32], scale: f32) -> f32)
}

const LANES: usize = 16; // independent accumulators, so max/sum vectorise (no ordered reduction)

#[inline(always)]
fn softmax_row<const FMA: bool>(row: &mut [f32], scale: f32) -> f32 {
    if row.is_empty() {
        return 0.0;
    }
    let pick = |a: f32, b: f32| if a > b { a } else { b }; // compiles to maxps
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        (0..LANES).for_each(|l| max[l] = pick(c[l] * scale, max[l]));
    }
    let tail = chunks.remainder().iter().map(|&x| x * scale);
    let m = tail.chain(max).fold(f32::NEG_INFINITY, pick);
    // exp(scale·x - m) ≤ 1: no overflow whatever the score range or the sign of scale.
    let bias = -m;
    let mut sum = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            let e = exp::<FMA>(fma::<FMA>(c[l], scale, bias));
            c[l] = e;
            sum[l] += e;
        }
    }
    let mut total: f32 = sum.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp::<FMA>(fma::<FMA>(*x, scale, bias));
        total += *x;
    }
    1.0 / total
}

#[path = "attention_rows.rs"]
mod rows;

#[cfg(test)]
#[path = "attention_tests.rs"]
mod tests;
