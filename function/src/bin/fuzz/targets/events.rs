//! `events`: what `POST /` does with a body before any work starts. CloudEvents decoded by the
//! SDK (binary and structured mode through `to_event`, batches through serde), their data
//! handed to `from_cloudevent` for every accepted type and some near misses, and plain
//! webhooks through `eventgrid_validation_code` and `from_webhook`.
//!
//! Properties checked beside "no panic": every object a job names round-trips through
//! `ObjectRef::parse` (the contract the transcript writer relies on), the reason for an
//! ignored event can be sent as the `x-tingxie-ignored` header, and the reply to an event
//! can be written as an HTTP response.

use std::path::Path;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::HttpResponse;
use cloudevents::binding::actix::HttpResponseBuilderExt;
use cloudevents::{AttributesReader, Data, Event, EventBuilder, EventBuilderV10};
use serde_json::Value;
use tingxie::events::{self, Audio, EventData, EventError, ObjectRef, Parsed, ACCEPTED_EVENT_TYPES};

use crate::fuzz::input::{control, section, Input, Kind};
use crate::fuzz::{error_label, Target};

/// Types close to accepted ones: case, prefix and suffix near misses, our own reply types.
const NEAR_MISSES: &[&str] = &[
    "",
    "com.amazonaws.s3.",
    "com.amazonaws.s3.ObjectRemoved:Delete",
    "com.amazonaws.s3.ObjectCreated:*",
    "COM.AMAZON.S3.OBJECTCREATED",
    "dev.tingxie.transcription.completed",
    "dev.tingxie.transcription.failed",
    "Microsoft.Storage.BlobDeleted",
];

/// The entry points, chosen by the first control byte.
#[derive(Debug, Clone, Copy)]
enum Entry {
    /// `from_cloudevent` with the body as JSON data (bytes when it does not parse).
    JsonData,
    BinaryData,
    NoData,
    /// A plain JSON webhook.
    Webhook,
    /// A CloudEvent over HTTP, binary or structured mode as the headers say.
    Http,
    /// `application/cloudevents-batch+json`.
    Batch,
}

const ENTRIES: [Entry; 6] = [Entry::JsonData, Entry::BinaryData, Entry::NoData, Entry::Webhook, Entry::Http, Entry::Batch];

pub struct Events;

impl Target for Events {
    fn name(&self) -> &'static str {
        "events"
    }

    /// Control (entry, type), attributes (source and subject lines, or HTTP headers), body.
    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Control, Kind::Text, Kind::Json]
    }

    fn seeds(&self, _fixtures: &Path) -> Vec<Input> {
        seeds()
    }

    fn run(&mut self, input: &Input) -> String {
        let entry = ENTRIES[control(input, 0) % ENTRIES.len()];
        let (attrs, body) = (section(input, 1), section(input, 2));
        match entry {
            Entry::JsonData | Entry::BinaryData | Entry::NoData => {
                let text = String::from_utf8_lossy(attrs);
                let mut lines = text.lines();
                let source = lines.next().unwrap_or_default();
                let subject = lines.next();
                let json = serde_json::from_slice::<Value>(body).ok();
                let data = match (entry, &json) {
                    (Entry::JsonData, Some(v)) => Some(EventData::Json(v)),
                    (Entry::NoData, _) => None,
                    _ => Some(EventData::Binary(body)),
                };
                let ty = event_type(control(input, 1));
                label("ce", events::from_cloudevent(ty, source, subject, data))
            }
            Entry::Webhook => match serde_json::from_slice::<Value>(body) {
                Err(e) => error_label("json", &e),
                Ok(value) => {
                    if events::eventgrid_validation_code(&value).is_some() {
                        return "validation".into();
                    }
                    label("webhook", events::from_webhook(&value))
                }
            },
            Entry::Http => match cloudevents::binding::http_0_2::to_event(&headers(attrs), body.to_vec()) {
                Err(e) => error_label("to_event", &e),
                Ok(event) => handle(&event, true),
            },
            Entry::Batch => match serde_json::from_slice::<Vec<Event>>(body) {
                Err(e) => error_label("batch", &e),
                Ok(batch) => batch.iter().map(|e| handle(e, false)).collect::<Vec<_>>().join(","),
            },
        }
    }
}

fn event_type(index: usize) -> &'static str {
    let all = ACCEPTED_EVENT_TYPES.len() + NEAR_MISSES.len();
    let i = index % all;
    ACCEPTED_EVENT_TYPES.get(i).copied().unwrap_or_else(|| NEAR_MISSES[i - ACCEPTED_EVENT_TYPES.len()])
}

/// `name: value` lines as request headers; lines HTTP could not carry are left out.
fn headers(text: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(line[..colon].trim_ascii()), HeaderValue::from_bytes(value)) {
            map.append(name, value);
        }
    }
    map
}

/// What the server does with one decoded event: its data as the SDK gives it, then
/// `from_cloudevent`; for a single event (not a batch), the reply event as HTTP headers.
fn handle(event: &Event, reply_in_headers: bool) -> String {
    let data_json;
    let data = match event.data() {
        Some(Data::Json(v)) => Some(EventData::Json(v)),
        Some(Data::Binary(b)) => Some(EventData::Binary(b)),
        Some(Data::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(v) => {
                data_json = v;
                Some(EventData::Json(&data_json))
            }
            Err(_) => Some(EventData::Binary(text.as_bytes())),
        },
        None => None,
    };
    let parsed = events::from_cloudevent(event.ty(), &event.source().to_string(), event.subject(), data);
    // The server refuses an id no reply header can carry before any work.
    if reply_in_headers && tingxie::server::check_event_id(event.id()).is_ok() {
        if let Ok(Parsed::Jobs(jobs)) = &parsed {
            for job in jobs {
                check_reply(event, &job.audio);
            }
        }
    }
    label("event", parsed)
}

/// The server's reply to a completed event: a CloudEvent in binary mode whose headers carry
/// the cause's id and the object's URI. Writing it must not fail after the work is done.
fn check_reply(event: &Event, audio: &Audio) {
    let mut builder = EventBuilderV10::new()
        .id("00000000-0000-4000-8000-000000000000")
        .ty(events::COMPLETED_EVENT_TYPE)
        .source("/tingxie")
        .extension("tingxiecause", event.id().to_string())
        .data("application/json", serde_json::json!({"text": ""}));
    if let Audio::Object(obj) = audio {
        builder = builder.subject(obj.uri.clone());
    }
    let reply = builder.build().expect("every required attribute is set");
    if let Err(e) = HttpResponse::Ok().event(reply) {
        panic!("property: the reply to event id {:?} cannot be written as HTTP: {e}", event.id());
    }
}

/// The outcome's label, after checking the properties of a success.
fn label(prefix: &str, parsed: Result<Parsed, EventError>) -> String {
    match parsed {
        Err(e) => error_label(prefix, &e),
        Ok(Parsed::Ignored { reason }) => {
            // What the server sends back, with CR and LF already replaced.
            let header = reason.replace(['\r', '\n'], " ");
            if HeaderValue::try_from(header).is_err() {
                panic!("property: an ignored event's reason is not a valid header value: {reason:?}");
            }
            format!("{prefix}:ignored")
        }
        Ok(Parsed::Jobs(jobs)) => {
            for job in &jobs {
                if let Audio::Object(obj) = &job.audio {
                    check_round_trip(obj);
                }
            }
            format!("{prefix}:jobs")
        }
    }
}

/// `ObjectRef::parse(uri)` gives back the same object.
pub fn check_round_trip(obj: &ObjectRef) {
    match ObjectRef::parse(&obj.uri) {
        Ok(back) if back.uri == obj.uri && back.bucket == obj.bucket && back.key == obj.key => {}
        other => panic!("property: {obj:?} does not round-trip through its URI: {other:?}"),
    }
}

fn seed(entry: u8, ty: &str, attrs: &str, body: &str) -> Input {
    let type_index = ACCEPTED_EVENT_TYPES.iter().position(|t| *t == ty).unwrap_or(ACCEPTED_EVENT_TYPES.len());
    vec![vec![entry, type_index as u8], attrs.as_bytes().to_vec(), body.as_bytes().to_vec()]
}

fn http_headers(ty: &str, source: &str, content_type: &str) -> String {
    format!(
        "ce-specversion: 1.0\nce-id: 8b5bd9a0-1\nce-source: {source}\nce-type: {ty}\nce-subject: a/b.wav\ncontent-type: {content_type}\n"
    )
}

/// One seed per shape: each notification under each type that takes it, and over HTTP.
fn seeds() -> Vec<Input> {
    let s = |name: &str| -> &'static str {
        match name {
            "s3-notification" => include_str!("../seeds/s3-notification.json"),
            "minio" => include_str!("../seeds/minio-notification.json"),
            "eventbridge" => include_str!("../seeds/eventbridge.json"),
            "s3-record" => include_str!("../seeds/s3-record.json"),
            "gcs" => include_str!("../seeds/gcs-object.json"),
            "azure" => include_str!("../seeds/azure-blob-data.json"),
            "eventgrid" => include_str!("../seeds/eventgrid.json"),
            "eventgrid-validation" => include_str!("../seeds/eventgrid-validation.json"),
            "request-source" => include_str!("../seeds/request-source.json"),
            "request-audio" => include_str!("../seeds/request-audio.json"),
            "s3-test" => include_str!("../seeds/s3-test-event.json"),
            "structured-gcs" => include_str!("../seeds/structured-gcs.json"),
            "structured-azure" => include_str!("../seeds/structured-azure.json"),
            "structured-base64" => include_str!("../seeds/structured-base64.json"),
            "batch" => include_str!("../seeds/batch.json"),
            other => unreachable!("no seed {other}"),
        }
    };
    let gcs_source = "//storage.googleapis.com/projects/_/buckets/tingxie-uploads\nobjects/interviews/a.flac";
    let azure_source = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/tingxiestore\n/blobServices/default/containers/uploads/blobs/team sync/monday.wav";
    let structured = "content-type: application/cloudevents+json; charset=utf-8\n";
    vec![
        seed(0, "com.amazon.s3.objectcreated", "arn:aws:s3:::meetings-audio", s("s3-record")),
        seed(0, "aws.s3.object.created", "arn:aws:s3:::b", s("s3-notification")),
        seed(0, "com.amazonaws.s3.ObjectCreated:Put", "arn:aws:s3:::b", s("s3-record")),
        seed(0, "com.amazon.events.event", "arn:aws:events:eu-west-1:1:rule/r", s("eventbridge")),
        seed(0, "google.cloud.storage.object.v1.finalized", gcs_source, s("gcs")),
        seed(0, "Microsoft.Storage.BlobCreated", azure_source, s("azure")),
        seed(0, "dev.tingxie.transcription.requested", "/tests", s("request-source")),
        seed(0, "dev.tingxie.transcription.requested", "/tests", s("request-audio")),
        seed(1, "dev.knative.connector.event.aws-s3", "/camel\nkey.wav", "RIFF\x24\0\0\0WAVEfmt "),
        seed(2, "dev.knative.eventing.aws-s3", "/camel", ""),
        seed(3, "", "", s("s3-notification")),
        seed(3, "", "", s("minio")),
        seed(3, "", "", s("eventbridge")),
        seed(3, "", "", s("eventgrid")),
        seed(3, "", "", s("eventgrid-validation")),
        seed(3, "", "", s("s3-test")),
        seed(4, "", &http_headers("com.amazon.s3.objectcreated", "arn:aws:s3:::b", "application/json"), s("s3-record")),
        seed(4, "", &http_headers("dev.tingxie.transcription.requested", "/t", "application/json"), s("request-source")),
        seed(4, "", &http_headers("dev.knative.connector.event.aws-s3", "/camel", "audio/wav"), "RIFF\x24\0\0\0WAVE"),
        seed(4, "", &http_headers("dev.tingxie.transcription.requested", "/t", "text/plain"), s("request-audio")),
        seed(4, "", structured, s("structured-gcs")),
        seed(4, "", structured, s("structured-azure")),
        seed(4, "", structured, s("structured-base64")),
        seed(5, "", "", s("batch")),
    ]
}
