//! Decoding options. Defaults are faster-whisper's `transcribe()` defaults, so a user moving
//! from faster-whisper gets the same transcripts.

use crate::error::{Error, Result};
pub use crate::transcript::Task;
use crate::vad::VadOptions;

/// The Chinese script Mandarin output is steered to. Whisper writes simplified or traditional
/// characters as its training data happened to; a prompt in the wanted script is the usual
/// remedy (it costs some accuracy: README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZhScript {
    Simplified,
    Traditional,
}

impl ZhScript {
    /// The initial prompt used with `language` zh when the caller gave none.
    pub fn prompt(self) -> &'static str {
        match self {
            ZhScript::Simplified => "以下是普通话的句子。",
            ZhScript::Traditional => "以下是普通話的句子。",
        }
    }
}

impl std::str::FromStr for ZhScript {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        match text.trim() {
            "simplified" | "hans" => Ok(ZhScript::Simplified),
            "traditional" | "hant" => Ok(ZhScript::Traditional),
            other => Err(Error::InvalidArgument {
                field: "zh_script",
                reason: format!("{} is not `simplified` or `traditional`", crate::error::quote(other)),
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// 1 = greedy; > 1 = beam search.
    pub beam_size: usize,
    /// Beam search stops after `round(beam_size * patience)` finished hypotheses.
    pub patience: f32,
    /// Samples drawn per window at temperatures above 0.
    pub best_of: usize,
    pub length_penalty: f32,
    /// Tried in order until a window's result passes the thresholds below.
    pub temperatures: Vec<f32>,
    /// A result whose gzip compression ratio is above this is repetitive: retry hotter.
    pub compression_ratio_threshold: Option<f32>,
    /// A result whose average log-probability is below this is unsure: retry hotter.
    pub log_prob_threshold: Option<f32>,
    /// A window with no-speech probability above this (and an unsure result) is silence.
    pub no_speech_threshold: Option<f32>,
    /// Feed the previous window's tokens as a prompt.
    pub condition_on_previous_text: bool,
    /// After a window decoded hotter than this, stop conditioning on the text before it.
    pub prompt_reset_on_temperature: f32,
    /// Text placed before the first window: names, terms, spelling the model should follow.
    pub initial_prompt: Option<String>,
    /// ISO 639-1 code; None detects it (multilingual models) or means English (`.en` models).
    pub language: Option<String>,
    pub task: Task,
    /// With Mandarin (given or detected) and no `initial_prompt`: prompt in this script.
    pub zh_script: Option<ZhScript>,
    /// Suppress a blank and end-of-text as the first token.
    pub suppress_blank: bool,
    /// Latest allowed first timestamp, in seconds.
    pub max_initial_timestamp: f32,
    pub without_timestamps: bool,
    /// Seed of the sampler used at temperatures above 0.
    pub seed: u64,
    /// Most tokens decoded per window (faster-whisper's `max_new_tokens`); None: up to half the
    /// text context (224).
    pub max_new_tokens: Option<usize>,
    /// 0: windows one after another, each prompted by the text before it (faster-whisper's
    /// `transcribe`, token for token). N: independent windows cut at pauses, N encoded and
    /// decoded at once (faster-whisper's `BatchedInferencePipeline`; no previous-text prompt).
    pub batch_size: usize,
    /// Transcribe only the speech Silero VAD finds (faster-whisper's `vad_filter`). None: the
    /// mode's default, off for sequential windows, on for batches (which cut at speech).
    pub vad_filter: Option<bool>,
    /// The VAD's parameters; None: faster-whisper's defaults for the mode.
    pub vad_parameters: Option<VadOptions>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            beam_size: 5,
            patience: 1.0,
            best_of: 5,
            length_penalty: 1.0,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            compression_ratio_threshold: Some(2.4),
            log_prob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            condition_on_previous_text: true,
            prompt_reset_on_temperature: 0.5,
            initial_prompt: None,
            language: None,
            task: Task::Transcribe,
            zh_script: None,
            suppress_blank: true,
            max_initial_timestamp: 1.0,
            without_timestamps: false,
            seed: 0,
            max_new_tokens: None,
            batch_size: 0,
            vad_filter: None,
            vad_parameters: None,
        }
    }
}

impl DecodeOptions {
    /// faster-whisper's `beam_size=1, temperature=0.0`: one greedy pass per window.
    pub fn greedy() -> Self {
        DecodeOptions { beam_size: 1, temperatures: vec![0.0], ..Default::default() }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| Err(Error::InvalidArgument { field, reason: reason.into() });
        if self.beam_size == 0 || self.beam_size > 64 {
            return bad("beam_size", "must be between 1 and 64");
        }
        if self.best_of == 0 || self.best_of > 64 {
            return bad("best_of", "must be between 1 and 64");
        }
        if self.patience.is_nan() || self.patience <= 0.0 {
            return bad("patience", "must be positive");
        }
        if self.temperatures.is_empty() || self.temperatures.iter().any(|t| !(0.0..=2.0).contains(t)) {
            return bad("temperature", "must be one or more values between 0 and 2");
        }
        if self.batch_size > 64 {
            return bad("batch_size", "must be between 0 (sequential windows) and 64");
        }
        if self.max_new_tokens == Some(0) {
            return bad("max_new_tokens", "must be at least 1");
        }
        if let Some(vad) = &self.vad_parameters {
            vad.validate()?;
        }
        if !(0.0..=30.0).contains(&self.max_initial_timestamp) {
            return bad("max_initial_timestamp", "must be between 0 and 30 seconds");
        }
        Ok(())
    }
}
