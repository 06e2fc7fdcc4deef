//! `POST /v1/audio/transcriptions`, OpenAI's transcription API: multipart `file`, `model`,
//! `language`, `prompt`, `response_format`, `temperature`, `timestamp_granularities[]`.

use actix_multipart::{Field, Multipart};
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;

use super::body::{content_length, too_large};
use super::errors::ApiResult;
use super::peer;
use super::transcribe::transcript_response;
use crate::error::{Error, Result};
use crate::events::RequestOptions;
use crate::output::Format;
use crate::service::Service;

/// Text fields are short; this bounds what a client can make us buffer for them.
const MAX_FIELD_BYTES: u64 = 64 * 1024;

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument { field, reason: reason.into() }
}

async fn read_field(field: &mut Field, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| Error::InvalidRequest(format!("reading multipart field `{what}`: {e}")))?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(too_large(&format!("field `{what}`"), limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn read_text(field: &mut Field, name: &str) -> Result<String> {
    let bytes = read_field(field, MAX_FIELD_BYTES, name).await?;
    String::from_utf8(bytes).map_err(|_| Error::InvalidRequest(format!("field `{name}` is not UTF-8")))
}

pub async fn transcriptions(req: HttpRequest, payload: web::Payload, service: web::Data<Service>) -> ApiResult<HttpResponse> {
    let limit = service.config.max_body_bytes;
    if content_length(&req).is_some_and(|len| len > limit + MAX_FIELD_BYTES) {
        return Err(too_large("the request body", limit).into());
    }
    let permit = service.engine.admit()?;
    let mut multipart = Multipart::new(req.headers(), payload);
    let mut audio: Option<(Vec<u8>, Option<String>)> = None;
    let mut options = RequestOptions::default();
    let mut format = Format::Json;
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(|e| Error::InvalidRequest(format!("multipart body: {e}")))?;
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                let hint = field
                    .content_disposition()
                    .and_then(|d| d.get_filename())
                    .and_then(|f| f.rsplit_once('.').map(|(_, ext)| ext.to_string()));
                audio = Some((read_field(&mut field, limit, "file").await?, hint));
            }
            "model" => {
                read_text(&mut field, &name).await?;
            }
            "language" => options.language = Some(read_text(&mut field, &name).await?),
            "prompt" => options.prompt = Some(read_text(&mut field, &name).await?),
            "response_format" => format = read_text(&mut field, &name).await?.parse()?,
            "temperature" => {
                let text = read_text(&mut field, &name).await?;
                options.temperature = Some(text.trim().parse().map_err(|_| invalid("temperature", format!("`{text}` is not a number")))?);
            }
            // Not OpenAI's: tingxie's batched mode, as in the JSON and query forms.
            "batch_size" => {
                let text = read_text(&mut field, &name).await?;
                options.batch_size = Some(text.trim().parse().map_err(|_| invalid("batch_size", format!("`{text}` is not a whole number")))?);
            }
            "timestamp_granularities[]" | "timestamp_granularities" => {
                let text = read_text(&mut field, &name).await?;
                if text.trim() != "segment" {
                    return Err(invalid("timestamp_granularities", format!("`{text}` is not supported; only `segment` timestamps are produced")).into());
                }
            }
            "stream" => {
                let text = read_text(&mut field, &name).await?;
                if text.trim() == "true" {
                    return Err(invalid("stream", "streaming responses are not supported").into());
                }
            }
            _ => {
                // Fields of newer API versions (chunking_strategy, include[], ...) are read and
                // ignored, as OpenAI-compatible servers commonly do.
                read_field(&mut field, MAX_FIELD_BYTES, &name).await?;
            }
        }
    }
    let (bytes, hint) = audio.ok_or_else(|| invalid("file", "the multipart body has no `file` field"))?;
    let decode = service.decode_options(&options)?;
    let done = service.transcribe_bytes(permit, bytes, hint, decode, Some(peer::still_connected(&req))).await?;
    Ok(transcript_response(&done, format))
}
