//! The crate's one error type. Variants say what a caller can do about them:
//! bad input (never retried), a broken model (operator fix), or a fault that may pass.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not decodable audio (empty, truncated, corrupt, not audio at all).
    #[error("invalid audio: {0}")]
    InvalidAudio(String),
    /// Audio in a container or codec this build cannot decode.
    #[error("unsupported audio format: {0}")]
    UnsupportedAudio(String),
    /// A request option is wrong (unknown language, bad beam size, ...).
    #[error("invalid argument `{field}`: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// The model directory or one of its tensors is missing or malformed.
    #[error("model: {0}")]
    Model(String),
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The compute device failed; a retry (on a fresh engine) may succeed.
    #[error("device: {0}")]
    Device(String),
    /// A request or event is malformed: not a CloudEvent, an unknown type, a missing field.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The request's content type is not one this endpoint takes.
    #[error("unsupported content type: {0}")]
    UnsupportedMediaType(String),
    /// A body, object or recording is over a configured limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The source is not in TINGXIE_ALLOWED_SOURCES (or resolves, through a link, outside it).
    #[error("source not allowed: {0}")]
    Forbidden(String),
    /// The output is not in TINGXIE_ALLOWED_OUTPUTS or under TINGXIE_OUTPUT.
    #[error("output not allowed: {0}")]
    OutputForbidden(String),
    /// The client did not send its whole body in time (TINGXIE_BODY_TIMEOUT_SECONDS).
    #[error("request timeout: {0}")]
    BodyTimeout(String),
    /// The client hung up before its answer was ready; nobody reads this error.
    #[error("client closed the connection: {0}")]
    ClientGone(String),
    /// The source object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Object storage failed; `retryable` says whether trying again may help.
    #[error("object store: {message}")]
    Store { message: String, retryable: bool },
    /// No API key, or one that is not valid (the tenant could not be told).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The tenant may not see what it asked for (another tenant's history).
    #[error("not allowed: {0}")]
    TenantForbidden(String),
    /// No transcription with this id in the tenant's history.
    #[error("no such transcription: {0}")]
    NoSuchTranscription(String),
    /// The tenant is over one of its limits; it may try again after `retry_after`.
    #[error("tenant limit: {message}")]
    TenantLimit { message: String, retry_after: std::time::Duration },
    /// The engine queue is full: try again after a while.
    #[error("busy: {0}")]
    Busy(String),
    /// The model is not loaded yet, or the server is shutting down: try again (elsewhere).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// True when the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Device(_) | Error::Io { .. } | Error::Busy(_) | Error::Unavailable(_) | Error::TenantLimit { .. } => true,
            Error::Store { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// A short machine-readable name of the cause (API error bodies, history records).
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidAudio(_) => "invalid_audio",
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::InvalidRequest(_) => "invalid_request",
            Error::UnsupportedAudio(_) => "unsupported_audio",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::TooLarge(_) => "too_large",
            Error::Forbidden(_) => "source_not_allowed",
            Error::OutputForbidden(_) => "output_not_allowed",
            Error::BodyTimeout(_) => "body_timeout",
            Error::ClientGone(_) => "client_closed",
            Error::NotFound(_) => "source_not_found",
            Error::Store { retryable: false, .. } => "store_access_denied",
            Error::Store { retryable: true, .. } => "store_unavailable",
            Error::Unauthorized(_) => "invalid_api_key",
            Error::TenantForbidden(_) => "tenant_not_allowed",
            Error::NoSuchTranscription(_) => "transcription_not_found",
            Error::TenantLimit { .. } => "tenant_limit",
            Error::Busy(_) => "queue_full",
            Error::Unavailable(_) => "unavailable",
            Error::Model(_) | Error::Io { .. } | Error::Device(_) => "internal",
        }
    }

    /// A copy for a second waiter on the same work (I/O errors keep their kind and message).
    pub fn duplicate(&self) -> Error {
        match self {
            Error::InvalidAudio(m) => Error::InvalidAudio(m.clone()),
            Error::UnsupportedAudio(m) => Error::UnsupportedAudio(m.clone()),
            Error::InvalidArgument { field, reason } => Error::InvalidArgument { field, reason: reason.clone() },
            Error::Model(m) => Error::Model(m.clone()),
            Error::Io { path, source } => Error::io(path.clone(), std::io::Error::new(source.kind(), source.to_string())),
            Error::Device(m) => Error::Device(m.clone()),
            Error::InvalidRequest(m) => Error::InvalidRequest(m.clone()),
            Error::UnsupportedMediaType(m) => Error::UnsupportedMediaType(m.clone()),
            Error::TooLarge(m) => Error::TooLarge(m.clone()),
            Error::Forbidden(m) => Error::Forbidden(m.clone()),
            Error::OutputForbidden(m) => Error::OutputForbidden(m.clone()),
            Error::BodyTimeout(m) => Error::BodyTimeout(m.clone()),
            Error::ClientGone(m) => Error::ClientGone(m.clone()),
            Error::NotFound(m) => Error::NotFound(m.clone()),
            Error::Store { message, retryable } => Error::Store { message: message.clone(), retryable: *retryable },
            Error::Unauthorized(m) => Error::Unauthorized(m.clone()),
            Error::TenantForbidden(m) => Error::TenantForbidden(m.clone()),
            Error::NoSuchTranscription(m) => Error::NoSuchTranscription(m.clone()),
            Error::TenantLimit { message, retry_after } => Error::TenantLimit { message: message.clone(), retry_after: *retry_after },
            Error::Busy(m) => Error::Busy(m.clone()),
            Error::Unavailable(m) => Error::Unavailable(m.clone()),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// Input quoted in a message: at most [`QUOTE_CHARS`] characters of it, so that a huge field
/// never comes back whole in an error body or a log line.
pub fn quote(input: &str) -> String {
    bounded(&format!("{input:?}"), QUOTE_CHARS)
}

pub const QUOTE_CHARS: usize = 80;

/// `text` cut to at most `limit` characters, saying how much was left out.
pub fn bounded(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}… ({} more bytes)", &text[..cut], text.len() - cut),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
