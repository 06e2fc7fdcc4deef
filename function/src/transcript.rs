//! What a transcription produces; shared by the decoder, the output formats and the CLI.

use serde::Serialize;

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
    /// Audio duration in seconds.
    pub duration: f64,
}
