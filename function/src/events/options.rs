//! The options a request may carry, parsed and checked in one place for every entry point:
//! typed JSON (request bodies, CloudEvent data) through [`super::tingxie`], text (query
//! strings, multipart form fields) through [`RequestOptions::set_text`], and
//! [`RequestOptions::validate`] for all of them.

use super::object::check_output_prefix;
use super::RESPONSE_FORMATS;
use crate::error::{quote, Error, Result};
use crate::vad::VadOptions;
use crate::whisper::{Task, ZhScript};

/// Options a tingxie request may carry (the OpenAI-compatible HTTP API's names).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RequestOptions {
    /// A model of the catalog (`GET /v1/models`); the service's default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// `transcribe` or `translate` (into English); `/v1/audio/translations` sets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// `simplified` or `traditional`: the script Mandarin is steered to (an initial prompt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zh_script: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beam_size: Option<usize>,
    /// Independent windows decoded per batch; 0 = sequential windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Transcribe only the speech Silero VAD finds (faster-whisper's `vad_filter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vad_filter: Option<bool>,
    /// Silero VAD's parameters: a JSON object of faster-whisper's `VadOptions` fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vad_parameters: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<String>,
    /// URI prefix under which transcripts are written, e.g. `s3://bucket/transcripts/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Answer 202 with the job's id at once; the transcript is fetched later
    /// (`GET /v1/transcriptions/{id}`) or delivered to `callback_url`.
    #[serde(rename = "async", skip_serializing_if = "Option::is_none")]
    pub asynchronous: Option<bool>,
    /// Where an asynchronous job's result is POSTed (a host of TINGXIE_CALLBACK_HOSTS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument { field, reason: reason.into() }
}

fn number<T: std::str::FromStr>(field: &'static str, text: &str, what: &str) -> Result<T> {
    text.trim().parse().map_err(|_| invalid(field, format!("{} is not {what}", quote(text))))
}

/// `true`/`false` (also `1`/`0`), as query strings and form fields write booleans.
fn boolean(field: &'static str, text: &str) -> Result<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(invalid(field, format!("{} is not true or false", quote(text)))),
    }
}

impl RequestOptions {
    /// Sets the option `name` from its text form (a query parameter or a form field).
    /// False when `name` is not a request option.
    pub fn set_text(&mut self, name: &str, text: &str) -> Result<bool> {
        match name {
            "model" => self.model = Some(text.trim().to_string()),
            "language" => self.language = Some(text.to_string()),
            "prompt" => self.prompt = Some(text.to_string()),
            "task" => self.task = Some(text.trim().to_string()),
            "zh_script" => self.zh_script = Some(text.trim().to_string()),
            "response_format" => self.response_format = Some(text.trim().to_string()),
            "temperature" => self.temperature = Some(number("temperature", text, "a number")?),
            "beam_size" => self.beam_size = Some(number("beam_size", text, "a whole number")?),
            "batch_size" => self.batch_size = Some(number("batch_size", text, "a whole number")?),
            "vad_filter" => self.vad_filter = Some(boolean("vad_filter", text)?),
            "vad_parameters" => self.vad_parameters = Some(text.to_string()),
            "async" => self.asynchronous = Some(boolean("async", text)?),
            "callback_url" => self.callback_url = Some(text.trim().to_string()),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The VAD parameters asked for, parsed.
    pub fn vad_parameters(&self) -> Result<Option<VadOptions>> {
        self.vad_parameters.as_deref().map(str::parse).transpose()
    }

    /// The task asked for (transcribe when none).
    pub fn task(&self) -> Result<Task> {
        self.task.as_deref().map_or(Ok(Task::Transcribe), str::parse)
    }

    /// The Chinese script asked for; empty or `auto` leaves the output as the model writes it.
    pub fn zh_script(&self) -> Result<Option<ZhScript>> {
        match self.zh_script.as_deref().map(str::trim) {
            None | Some("" | "auto") => Ok(None),
            Some(script) => script.parse().map(Some),
        }
    }

    /// The same checks for every entry point: a plausible `language` code, a known `task` and
    /// `zh_script`, `temperature` in
    /// 0..=1 (OpenAI's range), `beam_size` 1..=64, `batch_size` 0..=64, a known
    /// `response_format`, and an `output` prefix with a supported scheme. Whether the output
    /// is allowed is the service's question.
    pub fn validate(&self) -> Result<()> {
        if let Some(lang) = &self.language {
            let ok = !lang.is_empty() && lang.len() <= 32 && lang.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_');
            if !ok {
                return Err(invalid("language", format!("{} is not a language code such as \"en\"", quote(lang))));
            }
        }
        self.task()?;
        self.zh_script()?;
        self.vad_parameters()?;
        if let Some(t) = self.temperature {
            if !(t.is_finite() && (0.0..=1.0).contains(&t)) {
                return Err(invalid("temperature", format!("{t} is outside 0..=1")));
            }
        }
        if self.beam_size.is_some_and(|b| !(1..=64).contains(&b)) {
            return Err(invalid("beam_size", "must be between 1 and 64"));
        }
        if self.batch_size.is_some_and(|b| b > 64) {
            return Err(invalid("batch_size", "must be between 0 (sequential windows) and 64"));
        }
        if let Some(f) = &self.response_format {
            if !RESPONSE_FORMATS.contains(&f.as_str()) {
                return Err(invalid("response_format", format!("{} is not one of {}", quote(f), RESPONSE_FORMATS.join(", "))));
            }
        }
        if let Some(out) = &self.output {
            check_output_prefix(out).map_err(|e| invalid("output", e.to_string()))?;
        }
        if self.callback_url.is_some() && !self.is_async() {
            return Err(invalid("callback_url", "applies to asynchronous jobs: add async=true"));
        }
        Ok(())
    }

    pub fn is_async(&self) -> bool {
        self.asynchronous == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<()>) -> &'static str {
        match result {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected an invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn text_and_typed_options_meet_the_same_checks() {
        let mut options = RequestOptions::default();
        assert!(options.set_text("temperature", "1.5").unwrap());
        assert_eq!(field_of(options.validate()), "temperature");
        let mut options = RequestOptions::default();
        assert!(options.set_text("beam_size", "0").unwrap());
        assert_eq!(field_of(options.validate()), "beam_size");
        assert!(matches!(RequestOptions::default().set_text("beam_size", "five"), Err(Error::InvalidArgument { field: "beam_size", .. })));
        assert!(!RequestOptions::default().set_text("colour", "red").unwrap());
        let typed = RequestOptions { temperature: Some(1.5), ..Default::default() };
        assert_eq!(field_of(typed.validate()), "temperature");
    }

    #[test]
    fn messages_quote_a_bounded_prefix_of_the_input() {
        let huge = "x".repeat(1_000_000);
        let options = RequestOptions { language: Some(huge.clone()), ..Default::default() };
        let message = options.validate().unwrap_err().to_string();
        assert!(message.len() < 300, "{} bytes", message.len());
        let options = RequestOptions { response_format: Some(huge), ..Default::default() };
        assert!(options.validate().unwrap_err().to_string().len() < 400);
    }
}
