//! Configuration of the cache. Every default lives in [`defaults`].

use std::path::PathBuf;
use std::time::Duration;

/// The defaults of [`CacheConfig`], in one place.
pub mod defaults {
    use std::time::Duration;

    /// Largest range one GET asks for: a GET must end within [`REQUEST_TIMEOUT`] even when
    /// all streams are slow (128 MiB at 1.1 MB/s each). Smaller pieces come from splitting
    /// ([`SPLIT_AFTER`]), so a fast store is asked once per file of up to this size.
    pub const CHUNK_SIZE: u64 = 128 * 1024 * 1024;
    /// A GET whose rest would take longer than this at its own rate so far hands the second
    /// half of it to a new GET, while fewer than [`CONCURRENCY`] run. Starting a GET costs a
    /// round trip and the store's first-byte latency (tens of milliseconds on S3): a quarter
    /// second left is several of those. `None`: pieces are never split.
    pub const SPLIT_AFTER: Option<Duration> = Some(Duration::from_millis(250));
    /// Ranged GETs in flight at once, over all files of a model.
    pub const CONCURRENCY: usize = 8;
    /// No eviction unless a limit is set.
    pub const MAX_BYTES: Option<u64> = None;
    /// Time to open a connection to the object store.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Time for one whole request, body included (one chunk at most).
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
    /// Retries of one request by the object store client (connection errors, 5xx, cut bodies).
    pub const RETRIES: usize = 3;
    /// Upper bound on the time one request spends retrying.
    pub const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long to wait for another process that is downloading the same model.
    pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30 * 60);
    /// Hash every file on each hit (slow for large models); size and mtime are always checked.
    pub const VERIFY_ON_HIT: bool = false;
}

/// How the cache behaves. Build with [`CacheConfig::new`] and change fields as needed.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Root of the cache, shared by every process of the node (`TINGXIE_CACHE_DIR`).
    pub cache_dir: PathBuf,
    /// Evict least recently used models when the cache grows above this many bytes.
    pub max_bytes: Option<u64>,
    /// See [`defaults::CHUNK_SIZE`].
    pub chunk_size: u64,
    /// See [`defaults::SPLIT_AFTER`].
    pub split_after: Option<Duration>,
    /// Ranged GETs in flight at once.
    pub concurrency: usize,
    /// See [`defaults::CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`defaults::REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// See [`defaults::RETRIES`].
    pub retries: usize,
    /// See [`defaults::RETRY_TIMEOUT`].
    pub retry_timeout: Duration,
    /// See [`defaults::LOCK_TIMEOUT`].
    pub lock_timeout: Duration,
    /// See [`defaults::VERIFY_ON_HIT`].
    pub verify_on_hit: bool,
    /// Extra object store options (`object_store` config keys such as `endpoint`,
    /// `allow_http`, `access_key_id`), applied after the `AWS_*`, `GOOGLE_*` and `AZURE_*`
    /// environment variables.
    pub store_options: Vec<(String, String)>,
}

impl CacheConfig {
    /// A configuration with every default and the given cache directory.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        CacheConfig {
            cache_dir: cache_dir.into(),
            max_bytes: defaults::MAX_BYTES,
            chunk_size: defaults::CHUNK_SIZE,
            split_after: defaults::SPLIT_AFTER,
            concurrency: defaults::CONCURRENCY,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            request_timeout: defaults::REQUEST_TIMEOUT,
            retries: defaults::RETRIES,
            retry_timeout: defaults::RETRY_TIMEOUT,
            lock_timeout: defaults::LOCK_TIMEOUT,
            verify_on_hit: defaults::VERIFY_ON_HIT,
            store_options: Vec::new(),
        }
    }

    /// Adds one object store option (see [`CacheConfig::store_options`]).
    pub fn with_store_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.store_options.push((key.into(), value.into()));
        self
    }

    /// Reads `TINGXIE_CACHE_DIR` (default `/var/cache/tingxie`), `TINGXIE_CACHE_MAX_BYTES`,
    /// `TINGXIE_CACHE_CHUNK_BYTES`, `TINGXIE_CACHE_SPLIT_AFTER_MS` (`off`: never split) and
    /// `TINGXIE_CACHE_CONCURRENCY`; unset or unparsable values keep their defaults.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let dir = var("TINGXIE_CACHE_DIR").unwrap_or_else(|| "/var/cache/tingxie".into());
        let mut config = CacheConfig::new(dir);
        if let Some(v) = var("TINGXIE_CACHE_MAX_BYTES").and_then(|v| v.parse().ok()) {
            config.max_bytes = Some(v);
        }
        if let Some(v) = var("TINGXIE_CACHE_CHUNK_BYTES").and_then(|v| v.parse().ok()) {
            config.chunk_size = v;
        }
        match var("TINGXIE_CACHE_SPLIT_AFTER_MS").as_deref() {
            Some("off") => config.split_after = None,
            Some(v) => {
                if let Ok(ms) = v.parse() {
                    config.split_after = Some(Duration::from_millis(ms));
                }
            }
            None => {}
        }
        if let Some(v) = var("TINGXIE_CACHE_CONCURRENCY").and_then(|v| v.parse().ok()) {
            config.concurrency = v;
        }
        config
    }

    /// Chunk size and concurrency clamped to usable values.
    pub(crate) fn chunk_size(&self) -> u64 {
        self.chunk_size.max(64 * 1024)
    }

    pub(crate) fn concurrency(&self) -> usize {
        self.concurrency.max(1)
    }
}
