//! What a transcription produces; shared by the decoder, the output formats and the CLI.

use serde::Serialize;

use crate::error::{Error, Result};

/// What the decoder writes: the spoken language, or English (multilingual models only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Transcribe,
    Translate,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Transcribe => "transcribe",
            Task::Translate => "translate",
        }
    }
}

impl std::str::FromStr for Task {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        match text.trim() {
            "transcribe" => Ok(Task::Transcribe),
            "translate" => Ok(Task::Translate),
            other => Err(Error::InvalidArgument {
                field: "task",
                reason: format!("{} is not `transcribe` or `translate`", crate::error::quote(other)),
            }),
        }
    }
}

/// One decoded segment, with times in seconds from the start of the audio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    /// Counts from 1, as faster-whisper and OpenAI number them.
    pub id: usize,
    /// Start of the 30 s window the segment came from, in mel frames (10 ms).
    pub seek: usize,
    pub start: f64,
    pub end: f64,
    /// Decoded text; starts with a space, as Whisper emits it.
    pub text: String,
    /// Token ids including the segment's timestamp tokens.
    pub tokens: Vec<u32>,
    pub temperature: f32,
    pub avg_logprob: f32,
    pub compression_ratio: f32,
    pub no_speech_prob: f32,
}

/// The result of transcribing one audio input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transcript {
    /// Concatenated segment texts, trimmed.
    pub text: String,
    pub segments: Vec<Segment>,
    /// ISO 639-1 code of the spoken (or requested) language.
    pub language: String,
    /// Its probability as detected on the first 30 s; 1 when the language was given or the
    /// model is English-only (as faster-whisper reports it).
    pub language_probability: f32,
    /// `transcribe`, or `translate` (the text is English).
    pub task: Task,
    /// Audio duration in seconds.
    pub duration: f64,
    /// Seconds of speech the decoder saw, when Silero VAD chose them (`vad_filter`, batches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_after_vad: Option<f64>,
}

/// The word-error-rate normalisation of the fixtures (`../shared/fixtures/README.md`):
/// lowercase, non-word characters to spaces.
pub fn normalize(text: &str) -> Vec<String> {
    let cleaned: String = text.to_lowercase().chars().map(|c| if c.is_alphanumeric() || c.is_whitespace() { c } else { ' ' }).collect();
    cleaned.split_whitespace().map(str::to_string).collect()
}

/// Word error rate of `hypothesis` against `reference` (both normalised).
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (normalize(reference), normalize(hypothesis));
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let substitution = prev[j] + usize::from(rw != hw);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len() as f64
}
