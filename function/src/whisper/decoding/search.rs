//! Token search over one window: greedy, beam (CTranslate2's algorithm, so results match
//! faster-whisper token for token) and temperature sampling. The network is reached through
//! [`StepModel`], so the search knows nothing of tensors.

use rayon::prelude::*;

use super::rules::{log_softmax, LogitRules};
use crate::whisper::preempt;

/// One decoder step at a time over a batch of rows (hypotheses).
pub trait StepModel {
    /// Feeds one token per row and returns the next-token logits of every row.
    fn step(&mut self, tokens: &[u32]) -> Vec<Vec<f32>>;
    /// Keeps rows `rows` of the state, in that order (rows may repeat: beam expansion).
    fn select_rows(&mut self, rows: &[usize]);
}

/// The result of a search: tokens without end-of-text, and CTranslate2's scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    pub tokens: Vec<u32>,
    /// Sum of log-probabilities of the tokens, end-of-text included when it was produced.
    pub cum_logprob: f32,
    /// `cum_logprob / len^length_penalty`, the ranking score.
    pub score: f32,
}

impl Hypothesis {
    fn new(tokens: Vec<u32>, cum_logprob: f32, length_penalty: f32) -> Self {
        let len = (tokens.len().max(1) as f32).powf(length_penalty);
        Hypothesis { tokens, cum_logprob, score: cum_logprob / len }
    }
}

/// Settings shared by every search strategy.
pub struct SearchSettings<'a> {
    pub rules: &'a LogitRules,
    /// Most tokens generated in the window.
    pub max_len: usize,
    pub length_penalty: f32,
}

/// Masked log-probabilities for a row that has produced `generated`.
fn scores(rules: &LogitRules, generated: &[u32], mut logits: Vec<f32>) -> Vec<f32> {
    rules.apply(generated, &mut logits);
    log_softmax(&mut logits);
    logits
}

fn argmax(values: &[f32]) -> (u32, f32) {
    let mut best = (0u32, f32::NEG_INFINITY);
    for (i, &v) in values.iter().enumerate() {
        if v > best.1 {
            best = (i as u32, v);
        }
    }
    best
}

/// Greedy search from `start`, the last token of the prompt.
pub fn greedy(model: &mut dyn StepModel, start: u32, s: &SearchSettings) -> Hypothesis {
    greedy_rows(model, start, 1, s).swap_remove(0)
}

/// Greedy search on `rows` independent rows at once (one window each), all starting from
/// `start`. A row that produced end-of-text leaves the batch, so later steps only run the
/// rows still decoding. Returns one hypothesis per row, in row order.
pub fn greedy_rows(model: &mut dyn StepModel, start: u32, rows: usize, s: &SearchSettings) -> Vec<Hypothesis> {
    let eot = s.rules.specials.eot;
    let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); rows];
    let mut cum = vec![0.0f32; rows];
    let mut live: Vec<usize> = (0..rows).collect();
    let mut inputs = vec![start; rows];
    for _ in 0..s.max_len {
        preempt::point();
        let logits = model.step(&inputs);
        // Each row is a few passes over the vocabulary: scored in parallel.
        let picks: Vec<(u32, f32)> = logits.into_par_iter().zip(&live).map(|(l, &r)| argmax(&scores(s.rules, &tokens[r], l))).collect();
        let mut keep = Vec::with_capacity(live.len());
        for (slot, (best, logprob)) in picks.into_iter().enumerate() {
            let r = live[slot];
            cum[r] += logprob;
            if best != eot {
                tokens[r].push(best);
                keep.push(slot);
            }
        }
        if keep.is_empty() {
            break;
        }
        if keep.len() != live.len() {
            model.select_rows(&keep);
        }
        live = keep.iter().map(|&slot| live[slot]).collect();
        inputs = live.iter().map(|&r| *tokens[r].last().expect("a live row has a token")).collect();
    }
    tokens.into_iter().zip(cum).map(|(t, c)| Hypothesis::new(t, c, s.length_penalty)).collect()
}

/// The highest-scoring hypothesis (the first one on ties).
fn best_of(hypotheses: Vec<Hypothesis>, length_penalty: f32) -> Hypothesis {
    hypotheses
        .into_iter()
        .reduce(|best, h| if h.score > best.score { h } else { best })
        .unwrap_or_else(|| Hypothesis::new(Vec::new(), f32::NEG_INFINITY, length_penalty))
}

/// A candidate continuation in beam search.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    row: usize,
    id: u32,
    score: f32,
}

/// Row `row`'s `k` best ids by score, best first (the first id on ties).
fn row_top_k(row: usize, values: &[f32], k: usize) -> Vec<Candidate> {
    merge_top_k(std::iter::once(values.iter().enumerate().map(|(id, &score)| Candidate { row, id: id as u32, score })), k)
}

/// The `k` best of candidate lists taken in order: a later candidate goes after an equal one.
fn merge_top_k<L: IntoIterator<Item = Candidate>>(lists: impl IntoIterator<Item = L>, k: usize) -> Vec<Candidate> {
    let mut best: Vec<Candidate> = Vec::with_capacity(k + 1);
    for candidate in lists.into_iter().flatten() {
        if best.len() == k && candidate.score <= best[k - 1].score {
            continue;
        }
        let at = best.partition_point(|c| c.score >= candidate.score);
        best.insert(at, candidate);
        best.truncate(k);
    }
    best
}

/// The `k` best continuations of the live hypotheses (scored rows, each with its cumulative
/// log-probability added). Each row is a few passes over the vocabulary, so rows run in
/// parallel; the per-row best are then merged in row order, which ranks as one pass over all
/// rows would (ties to the earlier row, then the lower id).
fn best_continuations(rules: &LogitRules, alive: &[(Vec<u32>, f32)], logits: Vec<Vec<f32>>, k: usize) -> Vec<Candidate> {
    let per_row: Vec<Vec<Candidate>> = logits
        .into_par_iter()
        .zip(alive)
        .enumerate()
        .map(|(row, (l, (tokens, cum)))| {
            let mut values = scores(rules, tokens, l);
            values.iter_mut().for_each(|x| *x += cum);
            row_top_k(row, &values, k)
        })
        .collect();
    merge_top_k(per_row, k)
}

/// Beam search as CTranslate2 runs it: 2 x beam candidates per step, finished hypotheses
/// replaced by the next unfinished candidates, stop after `round(beam * patience)` finished.
pub fn beam(model: &mut dyn StepModel, start: u32, beam_size: usize, patience: f32, s: &SearchSettings) -> Hypothesis {
    let eot = s.rules.specials.eot;
    let candidates_per_step = 2 * beam_size;
    let enough = ((beam_size as f32 * patience).round() as usize).max(1);
    // The first step runs on one row; the beam is expanded afterwards.
    let mut alive: Vec<(Vec<u32>, f32)> = vec![(Vec::new(), 0.0)];
    let mut inputs = vec![start];
    let mut finished: Vec<Hypothesis> = Vec::new();
    for step in 0..s.max_len {
        preempt::point();
        let logits = model.step(&inputs);
        let candidates = best_continuations(s.rules, &alive, logits, candidates_per_step);
        let last_step = step + 1 == s.max_len;
        let mut next = Vec::with_capacity(beam_size);
        let mut spare = beam_size;
        for k in 0..beam_size.min(candidates.len()) {
            let c = candidates[k];
            let mut chosen = k;
            if c.id == eot || last_step {
                let mut tokens = alive[c.row].0.clone();
                if c.id != eot {
                    tokens.push(c.id);
                }
                finished.push(Hypothesis::new(tokens, c.score, s.length_penalty));
                if let Some(j) = (spare..candidates.len()).find(|&j| candidates[j].id != eot) {
                    chosen = j;
                    spare = j + 1;
                }
            }
            next.push(candidates[chosen]);
        }
        if last_step || finished.len() >= enough || next.is_empty() {
            break;
        }
        alive = next
            .iter()
            .map(|c| {
                let mut tokens = alive[c.row].0.clone();
                tokens.push(c.id);
                (tokens, c.score)
            })
            .collect();
        model.select_rows(&next.iter().map(|c| c.row).collect::<Vec<_>>());
        inputs = next.iter().map(|c| c.id).collect();
    }
    best_of(finished, s.length_penalty)
}

/// A small deterministic generator (SplitMix64) for temperature sampling.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / (1u64 << 32) as f64 / (1u64 << 32) as f64
    }

    /// Draws an index with probability proportional to `exp(log_probs / temperature)`.
    fn sample(&mut self, log_probs: &[f32], temperature: f32) -> u32 {
        let max = log_probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f64> = log_probs.iter().map(|&x| (((x - max) / temperature) as f64).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut target = self.next_f64() * total;
        for (i, w) in weights.iter().enumerate() {
            target -= w;
            if target < 0.0 && *w > 0.0 {
                return i as u32;
            }
        }
        argmax(log_probs).0
    }
}

/// `candidates` independent samples at `temperature`; the best by score is returned.
pub fn sample(model: &mut dyn StepModel, start: u32, candidates: usize, temperature: f32, rng: &mut Rng, s: &SearchSettings) -> Hypothesis {
    let eot = s.rules.specials.eot;
    model.select_rows(&vec![0; candidates]);
    let mut rows: Vec<(Vec<u32>, f32)> = vec![(Vec::new(), 0.0); candidates];
    let mut live: Vec<usize> = (0..candidates).collect();
    let mut inputs = vec![start; candidates];
    let mut done: Vec<Hypothesis> = Vec::new();
    for _ in 0..s.max_len {
        preempt::point();
        let logits = model.step(&inputs);
        let mut keep = Vec::new();
        for (slot, l) in logits.into_iter().enumerate() {
            let r = live[slot];
            let log_probs = scores(s.rules, &rows[r].0, l);
            let id = rng.sample(&log_probs, temperature);
            rows[r].1 += log_probs[id as usize];
            if id == eot {
                done.push(Hypothesis::new(rows[r].0.clone(), rows[r].1, s.length_penalty));
            } else {
                rows[r].0.push(id);
                keep.push(slot);
            }
        }
        if keep.is_empty() {
            break;
        }
        if keep.len() != live.len() {
            model.select_rows(&keep);
        }
        live = keep.iter().map(|&slot| live[slot]).collect();
        inputs = live.iter().map(|&r| *rows[r].0.last().unwrap()).collect();
    }
    // Rows that hit the length cap end without end-of-text.
    for r in live {
        done.push(Hypothesis::new(rows[r].0.clone(), rows[r].1, s.length_penalty));
    }
    best_of(done, s.length_penalty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whisper::tokenizer::SpecialTokens;

    /// A Markov chain over a 20-token vocabulary: the next-token distribution depends on the
    /// last token only. Rows are tracked so that beam reordering is checked too.
    struct Chain {
        rows: Vec<Vec<u32>>,
    }

    const EOT: u32 = 10;

    fn next(last: u32) -> Vec<(u32, f32)> {
        match last {
            11 => vec![(1, 0.55), (2, 0.45)],
            1 => vec![(3, 0.5), (4, 0.5)],
            2..=4 => vec![(EOT, 1.0)],
            _ => vec![(EOT, 1.0)],
        }
    }

    impl StepModel for Chain {
        fn step(&mut self, tokens: &[u32]) -> Vec<Vec<f32>> {
            assert_eq!(tokens.len(), self.rows.len(), "one token per live row");
            tokens
                .iter()
                .zip(&mut self.rows)
                .map(|(&t, history)| {
                    history.push(t);
                    let mut logits = vec![-1e9f32; 20];
                    for (id, p) in next(t) {
                        logits[id as usize] = p.ln();
                    }
                    logits
                })
                .collect()
        }

        fn select_rows(&mut self, rows: &[usize]) {
            self.rows = rows.iter().map(|&r| self.rows[r].clone()).collect();
        }
    }

    fn rules() -> LogitRules {
        LogitRules {
            suppress: vec![],
            suppress_at_start: vec![],
            specials: SpecialTokens::for_tests(19),
            timestamps: false,
            max_initial_timestamp: None,
        }
    }

    #[test]
    fn greedy_takes_the_locally_best_token() {
        let rules = rules();
        let s = SearchSettings { rules: &rules, max_len: 10, length_penalty: 0.0 };
        let h = greedy(&mut Chain { rows: vec![vec![]] }, 11, &s);
        assert_eq!(h.tokens, vec![1, 3]);
        assert!((h.cum_logprob - (0.55f32 * 0.5).ln()).abs() < 1e-5);
    }

    #[test]
    fn beam_finds_the_more_probable_sequence() {
        let rules = rules();
        let s = SearchSettings { rules: &rules, max_len: 10, length_penalty: 0.0 };
        let h = beam(&mut Chain { rows: vec![vec![]] }, 11, 2, 1.0, &s);
        assert_eq!(h.tokens, vec![2]);
        assert!((h.score - 0.45f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn length_cap_ends_without_end_of_text() {
        let rules = rules();
        let s = SearchSettings { rules: &rules, max_len: 1, length_penalty: 1.0 };
        let h = beam(&mut Chain { rows: vec![vec![]] }, 11, 2, 1.0, &s);
        assert_eq!(h.tokens, vec![1]);
        let g = greedy(&mut Chain { rows: vec![vec![]] }, 11, &s);
        assert_eq!(g.tokens, vec![1]);
    }

    /// Row r (a window) says token r + 1, `lengths[r]` times, then end-of-text. Rows are
    /// tracked through `select_rows`, so dropping finished rows must keep the others' identity.
    struct Countdown {
        live: Vec<(u32, usize)>,
        steps: Vec<usize>,
    }

    impl StepModel for Countdown {
        fn step(&mut self, tokens: &[u32]) -> Vec<Vec<f32>> {
            assert_eq!(tokens.len(), self.live.len(), "one token per live row");
            self.steps.push(tokens.len());
            self.live
                .iter_mut()
                .map(|(id, left)| {
                    let mut logits = vec![0.0f32; 20];
                    logits[if *left == 0 { EOT as usize } else { *id as usize }] = 5.0;
                    *left = left.saturating_sub(1);
                    logits
                })
                .collect()
        }

        fn select_rows(&mut self, rows: &[usize]) {
            self.live = rows.iter().map(|&r| self.live[r]).collect();
        }
    }

    #[test]
    fn greedy_rows_keep_each_row_its_own_and_drop_finished_rows() {
        let rules = rules();
        let s = SearchSettings { rules: &rules, max_len: 10, length_penalty: 1.0 };
        let lengths = [3usize, 0, 5, 1];
        let mut model = Countdown { live: lengths.iter().enumerate().map(|(r, &n)| (r as u32 + 1, n)).collect(), steps: vec![] };
        let all = greedy_rows(&mut model, 11, lengths.len(), &s);
        let tokens: Vec<Vec<u32>> = all.iter().map(|h| h.tokens.clone()).collect();
        assert_eq!(tokens, vec![vec![1; 3], vec![], vec![3; 5], vec![4; 1]]);
        // 4 rows, then rows leave as they finish: 3 after step 1, 2 after step 2, 1 after step 4.
        assert_eq!(model.steps, vec![4, 3, 2, 2, 1, 1]);
    }

    #[test]
    fn sampling_is_reproducible_with_a_seed_and_draws_valid_tokens() {
        let rules = rules();
        let s = SearchSettings { rules: &rules, max_len: 10, length_penalty: 1.0 };
        let a = sample(&mut Chain { rows: vec![vec![]] }, 11, 4, 1.0, &mut Rng::new(7), &s);
        let b = sample(&mut Chain { rows: vec![vec![]] }, 11, 4, 1.0, &mut Rng::new(7), &s);
        assert_eq!(a, b);
        assert!(matches!(a.tokens.as_slice(), [2] | [1, 3] | [1, 4]), "{:?}", a.tokens);
    }

    #[test]
    fn per_row_best_merge_into_the_overall_best_ties_to_the_earlier_row_then_id() {
        let rows = [vec![0.1, 0.9, 0.3, 0.9], vec![0.8, 0.9, 0.95]];
        let best = |k| {
            let per_row = rows.iter().enumerate().map(|(row, values)| row_top_k(row, values, k));
            merge_top_k(per_row, k).iter().map(|c| (c.row, c.id)).collect::<Vec<_>>()
        };
        assert_eq!(best(3), vec![(1, 2), (0, 1), (0, 3)]);
        assert_eq!(best(5), vec![(1, 2), (0, 1), (0, 3), (1, 1), (1, 0)]);
    }
}
