//! Who a request is from, from its headers: the HTTP side of [`crate::tenants`] and
//! [`crate::oidc`].

use actix_web::HttpRequest;

use crate::error::{Error, Result};
use crate::oidc::looks_like_jwt;
use crate::service::Service;
use crate::tenants::{bearer, Tenant};

fn header<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn unauthorized(service: &Service, error: Error) -> Error {
    service.metrics.rejected.with_label_values(&["unauthorized"]).inc();
    error
}

/// An API request's tenant: the trusted header, or the API key (401 when neither is valid and
/// the service is closed).
pub fn tenant(req: &HttpRequest, service: &Service) -> Result<Tenant> {
    let trusted = service.tenants.header().and_then(|name| header(req, name));
    service.tenants.identify(header(req, "authorization"), trusted).map_err(|e| unauthorized(service, e))
}

/// Who sent a delivery to `POST /`, which decides whose its events are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A tenant's key or the trusted header: every event is that tenant's.
    Caller,
    /// The platform, proven by an OIDC token: an event names its tenant (attribute, bucket).
    Platform,
    /// Nobody proven, on an open service: an event may name a listed tenant only.
    Anonymous,
}

/// The tenant a delivery to `POST /` is admitted for, and its sender. On a closed service a
/// delivery needs a key, the trusted header or the platform's OIDC token: 401 before anything
/// is read or computed otherwise.
pub async fn delivery_tenant(req: &HttpRequest, service: &Service) -> Result<(Tenant, Sender)> {
    let tenants = &service.tenants;
    let authorization = header(req, "authorization");
    let trusted = tenants.header().is_some_and(|name| header(req, name).is_some());
    let token = authorization.and_then(bearer).filter(|t| looks_like_jwt(t) && !trusted && !tenants.is_key(t));
    if let (Some(oidc), Some(token)) = (&service.oidc, token) {
        oidc.verify(token).await.map_err(|e| unauthorized(service, e))?;
        return Ok((platform_tenant(req, service)?, Sender::Platform));
    }
    if trusted || tenants.closed() {
        let hint = if service.oidc.is_some() { "" } else { " (events from the platform need TINGXIE_OIDC_ISSUER)" };
        return match tenant(req, service) {
            Ok(tenant) => Ok((tenant, Sender::Caller)),
            Err(Error::Unauthorized(message)) => Err(Error::Unauthorized(format!("{message}{hint}"))),
            Err(other) => Err(other),
        };
    }
    Ok((tenants.anonymous(), Sender::Anonymous))
}

/// A platform delivery's tenant: the binary-mode `ce-tenant` attribute, else anonymous (each
/// event may still name its own).
fn platform_tenant(req: &HttpRequest, service: &Service) -> Result<Tenant> {
    match header(req, "ce-tenant") {
        Some(name) => service.tenants.named(name.trim()),
        None => Ok(service.tenants.anonymous()),
    }
}
