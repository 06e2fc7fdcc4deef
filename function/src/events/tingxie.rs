//! tingxie's own `dev.tingxie.transcription.requested`: `{"source": URI}` or
//! `{"audio": BASE64}`, plus [`RequestOptions`] fields. Unknown fields are errors so that a
//! typo (`langauge`) fails loudly instead of being silently ignored.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::Value;

use super::json;
use super::{Audio, EventError, Job, ObjectRef, Parsed, RequestOptions, REQUEST_EVENT_TYPE};
use crate::error::{bounded, Error, QUOTE_CHARS};

const TY: &str = REQUEST_EVENT_TYPE;
const FIELDS: &[&str] = &[
    "source",
    "audio",
    "model",
    "language",
    "task",
    "zh_script",
    "prompt",
    "temperature",
    "beam_size",
    "batch_size",
    "vad_filter",
    "vad_parameters",
    "response_format",
    "output",
    "async",
    "callback_url",
];

/// Standard alphabet; padding optional, as many encoders drop it.
const BASE64: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));

pub(super) fn parse(data: &Value) -> Result<Parsed, EventError> {
    let m = json::as_obj(TY, "", data)?;
    if let Some(unknown) = m.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(EventError::UnknownField { event_type: TY.into(), field: bounded(unknown, QUOTE_CHARS), accepted: FIELDS.join(", ") });
    }
    let source = json::opt_str(TY, m, "", "source")?;
    let audio = json::opt_str(TY, m, "", "audio")?;
    let audio = match (source, audio) {
        (Some(_), Some(_)) => return Err(json::invalid_data(TY, "give either `source` or `audio`, not both")),
        (None, None) => return Err(json::invalid_data(TY, "missing `source` (a URI) or `audio` (base64 bytes)")),
        (Some(uri), None) => Audio::Object(ObjectRef::parse(uri)?),
        (None, Some(b64)) => Audio::Inline(decode_audio(b64)?),
    };
    let count = |field: &'static str| match json::opt_u64(TY, m, "", field)? {
        Some(n) => Ok(Some(usize::try_from(n).map_err(|_| json::invalid(TY, field, "too large"))?)),
        None => Ok(None),
    };
    let beam_size = count("beam_size")?;
    let batch_size = count("batch_size")?;
    let temperature = match m.get("temperature") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64().map(|t| t as f32),
        Some(v) => return Err(json::invalid(TY, "temperature", format!("expected a number, got {}", json::describe(v)))),
    };
    let flag = |field: &'static str| match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(json::invalid(TY, field, format!("expected true or false, got {}", json::describe(v)))),
    };
    let vad_filter = flag("vad_filter")?;
    // An object, as faster-whisper takes it, or the same as a JSON string (as a form sends it).
    let vad_parameters = match m.get("vad_parameters") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(v @ Value::Object(_)) => Some(v.to_string()),
        Some(v) => return Err(json::invalid(TY, "vad_parameters", format!("expected an object, got {}", json::describe(v)))),
    };
    let options = RequestOptions {
        model: json::opt_str(TY, m, "", "model")?.map(str::to_string),
        language: json::opt_str(TY, m, "", "language")?.map(str::to_string),
        prompt: json::opt_str(TY, m, "", "prompt")?.map(str::to_string),
        task: json::opt_str(TY, m, "", "task")?.map(str::to_string),
        zh_script: json::opt_str(TY, m, "", "zh_script")?.map(str::to_string),
        temperature,
        beam_size,
        batch_size,
        vad_filter,
        vad_parameters,
        response_format: json::opt_str(TY, m, "", "response_format")?.map(str::to_string),
        output: json::opt_str(TY, m, "", "output")?.map(str::to_string),
        asynchronous: flag("async")?,
        callback_url: json::opt_str(TY, m, "", "callback_url")?.map(str::to_string),
    };
    if matches!(audio, Audio::Object(_)) && options.response_format.is_some() {
        return Err(json::invalid(
            TY,
            "response_format",
            "applies to `audio` sent in the request; the transcripts of a `source` are written in every format (txt, srt, vtt, json)",
        ));
    }
    options.validate().map_err(|e| match e {
        Error::InvalidArgument { field, reason } => json::invalid(TY, field, reason),
        other => json::invalid_data(TY, other.to_string()),
    })?;
    Ok(Parsed::Jobs(vec![Job { audio, options, event_name: Some(TY.to_string()) }]))
}

/// Base64 with line breaks allowed (`base64` the tool wraps at 76 columns).
fn decode_audio(b64: &str) -> Result<Vec<u8>, EventError> {
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(json::invalid(TY, "audio", "empty"));
    }
    BASE64.decode(compact.as_bytes()).map_err(|e| json::invalid(TY, "audio", format!("invalid base64: {e}")))
}
