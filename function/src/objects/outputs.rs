//! The transcript objects of one source: `NAME.txt`, `.srt`, `.vtt`, then `NAME.json` last.
//! The JSON (OpenAI's verbose_json plus the source version and model) is the record that the
//! work is done: a repeated event finds it and returns it instead of transcribing again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::{store_error, Location, SourceVersion};
use crate::error::Result;
use crate::output::{self, Format};
use crate::transcript::Transcript;

/// Prefix of transcripts written next to their sources.
pub const DEFAULT_PREFIX: &str = "transcripts/";

/// Formats written besides the JSON record, in write order.
const SIDE_FORMATS: [Format; 3] = [Format::Text, Format::Srt, Format::Vtt];

/// A transcript record as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Recorded {
    pub source: SourceVersion,
    pub model: String,
    pub text: String,
    pub language: String,
    pub duration: f64,
    /// Every object written for this transcript, the JSON record last.
    pub outputs: Vec<String>,
}

/// Who is transcribing a source version: `NAME.claim`, created only if absent, so that two
/// instances given the same upload at the same moment run the model once between them.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ClaimRecord {
    owner: String,
    source: SourceVersion,
    claimed_at_unix: f64,
}

pub enum Claim {
    Acquired,
    /// Another instance claimed this version `age` ago and its lease has not run out.
    HeldElsewhere { age: Duration },
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

pub struct OutputSet {
    base: Location,
}

impl OutputSet {
    pub(super) fn new(base: Location) -> OutputSet {
        OutputSet { base }
    }

    pub fn uri(&self, extension: &str) -> String {
        format!("{}.{extension}", self.base.uri)
    }

    fn path(&self, extension: &str) -> StorePath {
        StorePath::from(format!("{}.{extension}", self.base.path))
    }

    pub fn uris(&self) -> Vec<String> {
        SIDE_FORMATS.iter().map(|f| self.uri(f.extension())).chain([self.uri("json")]).collect()
    }

    /// The record of an earlier transcription of this exact source version, if there is one.
    pub async fn existing(&self, source: &SourceVersion) -> Result<Option<Recorded>> {
        let got = match self.base.store.get(&self.path("json")).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(&self.uri("json"), e)),
        };
        let bytes = got.bytes().await.map_err(|e| store_error(&self.uri("json"), e))?;
        // A record we cannot read (another tool's file, an older layout) is simply replaced.
        let record = serde_json::from_slice::<Recorded>(&bytes).ok();
        Ok(record.filter(|r| r.source.same_as(source)))
    }

    /// Writes the subtitle and text files, then the JSON record: a reader that finds the record
    /// finds the rest.
    pub async fn write(&self, transcript: &Transcript, source: &SourceVersion, model: &str) -> Result<Recorded> {
        for format in SIDE_FORMATS {
            self.put(format.extension(), output::render(transcript, format)).await?;
        }
        let record = Recorded {
            source: source.clone(),
            model: model.to_string(),
            text: transcript.text.clone(),
            language: transcript.language.clone(),
            duration: transcript.duration,
            outputs: self.uris(),
        };
        let mut json = output::verbose_json(transcript);
        let extra = serde_json::to_value(&record).expect("record serialises");
        if let (Some(doc), serde_json::Value::Object(fields)) = (json.as_object_mut(), extra) {
            doc.extend(fields);
        }
        self.put("json", json.to_string()).await?;
        Ok(record)
    }

    /// Claims the work on `source` for `owner`. A claim on another version, or older than
    /// `lease` (its owner died), is taken over.
    pub async fn claim(&self, source: &SourceVersion, owner: &str, lease: Duration) -> Result<Claim> {
        let record = ClaimRecord { owner: owner.to_string(), source: source.clone(), claimed_at_unix: unix_now() };
        let body = serde_json::to_vec(&record).expect("claim serialises");
        let create = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.base.store.put_opts(&self.path("claim"), PutPayload::from(body.clone()), create).await {
            Ok(_) => return Ok(Claim::Acquired),
            // A store without create-if-absent cannot arbitrate: rely on the single flight.
            Err(object_store::Error::NotImplemented { .. }) => return Ok(Claim::Acquired),
            Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => {}
            Err(e) => return Err(store_error(&self.uri("claim"), e)),
        }
        let held = match self.base.store.get(&self.path("claim")).await {
            Ok(got) => got.bytes().await.ok().and_then(|b| serde_json::from_slice::<ClaimRecord>(&b).ok()),
            Err(_) => None,
        };
        if let Some(held) = held {
            let age = Duration::from_secs_f64((unix_now() - held.claimed_at_unix).max(0.0));
            if held.source.same_as(source) && age < lease {
                return Ok(Claim::HeldElsewhere { age });
            }
        }
        self.put("claim", String::from_utf8(body).expect("JSON is UTF-8")).await?;
        Ok(Claim::Acquired)
    }

    /// Ends a claim; a claim left behind by a crash expires with its lease.
    pub async fn release(&self) {
        if let Err(e) = self.base.store.delete(&self.path("claim")).await {
            tracing::warn!(claim = %self.uri("claim"), error = %e, "could not remove the claim; it expires with its lease");
        }
    }

    async fn put(&self, extension: &str, body: String) -> Result<()> {
        self.base
            .store
            .put(&self.path(extension), PutPayload::from(body.into_bytes()))
            .await
            .map_err(|e| store_error(&self.uri(extension), e))?;
        Ok(())
    }
}
