//! Errors as HTTP answers: the status follows DESIGN.md (4xx bad input, never retried; 429/503
//! with Retry-After, try later; other 5xx, a fault that may pass) and the body is OpenAI's
//! error shape, so OpenAI clients show the message.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::error::{bounded, Error};

#[derive(Debug)]
pub struct ApiError {
    pub error: Error,
    pub retry_after_seconds: u64,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// TINGXIE_RETRY_AFTER_SECONDS, set once at start.
pub static RETRY_AFTER_SECONDS: AtomicU64 = AtomicU64::new(2);

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let retry_after_seconds = match &error {
            Error::TenantLimit { retry_after, .. } => retry_after.as_secs_f64().ceil() as u64,
            _ => RETRY_AFTER_SECONDS.load(Ordering::Relaxed),
        };
        ApiError { error, retry_after_seconds }
    }
}

/// No standard status says "the client left"; 499 is nginx's, and what dashboards expect.
pub fn client_closed() -> StatusCode {
    StatusCode::from_u16(499).expect("499 is in the valid range")
}

/// Longest error message sent or logged: input quoted in messages is bounded where it is
/// quoted, and this bounds whatever slipped through (a parser's own message, say).
const MAX_MESSAGE_CHARS: usize = 1024;

/// Status and a short machine-readable code for each error.
pub fn classify(error: &Error) -> (StatusCode, &'static str) {
    let status = match error {
        Error::InvalidAudio(_) | Error::InvalidArgument { .. } | Error::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        Error::UnsupportedAudio(_) | Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Forbidden(_) | Error::OutputForbidden(_) | Error::TenantForbidden(_) => StatusCode::FORBIDDEN,
        Error::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        // nginx's "client closed request": counted apart from the server's own failures.
        Error::ClientGone(_) => client_closed(),
        Error::NotFound(_) | Error::NoSuchTranscription(_) => StatusCode::NOT_FOUND,
        Error::Store { retryable: false, .. } => StatusCode::FORBIDDEN,
        Error::Store { retryable: true, .. } => StatusCode::BAD_GATEWAY,
        Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Error::TenantLimit { .. } | Error::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Model(_) | Error::Io { .. } | Error::Device(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, error.code())
}

/// `{"error": {"message", "type", "param", "code"}}`.
pub fn error_body(error: &Error) -> serde_json::Value {
    let (status, code) = classify(error);
    let kind = match status.as_u16() {
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    let param = match error {
        Error::InvalidArgument { field, .. } => serde_json::json!(field),
        _ => serde_json::Value::Null,
    };
    let message = bounded(&error.to_string(), MAX_MESSAGE_CHARS);
    serde_json::json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

impl ApiError {
    /// A response of `status` with Retry-After when it asks for a retry. A batch answers with
    /// its worst event's status, not necessarily this error's.
    pub fn response_builder(&self, status: StatusCode) -> actix_web::HttpResponseBuilder {
        let mut response = HttpResponse::build(status);
        if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
            response.insert_header((header::RETRY_AFTER, self.retry_after_seconds.to_string()));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        classify(&self.error).0
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = self.response_builder(status);
        let error = bounded(&self.error.to_string(), MAX_MESSAGE_CHARS);
        if status.is_server_error() {
            tracing::error!(error, "request failed");
        } else {
            tracing::info!(error, status = status.as_u16(), "request refused");
        }
        response.json(error_body(&self.error))
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;
