//! Batched long-form transcription, in the spirit of faster-whisper's `BatchedInferencePipeline`:
//! the recording is cut into independent windows at quiet points, and `batch_size` windows are
//! encoded in one pass and decoded greedily side by side (a decoder row each). Windows do not
//! see each other's text, so results differ from the sequential mode (which faster-whisper's
//! `transcribe` matches token for token); in exchange the work is in large batches, which is
//! what a GPU needs and what shares the decoder's weight reads on a CPU.

use std::collections::VecDeque;
use std::ops::Range;

use super::backend::WhisperBackend;
use super::decoding::search::Rng;
use super::mel::{LogMel, FRAME_SECONDS, WINDOW_FRAMES};
use super::transcriber::{is_silence, Transcriber, WindowResult};
use super::DecodeOptions;
use crate::transcript::Segment;

/// A window is cut no earlier than this many frames (20 s) after its start, so windows stay long.
const MIN_WINDOW_FRAMES: usize = WINDOW_FRAMES * 2 / 3;
/// Loudness is compared over 0.1 s, so a cut lands in a pause rather than between two syllables.
const QUIET_SPAN_FRAMES: usize = 10;

/// Splits the frames the model may see into windows of at most 30 s. Each cut is at the centre
/// of the quietest 0.1 s between 20 s and 30 s after the previous cut.
pub fn quiet_windows(mel: &LogMel) -> Vec<Range<usize>> {
    let total = mel.content_frames();
    // Prefix sums of per-frame loudness: the frame's loudest band. (A sum over bands ranks
    // band-limited speech, whose high bands are empty, below a flat noise floor.)
    let mut loudness = vec![0.0f64; total + 1];
    for f in 0..total {
        let frame = (0..mel.n_mels).map(|m| mel.data[m * mel.frames + f]).fold(f32::NEG_INFINITY, f32::max);
        loudness[f + 1] = loudness[f] + f64::from(frame);
    }
    let span = |from: usize| loudness[from + QUIET_SPAN_FRAMES] - loudness[from];
    let mut windows = Vec::new();
    let mut start = 0;
    while total - start > WINDOW_FRAMES {
        let quietest = (start + MIN_WINDOW_FRAMES..=start + WINDOW_FRAMES - QUIET_SPAN_FRAMES)
            .min_by(|&a, &b| span(a).total_cmp(&span(b)))
            .expect("the search range is not empty");
        let cut = quietest + QUIET_SPAN_FRAMES / 2;
        windows.push(start..cut);
        start = cut;
    }
    if start < total {
        windows.push(start..total);
    }
    windows
}

impl<B: WhisperBackend> Transcriber<B> {
    /// Transcribes independent windows, `options.batch_size` at a time, each prompted with
    /// `prompt`. As in the sequential mode, a window's text ends at its last complete
    /// segment; the rest of the window (the model often stops early) goes back in the queue
    /// as a shorter window of a later batch. A window whose greedy result fails the
    /// thresholds is decoded again alone at the next temperatures.
    pub(super) fn transcribe_batched(&self, mel: &LogMel, prompt: &[u32], options: &DecodeOptions, rng: &mut Rng) -> Vec<Segment> {
        let rules = self.rules(options);
        let settings = self.settings(&rules, prompt, options);
        // Beam search and sampling keep one window per search; the encoder still batches.
        let together = options.beam_size == 1 && options.temperatures[0] == 0.0;
        let mut segments = Vec::new();
        let mut pending: VecDeque<Range<usize>> = quiet_windows(mel).into();
        while !pending.is_empty() {
            let group: Vec<Range<usize>> = pending.drain(..options.batch_size.min(pending.len())).collect();
            let mut frames: Vec<f32> = group.iter().flat_map(|w| mel.window(w.start, w.len())).collect();
            if B::FIXED_SHAPES {
                // Every batch as large as the first: the last window again, its results unread.
                let window = frames.len() / group.len();
                for _ in group.len()..options.batch_size {
                    frames.extend_from_within(frames.len() - window..);
                }
            }
            let encoded = self.encode_windows(frames);
            let mut first: Vec<Option<WindowResult>> = if together {
                let temperature = options.temperatures[0];
                self.decode_windows(encoded.clone(), prompt, temperature, options, &settings, rng).into_iter().map(Some).collect()
            } else {
                group.iter().map(|_| None).collect()
            };
            for (i, window) in group.iter().enumerate() {
                let one = encoded.clone().narrow(0, i, 1);
                let result = self.decode_with_fallback(one, prompt, options, rng, first[i].take());
                if is_silence(&result, options) {
                    continue;
                }
                let (pieces, next) = self.split_by_timestamps(&result.hypothesis.tokens, window.start, window.len());
                // The model may name a time in the padding; the next window starts there.
                let limit = window.len() as f64 * FRAME_SECONDS;
                let pieces = pieces.into_iter().map(|(start, end, piece)| (start.min(limit), end.min(limit), piece)).collect();
                self.push_segments(&mut segments, pieces, window.start, &result);
                if next > window.start && next < window.end {
                    pending.push_back(next..window.end);
                }
            }
        }
        // Rests of windows were decoded after later windows: put segments in time order.
        segments.sort_by(|a, b| a.start.total_cmp(&b.start));
        for (i, segment) in segments.iter_mut().enumerate() {
            segment.id = i + 1;
        }
        segments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spectrogram of `frames` loud frames (0.5) with quiet stretches (-1.0) at `quiet`.
    fn mel_with_pauses(frames: usize, quiet: &[Range<usize>]) -> LogMel {
        let n_mels = 4;
        let mut data = vec![0.5f32; n_mels * frames];
        for m in 0..n_mels {
            for r in quiet {
                for f in r.clone() {
                    data[m * frames + f] = -1.0;
                }
            }
        }
        LogMel { n_mels, frames, data }
    }

    fn assert_tiles(windows: &[Range<usize>], total: usize) {
        assert_eq!(windows.first().map(|w| w.start), Some(0));
        assert_eq!(windows.last().map(|w| w.end), Some(total));
        for pair in windows.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "{windows:?}");
        }
        for w in windows {
            assert!(!w.is_empty() && w.len() <= WINDOW_FRAMES, "{windows:?}");
        }
    }

    #[test]
    fn short_audio_is_one_window() {
        let mel = mel_with_pauses(1201, &[]);
        assert_eq!(quiet_windows(&mel), vec![0..1200]);
    }

    #[test]
    fn cuts_land_in_pauses() {
        // 95 s with pauses at 24.0-24.3 s and 51.0-51.3 s, and a late one at 80.0-80.3 s.
        let mel = mel_with_pauses(9501, &[2400..2430, 5100..5130, 8000..8030]);
        let windows = quiet_windows(&mel);
        assert_tiles(&windows, 9500);
        let cuts: Vec<usize> = windows.iter().skip(1).map(|w| w.start).collect();
        assert_eq!(cuts.len(), 3, "{windows:?}");
        for (cut, pause) in cuts.iter().zip([2400..2430, 5100..5130, 8000..8030]) {
            assert!(pause.contains(cut), "cut {cut} outside pause {pause:?}: {windows:?}");
        }
    }

    #[test]
    fn a_pause_with_a_noise_floor_beats_band_limited_speech() {
        // Speech: loud low bands, empty high bands. Pause at 25.0-25.5 s: every band at a
        // low noise floor, which sums higher than the speech's empty bands.
        let (n_mels, frames) = (8, 4001);
        let mut data = vec![0.0f32; n_mels * frames];
        for m in 0..n_mels {
            for f in 0..frames {
                let pause = (2500..2550).contains(&f);
                data[m * frames + f] = match (pause, m < 2) {
                    (true, _) => -0.4,
                    (false, true) => 0.9,
                    (false, false) => -1.0,
                };
            }
        }
        let windows = quiet_windows(&LogMel { n_mels, frames, data });
        assert!((2500..2550).contains(&windows[1].start), "{windows:?}");
    }

    #[test]
    fn without_pauses_windows_still_tile_the_audio() {
        let mel = mel_with_pauses(12_345, &[]);
        let windows = quiet_windows(&mel);
        assert_tiles(&windows, 12_344);
        assert!(windows.iter().rev().skip(1).all(|w| w.len() >= MIN_WINDOW_FRAMES), "{windows:?}");
    }

    #[test]
    fn a_window_of_exactly_thirty_seconds_is_not_cut() {
        let mel = mel_with_pauses(WINDOW_FRAMES + 1, std::slice::from_ref(&(100..200)));
        assert_eq!(quiet_windows(&mel), vec![0..WINDOW_FRAMES]);
    }
}
