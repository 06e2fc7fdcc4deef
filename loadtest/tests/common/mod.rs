//! A tiny stand-in for `tingxie serve` (and for an S3-protocol server) used to test the load
//! test itself: the same routes, headers and metrics, answers in a few milliseconds.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

#[derive(Default)]
pub struct Fake {
    pub transcribe: AtomicU64,
    pub openai: AtomicU64,
    pub events: AtomicU64,
    pub rejected: AtomicU64,
    /// Every Nth transcription is answered 429 (0 = never).
    pub reject_every: u64,
    /// Readiness turns true this long after start.
    pub ready_after: Duration,
    pub objects: Mutex<HashMap<String, Bytes>>,
    pub started: Mutex<Option<Instant>>,
}

type Resp = Response<Full<Bytes>>;

fn resp(status: u16, body: impl Into<Bytes>, headers: &[(&str, String)]) -> Resp {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(Full::new(body.into())).unwrap()
}

const HTTP_DATE: &str = "Sat, 28 Nov 2026 12:00:00 GMT";

impl Fake {
    fn transcript(&self) -> Result<Resp, Infallible> {
        let json = r#"{"text":"the quick brown fox","segments":[],"language":"en","duration":2.0}"#;
        Ok(resp(
            200,
            json,
            &[
                ("content-type", "application/json".into()),
                ("x-tingxie-queue-seconds", "0.001".into()),
                ("x-tingxie-compute-seconds", "0.004".into()),
                ("x-tingxie-audio-seconds", "2.0".into()),
            ],
        ))
    }

    fn maybe_reject(&self, n: u64) -> Option<Resp> {
        if self.reject_every > 0 && n.is_multiple_of(self.reject_every) {
            self.rejected.fetch_add(1, Ordering::SeqCst);
            return Some(resp(
                429,
                r#"{"error":{"message":"queue full","type":"rate_limit","param":null,"code":"queue_full"}}"#,
                &[("retry-after", "1".into())],
            ));
        }
        None
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Resp, Infallible> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let headers = req.headers().clone();
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let elapsed = self.started.lock().unwrap().map(|t| t.elapsed()).unwrap_or_default();
        match (method.as_str(), path.as_str()) {
            ("GET", "/health/liveness") => Ok(resp(200, "{}", &[])),
            ("GET", "/health/readiness") if elapsed >= self.ready_after => Ok(resp(200, "{}", &[])),
            ("GET", "/health/readiness") => Ok(resp(503, "{}", &[("retry-after", "1".into())])),
            ("GET", "/metrics") => {
                let n = self.transcribe.load(Ordering::SeqCst) + self.openai.load(Ordering::SeqCst);
                Ok(resp(
                    200,
                    format!(
                        "# TYPE tingxie_queue_depth gauge\ntingxie_queue_depth 1\n\
                         tingxie_queue_wait_seconds_sum {}\ntingxie_queue_wait_seconds_count {n}\n\
                         tingxie_compute_seconds_sum {}\ntingxie_compute_seconds_count {n}\n\
                         tingxie_cold_start_phase_seconds{{phase=\"config\"}} 0.002\n\
                         tingxie_cold_start_phase_seconds{{phase=\"weights\"}} 0.05\n\
                         tingxie_cold_start_phase_seconds{{phase=\"warmup\"}} 0.1\n\
                         process_resident_memory_bytes 104857600\n",
                        n as f64 * 0.001,
                        n as f64 * 0.004
                    ),
                    &[],
                ))
            }
            ("POST", "/transcribe") => {
                let n = self.transcribe.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
                if body.is_empty() || !headers.get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("audio/")) {
                    return Ok(resp(400, r#"{"error":{"message":"empty body"}}"#, &[]));
                }
                if let Some(r) = self.maybe_reject(n) {
                    return Ok(r);
                }
                self.transcript()
            }
            ("POST", "/v1/audio/transcriptions") => {
                let n = self.openai.fetch_add(1, Ordering::SeqCst) + 1;
                let ct = headers.get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
                let text = String::from_utf8_lossy(&body);
                if !ct.starts_with("multipart/form-data") || !text.contains("name=\"file\"") || !text.contains("name=\"model\"") {
                    return Ok(resp(400, r#"{"error":{"message":"bad multipart"}}"#, &[]));
                }
                if let Some(r) = self.maybe_reject(n) {
                    return Ok(r);
                }
                self.transcript()
            }
            ("POST", "/") => {
                self.events.fetch_add(1, Ordering::SeqCst);
                let ok = headers.get("ce-specversion").is_some_and(|v| v == "1.0")
                    && headers.get("ce-type").is_some_and(|v| v == "com.amazon.s3.objectcreated");
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let rec = &v["Records"][0]["s3"];
                let (bucket, key) = (rec["bucket"]["name"].as_str(), rec["object"]["key"].as_str());
                let (Some(bucket), Some(key), true) = (bucket, key, ok) else {
                    return Ok(resp(400, r#"{"error":{"message":"not an S3 event"}}"#, &[]));
                };
                let audio_key = format!("/{bucket}/{key}");
                if !self.objects.lock().unwrap().contains_key(&audio_key) {
                    return Ok(resp(404, r#"{"error":{"message":"no such object"}}"#, &[]));
                }
                self.objects
                    .lock()
                    .unwrap()
                    .insert(format!("/{bucket}/transcripts/{key}.json"), Bytes::from_static(br#"{"text":"the quick brown fox"}"#));
                let data = serde_json::json!({"outputs": [format!("s3://{bucket}/transcripts/{key}.json")], "duration": 2.0});
                Ok(resp(
                    200,
                    data.to_string(),
                    &[
                        ("ce-specversion", "1.0".into()),
                        ("ce-type", "dev.tingxie.transcription.completed".into()),
                        ("content-type", "application/json".into()),
                        ("x-tingxie-queue-seconds", "0.001".into()),
                        ("x-tingxie-compute-seconds", "0.004".into()),
                    ],
                ))
            }
            // path-style S3: PUT/GET /bucket/key
            ("PUT", p) => {
                self.objects.lock().unwrap().insert(p.to_string(), body);
                Ok(resp(200, "", &[("etag", "\"abc\"".into())]))
            }
            ("GET", p) | ("HEAD", p) => match self.objects.lock().unwrap().get(p) {
                Some(b) => Ok(resp(
                    200,
                    b.clone(),
                    &[("etag", "\"abc\"".into()), ("last-modified", HTTP_DATE.into()), ("content-length", b.len().to_string())],
                )),
                None => Ok(resp(
                    404,
                    "<Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>",
                    &[("content-type", "application/xml".into())],
                )),
            },
            _ => Ok(resp(404, "{}", &[])),
        }
    }
}

/// Serves `fake` on `listener` until the runtime ends.
pub async fn serve(fake: Arc<Fake>, listener: TcpListener) {
    *fake.started.lock().unwrap() = Some(Instant::now());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let fake = fake.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| fake.clone().handle(req));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// Starts a fake on a free loopback port; returns it and its base URL.
pub async fn start(fake: Fake) -> (Arc<Fake>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}/", listener.local_addr().unwrap().port());
    let fake = Arc::new(fake);
    tokio::spawn(serve(fake.clone(), listener));
    (fake, base)
}

/// A 16 kHz mono 16-bit WAV of `seconds` of silence.
pub fn wav(seconds: f64) -> Vec<u8> {
    let n = (seconds * 16000.0) as u32;
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + n * 2).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&16000u32.to_le_bytes());
    v.extend_from_slice(&32000u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(n * 2).to_le_bytes());
    v.resize(v.len() + n as usize * 2, 0);
    v
}

/// A fresh temporary folder.
pub fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tingxie-lt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
