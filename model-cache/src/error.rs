//! One error type whose variants say what a caller can do about them.

use std::io;
use std::path::{Path, PathBuf};

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while resolving a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URI is malformed, has an unsupported scheme, or names something that could not be
    /// stored safely (a `..` segment, an object name that would leave the model folder).
    #[error("invalid model URI {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: String },

    /// The model (or one of its files) does not exist at the source.
    #[error("model not found: {what}")]
    NotFound { what: String },

    /// The object store refused the credentials, or a local path could not be accessed.
    #[error("permission denied: {what}: {detail}")]
    PermissionDenied { what: String, detail: String },

    /// The object store could not be reached (connection, timeout, 5xx) and no complete copy
    /// is cached. Worth retrying later.
    #[error("object store unreachable for {uri}: {detail}")]
    Unreachable { uri: String, detail: String },

    /// Another process held the model's lock for longer than `CacheConfig::lock_timeout`.
    #[error("timed out after {waited_s:.0} s waiting for the lock of {path}")]
    LockTimeout { path: PathBuf, waited_s: f64 },

    /// A remote file changed while it was being downloaded. The next call sees the new version.
    #[error("{uri} changed during the download")]
    Changed { uri: String },

    /// Downloaded data did not match its expected size or checksum, even after a second fetch.
    #[error("corrupt data for {path}: {detail}")]
    Corrupt { path: String, detail: String },

    /// The cache's file system is full.
    #[error("no space left on the cache volume while writing {path}")]
    DiskFull { path: PathBuf },

    /// Any other local I/O error.
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },

    /// Any other error reported by the object store.
    #[error("object store error for {uri}: {detail}")]
    Store { uri: String, detail: String },
}

impl Error {
    /// Whether the same call may succeed later without a change of configuration.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::LockTimeout { .. } | Error::Changed { .. })
    }

    /// Wraps a local I/O error, telling disk-full and permission errors apart.
    pub(crate) fn io(path: &Path, source: io::Error) -> Error {
        match source.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Error::DiskFull { path: path.to_path_buf() },
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                Error::PermissionDenied { what: path.display().to_string(), detail: source.to_string() }
            }
            _ => Error::Io { path: path.to_path_buf(), source },
        }
    }

    /// Maps an object store error for `uri` to the variant a caller can act on.
    pub(crate) fn store(uri: &str, err: object_store::Error) -> Error {
        use object_store::Error as E;
        let detail = err.to_string();
        match err {
            E::NotFound { path, .. } => Error::NotFound { what: format!("{uri} ({path})") },
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => Error::PermissionDenied { what: uri.to_string(), detail },
            E::Precondition { .. } => Error::Changed { uri: uri.to_string() },
            E::InvalidPath { .. } => Error::InvalidUri { uri: uri.to_string(), reason: detail },
            // Listing errors arrive as `Generic`, with the status only in the message.
            _ if detail.contains("status code: 404") => Error::NotFound { what: format!("{uri}: {detail}") },
            _ if detail.contains("status code: 403") || detail.contains("status code: 401") => {
                Error::PermissionDenied { what: uri.to_string(), detail }
            }
            ref e if is_transport(e) => Error::Unreachable { uri: uri.to_string(), detail },
            _ => Error::Store { uri: uri.to_string(), detail },
        }
    }
}

/// True when the error chain holds a connection/timeout failure or a 5xx answer: the store
/// is down or overloaded, as opposed to refusing the request.
fn is_transport(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(http) = e.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            if !matches!(http.kind(), K::Unknown) {
                return true;
            }
        }
        if let Some(ioe) = e.downcast_ref::<io::Error>() {
            use io::ErrorKind as K;
            if matches!(
                ioe.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::TimedOut
                    | K::UnexpectedEof
                    | K::BrokenPipe
            ) {
                return true;
            }
        }
        // object_store keeps the status code inside a private type; its message is stable.
        // "error sending request" is reqwest's word for a request that never got an answer
        // (object_store leaves some such, e.g. a pooled connection the server just closed, as
        // `Unknown`): a store going down mid-download must read as down, not as a refusal.
        let msg = e.to_string();
        if msg.contains("status code: 5") || msg.contains("error response: 5") || msg.contains("error sending request") {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod transport_tests {
    use super::*;
    use object_store::client::{HttpError, HttpErrorKind};

    fn generic(kind: HttpErrorKind, message: &str) -> object_store::Error {
        let http = HttpError::new(kind, io::Error::other(message.to_string()));
        object_store::Error::Generic { store: "S3", source: Box::new(http) }
    }

    /// A request the store never answered is a retryable outage, whatever kind object_store
    /// gave it; an unknown failure with an answer is not.
    #[test]
    fn unanswered_requests_are_unreachable() {
        let uri = "s3://b/m/";
        for kind in [HttpErrorKind::Connect, HttpErrorKind::Request, HttpErrorKind::Interrupted] {
            assert!(matches!(Error::store(uri, generic(kind, "x")), Error::Unreachable { .. }));
        }
        let unsent = generic(HttpErrorKind::Unknown, "error sending request for url (http://127.0.0.1:1/b/m/model.bin)");
        assert!(matches!(Error::store(uri, unsent), Error::Unreachable { .. }));
        let other = generic(HttpErrorKind::Unknown, "invalid header value");
        assert!(matches!(Error::store(uri, other), Error::Store { .. }));
    }
}
