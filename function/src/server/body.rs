//! Request bodies, read only by a request that holds a queue place, and then as a stream
//! against three bounds: a byte limit (refused as soon as it is crossed, or at once from
//! Content-Length), a deadline (a client that stalls frees its place with 408) and the memory
//! that all buffered bodies may take together (429 past it).
//!
//! A body's share of that memory is reserved as its bytes arrive, a [`STEP`] at a time, never
//! from its Content-Length: one largest event, read and parsed, is the whole budget, so a client
//! that declared one and sent it slowly would otherwise turn everyone else away with 429 until
//! its deadline. Capping one request's share instead (at half the budget) would refuse that
//! event or double the budget. A slow client holds what it has sent, for its deadline at most.

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

/// Memory reserved for a body, returned to the budget when dropped.
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

    /// Takes `bytes` of the budget, or refuses (429).
    fn take(&self, bytes: u64) -> Result<Reserved> {
        let kib = u32::try_from(bytes.div_ceil(1024)).map_err(|_| self.over_budget())?;
        let taken = self.budget.clone().try_acquire_many_owned(kib).map_err(|_| {
            self.metrics.rejected.with_label_values(&["body_memory"]).inc();
            self.over_budget()
        })?;
        self.metrics.body_bytes.add(bytes as i64);
        Ok(Reserved { _kib: taken, bytes, metrics: self.metrics.clone() })
    }

    /// Grows a reservation of `reserved` bytes to cover `needed`, in steps, never past `limit`,
    /// for the request holding `permit`; returns the new reservation.
    pub fn reserve_up_to(&self, permit: &mut Permit, reserved: u64, needed: u64, limit: u64) -> Result<u64> {
        let more = step(reserved, needed, limit);
        if more > 0 {
            permit.hold(self.take(more)?);
        }
        Ok(reserved + more)
    }

    fn over_budget(&self) -> Error {
        Error::Busy(format!("request bodies in memory are at their limit of {} bytes (TINGXIE_BODY_MEMORY_BYTES)", self.budget_bytes))
    }

    /// Reads the whole body of a request that holds `permit`, reserving `copies` times its
    /// size as it arrives: a JSON body is parsed into a second copy of about its size while the
    /// first is still held.
    pub async fn read(&self, req: &HttpRequest, payload: web::Payload, limit: u64, permit: &mut Permit, copies: u64) -> Result<Vec<u8>> {
        let (body, reserved) = self.deadline().within(self.read_reserving(content_length(req), payload, limit, copies)).await?;
        permit.hold(reserved);
        Ok(body)
    }

    /// The body and the reservations it took (freed if the read fails).
    async fn read_reserving(
        &self,
        declared: Option<u64>,
        mut payload: web::Payload,
        limit: u64,
        copies: u64,
    ) -> Result<(Vec<u8>, Vec<Reserved>)> {
        if declared.is_some_and(|len| len > limit) {
            return Err(too_large("the request body", limit, "TINGXIE_MAX_BODY_BYTES"));
        }
        // Steps never pass the declared length (actix ends the body there).
        let most = declared.unwrap_or(limit);
        let (mut reserved, mut taken) = (0, Vec::new());
        // Pages of the capacity are only resident once written, as the bytes arrive.
        let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(payload_error)?;
            let len = (body.len() + chunk.len()) as u64;
            if len > limit {
                return Err(too_large("the request body", limit, "TINGXIE_MAX_BODY_BYTES"));
            }
            let more = step(reserved, len, most);
            if more > 0 {
                taken.push(self.take(more * copies)?);
                reserved += more;
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, taken))
    }
}

/// Bytes to add to a reservation of `reserved` so that it covers `needed`: whole steps, not
/// past `limit` unless `needed` is.
fn step(reserved: u64, needed: u64, limit: u64) -> u64 {
    if needed <= reserved {
        return 0;
    }
    (needed - reserved).next_multiple_of(STEP).min(limit.saturating_sub(reserved)).max(needed - reserved)
}

#[cfg(test)]
mod tests {
    use actix_web::{dev, FromRequest};
    use bytes::Bytes;
    use clap::Parser;
    use futures::channel::mpsc;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ServeConfig,
    }

    /// Bodies with the smallest budget: one largest event, read and parsed.
    fn bodies(max_body: u64) -> Bodies {
        let cli = Cli::parse_from(["tingxie", "--body-memory-bytes", "0", "--max-body-bytes", &max_body.to_string()]);
        Bodies::new(&cli.config, Arc::new(Metrics::new()))
    }

    /// A body whose bytes the test sends when it likes.
    async fn streamed() -> (mpsc::UnboundedSender<std::result::Result<Bytes, PayloadError>>, web::Payload) {
        let (tx, rx) = mpsc::unbounded();
        let req = actix_web::test::TestRequest::default().to_http_request();
        let payload = web::Payload::from_request(&req, &mut dev::Payload::Stream { payload: Box::pin(rx) }).await.unwrap();
        (tx, payload)
    }

    async fn whole(bytes: usize) -> web::Payload {
        let (tx, payload) = streamed().await;
        tx.unbounded_send(Ok(Bytes::from(vec![b'x'; bytes]))).unwrap();
        payload
    }

    fn held(bodies: &Bodies) -> u64 {
        bodies.metrics.body_bytes.get() as u64
    }

    #[tokio::test]
    async fn a_declared_length_is_reserved_as_its_bytes_arrive() {
        let max_body = 3 * STEP;
        let bodies = bodies(max_body);
        let largest = bodies.budget_bytes / 2;
        // A client declares the largest event and sends a little of it, then stalls.
        let (slow_tx, slow_payload) = streamed().await;
        let slow = bodies.read_reserving(Some(largest), slow_payload, largest, 2);
        tokio::pin!(slow);
        slow_tx.unbounded_send(Ok(Bytes::from(vec![b'{'; 1000]))).unwrap();
        assert!(futures::poll!(&mut slow).is_pending());
        assert_eq!(held(&bodies), 2 * STEP, "one step, twice (JSON is parsed into a second copy)");

        // Meanwhile another client's largest audio body is read in full.
        let (body, other) = bodies.read_reserving(Some(max_body), whole(max_body as usize).await, max_body, 1).await.unwrap();
        assert_eq!((body.len() as u64, held(&bodies)), (max_body, 2 * STEP + max_body));
        drop(other);

        // The slow body, once whole, holds its size twice; all of it is freed with it.
        slow_tx.unbounded_send(Ok(Bytes::from(vec![b'x'; largest as usize - 1000]))).unwrap();
        drop(slow_tx);
        let (body, reserved) = slow.await.unwrap();
        assert_eq!((body.len() as u64, held(&bodies)), (largest, 2 * largest));
        drop(reserved);
        assert_eq!(held(&bodies), 0);
    }

    #[tokio::test]
    async fn reservations_stop_at_the_declared_length_and_the_budget() {
        let bodies = bodies(3 * STEP);
        // A short declared body reserves its length, not a step; one of unknown length a step.
        let (_, short) = bodies.read_reserving(Some(1000), whole(1000).await, 3 * STEP, 2).await.unwrap();
        assert_eq!(held(&bodies), 2000);
        let (_, unknown) = bodies.read_reserving(None, whole(1000).await, 3 * STEP, 1).await.unwrap();
        assert_eq!(held(&bodies), 2000 + STEP);
        drop((short, unknown));
        // Past the byte limit: 413, declared or counted.
        let too_large = bodies.read_reserving(Some(3 * STEP + 1), whole(1).await, 3 * STEP, 1).await;
        assert!(matches!(too_large, Err(Error::TooLarge(_))));
        let too_large = bodies.read_reserving(None, whole(3 * STEP as usize + 1).await, 3 * STEP, 1).await;
        assert!(matches!(too_large, Err(Error::TooLarge(_))));
        // Past the budget: 429, and what the failed read had taken is back.
        let all = bodies.take(bodies.budget_bytes - STEP / 2).unwrap();
        let busy = bodies.read_reserving(None, whole(STEP as usize).await, 3 * STEP, 1).await;
        assert!(matches!(busy, Err(Error::Busy(_))));
        drop(all);
        assert_eq!(held(&bodies), 0);
    }

    #[test]
    fn steps_cover_what_arrived_within_the_limit() {
        assert_eq!(step(0, 1, 10 * STEP), STEP);
        assert_eq!(step(STEP, STEP, 10 * STEP), 0);
        assert_eq!(step(STEP, STEP + 1, 10 * STEP), STEP);
        assert_eq!(step(0, 10, 100), 100);
        assert_eq!(step(0, 200, 100), 200, "never less than what arrived");
    }
}
