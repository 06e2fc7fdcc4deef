//! The tenant of a request, from its headers: the HTTP side of [`crate::tenants`].

use actix_web::HttpRequest;

use crate::error::Result;
use crate::service::Service;
use crate::tenants::Tenant;

fn header<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// An API request's tenant: the trusted header, or the API key (401 when neither is valid and
/// the service is closed).
pub fn tenant(req: &HttpRequest, service: &Service) -> Result<Tenant> {
    let trusted = service.tenants.header().and_then(|name| header(req, name));
    service.tenants.identify(header(req, "authorization"), trusted).inspect_err(|_| {
        service.metrics.rejected.with_label_values(&["unauthorized"]).inc();
    })
}

/// The tenant a delivery to `POST /` is for, and whether its caller authenticated. A key or
/// the trusted header makes it the caller's; otherwise it comes from the platform (the broker,
/// which the mesh policy admits), named by a binary-mode `ce-tenant` attribute or anonymous,
/// and each event may name its own tenant (its `tenant` attribute or its bucket).
pub fn delivery_tenant(req: &HttpRequest, service: &Service) -> Result<(Tenant, bool)> {
    let trusted = service.tenants.header().and_then(|name| header(req, name)).is_some();
    if trusted || (service.tenants.closed() && header(req, "authorization").is_some()) {
        return Ok((tenant(req, service)?, true));
    }
    let tenant = match header(req, "ce-tenant") {
        Some(name) => service.tenants.named(name.trim())?,
        None => service.tenants.anonymous(),
    };
    Ok((tenant, false))
}
