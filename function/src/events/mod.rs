//! Turns incoming storage notifications into "what to transcribe".
//!
//! Pure parsing: no HTTP, no I/O. The server hands over a CloudEvent's attributes and
//! data ([`from_cloudevent`]) or a plain JSON webhook body ([`from_webhook`]) and gets
//! back [`Jobs`](Parsed::Jobs), a reason the event needs no work
//! ([`Ignored`](Parsed::Ignored)), or an [`EventError`] saying what was wrong and where.
//! Every error is about the input, so a retry of the same event will not help (HTTP 4xx).

mod azure;
mod gcs;
mod json;
mod object;
mod options;
mod s3;
mod tingxie;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use object::MAX_KEY_BYTES;
pub use options::RequestOptions;

/// Every CloudEvent type tingxie accepts (Knative Trigger filters are generated and
/// checked from it). Types are matched exactly, as CloudEvents types are case-sensitive.
pub const ACCEPTED_EVENT_TYPES: &[&str] = &[
    // TriggerMesh AWSS3Source: data is one S3 notification record.
    s3::TRIGGERMESH_S3,
    // TriggerMesh AWSEventBridgeSource: data is an EventBridge event; only
    // `aws.s3` / `Object Created` ones are acted on.
    s3::TRIGGERMESH_EVENTBRIDGE,
    // Knative IntegrationSource (Camel aws-s3-source): data is the object's bytes.
    s3::KNATIVE_CONNECTOR_S3,
    s3::KNATIVE_CONNECTOR_S3_OLD,
    // Name used by early CloudEvents demos; data is an S3 record, its `s3` part, or an
    // EventBridge event.
    s3::AWS_S3_OBJECT_CREATED,
    // The CloudEvents spec's AWS S3 adapter: `com.amazonaws.s3.` + eventName.
    "com.amazonaws.s3.ObjectCreated:Put",
    "com.amazonaws.s3.ObjectCreated:Post",
    "com.amazonaws.s3.ObjectCreated:Copy",
    "com.amazonaws.s3.ObjectCreated:CompleteMultipartUpload",
    gcs::FINALIZED,
    azure::BLOB_CREATED,
    REQUEST_EVENT_TYPE,
];
pub const REQUEST_EVENT_TYPE: &str = "dev.tingxie.transcription.requested";
pub const COMPLETED_EVENT_TYPE: &str = "dev.tingxie.transcription.completed";
pub const FAILED_EVENT_TYPE: &str = "dev.tingxie.transcription.failed";

/// The `response_format` names a request may carry (those of `crate::output::Format`).
pub const RESPONSE_FORMATS: &[&str] = &["json", "text", "srt", "vtt", "verbose_json"];

/// One stored object to transcribe.
///
/// `key` is the decoded object key, exactly as the store names it. `uri` is
/// `s3://bucket/key`, `gs://bucket/key`, `az://container/blob` or `file:///abs/path`, with
/// the key percent-encoded only where a URI path cannot hold a character (controls,
/// space, non-ASCII, the backtick and `"#%<>?[\]^{|}`), so that [`ObjectRef::parse`] of
/// `uri` gives back the same object while logs stay readable (`/`, `+`, `(` stay as is).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub uri: String,
    /// Bucket or container; empty for `file://`.
    pub bucket: String,
    /// Decoded object key; for `file://`, the absolute path.
    pub key: String,
    /// Without surrounding quotes.
    pub etag: Option<String>,
    /// S3 versionId, GCS generation; Azure events carry none.
    pub version: Option<String>,
    pub size: Option<u64>,
    /// Azure storage account, when the event names it.
    pub account: Option<String>,
}

/// Where the audio comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audio {
    Object(ObjectRef),
    /// Bytes carried by the event itself (base64-decoded where they came as text).
    Inline(Vec<u8>),
}

/// One transcription to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub audio: Audio,
    pub options: RequestOptions,
    /// What happened, for logs: `ObjectCreated:Put`, `Object Created:PutObject`, ...
    pub event_name: Option<String>,
}

/// The outcome of parsing one event or webhook body.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Jobs(Vec<Job>),
    /// Nothing to do (a deletion, a folder placeholder, an empty object, ...): answer 2xx.
    Ignored {
        reason: String,
    },
}

/// What was wrong with an event, and where. `event_type` is the CloudEvent type, or for
/// webhooks the shape that was recognised (`s3-notification`, `minio-notification`, ...).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error("unsupported event type {0:?}; accepted: {list}", list = ACCEPTED_EVENT_TYPES.join(", "))]
    UnknownType(String),
    #[error("{event_type}: missing field `{field}`")]
    MissingField { event_type: String, field: String },
    #[error("{event_type}: field `{field}`: {reason}")]
    InvalidField { event_type: String, field: String, reason: String },
    #[error("{event_type}: unknown field `{field}` (accepted: {accepted})")]
    UnknownField { event_type: String, field: String, accepted: String },
    #[error("{event_type}: {reason}")]
    InvalidData { event_type: String, reason: String },
    #[error("invalid source URI {uri:?}: {reason}")]
    InvalidSource { uri: String, reason: String },
    #[error("unrecognised webhook body: {0}")]
    UnrecognizedWebhook(String),
}

/// A CloudEvent's data as the SDK gives it: parsed JSON, or raw bytes when the content
/// type is not JSON.
#[derive(Debug, Clone, Copy)]
pub enum EventData<'a> {
    Json(&'a Value),
    Binary(&'a [u8]),
}

/// Parses a CloudEvent (binary or structured mode, already decoded by the SDK).
pub fn from_cloudevent(ty: &str, source: &str, subject: Option<&str>, data: Option<EventData<'_>>) -> Result<Parsed, EventError> {
    match ty {
        REQUEST_EVENT_TYPE => tingxie::parse(&*json::data_as_json(ty, data)?),
        s3::KNATIVE_CONNECTOR_S3 | s3::KNATIVE_CONNECTOR_S3_OLD => s3::knative_connector(ty, data),
        s3::TRIGGERMESH_EVENTBRIDGE => s3::eventbridge_envelope(ty, &*json::data_as_json(ty, data)?),
        gcs::FINALIZED => gcs::parse(ty, subject, &*json::data_as_json(ty, data)?),
        azure::BLOB_CREATED => azure::parse(ty, source, subject, &*json::data_as_json(ty, data)?),
        s3::TRIGGERMESH_S3 | s3::AWS_S3_OBJECT_CREATED => s3::any_s3_shape(ty, &*json::data_as_json(ty, data)?),
        t if t.starts_with(s3::CE_ADAPTER_PREFIX) && ACCEPTED_EVENT_TYPES.contains(&t) => {
            s3::any_s3_shape(ty, &*json::data_as_json(ty, data)?)
        }
        _ => Err(EventError::UnknownType(ty.to_string())),
    }
}

/// Parses a plain JSON webhook body that is not a CloudEvent: a MinIO bucket notification
/// (`{"EventName","Key","Records"}`), a raw S3 notification (`{"Records":[...]}`, or S3's
/// `s3:TestEvent`), an EventBridge S3 event (`{"source":"aws.s3","detail-type":...}`), or
/// Azure Event Grid events in the Event Grid schema (an array of `{"eventType",...}`).
pub fn from_webhook(body: &Value) -> Result<Parsed, EventError> {
    match body {
        Value::Array(_) => azure::eventgrid_array(body),
        Value::Object(m) if m.contains_key("Records") => s3::notification(body),
        Value::Object(m) if m.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") => {
            Ok(Parsed::Ignored { reason: "S3 test event".into() })
        }
        Value::Object(m) if m.contains_key("detail-type") => s3::eventbridge_envelope("eventbridge", body),
        Value::Object(m) if m.contains_key("eventType") => azure::eventgrid_array(body),
        _ => Err(EventError::UnrecognizedWebhook(format!(
            "expected a MinIO or S3 notification ({{\"Records\": [...]}}), an EventBridge event \
             ({{\"source\": \"aws.s3\", \"detail-type\": ...}}) or Event Grid events \
             ([{{\"eventType\": ...}}]); got {}",
            json::describe(body)
        ))),
    }
}

/// The code to echo back (`{"validationResponse": code}`) when Azure Event Grid validates
/// a webhook subscription (Event Grid schema); `None` for every other body.
pub fn eventgrid_validation_code(body: &Value) -> Option<String> {
    azure::validation_code(body)
}

/// One record's verdict, before records are gathered into a [`Parsed`].
#[allow(clippy::large_enum_variant)] // a handful per event, moved once
enum Outcome {
    Job(Job),
    Skip(String),
}

/// Jobs if any record needs work; otherwise `Ignored` with every record's reason.
fn collect(outcomes: Vec<Outcome>) -> Parsed {
    let mut jobs = Vec::new();
    let mut reasons = Vec::new();
    for o in outcomes {
        match o {
            Outcome::Job(j) => jobs.push(j),
            Outcome::Skip(r) => reasons.push(r),
        }
    }
    if jobs.is_empty() {
        Parsed::Ignored { reason: reasons.join("; ") }
    } else {
        Parsed::Jobs(jobs)
    }
}

impl Job {
    fn object(obj: ObjectRef, event_name: Option<String>) -> Job {
        Job { audio: Audio::Object(obj), options: RequestOptions::default(), event_name }
    }
}
