//! Health, metrics and the per-request middleware (metrics by route and status, a log span
//! carrying the W3C trace id).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use tracing::Instrument;

use crate::service::Service;

pub async fn liveness() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "alive"}))
}

/// 200 only when a request would be served without loading anything.
pub async fn readiness(service: web::Data<Service>) -> HttpResponse {
    if service.engine.is_ready() {
        let phases = service.engine.phases().map(|p| p.to_json());
        HttpResponse::Ok().json(serde_json::json!({"status": "ready", "model": &**service.catalog.default_name(), "cold_start": phases}))
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", service.config.retry_after_seconds.to_string()))
            .json(serde_json::json!({"status": "not ready"}))
    }
}

pub async fn metrics(service: web::Data<Service>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(service.metrics.render())
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let message = format!("no route for {} {}", req.method(), crate::error::bounded(req.path(), 256));
    HttpResponse::NotFound()
        .json(serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "no_route"}}))
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), or a new one:
/// every request's log lines can be found by one id, which the reply names (`x-trace-id`).
fn trace_id(req: &ServiceRequest) -> String {
    traceparent_id(req).unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

fn traceparent_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get("traceparent")?.to_str().ok()?;
    let id = value.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != "0".repeat(32)).then(|| id.to_ascii_lowercase())
}

struct Inflight<'a>(&'a prometheus::IntGauge);

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub async fn observe(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let service = req.app_data::<web::Data<Service>>().cloned().expect("service data is registered");
    let route = req.match_pattern().unwrap_or_else(|| "other".into());
    let trace_id = trace_id(&req);
    let method = req.method().to_string();
    let span = tracing::info_span!("request", trace_id = %trace_id, method = %method, route = %route);
    let started = Instant::now();
    service.metrics.inflight.inc();
    let _inflight = Inflight(&service.metrics.inflight);
    let mut response = next.call(req).instrument(span.clone()).await?;
    if let Ok(value) = HeaderValue::from_str(&trace_id) {
        response.headers_mut().insert(HeaderName::from_static("x-trace-id"), value);
    }
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    // One access line per request, complete in itself; probes and scrapes only at debug, they
    // come every few seconds.
    if route.starts_with("/health") || route == "/metrics" {
        tracing::debug!(parent: &span, %trace_id, %method, %route, status, seconds, "request");
    } else {
        tracing::info!(parent: &span, %trace_id, %method, %route, status, seconds, "request");
    }
    let status = status.to_string();
    service.metrics.http_requests.with_label_values(&[route.as_str(), status.as_str()]).inc();
    service.metrics.http_duration.with_label_values(&[route.as_str()]).observe(seconds);
    Ok(response)
}
