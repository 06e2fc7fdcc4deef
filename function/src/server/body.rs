//! Request bodies, read only by a request that holds a queue place, and then as a stream
//! against three bounds: a byte limit (refused as soon as it is crossed, or at once from
//! Content-Length), a deadline (a client that stalls frees its place with 408) and the memory
//! that all buffered bodies may take together (429 past it).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::ServeConfig;
use crate::engine::Permit;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Memory is reserved in steps of this many bytes (the budget counts KiB).
const STEP: u64 = 1 << 20;

pub fn too_large(what: &str, limit: u64, setting: &str) -> Error {
    Error::TooLarge(format!("{what} is over the limit of {limit} bytes ({setting})"))
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

/// A connection that breaks mid-body is a client gone; anything else is a malformed body.
pub fn payload_error(e: PayloadError) -> Error {
    match e {
        PayloadError::Incomplete(_) | PayloadError::Io(_) => Error::ClientGone(format!("while sending the body ({e})")),
        other => Error::InvalidRequest(format!("reading the request body: {other}")),
    }
}

/// The body-reading bounds shared by every route.
pub struct Bodies {
    budget: Arc<Semaphore>,
    budget_bytes: u64,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

/// Memory reserved for one body, returned to the budget when dropped.
struct Reserved {
    _kib: tokio::sync::OwnedSemaphorePermit,
    bytes: u64,
    metrics: Arc<Metrics>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.metrics.body_bytes.sub(self.bytes as i64);
    }
}

/// When the whole body must have arrived.
#[derive(Clone, Copy)]
pub struct Deadline {
    at: Instant,
    seconds: u64,
}

impl Deadline {
    /// `future` (reading a body), or 408 once the deadline passes.
    pub async fn within<T>(self, future: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout_at(self.at, future).await.unwrap_or_else(|_| {
            Err(Error::BodyTimeout(format!("the request body did not arrive within {} s (TINGXIE_BODY_TIMEOUT_SECONDS)", self.seconds)))
        })
    }
}

impl Bodies {
    pub fn new(config: &ServeConfig, metrics: Arc<Metrics>) -> Bodies {
        // Never below one largest event (read and parsed), or it could never be served.
        let budget_bytes = config.body_memory_bytes.max(2 * config.event_body_limit());
        let kib = usize::try_from(budget_bytes.div_ceil(1024)).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        Bodies { budget: Arc::new(Semaphore::new(kib)), budget_bytes, timeout: Duration::from_secs(config.body_timeout_seconds), metrics }
    }

    /// Starts the clock on a request's body.
    pub fn deadline(&self) -> Deadline {
        Deadline { at: Instant::now() + self.timeout, seconds: self.timeout.as_secs() }
    }

    /// Takes `bytes` more of the budget for the request holding `permit`, or refuses (429).
    pub fn reserve(&self, permit: &mut Permit, bytes: u64) -> Result<()> {
        let kib = u32::try_from(bytes.div_ceil(1024)).map_err(|_| self.over_budget())?;
        let taken = self.budget.clone().try_acquire_many_owned(kib).map_err(|_| {
            self.metrics.rejected.with_label_values(&["body_memory"]).inc();
            self.over_budget()
        })?;
        self.metrics.body_bytes.add(bytes as i64);
        permit.hold(Reserved { _kib: taken, bytes, metrics: self.metrics.clone() });
        Ok(())
    }

    /// Grows a reservation of `reserved` bytes to cover `needed`, in steps, never past `limit`;
    /// returns the new reservation.
    pub fn reserve_up_to(&self, permit: &mut Permit, reserved: u64, needed: u64, limit: u64) -> Result<u64> {
        if needed <= reserved {
            return Ok(reserved);
        }
        let more = (needed - reserved).next_multiple_of(STEP).min(limit.saturating_sub(reserved)).max(needed - reserved);
        self.reserve(permit, more)?;
        Ok(reserved + more)
    }

    fn over_budget(&self) -> Error {
        Error::Busy(format!("request bodies in memory are at their limit of {} bytes (TINGXIE_BODY_MEMORY_BYTES)", self.budget_bytes))
    }

    /// Reads the whole body of a request that holds `permit`, reserving `copies` times its
    /// size: a JSON body is parsed into a second copy of about its size while the first is
    /// still held.
    pub async fn read(
        &self,
        req: &HttpRequest,
        mut payload: web::Payload,
        limit: u64,
        permit: &mut Permit,
        copies: u64,
    ) -> Result<Vec<u8>> {
        let declared = content_length(req);
        if declared.is_some_and(|len| len > limit) {
            return Err(too_large("the request body", limit, "TINGXIE_MAX_BODY_BYTES"));
        }
        let mut reserved = declared.unwrap_or(0);
        self.reserve(permit, reserved * copies)?;
        let read = async {
            let mut body = Vec::with_capacity(reserved as usize);
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(payload_error)?;
                let len = (body.len() + chunk.len()) as u64;
                if len > limit {
                    return Err(too_large("the request body", limit, "TINGXIE_MAX_BODY_BYTES"));
                }
                if len > reserved {
                    let more = self.reserve_up_to(permit, reserved, len, limit)? - reserved;
                    self.reserve(permit, more * (copies - 1))?;
                    reserved += more;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        self.deadline().within(read).await
    }
}
