//! `POST /`: CloudEvents in binary, structured and batched mode, and storage webhooks that are
//! not CloudEvents (MinIO, raw S3 notifications, EventBridge). One reply CloudEvent per event.
//!
//! Status per event (Knative's retry policy acts on it): 200 + `dev.tingxie.transcription.completed`
//! when every object it names is transcribed (or was already); 202 with no body when there is
//! nothing to do; otherwise the status of the most retryable failure, so that a redelivery
//! happens whenever one could help (work already done is not repeated) and bad input goes to
//! the dead-letter sink at once.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use cloudevents::binding::actix::HttpResponseBuilderExt;
use cloudevents::{AttributesReader, Data, Event, EventBuilder, EventBuilderV10};
use tracing::Instrument;

use super::auth::{self, Sender};
use super::body::{media_type, Bodies};
use super::errors::{classify, error_body, ApiError, ApiResult};
use super::replay::{EventKey, Replayed};
use super::transcribe::response_format;
use crate::engine::Permit;
use crate::error::{bounded, quote, Error, Result, QUOTE_CHARS};
use crate::events::{self, Audio, EventData, Job, Parsed};
use crate::output::{self, Format};
use crate::service::{ObjectOutcome, Origin, Service};
use crate::tenants::Tenant;

const BATCH_MEDIA_TYPE: &str = "application/cloudevents-batch+json";
const STRUCTURED_MEDIA_TYPE: &str = "application/cloudevents+json";

/// What one event came to.
pub enum Answer {
    Completed(serde_json::Value),
    Ignored(String),
}

/// Longest CloudEvent id and source taken: both are kept (replays) and echoed (a header).
pub const MAX_ID_BYTES: usize = 256;
pub const MAX_SOURCE_BYTES: usize = 1024;

/// Whose work a delivery's jobs are: an authenticated caller's, or the platform's (the
/// broker's) or an anonymous sender's, whose events name their tenant by attribute or bucket.
#[derive(Clone, Copy)]
pub struct Attribution<'a> {
    sender: Sender,
    attribute: Option<&'a str>,
}

impl Attribution<'static> {
    const CALLER: Attribution<'static> = Attribution { sender: Sender::Caller, attribute: None };
}

pub async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    service: web::Data<Service>,
    bodies: web::Data<Bodies>,
    replayed: web::Data<Replayed>,
) -> ApiResult<HttpResponse> {
    let service: Arc<Service> = service.into_inner();
    let media = media_type(&req).unwrap_or_default();
    let is_event = req.headers().contains_key("ce-specversion") || media == STRUCTURED_MEDIA_TYPE;
    if !(is_event || matches!(media.as_str(), BATCH_MEDIA_TYPE | "application/json" | "")) {
        return Err(Error::UnsupportedMediaType(format!(
            "`{}`: send a CloudEvent (binary mode, {STRUCTURED_MEDIA_TYPE} or {BATCH_MEDIA_TYPE}) or a storage webhook (application/json)",
            bounded(&media, QUOTE_CHARS)
        ))
        .into());
    }
    let (tenant, sender) = auth::delivery_tenant(&req, &service).await?;
    // Admission before the body, as on every route: the event's jobs run in this place.
    let mut permit = service.admit(tenant)?;
    let body = bodies.read(&req, payload, service.config.event_body_limit(), &mut permit, 2).await?;
    let permit = Arc::new(permit);
    if media == BATCH_MEDIA_TYPE {
        return receive_batch(&service, &replayed, body, permit, sender).await;
    }
    if is_event {
        let event = cloudevents::binding::http_0_2::to_event(req.headers(), body)
            .map_err(|e| Error::InvalidRequest(format!("not a valid CloudEvent: {e}")))?;
        check_event_names(&event)?;
        let answer = handle_event(&service, &replayed, &event, &permit, sender).await;
        return Ok(match answer {
            Ok(Answer::Completed(data)) => {
                HttpResponse::Ok().event(reply(&event, data)).map_err(|e| Error::Device(format!("reply event: {e}")))?
            }
            Ok(Answer::Ignored(reason)) => ignored(&reason),
            Err(e) => return Err(e.into()),
        });
    }
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Error::InvalidRequest(format!("body is neither a CloudEvent (no ce-specversion header) nor JSON: {e}")))?;
    drop(body);
    if let Some(code) = events::eventgrid_validation_code(&value) {
        tracing::info!("answering Azure Event Grid's subscription validation");
        return Ok(HttpResponse::Ok().json(serde_json::json!({ "validationResponse": code })));
    }
    let parsed = events::from_webhook(&value).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    let attribution = Attribution { sender, attribute: None };
    Ok(match count("webhook", &service, run_jobs_in(&service, parsed, &permit, attribution).await)? {
        Answer::Completed(data) => HttpResponse::Ok().json(data),
        Answer::Ignored(reason) => ignored(&reason),
    })
}

fn ignored(reason: &str) -> HttpResponse {
    // One reason per record: an event with thousands of records must not make a huge header.
    let reason = bounded(&reason.replace(['\r', '\n'], " "), 1024);
    tracing::info!(reason, "nothing to transcribe");
    HttpResponse::Accepted().insert_header(("x-tingxie-ignored", reason)).finish()
}

/// The events of a batch run one after another in the batch's queue place, so a batch larger
/// than the queue still finishes in one delivery.
async fn receive_batch(
    service: &Arc<Service>,
    replayed: &Replayed,
    body: Vec<u8>,
    permit: Arc<Permit>,
    sender: Sender,
) -> ApiResult<HttpResponse> {
    let batch: Vec<Event> = serde_json::from_slice(&body).map_err(|e| Error::InvalidRequest(format!("not a CloudEvents batch: {e}")))?;
    drop(body);
    // Every id and source is checked before any event of the batch is computed.
    batch.iter().try_for_each(check_event_names)?;
    let mut answers = Vec::with_capacity(batch.len());
    for event in &batch {
        answers.push(handle_event(service, replayed, event, &permit, sender).await);
    }
    let worst = answers.iter().filter_map(|a| a.as_ref().err()).max_by_key(|e| severity(e));
    if let Some(error) = worst {
        let (status, _) = classify(error);
        let results: Vec<_> = batch
            .iter()
            .zip(&answers)
            .map(|(event, answer)| match answer {
                Ok(_) => serde_json::json!({"id": event.id(), "status": 200}),
                Err(e) => serde_json::json!({"id": event.id(), "status": classify(e).0.as_u16(), "error": error_body(e)["error"]}),
            })
            .collect();
        let mut body = error_body(error);
        body["events"] = serde_json::Value::Array(results);
        return Ok(ApiError::from(error.duplicate()).response_builder(status).json(body));
    }
    let replies: Vec<Event> = batch
        .iter()
        .zip(answers)
        .filter_map(|(event, answer)| match answer {
            Ok(Answer::Completed(data)) => Some(reply(event, data)),
            _ => None,
        })
        .collect();
    Ok(HttpResponse::Ok().content_type(BATCH_MEDIA_TYPE).json(replies))
}

/// Retryable failures first (a redelivery may succeed), then bad input.
fn severity(error: &Error) -> u8 {
    match classify(error).0.as_u16() {
        503 | 429 => 3,
        500..=599 => 2,
        _ => 1,
    }
}

/// The reply names the event it answers in a header (`ce-tingxiecause`): an id no header can
/// hold, or longer than [`MAX_ID_BYTES`], is refused before any work, not found out after it.
pub fn check_event_id(id: &str) -> Result<()> {
    if id.len() > MAX_ID_BYTES {
        return Err(Error::InvalidRequest(format!("CloudEvent id {} is {} bytes; the limit is {MAX_ID_BYTES}", quote(id), id.len())));
    }
    match actix_web::http::header::HeaderValue::from_str(id) {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::InvalidRequest(format!("CloudEvent id {} holds characters a header cannot carry", quote(id)))),
    }
}

/// An event's id (above) and source, kept together for replays: the source at most
/// [`MAX_SOURCE_BYTES`].
fn check_event_names(event: &Event) -> Result<()> {
    check_event_id(event.id())?;
    let source = event.source().to_string();
    if source.len() > MAX_SOURCE_BYTES {
        return Err(Error::InvalidRequest(format!(
            "CloudEvent source {} is {} bytes; the limit is {MAX_SOURCE_BYTES}",
            quote(&source),
            source.len()
        )));
    }
    Ok(())
}

/// One event; a redelivery of an event already answered here gets the same answer again
/// (inline audio has no stored transcript to find), and one arriving while it is computed
/// waits for that answer.
async fn handle_event(service: &Arc<Service>, replayed: &Replayed, event: &Event, permit: &Arc<Permit>, sender: Sender) -> Result<Answer> {
    let span = tracing::info_span!(
        "event",
        ce_id = bounded(event.id(), QUOTE_CHARS),
        ce_type = bounded(event.ty(), QUOTE_CHARS),
        ce_source = bounded(&event.source().to_string(), QUOTE_CHARS)
    );
    let attribute = event.extension("tenant").map(|value| bounded(&value.to_string(), 256));
    let key = EventKey {
        sender: format!("{sender:?}/{}/{}", permit.tenant().name, attribute.as_deref().unwrap_or_default()),
        source: event.source().to_string(),
        id: event.id().to_string(),
    };
    let _turn = replayed.turn(&key).instrument(span.clone()).await;
    if let Some(mut data) = replayed.get(&key) {
        data["duplicate"] = true.into();
        return span.in_scope(|| count(event.ty(), service, Ok(Answer::Completed(data))));
    }
    let parsed = span.in_scope(|| parse_event(event));
    let attribution = Attribution { sender, attribute: attribute.as_deref() };
    let answer = run_jobs_in(service, parsed?, permit, attribution).instrument(span.clone()).await;
    if let Ok(Answer::Completed(data)) = &answer {
        replayed.put(key, data.clone());
    }
    span.in_scope(|| count(event.ty(), service, answer))
}

fn parse_event(event: &Event) -> Result<Parsed> {
    let data_json;
    let data = match event.data() {
        Some(Data::Json(value)) => Some(EventData::Json(value)),
        Some(Data::Binary(bytes)) => Some(EventData::Binary(bytes)),
        Some(Data::String(text)) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => {
                data_json = value;
                Some(EventData::Json(&data_json))
            }
            Err(_) => Some(EventData::Binary(text.as_bytes())),
        },
        None => None,
    };
    events::from_cloudevent(event.ty(), &event.source().to_string(), event.subject(), data)
        .map_err(|e| Error::InvalidRequest(e.to_string()))
}

/// Counts an event's outcome by type (`tingxie_events_total`).
fn count(ty: &str, service: &Service, answer: Result<Answer>) -> Result<Answer> {
    let ty = if events::ACCEPTED_EVENT_TYPES.contains(&ty) || ty == "webhook" { ty } else { "other" };
    let outcome = match &answer {
        Ok(Answer::Completed(data)) if data["duplicate"] == true => "duplicate",
        Ok(Answer::Completed(_)) => "completed",
        Ok(Answer::Ignored(_)) => "ignored",
        Err(e) => classify(e).1,
    };
    service.metrics.events.with_label_values(&[ty, outcome]).inc();
    tracing::info!(event_type = ty, outcome, "event handled");
    answer
}

/// Runs the jobs of one request in its queue place. One job answers with its own result;
/// several with `{"transcripts": [...]}`.
pub async fn run_jobs(service: &Arc<Service>, parsed: Parsed, permit: Permit) -> Result<Answer> {
    run_jobs_in(service, parsed, &Arc::new(permit), Attribution::CALLER).await
}

/// [`run_jobs`] with a place shared by several events (a batch): jobs run one after another.
async fn run_jobs_in(service: &Arc<Service>, parsed: Parsed, permit: &Arc<Permit>, attribution: Attribution<'_>) -> Result<Answer> {
    let jobs = match parsed {
        Parsed::Ignored { reason } => return Ok(Answer::Ignored(reason)),
        Parsed::Jobs(jobs) => jobs,
    };
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        results.push(run_job(service, job, permit, attribution).await);
    }
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(Some(value)) => done.push(value),
            Ok(None) => {}
            Err(e) => failures.push(e),
        }
    }
    if let Some(worst) = failures.into_iter().max_by_key(severity) {
        return Err(worst);
    }
    Ok(match done.len() {
        0 => Answer::Ignored("every object named is a transcript output".into()),
        1 => Answer::Completed(done.pop().expect("one")),
        _ => Answer::Completed(serde_json::json!({"transcripts": done})),
    })
}

/// The tenant a job is recorded for.
fn tenant_of(service: &Service, job: &Job, permit: &Permit, attribution: Attribution<'_>) -> Result<Tenant> {
    if attribution.sender == Sender::Caller {
        return Ok(permit.tenant().clone());
    }
    let bucket = match &job.audio {
        Audio::Object(obj) => Some(obj.bucket.as_str()),
        Audio::Inline(_) => None,
    };
    service.tenants.for_event(attribution.attribute, bucket, permit.tenant(), attribution.sender == Sender::Platform)
}

async fn run_job(
    service: &Arc<Service>,
    job: Job,
    permit: &Arc<Permit>,
    attribution: Attribution<'_>,
) -> Result<Option<serde_json::Value>> {
    if job.options.is_async() {
        return Err(Error::InvalidArgument { field: "async", reason: "applies to uploads over HTTP, not to events".into() });
    }
    let tenant = tenant_of(service, &job, permit, attribution)?;
    match job.audio {
        Audio::Object(obj) => match service.transcribe_object(&obj, &job.options, permit.clone(), &tenant).await? {
            ObjectOutcome::Done(completed) => Ok(Some(serde_json::to_value(completed).expect("serialisable"))),
            ObjectOutcome::Ignored(_) => Ok(None),
        },
        Audio::Inline(bytes) => {
            let format = response_format(&job.options)?;
            let work = service.work(&job.options)?;
            let done = service.transcribe_bytes(permit, bytes, None, work, None, Origin::upload(&tenant, None)).await?;
            let mut value = output::verbose_json(&done.transcript);
            value["transcription_id"] = done.id.clone().into();
            value["model"] = (&*done.model).into();
            value["queue_seconds"] = done.queue_wait.as_secs_f64().into();
            value["compute_seconds"] = done.compute.as_secs_f64().into();
            if done.transcript.duration > 0.0 {
                value["real_time_factor"] = (done.compute.as_secs_f64() / done.transcript.duration).into();
            }
            // The transcript in the format the request asked for, beside the full record.
            if job.options.response_format.is_some() && format != Format::VerboseJson {
                value["formatted"] = output::render(&done.transcript, format).into();
            }
            Ok(Some(value))
        }
    }
}

/// `dev.tingxie.transcription.completed`, answering `event`.
fn reply(event: &Event, data: serde_json::Value) -> Event {
    let mut builder = EventBuilderV10::new()
        .id(uuid::Uuid::new_v4().to_string())
        .ty(events::COMPLETED_EVENT_TYPE)
        .source("/tingxie")
        .extension("tingxiecause", event.id().to_string())
        .data("application/json", data.clone());
    if let Some(source) = data["source"]["uri"].as_str() {
        builder = builder.subject(source.to_string());
    }
    builder.build().expect("every required attribute is set")
}
