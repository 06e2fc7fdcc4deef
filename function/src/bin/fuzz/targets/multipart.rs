//! `multipart`: the form reading of `POST /v1/audio/transcriptions`. actix-multipart's parser
//! over a mutated body, delivered in chunks of a fuzzed size (boundaries that straddle chunks
//! are where stream parsers go wrong), read the way the server reads it: the `file` field
//! whole with its filename's extension as the hint, every other field as UTF-8 text of at most
//! 64 KiB, then the options set and validated.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use actix_multipart::{Field, Multipart};
use actix_web::error::PayloadError;
use actix_web::http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use bytes::Bytes;
use futures::StreamExt;
use tingxie::error::{bounded, QUOTE_CHARS};
use tingxie::events::RequestOptions;

use crate::fuzz::input::{control, section, Input, Kind};
use crate::fuzz::Target;

/// The server's bound on a text field.
const MAX_FIELD_BYTES: usize = 64 * 1024;
/// The audio's bound (the server's is TINGXIE_MAX_BODY_BYTES; small here to keep inputs fast).
const MAX_FILE_BYTES: usize = 1 << 20;

pub struct MultipartForm;

impl Target for MultipartForm {
    fn name(&self) -> &'static str {
        "multipart"
    }

    /// Control (chunk size), Content-Type header, body.
    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Control, Kind::Text, Kind::Text]
    }

    fn seeds(&self, _fixtures: &Path) -> Vec<Input> {
        seeds()
    }

    fn run(&mut self, input: &Input) -> String {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(section(input, 1)) {
            headers.insert(CONTENT_TYPE, value);
        }
        // The server refuses boundaries actix-multipart cannot read safely before reading.
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if let Err(e) = tingxie::server::check_boundary(content_type) {
            return crate::fuzz::error_label("boundary", &e);
        }
        let body = Bytes::copy_from_slice(section(input, 2));
        let chunk = match control(input, 0) {
            0 => body.len().max(1),
            n => n,
        };
        let chunks: Vec<Result<Bytes, PayloadError>> =
            (0..body.len()).step_by(chunk).map(|at| Ok(body.slice(at..(at + chunk).min(body.len())))).collect();
        let mut multipart = Multipart::new(&headers, futures::stream::iter(chunks));
        let mut fields = 0;
        let Some(form) = run_to_end(read_form(&mut multipart, &mut fields)) else {
            panic!("stall: the multipart stream waits for more of a body it has whole, and nothing wakes it");
        };
        match form {
            // How far the body got counts as an outcome (in words: the runner drops digits).
            Err(e) => format!("{}err:{e}", "field,".repeat(fields.min(8))),
            Ok(form) => match form.options.validate() {
                Err(e) => crate::fuzz::error_label("options", &e),
                Ok(()) => format!("ok:file={}", form.has_file),
            },
        }
    }
}

/// Polls `future` to its end, or `None` when it waits without having asked to be woken: the
/// body stream here never waits, so such a wait would last until the server's body deadline.
fn run_to_end<F: Future>(future: F) -> Option<F::Output> {
    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        flag.0.store(false, Ordering::Relaxed);
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return Some(out),
            Poll::Pending if flag.0.load(Ordering::Relaxed) => continue,
            Poll::Pending => return None,
        }
    }
}

struct Form {
    has_file: bool,
    options: RequestOptions,
}

/// The server's `read_form`, without the memory budget and deadline (not parsing concerns);
/// `fields` counts the fields begun.
async fn read_form(multipart: &mut Multipart, fields: &mut usize) -> Result<Form, String> {
    let mut form = Form { has_file: false, options: RequestOptions::default() };
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(|e| format!("multipart: {e}"))?;
        *fields += 1;
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                let _hint = field
                    .content_disposition()
                    .and_then(|d| d.get_filename())
                    .and_then(|f| f.rsplit_once('.').map(|(_, ext)| bounded(ext, 16)));
                read_field(&mut field, MAX_FILE_BYTES).await?;
                form.has_file = true;
            }
            "model" | "timestamp_granularities[]" | "timestamp_granularities" | "stream" => {
                read_text(&mut field).await?;
            }
            _ => {
                let text = read_text(&mut field).await?;
                form.options.set_text(&name, &text).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(form)
}

async fn read_field(field: &mut Field, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| format!("field: {e}"))?;
        if out.len() + chunk.len() > limit {
            return Err(format!("field `{}` too large", bounded(field.name().unwrap_or_default(), QUOTE_CHARS)));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn read_text(field: &mut Field) -> Result<String, String> {
    String::from_utf8(read_field(field, MAX_FIELD_BYTES).await?).map_err(|_| "not UTF-8".into())
}

/// A form as OpenAI's clients send it, and variants: quoted and bare boundaries, LF-only line
/// ends, a preamble and epilogue, RFC 5987 filenames, a part with its own Content-Type.
fn seeds() -> Vec<Input> {
    // A WAV header and no samples (the form, not the audio, is under test here).
    let wav = "RIFF$\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0@\x1f\0\0\0}\0\0\x02\0\x10\0data\0\0\0\0";
    let form = |boundary: &str, eol: &str, file_header: &str| {
        let part = |headers: &str, value: &str| format!("--{boundary}{eol}{headers}{eol}{eol}{value}{eol}");
        let mut body = String::new();
        body += &part(&format!("Content-Disposition: form-data; name=\"file\"; {file_header}{eol}Content-Type: audio/wav"), wav);
        body += &part("Content-Disposition: form-data; name=\"model\"", "whisper-1");
        body += &part("Content-Disposition: form-data; name=\"language\"", "en");
        body += &part("Content-Disposition: form-data; name=\"temperature\"", "0.2");
        body += &part("Content-Disposition: form-data; name=\"response_format\"", "verbose_json");
        body += &part("Content-Disposition: form-data; name=\"timestamp_granularities[]\"", "segment");
        body += &part("Content-Disposition: form-data; name=\"prompt\"", "听写");
        body += &format!("--{boundary}--{eol}");
        body
    };
    let seed = |chunk: u8, content_type: &str, body: String| vec![vec![chunk], content_type.as_bytes().to_vec(), body.into_bytes()];
    vec![
        seed(0, "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW", form("----WebKitFormBoundary7MA4YWxkTrZu0gW", "\r\n", "filename=\"speech.wav\"")),
        seed(7, "multipart/form-data; boundary=\"a b\"", form("a b", "\r\n", "filename*=UTF-8''%C3%A9t%C3%A9.flac")),
        seed(1, "multipart/form-data;boundary=x", form("x", "\n", "filename=noext")),
        seed(64, "Multipart/Form-Data; charset=utf-8; boundary=0123456789", format!("preamble\r\n{}epilogue", form("0123456789", "\r\n", "filename=\"a.b.mp3\""))),
        seed(3, "multipart/form-data; boundary=q", "--q\r\nContent-Disposition: form-data; name=\"beam_size\"\r\n\r\n5\r\n--q\r\nContent-Disposition: form-data; name=\"stream\"\r\n\r\nfalse\r\n--q--\r\n".into()),
    ]
}
