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

pub async fn list(req: HttpRequest, service: web::Data<Service>) -> ApiResult<HttpResponse> {
    let caller = auth::tenant(&req, &service)?;
    let (asked, query) = query(req.query_string())?;
    // A closed service shows each tenant its own history; an open one has no tenants to
    // keep apart.
    let tenant = match asked {
        Some(asked) if *asked != *caller.name && service.tenants.closed() => {
            return Err(Error::TenantForbidden(format!("tenant `{}` may list only its own transcriptions", caller.name)).into())
        }
        Some(asked) => service.tenants.named(&asked)?.name,
        None => caller.name,
    };
    let page = service.history.list(&tenant, &query).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "object": "list",
        "first_id": page.data.first().map(|r| &r.id),
        "last_id": page.data.last().map(|r| &r.id),
        "has_more": page.has_more,
        "data": page.data,
    })))
}

pub async fn get(req: HttpRequest, id: web::Path<String>, service: web::Data<Service>) -> ApiResult<HttpResponse> {
    let tenant = auth::tenant(&req, &service)?;
    let (record, result) = service.history.get(&tenant.name, &id).await?;
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
