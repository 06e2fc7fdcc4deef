//! Request bodies read as a stream against a byte limit: a body over the limit is refused as
//! soon as the limit is crossed (or at once, from Content-Length), never buffered further.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures::StreamExt;

use crate::error::{Error, Result};

pub fn too_large(what: &str, limit: u64) -> Error {
    Error::TooLarge(format!("{what} is over the limit of {limit} bytes (TINGXIE_MAX_BODY_BYTES)"))
}

/// The declared length, when the client sent one.
pub fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The media type without parameters, lower case (`audio/ogg` for `audio/ogg; codecs=opus`).
pub fn media_type(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

pub async fn read_limited(req: &HttpRequest, mut payload: web::Payload, limit: u64) -> Result<Vec<u8>> {
    let declared = content_length(req);
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large("the request body", limit));
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Error::InvalidRequest(format!("reading the request body: {e}")))?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large("the request body", limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
