//! `tingxie serve`: the HTTP face of the service (actix-web). Handlers move bytes; the engine
//! thread computes. The port is bound at once (liveness answers while the model loads);
//! readiness turns true when the engine is warm. SIGTERM: readiness off, new work answered
//! 503, in-flight work finishes within the grace period, exit 0.

mod auth;
mod body;
mod errors;
mod events;
mod history;
mod openai;
mod ops;
mod peer;
mod replay;
mod transcribe;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use tingxie_model_cache::CacheConfig;

pub use events::check_event_id;
pub use openai::check_boundary;

use crate::catalog::Catalog;
use crate::config::ServeConfig;
use crate::engine::Engine;
use crate::history::History;
use crate::metrics::Metrics;
use crate::objects::Objects;
use crate::service::{instance_name, Service};
use crate::startup::Phases;
use crate::tenants::Tenants;
use body::Bodies;
use replay::Replayed;

pub fn serve(config: ServeConfig) -> ExitCode {
    let mut phases = Phases::start();
    init_logging(&config.log);
    errors::RETRY_AFTER_SECONDS.store(config.retry_after_seconds, Ordering::Relaxed);
    let catalog = match Catalog::from_config(&config) {
        Ok(catalog) => Arc::new(catalog),
        Err(e) => {
            tracing::error!(error = %e, "the model catalog is invalid");
            return ExitCode::FAILURE;
        }
    };
    let tenants = match Tenants::from_config(&config.tenants, &config.tenant_header) {
        Ok(tenants) => tenants,
        Err(e) => {
            tracing::error!(error = %e, "the tenants are invalid");
            return ExitCode::FAILURE;
        }
    };
    let oidc = match crate::oidc::OidcVerifier::new(&config.oidc_issuer, &config.oidc_audience, &config.oidc_jwks) {
        Ok(oidc) => oidc,
        Err(e) => {
            tracing::error!(error = %e, "the OIDC settings are invalid");
            return ExitCode::FAILURE;
        }
    };
    if oidc.is_none() && tenants.closed() {
        tracing::info!("TINGXIE_OIDC_ISSUER is empty: deliveries to POST / need a tenant's key like the API");
    }
    let history = match History::open(&config.history, &CacheConfig::from_env(), config.claim_lease(), &instance_name()) {
        Ok(history) => history,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the history (TINGXIE_HISTORY)");
            return ExitCode::FAILURE;
        }
    };
    let metrics = Arc::new(Metrics::new());
    let objects = Objects::new(CacheConfig::from_env(), &config.allowed_sources, &config.output, &config.allowed_outputs)
        .with_read_timeout(std::time::Duration::from_secs(config.source_timeout_seconds.max(1)));
    if objects.allow.is_empty() {
        tracing::info!("TINGXIE_ALLOWED_SOURCES is empty: only audio sent in requests is transcribed");
    }
    metrics.build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), &**catalog.default_name(), &config.device.to_string()]).set(1);
    phases.lap("config");
    // Places for the priority class only when some tenant has it.
    let reserved = if tenants.has_priority() { config.priority_places } else { 0 };
    let engine = Engine::start(&config, catalog.clone(), metrics.clone(), phases, reserved);
    let bodies = web::Data::new(Bodies::new(&config, metrics.clone()));
    let replayed = web::Data::new(Replayed::default());
    let service =
        web::Data::new(Service::new(config.clone(), catalog, engine.clone(), objects, metrics.clone(), tenants, history).with_oidc(oidc));
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        actix_web::rt::spawn(service.clone().into_inner().sweep_callbacks());
        let app_service = service.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_service.clone())
                .app_data(bodies.clone())
                .app_data(replayed.clone())
                .wrap(actix_web::middleware::from_fn(ops::observe))
                .route("/", web::post().to(events::receive))
                .route("/transcribe", web::post().to(transcribe::transcribe))
                .route("/v1/audio/transcriptions", web::post().to(openai::transcriptions))
                .route("/v1/audio/translations", web::post().to(openai::translations))
                .route("/v1/models", web::get().to(openai::models))
                .route("/v1/transcriptions", web::get().to(history::list))
                .route("/v1/transcriptions/{id}", web::get().to(history::get))
                .route("/health/liveness", web::get().to(ops::liveness))
                .route("/health/readiness", web::get().to(ops::readiness))
                .route("/metrics", web::get().to(ops::metrics))
                .default_service(web::to(ops::not_found))
        })
        .on_connect(peer::record)
        .workers(config.http_workers.max(1))
        .disable_signals()
        .shutdown_timeout(config.shutdown_grace_seconds)
        .bind((config.bind.as_str(), config.port))?
        .run();
        tracing::info!(port = config.port, model = %config.model, device = %config.device, "listening");
        let handle = server.handle();
        actix_web::rt::spawn(async move {
            wait_for_termination().await;
            tracing::info!(grace_seconds = config.shutdown_grace_seconds, "terminating: readiness off, finishing in-flight work");
            engine.drain();
            // The listener stays open meanwhile: new work gets 503 + Retry-After (and goes to
            // another pod), never a refused connection.
            let deadline = std::time::Instant::now() + config.shutdown_grace();
            while metrics.inflight.get() > 0 && std::time::Instant::now() < deadline {
                actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            handle.stop(true).await;
        });
        server.await
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the process still stops on the default action.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// JSON lines on stdout; the fields of the enclosing spans (trace id, CloudEvent id) on every
/// line.
fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_current_span(false).with_span_list(true).try_init();
}
