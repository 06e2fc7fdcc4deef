//! Azure Blob Storage through Event Grid: `Microsoft.Storage.BlobCreated`, either as a
//! CloudEvent (`source` = `/subscriptions/.../storageAccounts/ACCOUNT`, `subject` =
//! `blobServices/default/containers/C/blobs/NAME`) or in the Event Grid schema (an array
//! of `{"topic", "subject": "/blobServices/...", "eventType", "data"}` posted to a webhook).
//! The subject holds the blob name unencoded; `data.url` holds it percent-encoded and is
//! the fallback.

use serde_json::Value;

use super::json::{self, Obj};
use super::object::{check_bucket, Scheme};
use super::s3::skip_reason;
use super::{collect, EventError, Job, ObjectRef, Outcome, Parsed};
use crate::error::quote;

pub(super) const BLOB_CREATED: &str = "Microsoft.Storage.BlobCreated";
const VALIDATION: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";
const EVENTGRID: &str = "eventgrid";

/// A CloudEvents-schema `Microsoft.Storage.BlobCreated`.
pub(super) fn parse(ty: &str, source: &str, subject: Option<&str>, data: &Value) -> Result<Parsed, EventError> {
    let m = json::as_obj(ty, "", data)?;
    Ok(collect(vec![blob_created(ty, "data", m, subject, Some(source))?]))
}

/// Event Grid schema: an array of events (or one). Other event types are ignored.
pub(super) fn eventgrid_array(body: &Value) -> Result<Parsed, EventError> {
    let events: Vec<&Value> = match body {
        Value::Array(list) => list.iter().collect(),
        one => vec![one],
    };
    if events.is_empty() {
        return Ok(Parsed::Ignored { reason: "Event Grid delivery with no events".into() });
    }
    let mut outcomes = Vec::with_capacity(events.len());
    for (i, e) in events.into_iter().enumerate() {
        let path = format!("[{i}]");
        let m = json::as_obj(EVENTGRID, &path, e)?;
        let event_type = json::req_str(EVENTGRID, m, &path, "eventType")?;
        if event_type != BLOB_CREATED {
            let hint = if event_type == VALIDATION { " (answer it with eventgrid_validation_code)" } else { "" };
            // Quoted: a reason is sent back as a header, which takes no control characters.
            outcomes.push(Outcome::Skip(format!("{path}: {} is not a blob creation{hint}", quote(event_type))));
            continue;
        }
        let subject = json::opt_str(EVENTGRID, m, &path, "subject")?;
        let topic = json::opt_str(EVENTGRID, m, &path, "topic")?;
        let data_path = json::join(&path, "data");
        let data = json::req_obj(EVENTGRID, m, &path, "data")?;
        outcomes.push(blob_created(EVENTGRID, &data_path, data, subject, topic)?);
    }
    Ok(collect(outcomes))
}

pub(super) fn validation_code(body: &Value) -> Option<String> {
    let first = match body {
        Value::Array(list) => list.first()?,
        one => one,
    };
    if first.get("eventType")?.as_str()? != VALIDATION {
        return None;
    }
    Some(first.get("data")?.get("validationCode")?.as_str()?.to_string())
}

fn blob_created(ty: &str, path: &str, data: &Obj, subject: Option<&str>, topic: Option<&str>) -> Result<Outcome, EventError> {
    let api = json::opt_str(ty, data, path, "api")?;
    // Data Lake (hierarchical namespace) raises BlobCreated for CreateFile with no content
    // yet; the content arrives with FlushWithClose, which raises its own event.
    if api == Some("CreateFile") {
        return Ok(Outcome::Skip(format!("{path}: CreateFile (content follows with FlushWithClose)")));
    }
    let size = json::opt_u64(ty, data, path, "contentLength")?;
    let url = json::opt_str(ty, data, path, "url")?;
    let url_field = json::join(path, "url");
    let from_url = match url {
        Some(u) => Some(split_url(u).map_err(|r| json::invalid(ty, &url_field, r))?),
        None => None,
    };
    let (container, blob) = match subject.and_then(split_subject) {
        Some(cb) => cb,
        None => match &from_url {
            Some((_, c, b)) => (c.clone(), b.clone()),
            None if subject.is_some() => return Err(json::invalid(ty, "subject", "expected blobServices/default/containers/C/blobs/NAME")),
            None => return Err(json::missing(ty, url_field)),
        },
    };
    let account = topic.and_then(account_from_topic).or_else(|| from_url.and_then(|(a, _, _)| a));
    if let Some(reason) = skip_reason(path, &blob, size) {
        return Ok(Outcome::Skip(reason));
    }
    check_bucket(&container).map_err(|r| json::invalid(ty, "subject", r))?;
    let mut obj = ObjectRef::new(Scheme::Az, &container, &blob).map_err(|r| json::invalid(ty, "subject", r))?;
    obj.size = size;
    obj.etag = json::etag(json::opt_str(ty, data, path, "eTag")?);
    obj.account = account;
    let name = format!("BlobCreated:{}", api.unwrap_or("unknown"));
    Ok(Outcome::Job(Job::object(obj, Some(name))))
}

/// `[/]blobServices/default/containers/{container}/blobs/{name}` -> (container, name).
fn split_subject(subject: &str) -> Option<(String, String)> {
    let s = subject.strip_prefix('/').unwrap_or(subject);
    let (container, blob) = s.strip_prefix("blobServices/default/containers/")?.split_once("/blobs/")?;
    Some((container.to_string(), blob.to_string()))
}

/// `.../providers/Microsoft.Storage/storageAccounts/{account}` -> account.
fn account_from_topic(topic: &str) -> Option<String> {
    let (_, rest) = topic.split_once("/storageAccounts/")?;
    let account = rest.split('/').next()?;
    (!account.is_empty()).then(|| account.to_string())
}

/// `https://{account}.blob.core.windows.net/{container}/{blob}` (also `.dfs.`, sovereign
/// clouds), or Azurite's path style `http://127.0.0.1:10000/{account}/{container}/{blob}`.
fn split_url(u: &str) -> Result<(Option<String>, String, String), String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("not a URL: {e}"))?;
    let host = parsed.host_str().ok_or("URL has no host")?;
    let mut segs: Vec<String> = Vec::new();
    for seg in parsed.path_segments().into_iter().flatten() {
        let seg = percent_encoding::percent_decode_str(seg).decode_utf8().map_err(|_| "URL path is not UTF-8 once decoded")?;
        segs.push(seg.into_owned());
    }
    let path_style = parsed.host().is_some_and(|h| !matches!(h, url::Host::Domain(_))) || host == "localhost";
    let account = if path_style {
        if segs.is_empty() {
            return Err("URL names no account".into());
        }
        Some(segs.remove(0))
    } else {
        host.split('.').next().filter(|a| !a.is_empty()).map(str::to_string)
    };
    if segs.len() < 2 {
        return Err("URL names no container and blob".into());
    }
    let container = segs.remove(0);
    Ok((account, container, segs.join("/")))
}
