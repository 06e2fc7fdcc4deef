//! The three request kinds (scenarios) and what one request's outcome records.

use crate::corpus::AudioFile;
use anyhow::{Context, Result};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use reqwest::header::HeaderMap;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// raw audio body to `POST /transcribe`
    Http,
    /// OpenAI-compatible multipart to `POST /v1/audio/transcriptions`
    Openai,
    /// object PUT to S3, storage CloudEvent to `POST /`, transcript object read back
    Events,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Http => "http",
            Scenario::Openai => "openai",
            Scenario::Events => "events",
        }
    }
}

/// One request as seen by the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub index: u64,
    pub file: String,
    /// Seconds from the start of the run (warm-up included) to the send.
    pub sent_at: f64,
    /// Client-side latency in seconds (events: the event POST until its reply).
    pub latency: f64,
    pub status: Option<u16>,
    /// `None` for success; otherwise `429`, `503`, `4xx`, `5xx`, `timeout`, `connect`,
    /// `transport`, `bad_response`, `s3_put`, `transcript_missing`, `dropped_client`.
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub queue_s: Option<f64>,
    pub compute_s: Option<f64>,
    pub audio_s: Option<f64>,
    /// Events scenario: seconds spent putting the object before the event was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put_s: Option<f64>,
    pub warmup: bool,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.error_kind.is_none()
    }
}

/// Where the events scenario puts objects.
#[derive(Debug, Clone)]
pub struct S3Target {
    pub store: std::sync::Arc<AmazonS3>,
    pub bucket: String,
    pub endpoint: Option<String>,
    /// Prefix of the keys the load test writes (its own folder, so runs never collide).
    pub prefix: String,
    /// Where the service writes transcripts: `transcripts/` + the audio key by default.
    pub transcript_prefix: String,
}

impl S3Target {
    pub fn new(bucket: &str, endpoint: Option<&str>, prefix: &str, transcript_prefix: &str) -> Result<S3Target> {
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(ep) = endpoint {
            b = b.with_endpoint(ep).with_allow_http(ep.starts_with("http://")).with_virtual_hosted_style_request(false);
            // A local S3-protocol test server does not check signatures.
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                b = b.with_access_key_id("loadtest").with_secret_access_key("loadtest");
            }
            if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
                b = b.with_region("us-east-1");
            }
        }
        Ok(S3Target {
            store: std::sync::Arc::new(b.build().context("S3 client")?),
            bucket: bucket.to_string(),
            endpoint: endpoint.map(str::to_string),
            prefix: prefix.to_string(),
            transcript_prefix: transcript_prefix.to_string(),
        })
    }
}

/// Creates `bucket` on an S3-protocol endpoint that allows it with a plain PUT (moto, MinIO);
/// an existing bucket is fine.
pub async fn create_bucket(http: &reqwest::Client, endpoint: &str, bucket: &str) -> Result<()> {
    let url = format!("{}/{}", endpoint.trim_end_matches('/'), bucket);
    let r = http.put(&url).send().await.with_context(|| format!("PUT {url}"))?;
    let s = r.status().as_u16();
    if r.status().is_success() || s == 409 {
        Ok(())
    } else {
        anyhow::bail!("creating bucket {bucket}: HTTP {s}: {}", r.text().await.unwrap_or_default())
    }
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: Url,
    pub s3: Option<S3Target>,
    pub response_format: String,
    pub openai_model: String,
    pub run_id: String,
    pub timeout: Duration,
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}
use bytes::Bytes;

fn header_f64(h: &HeaderMap, name: &str) -> Option<f64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn classify_status(status: u16) -> Option<&'static str> {
    match status {
        200..=299 => None,
        429 => Some("429"),
        503 => Some("503"),
        400..=499 => Some("4xx"),
        _ => Some("5xx"),
    }
}

fn classify_transport(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    }
}

/// Finds a number under any of `keys`, searching nested objects.
fn find_number(v: &Value, keys: &[&str]) -> Option<f64> {
    match v {
        Value::Object(m) => {
            for k in keys {
                if let Some(x) = m.get(*k).and_then(Value::as_f64) {
                    return Some(x);
                }
            }
            m.values().find_map(|c| find_number(c, keys))
        }
        _ => None,
    }
}

fn find_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|c| find_strings(c, out)),
        Value::Object(m) => m.values().for_each(|c| find_strings(c, out)),
        _ => {}
    }
}

impl Client {
    pub async fn send(&self, scenario: Scenario, index: u64, file: &AudioFile) -> Outcome {
        let mut o = Outcome {
            index,
            file: file.name.clone(),
            sent_at: 0.0,
            latency: 0.0,
            status: None,
            error_kind: None,
            error: None,
            queue_s: None,
            compute_s: None,
            audio_s: None,
            put_s: None,
            warmup: false,
        };
        match scenario {
            Scenario::Http => {
                let url = self.endpoint(&format!("transcribe?response_format={}", self.response_format));
                let req = self.http.post(url).header("content-type", file.content_type).body(file.bytes.clone());
                self.plain(req, &mut o, file).await;
            }
            Scenario::Openai => {
                let part = reqwest::multipart::Part::bytes(file.bytes.to_vec())
                    .file_name(file.name.clone())
                    .mime_str(file.content_type)
                    .expect("static mime type");
                let form = reqwest::multipart::Form::new()
                    .part("file", part)
                    .text("model", self.openai_model.clone())
                    .text("response_format", self.response_format.clone());
                let req = self.http.post(self.endpoint("v1/audio/transcriptions")).multipart(form);
                self.plain(req, &mut o, file).await;
            }
            Scenario::Events => self.event(index, file, &mut o).await,
        }
        if o.audio_s.is_none() {
            o.audio_s = file.seconds;
        }
        o
    }

    fn endpoint(&self, path: &str) -> Url {
        self.base.join(path).expect("valid path")
    }

    async fn exchange(&self, req: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
        let r = req.timeout(self.timeout).send().await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await?;
        Ok(Reply { status, headers, body })
    }

    /// Sends `req`, recording latency, status and the service's timing headers in `o`; the
    /// reply when its status is a success, else None with the failure recorded.
    async fn timed(&self, req: reqwest::RequestBuilder, o: &mut Outcome) -> Option<Reply> {
        let t0 = Instant::now();
        let reply = self.exchange(req).await;
        o.latency = t0.elapsed().as_secs_f64();
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                Self::fail(o, classify_transport(&e), e.to_string());
                return None;
            }
        };
        o.status = Some(reply.status);
        o.queue_s = header_f64(&reply.headers, "x-tingxie-queue-seconds");
        o.compute_s = header_f64(&reply.headers, "x-tingxie-compute-seconds");
        o.audio_s = header_f64(&reply.headers, "x-tingxie-audio-seconds");
        if let Some(kind) = classify_status(reply.status) {
            Self::fail(o, kind, String::from_utf8_lossy(&reply.body).into_owned());
            return None;
        }
        Some(reply)
    }

    fn fail(o: &mut Outcome, kind: &str, msg: impl Into<String>) {
        o.error_kind = Some(kind.to_string());
        let mut m: String = msg.into();
        m.truncate(300);
        o.error = Some(m);
    }

    /// HTTP and OpenAI scenarios: a JSON body with `text` is a success.
    async fn plain(&self, req: reqwest::RequestBuilder, o: &mut Outcome, _file: &AudioFile) {
        let Some(reply) = self.timed(req, o).await else {
            return;
        };
        if self.response_format.contains("json") {
            match serde_json::from_slice::<Value>(&reply.body) {
                Ok(v) if v.get("text").is_some_and(Value::is_string) => {
                    if o.audio_s.is_none() {
                        o.audio_s = v.get("duration").and_then(Value::as_f64);
                    }
                }
                _ => Self::fail(o, "bad_response", "200 without a JSON body holding \"text\""),
            }
        }
    }

    /// Events scenario: PUT the object, send its S3 notification as a binary-mode CloudEvent,
    /// then read the transcript object back.
    async fn event(&self, index: u64, file: &AudioFile, o: &mut Outcome) {
        let Some(s3) = &self.s3 else {
            return Self::fail(o, "s3_put", "events scenario without an S3 target");
        };
        let key = format!("{}{}/{:06}-{}", s3.prefix, self.run_id, index, file.name);
        let t_put = Instant::now();
        let put = s3.store.put(&ObjectPath::from(key.as_str()), PutPayload::from(file.bytes.clone())).await;
        o.put_s = Some(t_put.elapsed().as_secs_f64());
        let etag = match put {
            Ok(r) => r.e_tag.unwrap_or_default().trim_matches('"').to_string(),
            Err(e) => return Self::fail(o, "s3_put", e.to_string()),
        };
        let notification = serde_json::json!({"Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "s3SchemaVersion": "1.0",
                "bucket": {"name": s3.bucket, "arn": format!("arn:aws:s3:::{}", s3.bucket)},
                "object": {"key": key, "size": file.bytes.len(), "eTag": etag},
            },
        }]});
        let req = self
            .http
            .post(self.base.clone())
            .header("ce-specversion", "1.0")
            .header("ce-id", format!("{}-{index}", self.run_id))
            .header("ce-source", format!("arn:aws:s3:::{}", s3.bucket))
            .header("ce-type", "com.amazon.s3.objectcreated")
            .header("ce-subject", key.clone())
            .header("content-type", "application/json")
            .body(notification.to_string());
        let Some(reply) = self.timed(req, o).await else {
            return;
        };
        let data: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        let data = data.get("data").cloned().unwrap_or(data); // structured-mode reply
        o.audio_s = o.audio_s.or_else(|| find_number(&data, &["duration", "audio_seconds"]));
        o.queue_s = o.queue_s.or_else(|| find_number(&data, &["queue_seconds"]));
        o.compute_s = o.compute_s.or_else(|| find_number(&data, &["compute_seconds"]));
        // The transcript object: named in the reply when it says so, else the convention.
        let mut strings = Vec::new();
        find_strings(&data, &mut strings);
        let prefix = format!("s3://{}/", s3.bucket);
        let transcript_key = strings
            .iter()
            .filter(|s| s.ends_with(".json"))
            .find_map(|s| s.strip_prefix(&prefix))
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}{}.json", s3.transcript_prefix, key));
        match s3.store.get(&ObjectPath::from(transcript_key.as_str())).await {
            Ok(got) => match got.bytes().await.map(|b| serde_json::from_slice::<Value>(&b)) {
                Ok(Ok(v)) if v.get("text").is_some() => {}
                Ok(_) => Self::fail(o, "transcript_missing", format!("{transcript_key}: not a transcript JSON")),
                Err(e) => Self::fail(o, "transcript_missing", format!("{transcript_key}: {e}")),
            },
            Err(e) => Self::fail(o, "transcript_missing", format!("{transcript_key}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classified() {
        assert_eq!(classify_status(200), None);
        assert_eq!(classify_status(429), Some("429"));
        assert_eq!(classify_status(503), Some("503"));
        assert_eq!(classify_status(413), Some("4xx"));
        assert_eq!(classify_status(500), Some("5xx"));
    }

    #[test]
    fn reply_fields_found() {
        let v = serde_json::json!({"outputs": {"json": "s3://b/transcripts/k.json"}, "stats": {"duration": 3.5}});
        assert_eq!(find_number(&v, &["duration"]), Some(3.5));
        let mut s = Vec::new();
        find_strings(&v, &mut s);
        assert_eq!(s, ["s3://b/transcripts/k.json"]);
    }
}
