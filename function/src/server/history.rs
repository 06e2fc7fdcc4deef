//! `GET /v1/transcriptions` (a tenant's history, newest first, in OpenAI's list shape) and
//! `GET /v1/transcriptions/{id}` (one record, with the transcript of an asynchronous job).

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth;
use super::errors::ApiResult;
use crate::error::{bounded, quote, Error, Result, QUOTE_CHARS};
use crate::history::{Query, Record};
use crate::service::Service;

fn invalid(field: &'static str, reason: String) -> Error {
    Error::InvalidArgument { field, reason }
}

/// `tenant`, `since` (Unix seconds), `status`, `limit` (1-100, default 20), `after` (an id).
fn query(text: &str) -> Result<(Option<String>, Query)> {
    let mut tenant = None;
    let mut query = Query { limit: 20, ..Default::default() };
    for (name, value) in url::form_urlencoded::parse(text.as_bytes()) {
        match &*name {
            "tenant" => tenant = Some(value.to_string()),
            "since" => {
                let since = value.trim().parse::<f64>().ok().filter(|s| s.is_finite());
                query.since = Some(since.ok_or_else(|| invalid("since", format!("{} is not a time in Unix seconds", quote(&value))))?);
            }
            "status" => query.status = Some(value.parse().map_err(|e| invalid("status", format!("{} {e}", quote(&value))))?),
            "limit" => {
                let limit = value.trim().parse::<usize>().ok().filter(|l| (1..=100).contains(l));
                query.limit = limit.ok_or_else(|| invalid("limit", format!("{} is not a whole number from 1 to 100", quote(&value))))?;
            }
            "after" => query.after = Some(value.to_string()),
            _ => return Err(Error::InvalidRequest(format!("unknown query parameter `{}`", bounded(&name, QUOTE_CHARS)))),
        }
    }
    Ok((tenant, query))
}

/// The tenant whose history a request reads: the caller's own; on an open service (no
/// tenants to keep apart) whichever `tenant` names.
fn whose(req: &HttpRequest, service: &Service, asked: Option<String>) -> Result<std::sync::Arc<str>> {
    let caller = auth::tenant(req, service)?;
    match asked {
        Some(asked) if *asked != *caller.name && service.tenants.closed() => {
            Err(Error::TenantForbidden(format!("tenant `{}` may see only its own transcriptions", caller.name)))
        }
        Some(asked) => Ok(service.tenants.named(&asked)?.name),
        None => Ok(caller.name),
    }
}

pub async fn list(req: HttpRequest, service: web::Data<Service>) -> ApiResult<HttpResponse> {
    let (asked, query) = query(req.query_string())?;
    let tenant = whose(&req, &service, asked)?;
    let page = service.history.list(&tenant, &query).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "object": "list",
        "first_id": page.data.first().map(|r| &r.id),
        "last_id": page.data.last().map(|r| &r.id),
        "has_more": page.has_more,
        "data": page.data,
    })))
}

/// `GET /v1/transcriptions/{id}?tenant=`.
pub async fn get(req: HttpRequest, id: web::Path<String>, service: web::Data<Service>) -> ApiResult<HttpResponse> {
    let mut asked = None;
    for (name, value) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match &*name {
            "tenant" => asked = Some(value.to_string()),
            _ => return Err(Error::InvalidRequest(format!("unknown query parameter `{}`", bounded(&name, QUOTE_CHARS))).into()),
        }
    }
    let tenant = whose(&req, &service, asked)?;
    let (record, result) = service.history.get(&tenant, &id).await?;
    let mut body = serde_json::to_value(record).expect("records serialise");
    if let Some(result) = result {
        body["text"] = result["text"].clone();
        body["result"] = result;
    }
    Ok(HttpResponse::Ok().json(body))
}

/// 202 for an asynchronous job: its record, and where to find it.
pub fn accepted(record: &Record) -> HttpResponse {
    HttpResponse::Accepted().insert_header(("location", format!("/v1/transcriptions/{}", record.id))).json(record)
}
