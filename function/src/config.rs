//! `tingxie serve` configuration: one struct, read from flags and the environment. Every
//! default is here; the model-cache options (`TINGXIE_CACHE_*`) live in
//! `tingxie_model_cache::defaults` and are read by `CacheConfig::from_env`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::device::DeviceKind;

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// TCP port (Knative sets it).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, env = "TINGXIE_BIND", default_value = "0.0.0.0")]
    pub bind: String,
    /// The model: a local folder (used in place) or a URI (s3://, gs://, az://, file://,
    /// https://) pulled once per node into TINGXIE_CACHE_DIR.
    #[arg(long, env = "TINGXIE_MODEL", default_value = "models/whisper-tiny-en")]
    pub model: String,
    /// The catalog name of TINGXIE_MODEL when it is a URI or folder, reported in replies and
    /// accepted as a request's `model` (default: its last path segment).
    #[arg(long, env = "TINGXIE_MODEL_NAME")]
    pub model_name: Option<String>,
    /// Further models requests may name (`model`): `name=URI` pairs, comma-separated, or the
    /// path of a file with one pair per line (a mounted ConfigMap). TINGXIE_MODEL is the
    /// default: one of these names, or a URI of its own.
    #[arg(long, env = "TINGXIE_MODELS", default_value = "")]
    pub models: String,
    /// Bytes the loaded models' weights may take together; before another model loads, the
    /// least recently used idle one is unloaded (never one with work queued, never below one
    /// model). 0: no limit.
    #[arg(long, env = "TINGXIE_MODEL_MEMORY", default_value_t = 0)]
    pub model_memory: u64,
    /// Seconds a request for a model that is still loading waits for it; past them it gets
    /// 503 + Retry-After (the load goes on, and a retry finds the model loaded).
    #[arg(long, env = "TINGXIE_MODEL_LOAD_WAIT_SECONDS", default_value_t = 30.0)]
    pub model_load_wait_seconds: f64,
    /// Silero VAD's weights (`scripts/fetch-vad.sh`), for `vad_filter` and batches: a local
    /// folder or a URI pulled into the node cache. Without them those requests fail (500).
    #[arg(long, env = "TINGXIE_VAD_MODEL", default_value = "models/silero-vad")]
    pub vad_model: String,
    /// cpu, cpu-generic, cuda, cuda:N or wgpu.
    #[arg(long, env = "TINGXIE_DEVICE", default_value = "cpu")]
    pub device: DeviceKind,
    /// Where CUDA/wgpu keep compiled kernels and autotune results, per GPU model and tingxie
    /// version (default: `kernels` under TINGXIE_CACHE_DIR, the node's cache).
    #[arg(long, env = "TINGXIE_KERNEL_CACHE_DIR")]
    pub kernel_cache_dir: Option<PathBuf>,
    /// CPU threads for the compute kernels (default: all cores the process may use).
    #[arg(long, env = "TINGXIE_THREADS")]
    pub threads: Option<usize>,
    /// URI prefix for transcripts of stored objects. Empty: next to the source, in the same
    /// bucket under `transcripts/`. Otherwise `{output}/{bucket}/{key}.{json,txt,srt,vtt}`.
    #[arg(long, env = "TINGXIE_OUTPUT", default_value = "")]
    pub output: String,
    /// Comma-separated URI prefixes under which a request's own `output` may write
    /// (TINGXIE_OUTPUT is always allowed). Empty: requests cannot choose where transcripts go.
    #[arg(long, env = "TINGXIE_ALLOWED_OUTPUTS", default_value = "", value_delimiter = ',')]
    pub allowed_outputs: Vec<String>,
    /// Comma-separated URI prefixes that events and requests may name as sources
    /// (`s3://uploads/,gs://bucket/audio/`); `*` allows any. Empty: no stored sources.
    #[arg(long, env = "TINGXIE_ALLOWED_SOURCES", default_value = "", value_delimiter = ',')]
    pub allowed_sources: Vec<String>,
    /// Largest request body and largest source object, in bytes (413 beyond).
    #[arg(long, env = "TINGXIE_MAX_BODY_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_body_bytes: u64,
    /// Seconds a client has to send its whole request body, counted from when the body is
    /// first read; past it the request gets 408 and frees its queue place.
    #[arg(long, env = "TINGXIE_BODY_TIMEOUT_SECONDS", default_value_t = 30)]
    pub body_timeout_seconds: u64,
    /// Seconds a stored source (an object, a local file) has to be read whole; past them the
    /// job fails (504-like 503, retryable) and frees its queue place: a hung mount or a store
    /// that never answers cannot hold a place for ever.
    #[arg(long, env = "TINGXIE_SOURCE_TIMEOUT_SECONDS", default_value_t = 300)]
    pub source_timeout_seconds: u64,
    /// Bytes that all request bodies held in memory may take together, JSON bodies counted
    /// twice (parsing holds a second copy); 429 past it. Never less than one largest event,
    /// read and parsed (twice the event body limit).
    #[arg(long, env = "TINGXIE_BODY_MEMORY_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub body_memory_bytes: u64,
    /// Longest audio accepted, in seconds (413 beyond), enforced while decoding: from the
    /// duration the container declares, and by counting the 16 kHz samples. A request holds
    /// ~240 kB per second of audio while it is computed and 64 kB/s while it waits, so 20
    /// minutes fit the smallest pod the overlays set (knative/checks/consistency.py).
    #[arg(long, env = "TINGXIE_MAX_AUDIO_SECONDS", default_value_t = 1200.0)]
    pub max_audio_seconds: f64,
    /// Requests that may wait for the engine while it computes one; more get 429.
    /// A pod therefore holds at most QUEUE_DEPTH + 1 requests (Knative containerConcurrency).
    #[arg(long, env = "TINGXIE_QUEUE_DEPTH", default_value_t = 4)]
    pub queue_depth: usize,
    /// Beam width when a request does not say (faster-whisper's default is 5; 1 = greedy).
    #[arg(long, env = "TINGXIE_BEAM_SIZE", default_value_t = 5)]
    pub beam_size: usize,
    /// Windows per batch when a request does not say. 0: windows one after another, each
    /// prompted by the text before it (faster-whisper's `transcribe`); N: independent windows
    /// cut at pauses, N encoded and decoded at once (faster-whisper's batched pipeline).
    #[arg(long, env = "TINGXIE_BATCH_SIZE", default_value_t = 0)]
    pub batch_size: usize,
    /// Tenants, their classes and limits, and their API keys' SHA-256: the path of a file
    /// (a mounted Secret; format in `tenants.rs`). Empty: no keys.
    #[arg(long, env = "TINGXIE_TENANTS", default_value = "")]
    pub tenants: String,
    /// A header that names the tenant, set by a mesh that authenticated the caller (e.g.
    /// `x-tingxie-tenant`); it is trusted, so the mesh must strip it from outside requests.
    /// With keys or this header configured, requests without either get 401.
    #[arg(long, env = "TINGXIE_TENANT_HEADER", default_value = "")]
    pub tenant_header: String,
    /// Knative Eventing's OIDC issuer (`authentication-oidc`): with it set, a delivery to `POST /`
    /// whose `Authorization: Bearer JWT` is signed by this issuer for TINGXIE_OIDC_AUDIENCE is
    /// the platform's, and may name its tenant (`ce-tenant`, a mapped bucket). Empty: off.
    #[arg(long, env = "TINGXIE_OIDC_ISSUER", default_value = "")]
    pub oidc_issuer: String,
    /// The audience Knative puts in tokens for this sink (its `status.address.audience`).
    #[arg(long, env = "TINGXIE_OIDC_AUDIENCE", default_value = "")]
    pub oidc_audience: String,
    /// The issuer's public keys: a JWKS file (a mounted ConfigMap) or an `https://` URL.
    /// Empty: `{TINGXIE_OIDC_ISSUER}/openid/v1/jwks`, where Kubernetes serves them.
    #[arg(long, env = "TINGXIE_OIDC_JWKS", default_value = "")]
    pub oidc_jwks: String,
    /// Key of the HMAC-SHA256 signature on transcript records (`NAME.json`), by which a
    /// redelivery recognises the service's own records; set it from a Secret shared by every
    /// replica. Empty: a random key kept in TINGXIE_HISTORY (created once, shared through it).
    #[arg(long, env = "TINGXIE_RECORD_KEY", default_value = "", hide_env_values = true)]
    pub record_key: String,
    /// Queue places only the priority class may take, so that a queue full of other work still
    /// admits it; applied when a tenant of that class exists.
    #[arg(long, env = "TINGXIE_PRIORITY_PLACES", default_value_t = 1)]
    pub priority_places: usize,
    /// Seconds of waiting that lift a job one class (batch work is never starved).
    #[arg(long, env = "TINGXIE_PRIORITY_AGING_SECONDS", default_value_t = 60.0)]
    pub priority_aging_seconds: f64,
    /// Where the transcription history is kept: a URI prefix in object storage
    /// (`s3://bucket/history`), shared by every replica, or a local folder.
    #[arg(long, env = "TINGXIE_HISTORY", default_value = "history")]
    pub history: String,
    /// Hosts (`host` or `host:port`, comma-separated) that asynchronous jobs may call back;
    /// empty: no callbacks.
    #[arg(long, env = "TINGXIE_CALLBACK_HOSTS", default_value = "", value_delimiter = ',')]
    pub callback_hosts: Vec<String>,
    /// Key of the HMAC-SHA256 signature on callbacks (`x-tingxie-signature`); set it from a
    /// Secret. Empty: callbacks are refused.
    #[arg(long, env = "TINGXIE_CALLBACK_SECRET", default_value = "", hide_env_values = true)]
    pub callback_secret: String,
    /// Attempts at delivering a callback before giving up.
    #[arg(long, env = "TINGXIE_CALLBACK_ATTEMPTS", default_value_t = 6)]
    pub callback_attempts: u32,
    /// Seconds before the second attempt; each later wait doubles (1, 2, 4, ... s).
    #[arg(long, env = "TINGXIE_CALLBACK_BACKOFF_SECONDS", default_value_t = 1.0)]
    pub callback_backoff_seconds: f64,
    /// Lease of a claim on a source version: its owner renews it every third of this while it
    /// works, and a delivery meanwhile gets 503 + Retry-After; a claim not renewed for this
    /// long (or left by an earlier process of this pod) is taken over, its owner dead.
    #[arg(long, env = "TINGXIE_CLAIM_SECONDS", default_value_t = 30)]
    pub claim_seconds: u64,
    /// Seconds that in-flight work may take to finish after SIGTERM.
    #[arg(long, env = "TINGXIE_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// Seconds a client is told to wait (Retry-After) when the queue is full or the model is
    /// still loading.
    #[arg(long, env = "TINGXIE_RETRY_AFTER_SECONDS", default_value_t = 2)]
    pub retry_after_seconds: u64,
    /// HTTP worker threads (the model runs on its own thread; these only move bytes).
    #[arg(long, env = "TINGXIE_HTTP_WORKERS", default_value_t = 2)]
    pub http_workers: usize,
    /// Log filter (tracing EnvFilter syntax).
    /// (CubeCL logs every autotune run at info: its counts are in /metrics instead.)
    #[arg(long, env = "TINGXIE_LOG", default_value = "info,cubecl_runtime=warn")]
    pub log: String,
}

impl ServeConfig {
    /// Largest `POST /` body: events carry inline audio as base64, a third larger than the
    /// audio limit.
    pub fn event_body_limit(&self) -> u64 {
        self.max_body_bytes / 3 * 4 + 64 * 1024
    }

    pub fn kernel_cache_dir(&self) -> PathBuf {
        self.kernel_cache_dir.clone().unwrap_or_else(crate::kernels::default_root)
    }

    pub fn model_load_wait(&self) -> Duration {
        Duration::try_from_secs_f64(self.model_load_wait_seconds).unwrap_or(Duration::MAX)
    }

    pub fn priority_aging(&self) -> Duration {
        Duration::try_from_secs_f64(self.priority_aging_seconds).unwrap_or(Duration::MAX)
    }

    pub fn callback_backoff(&self) -> Duration {
        Duration::try_from_secs_f64(self.callback_backoff_seconds).unwrap_or(Duration::from_secs(1))
    }

    /// The lease of claims and of running history records (never zero).
    pub fn claim_lease(&self) -> Duration {
        Duration::from_secs(self.claim_seconds.max(1))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}
