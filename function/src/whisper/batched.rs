//! The batched mode, as faster-whisper's `BatchedInferencePipeline` (1.2.1) does it: Silero VAD
//! finds speech (pieces of at most 30 s, split at silences of 160 ms), the speech is joined into
//! chunks of at most 30 s, and `batch_size` chunks are encoded in one pass and decoded side by
//! side with no text of other chunks as prompt, at the first temperature only. Each chunk is one
//! segment (no timestamp tokens, faster-whisper's default), its times mapped back to the
//! original audio. A GPU earns its keep on such batches; on a CPU they share the decoder's
//! weight reads.

use super::backend::WhisperBackend;
use super::decoding::search::Rng;
use super::mel::{LogMel, WINDOW_FRAMES};
use super::transcriber::{compression_ratio, Transcriber, WindowResult};
use super::DecodeOptions;
use crate::audio::SAMPLE_RATE;
use crate::error::{Error, Result};
use crate::transcript::{Segment, Transcript};
use crate::vad::{collect_chunks, python_round, SpeechChunk, TimestampMap, VadOptions};

/// A chunk's longest length: one window.
const CHUNK_SECONDS: f64 = 30.0;
const CHUNK_SAMPLES: usize = 30 * SAMPLE_RATE as usize;
/// The log-mel value faster-whisper appends to the chunks' features before detecting the
/// language ("a dummy feature to account for empty audio").
const DETECTION_FILL: f32 = -1.5;

impl<B: WhisperBackend> Transcriber<B> {
    pub(super) fn transcribe_batched(&self, samples: &[f32], options: &DecodeOptions) -> Result<Transcript> {
        // Chunks carry no timestamp tokens: one segment each.
        let options = &DecodeOptions { without_timestamps: true, condition_on_previous_text: false, ..options.clone() };
        let speech = self.batch_speech(samples, options)?;
        let pieces = collect_chunks(samples, &speech, CHUNK_SAMPLES);
        let speech_samples: usize = speech.iter().map(|c| c.end - c.start).sum();
        let mels: Vec<LogMel> = if speech_samples > 0 { pieces.iter().map(|p| self.log_mel(&p.samples)).collect() } else { Vec::new() };
        let start = self.start(&detection_features(&mels, self.model.config.n_mels), options)?;
        // The initial prompt as faster-whisper's batched path encodes it: no leading space.
        let previous = match &start.initial_prompt {
            Some(text) => self.tokenizer.encode(text)?,
            None => Vec::new(),
        };
        let prompt = self.prompt(&previous, &start.sot_sequence, options);
        let mut rng = Rng::new(options.seed);
        let results = self.decode_chunks(&mels, &prompt, options, &mut rng);

        let map = TimestampMap::new(&speech);
        let mut offset = 0usize;
        let mut segments = Vec::with_capacity(results.len());
        for (piece, result) in pieces.iter().zip(results) {
            let (start_s, duration) = (offset as f64 / f64::from(SAMPLE_RATE), piece.samples.len() as f64 / f64::from(SAMPLE_RATE));
            offset += piece.samples.len();
            let text = self.tokenizer.decode(&result.hypothesis.tokens);
            segments.push(Segment {
                id: segments.len() + 1,
                seek: (start_s * 100.0) as usize,
                start: map.original_time(python_round(start_s, 3), false),
                end: map.original_time(python_round(start_s + duration, 3), true),
                compression_ratio: compression_ratio(&text),
                text,
                tokens: result.hypothesis.tokens,
                temperature: result.temperature,
                avg_logprob: result.avg_logprob,
                no_speech_prob: result.no_speech_prob,
            });
        }
        let mut transcript = self.finish(segments, start, options, samples.len());
        transcript.duration_after_vad = Some(speech_samples as f64 / f64::from(SAMPLE_RATE));
        Ok(transcript)
    }

    /// Speech pieces of at most 30 s: Silero VAD with the caller's parameters (30 s the longest
    /// piece whatever they say) or the batched defaults; without the VAD, all of audio under 30 s.
    fn batch_speech(&self, samples: &[f32], options: &DecodeOptions) -> Result<Vec<SpeechChunk>> {
        if options.vad_filter == Some(false) {
            if samples.len() >= CHUNK_SAMPLES {
                return Err(Error::InvalidArgument {
                    field: "vad_filter",
                    reason: "the batched mode (batch_size > 0) cuts audio of 30 s or more at speech boundaries: it needs the VAD".into(),
                });
            }
            return Ok(vec![SpeechChunk { start: 0, end: samples.len() }]);
        }
        let vad_options = match options.vad_parameters {
            Some(given) => VadOptions { max_speech_duration_s: CHUNK_SECONDS, ..given },
            None => VadOptions::for_batches(CHUNK_SECONDS),
        };
        self.speech_chunks(samples, &vad_options)
    }

    /// Every chunk decoded once at the first temperature, `batch_size` encoded together; greedy
    /// chunks also decode together (a decoder row each), beam search and sampling one by one.
    fn decode_chunks(&self, mels: &[LogMel], prompt: &[u32], options: &DecodeOptions, rng: &mut Rng) -> Vec<WindowResult> {
        let rules = self.rules(options);
        let settings = self.settings(&rules, prompt, options);
        let temperature = options.temperatures[0];
        let together = options.beam_size == 1 && temperature == 0.0;
        let mut results = Vec::with_capacity(mels.len());
        for group in mels.chunks(options.batch_size) {
            let mut frames: Vec<f32> = group.iter().flat_map(|mel| mel.window(0, mel.content_frames())).collect();
            if B::FIXED_SHAPES {
                // Every batch as large as the first: the last chunk again, its results unread.
                let window = frames.len() / group.len();
                for _ in group.len()..options.batch_size {
                    frames.extend_from_within(frames.len() - window..);
                }
            }
            super::preempt::point();
            let encoded = self.encode_windows(frames);
            let mut decoded = if together {
                self.decode_windows(encoded, prompt, temperature, options, &settings, rng)
            } else {
                (0..group.len())
                    .map(|i| {
                        self.decode_windows(encoded.clone().narrow(0, i, 1), prompt, temperature, options, &settings, rng).swap_remove(0)
                    })
                    .collect()
            };
            decoded.truncate(group.len());
            results.extend(decoded);
        }
        results
    }
}

/// The chunks' features end to end (each without its last frame, as the chunks are encoded)
/// and one frame of -1.5: what faster-whisper detects the language on in the batched mode.
fn detection_features(mels: &[LogMel], n_mels: usize) -> LogMel {
    let frames = mels.iter().map(LogMel::content_frames).sum::<usize>() + 1;
    let mut data = Vec::with_capacity(n_mels * frames);
    for m in 0..n_mels {
        for mel in mels {
            data.extend_from_slice(&mel.data[m * mel.frames..m * mel.frames + mel.content_frames()]);
        }
        data.push(DETECTION_FILL);
    }
    debug_assert!(mels.iter().all(|mel| mel.content_frames() <= WINDOW_FRAMES));
    LogMel { n_mels, frames, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_features_join_the_chunks_and_end_with_the_fill() {
        let a = LogMel { n_mels: 2, frames: 3, data: vec![1.0, 2.0, 9.0, 3.0, 4.0, 9.0] };
        let b = LogMel { n_mels: 2, frames: 2, data: vec![5.0, 9.0, 6.0, 9.0] };
        let joined = detection_features(&[a, b], 2);
        assert_eq!(joined.frames, 4);
        assert_eq!(joined.data, vec![1.0, 2.0, 5.0, -1.5, 3.0, 4.0, 6.0, -1.5]);
        assert_eq!(detection_features(&[], 2).data, vec![-1.5, -1.5]);
    }
}
