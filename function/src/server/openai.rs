//! `POST /v1/audio/transcriptions` and `/v1/audio/translations`, OpenAI's audio API: multipart
//! `file`, `model`, `language`, `prompt`, `response_format`, `temperature`,
//! `timestamp_granularities[]`, and tingxie's `beam_size`, `batch_size`, `vad_filter`, `vad_parameters`, `task` and `zh_script`.
//! A translation is the same request with the task `translate` (English text).

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;

use super::body::{content_length, payload_error, too_large, Bodies};
use super::errors::ApiResult;
use super::transcribe::{response_format, transcript_response};
use super::{auth, history, peer};
use crate::engine::Permit;
use crate::error::{bounded, quote, Error, Result, QUOTE_CHARS};
use crate::events::RequestOptions;
use crate::service::{Origin, Service};
use crate::whisper::Task;

/// Text fields are short; this bounds what a client can make us buffer for them.
const MAX_FIELD_BYTES: u64 = 64 * 1024;
const FIELD_LIMIT: &str = "the 64 KiB limit of a form field";

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument { field, reason: reason.into() }
}

fn multipart_error(e: MultipartError) -> Error {
    match e {
        MultipartError::Payload(e) => payload_error(e),
        other => Error::InvalidRequest(format!("multipart body: {other}")),
    }
}

/// A field's bytes, at most `limit`; the audio's count against the body memory budget.
async fn read_field(field: &mut Field, limit: u64, setting: &str, mut budget: Option<(&Bodies, &mut Permit)>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut reserved = 0;
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(multipart_error)?;
        let len = (out.len() + chunk.len()) as u64;
        if len > limit {
            let name = bounded(field.name().unwrap_or_default(), QUOTE_CHARS);
            return Err(too_large(&format!("field `{name}`"), limit, setting));
        }
        if let Some((bodies, permit)) = budget.as_mut() {
            reserved = bodies.reserve_up_to(permit, reserved, len, limit)?;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn read_text(field: &mut Field) -> Result<String> {
    let bytes = read_field(field, MAX_FIELD_BYTES, FIELD_LIMIT, None).await?;
    String::from_utf8(bytes)
        .map_err(|_| Error::InvalidRequest(format!("field `{}` is not UTF-8", bounded(field.name().unwrap_or_default(), QUOTE_CHARS))))
}

/// RFC 2046 allows boundaries of 1 to 70 characters; actix-multipart 0.7 panics on body lines
/// shorter than its delimiter checks when the boundary is under 4 (found by fuzzing), and no
/// client sends one that short.
pub fn check_boundary(content_type: &str) -> Result<()> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"'));
    match boundary {
        Some(b) if (4..=70).contains(&b.len()) => Ok(()),
        Some(b) => Err(Error::InvalidRequest(format!("multipart boundary {} must be 4 to 70 characters long", quote(b)))),
        None => Err(Error::InvalidRequest("the Content-Type names no multipart boundary".into())),
    }
}

/// The body, and a signal once all of it has arrived.
fn signalling_end(
    payload: web::Payload,
) -> (impl futures::Stream<Item = Result<bytes::Bytes, actix_web::error::PayloadError>> + 'static, tokio::sync::oneshot::Receiver<()>) {
    let (ended, signal) = tokio::sync::oneshot::channel();
    let mut ended = Some(ended);
    let end = futures::stream::poll_fn(move |_| {
        if let Some(ended) = ended.take() {
            let _ = ended.send(());
        }
        std::task::Poll::Ready(None)
    });
    (payload.chain(end), signal)
}

/// Resolves a second after the whole body arrived. The form is read from memory by then, in
/// microseconds; actix-multipart 0.7 instead waits forever for a body whose last part ends in a
/// lone CR (found by fuzzing), which would otherwise be answered as a body timeout.
async fn parser_stalled(ended: tokio::sync::oneshot::Receiver<()>) {
    if ended.await.is_err() {
        return std::future::pending().await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}

/// What the form asked for.
struct Form {
    audio: Option<(Vec<u8>, Option<String>)>,
    /// The uploaded file's name, for the history.
    filename: Option<String>,
    options: RequestOptions,
}

async fn read_form(multipart: &mut Multipart, limit: u64, bodies: &Bodies, permit: &mut Permit) -> Result<Form> {
    let mut form = Form { audio: None, filename: None, options: RequestOptions::default() };
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(multipart_error)?;
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                let filename = field.content_disposition().and_then(|d| d.get_filename()).map(|f| bounded(f, 256));
                let hint = filename.as_deref().and_then(|f| f.rsplit_once('.').map(|(_, ext)| bounded(ext, 16)));
                form.filename = filename;
                form.audio = Some((read_field(&mut field, limit, "TINGXIE_MAX_BODY_BYTES", Some((bodies, permit))).await?, hint));
            }
            "timestamp_granularities[]" | "timestamp_granularities" => {
                let text = read_text(&mut field).await?;
                if text.trim() != "segment" {
                    return Err(invalid(
                        "timestamp_granularities",
                        format!("{} is not supported; only `segment` timestamps are produced", quote(&text)),
                    ));
                }
            }
            "stream" => {
                if read_text(&mut field).await?.trim() == "true" {
                    return Err(invalid("stream", "streaming responses are not supported"));
                }
            }
            _ => {
                let text = read_text(&mut field).await?;
                // Fields of newer API versions (chunking_strategy, include[], ...) are read and
                // ignored, as OpenAI-compatible servers commonly do.
                form.options.set_text(&name, &text)?;
            }
        }
    }
    Ok(form)
}

pub async fn transcriptions(
    req: HttpRequest,
    payload: web::Payload,
    service: web::Data<Service>,
    bodies: web::Data<Bodies>,
) -> ApiResult<HttpResponse> {
    audio_request(req, payload, service, bodies, None).await
}

pub async fn translations(
    req: HttpRequest,
    payload: web::Payload,
    service: web::Data<Service>,
    bodies: web::Data<Bodies>,
) -> ApiResult<HttpResponse> {
    audio_request(req, payload, service, bodies, Some(Task::Translate)).await
}

/// Either endpoint; `task` is what the path fixes (a form's own `task` must agree with it).
async fn audio_request(
    req: HttpRequest,
    payload: web::Payload,
    service: web::Data<Service>,
    bodies: web::Data<Bodies>,
    task: Option<Task>,
) -> ApiResult<HttpResponse> {
    let limit = service.config.max_body_bytes;
    if content_length(&req).is_some_and(|len| len > limit + MAX_FIELD_BYTES) {
        return Err(too_large("the request body", limit, "TINGXIE_MAX_BODY_BYTES").into());
    }
    let tenant = auth::tenant(&req, &service)?;
    let mut permit = service.admit(tenant)?;
    check_boundary(req.headers().get(actix_web::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default())?;
    let (payload, ended) = signalling_end(payload);
    let mut multipart = Multipart::new(req.headers(), payload);
    let reading = bodies.deadline().within(read_form(&mut multipart, limit, &bodies, &mut permit));
    let mut form = tokio::select! {
        form = reading => form?,
        () = parser_stalled(ended) => return Err(Error::InvalidRequest(
            "the multipart body ends inside a part, without its closing boundary".into(),
        ).into()),
    };
    form.options.validate()?;
    if let Some(task) = task {
        if form.options.task.is_some() && form.options.task()? != task {
            return Err(invalid("task", format!("this endpoint always has the task `{}`", task.as_str())).into());
        }
        form.options.task = Some(task.as_str().to_string());
    }
    let format = response_format(&form.options)?;
    let (bytes, hint) = form.audio.ok_or_else(|| invalid("file", "the multipart body has no `file` field"))?;
    let work = service.work(&form.options)?;
    let origin = Origin::upload(permit.tenant(), form.filename.as_deref());
    if form.options.is_async() {
        let service = service.into_inner();
        let record = service.submit(permit, bytes, hint, work, origin, form.options.callback_url.clone()).await?;
        return Ok(history::accepted(&record));
    }
    let done = service.transcribe_bytes(&permit, bytes, hint, work, Some(peer::still_connected(&req)), origin).await?;
    Ok(transcript_response(&done, format))
}

/// `GET /v1/models`: the catalog in OpenAI's list shape; the default model first.
pub async fn models(req: HttpRequest, service: web::Data<Service>) -> ApiResult<HttpResponse> {
    auth::tenant(&req, &service)?;
    let default = service.catalog.default_name();
    let mut names: Vec<&std::sync::Arc<str>> = service.catalog.names().collect();
    names.sort_by_key(|n| *n != default);
    let data: Vec<serde_json::Value> = names
        .into_iter()
        .map(|name| serde_json::json!({"id": &**name, "object": "model", "created": 0, "owned_by": "tingxie", "default": name == default}))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({"object": "list", "data": data})))
}
