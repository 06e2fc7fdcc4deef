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
}

impl Error {
    /// True when the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Device(_) | Error::Io { .. })
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
