//! One transcription's record, as stored and as `GET /v1/transcriptions` shows it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for the engine (asynchronous jobs).
    Queued,
    Running,
    Completed,
    Failed,
    /// Its process stopped before it finished (the lease ran out).
    Interrupted,
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(text: &str) -> Result<Status, String> {
        serde_json::from_value(serde_json::Value::String(text.to_string()))
            .map_err(|_| "is not one of queued, running, completed, failed, interrupted".to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

/// One attempt at delivering a callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackState {
    pub url: String,
    pub delivered: bool,
    pub attempts: Vec<Attempt>,
}

fn transcription() -> String {
    "transcription".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    #[serde(default = "transcription")]
    pub object: String,
    pub tenant: String,
    pub status: Status,
    pub model: String,
    pub task: String,
    /// The stored object transcribed, or the uploaded file's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_seconds: Option<f64>,
    /// Unix seconds.
    pub created_at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<f64>,
    /// Where the transcripts were written (stored sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    #[serde(rename = "async", default)]
    pub asynchronous: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackState>,
    /// The process working on it, and until when it has promised to renew this record.
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<f64>,
}

/// What is known when a transcription starts.
#[derive(Debug, Clone, Default)]
pub struct Start {
    pub tenant: String,
    pub model: String,
    pub task: String,
    pub source: Option<String>,
    pub filename: Option<String>,
    pub outputs: Vec<String>,
    pub asynchronous: bool,
    pub callback_url: Option<String>,
}

pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Ids sort newest first: the milliseconds left until 2^48 ms, then randomness.
fn id_at(unix_seconds: f64, random: u32) -> String {
    let millis = (unix_seconds * 1000.0).clamp(0.0, (1u64 << 48) as f64 - 1.0) as u64;
    format!("tr_{:012x}{random:08x}", (1u64 << 48) - 1 - millis)
}

/// The greatest id a record created at or after `unix_seconds` can have.
pub fn id_bound(unix_seconds: f64) -> String {
    id_at(unix_seconds, u32::MAX)
}

impl Record {
    pub fn new(start: Start, owner: &str, lease: Duration) -> Record {
        let now = unix_now();
        let random = uuid::Uuid::new_v4().as_u128() as u32;
        Record {
            id: id_at(now, random),
            object: transcription(),
            tenant: start.tenant,
            status: if start.asynchronous { Status::Queued } else { Status::Running },
            model: start.model,
            task: start.task,
            source: start.source,
            filename: start.filename,
            language: None,
            audio_seconds: None,
            created_at: now,
            started_at: (!start.asynchronous).then_some(now),
            finished_at: None,
            outputs: start.outputs,
            error: None,
            asynchronous: start.asynchronous,
            callback: start.callback_url.map(|url| CallbackState { url, delivered: false, attempts: Vec::new() }),
            owner: owner.to_string(),
            lease_until: Some(now + lease.as_secs_f64()),
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.status, Status::Completed | Status::Failed | Status::Interrupted)
    }

    /// A callback not yet delivered, with attempts left of `max_attempts`.
    pub fn callback_pending(&self, max_attempts: u32) -> bool {
        self.callback.as_ref().is_some_and(|c| !c.delivered && c.attempts.len() < max_attempts as usize)
    }

    /// Nobody has promised to renew it by `now`.
    pub fn orphaned(&self, now: f64) -> bool {
        self.lease_until.is_none_or(|until| until < now)
    }

    /// Marks a record whose owner stopped renewing it as interrupted; true when it changed.
    pub fn settle(&mut self, now: f64) -> bool {
        let expired = self.lease_until.is_some_and(|until| until < now);
        if self.is_finished() || !expired {
            return false;
        }
        self.status = Status::Interrupted;
        self.error = Some(Failure {
            code: "interrupted".into(),
            message: format!(
                "the process working on it ({}) stopped before it finished: its lease ran out {:.0} s ago",
                self.owner,
                now - self.lease_until.unwrap_or(now)
            ),
        });
        self.lease_until = None;
        true
    }

    /// The end of the work: completed with what the transcript says, or failed.
    pub fn finish(&mut self, outcome: std::result::Result<(&str, f64), Failure>) {
        let now = unix_now();
        self.finished_at = Some(now);
        self.started_at.get_or_insert(now);
        // A callback still to deliver keeps the owner's lease: another process takes the
        // delivery over only once the owner stops renewing it.
        if self.callback.as_ref().is_none_or(|c| c.delivered) {
            self.lease_until = None;
        }
        match outcome {
            Ok((language, seconds)) => {
                self.status = Status::Completed;
                self.language = Some(language.to_string());
                self.audio_seconds = Some(seconds);
            }
            Err(failure) => {
                self.status = Status::Failed;
                self.error = Some(failure);
            }
        }
    }
}
