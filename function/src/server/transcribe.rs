//! `POST /transcribe`: a raw audio body (answered with the transcript), or a JSON request
//! `{"source": "s3://bucket/key", ...}` (the same body as a `dev.tingxie.transcription.requested`
//! event: transcribed once per object version, transcripts written back) or
//! `{"audio": BASE64, ...}` (answered in its `response_format`).

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};

use super::body::{media_type, Bodies};
use super::errors::ApiResult;
use super::events::{run_jobs, Answer};
use super::{auth, history, peer};
use crate::engine::Done;
use crate::error::{bounded, Error, Result, QUOTE_CHARS};
use crate::events::{self, Audio, EventData, Parsed, RequestOptions};
use crate::output::{self, Format};
use crate::service::{Origin, Service};

/// Raw bodies this endpoint takes; the bytes themselves decide the codec.
fn is_audio_media_type(media: &str) -> bool {
    media.is_empty()
        || media.starts_with("audio/")
        || matches!(media, "application/octet-stream" | "application/ogg" | "video/ogg" | "video/webm")
}

/// The options of a raw-audio request, from its query string (OpenAI's field names).
fn query_options(query: &str) -> Result<RequestOptions> {
    let mut options = RequestOptions::default();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if !options.set_text(&name, &value)? {
            return Err(Error::InvalidRequest(format!("unknown query parameter `{}`", bounded(&name, QUOTE_CHARS))));
        }
    }
    options.validate()?;
    Ok(options)
}

pub fn response_format(options: &RequestOptions) -> Result<Format> {
    options.response_format.as_deref().map_or(Ok(Format::Json), str::parse)
}

pub async fn transcribe(
    req: HttpRequest,
    payload: web::Payload,
    service: web::Data<Service>,
    bodies: web::Data<Bodies>,
) -> ApiResult<HttpResponse> {
    let service: Arc<Service> = service.into_inner();
    let tenant = auth::tenant(&req, &service)?;
    let media = media_type(&req).unwrap_or_default();
    if media == "application/json" {
        let permit = service.admit(tenant)?;
        return Ok(json_request(&service, &bodies, &req, payload, permit).await?);
    }
    if !is_audio_media_type(&media) {
        return Err(Error::UnsupportedMediaType(format!(
            "`{}`: send audio bytes (audio/*, application/octet-stream) or a JSON request (application/json)",
            bounded(&media, QUOTE_CHARS)
        ))
        .into());
    }
    let requested = query_options(req.query_string())?;
    let format = response_format(&requested)?;
    let work = service.work(&requested)?;
    let origin = Origin::upload(&tenant, None);
    // Admission before reading the body: a full queue costs the client one round trip.
    let mut permit = service.admit(tenant)?;
    let body = bodies.read(&req, payload, service.config.max_body_bytes, &mut permit, 1).await?;
    let hint = (!media.is_empty() && media != "application/octet-stream").then_some(media);
    if requested.is_async() {
        let record = service.submit(permit, body, hint, work, origin, requested.callback_url.clone()).await?;
        return Ok(history::accepted(&record));
    }
    let done = service.transcribe_bytes(&permit, body, hint, work, Some(peer::still_connected(&req)), origin).await?;
    Ok(transcript_response(&done, format))
}

async fn json_request(
    service: &Arc<Service>,
    bodies: &Bodies,
    req: &HttpRequest,
    payload: web::Payload,
    mut permit: crate::engine::Permit,
) -> Result<HttpResponse> {
    let body = bodies.read(req, payload, service.config.event_body_limit(), &mut permit, 2).await?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| Error::InvalidRequest(format!("the JSON body: {e}")))?;
    drop(body);
    let parsed = events::from_cloudevent(events::REQUEST_EVENT_TYPE, "http", None, Some(EventData::Json(&value)))
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    let parsed = match parsed {
        Parsed::Jobs(mut jobs) if jobs.len() == 1 && jobs[0].options.is_async() => {
            let job = jobs.pop().expect("one job");
            let Audio::Inline(bytes) = job.audio else {
                return Err(Error::InvalidArgument {
                    field: "async",
                    reason: "applies to `audio` sent in the request; a `source`'s transcripts are written to the store".into(),
                });
            };
            let work = service.work(&job.options)?;
            let origin = Origin::upload(permit.tenant(), None);
            let record = service.submit(permit, bytes, None, work, origin, job.options.callback_url.clone()).await?;
            return Ok(history::accepted(&record));
        }
        other => other,
    };
    // Inline audio is answered in its response_format; a source's transcripts are written in
    // every format and answered with their record.
    let format = match &parsed {
        Parsed::Jobs(jobs) => jobs.first().map(|job| response_format(&job.options)).transpose()?,
        Parsed::Ignored { .. } => None,
    };
    Ok(match run_jobs(service, parsed, permit).await? {
        Answer::Completed(data) => match (format, data.get("formatted").and_then(|f| f.as_str())) {
            (Some(format), Some(formatted)) => HttpResponse::Ok().content_type(format.content_type()).body(formatted.to_string()),
            _ => HttpResponse::Ok().json(data),
        },
        Answer::Ignored(reason) => HttpResponse::Ok().json(serde_json::json!({ "ignored": reason })),
    })
}

/// The transcript in the requested format, with where the time went in headers.
pub fn transcript_response(done: &Done, format: Format) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    if let Some(id) = &done.id {
        response.insert_header(("x-tingxie-transcription-id", id.as_str()));
    }
    response
        .content_type(format.content_type())
        .insert_header(("x-tingxie-queue-seconds", format!("{:.6}", done.queue_wait.as_secs_f64())))
        .insert_header(("x-tingxie-compute-seconds", format!("{:.6}", done.compute.as_secs_f64())))
        .insert_header(("x-tingxie-audio-seconds", format!("{:.3}", done.transcript.duration)))
        .body(output::render(&done.transcript, format))
}
