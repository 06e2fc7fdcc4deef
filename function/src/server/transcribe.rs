//! `POST /transcribe`: a raw audio body (answered with the transcript), or a JSON request
//! `{"source": "s3://bucket/key", ...}` (the same body as a `dev.tingxie.transcription.requested`
//! event: transcribed once per object version, transcripts written back).

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};

use super::body::{media_type, read_limited};
use super::errors::ApiResult;
use super::peer;
use super::events::{run_job_json, Answer};
use crate::engine::Done;
use crate::error::Error;
use crate::events::{self, EventData, RequestOptions};
use crate::output::{self, Format};
use crate::service::Service;

/// Query parameters of a raw-audio request: OpenAI's field names.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AudioQuery {
    response_format: Option<String>,
    language: Option<String>,
    prompt: Option<String>,
    temperature: Option<f32>,
    beam_size: Option<usize>,
    batch_size: Option<usize>,
}

/// Raw bodies this endpoint takes; the bytes themselves decide the codec.
fn is_audio_media_type(media: &str) -> bool {
    media.is_empty() || media.starts_with("audio/") || matches!(media, "application/octet-stream" | "application/ogg" | "video/ogg" | "video/webm")
}

pub async fn transcribe(req: HttpRequest, payload: web::Payload, service: web::Data<Service>) -> ApiResult<HttpResponse> {
    let service: Arc<Service> = service.into_inner();
    let media = media_type(&req).unwrap_or_default();
    if media == "application/json" {
        let body = read_limited(&req, payload, service.config.max_body_bytes).await?;
        let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| Error::InvalidRequest(format!("the JSON body: {e}")))?;
        let parsed = events::from_cloudevent(events::REQUEST_EVENT_TYPE, "http", None, Some(EventData::Json(&value)))
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        return Ok(match run_job_json(&service, parsed).await? {
            Answer::Completed(data) => HttpResponse::Ok().json(data),
            Answer::Ignored(reason) => HttpResponse::Ok().json(serde_json::json!({ "ignored": reason })),
        });
    }
    if !is_audio_media_type(&media) {
        return Err(Error::UnsupportedMediaType(format!(
            "`{media}`: send audio bytes (audio/*, application/octet-stream) or a JSON request (application/json)"
        ))
        .into());
    }
    let query = web::Query::<AudioQuery>::from_query(req.query_string())
        .map_err(|e| Error::InvalidRequest(format!("query string: {e}")))?
        .into_inner();
    let format: Format = query.response_format.as_deref().map_or(Ok(Format::Json), str::parse)?;
    let options = service.decode_options(&RequestOptions {
        language: query.language,
        prompt: query.prompt,
        temperature: query.temperature,
        beam_size: query.beam_size,
        batch_size: query.batch_size,
        ..Default::default()
    })?;
    // Admission before reading the body: a full queue costs the client one round trip.
    let permit = service.engine.admit()?;
    let body = read_limited(&req, payload, service.config.max_body_bytes).await?;
    let hint = (!media.is_empty() && media != "application/octet-stream").then_some(media);
    let done = service.transcribe_bytes(permit, body, hint, options, Some(peer::still_connected(&req))).await?;
    Ok(transcript_response(&done, format))
}

/// The transcript in the requested format, with where the time went in headers.
pub fn transcript_response(done: &Done, format: Format) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header(("x-tingxie-queue-seconds", format!("{:.6}", done.queue_wait.as_secs_f64())))
        .insert_header(("x-tingxie-compute-seconds", format!("{:.6}", done.compute.as_secs_f64())))
        .insert_header(("x-tingxie-audio-seconds", format!("{:.3}", done.transcript.duration)))
        .body(output::render(&done.transcript, format))
}
