//! Speech timestamps from frame probabilities, and the mapping between the original audio and
//! the speech cut out of it: faster-whisper 1.2.1's `get_speech_timestamps`, `collect_chunks`
//! and `SpeechTimestampsMap`, step for step (its float and integer arithmetic included, so
//! boundaries come out sample-exact).

use super::model::FRAME_SAMPLES;
use crate::audio::SAMPLE_RATE;
use crate::error::{Error, Result};

/// faster-whisper's `VadOptions`, with its defaults; as JSON (`vad_parameters`), any subset of
/// its fields, the rest defaulted.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VadOptions {
    /// Frames with a probability at or above this are speech.
    pub threshold: f64,
    /// Below this a frame is silence for ending speech (default `max(threshold - 0.15, 0.01)`).
    pub neg_threshold: Option<f64>,
    /// Speech shorter than this is dropped.
    pub min_speech_duration_ms: u32,
    /// Longer speech is split (at a silence of over 98 ms if there is one).
    pub max_speech_duration_s: f64,
    /// Silence this long ends speech.
    pub min_silence_duration_ms: u32,
    /// Padding added to each side of speech.
    pub speech_pad_ms: u32,
}

impl Default for VadOptions {
    fn default() -> Self {
        VadOptions {
            threshold: 0.5,
            neg_threshold: None,
            min_speech_duration_ms: 0,
            max_speech_duration_s: f64::INFINITY,
            min_silence_duration_ms: 2000,
            speech_pad_ms: 400,
        }
    }
}

impl std::str::FromStr for VadOptions {
    type Err = Error;
    /// `{"threshold": 0.6, "min_silence_duration_ms": 500}`: faster-whisper's field names.
    fn from_str(text: &str) -> Result<Self> {
        let invalid = |reason: String| {
            Error::InvalidArgument {
            field: "vad_parameters",
            reason: format!("{reason} (a JSON object of threshold, neg_threshold, min_speech_duration_ms, max_speech_duration_s, min_silence_duration_ms, speech_pad_ms)"),
        }
        };
        // An object only: serde would also read a list as the fields in order.
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if !value.is_object() {
            return Err(invalid(format!("{} is not an object", crate::error::quote(text))));
        }
        let options: VadOptions = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        options.validate()?;
        Ok(options)
    }
}

impl VadOptions {
    /// Options as the batched pipeline uses them: speech at most `chunk_seconds` long, with
    /// faster-whisper's `BatchedInferencePipeline` defaults for the rest.
    pub fn for_batches(chunk_seconds: f64) -> Self {
        VadOptions { max_speech_duration_s: chunk_seconds, min_silence_duration_ms: 160, ..VadOptions::default() }
    }

    /// Rejects values faster-whisper would compute nonsense with.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidArgument { field: "vad_parameters", reason });
        if !(0.0..=1.0).contains(&self.threshold) {
            return invalid(format!("threshold {} is not within 0..1", self.threshold));
        }
        if let Some(neg) = self.neg_threshold {
            if !(0.0..=1.0).contains(&neg) {
                return invalid(format!("neg_threshold {neg} is not within 0..1"));
            }
        }
        if self.max_speech_duration_s.is_nan() || self.max_speech_duration_s <= 0.0 {
            return invalid(format!("max_speech_duration_s {} is not a positive number", self.max_speech_duration_s));
        }
        Ok(())
    }
}

/// Speech from sample `start` to `end` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpeechChunk {
    pub start: usize,
    pub end: usize,
}

/// Speech in `samples_len` samples whose frames have `probabilities` (one per 512 samples).
pub fn speech_timestamps(probabilities: &[f32], samples_len: usize, options: &VadOptions) -> Vec<SpeechChunk> {
    let rate = f64::from(SAMPLE_RATE);
    let window = FRAME_SAMPLES as i64;
    // numpy compares float32 probabilities with the thresholds cast to float32.
    let threshold = options.threshold as f32;
    let neg_threshold = options.neg_threshold.unwrap_or((options.threshold - 0.15).max(0.01)) as f32;
    let min_speech_samples = rate * f64::from(options.min_speech_duration_ms) / 1000.0;
    let speech_pad_samples = rate * f64::from(options.speech_pad_ms) / 1000.0;
    let max_speech_samples = rate * options.max_speech_duration_s - window as f64 - 2.0 * speech_pad_samples;
    let min_silence_samples = rate * f64::from(options.min_silence_duration_ms) / 1000.0;
    let min_silence_samples_at_max_speech = rate * 98.0 / 1000.0;
    let audio_len = samples_len as i64;

    let mut triggered = false;
    let mut speeches: Vec<(i64, i64)> = Vec::new();
    // The start of the speech being read, if any (faster-whisper's `current_speech` dict).
    let mut current: Option<i64> = None;
    // A possible end, silence being tolerated after it; 0 means none (as in Python).
    let mut temp_end: i64 = 0;
    // Where to split speech that grows too long: the last silence's start, and the speech after.
    let (mut prev_end, mut next_start): (i64, i64) = (0, 0);

    for (i, &probability) in probabilities.iter().enumerate() {
        let position = window * i as i64;
        if probability >= threshold && temp_end != 0 {
            temp_end = 0;
            if next_start < prev_end {
                next_start = position;
            }
        }
        if probability >= threshold && !triggered {
            triggered = true;
            current = Some(position);
            continue;
        }
        if triggered && (position - current.unwrap_or(0)) as f64 > max_speech_samples {
            if prev_end != 0 {
                speeches.push((current.unwrap_or(0), prev_end));
                current = None;
                if next_start < prev_end {
                    // Silence since the split point, and no speech yet.
                    triggered = false;
                } else {
                    current = Some(next_start);
                }
                (prev_end, next_start, temp_end) = (0, 0, 0);
            } else {
                speeches.push((current.unwrap_or(0), position));
                current = None;
                (prev_end, next_start, temp_end) = (0, 0, 0);
                triggered = false;
                continue;
            }
        }
        if probability < neg_threshold && triggered {
            if temp_end == 0 {
                temp_end = position;
            }
            if (position - temp_end) as f64 > min_silence_samples_at_max_speech {
                prev_end = temp_end;
            }
            if ((position - temp_end) as f64) < min_silence_samples {
                continue;
            }
            let start = current.take().unwrap_or(0);
            if (temp_end - start) as f64 > min_speech_samples {
                speeches.push((start, temp_end));
            }
            (prev_end, next_start, temp_end) = (0, 0, 0);
            triggered = false;
        }
    }
    if let Some(start) = current {
        if (audio_len - start) as f64 > min_speech_samples {
            speeches.push((start, audio_len));
        }
    }

    // Padding: each side by speech_pad_ms, or half the silence between two speeches when it is
    // shorter than two paddings. Python's `int()` truncates, its `//` floors.
    let count = speeches.len();
    for i in 0..count {
        if i == 0 {
            speeches[0].0 = (speeches[0].0 as f64 - speech_pad_samples).max(0.0) as i64;
        }
        if i + 1 < count {
            let silence = speeches[i + 1].0 - speeches[i].1;
            if (silence as f64) < 2.0 * speech_pad_samples {
                let half = silence.div_euclid(2);
                speeches[i].1 += half;
                speeches[i + 1].0 = (speeches[i + 1].0 - half).max(0);
            } else {
                speeches[i].1 = (speeches[i].1 as f64 + speech_pad_samples).min(audio_len as f64) as i64;
                speeches[i + 1].0 = (speeches[i + 1].0 as f64 - speech_pad_samples).max(0.0) as i64;
            }
        } else {
            speeches[i].1 = (speeches[i].1 as f64 + speech_pad_samples).min(audio_len as f64) as i64;
        }
    }
    speeches.into_iter().map(|(start, end)| SpeechChunk { start: start.max(0) as usize, end: end.max(0) as usize }).collect()
}

/// Speech cut out of its audio and joined, with the chunks it holds.
pub struct Piece {
    pub samples: Vec<f32>,
    pub chunks: Vec<SpeechChunk>,
}

/// faster-whisper's `collect_chunks`: speech joined into pieces of at most `max_samples` samples
/// (a longer chunk is a piece of its own); always at least one piece, empty without speech.
pub fn collect_chunks(samples: &[f32], chunks: &[SpeechChunk], max_samples: usize) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut current = Piece { samples: Vec::new(), chunks: Vec::new() };
    for &chunk in chunks {
        let speech = &samples[chunk.start.min(samples.len())..chunk.end.min(samples.len())];
        if current.samples.len() + (chunk.end - chunk.start) > max_samples {
            // faster-whisper leaves the overflowing chunk out of the next piece's chunk list
            // while keeping its audio; mirrored, since timestamps are restored from the list.
            pieces.push(std::mem::replace(&mut current, Piece { samples: speech.to_vec(), chunks: Vec::new() }));
        } else {
            current.chunks.push(chunk);
            current.samples.extend_from_slice(speech);
        }
    }
    pieces.push(current);
    pieces
}

/// Maps times in speech that was cut out and joined back to times in the original audio.
pub struct TimestampMap {
    /// Per chunk: its end in the joined audio (samples), and the silence before it (seconds).
    chunk_end_sample: Vec<i64>,
    silence_before: Vec<f64>,
}

impl TimestampMap {
    pub fn new(chunks: &[SpeechChunk]) -> Self {
        let (mut previous_end, mut silent) = (0i64, 0i64);
        let mut map = TimestampMap { chunk_end_sample: Vec::new(), silence_before: Vec::new() };
        for chunk in chunks {
            silent += chunk.start as i64 - previous_end;
            previous_end = chunk.end as i64;
            map.chunk_end_sample.push(chunk.end as i64 - silent);
            map.silence_before.push(silent as f64 / f64::from(SAMPLE_RATE));
        }
        map
    }

    /// `time` (seconds in the joined audio) in the original, rounded to 0.01 s as faster-whisper
    /// does; `is_end` maps a time exactly at a chunk's end into that chunk, not the next.
    pub fn original_time(&self, time: f64, is_end: bool) -> f64 {
        if self.chunk_end_sample.is_empty() {
            return time;
        }
        let index = self.chunk_index(time, is_end);
        python_round(self.silence_before[index] + time, 2)
    }

    fn chunk_index(&self, time: f64, is_end: bool) -> usize {
        let sample = (time * f64::from(SAMPLE_RATE)) as i64;
        if is_end {
            if let Some(index) = self.chunk_end_sample.iter().position(|&end| end == sample) {
                return index;
            }
        }
        // bisect_right
        let index = self.chunk_end_sample.partition_point(|&end| end <= sample);
        index.min(self.chunk_end_sample.len() - 1)
    }
}

/// Python's `round(x, digits)`: the exact binary value rounded to `digits` decimals, ties to
/// even (Rust's formatting rounds the same way).
pub fn python_round(x: f64, digits: usize) -> f64 {
    format!("{x:.digits$}").parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(pattern: &[(usize, f32)]) -> Vec<f32> {
        pattern.iter().flat_map(|&(n, p)| std::iter::repeat_n(p, n)).collect()
    }

    #[test]
    fn no_speech_gives_no_chunks() {
        assert!(speech_timestamps(&probs(&[(100, 0.1)]), 100 * 512, &VadOptions::default()).is_empty());
    }

    #[test]
    fn speech_is_padded_and_clipped_to_the_audio() {
        // Silence 1 s (31 frames), speech 1 s, silence 3 s.
        let p = probs(&[(31, 0.0), (31, 0.9), (94, 0.0)]);
        let chunks = speech_timestamps(&p, p.len() * 512, &VadOptions::default());
        assert_eq!(chunks, vec![SpeechChunk { start: 31 * 512 - 6400, end: 62 * 512 + 6400 }]);
    }

    #[test]
    fn a_short_silence_between_speeches_is_split_in_half() {
        let options = VadOptions { min_silence_duration_ms: 100, ..VadOptions::default() };
        // Speech, 10 frames of silence (160 ms > 100 ms ends speech), speech.
        let p = probs(&[(40, 0.9), (10, 0.0), (40, 0.9), (10, 0.0)]);
        let chunks = speech_timestamps(&p, p.len() * 512, &options);
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        // The silence (40·512 .. 50·512) is shorter than two paddings: each side gets half.
        assert_eq!(chunks[0].end, chunks[1].start);
        assert_eq!(chunks[0].end, 45 * 512);
    }

    #[test]
    fn speech_longer_than_the_maximum_is_split() {
        let options = VadOptions { max_speech_duration_s: 5.0, ..VadOptions::default() };
        let p = probs(&[(1000, 0.9)]);
        let chunks = speech_timestamps(&p, p.len() * 512, &options);
        assert!(chunks.len() > 1, "{chunks:?}");
    }

    #[test]
    fn times_map_back_across_removed_silence() {
        let chunks = [SpeechChunk { start: 16_000, end: 32_000 }, SpeechChunk { start: 64_000, end: 80_000 }];
        let map = TimestampMap::new(&chunks);
        assert_eq!(map.original_time(0.5, false), 1.5);
        // 1.0 s is the first chunk's end in the joined audio: the start of the second otherwise.
        assert_eq!(map.original_time(1.0, true), 2.0);
        assert_eq!(map.original_time(1.0, false), 4.0);
        assert_eq!(map.original_time(1.5, false), 4.5);
    }

    #[test]
    fn parameters_parse_from_json_with_defaults() {
        let options: VadOptions = r#"{"threshold": 0.6, "speech_pad_ms": 100}"#.parse().unwrap();
        assert_eq!(options, VadOptions { threshold: 0.6, speech_pad_ms: 100, ..VadOptions::default() });
        for bad in [r#"{"treshold": 0.6}"#, r#"{"threshold": 2}"#, "[1]", r#"{"speech_pad_ms": -1}"#] {
            assert!(matches!(bad.parse::<VadOptions>(), Err(Error::InvalidArgument { field: "vad_parameters", .. })), "{bad}");
        }
    }

    #[test]
    fn rounding_is_pythons() {
        // round(0.125, 2) == 0.12, round(0.375, 2) == 0.38, round(1.005, 2) == 1.0 (1.00499…).
        assert_eq!(python_round(0.125, 2), 0.12);
        assert_eq!(python_round(0.375, 2), 0.38);
        assert_eq!(python_round(1.005, 2), 1.0);
        assert_eq!(python_round(2.675, 2), 2.67);
    }

    #[test]
    fn pieces_hold_at_most_the_maximum() {
        let samples = vec![0.0f32; 100];
        let chunks = [SpeechChunk { start: 0, end: 30 }, SpeechChunk { start: 40, end: 70 }, SpeechChunk { start: 80, end: 100 }];
        let pieces = collect_chunks(&samples, &chunks, 50);
        assert_eq!(pieces.iter().map(|p| p.samples.len()).collect::<Vec<_>>(), vec![30, 50]);
        assert!(collect_chunks(&samples, &[], 50)[0].samples.is_empty());
    }
}
