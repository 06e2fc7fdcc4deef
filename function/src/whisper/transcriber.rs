//! Long-form transcription as faster-whisper does it: 30 s windows moved by the last
//! timestamp, previous text as prompt, temperature fallback, no-speech skipping. The batched
//! mode (independent windows) is in `batched.rs`.

use std::io::Write;
use std::path::Path;

use burn::tensor::{Tensor, TensorData};

use super::backend::WhisperBackend;
use super::decoding::options::{DecodeOptions, Task};
use super::decoding::rules::LogitRules;
use super::decoding::search::{self, Hypothesis, Rng, SearchSettings};
use super::mel::{LogMel, MelFrontend, FRAME_SECONDS, SAMPLE_RATE, WINDOW_FRAMES};
use super::model::Whisper;
use super::session::WindowSession;
use super::suppress::SuppressLists;
use super::tokenizer::{WhisperTokenizer, TIME_PRECISION};
use crate::error::{Error, Result};
use crate::transcript::{Segment, Transcript};
use crate::vad::SileroVad;

/// Mel frames per encoder position (the second convolution has stride 2).
const INPUT_STRIDE: usize = 2;

/// A loaded model with everything needed to turn samples into a transcript.
pub struct Transcriber<B: WhisperBackend> {
    pub model: Whisper<B>,
    pub tokenizer: WhisperTokenizer,
    frontend: MelFrontend,
    suppress: SuppressLists,
    /// Silero VAD, for `vad_filter` and the batched mode (None: not installed).
    pub(super) vad: Option<SileroVad<B>>,
}

/// What every window's prompt starts with.
pub(super) struct Start {
    pub(super) sot_sequence: Vec<u32>,
    pub(super) language: String,
    pub(super) language_probability: f32,
    /// The initial prompt's text: the caller's, or the one `zh_script` asks for.
    pub(super) initial_prompt: Option<String>,
}

/// What one window decoded to, with the scores the fallback and skipping look at.
pub(super) struct WindowResult {
    pub(super) hypothesis: Hypothesis,
    pub(super) avg_logprob: f32,
    pub(super) no_speech_prob: f32,
    pub(super) temperature: f32,
    compression_ratio: f32,
}

/// `len(text) / len(zlib(text))`, as faster-whisper measures repetition.
pub fn compression_ratio(text: &str) -> f32 {
    if text.is_empty() {
        return 0.0;
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).expect("writing to memory");
    let compressed = encoder.finish().expect("writing to memory");
    text.len() as f32 / compressed.len() as f32
}

fn softmax_at(logits: &[f32], index: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    (((logits[index as usize] - max) as f64).exp() / sum) as f32
}

impl<B: WhisperBackend> Transcriber<B> {
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self> {
        // The tokenizer's JSON parse starts first and runs while the weights are mapped and
        // converted.
        let (model, text) = std::thread::scope(|scope| {
            let text = scope.spawn(|| WhisperTokenizer::read(dir));
            let model = super::weights::open(dir).and_then(|source| Whisper::from_source(source.as_ref(), device));
            (model, text.join().unwrap_or_else(|_| Err(Error::Model("tokenizer load panicked".into()))))
        });
        let model = model?;
        let tokenizer = text?.with_vocab_size(model.config.n_vocab);
        let suppress = SuppressLists::load(dir, &tokenizer)?;
        let frontend = MelFrontend::new(model.config.n_mels);
        Ok(Transcriber { model, tokenizer, frontend, suppress, vad: None })
    }

    pub fn has_vad(&self) -> bool {
        self.vad.is_some()
    }

    /// Adds Silero VAD from `dir` (`scripts/fetch-vad.sh`), on the model's device.
    pub fn add_vad(&mut self, dir: &Path) -> Result<()> {
        self.vad = Some(SileroVad::load(dir, &self.model.device)?.with_fixed_shapes(B::FIXED_SHAPES));
        Ok(())
    }

    pub fn log_mel(&self, samples: &[f32]) -> LogMel {
        self.frontend.compute(samples)
    }

    /// Encodes `[n_mels, 3000]` windows laid end to end: `[windows, frames, d]`.
    pub(super) fn encode_windows(&self, windows: Vec<f32>) -> Tensor<B, 3> {
        let count = windows.len() / (self.frontend.n_mels() * WINDOW_FRAMES);
        let mel = Tensor::from_data(TensorData::new(windows, [count, self.frontend.n_mels(), WINDOW_FRAMES]), &self.model.device);
        self.model.encode(mel)
    }

    /// Transcribes 16 kHz mono samples: sequential windows over the whole audio, over its
    /// speech alone (`vad_filter`), or speech chunks in batches (`batch_size`).
    pub fn transcribe(&self, samples: &[f32], options: &DecodeOptions) -> Result<Transcript> {
        options.validate()?;
        if options.batch_size > 0 {
            return self.transcribe_batched(samples, options);
        }
        if options.vad_filter == Some(true) {
            return self.transcribe_speech(samples, options);
        }
        self.transcribe_sequential(samples, options)
    }

    /// What every window's prompt starts with, from the options and (to detect the language)
    /// the first 30 s of `mel`.
    pub(super) fn start(&self, mel: &LogMel, options: &DecodeOptions) -> Result<Start> {
        let (sot_sequence, language_probability) = self.sot_sequence(mel, options)?;
        let language = self.language_of(&sot_sequence);
        // A script steers Mandarin only where the caller gave no prompt of their own.
        let initial_prompt = match (&options.initial_prompt, options.zh_script) {
            (Some(prompt), _) => Some(prompt.clone()),
            (None, Some(script)) if language == "zh" => Some(script.prompt().to_string()),
            _ => None,
        };
        Ok(Start { sot_sequence, language, language_probability, initial_prompt })
    }

    /// Windows one after another over all of `samples`, each starting at the last timestamp of
    /// the one before and prompted by the text so far.
    fn transcribe_sequential(&self, samples: &[f32], options: &DecodeOptions) -> Result<Transcript> {
        let mel = self.log_mel(samples);
        let start = self.start(&mel, options)?;
        let initial_prompt: Vec<u32> = match &start.initial_prompt {
            Some(prompt) => self.tokenizer.encode(&format!(" {}", prompt.trim()))?,
            None => Vec::new(),
        };
        let mut rng = Rng::new(options.seed);
        let segments = self.sequential_windows(&mel, initial_prompt, &start.sot_sequence, options, &mut rng);
        Ok(self.finish(segments, start, options, samples.len()))
    }

    /// The transcript of `segments`: texts cut at whole characters and joined.
    pub(super) fn finish(&self, mut segments: Vec<Segment>, start: Start, options: &DecodeOptions, samples: usize) -> Transcript {
        self.cut_text_at_characters(&mut segments);
        let text = segments.iter().map(|s| s.text.as_str()).collect::<String>().trim().to_string();
        Transcript {
            text,
            segments,
            language: start.language,
            language_probability: start.language_probability,
            task: options.task,
            duration: samples as f64 / SAMPLE_RATE as f64,
            duration_after_vad: None,
        }
    }

    /// Decodes segment texts so that none cuts a character: the bytes of a character that a
    /// segment's last token leaves unfinished (CJK characters often span two tokens) open the
    /// next segment's text; after the last segment they are no character at all and are left
    /// out (faster-whisper decodes each segment alone and shows U+FFFD for such bytes). Token
    /// ids and times stay as decoded.
    pub fn cut_text_at_characters(&self, segments: &mut [Segment]) {
        let mut carried: Vec<u8> = Vec::new();
        for segment in segments.iter_mut() {
            let mut bytes = std::mem::take(&mut carried);
            bytes.extend(self.tokenizer.text_bytes(&segment.tokens));
            carried = bytes.split_off(complete_characters_len(&bytes));
            segment.text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }

    fn sequential_windows(
        &self,
        mel: &LogMel,
        mut all_tokens: Vec<u32>,
        sot_sequence: &[u32],
        options: &DecodeOptions,
        rng: &mut Rng,
    ) -> Vec<Segment> {
        let content_frames = mel.content_frames();
        let mut prompt_reset_since = 0;
        let mut segments: Vec<Segment> = Vec::new();
        let mut seek = 0;
        while seek < content_frames {
            let window_frames = WINDOW_FRAMES.min(content_frames - seek);
            super::preempt::point();
            let encoded = self.encode_windows(mel.window(seek, window_frames));
            let prompt = self.prompt(&all_tokens[prompt_reset_since..], sot_sequence, options);
            let result = self.decode_with_fallback(encoded, &prompt, options, rng, None);
            if is_silence(&result, options) {
                seek += window_frames;
                continue;
            }
            let (pieces, next_seek) = self.split_by_timestamps(&result.hypothesis.tokens, seek, window_frames);
            all_tokens.extend(self.push_segments(&mut segments, pieces, seek, &result));
            seek = next_seek;
            if !options.condition_on_previous_text || result.temperature > options.prompt_reset_on_temperature {
                prompt_reset_since = all_tokens.len();
            }
        }
        segments
    }

    /// Appends a window's pieces `(start s, end s, tokens)`, relative to the window at `seek`,
    /// as segments; empty ones are dropped. Returns the tokens of the segments kept.
    pub(super) fn push_segments(
        &self,
        segments: &mut Vec<Segment>,
        pieces: Vec<(f64, f64, Vec<u32>)>,
        seek: usize,
        result: &WindowResult,
    ) -> Vec<u32> {
        let time_offset = seek as f64 * FRAME_SECONDS;
        let mut kept = Vec::new();
        for (start_ts, end_ts, piece) in pieces {
            let text = self.tokenizer.decode(&piece);
            let (start, end) = (time_offset + start_ts, time_offset + end_ts);
            if start == end || text.trim().is_empty() {
                continue;
            }
            kept.extend_from_slice(&piece);
            segments.push(Segment {
                id: segments.len() + 1,
                seek,
                start,
                end,
                text,
                tokens: piece,
                temperature: result.temperature,
                avg_logprob: result.avg_logprob,
                compression_ratio: result.compression_ratio,
                no_speech_prob: result.no_speech_prob,
            });
        }
        kept
    }

    /// `<|startoftranscript|>` plus, for multilingual models, language and task tokens; and
    /// the language's probability (1 when given, as faster-whisper reports it).
    fn sot_sequence(&self, mel: &LogMel, options: &DecodeOptions) -> Result<(Vec<u32>, f32)> {
        let s = &self.tokenizer.specials;
        if !self.model.config.is_multilingual() {
            if let Some(lang) = options.language.as_deref().filter(|l| *l != "en") {
                return Err(Error::InvalidArgument {
                    field: "language",
                    reason: format!("this model is English-only; `{}` is not available", crate::error::bounded(lang, 32)),
                });
            }
            if options.task == Task::Translate {
                return Err(Error::InvalidArgument {
                    field: "task",
                    reason: "this model is English-only and cannot translate; use a multilingual model".into(),
                });
            }
            return Ok((vec![s.sot], 1.0));
        }
        let (language, probability) = match options.language.as_deref() {
            Some(code) => (self.language_token(code)?, 1.0),
            None => self.detect_language(mel).first().copied().unwrap_or((s.sot + 1, 0.0)),
        };
        let task = match options.task {
            Task::Transcribe => s.transcribe,
            Task::Translate => s.translate,
        };
        Ok((vec![s.sot, language, task], probability))
    }

    /// The token of a language code (`zh`, `en`, ...), or the error a caller can act on.
    fn language_token(&self, code: &str) -> Result<u32> {
        self.tokenizer.language_token(code).ok_or_else(|| Error::InvalidArgument {
            field: "language",
            reason: format!(
                "unknown language code `{}`; this model knows {} codes, such as en, zh, de, es, fr, ja",
                crate::error::bounded(code, 32),
                self.tokenizer.languages.len()
            ),
        })
    }

    fn language_of(&self, sot_sequence: &[u32]) -> String {
        sot_sequence.get(1).and_then(|&t| self.tokenizer.language_code(t)).unwrap_or("en").to_string()
    }

    /// Language tokens with their probabilities on the first 30 s, most likely first: the
    /// logits after `<|startoftranscript|>`, softmax over the language tokens alone
    /// (faster-whisper's `detect_language` with one segment: every frame of the first 30 s,
    /// the final one included). Empty for an English-only model.
    pub fn detect_language(&self, mel: &LogMel) -> Vec<(u32, f32)> {
        if !self.model.config.is_multilingual() || self.tokenizer.languages.is_empty() {
            return Vec::new();
        }
        let encoded = self.encode_windows(mel.window(0, WINDOW_FRAMES));
        let mut session = WindowSession::new(&self.model, encoded);
        let logits = session.feed_prompt(&[self.tokenizer.specials.sot], Some(0)).map(|mut rows| rows.swap_remove(0)).unwrap_or_default();
        let ids: Vec<u32> = self.tokenizer.languages.iter().map(|&(_, id)| id).collect();
        let logit = |id: u32| f64::from(logits.get(id as usize).copied().unwrap_or(f32::NEG_INFINITY));
        let max = ids.iter().map(|&id| logit(id)).fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = ids.iter().map(|&id| (logit(id) - max).exp()).sum();
        let mut probabilities: Vec<(u32, f32)> = ids.iter().map(|&id| (id, ((logit(id) - max).exp() / sum) as f32)).collect();
        probabilities.sort_by(|a, b| b.1.total_cmp(&a.1));
        probabilities
    }

    /// `[<|startofprev|> previous...] sot_sequence [<|notimestamps|>]`; at most 223 previous tokens.
    pub(super) fn prompt(&self, previous: &[u32], sot_sequence: &[u32], options: &DecodeOptions) -> Vec<u32> {
        let s = &self.tokenizer.specials;
        let keep = self.model.config.n_text_ctx / 2 - 1;
        let mut prompt = Vec::new();
        if !previous.is_empty() {
            prompt.push(s.sot_prev);
            prompt.extend_from_slice(&previous[previous.len().saturating_sub(keep)..]);
        }
        prompt.extend_from_slice(sot_sequence);
        if options.without_timestamps {
            prompt.push(s.no_timestamps);
        }
        prompt
    }

    pub(super) fn rules(&self, options: &DecodeOptions) -> LogitRules {
        let specials = self.tokenizer.specials.clone();
        let initial = (options.max_initial_timestamp as f64 / TIME_PRECISION).round() as u32;
        LogitRules {
            suppress: self.suppress.always.clone(),
            suppress_at_start: if options.suppress_blank { self.suppress.at_start.clone() } else { Vec::new() },
            max_initial_timestamp: Some(specials.timestamp_begin + initial),
            timestamps: !options.without_timestamps,
            specials,
        }
    }

    /// The search settings for windows prompted with `prompt`.
    pub(super) fn settings<'r>(&self, rules: &'r LogitRules, prompt: &[u32], options: &DecodeOptions) -> SearchSettings<'r> {
        let n_ctx = self.model.config.n_text_ctx;
        SearchSettings {
            rules,
            max_len: (n_ctx / 2).min(n_ctx.saturating_sub(prompt.len() - 1)).min(options.max_new_tokens.unwrap_or(usize::MAX)),
            length_penalty: options.length_penalty,
        }
    }

    /// Decodes one window at increasing temperatures until the result looks sound. `first`,
    /// when given, is the result at the first temperature, already decoded (in a batch).
    pub(super) fn decode_with_fallback(
        &self,
        encoded: Tensor<B, 3>,
        prompt: &[u32],
        options: &DecodeOptions,
        rng: &mut Rng,
        mut first: Option<WindowResult>,
    ) -> WindowResult {
        let rules = self.rules(options);
        let settings = self.settings(&rules, prompt, options);
        let mut all = Vec::new();
        for &temperature in &options.temperatures {
            let result = match first.take() {
                Some(result) => result,
                None => self.decode_windows(encoded.clone(), prompt, temperature, options, &settings, rng).swap_remove(0),
            };
            let too_repetitive = options.compression_ratio_threshold.is_some_and(|t| result.compression_ratio > t);
            let too_unsure = options.log_prob_threshold.is_some_and(|t| result.avg_logprob < t);
            // Silence is not retried (faster-whisper's rule, with its strict comparisons).
            let silent = options.no_speech_threshold.is_some_and(|t| result.no_speech_prob > t)
                && options.log_prob_threshold.is_some_and(|t| result.avg_logprob < t);
            let sound = (!too_repetitive && !too_unsure) || silent;
            all.push((result, too_repetitive));
            if sound {
                return all.pop().unwrap().0;
            }
        }
        // Nothing passed: the most confident result that is not repetitive, else the most confident.
        let any_compact = all.iter().any(|(_, repetitive)| !repetitive);
        all.into_iter()
            .filter(|(_, repetitive)| !any_compact || !repetitive)
            .map(|(r, _)| r)
            .reduce(|best, r| if r.avg_logprob > best.avg_logprob { r } else { best })
            .expect("at least one temperature")
    }

    /// Decodes the windows of `encoded` `[windows, frames, d]` once at `temperature`; one
    /// result per window. Several windows decode together only greedily (a row each);
    /// sampling and beam search take one window.
    pub(super) fn decode_windows(
        &self,
        encoded: Tensor<B, 3>,
        prompt: &[u32],
        temperature: f32,
        options: &DecodeOptions,
        settings: &SearchSettings,
        rng: &mut Rng,
    ) -> Vec<WindowResult> {
        let s = &self.tokenizer.specials;
        let windows = encoded.dims()[0];
        let greedy = temperature == 0.0 && options.beam_size == 1;
        assert!(windows == 1 || greedy, "only greedy search decodes several windows at once");
        let mut session = WindowSession::new(&self.model, encoded);
        let (prefix, start) = prompt.split_at(prompt.len() - 1);
        let sot_index = prompt.iter().position(|&t| t == s.sot).unwrap_or(0);
        // With language/task tokens after <|startoftranscript|>, no-speech is read at its position.
        let sot_is_start = sot_index == prompt.len() - 1;
        let prompt_logits = session.feed_prompt(prefix, (!sot_is_start).then_some(sot_index));
        let mut no_speech = prompt_logits.map(|rows| rows.iter().map(|l| softmax_at(l, s.no_speech)).collect());
        let mut probe = NoSpeechProbe { inner: &mut session, no_speech: s.no_speech, probs: &mut no_speech };
        let hypotheses = if temperature > 0.0 {
            vec![search::sample(&mut probe, start[0], options.best_of, temperature, rng, settings)]
        } else if options.beam_size > 1 {
            vec![search::beam(&mut probe, start[0], options.beam_size, options.patience, settings)]
        } else {
            search::greedy_rows(&mut probe, start[0], windows, settings)
        };
        let no_speech = no_speech.unwrap_or_default();
        hypotheses
            .into_iter()
            .enumerate()
            .map(|(i, hypothesis)| {
                let text = self.tokenizer.decode(&hypothesis.tokens);
                WindowResult {
                    avg_logprob: hypothesis.cum_logprob / (hypothesis.tokens.len() + 1) as f32,
                    compression_ratio: compression_ratio(text.trim()),
                    no_speech_prob: no_speech.get(i).copied().unwrap_or(0.0),
                    temperature,
                    hypothesis,
                }
            })
            .collect()
    }

    /// Splits a window's tokens at timestamp pairs. Returns (start s, end s, tokens) relative to
    /// the window, and where the next window starts.
    pub(super) fn split_by_timestamps(&self, tokens: &[u32], seek: usize, window_frames: usize) -> (Vec<(f64, f64, Vec<u32>)>, usize) {
        let tok = &self.tokenizer;
        let begin = tok.specials.timestamp_begin;
        let time = |id: u32| (id - begin) as f64 * TIME_PRECISION;
        let n = tokens.len();
        let single_timestamp_ending = n >= 2 && !tok.is_timestamp(tokens[n - 2]) && tok.is_timestamp(tokens[n - 1]);
        let mut cuts: Vec<usize> = (1..n).filter(|&i| tok.is_timestamp(tokens[i]) && tok.is_timestamp(tokens[i - 1])).collect();
        if cuts.is_empty() {
            // No timestamp pair: the whole window is one segment.
            let duration = match tokens.iter().rev().find(|&&t| tok.is_timestamp(t)) {
                Some(&last) if last != begin => time(last),
                _ => window_frames as f64 * FRAME_SECONDS,
            };
            return (vec![(0.0, duration, tokens.to_vec())], seek + window_frames);
        }
        if single_timestamp_ending {
            cuts.push(n);
        }
        let mut pieces = Vec::new();
        let mut last = 0;
        for &cut in &cuts {
            let piece = tokens[last..cut].to_vec();
            pieces.push((time(piece[0]), time(piece[piece.len() - 1]), piece));
            last = cut;
        }
        let next_seek =
            if single_timestamp_ending { seek + window_frames } else { seek + (tokens[last - 1] - begin) as usize * INPUT_STRIDE };
        (pieces, next_seek)
    }
}

/// The length of `bytes` without a UTF-8 character left unfinished at its end.
fn complete_characters_len(bytes: &[u8]) -> usize {
    let is_continuation = |b: u8| b & 0xC0 == 0x80;
    let Some(lead) = bytes.iter().rposition(|&b| !is_continuation(b)).filter(|&p| bytes.len() - p <= 4) else {
        return bytes.len();
    };
    let needed = match bytes[lead] {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    };
    if bytes.len() - lead < needed {
        lead
    } else {
        bytes.len()
    }
}

/// A window is silence when no-speech is likely and the decoded text is unsure.
pub(super) fn is_silence(result: &WindowResult, options: &DecodeOptions) -> bool {
    let Some(threshold) = options.no_speech_threshold else { return false };
    let unsure = options.log_prob_threshold.is_none_or(|t| result.avg_logprob <= t);
    result.no_speech_prob > threshold && unsure
}

/// Passes steps through to the session and records each row's no-speech probability from the
/// first step's unmasked logits (when the prompt ends with `<|startoftranscript|>`).
struct NoSpeechProbe<'s, 'a, B: WhisperBackend> {
    inner: &'s mut WindowSession<'a, B>,
    no_speech: u32,
    probs: &'s mut Option<Vec<f32>>,
}

impl<B: WhisperBackend> search::StepModel for NoSpeechProbe<'_, '_, B> {
    fn step(&mut self, tokens: &[u32]) -> Vec<Vec<f32>> {
        let logits = self.inner.step(tokens);
        if self.probs.is_none() {
            *self.probs = Some(logits.iter().map(|l| softmax_at(l, self.no_speech)).collect());
        }
        logits
    }

    fn select_rows(&mut self, rows: &[usize]) {
        self.inner.select_rows(rows);
    }
}

#[cfg(test)]
mod tests {
    use super::complete_characters_len;

    #[test]
    fn an_unfinished_character_at_the_end_is_left_out() {
        let han = "话".as_bytes(); // three bytes
        assert_eq!(complete_characters_len(b"abc"), 3);
        assert_eq!(complete_characters_len(han), 3);
        assert_eq!(complete_characters_len(&han[..2]), 0);
        assert_eq!(complete_characters_len(&[b"x".as_slice(), &han[..1]].concat()), 1);
        assert_eq!(complete_characters_len(&[han, &"😀".as_bytes()[..3]].concat()), 3);
        // Invalid bytes are not held back: they decode to U+FFFD where they are.
        assert_eq!(complete_characters_len(&[0x80, 0x80, 0x80, 0x80, 0x80]), 5);
        assert_eq!(complete_characters_len(&[b'a', 0xFF]), 2);
        assert_eq!(complete_characters_len(&[]), 0);
    }
}
