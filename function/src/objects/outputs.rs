//! The transcript objects of one source: `NAME.txt`, `.srt`, `.vtt`, then `NAME.json` last.
//! The JSON (OpenAI's verbose_json plus the source version and model) is the record that the
//! work is done: a repeated event finds it and returns it instead of transcribing again. The
//! record is signed (HMAC-SHA256 under the record key), so that one planted beside the source
//! by whoever can write to the bucket is not taken for the service's own: it is recomputed.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::{store_error, Location, SourceVersion};
use crate::error::Result;
use crate::hmac::sign;
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
    /// Records written before it was kept read as 1.
    #[serde(default = "certain")]
    pub language_probability: f32,
    #[serde(default = "transcribe")]
    pub task: String,
    pub duration: f64,
    /// Every object written for this transcript, the JSON record last.
    pub outputs: Vec<String>,
    /// `hmac-sha256:HEX` of the record's other fields (their JSON, in this order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Recorded {
    fn signature_under(&self, key: &[u8]) -> String {
        let unsigned = Recorded { signature: None, ..self.clone() };
        format!("hmac-sha256:{}", sign(key, &serde_json::to_vec(&unsigned).expect("record serialises")))
    }

    /// True when the service wrote this record (under `key`) for `source`'s object.
    fn is_ours(&self, key: &[u8], source: &SourceVersion) -> bool {
        let signed = self.signature.as_deref().is_some_and(|s| constant_time_eq(s.as_bytes(), self.signature_under(key).as_bytes()));
        signed && self.source.uri == source.uri && self.source.same_as(source)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn certain() -> f32 {
    1.0
}

fn transcribe() -> String {
    "transcribe".into()
}

/// Who is transcribing a source version: `NAME.claim`, created only if absent, so that two
/// instances given the same upload at the same moment run the model once between them. Its
/// owner renews it while it works; a claim not renewed within its lease belongs to a dead
/// process.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ClaimRecord {
    /// `HOST/PID/UUID`: the pod, the process, this run of it.
    owner: String,
    source: SourceVersion,
    /// When the claim was made or last renewed.
    claimed_at_unix: f64,
}

impl ClaimRecord {
    /// Made by an earlier process on this host that is no longer running: a container
    /// restarted in its pod (often with the same PID), or a process that crashed beside us.
    fn owner_is_gone(&self, us: &str) -> bool {
        let mut theirs = self.owner.splitn(3, '/');
        let mut ours = us.splitn(3, '/');
        let (Some(host), Some(pid)) = (theirs.next(), theirs.next().and_then(|p| p.parse::<i32>().ok())) else {
            return false;
        };
        if self.owner == us || ours.next() != Some(host) || pid <= 0 {
            return false;
        }
        // SAFETY: signal 0 only asks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        pid == std::process::id() as i32 || !alive
    }
}

pub enum Claim {
    Acquired(HeldClaim),
    /// Another instance renewed its claim on this version `age` ago, within its lease.
    HeldElsewhere {
        age: Duration,
    },
}

/// A claim this process holds.
pub struct HeldClaim {
    at: Location,
    owner: String,
    source: SourceVersion,
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl HeldClaim {
    fn body(&self) -> PutPayload {
        let record = ClaimRecord { owner: self.owner.clone(), source: self.source.clone(), claimed_at_unix: unix_now() };
        PutPayload::from(serde_json::to_vec(&record).expect("claim serialises"))
    }

    /// Runs `work`, renewing the claim every third of `lease` until it ends.
    pub async fn renewed_while<T>(&self, lease: Duration, work: impl Future<Output = T>) -> T {
        let renew = async {
            let mut every = tokio::time::interval(lease / 3);
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(e) = self.at.store.put(&self.at.path, self.body()).await {
                    tracing::warn!(claim = %self.at.uri, error = %e, "could not renew the claim");
                }
            }
        };
        tokio::select! {
            out = work => out,
            _ = renew => unreachable!("renewal never ends"),
        }
    }

    /// Ends the claim; one left behind by a crash expires with its lease.
    pub async fn release(self) {
        if let Err(e) = self.at.store.delete(&self.at.path).await {
            tracing::warn!(claim = %self.at.uri, error = %e, "could not remove the claim; it expires with its lease");
        }
    }
}

/// A path made from one already parsed (`Objects::locate`) and a suffix of plain words, kept
/// exactly as written: `StorePath::from` would percent-encode non-ASCII and `~[]#%`, so that a
/// transcript of `会议/录音 1.wav` would land under another key than the one reported.
fn raw_path(text: String) -> StorePath {
    StorePath::parse(&text).unwrap_or_else(|_| StorePath::from(text))
}

pub struct OutputSet {
    base: Location,
}

impl OutputSet {
    pub(super) fn new(base: Location) -> OutputSet {
        OutputSet { base }
    }

    /// Outputs of another kind for the same source, beside these: `NAME.KIND.EXT` (another
    /// model's transcript, a translation). `kind` is a catalog name or a fixed word.
    pub fn variant(self, kind: &str) -> OutputSet {
        let Location { store, path, uri } = self.base;
        OutputSet { base: Location { store, path: raw_path(format!("{path}.{kind}")), uri: format!("{uri}.{kind}") } }
    }

    pub fn uri(&self, extension: &str) -> String {
        format!("{}.{extension}", self.base.uri)
    }

    fn path(&self, extension: &str) -> StorePath {
        raw_path(format!("{}.{extension}", self.base.path))
    }

    pub fn uris(&self) -> Vec<String> {
        SIDE_FORMATS.iter().map(|f| self.uri(f.extension())).chain([self.uri("json")]).collect()
    }

    /// The record of an earlier transcription of this exact source version, if the service
    /// wrote one (signed under `key`); anything else there is replaced.
    pub async fn existing(&self, source: &SourceVersion, key: &[u8]) -> Result<Option<Recorded>> {
        let got = match self.base.store.get(&self.path("json")).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(&self.uri("json"), e)),
        };
        let bytes = got.bytes().await.map_err(|e| store_error(&self.uri("json"), e))?;
        // A record we cannot read or did not sign (another tool's file, an older layout, one
        // planted by an uploader) is simply replaced.
        let record = serde_json::from_slice::<Recorded>(&bytes).ok();
        let ours = record.filter(|r| r.is_ours(key, source));
        if ours.is_none() {
            tracing::info!(record = %self.uri("json"), "no record signed by this service for this version there; transcribing");
        }
        Ok(ours)
    }

    /// Writes the subtitle and text files, then the JSON record: a reader that finds the record
    /// finds the rest.
    pub async fn write(&self, transcript: &Transcript, source: &SourceVersion, model: &str, key: &[u8]) -> Result<Recorded> {
        for format in SIDE_FORMATS {
            self.put(format.extension(), output::render(transcript, format)).await?;
        }
        let mut record = Recorded {
            source: source.clone(),
            model: model.to_string(),
            text: transcript.text.clone(),
            language: transcript.language.clone(),
            language_probability: transcript.language_probability,
            task: transcript.task.as_str().to_string(),
            duration: transcript.duration,
            outputs: self.uris(),
            signature: None,
        };
        record.signature = Some(record.signature_under(key));
        let mut json = output::verbose_json(transcript);
        let extra = serde_json::to_value(&record).expect("record serialises");
        if let (Some(doc), serde_json::Value::Object(fields)) = (json.as_object_mut(), extra) {
            doc.extend(fields);
        }
        self.put("json", json.to_string()).await?;
        Ok(record)
    }

    /// Claims the work on `source` for `owner`. A claim on another version, one not renewed
    /// within `lease`, or one left by an earlier process on the same host (a restarted
    /// container) is taken over; taking over is conditional on the claim being unchanged, so
    /// of two instances taking over at once one wins.
    pub async fn claim(&self, source: &SourceVersion, owner: &str, lease: Duration) -> Result<Claim> {
        let held = HeldClaim {
            at: Location { path: self.path("claim"), uri: self.uri("claim"), ..self.base.clone() },
            owner: owner.to_string(),
            source: source.clone(),
        };
        let store = &held.at.store;
        let create = PutOptions { mode: PutMode::Create, ..Default::default() };
        match store.put_opts(&held.at.path, held.body(), create).await {
            Ok(_) => return Ok(Claim::Acquired(held)),
            // A store without create-if-absent cannot arbitrate: rely on the single flight.
            Err(object_store::Error::NotImplemented { .. }) => return Ok(Claim::Acquired(held)),
            Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => {}
            Err(e) => return Err(store_error(&held.at.uri, e)),
        }
        let (current, version) = match store.get(&held.at.path).await {
            Ok(got) => {
                let version = UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
                (got.bytes().await.ok().and_then(|b| serde_json::from_slice::<ClaimRecord>(&b).ok()), Some(version))
            }
            // Released meanwhile: try again from the start next delivery; take it now.
            Err(object_store::Error::NotFound { .. }) => (None, None),
            Err(e) => return Err(store_error(&held.at.uri, e)),
        };
        if let Some(current) = &current {
            let age = Duration::from_secs_f64((unix_now() - current.claimed_at_unix).max(0.0));
            if current.source.same_as(source) && age < lease && !current.owner_is_gone(&held.owner) {
                return Ok(Claim::HeldElsewhere { age });
            }
            tracing::info!(claim = %held.at.uri, previous_owner = %current.owner, age_seconds = age.as_secs_f64(), "taking over a claim whose owner is gone");
        }
        let mode = match version {
            Some(version) if version.e_tag.is_some() || version.version.is_some() => PutMode::Update(version),
            _ => PutMode::Overwrite,
        };
        match store.put_opts(&held.at.path, held.body(), PutOptions { mode, ..Default::default() }).await {
            Ok(_) | Err(object_store::Error::NotImplemented { .. }) => Ok(Claim::Acquired(held)),
            Err(object_store::Error::Precondition { .. }) | Err(object_store::Error::AlreadyExists { .. }) => {
                Ok(Claim::HeldElsewhere { age: Duration::ZERO })
            }
            Err(e) => Err(store_error(&held.at.uri, e)),
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
