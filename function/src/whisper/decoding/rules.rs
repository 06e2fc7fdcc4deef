//! Logit rules applied before every decoding step, in CTranslate2's order: suppressed ids,
//! ids suppressed at the first step, then Whisper's timestamp rules. Masked ids get -inf.

use crate::whisper::simd;
use crate::whisper::tokenizer::SpecialTokens;

#[derive(Debug, Clone)]
pub struct LogitRules {
    /// Never generated (non-speech symbols and control tokens).
    pub suppress: Vec<u32>,
    /// Not generated at the first step (a blank " " and end of text).
    pub suppress_at_start: Vec<u32>,
    pub specials: SpecialTokens,
    /// Timestamp mode: pairs of timestamp tokens around each segment.
    pub timestamps: bool,
    /// The largest timestamp allowed first (`<|1.00|>` by default).
    pub max_initial_timestamp: Option<u32>,
}

fn mask(logits: &mut [f32], ids: impl IntoIterator<Item = u32>) {
    for id in ids {
        if let Some(x) = logits.get_mut(id as usize) {
            *x = f32::NEG_INFINITY;
        }
    }
}

/// `log_softmax` in place: f32 values, f64 accumulation.
pub fn log_softmax(logits: &mut [f32]) {
    let log_sum = log_sum_exp(logits);
    for x in logits.iter_mut() {
        *x -= log_sum;
    }
}

fn log_sum_exp(values: &[f32]) -> f32 {
    let max = simd::max(values);
    if max == f32::NEG_INFINITY {
        return max;
    }
    max + simd::sum_exp(values, max).ln() as f32
}

impl LogitRules {
    /// Masks in `logits` the ids that may not follow `generated` (the tokens produced so far in
    /// this window, prompt excluded) at decoding step `generated.len()`.
    pub fn apply(&self, generated: &[u32], logits: &mut [f32]) {
        let step = generated.len();
        mask(logits, self.suppress.iter().copied());
        if step == 0 {
            mask(logits, self.suppress_at_start.iter().copied());
        }
        if self.timestamps {
            self.apply_timestamp_rules(generated, logits);
        }
    }

    fn apply_timestamp_rules(&self, generated: &[u32], logits: &mut [f32]) {
        let s = &self.specials;
        let (begin, end) = (s.timestamp_begin, s.timestamp_end);
        let is_ts = |id: u32| id >= begin;
        mask(logits, [s.no_timestamps]);
        let mut check_timestamp_mass = false;
        match generated {
            [] => {
                // The first token is a timestamp, no later than the initial limit.
                mask(logits, 0..begin);
                if let Some(max) = self.max_initial_timestamp {
                    mask(logits, max + 1..=end);
                }
            }
            [.., last] if is_ts(*last) => {
                let penultimate = if generated.len() >= 2 { generated[generated.len() - 2] } else { *last };
                if is_ts(penultimate) {
                    // A pair just closed: text (or end of text) must follow.
                    mask(logits, begin..=end);
                } else {
                    // A segment just ended: only end of text or a timestamp >= the last.
                    mask(logits, 0..s.eot);
                    mask(logits, begin..*last);
                    check_timestamp_mass = true;
                }
            }
            _ => {
                check_timestamp_mass = true;
                // Timestamps never go back: forbid those up to the latest one.
                if let Some(&latest) = generated.iter().rev().find(|&&id| is_ts(id)) {
                    mask(logits, begin..=latest);
                }
            }
        }
        if check_timestamp_mass {
            // Compared as log-probabilities (`x - log_sum`), as CTranslate2 does, but only the
            // timestamps' are formed: rounding is monotonic, so the text's maximum is its
            // largest logit shifted, to the bit.
            let log_sum = log_sum_exp(logits);
            let (text, stamps) = logits.split_at(begin as usize);
            let stamps: Vec<f32> = stamps.iter().map(|&x| x - log_sum).collect();
            // When timestamps together outweigh every single other token, emit a timestamp.
            if log_sum_exp(&stamps) > simd::max(text) - log_sum {
                mask(logits, 0..begin);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> LogitRules {
        LogitRules {
            suppress: vec![3],
            suppress_at_start: vec![4, 10],
            specials: SpecialTokens::for_tests(29),
            timestamps: true,
            max_initial_timestamp: Some(19),
        }
    }

    fn allowed(generated: &[u32], logits: &[f32]) -> Vec<u32> {
        let mut l = logits.to_vec();
        rules().apply(generated, &mut l);
        (0..l.len() as u32).filter(|&i| l[i as usize].is_finite()).collect()
    }

    #[test]
    fn first_step_allows_only_early_timestamps() {
        assert_eq!(allowed(&[], &[0.0; 30]), vec![17, 18, 19]);
    }

    #[test]
    fn after_a_timestamp_pair_text_must_follow() {
        let got = allowed(&[17, 5, 20, 20], &[0.0; 30]);
        assert!(got.iter().all(|&id| id < 17) && got.contains(&10) && !got.contains(&3));
    }

    #[test]
    fn after_text_then_timestamp_only_eot_or_later_timestamps() {
        // Strong timestamp logits: eot and timestamps >= 20 remain, nothing else.
        let mut logits = [0.0; 30];
        logits[20..].iter_mut().for_each(|x| *x = 5.0);
        let got = allowed(&[17, 5, 20], &logits);
        assert_eq!(got, (20..30).collect::<Vec<_>>());
    }

    #[test]
    fn timestamps_never_decrease_after_text() {
        let mut logits = [0.0; 30];
        logits[5] = 50.0; // text dominates, so text stays allowed
        let got = allowed(&[17, 5, 22, 23, 6], &logits);
        assert!(!got.contains(&23) && got.contains(&24) && got.contains(&5));
    }

    #[test]
    fn log_softmax_normalises() {
        let mut x = [1.0f32, 2.0, 3.0, f32::NEG_INFINITY];
        log_softmax(&mut x);
        let total: f32 = x.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
