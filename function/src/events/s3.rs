//! Amazon S3 and S3-compatible stores: notification records (S3 to SNS/SQS/Lambda/webhook,
//! MinIO, TriggerMesh), EventBridge `Object Created` events, and the Knative aws-s3
//! connector, which sends the object's bytes rather than a notification.
//!
//! Keys in notification records are `application/x-www-form-urlencoded` (`red flower.jpg`
//! arrives as `red+flower.jpg`, MinIO also writes `/` as `%2F`); EventBridge `detail`
//! keys are encoded the same way in practice, so both are decoded alike.

use serde_json::Value;

use super::json::{self, Obj};
use super::object::{check_bucket, form_decode, Scheme};
use super::{collect, EventData, EventError, Job, ObjectRef, Outcome, Parsed};
use crate::error::quote;

pub(super) const TRIGGERMESH_S3: &str = "com.amazon.s3.objectcreated";
pub(super) const TRIGGERMESH_EVENTBRIDGE: &str = "com.amazon.events.event";
pub(super) const KNATIVE_CONNECTOR_S3: &str = "dev.knative.connector.event.aws-s3";
pub(super) const KNATIVE_CONNECTOR_S3_OLD: &str = "dev.knative.eventing.aws-s3";
pub(super) const AWS_S3_OBJECT_CREATED: &str = "aws.s3.object.created";
/// The CloudEvents spec's S3 adapter names types `com.amazonaws.s3.` + eventName.
pub(super) const CE_ADAPTER_PREFIX: &str = "com.amazonaws.s3.";

/// A webhook body with `Records`: MinIO when it has MinIO's `EventName`, else S3.
pub(super) fn notification(body: &Value) -> Result<Parsed, EventError> {
    let m = json::as_obj("s3-notification", "", body)?;
    let ty = if m.contains_key("EventName") { "minio-notification" } else { "s3-notification" };
    records(ty, m)
}

/// CloudEvent data from S3-record types: `{"Records":[...]}`, one record, a record's `s3`
/// part, or an EventBridge event or its `detail` (producers differ).
pub(super) fn any_s3_shape(ty: &str, data: &Value) -> Result<Parsed, EventError> {
    let m = json::as_obj(ty, "", data)?;
    if m.contains_key("Records") {
        records(ty, m)
    } else if m.contains_key("detail-type") {
        eventbridge_envelope(ty, data)
    } else if m.contains_key("s3") {
        Ok(collect(vec![record(ty, "", m)?]))
    } else if m.contains_key("bucket") && m.contains_key("object") {
        Ok(collect(vec![bucket_object(ty, "", m, Some(ty.to_string()))?]))
    } else {
        Err(json::invalid_data(
            ty,
            "expected an S3 notification ({\"Records\": [...]}), one record ({\"s3\": ...}), \
             or an EventBridge S3 event ({\"detail-type\": ..., \"detail\": ...})",
        ))
    }
}

fn records(ty: &str, m: &Obj) -> Result<Parsed, EventError> {
    let Some(list) = m.get("Records") else {
        return Err(json::missing(ty, "Records"));
    };
    let Some(list) = list.as_array() else {
        return Err(json::invalid(ty, "Records", format!("expected an array, got {}", json::describe(list))));
    };
    if list.is_empty() {
        return Ok(Parsed::Ignored { reason: "notification has no records".into() });
    }
    let outcomes = list
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = format!("Records[{i}]");
            record(ty, &path, json::as_obj(ty, &path, r)?)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(collect(outcomes))
}

/// `ObjectCreated:Put` (AWS) or `s3:ObjectCreated:Put` (MinIO, Ceph).
fn is_created(event_name: &str) -> bool {
    let n = event_name.strip_prefix("s3:").unwrap_or(event_name);
    n == "ObjectCreated" || n.starts_with("ObjectCreated:")
}

fn record(ty: &str, path: &str, m: &Obj) -> Result<Outcome, EventError> {
    let event_name = json::opt_str(ty, m, path, "eventName")?;
    if let Some(name) = event_name {
        if !is_created(name) {
            // Quoted: a reason is sent back as a header, which takes no control characters.
            return Ok(Outcome::Skip(format!("{}{} is not an object creation", at(path), quote(name))));
        }
    }
    let s3_path = json::join(path, "s3");
    let s3 = json::req_obj(ty, m, path, "s3")?;
    bucket_object(ty, &s3_path, s3, event_name.map(str::to_string))
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// `{"bucket": {"name"}, "object": {"key", "size", "eTag"|"etag", "versionId"|"version-id"}}`:
/// a record's `s3` part and an EventBridge `detail` differ only in those two names.
fn bucket_object(ty: &str, path: &str, m: &Obj, event_name: Option<String>) -> Result<Outcome, EventError> {
    let bucket_path = json::join(path, "bucket");
    let bucket = json::req_obj(ty, m, path, "bucket")?;
    let bucket = json::req_str(ty, bucket, &bucket_path, "name")?;
    check_bucket(bucket).map_err(|r| json::invalid(ty, json::join(&bucket_path, "name"), r))?;
    let obj_path = json::join(path, "object");
    let object = json::req_obj(ty, m, path, "object")?;
    let key_field = json::join(&obj_path, "key");
    let raw_key = json::req_str(ty, object, &obj_path, "key")?;
    let key = form_decode(raw_key).map_err(|r| json::invalid(ty, &key_field, r))?;
    let size = json::opt_u64(ty, object, &obj_path, "size")?;
    let etag = match json::opt_str(ty, object, &obj_path, "eTag")? {
        Some(e) => Some(e),
        None => json::opt_str(ty, object, &obj_path, "etag")?,
    };
    let version = match json::opt_version(ty, object, &obj_path, "versionId")? {
        Some(v) => Some(v),
        None => json::opt_version(ty, object, &obj_path, "version-id")?,
    };
    if let Some(skip) = skip_reason(path, &key, size) {
        return Ok(Outcome::Skip(skip));
    }
    let mut obj = ObjectRef::new(Scheme::S3, bucket, &key).map_err(|r| json::invalid(ty, key_field, r))?;
    obj.size = size;
    obj.etag = json::etag(etag);
    obj.version = version;
    Ok(Outcome::Job(Job::object(obj, event_name)))
}

/// Folder placeholders (`photos/`) and empty objects carry no audio.
pub(super) fn skip_reason(path: &str, key: &str, size: Option<u64>) -> Option<String> {
    if key.ends_with('/') {
        Some(format!("{}{} is a folder placeholder", at(path), quote(key)))
    } else if size == Some(0) {
        Some(format!("{}{} is empty (size 0)", at(path), quote(key)))
    } else {
        None
    }
}

/// An EventBridge event: `{"source": "aws.s3", "detail-type": "Object Created", "detail": {...}}`.
pub(super) fn eventbridge_envelope(ty: &str, body: &Value) -> Result<Parsed, EventError> {
    let m = json::as_obj(ty, "", body)?;
    let source = json::opt_str(ty, m, "", "source")?;
    let detail_type = json::req_str(ty, m, "", "detail-type")?;
    if source != Some("aws.s3") {
        // TriggerMesh's EventBridge source carries every event on the bus under one type.
        if ty == TRIGGERMESH_EVENTBRIDGE {
            return Ok(Parsed::Ignored {
                reason: format!("EventBridge event from {}, not aws.s3", source.map_or("no source".into(), quote)),
            });
        }
        return Err(json::invalid(ty, "source", format!("expected \"aws.s3\", got {source:?}")));
    }
    if detail_type != "Object Created" {
        return Ok(Parsed::Ignored { reason: format!("S3 {} is not an object creation", quote(detail_type)) });
    }
    let detail = json::req_obj(ty, m, "", "detail")?;
    let name = match json::opt_str(ty, detail, "detail", "reason")? {
        Some(reason) => format!("{detail_type}:{reason}"),
        None => detail_type.to_string(),
    };
    Ok(collect(vec![bucket_object(ty, "detail", detail, Some(name))?]))
}

/// The Knative IntegrationSource / Camel aws-s3-source: it polls the bucket and sends each
/// object's bytes as the data, with fixed `source` and `subject`, so the key is unknown.
pub(super) fn knative_connector(ty: &str, data: Option<EventData<'_>>) -> Result<Parsed, EventError> {
    match data {
        None => Err(json::invalid_data(ty, "no data: the connector must send the object body (ignoreBody=false)")),
        Some(EventData::Binary([])) => Ok(Parsed::Ignored { reason: "empty object body".into() }),
        Some(EventData::Binary(bytes)) => Ok(Parsed::Jobs(vec![Job {
            audio: super::Audio::Inline(bytes.to_vec()),
            options: Default::default(),
            event_name: Some(ty.to_string()),
        }])),
        Some(EventData::Json(v)) => {
            Err(json::invalid_data(ty, format!("data is JSON ({}), expected the audio object's bytes", json::describe(v))))
        }
    }
}
